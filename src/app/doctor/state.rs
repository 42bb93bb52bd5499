//! Doctor's `state` check: what connect-onboard's own state file says of the agent (its
//! runs, unfinished steps, owned resources), read only.

use crate::app::{Context, StateStore};
use crate::engine::{AgentKey, AgentState, StepState};
use crate::store;

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
    let unreadable = |e: &dyn std::fmt::Display| {
        Check::unknown(
            ID,
            format!("cannot read the state store: {e}"),
            "check --state / [state] path or url".into(),
        )
    };
    match ctx.has_state().await {
        Ok(true) => {}
        Ok(false) => {
            return Check::ok(
                ID,
                format!(
                    "no state file at {}: connect-onboard has no record of this agent",
                    ctx.state
                ),
            )
        }
        Err(e) => return unreadable(&e),
    }
    let store = match ctx.open_store().await {
        Ok(s) => s,
        Err(e) => return unreadable(&e),
    };
    let history = match History::read(&store, who).await {
        Ok(h) => h,
        Err(e) => return unreadable(&e),
    };
    let detail = history.detail(ctx);
    match history.latest {
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

/// What the state file holds of one agent, over every run.
#[derive(Default)]
struct History {
    /// Each run that has the agent, with the agent's state there.
    seen: Vec<String>,
    /// Steps neither finished nor pending, as `run:step state`.
    unfinished: Vec<String>,
    /// Resources the agent's runs created and still hold.
    owned: Vec<String>,
    /// The last run that has the agent, and its state there.
    latest: Option<(String, AgentState)>,
}

impl History {
    /// Reads every run for the agent, keyed as written or lower-cased.
    async fn read(store: &StateStore, who: &str) -> Result<History, store::Error> {
        let keys = [AgentKey::from(who), AgentKey::from(who.to_lowercase())];
        let mut history = History::default();
        for run in &store.runs().await? {
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
            history
                .seen
                .push(format!("{} {}", run.id, agent.state.as_str()));
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
                    history.owned.push(resources(&s.step_id, &s.outputs));
                }
                if !matches!(
                    s.state,
                    StepState::Done
                        | StepState::Adopted
                        | StepState::RolledBack
                        | StepState::Pending
                ) {
                    (history.unfinished).push(format!(
                        "{}:{} {}",
                        run.id,
                        s.step_id,
                        s.state.as_str()
                    ));
                }
            }
            history.latest = Some((run.id.to_string(), agent.state));
        }
        Ok(history)
    }

    /// The check's detail: the runs, unfinished steps and owned resources.
    fn detail(&self, ctx: &Context) -> String {
        if self.seen.is_empty() {
            return format!("no run in {} has this agent", ctx.state);
        }
        let or_none = |items: &[String]| {
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        format!(
            "runs: {}; unfinished steps: {}; owned resources: {}",
            self.seen.join(", "),
            or_none(&self.unfinished),
            or_none(&self.owned)
        )
    }
}
