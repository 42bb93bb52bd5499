//! Doctor's `state` check: what connect-onboard's own state file says of the agent (its
//! runs, unfinished steps, owned resources), read only.

use crate::app::Context;
use crate::engine::{AgentState, StepState};

use super::{Check, CheckStatus};

/// What connect-onboard's own state says about the agent: its runs, unfinished steps and
/// owned resources, and the fix of its latest run when that is unfinished. Read only; no
/// state file is created.
pub(super) async fn state_check(ctx: &Context, who: &str) -> (Check, Option<String>) {
    let check = state_check_inner(ctx, who).await;
    let fix = (check.status == CheckStatus::Problem)
        .then(|| check.fix.clone())
        .flatten();
    (check, fix)
}

/// A step's resources as they are best named: the ARN when the step has one (it holds the
/// id), else the ids, labelled.
fn resources(step: &str, outputs: &std::collections::BTreeMap<String, String>) -> String {
    if let Some((_, arn)) = outputs.iter().find(|(k, _)| k.ends_with("_arn")) {
        return format!("{step} {arn}");
    }
    let ids: Vec<String> = outputs.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{step} ({})", ids.join(", "))
}

async fn state_check_inner(ctx: &Context, who: &str) -> Check {
    const ID: &str = "state";
    if !ctx.state_path.exists() {
        return Check::ok(
            ID,
            format!(
                "no state file at {}: connect-onboard has no record of this agent",
                ctx.state_path.display()
            ),
        );
    }
    let store = match ctx.open_store() {
        Ok(s) => s,
        Err(e) => {
            return Check::unknown(
                ID,
                format!("cannot read the state file: {e}"),
                "check --state / [state] path".into(),
            )
        }
    };
    let keys = [who.to_string(), who.to_lowercase()];
    let runs = match store.runs().await {
        Ok(r) => r,
        Err(e) => {
            return Check::unknown(
                ID,
                format!("cannot read the state file: {e}"),
                "check --state / [state] path".into(),
            )
        }
    };
    let mut seen = Vec::new();
    let mut unfinished = Vec::new();
    let mut owned = Vec::new();
    let mut latest: Option<(String, AgentState)> = None;
    for run in &runs {
        let mut found = None;
        for k in &keys {
            if let Ok(a) = store.agent(&run.id, k).await {
                found = Some(a);
                break;
            }
        }
        let Some(agent) = found else {
            continue;
        };
        seen.push(format!("{} {}", run.id, agent.state.as_str()));
        for s in store
            .steps(&run.id, &agent.agent_key)
            .await
            .unwrap_or_default()
        {
            if s.owned
                && matches!(
                    s.state,
                    StepState::Done | StepState::Running | StepState::NeedsAttention
                )
            {
                owned.push(resources(&s.step_id, &s.outputs));
            }
            if !matches!(
                s.state,
                StepState::Done | StepState::Adopted | StepState::RolledBack | StepState::Pending
            ) {
                unfinished.push(format!("{}:{} {}", run.id, s.step_id, s.state.as_str()));
            }
        }
        latest = Some((run.id.clone(), agent.state));
    }
    let detail = if seen.is_empty() {
        format!("no run in {} has this agent", ctx.state_path.display())
    } else {
        format!(
            "runs: {}; unfinished steps: {}; owned resources: {}",
            seen.join(", "),
            if unfinished.is_empty() {
                "none".into()
            } else {
                unfinished.join(", ")
            },
            if owned.is_empty() {
                "none".into()
            } else {
                owned.join(", ")
            }
        )
    };
    match latest {
        Some((run, state))
            if !matches!(
                state,
                AgentState::Done | AgentState::Released | AgentState::RolledBack
            ) =>
        {
            let fix = match state {
                AgentState::NeedsAttention => {
                    format!("connect-onboard rollback {run} --email {who}, or release it")
                }
                AgentState::Failed => format!("connect-onboard retry {run}"),
                _ => format!("connect-onboard resume {run}"),
            };
            Check::problem(
                ID,
                format!("the latest run left the agent {}: {detail}", state.as_str()),
                fix,
            )
        }
        _ => Check::ok(ID, detail),
    }
}
