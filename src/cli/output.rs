//! What a person sees: per-step progress lines on stderr, run tables, dry-run plans and
//! sign-in notices on stdout (or JSON only, with `--json`).

use std::io::Write;
use std::sync::Arc;

use crate::app::{self, RunStatus};
use crate::engine::{AgentState, PlannedStep, Progress, StepState};

pub(crate) fn progress_printer(json: bool) -> Option<crate::engine::ProgressFn> {
    if json {
        return None;
    }
    Some(Arc::new(|p: &Progress| {
        let mark = match p.event {
            "created" | "adopted" | "exists" | "rolled_back" | "nothing_to_undo"
            | "kept_shared" => "ok",
            "retrying" => "..",
            _ => "!!",
        };
        let detail = if p.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.detail)
        };
        eprintln!(
            "[{mark}] {} {}: {}{detail}",
            p.agent,
            p.step,
            p.event.replace('_', " ")
        );
    }))
}

fn step_cell(s: &app::StepStatus) -> String {
    match s.state {
        StepState::Done if s.owned => "created".into(),
        other => other.as_str().replace('_', " "),
    }
}

/// Runs with more agents than this print counts and the agents that are not done.
const LARGE_RUN: usize = 20;

/// Prints runs: JSON (`{"runs": [...]}`) or a table per run, then sign-in notices.
pub(crate) fn print_runs(runs: &[RunStatus], json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::json!({ "runs": runs }));
        return;
    }
    for r in runs {
        let _ = writeln!(out, "run {} ({}, {})", r.run_id, r.workflow, r.created_at);
        let Some(first) = r.agents.first() else {
            continue;
        };
        // A batch run: counts by state, then only the agents that are not done.
        let large = r.agents.len() > LARGE_RUN;
        if large {
            let counts: Vec<String> = r
                .counts
                .iter()
                .map(|(s, n)| format!("{} {n}", s.as_str()))
                .collect();
            let _ = writeln!(out, "  agents: {} ({})", r.agents.len(), counts.join(", "));
        }
        let mut header = format!("  {:<32} {:<16}", "AGENT", "STATE");
        for s in &first.steps {
            header.push_str(&format!(" {:<18}", s.id.to_uppercase()));
        }
        let _ = writeln!(out, "{}", header.trim_end());
        let shown = r
            .agents
            .iter()
            .filter(|a| !large || !matches!(a.state, AgentState::Done | AgentState::Released));
        for a in shown {
            let mut line = format!("  {:<32} {:<16}", a.email, a.state.as_str());
            for s in &a.steps {
                line.push_str(&format!(" {:<18}", step_cell(s)));
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if let Some(e) = &a.last_error {
                let _ = writeln!(out, "    last error: {e}");
            }
            if let Some(next) = &a.next {
                let _ = writeln!(out, "    next: {next}");
            }
        }
        for a in r
            .agents
            .iter()
            .filter(|a| !large && a.state == AgentState::Done)
        {
            if let Some(url) = &a.portal_url {
                let _ = writeln!(
                    out,
                    "  sign-in: {} signs in at {url} -- first time, choose \"Forgot password\" there (IAM Identity Center sends no invitation for API-created users), then open \"Amazon Connect\"",
                    a.email
                );
            }
        }
    }
}

/// Prints a dry run's plan: JSON or one line per step.
pub(crate) fn print_plan(agent: &str, steps: &[PlannedStep], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": true, "agent": agent, "plan": steps })
        );
        return;
    }
    println!("plan for {agent} (dry run, nothing written):");
    for s in steps {
        let d = if s.detail.is_empty() {
            String::new()
        } else {
            format!("  {}", s.detail)
        };
        println!("  {:<18} {:<8}{d}", s.step, s.decision.as_str());
    }
}

