//! `apply`: flags → [`app::ApplyOptions`], the removals confirmed (`--yes`, or "yes" typed
//! on a terminal) before the first write, the report and notices created only then, and
//! what a person sees: the plan (`field: before → after` per change), or the saved plan as
//! JSON; after a run, the outcomes.

use std::io::Write;

use crate::app::{self, Context};

use super::args::{ApplyArgs, GlobalArgs};
use super::{confirm_on_terminal, counted, exit, quiet, Outputs, Slot, Waits};

/// Runs `apply`.
pub(super) async fn apply(g: &GlobalArgs, a: ApplyArgs) -> Result<u8, app::Error> {
    let json = g.json;
    let waits = Waits::default();
    let ctx = Context::load(&counted(g, &waits))?;
    let source = match (a.plan, a.file) {
        (Some(p), _) => app::ApplySource::Plan(p),
        (None, Some(f)) => app::ApplySource::File(f),
        (None, None) => {
            return Err(app::Error::Input(
                "apply needs a FILE or --plan PLAN.json".into(),
            ))
        }
    };
    let opts = app::ApplyOptions {
        source,
        clear_empty: a.clear_empty,
        prune: a.prune,
        max_remove: a.max_remove,
        skip_invalid: a.skip_invalid,
        run: app::RunOptions {
            dry_run: a.dry_run,
            concurrency: a.concurrency,
            bulk_reads: app::BulkReads::Always,
        },
    };
    let outs = Outputs::new(
        a.report.as_deref(),
        a.notices.as_deref(),
        json,
        a.dry_run,
        waits,
    );
    let removals = Removals {
        yes: a.yes,
        command: "apply --prune",
        question: "Remove the agents listed above?",
    };
    let report = run(&ctx, &opts, &quiet(a.on_failure), outs, &removals).await?;
    print_apply(&report, json);
    Ok(exit::for_apply(&report))
}

/// How removals are confirmed: `--yes`, else the plan printed and "yes" typed on a terminal.
pub(super) struct Removals {
    pub yes: bool,
    pub command: &'static str,
    pub question: &'static str,
}

/// `apply` (or `sync`) with its outputs: the report (with its `changes` column) and notices
/// created once the run phase starts, put in place at the end, the removals confirmed first.
pub(super) async fn run(
    ctx: &Context,
    opts: &app::ApplyOptions,
    settings: &app::RunSettings,
    mut outs: Outputs,
    removals: &Removals,
) -> Result<app::ApplyReport, app::Error> {
    outs.changes_column = true;
    let slot = std::cell::RefCell::new(Some(outs));
    let mut confirm = |rows: &[app::PlanRow]| {
        if removals.yes {
            return Ok(());
        }
        print_removals(removals.command, rows);
        confirm_on_terminal(removals.question, removals.command)
    };
    let mut sink = Slot(&slot);
    let out = app::apply(ctx, opts, settings, &mut confirm, &mut sink).await;
    if let Some(o) = slot.take() {
        o.close()?;
    }
    out
}

pub(super) fn print_removals(command: &str, removals: &[app::PlanRow]) {
    eprintln!("{command} removes {} agent(s):", removals.len());
    for r in removals {
        eprintln!(
            "  remove {}: {}",
            r.agent,
            r.detail.as_deref().unwrap_or_default()
        );
    }
}

/// A value as a person reads it.
fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The plan (dry run) or the run's outcomes, or the report as JSON.
pub(super) fn print_apply(r: &app::ApplyReport, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let line = if r.dry_run {
            serde_json::to_string(&r.saved)
        } else {
            serde_json::to_string(r)
        };
        let _ = writeln!(out, "{}", line.unwrap_or_default());
        return;
    }
    for e in &r.invalid {
        eprintln!("invalid: {e}");
    }
    if r.dry_run {
        let _ = writeln!(out, "plan (dry run, nothing written):");
        for p in &r.saved.plan {
            let detail = p
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {:<9} {}{detail}", p.action.as_str(), p.agent);
            if p.action == app::ApplyAction::Update {
                for c in &p.changes {
                    let _ = writeln!(
                        out,
                        "              {}: {} → {}",
                        c.field,
                        shown(&c.before),
                        shown(&c.after)
                    );
                }
            }
        }
        let counts: Vec<String> = (r.saved.counts.iter())
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        let _ = writeln!(out, "agents: {}", counts.join(", "));
        let _ = writeln!(out, "fingerprint: {}", r.saved.fingerprint);
        return;
    }
    if let Some(run) = &r.run_id {
        let _ = writeln!(out, "run {run}");
    }
    if let Some(run) = &r.prune_run_id {
        let _ = writeln!(out, "removals: run {run}");
    }
    super::output::print_totals(&mut out, &r.outcomes, r.invalid.len(), r.elapsed_ms);
    for a in &r.agents {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            a.email,
            a.outcome,
            a.error.as_deref().unwrap_or_default()
        );
    }
    super::output::print_calls(&mut out, &r.calls);
}
