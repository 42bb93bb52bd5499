//! The executor's entry points: [`Engine`] (plan, run, roll back or release one agent) and
//! the per-agent [`Driver`] it builds: lease, checkpointed step states, lease renewal.
//! The forward pass lives in `execute`, compensation in `compensate`.

use super::journal::EventKind;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::action::{Found, Outputs, Registry, Secrets, StepContext};
use super::clock::{Clock, SystemClock};
use super::definition::{Step, Workflow};
use super::hooks::{CrashPoint, ProgressFn};
use super::ids::{AgentKey, RunId, StepId};
use super::journal::{Change, Journal, JournalError, StepUpdate};
use super::state::{AgentState, OnFailure, StepState};

/// Options of one engine pass.
#[derive(Clone)]
pub struct EngineOptions {
    /// Time: the system clock, or a virtual one in tests.
    pub clock: Arc<dyn Clock>,
    /// Lease time-to-live.
    pub lease_ttl_ms: i64,
    /// Crash hook for tests: abort the process at this point of this step.
    pub crash_at: Option<(CrashPoint, String)>,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            clock: Arc::new(SystemClock),
            lease_ttl_ms: 30_000,
            crash_at: None,
            progress: None,
        }
    }
}

/// Failures of the engine itself (not of a step: those end up in the agent's state).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The journal failed or the lease is held elsewhere.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The stored subject no longer deserializes.
    #[error("agent {agent}: stored subject does not parse: {source}")]
    Subject {
        /// Agent key.
        agent: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// `rollback` of a workflow whose steps delete: deletes are never undone.
    #[error("run {run}: workflow {workflow} deletes (irreversible steps: {steps}); a deletion is never undone, so there is nothing to roll back")]
    Irreversible {
        /// Run id.
        run: String,
        /// Workflow name.
        workflow: String,
        /// The irreversible step ids, comma-separated.
        steps: String,
    },
    /// The run's steps do not match the workflow.
    #[error("run {run}: the stored steps do not match workflow {workflow}")]
    Mismatch {
        /// Run id.
        run: String,
        /// Workflow name.
        workflow: String,
    },
}

/// The result of driving one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutcome {
    /// Final state of this pass.
    pub state: AgentState,
    /// The error that stopped it, if any.
    pub error: Option<String>,
    /// What the pass left in the journal, as it wrote it (a pass that ended with its lease
    /// released); the caller need not read it back.
    pub record: Option<AgentRecord>,
}

/// An agent as its pass left it in the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    /// The agent's state.
    pub state: AgentState,
    /// The agent's last error.
    pub last_error: Option<String>,
    /// Each step: id, state, recorded outputs.
    pub steps: Vec<(StepId, StepState, Outputs)>,
}

/// What a dry run found a step would need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanDecision {
    /// Absent: would be created.
    Create,
    /// Exists and fits: would be adopted.
    Adopt,
    /// Exists and differs: the agent would fail with zero writes.
    Conflict,
    /// The lookup failed.
    Unknown,
    /// An irreversible step: present, would be deleted.
    Delete,
    /// An irreversible step: absent, nothing to delete.
    Gone,
}

impl PlanDecision {
    /// The word printed and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanDecision::Create => "create",
            PlanDecision::Adopt => "adopt",
            PlanDecision::Conflict => "conflict",
            PlanDecision::Unknown => "unknown",
            PlanDecision::Delete => "delete",
            PlanDecision::Gone => "gone",
        }
    }

    /// Whether a run could go ahead with it (no conflict, no failed lookup).
    pub fn is_clean(self) -> bool {
        !matches!(self, PlanDecision::Conflict | PlanDecision::Unknown)
    }
}

/// What a dry run would do for one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStep {
    /// Step id.
    pub step: String,
    /// Create, adopt, conflict or unknown (serialised as `action`, the JSON's name for it).
    #[serde(rename = "action")]
    pub decision: PlanDecision,
    /// Ids found, or the conflict.
    pub detail: String,
}

/// The executor: a workflow, its actions and the store.
pub struct Engine<S> {
    pub(super) workflow: Workflow,
    pub(super) registry: Registry<S>,
    pub(super) journal: Arc<dyn Journal>,
    pub(super) opts: EngineOptions,
    /// Agents taking their lease at once (see [`LEASES_IN_FLIGHT`]).
    leasing: Arc<tokio::sync::Semaphore>,
}

