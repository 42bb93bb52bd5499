//! `status`: what the state file says about runs, agents and steps, as the JSON `status
//! --json` prints.

use serde::Serialize;

use crate::engine::{AgentState, RunId, StepState};
use crate::store::RunStore;

use super::{Context, Error};

/// What to run next for an agent left in `state` in `run`: the one advice every command
/// gives for that state (`None`: nothing is left to do). An agent that needs attention is
/// told `rollback` or `release`, never `resume`, which skips it.
pub(crate) fn advice(state: AgentState, run: &str, agent: &str) -> Option<String> {
    match state {
        AgentState::NeedsAttention => Some(format!(
            "`connect-onboard rollback {run} --email {agent}` once the cause is fixed, or `connect-onboard release {run} --email {agent}` to keep its leftovers"
        )),
        AgentState::Pending
        | AgentState::Running
        | AgentState::Interrupted
        | AgentState::RollingBack => Some(format!("`connect-onboard resume {run}`")),
        AgentState::Failed => Some(format!("`connect-onboard retry {run}` once the cause is fixed")),
        AgentState::Done | AgentState::RolledBack | AgentState::Released => None,
    }
}

/// Status of one run, or of every run. A state file that does not exist yet (and was not
/// named with `--state`) means nothing has run: no runs.
pub async fn status(ctx: &Context, run_id: Option<&str>) -> Result<Vec<RunStatus>, Error> {
    if run_id.is_none() && ctx.globals.state.is_none() && !ctx.has_state().await? {
        return Ok(Vec::new());
    }
    let store = ctx.existing_store().await?;
    let ids = match run_id {
        Some(id) => vec![RunId::from(id)],
        None => store.runs().await?.into_iter().map(|r| r.id).collect(),
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(run_status(&*store, &id).await?);
    }
    Ok(out)
}

/// One run, as `status --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    /// Run id.
    pub run_id: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Workflow name.
    pub workflow: String,
    /// Where it onboards.
    pub target: serde_json::Value,
    /// Agents by state.
    pub counts: std::collections::BTreeMap<AgentState, usize>,
    /// Agents.
    pub agents: Vec<AgentStatus>,
}

/// One agent of a run.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// Normalised email (the agent's key).
    pub email: String,
    /// Agent state.
    pub state: AgentState,
    /// Last error.
    pub last_error: Option<String>,
    /// What to run next for its state (the one advice: `resume`, `retry`, or `rollback` /
    /// `release` for an agent that needs attention); `null` when nothing is left to do.
    pub next: Option<String>,
    /// Where the agent signs in.
    pub portal_url: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Steps in order.
    pub steps: Vec<StepStatus>,
}

/// One step of an agent.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    /// Step id.
    pub id: String,
    /// Step state.
    pub state: StepState,
    /// Created by this run (compensation may delete it).
    pub owned: bool,
    /// Adopted: found existing and left alone by compensation.
    pub adopted: bool,
    /// A write whose outcome is not known yet.
    pub unresolved: bool,
    /// Resource ids.
    pub resources: std::collections::BTreeMap<String, String>,
    /// Write attempts.
    pub attempts: i64,
    /// Last error.
    pub last_error: Option<String>,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

pub(crate) async fn run_status(store: &dyn RunStore, run_id: &RunId) -> Result<RunStatus, Error> {
    let run = store.run(run_id).await?;
    // An offboarded agent signs in nowhere any more.
    let removes = super::drive::direction_of_row(&run) == super::drive::Direction::Offboards;
    let portal = (run.meta.get("portal_url"))
        .and_then(|v| v.as_str())
        .filter(|_| !removes)
        .map(str::to_string);
    let mut agents = Vec::new();
    for a in store.agents(run_id).await? {
        let steps = store
            .steps(run_id, &a.agent_key)
            .await?
            .into_iter()
            .map(|s| StepStatus {
                adopted: s.state == StepState::Adopted,
                id: s.step_id.into_string(),
                state: s.state,
                owned: s.owned,
                unresolved: s.unresolved,
                resources: s.outputs,
                attempts: s.attempts,
                last_error: s.last_error,
                updated_at: s.updated_at,
            })
            .collect();
        agents.push(AgentStatus {
            next: advice(a.state, run_id, &a.agent_key),
            email: a.agent_key.into_string(),
            state: a.state,
            last_error: a.last_error,
            portal_url: portal.clone(),
            created_at: a.created_at,
            updated_at: a.updated_at,
            steps,
        });
    }
    let mut counts = std::collections::BTreeMap::new();
    for a in &agents {
        *counts.entry(a.state).or_default() += 1;
    }
    Ok(RunStatus {
        counts,
        run_id: run.id.into_string(),
        created_at: run.created_at,
        workflow: run.workflow_name,
        target: run.meta,
        agents,
    })
}
