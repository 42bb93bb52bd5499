//! `sync`: flags → [`app::ApplyOptions`] with the mapped groups as the source (the desired
//! state is read from Identity Center, not a file); the removals confirmed (`--yes`, or
//! "yes" typed on a terminal) before the first write; then what `apply` shows: the plan,
//! the saved plan as JSON, or the outcomes. `--watch`: the same reconcile now and every
//! `--interval` until SIGINT/SIGTERM, one line (or JSON object) per reconcile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::app::{self, Context, RunSettings};

use super::apply::{print_apply, run, Removals};
use super::args::{GlobalArgs, SyncArgs};
use super::{counted, exit, quiet, Outputs, Waits};

/// Runs `sync` (once, or `--watch`).
pub(super) async fn sync(g: &GlobalArgs, a: SyncArgs) -> Result<u8, app::Error> {
    let waits = Waits::default();
    let ctx = Context::load(&counted(g, &waits))?;
    if !a.watch {
        let report = once(&ctx, g, &a, &quiet(a.on_failure), waits, None).await?;
        print_apply(&report, g.json);
        return Ok(exit::for_apply(&report));
    }
    if a.prune && !a.yes {
        return Err(app::Error::Input(
            "sync --watch --prune needs --yes: nobody is there to confirm each reconcile's removals; nothing was written".into(),
        ));
    }
    let stop = stop_on_signals()?;
    let settings = RunSettings {
        stop: Some(stop.clone()),
        ..quiet(a.on_failure)
    };
    let opts = app::WatchOptions {
        interval: a.interval,
        queue: a.queue.clone(),
        lease: a.lease,
    };
    let mut watcher = app::Watcher::new(&ctx, opts).await?;
    let mut standing_by = false;
    loop {
        let work = match watcher.next(&stop).await? {
            app::WatchNext::Stop => break,
            app::WatchNext::Standby { holder, until } => {
                if !standing_by {
                    print_standby(&holder, &until, g.json);
                }
                standing_by = true;
                continue;
            }
            app::WatchNext::Ignored(events) => {
                print_events(&events, "ignored", g.json);
                continue;
            }
            app::WatchNext::Reconcile(work) => work,
        };
        standing_by = false;
        print_events(&work.ignored, "ignored", g.json);
        let result = once(&ctx, g, &a, &settings, waits.clone(), work.scope.clone()).await;
        let events = work.events.clone();
        let why = work.why.clone();
        // Stopped meanwhile: agents of these events may not have started; their events stay
        // (they come back after their visibility timeout, to this watch or the next).
        let finished = result
            .as_ref()
            .ok()
            .filter(|_| !stop.load(Ordering::SeqCst));
        let ok = finished.is_some();
        let undeleted = watcher.done(work, finished).await;
        match result {
            Ok(report) => print_reconcile(&report, &why, events.len(), g.json),
            // A mapping or configuration error does not heal by waiting.
            Err(e) if e.is_input() => {
                watcher.resign().await;
                return Err(e);
            }
            Err(e) => print_failed_reconcile(&e, g.json),
        }
        print_events(&events, if ok { "handled" } else { "kept" }, g.json);
        if !undeleted.is_empty() {
            tracing::warn!(events = ?undeleted, "handled events could not be deleted: they come back and change nothing");
        }
    }
    watcher.resign().await;
    Ok(exit::OK)
}

/// One reconcile: the plan, and (unless a dry run) its run.
async fn once(
    ctx: &Context,
    g: &GlobalArgs,
    a: &SyncArgs,
    settings: &RunSettings,
    waits: Waits,
    scope: Option<app::SyncScope>,
) -> Result<app::ApplyReport, app::Error> {
    let json = g.json;
    let opts = app::ApplyOptions {
        source: app::ApplySource::Groups(scope),
        clear_empty: false,
        prune: a.prune,
        max_remove: a.max_remove,
        skip_invalid: true,
        run: app::RunOptions {
            dry_run: a.dry_run,
            concurrency: a.concurrency,
            bulk_reads: app::BulkReads::Always,
        },
    };
    // A watch prints one line per reconcile, not a progress meter.
    let outs = Outputs::new(a.report.as_deref(), None, json || a.watch, a.dry_run, waits);
    let removals = Removals {
        yes: a.yes,
        command: "sync --prune",
        question: "Delete the Connect users listed above?",
    };
    run(ctx, &opts, settings, outs, &removals).await
}

