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
        let mut header = format!("  {:<32} {:<16}", "AGENT", "STATE");
        for s in &first.steps {
            header.push_str(&format!(" {:<18}", s.id.to_uppercase()));
        }
        let _ = writeln!(out, "{}", header.trim_end());
        for a in &r.agents {
            let mut line = format!("  {:<32} {:<16}", a.email, a.state.as_str());
            for s in &a.steps {
                line.push_str(&format!(" {:<18}", step_cell(s)));
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if let Some(e) = &a.last_error {
                let _ = writeln!(out, "    last error: {e}");
            }
        }
        for a in r.agents.iter().filter(|a| a.state == AgentState::Done) {
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