/// Prints what `offboard` will delete, with ids, what it keeps, and the agents it skips
/// (stderr: the confirmation's question follows it). A dry run prints the same plan.
pub(crate) fn print_offboard_plan(
    plan: &[app::PlannedLeaver],
    skipped: &[app::AgentResult],
    dry_run: bool,
) {
    if dry_run {
        eprintln!(
            "offboarding {} agent(s) would do this (dry run, nothing written):",
            plan.len()
        );
    } else {
        eprintln!(
            "offboarding {} agent(s); these deletions cannot be undone:",
            plan.len()
        );
    }
    for p in plan {
        eprintln!("  {}", p.email);
        if let Some(run) = &p.resumes {
            eprintln!("    finishes the offboarding of run {run}");
        }
        if p.user_assignment {
            if let Some(id) = &p.identity_user_id {
                eprintln!("    application assignment of user {id}: delete");
            }
        }
        if let (Some(g), Some(id)) = (&p.group, &p.identity_user_id) {
            eprintln!("    membership of user {id} in group {g:?}: delete (the group stays)");
        }
        if let Some(id) = &p.identity_user_id {
            let name = p.identity_user_name.as_deref().unwrap_or(&p.email);
            let what = if p.keep_identity_user {
                "keep"
            } else {
                "delete"
            };
            eprintln!("    Identity Center user {id} ({name}): {what}");
        }
        if p.resumes.is_none() && p.sides == app::Sides::ConnectOnly {
            eprintln!(
                "    Identity Center user, its membership and assignment: keep (--connect-only)"
            );
        }
        if let Some(id) = &p.connect_user_id {
            match &p.connect_username {
                Some(name) => eprintln!("    Connect user {id} ({name}): delete"),
                None => eprintln!("    Connect user {id}: delete"),
            }
        }
        if p.resumes.is_none() && p.sides == app::Sides::IdentityOnly {
            eprintln!("    Connect user: keep (--identity-only)");
        }
    }
    for s in skipped
        .iter()
        .filter(|s| s.outcome == app::Outcome::Skipped)
    {
        eprintln!(
            "  skipped {}: {}",
            s.email,
            s.error.as_deref().unwrap_or_default()
        );
    }
}

/// Prints a batch's summary (stdout) or its JSON.
pub(crate) fn print_batch(r: &app::BatchReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    for e in &r.invalid {
        eprintln!("invalid: {e}");
    }
    let mut out = std::io::stdout().lock();
    if r.dry_run {
        let _ = writeln!(
            out,
            "plan ({} agents, dry run, nothing written):",
            r.agents.len()
        );
        for (step, counts) in &r.plan {
            let cells: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "  {step:<18} {}", cells.join(", "));
        }
    } else if let Some(run) = &r.run_id {
        let _ = writeln!(out, "run {run}");
    }
    print_totals(&mut out, &r.counts, r.invalid.len(), r.elapsed_ms);
    for a in r.agents.iter().filter(|a| a.error.is_some()) {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            a.email,
            a.outcome,
            a.error.as_deref().unwrap_or_default()
        );
    }
    print_calls(&mut out, &r.calls);
}

/// The `agents:` summary line: how many, by outcome; invalid rows; wall time.
pub(crate) fn print_totals(
    out: &mut impl Write,
    counts: &std::collections::BTreeMap<app::Outcome, usize>,
    invalid: usize,
    elapsed_ms: u64,
) {
    let total: usize = counts.values().sum();
    let cells: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "agents: {total} ({}); invalid rows: {invalid}; {:.1} s",
        cells.join(", "),
        elapsed_ms as f64 / 1000.0
    );
}

/// The `calls:` summary line: per API, calls and throttled calls.
pub(crate) fn print_calls(out: &mut impl Write, calls: &[app::CallStats]) {
    let calls: Vec<String> = (calls.iter())
        .filter(|c| c.calls > 0)
        .map(|c| format!("{} {} ({} throttled)", c.api, c.calls, c.throttled))
        .collect();
    if !calls.is_empty() {
        let _ = writeln!(out, "calls: {}", calls.join(", "));
    }
}

/// `doctor`: one line per check (status, id, evidence, fix), or the report as JSON.
pub(crate) fn print_doctor(r: &app::DoctorReport, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::json!(r));
        return;
    }
    let _ = writeln!(out, "doctor {}", r.agent);
    for c in &r.checks {
        let mark = match c.status {
            app::CheckStatus::Ok => "ok",
            app::CheckStatus::Problem => "PROBLEM",
            app::CheckStatus::Unknown => "unknown",
        };
        let _ = writeln!(out, "  [{mark}] {}: {}", c.id, c.detail);
        if let Some(f) = &c.fix {
            let _ = writeln!(out, "      fix: {f}");
        }
    }
    let problems = (r.checks.iter())
        .filter(|c| c.status != app::CheckStatus::Ok)
        .count();
    let _ = if problems == 0 {
        writeln!(out, "all {} checks passed", r.checks.len())
    } else {
        writeln!(out, "{problems} of {} checks did not pass", r.checks.len())
    };
}