/// Now, as RFC 3339 in UTC to the millisecond (for the watch's lines).
fn now() -> String {
    let ms = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&ms)
        .unwrap_or_default()
}

/// A flag set by SIGINT or SIGTERM.
fn stop_on_signals() -> Result<Arc<AtomicBool>, app::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = Arc::new(AtomicBool::new(false));
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| app::Error::Input(format!("cannot listen for SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| app::Error::Input(format!("cannot listen for SIGINT: {e}")))?;
    let flag = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        flag.store(true, Ordering::SeqCst);
    });
    Ok(stop)
}

/// One line per reconcile: why, agents read, changes planned, applied, the time.
fn print_reconcile(r: &app::ApplyReport, why: &app::ReconcileWhy, events: usize, json: bool) {
    let planned: usize = (r.counts.iter())
        .filter(|(a, _)| {
            matches!(
                a,
                app::ApplyAction::Create | app::ApplyAction::Update | app::ApplyAction::Remove
            )
        })
        .map(|(_, n)| n)
        .sum();
    let applied: usize = (r.outcomes.iter())
        .filter(|(o, _)| {
            matches!(
                o,
                app::Outcome::Created | app::Outcome::Updated | app::Outcome::Removed
            )
        })
        .map(|(_, n)| n)
        .sum();
    let agents = r.plan.len();
    let at = now();
    if json {
        let line = serde_json::json!({
            "event": "reconcile",
            "at": at,
            "why": why.as_str(),
            "events": events,
            "agents": agents,
            "planned": planned,
            "applied": applied,
            "counts": r.counts,
            "outcomes": r.outcomes,
            "run_id": r.run_id,
            "prune_run_id": r.prune_run_id,
            "elapsed_ms": r.elapsed_ms,
        });
        println!("{line}");
    } else {
        let outcomes: Vec<String> = r.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let of = match events {
            0 => String::new(),
            n => format!(", {n} event(s)"),
        };
        println!(
            "reconcile {at} ({}{of}): {agents} agents read, {planned} changes planned, {applied} applied ({}); {:.1} s",
            why.as_str(),
            outcomes.join(", "),
            r.elapsed_ms as f64 / 1000.0
        );
    }
}

/// A reconcile that failed (an AWS or state failure): said, and the watch goes on.
fn print_failed_reconcile(e: &app::Error, json: bool) {
    let at = now();
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "reconcile_failed", "at": at, "error": e.to_string()})
        );
    } else {
        eprintln!("reconcile {at} failed: {e}; trying again at the next interval");
    }
}

/// One line per event read from the queue: what it asked, and whether it was handled
/// (deleted), ignored (changed nothing; deleted) or kept (its reconcile failed: it comes
/// back).
fn print_events(events: &[app::WatchEvent], status: &str, json: bool) {
    let at = now();
    for e in events {
        let hints: Vec<String> = e.hints.iter().map(ToString::to_string).collect();
        let ms = e.received.elapsed().as_millis() as u64;
        if json {
            let line = serde_json::json!({
                "event": "queue_event",
                "at": at,
                "message_id": e.message_id,
                "hints": hints,
                "status": status,
                "ms_since_received": ms,
            });
            println!("{line}");
        } else {
            println!(
                "event {} {at}: {}: {status} ({:.1} s after it was received)",
                e.message_id,
                hints.join("; "),
                ms as f64 / 1000.0
            );
        }
    }
}

/// Another watcher leads this store: said once per standby spell.
fn print_standby(holder: &str, until: &str, json: bool) {
    let at = now();
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "standby", "at": at, "leader": holder, "lease_until": until})
        );
    } else {
        println!("standby {at}: {holder} leads this state store's sync --watch (lease until {until}); taking over if it stops renewing");
    }
}