/// At most this many agents of one engine take their lease at the same moment. A batch
/// starts `--concurrency` agents together: on a store that answers over the network in
/// order (one table server), every lease would be queued before the first agent's next
/// write, and the first AWS write would wait for all of them; so the first agents' writes
/// go ahead while the others are admitted. Once agents finish one at a time, it never binds.
pub const LEASES_IN_FLIGHT: usize = 8;

pub(super) struct StepRt {
    pub(super) state: StepState,
    pub(super) owned: bool,
    pub(super) unresolved: bool,
    pub(super) outputs: Outputs,
    pub(super) last_write_ms: Option<i64>,
}

pub(super) enum Lookup {
    Absent,
    Match(Outputs),
    Conflict(String),
    /// Inputs not known yet (an earlier step will create them).
    Unknown,
}

pub(super) struct Driver<'a, S> {
    pub(super) engine: &'a Engine<S>,
    pub(super) run: RunId,
    pub(super) agent: AgentKey,
    pub(super) token: String,
    pub(super) subject: S,
    pub(super) secrets: &'a Secrets,
    pub(super) steps: Vec<StepRt>,
    /// The agent's state when the lease was taken (what the pass starts from).
    pub(super) state_at_start: AgentState,
    /// What to do on a permanent failure (fixed when the agent was created).
    pub(super) on_failure: OnFailure,
    pub(super) lost: Arc<AtomicBool>,
    pub(super) renewer: tokio::task::JoinHandle<()>,
    /// Checkpoints that precede no write, committed with the next durable record.
    pub(super) deferred: Vec<Change>,
    /// The agent's state and last error as last committed.
    pub(super) committed: (AgentState, Option<String>),
    /// Every change was committed, the lease's release included.
    pub(super) released: bool,
    /// The step whose intent was declared in the checkpoint of the step before it (both
    /// looked up absent by the plan), and when: its create then sends without a
    /// checkpoint of its own (see `Driver::take_declared`).
    pub(super) declared: Option<(usize, i64)>,
}

pub(super) enum Stop {
    Permanent(String),
    Interrupted(String),
}