/// `drift`: counts, then one line per agent that is not complete, with its fix; or JSON.
pub(crate) fn print_drift(r: &app::DriftReport, plan: Option<&std::path::Path>, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::json!(r));
        return;
    }
    eprintln!(
        "read {} Connect users, {} Identity Center users, {} group members in {:.1} s",
        r.read.connect_users,
        r.read.identity_users,
        r.read.members,
        r.read.elapsed.as_secs_f64()
    );
    let counts: Vec<String> = (r.counts.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "agents: {} ({})",
        r.agents.len(),
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    );
    for a in r
        .agents
        .iter()
        .filter(|a| a.status != app::DriftStatus::Complete)
    {
        let who = match (&a.connect_username, &a.identity_user_name) {
            (Some(c), _) => c.clone(),
            (None, Some(i)) => format!("{i} (Identity Center)"),
            (None, None) => "?".into(),
        };
        let _ = writeln!(
            out,
            "  {:<24} {who}: {}",
            a.status.as_str(),
            a.fix.as_deref().unwrap_or_default()
        );
    }
    if let Some(dir) = plan {
        // The commands whose files have rows, in the order that converges: a wrongly named
        // Connect user goes before batch makes the right one.
        let fp = r.plan();
        let commands: Vec<&str> = [
            (!fp.offboard.is_empty()).then_some("offboard --connect-only --file offboard.csv"),
            (!fp.batch.is_empty()).then_some("batch batch.csv"),
            (!fp.migrate_usernames.is_empty())
                .then_some("migrate --usernames migrate-usernames.txt"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = if commands.is_empty() {
            writeln!(
                out,
                "fix plan in {}: nothing to run (what is left is fixed by hand: see each fix above)",
                dir.display()
            )
        } else {
            writeln!(
                out,
                "fix plan in {}: review, then run {}",
                dir.display(),
                commands.join(", ")
            )
        };
    }
}

/// `iam-policy`: the policy document, pretty-printed (it is JSON with or without `--json`).
pub(crate) fn print_policy(policy: &serde_json::Value) {
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(policy).unwrap_or_default()
    );
}

/// What `rollback` would delete, per agent, with ids. `--dry-run` prints it on stdout (or
/// `{"dry_run": true, "run_id", "agents": [{"email", "state", "remove": [{"step",
/// "resources"}], "adopted_by": [run]}]}`); before a confirmation it goes to stderr, the question following it.
pub(crate) fn print_rollback_plan(
    run: &str,
    plan: &[app::PlannedRollback],
    dry_run: bool,
    json: bool,
) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": dry_run, "run_id": run, "agents": plan })
        );
        return;
    }
    let mut lines = vec![format!(
        "rollback of run {run}: {} agent(s); these deletions cannot be undone{}:",
        plan.len(),
        if dry_run {
            " (dry run, nothing touched)"
        } else {
            ""
        }
    )];
    for p in plan {
        lines.push(format!("  {} ({})", p.email, p.state.as_str()));
        if p.remove.is_empty() {
            lines.push("    nothing this run created is left".into());
        }
        for r in &p.remove {
            let ids: Vec<String> = r
                .resources
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if r.restores {
                lines.push(format!("    {}: restore the value it replaced", r.step));
            } else {
                lines.push(format!("    {}: delete ({})", r.step, ids.join(" ")));
            }
        }
        for run in &p.adopted_by {
            lines.push(format!(
                "    run {run} adopted some of it: it will show the agent interrupted, to resume"
            ));
        }
    }
    lines.push("  (adopted and shared resources are kept)".into());
    for l in lines {
        if dry_run {
            println!("{l}");
        } else {
            eprintln!("{l}");
        }
    }
}