impl<S> Engine<S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Builds an engine.
    pub fn new(
        workflow: Workflow,
        registry: Registry<S>,
        journal: Arc<dyn Journal>,
        opts: EngineOptions,
    ) -> Self {
        Engine {
            workflow,
            registry,
            journal,
            opts,
            leasing: Arc::new(tokio::sync::Semaphore::new(LEASES_IN_FLIGHT)),
        }
    }

    /// Takes `agent`'s lease under `token` (at most [`LEASES_IN_FLIGHT`] at once).
    async fn take_lease(&self, run: &RunId, agent: &AgentKey, token: &str) -> Result<(), Error> {
        let _turn = self.leasing.acquire().await;
        self.journal
            .acquire_lease(run, agent, token, self.opts.lease_ttl_ms)
            .await?;
        Ok(())
    }

    /// The workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// Looks every step up without writing anything (a dry run): which steps would be
    /// created, which adopted, which are in conflict.
    pub async fn plan(&self, subject: &S, secrets: &Secrets) -> Vec<PlannedStep> {
        let mut known: BTreeMap<String, Outputs> = BTreeMap::new();
        let mut out = Vec::new();
        for step in &self.workflow.steps {
            let action = &self.registry[&step.action];
            let inputs = bind(step, &known);
            let unbound = inputs.is_none();
            let inputs = inputs.unwrap_or_else(|| bind_known(step, &known));
            let cx = StepContext {
                subject,
                inputs: &inputs,
                secrets,
                attempt: 1,
            };
            let found = if unbound {
                action.lookup_unbound(&cx).await
            } else {
                Some(action.lookup(&cx).await)
            };
            let planned = match found {
                None => PlannedStep {
                    step: step.id.clone(),
                    decision: PlanDecision::Create,
                    detail: "depends on a resource this run creates".into(),
                },
                Some(found) => match found {
                    Ok(Found::Absent) => PlannedStep {
                        step: step.id.clone(),
                        decision: if step.irreversible {
                            PlanDecision::Gone
                        } else {
                            PlanDecision::Create
                        },
                        detail: String::new(),
                    },
                    Ok(Found::Match(o)) if step.irreversible => PlannedStep {
                        step: step.id.clone(),
                        decision: PlanDecision::Delete,
                        detail: fmt_outputs(&o),
                    },
                    Ok(Found::Match(o)) => {
                        let d = fmt_outputs(&o);
                        known.insert(step.id.clone(), o);
                        PlannedStep {
                            step: step.id.clone(),
                            decision: PlanDecision::Adopt,
                            detail: d,
                        }
                    }
                    Ok(Found::Conflict(m)) => PlannedStep {
                        step: step.id.clone(),
                        decision: PlanDecision::Conflict,
                        detail: m,
                    },
                    Err(e) => PlannedStep {
                        step: step.id.clone(),
                        decision: PlanDecision::Unknown,
                        detail: format!("lookup failed: {e}"),
                    },
                },
            };
            out.push(planned);
        }
        out
    }

    /// Drives one agent forward: plan, then create what is missing, compensating on a
    /// permanent failure according to its `on_failure`. Resumes where a previous pass
    /// stopped; an agent that was rolling back finishes its rollback instead.
    pub async fn run_agent(
        &self,
        run: &str,
        agent: &str,
        secrets: &Secrets,
    ) -> Result<AgentOutcome, Error> {
        let mut d = self.driver(run, agent, secrets).await?;
        let res = d.forward().await;
        let finished = d.finish().await;
        let mut outcome = res?;
        finished?;
        outcome.record = d.record();
        Ok(outcome)
    }

    /// Tries a failed or rolled-back agent again in its run, after its cause was fixed:
    /// steps that failed or were rolled back start over (what is done or adopted stays),
    /// optionally with a corrected `subject`; then the agent is driven forward. An agent in
    /// any other state is driven as by [`Engine::run_agent`].
    pub async fn retry_agent(
        &self,
        run: &str,
        agent: &str,
        secrets: &Secrets,
        subject: Option<&serde_json::Value>,
    ) -> Result<AgentOutcome, Error> {
        let (run, agent) = (&RunId::from(run), &AgentKey::from(agent));
        let token = uuid::Uuid::new_v4().to_string();
        self.take_lease(run, agent, &token).await?;
        let reset = async {
            let row = self.journal.agent(run, agent).await?;
            if !matches!(row.state, AgentState::Failed | AgentState::RolledBack) {
                return Ok(());
            }
            if let Some(s) = subject {
                self.journal.set_subject(run, agent, &token, s).await?;
            }
            for step in self.journal.steps(run, agent).await? {
                let up = match step.state {
                    StepState::Failed => StepUpdate {
                        state: Some(StepState::Pending),
                        last_error: Some(None),
                        ..Default::default()
                    },
                    StepState::RolledBack => StepUpdate {
                        state: Some(StepState::Pending),
                        owned: Some(false),
                        unresolved: Some(false),
                        outputs: Some(Outputs::new()),
                        last_error: Some(None),
                        ..Default::default()
                    },
                    _ => continue,
                };
                self.journal
                    .update_step(run, agent, &token, &step.step_id, &up, EventKind::StepRetry)
                    .await?;
            }
            self.journal
                .set_agent_state(run, agent, &token, AgentState::Pending, None)
                .await?;
            Ok::<(), Error>(())
        }
        .await;
        let _ = self.journal.release_lease(run, agent, &token).await;
        reset?;
        self.run_agent(run, agent, secrets).await
    }

    /// Compensates the agent's owned steps (explicit `rollback`). Refused for a workflow
    /// with irreversible steps: what it deleted cannot be brought back.
    pub async fn rollback_agent(
        &self,
        run: &str,
        agent: &str,
        secrets: &Secrets,
    ) -> Result<AgentOutcome, Error> {
        self.reversible(run)?;
        let mut d = self.driver(run, agent, secrets).await?;
        let res = d.compensate(None).await;
        let finished = d.finish().await;
        let outcome = res?;
        finished?;
        Ok(outcome)
    }

    /// A run whose steps delete cannot be rolled back.
    fn reversible(&self, run: &str) -> Result<(), Error> {
        let irreversible = self.workflow.irreversible_steps();
        if irreversible.is_empty() {
            Ok(())
        } else {
            Err(Error::Irreversible {
                run: run.to_string(),
                workflow: self.workflow.name.clone(),
                steps: irreversible.join(", "),
            })
        }
    }

    /// What [`Engine::rollback_agent`] would remove, touching nothing: the steps the agent
    /// owns or may own (compensation's candidates), last first, with their recorded ids.
    /// Adopted and shared resources are never removed, so they are not listed.
    pub async fn rollback_plan(
        &self,
        run: &str,
        agent: &str,
    ) -> Result<Vec<(String, Outputs)>, Error> {
        self.reversible(run)?;
        let rows = (self.journal)
            .steps(&RunId::from(run), &AgentKey::from(agent))
            .await?;
        let mut out = Vec::new();
        for step in self.workflow.steps.iter().rev() {
            let Some(row) = rows.iter().find(|r| r.step_id == step.id) else {
                continue;
            };
            let candidate = !matches!(row.state, StepState::Adopted | StepState::RolledBack)
                && (row.owned || row.unresolved);
            if candidate && !self.registry[&step.action].shared() {
                out.push((step.id.clone(), row.outputs.clone()));
            }
        }
        Ok(out)
    }

    /// Marks an agent released: its leftovers are kept and no longer owned by the run.
    pub async fn release_agent(&self, run: &str, agent: &str) -> Result<(), Error> {
        let (run, agent) = (&RunId::from(run), &AgentKey::from(agent));
        let token = uuid::Uuid::new_v4().to_string();
        self.take_lease(run, agent, &token).await?;
        for step in &self.workflow.steps {
            self.journal
                .update_step(
                    run,
                    agent,
                    &token,
                    &StepId::from(&step.id),
                    &StepUpdate {
                        owned: Some(false),
                        unresolved: Some(false),
                        ..Default::default()
                    },
                    EventKind::Released,
                )
                .await?;
        }
        self.journal
            .set_agent_state(
                run,
                agent,
                &token,
                AgentState::Released,
                Some("released by operator"),
            )
            .await?;
        self.journal.release_lease(run, agent, &token).await?;
        Ok(())
    }

    async fn driver<'a>(
        &'a self,
        run: &str,
        agent: &str,
        secrets: &'a Secrets,
    ) -> Result<Driver<'a, S>, Error> {
        let (run, agent) = (&RunId::from(run), &AgentKey::from(agent));
        let token = uuid::Uuid::new_v4().to_string();
        self.take_lease(run, agent, &token).await?;
        let row = self.journal.agent(run, agent).await?;
        let subject: S =
            serde_json::from_value(row.subject.clone()).map_err(|source| Error::Subject {
                agent: agent.to_string(),
                source,
            })?;
        let rows = self.journal.steps(run, agent).await?;
        if rows.len() != self.workflow.steps.len()
            || rows
                .iter()
                .zip(&self.workflow.steps)
                .any(|(r, s)| r.step_id != s.id)
        {
            let _ = self.journal.release_lease(run, agent, &token).await;
            return Err(Error::Mismatch {
                run: run.to_string(),
                workflow: self.workflow.name.clone(),
            });
        }
        let steps = rows
            .into_iter()
            .map(|r| StepRt {
                state: r.state,
                owned: r.owned,
                unresolved: r.unresolved,
                outputs: r.outputs,
                last_write_ms: r.last_write_ms,
            })
            .collect();
        let lost = Arc::new(AtomicBool::new(false));
        // Renew the lease in the background; a failed renewal fences this driver.
        let renewer = {
            let journal = self.journal.clone();
            let (run, agent, token, lost) =
                (run.clone(), agent.clone(), token.clone(), lost.clone());
            let ttl = self.opts.lease_ttl_ms;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis((ttl / 3).max(10) as u64)).await;
                    if journal
                        .renew_lease(&run, &agent, &token, ttl)
                        .await
                        .is_err()
                    {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        Ok(Driver {
            engine: self,
            run: run.clone(),
            agent: agent.clone(),
            token,
            subject,
            secrets,
            steps,
            state_at_start: row.state,
            on_failure: row.on_failure,
            lost,
            renewer,
            deferred: Vec::new(),
            committed: (row.state, row.last_error.clone()),
            released: false,
            declared: None,
        })
    }
}

pub(super) fn bind(step: &Step, known: &BTreeMap<String, Outputs>) -> Option<Outputs> {
    let mut inputs = Outputs::new();
    for (name, (src, out)) in &step.inputs {
        let v = known.get(src)?.get(out)?;
        inputs.insert(name.clone(), v.clone());
    }
    Some(inputs)
}

/// The inputs of `step` whose source steps are known (a dry run's partial binding).
fn bind_known(step: &Step, known: &BTreeMap<String, Outputs>) -> Outputs {
    (step.inputs.iter())
        .filter_map(|(name, (src, out))| Some((name.clone(), known.get(src)?.get(out)?.clone())))
        .collect()
}

pub(super) fn fmt_outputs(o: &Outputs) -> String {
    o.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
