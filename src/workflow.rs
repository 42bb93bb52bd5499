//! The generic durable workflow engine: workflow definitions as data, and the executor that
//! runs, resumes and compensates them one agent at a time over the checkpoint store.
//!
//! **Invariant: nothing here knows about AWS.** Steps are [`Action`]s named in a registry the
//! caller supplies; subjects are any serde type; resources are opaque id maps.
//!
//! The semantics, each clause tested in `tests` below and end to end in `tests/it`:
//! - **Look up, then act.** Before any write, every step whose inputs are known is looked
//!   up (the *plan*). A conflicting resource fails the agent with zero writes. A matching one
//!   is **adopted** and never owned, so never compensated.
//! - **Write-ahead.** A step's intent (`running`, `unresolved`) is committed before its write
//!   and its result immediately after. A write whose outcome is unknown (5xx, timeout, crash)
//!   leaves `unresolved` set: if the resource is found later, it is **owned** by the run. A
//!   write that was definitely refused (throttled, invalid) clears it again, so a resource
//!   someone else creates later is never mistaken for ours.
//! - **Compensation** deletes, in reverse order, only owned, non-shared resources; it is
//!   checkpointed, idempotent (not-found = done once the step's settle window has passed)
//!   and resumable. A compensation that keeps failing leaves the agent `needs_attention`.
//! - **Error classes** decide: transient errors retry with exponential backoff and full
//!   jitter within the step's budget, then leave the agent `interrupted` (resumable);
//!   permanent ones fail the agent and trigger compensation (or keep, by option).
//! - **One writer per agent** through the store's lease; every checkpoint is fenced by it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{self, now_ms, StepUpdate, Store};

/// Resource ids produced by a step (e.g. `user_id`), recorded in the checkpoint.
pub type Outputs = BTreeMap<String, String>;

/// How a failure should be treated. Set by the action from the service's error *code*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Retry later; the write certainly did not happen (throttled, propagation race).
    Transient,
    /// Retry later; the write may have happened (5xx, timeout, dropped connection).
    Ambiguous,
    /// Do not retry (validation, access denied, quota).
    Permanent,
    /// The resource exists and differs from what the agent needs.
    Conflict,
    /// The resource does not exist (on delete: nothing left to do).
    NotFound,
    /// A create found the resource already there.
    AlreadyExists,
}

/// An action's failure: a class, the service's error code and its message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StepError {
    /// The class, which drives the engine.
    pub kind: ErrorKind,
    /// The service's error code (or a local one such as `Conflict`).
    pub code: String,
    /// Human message.
    pub message: String,
}

impl StepError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        StepError {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Nothing there.
    Absent,
    /// A resource that fits the subject, with its ids.
    Match(Outputs),
    /// A resource that is in the way; the message names both values.
    Conflict(String),
}

/// Values only held in memory for the duration of a process (passwords). Never persisted,
/// never printed.
#[derive(Clone, Default)]
pub struct Secrets(HashMap<String, String>);

impl Secrets {
    /// Adds a secret.
    pub fn insert(&mut self, k: &str, v: String) {
        self.0.insert(k.to_string(), v);
    }
    /// Reads a secret.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// What an action sees: the subject, its resolved inputs and the in-memory secrets.
pub struct StepContext<'a, S> {
    /// The validated subject (an agent).
    pub subject: &'a S,
    /// Inputs bound from earlier steps' outputs, by input name.
    pub inputs: &'a Outputs,
    /// In-memory secrets.
    pub secrets: &'a Secrets,
}

impl<S> StepContext<'_, S> {
    /// A bound input; the workflow validation guarantees required inputs are bound.
    pub fn input(&self, name: &str) -> Result<&str, StepError> {
        self.inputs.get(name).map(String::as_str).ok_or_else(|| {
            StepError::new(
                ErrorKind::Permanent,
                "MissingInput",
                format!("input {name} has no value"),
            )
        })
    }
}

/// A built-in step: idempotent lookup, create and delete of one resource.
#[async_trait::async_trait]
pub trait Action<S: Sync>: Send + Sync {
    /// Inputs it needs (bound in the workflow file to earlier steps' outputs).
    fn inputs(&self) -> &'static [&'static str] {
        &[]
    }
    /// Outputs it produces.
    fn outputs(&self) -> &'static [&'static str];
    /// Shared resources (used by every agent) are never compensated by one agent's rollback.
    fn shared(&self) -> bool {
        false
    }
    /// Looks for the resource, read-only.
    async fn lookup(&self, cx: &StepContext<'_, S>) -> Result<Found, StepError>;
    /// Creates the resource. `AlreadyExists` if it is there already.
    async fn create(&self, cx: &StepContext<'_, S>) -> Result<Outputs, StepError>;
    /// Deletes the resource recorded in `outputs`. `NotFound` if it is gone.
    async fn delete(&self, cx: &StepContext<'_, S>, outputs: &Outputs) -> Result<(), StepError>;
}

/// The built-in actions by name.
pub type Registry<S> = BTreeMap<String, Arc<dyn Action<S>>>;

/// Retry budget of a step, as data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in one engine pass, including the first (≥ 1).
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff_ms: u64,
    /// Cap of a backoff.
    pub max_backoff_ms: u64,
    /// Growth factor (≥ 1).
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff_ms: 500,
            max_backoff_ms: 20_000,
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based), with full jitter: uniform in
    /// `[0, min(max, initial * multiplier^(retry-1))]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = (self.initial_backoff_ms as f64
            * self.multiplier.powi(retry.saturating_sub(1) as i32))
        .min(self.max_backoff_ms as f64);
        let ms = if cap <= 0.0 {
            0.0
        } else {
            rand::random::<f64>() * cap
        };
        Duration::from_millis(ms as u64)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDef {
    id: String,
    action: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    retry: Option<RetryPolicy>,
    #[serde(default)]
    settle_ms: Option<u64>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowDef {
    version: u32,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    retry: Option<RetryPolicy>,
    steps: Vec<StepDef>,
}

/// A step of a validated workflow.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique id.
    pub id: String,
    /// Action name in the registry.
    pub action: String,
    /// Human description.
    pub description: Option<String>,
    /// Retry budget.
    pub retry: RetryPolicy,
    /// Eventual-consistency window after this step's latest write, during which "not found"
    /// on lookup or delete may just mean "not visible yet".
    pub settle_ms: u64,
    /// Input name → (step id, output name).
    pub inputs: BTreeMap<String, (String, String)>,
}

/// A validated workflow: steps in order, every reference resolved.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Steps in execution order.
    pub steps: Vec<Step>,
    /// The source text (snapshotted into each run).
    pub source: String,
}

/// A workflow file that is not valid.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// TOML syntax or shape.
    #[error("workflow {origin}: {message}")]
    Parse {
        /// File or "built-in".
        origin: String,
        /// Parser message (names the key and line).
        message: String,
    },
    /// A semantic problem.
    #[error("workflow {origin}: {message}")]
    Invalid {
        /// File or "built-in".
        origin: String,
        /// What is wrong.
        message: String,
    },
}

impl Workflow {
    /// Parses and validates a workflow against the registry: version 1, unique step ids,
    /// known actions, every required input bound to an output of an *earlier* step, no
    /// unknown inputs, sane retry policies.
    pub fn parse<S: Sync>(
        source: &str,
        origin: &str,
        registry: &Registry<S>,
    ) -> Result<Workflow, WorkflowError> {
        let def: WorkflowDef = toml::from_str(source).map_err(|e| WorkflowError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| WorkflowError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if def.version != 1 {
            return Err(invalid(format!(
                "version {} is not supported (expected 1)",
                def.version
            )));
        }
        if def.steps.is_empty() {
            return Err(invalid("has no steps".into()));
        }
        let id_re = regex::Regex::new("^[a-z][a-z0-9_]{0,63}$").expect("static regex");
        let mut steps: Vec<Step> = Vec::new();
        for s in &def.steps {
            if !id_re.is_match(&s.id) {
                return Err(invalid(format!(
                    "step id {:?} must match ^[a-z][a-z0-9_]{{0,63}}$",
                    s.id
                )));
            }
            if steps.iter().any(|p| p.id == s.id) {
                return Err(invalid(format!("duplicate step id {:?}", s.id)));
            }
            let Some(action) = registry.get(&s.action) else {
                let known: Vec<&str> = registry.keys().map(String::as_str).collect();
                return Err(invalid(format!(
                    "step {:?}: unknown action {:?} (known: {})",
                    s.id,
                    s.action,
                    known.join(", ")
                )));
            };
            let mut inputs = BTreeMap::new();
            for (name, reference) in &s.inputs {
                if !action.inputs().contains(&name.as_str()) {
                    return Err(invalid(format!(
                        "step {:?}: action {} takes no input {:?} (it takes: {})",
                        s.id,
                        s.action,
                        name,
                        action.inputs().join(", ")
                    )));
                }
                let Some((step_ref, output)) = reference.split_once('.') else {
                    return Err(invalid(format!(
                        "step {:?}: input {name} = {reference:?} must be \"<step>.<output>\"",
                        s.id
                    )));
                };
                let Some(src) = steps.iter().find(|p| p.id == step_ref) else {
                    return Err(invalid(format!(
                        "step {:?}: input {name} refers to {step_ref:?}, which is not an earlier step",
                        s.id
                    )));
                };
                let src_action = &registry[&src.action];
                if !src_action.outputs().contains(&output) {
                    return Err(invalid(format!(
                        "step {:?}: input {name} refers to output {output:?} of {step_ref:?}, which produces only: {}",
                        s.id,
                        src_action.outputs().join(", ")
                    )));
                }
                inputs.insert(name.clone(), (step_ref.to_string(), output.to_string()));
            }
            for needed in action.inputs() {
                if !inputs.contains_key(*needed) {
                    return Err(invalid(format!(
                        "step {:?}: action {} needs input {needed:?}, which is not bound",
                        s.id, s.action
                    )));
                }
            }
            let retry = s.retry.or(def.retry).unwrap_or_default();
            if retry.max_attempts == 0
                || retry.multiplier < 1.0
                || retry.initial_backoff_ms > retry.max_backoff_ms
            {
                return Err(invalid(format!(
                    "step {:?}: retry needs max_attempts >= 1, multiplier >= 1 and initial_backoff_ms <= max_backoff_ms",
                    s.id
                )));
            }
            steps.push(Step {
                id: s.id.clone(),
                action: s.action.clone(),
                description: s.description.clone(),
                retry,
                settle_ms: s.settle_ms.unwrap_or(0),
                inputs,
            });
        }
        Ok(Workflow {
            name: def.name,
            description: def.description,
            steps,
            source: source.to_string(),
        })
    }

    /// Step ids in order.
    pub fn step_ids(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.id.clone()).collect()
    }
}

/// A step's state in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Not started.
    Pending,
    /// Write intent recorded; outcome being determined.
    Running,
    /// Created by this run.
    Done,
    /// Found existing and matching; not ours.
    Adopted,
    /// Failed permanently.
    Failed,
    /// Delete intent recorded.
    Compensating,
    /// Deleted (or found already gone) by compensation.
    RolledBack,
    /// Compensation gave up: an operator must look.
    NeedsAttention,
}

impl StepState {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Adopted => "adopted",
            StepState::Failed => "failed",
            StepState::Compensating => "compensating",
            StepState::RolledBack => "rolled_back",
            StepState::NeedsAttention => "needs_attention",
        }
    }
    fn parse(s: &str) -> StepState {
        match s {
            "running" => StepState::Running,
            "done" => StepState::Done,
            "adopted" => StepState::Adopted,
            "failed" => StepState::Failed,
            "compensating" => StepState::Compensating,
            "rolled_back" => StepState::RolledBack,
            "needs_attention" => StepState::NeedsAttention,
            _ => StepState::Pending,
        }
    }
}

/// An agent's state in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Not started.
    Pending,
    /// A driver is (or was, before a crash) working on it.
    Running,
    /// Every step done or adopted.
    Done,
    /// Failed permanently; what it created was kept (`--on-failure keep`) or nothing was
    /// created (conflict).
    Failed,
    /// Compensating.
    RollingBack,
    /// Failed and compensated.
    RolledBack,
    /// Stopped on transient errors past the budget; `resume` continues.
    Interrupted,
    /// Compensation failed; `rollback` retries it.
    NeedsAttention,
    /// An operator released it; leftovers are no longer managed.
    Released,
}

impl AgentState {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Pending => "pending",
            AgentState::Running => "running",
            AgentState::Done => "done",
            AgentState::Failed => "failed",
            AgentState::RollingBack => "rolling_back",
            AgentState::RolledBack => "rolled_back",
            AgentState::Interrupted => "interrupted",
            AgentState::NeedsAttention => "needs_attention",
            AgentState::Released => "released",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> AgentState {
        match s {
            "running" => AgentState::Running,
            "done" => AgentState::Done,
            "failed" => AgentState::Failed,
            "rolling_back" => AgentState::RollingBack,
            "rolled_back" => AgentState::RolledBack,
            "interrupted" => AgentState::Interrupted,
            "needs_attention" => AgentState::NeedsAttention,
            "released" => AgentState::Released,
            _ => AgentState::Pending,
        }
    }
    /// Whether `resume` should drive this agent forward (or finish its rollback).
    pub fn resumable(self) -> bool {
        matches!(
            self,
            AgentState::Pending
                | AgentState::Running
                | AgentState::Interrupted
                | AgentState::RollingBack
        )
    }
}

/// What the engine does on a permanent failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Compensate owned steps.
    #[default]
    Rollback,
    /// Keep what was created (a later `rollback` can remove it).
    Keep,
}

impl OnFailure {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Rollback => "rollback",
            OnFailure::Keep => "keep",
        }
    }
}

/// Points where a test may crash the process (`abort`), to prove write-ahead recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the intent is committed, before the write is sent.
    BeforeWrite,
    /// After the write returned, before its result is committed.
    AfterWrite,
    /// After the result is committed.
    AfterCheckpoint,
    /// After a compensating delete returned, before it is committed.
    AfterDelete,
}

impl std::str::FromStr for CrashPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "before_write" => Ok(CrashPoint::BeforeWrite),
            "after_write" => Ok(CrashPoint::AfterWrite),
            "after_checkpoint" => Ok(CrashPoint::AfterCheckpoint),
            "after_delete" => Ok(CrashPoint::AfterDelete),
            _ => Err(format!("unknown crash point {s:?}")),
        }
    }
}

/// A progress event for the human output.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Agent key.
    pub agent: String,
    /// Step id.
    pub step: String,
    /// What happened: created, adopted, exists (owned after an unknown outcome), retrying,
    /// failed, conflict, rolled_back, kept_shared, nothing_to_undo, compensation_failed.
    pub event: &'static str,
    /// Ids or the error.
    pub detail: String,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Options of one engine pass.
#[derive(Clone)]
pub struct EngineOptions {
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
            lease_ttl_ms: 30_000,
            crash_at: None,
            progress: None,
        }
    }
}

/// Failures of the engine itself (not of a step: those end up in the agent's state).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed or the lease is held elsewhere.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The stored subject no longer deserializes.
    #[error("agent {agent}: stored subject does not parse: {source}")]
    Subject {
        /// Agent key.
        agent: String,
        /// Cause.
        source: serde_json::Error,
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
}

/// What a dry run would do for one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStep {
    /// Step id.
    pub step: String,
    /// `create`, `adopt` or `conflict`.
    pub action: &'static str,
    /// Ids found, or the conflict.
    pub detail: String,
}

/// The executor: a workflow, its actions and the store.
pub struct Engine<S> {
    workflow: Workflow,
    registry: Registry<S>,
    store: Arc<Store>,
    opts: EngineOptions,
}

struct StepRt {
    state: StepState,
    owned: bool,
    unresolved: bool,
    outputs: Outputs,
    last_write_ms: Option<i64>,
}

enum Lookup {
    Absent,
    Match(Outputs),
    Conflict(String),
    /// Inputs not known yet (an earlier step will create them).
    Unknown,
}

struct Driver<'a, S> {
    engine: &'a Engine<S>,
    run: String,
    agent: String,
    token: String,
    subject: S,
    secrets: &'a Secrets,
    steps: Vec<StepRt>,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

enum Stop {
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
        store: Arc<Store>,
        opts: EngineOptions,
    ) -> Self {
        Engine {
            workflow,
            registry,
            store,
            opts,
        }
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
            let planned = match inputs {
                None => PlannedStep {
                    step: step.id.clone(),
                    action: "create",
                    detail: "depends on a resource this run creates".into(),
                },
                Some(inputs) => {
                    let cx = StepContext {
                        subject,
                        inputs: &inputs,
                        secrets,
                    };
                    match action.lookup(&cx).await {
                        Ok(Found::Absent) => PlannedStep {
                            step: step.id.clone(),
                            action: "create",
                            detail: String::new(),
                        },
                        Ok(Found::Match(o)) => {
                            let d = fmt_outputs(&o);
                            known.insert(step.id.clone(), o);
                            PlannedStep {
                                step: step.id.clone(),
                                action: "adopt",
                                detail: d,
                            }
                        }
                        Ok(Found::Conflict(m)) => PlannedStep {
                            step: step.id.clone(),
                            action: "conflict",
                            detail: m,
                        },
                        Err(e) => PlannedStep {
                            step: step.id.clone(),
                            action: "unknown",
                            detail: format!("lookup failed: {e}"),
                        },
                    }
                }
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
        let mut d = self.driver(run, agent, secrets)?;
        let res = d.forward().await;
        d.finish().await;
        res
    }

    /// Compensates the agent's owned steps (explicit `rollback`).
    pub async fn rollback_agent(
        &self,
        run: &str,
        agent: &str,
        secrets: &Secrets,
    ) -> Result<AgentOutcome, Error> {
        let mut d = self.driver(run, agent, secrets)?;
        let res = d.compensate(None).await;
        d.finish().await;
        res
    }

    /// Marks an agent released: its leftovers are kept and no longer owned by the run.
    pub fn release_agent(&self, run: &str, agent: &str) -> Result<(), Error> {
        let token = uuid::Uuid::new_v4().to_string();
        self.store
            .acquire_lease(run, agent, &token, self.opts.lease_ttl_ms)?;
        for step in &self.workflow.steps {
            self.store.update_step(
                run,
                agent,
                &token,
                &step.id,
                &StepUpdate {
                    owned: Some(false),
                    unresolved: Some(false),
                    ..Default::default()
                },
                "released",
            )?;
        }
        self.store.set_agent_state(
            run,
            agent,
            &token,
            AgentState::Released.as_str(),
            Some("released by operator"),
        )?;
        self.store.release_lease(run, agent, &token)?;
        Ok(())
    }

    fn driver<'a>(
        &'a self,
        run: &str,
        agent: &str,
        secrets: &'a Secrets,
    ) -> Result<Driver<'a, S>, Error> {
        let token = uuid::Uuid::new_v4().to_string();
        self.store
            .acquire_lease(run, agent, &token, self.opts.lease_ttl_ms)?;
        let row = self.store.agent(run, agent)?;
        let subject: S =
            serde_json::from_value(row.subject.clone()).map_err(|source| Error::Subject {
                agent: agent.to_string(),
                source,
            })?;
        let rows = self.store.steps(run, agent)?;
        if rows.len() != self.workflow.steps.len()
            || rows
                .iter()
                .zip(&self.workflow.steps)
                .any(|(r, s)| r.step_id != s.id)
        {
            let _ = self.store.release_lease(run, agent, &token);
            return Err(Error::Mismatch {
                run: run.to_string(),
                workflow: self.workflow.name.clone(),
            });
        }
        let steps = rows
            .into_iter()
            .map(|r| StepRt {
                state: StepState::parse(&r.state),
                owned: r.owned,
                unresolved: r.unresolved,
                outputs: r.outputs,
                last_write_ms: r.last_write_ms,
            })
            .collect();
        let lost = Arc::new(AtomicBool::new(false));
        // Renew the lease in the background; a failed renewal fences this driver.
        let renewer = {
            let store = self.store.clone();
            let (run, agent, token, lost) = (
                run.to_string(),
                agent.to_string(),
                token.clone(),
                lost.clone(),
            );
            let ttl = self.opts.lease_ttl_ms;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis((ttl / 3).max(10) as u64)).await;
                    if store.renew_lease(&run, &agent, &token, ttl).is_err() {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        Ok(Driver {
            engine: self,
            run: run.to_string(),
            agent: agent.to_string(),
            token,
            subject,
            secrets,
            steps,
            lost,
            renewer,
        })
    }
}

fn bind(step: &Step, known: &BTreeMap<String, Outputs>) -> Option<Outputs> {
    let mut inputs = Outputs::new();
    for (name, (src, out)) in &step.inputs {
        let v = known.get(src)?.get(out)?;
        inputs.insert(name.clone(), v.clone());
    }
    Some(inputs)
}

fn fmt_outputs(o: &Outputs) -> String {
    o.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl<S> Driver<'_, S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn wf(&self) -> &Workflow {
        &self.engine.workflow
    }

    fn store(&self) -> &Store {
        &self.engine.store
    }

    fn progress(&self, step: &str, event: &'static str, detail: String) {
        tracing::info!(run = %self.run, agent = %self.agent, step, event, %detail, "step event");
        if let Some(p) = &self.engine.opts.progress {
            p(&Progress {
                agent: self.agent.clone(),
                step: step.to_string(),
                event,
                detail,
            });
        }
    }

    fn crash(&self, point: CrashPoint, step: &str) {
        if let Some((p, s)) = &self.engine.opts.crash_at {
            if *p == point && s == step {
                std::process::abort();
            }
        }
    }

    fn fenced(&self) -> Result<(), Error> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(store::Error::LeaseLost {
                run: self.run.clone(),
                agent: self.agent.clone(),
            }
            .into());
        }
        Ok(())
    }

    fn update(&mut self, idx: usize, up: StepUpdate, kind: &str) -> Result<(), Error> {
        self.fenced()?;
        let step_id = self.wf().steps[idx].id.clone();
        tracing::debug!(run = %self.run, agent = %self.agent, step = %step_id, kind, state = ?up.state, "checkpoint");
        self.store()
            .update_step(&self.run, &self.agent, &self.token, &step_id, &up, kind)?;
        let rt = &mut self.steps[idx];
        if let Some(s) = &up.state {
            rt.state = StepState::parse(s);
        }
        if let Some(o) = up.owned {
            rt.owned = o;
        }
        if let Some(u) = up.unresolved {
            rt.unresolved = u;
        }
        if let Some(o) = up.outputs {
            rt.outputs = o;
        }
        if up.mark_write {
            rt.last_write_ms = Some(now_ms());
        }
        Ok(())
    }

    fn set_agent(&self, state: AgentState, err: Option<&str>) -> Result<(), Error> {
        self.fenced()?;
        self.store()
            .set_agent_state(&self.run, &self.agent, &self.token, state.as_str(), err)?;
        Ok(())
    }

    async fn finish(&mut self) {
        self.renewer.abort();
        let _ = self
            .store()
            .release_lease(&self.run, &self.agent, &self.token);
    }

    fn known(&self) -> BTreeMap<String, Outputs> {
        self.wf()
            .steps
            .iter()
            .zip(&self.steps)
            .filter(|(_, rt)| matches!(rt.state, StepState::Done | StepState::Adopted))
            .map(|(s, rt)| (s.id.clone(), rt.outputs.clone()))
            .collect()
    }

    async fn lookup(&self, idx: usize) -> Result<Lookup, StepError> {
        let step = &self.wf().steps[idx];
        let Some(inputs) = bind(step, &self.known()) else {
            return Ok(Lookup::Unknown);
        };
        let cx = StepContext {
            subject: &self.subject,
            inputs: &inputs,
            secrets: self.secrets,
        };
        Ok(
            match self.engine.registry[&step.action].lookup(&cx).await? {
                Found::Absent => Lookup::Absent,
                Found::Match(o) => Lookup::Match(o),
                Found::Conflict(m) => Lookup::Conflict(m),
            },
        )
    }

    fn within_settle(&self, idx: usize) -> bool {
        let settle = self.wf().steps[idx].settle_ms as i64;
        self.steps[idx]
            .last_write_ms
            .is_some_and(|t| now_ms() - t < settle)
    }

    /// Records a found resource: owned if a write of ours may have created it, else adopted.
    fn record_found(&mut self, idx: usize, outputs: Outputs) -> Result<(), Error> {
        let ours = self.steps[idx].unresolved;
        let step_id = self.wf().steps[idx].id.clone();
        let detail = fmt_outputs(&outputs);
        let state = if ours {
            StepState::Done
        } else {
            StepState::Adopted
        };
        self.update(
            idx,
            StepUpdate {
                state: Some(state.as_str().into()),
                owned: Some(ours),
                unresolved: Some(false),
                outputs: Some(outputs),
                last_error: Some(None),
                ..Default::default()
            },
            if ours {
                "step_found_owned"
            } else {
                "step_adopted"
            },
        )?;
        self.progress(&step_id, if ours { "exists" } else { "adopted" }, detail);
        Ok(())
    }

    /// Marks a step in conflict (nothing of ours written for it) and says why the agent stops.
    fn conflict(&mut self, idx: usize, m: String) -> Result<Stop, Error> {
        let step_id = self.wf().steps[idx].id.clone();
        self.progress(&step_id, "conflict", m.clone());
        self.update(
            idx,
            StepUpdate {
                state: Some(StepState::Failed.as_str().into()),
                last_error: Some(Some(format!("Conflict: {m}"))),
                ..Default::default()
            },
            "step_conflict",
        )?;
        Ok(Stop::Permanent(format!("{step_id}: conflict: {m}")))
    }

    async fn forward(&mut self) -> Result<AgentOutcome, Error> {
        let state = AgentState::parse(&self.store().agent(&self.run, &self.agent)?.state);
        match state {
            AgentState::Done
            | AgentState::RolledBack
            | AgentState::Failed
            | AgentState::Released => {
                return Ok(AgentOutcome { state, error: None });
            }
            AgentState::RollingBack => return self.compensate(None).await,
            AgentState::NeedsAttention => {
                return Ok(AgentOutcome {
                    state,
                    error: Some("compensation failed earlier; run `rollback` to retry it".into()),
                })
            }
            _ => {}
        }
        self.set_agent(AgentState::Running, None)?;

        // Plan: look up every not-yet-started step whose inputs are known, before any write.
        let mut planned: Vec<Option<Lookup>> = (0..self.steps.len()).map(|_| None).collect();
        #[allow(clippy::needless_range_loop)] // idx also indexes self.steps, mutated inside
        for idx in 0..self.steps.len() {
            let rt = &self.steps[idx];
            if !matches!(rt.state, StepState::Pending | StepState::Running) || rt.unresolved {
                continue;
            }
            match self.lookup_with_retry(idx).await? {
                Err(stop) => return self.stop(stop).await,
                Ok(Lookup::Match(o)) => self.record_found(idx, o)?,
                Ok(Lookup::Conflict(m)) => {
                    let stop = self.conflict(idx, m)?;
                    return self.stop(stop).await;
                }
                // Absent: create without looking again. Unknown: look up once the inputs exist.
                Ok(Lookup::Absent) => planned[idx] = Some(Lookup::Absent),
                Ok(Lookup::Unknown) => {}
            }
        }

        for (idx, looked_up) in planned.into_iter().enumerate() {
            if matches!(self.steps[idx].state, StepState::Done | StepState::Adopted) {
                continue;
            }
            if let Err(stop) = self.execute(idx, looked_up).await? {
                return self.stop(stop).await;
            }
        }
        self.set_agent(AgentState::Done, None)?;
        Ok(AgentOutcome {
            state: AgentState::Done,
            error: None,
        })
    }

    async fn lookup_with_retry(&mut self, idx: usize) -> Result<Result<Lookup, Stop>, Error> {
        let policy = self.wf().steps[idx].retry;
        let step_id = self.wf().steps[idx].id.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.fenced()?;
            match self.lookup(idx).await {
                Ok(l) => return Ok(Ok(l)),
                Err(e) => match e.kind {
                    ErrorKind::Transient | ErrorKind::Ambiguous | ErrorKind::NotFound
                        if attempt < policy.max_attempts =>
                    {
                        self.progress(&step_id, "retrying", e.to_string());
                        tokio::time::sleep(policy.backoff(attempt)).await;
                    }
                    ErrorKind::Transient | ErrorKind::Ambiguous | ErrorKind::NotFound => {
                        self.note_error(idx, &e)?;
                        return Ok(Err(Stop::Interrupted(format!("{step_id}: {e}"))));
                    }
                    _ => {
                        self.note_error(idx, &e)?;
                        return Ok(Err(Stop::Permanent(format!("{step_id}: {e}"))));
                    }
                },
            }
        }
    }

    fn note_error(&mut self, idx: usize, e: &StepError) -> Result<(), Error> {
        self.update(
            idx,
            StepUpdate {
                last_error: Some(Some(e.to_string())),
                ..Default::default()
            },
            "step_error",
        )
    }

    /// Runs one step to done/adopted. `looked_up` is the plan's fresh lookup, if any.
    async fn execute(
        &mut self,
        idx: usize,
        mut looked_up: Option<Lookup>,
    ) -> Result<Result<(), Stop>, Error> {
        let step = self.wf().steps[idx].clone();
        let action = self.engine.registry[&step.action].clone();
        let mut attempt: u32 = 0;
        // Set after a create answered AlreadyExists: the resource exists even if lookups
        // cannot see it yet, so keep looking instead of writing again.
        let mut exists: Option<StepError> = None;
        loop {
            self.fenced()?;
            // 1. Look up (unless the plan just did): a resource from an earlier unresolved
            //    write is ours; one that appeared otherwise is adopted or in conflict.
            let found = match looked_up.take() {
                Some(l) => l,
                None => match self.lookup(idx).await {
                    Ok(l) => l,
                    Err(e) => {
                        attempt += 1;
                        match self.retry_or_stop(idx, attempt, &e).await? {
                            Some(stop) => return Ok(Err(stop)),
                            None => continue,
                        }
                    }
                },
            };
            match found {
                Lookup::Match(o) => {
                    self.record_found(idx, o)?;
                    return Ok(Ok(()));
                }
                Lookup::Conflict(m) => return Ok(Err(self.conflict(idx, m)?)),
                Lookup::Unknown => {
                    return Ok(Err(Stop::Permanent(format!(
                        "{}: inputs are not available (an earlier step has no outputs)",
                        step.id
                    ))))
                }
                Lookup::Absent if exists.is_some() => {
                    // Not visible yet: eventual consistency. Wait and look again, until the
                    // settle window is over: then what is there is not what we need.
                    attempt += 1;
                    if !self.within_settle(idx) && attempt >= step.retry.max_attempts {
                        let said = exists.as_ref().map(|e| e.to_string()).unwrap_or_default();
                        let m = format!(
                            "the service reports the resource exists ({said}), but no lookup finds one that fits this agent"
                        );
                        return Ok(Err(self.conflict(idx, m)?));
                    }
                    let e = StepError::new(
                        ErrorKind::Transient,
                        "NotVisibleYet",
                        "the service says the resource exists but lookups do not show it yet",
                    );
                    match self.retry_or_stop(idx, attempt, &e).await? {
                        Some(stop) => return Ok(Err(stop)),
                        None => continue,
                    }
                }
                Lookup::Absent => {}
            }

            // 2. Write-ahead: record the intent, then write.
            attempt += 1;
            let was_unresolved = self.steps[idx].unresolved;
            self.update(
                idx,
                StepUpdate {
                    state: Some(StepState::Running.as_str().into()),
                    unresolved: Some(true),
                    bump_attempts: true,
                    mark_write: true,
                    ..Default::default()
                },
                "step_intent",
            )?;
            self.crash(CrashPoint::BeforeWrite, &step.id);
            let inputs = bind(&step, &self.known()).unwrap_or_default();
            let cx = StepContext {
                subject: &self.subject,
                inputs: &inputs,
                secrets: self.secrets,
            };
            let result = action.create(&cx).await;
            self.crash(CrashPoint::AfterWrite, &step.id);
            match result {
                Ok(outputs) => {
                    let detail = fmt_outputs(&outputs);
                    self.update(
                        idx,
                        StepUpdate {
                            state: Some(StepState::Done.as_str().into()),
                            owned: Some(true),
                            unresolved: Some(false),
                            outputs: Some(outputs),
                            last_error: Some(None),
                            ..Default::default()
                        },
                        "step_done",
                    )?;
                    self.crash(CrashPoint::AfterCheckpoint, &step.id);
                    self.progress(&step.id, "created", detail);
                    return Ok(Ok(()));
                }
                Err(e) if e.kind == ErrorKind::AlreadyExists => {
                    // Ours if an earlier write of ours may have landed; otherwise someone
                    // else's, to adopt or reject. Either way, look it up.
                    self.update(
                        idx,
                        StepUpdate {
                            unresolved: Some(was_unresolved),
                            last_error: Some(Some(e.to_string())),
                            ..Default::default()
                        },
                        "step_exists",
                    )?;
                    exists = Some(e);
                }
                Err(e) => {
                    let unresolved = was_unresolved || e.kind == ErrorKind::Ambiguous;
                    self.update(
                        idx,
                        StepUpdate {
                            unresolved: Some(unresolved),
                            last_error: Some(Some(e.to_string())),
                            ..Default::default()
                        },
                        "step_error",
                    )?;
                    if let Some(stop) = self.retry_or_stop(idx, attempt, &e).await? {
                        return Ok(Err(stop));
                    }
                }
            }
        }
    }

    /// Sleeps for the next backoff if the error is transient and budget remains; otherwise
    /// returns why the agent stops.
    async fn retry_or_stop(
        &mut self,
        idx: usize,
        attempt: u32,
        e: &StepError,
    ) -> Result<Option<Stop>, Error> {
        let step = &self.wf().steps[idx];
        let (id, policy) = (step.id.clone(), step.retry);
        let transient = matches!(
            e.kind,
            ErrorKind::Transient | ErrorKind::Ambiguous | ErrorKind::NotFound
        );
        if !transient {
            self.progress(&id, "failed", e.to_string());
            self.update(
                idx,
                StepUpdate {
                    state: Some(
                        if self.steps[idx].unresolved {
                            StepState::Running
                        } else {
                            StepState::Failed
                        }
                        .as_str()
                        .into(),
                    ),
                    last_error: Some(Some(e.to_string())),
                    ..Default::default()
                },
                "step_failed",
            )?;
            return Ok(Some(Stop::Permanent(format!("{id}: {e}"))));
        }
        // "Exists but not visible yet" waits out the step's settle window: the service has
        // promised visibility within it, and writing again would only answer "exists".
        let settling = e.code == "NotVisibleYet" && self.within_settle(idx);
        if attempt >= policy.max_attempts && !settling {
            self.note_error(idx, e)?;
            return Ok(Some(Stop::Interrupted(format!(
                "{id}: still failing after {attempt} attempts: {e}"
            ))));
        }
        self.progress(&id, "retrying", e.to_string());
        tokio::time::sleep(policy.backoff(attempt.min(policy.max_attempts))).await;
        Ok(None)
    }

    async fn stop(&mut self, stop: Stop) -> Result<AgentOutcome, Error> {
        match stop {
            Stop::Interrupted(msg) => {
                self.set_agent(AgentState::Interrupted, Some(&msg))?;
                Ok(AgentOutcome {
                    state: AgentState::Interrupted,
                    error: Some(msg),
                })
            }
            Stop::Permanent(msg) => {
                let on_failure = self.store().agent(&self.run, &self.agent)?.on_failure;
                let holds_anything = self.steps.iter().any(|rt| rt.owned || rt.unresolved);
                if on_failure == OnFailure::Keep.as_str() || !holds_anything {
                    self.set_agent(AgentState::Failed, Some(&msg))?;
                    return Ok(AgentOutcome {
                        state: AgentState::Failed,
                        error: Some(msg),
                    });
                }
                self.compensate(Some(msg)).await
            }
        }
    }

    /// Compensates, in reverse order, every step this run owns (or may own).
    async fn compensate(&mut self, cause: Option<String>) -> Result<AgentOutcome, Error> {
        let cause = match cause {
            Some(c) => Some(c),
            None => self.store().agent(&self.run, &self.agent)?.last_error,
        };
        self.set_agent(AgentState::RollingBack, cause.as_deref())?;
        for idx in (0..self.steps.len()).rev() {
            let step = self.wf().steps[idx].clone();
            let action = self.engine.registry[&step.action].clone();
            let rt = &self.steps[idx];
            // Ours for sure (owned) or possibly (a write with an unknown outcome), in any
            // state but adopted or already rolled back.
            let candidate = match rt.state {
                StepState::Adopted | StepState::RolledBack => false,
                _ => rt.owned || rt.unresolved,
            };
            if !candidate {
                continue;
            }
            if action.shared() {
                self.progress(
                    &step.id,
                    "kept_shared",
                    "shared by every agent; not removed".into(),
                );
                continue;
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                self.fenced()?;
                // An unresolved write without ids: find out whether it landed.
                if self.steps[idx].outputs.is_empty() || self.steps[idx].unresolved {
                    match self.lookup(idx).await {
                        Ok(Lookup::Match(o)) => {
                            self.update(
                                idx,
                                StepUpdate {
                                    owned: Some(true),
                                    unresolved: Some(false),
                                    outputs: Some(o),
                                    ..Default::default()
                                },
                                "step_found_owned",
                            )?;
                        }
                        Ok(Lookup::Absent | Lookup::Conflict(_) | Lookup::Unknown)
                            if !self.within_settle(idx) =>
                        {
                            self.update(
                                idx,
                                StepUpdate {
                                    state: Some(StepState::RolledBack.as_str().into()),
                                    owned: Some(false),
                                    unresolved: Some(false),
                                    ..Default::default()
                                },
                                "step_nothing_to_undo",
                            )?;
                            self.progress(&step.id, "nothing_to_undo", String::new());
                            break;
                        }
                        Ok(_) => {
                            let e = StepError::new(
                                ErrorKind::Transient,
                                "NotVisibleYet",
                                "waiting for the settle window",
                            );
                            if self.undo_retry(idx, attempt, &e).await? {
                                continue;
                            }
                            return self.needs_attention(idx, &e);
                        }
                        Err(e) => {
                            if self.undo_retry(idx, attempt, &e).await? {
                                continue;
                            }
                            return self.needs_attention(idx, &e);
                        }
                    }
                }
                self.update(
                    idx,
                    StepUpdate {
                        state: Some(StepState::Compensating.as_str().into()),
                        ..Default::default()
                    },
                    "undo_intent",
                )?;
                let outputs = self.steps[idx].outputs.clone();
                let inputs = bind(&step, &self.known()).unwrap_or_default();
                let cx = StepContext {
                    subject: &self.subject,
                    inputs: &inputs,
                    secrets: self.secrets,
                };
                let res = action.delete(&cx, &outputs).await;
                self.crash(CrashPoint::AfterDelete, &step.id);
                let res = match res {
                    // Within the settle window of our latest create, "not found" may
                    // only mean "not visible yet": wait it out rather than leak it.
                    Err(e) if e.kind == ErrorKind::NotFound && self.within_settle(idx) => {
                        Err(StepError::new(
                            ErrorKind::Transient,
                            e.code,
                            format!(
                                "{} (within the settle window: may not be visible yet)",
                                e.message
                            ),
                        ))
                    }
                    Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
                    other => other,
                };
                match res {
                    Ok(()) => {
                        self.update(
                            idx,
                            StepUpdate {
                                state: Some(StepState::RolledBack.as_str().into()),
                                last_error: Some(None),
                                ..Default::default()
                            },
                            "undo_done",
                        )?;
                        self.progress(&step.id, "rolled_back", fmt_outputs(&outputs));
                        break;
                    }
                    Err(e) => {
                        if self.undo_retry(idx, attempt, &e).await? {
                            continue;
                        }
                        return self.needs_attention(idx, &e);
                    }
                }
            }
        }
        // Nothing owned is left; what was adopted stays.
        let any_owned_left = self.steps.iter().zip(&self.wf().steps).any(|(rt, s)| {
            (rt.owned || rt.unresolved)
                && !matches!(rt.state, StepState::RolledBack | StepState::Adopted)
                && !self.engine.registry[&s.action].shared()
        });
        let state = if any_owned_left {
            AgentState::NeedsAttention
        } else {
            AgentState::RolledBack
        };
        self.set_agent(state, cause.as_deref())?;
        Ok(AgentOutcome {
            state,
            error: cause,
        })
    }

    async fn undo_retry(&mut self, idx: usize, attempt: u32, e: &StepError) -> Result<bool, Error> {
        let step = &self.wf().steps[idx];
        let (id, policy) = (step.id.clone(), step.retry);
        let transient = matches!(e.kind, ErrorKind::Transient | ErrorKind::Ambiguous);
        // During the settle window keep waiting even past max_attempts: the service has
        // promised visibility within it.
        let settling = e.code == "NotVisibleYet" || (transient && self.within_settle(idx));
        if transient && (attempt < policy.max_attempts || settling) {
            self.note_error(idx, e)?;
            self.progress(&id, "retrying", e.to_string());
            tokio::time::sleep(policy.backoff(attempt.min(policy.max_attempts))).await;
            return Ok(true);
        }
        Ok(false)
    }

    fn needs_attention(&mut self, idx: usize, e: &StepError) -> Result<AgentOutcome, Error> {
        let step_id = self.wf().steps[idx].id.clone();
        self.update(
            idx,
            StepUpdate {
                state: Some(StepState::NeedsAttention.as_str().into()),
                last_error: Some(Some(e.to_string())),
                ..Default::default()
            },
            "undo_failed",
        )?;
        self.progress(&step_id, "compensation_failed", e.to_string());
        let msg = format!("compensation of {step_id} failed: {e}");
        self.set_agent(AgentState::NeedsAttention, Some(&msg))?;
        Ok(AgentOutcome {
            state: AgentState::NeedsAttention,
            error: Some(msg),
        })
    }
}

#[cfg(test)]
mod tests {
    //! Engine clauses, with in-memory actions over a tiny scripted world and a real
    //! (in-memory) SQLite store. The AWS-backed actions are tested end to end in tests/it.
    use super::*;
    use std::collections::{BTreeSet, VecDeque};
    use std::sync::Mutex;

    #[derive(Clone, Copy, Debug)]
    enum Script {
        /// Refused: nothing applied.
        Fail(ErrorKind),
        /// Applied, then the response is an error.
        ApplyThenFail(ErrorKind),
        /// Refused, while someone else creates the resource at the same moment.
        FailWhileOthersCreate(ErrorKind),
    }

    #[derive(Default)]
    struct World {
        present: BTreeMap<String, Outputs>,
        conflict: BTreeSet<String>,
        hidden_lookups: BTreeMap<String, u32>,
        script: HashMap<(String, &'static str), VecDeque<Script>>,
        applied_creates: BTreeMap<String, u32>,
        deletes: Vec<String>,
        lookups: u32,
        steal_lease_on_create: Option<(Arc<Store>, String)>,
    }

    type W = Arc<Mutex<World>>;

    struct Fake {
        name: String,
        world: W,
        inputs: &'static [&'static str],
        shared: bool,
    }

    impl Fake {
        fn next(&self, op: &'static str) -> Option<Script> {
            self.world
                .lock()
                .unwrap()
                .script
                .get_mut(&(self.name.clone(), op))
                .and_then(|q| q.pop_front())
        }
        fn err(kind: ErrorKind) -> StepError {
            StepError::new(kind, format!("{kind:?}"), "scripted")
        }
    }

    #[async_trait::async_trait]
    impl Action<String> for Fake {
        fn inputs(&self) -> &'static [&'static str] {
            self.inputs
        }
        fn outputs(&self) -> &'static [&'static str] {
            &["id", "got"]
        }
        fn shared(&self) -> bool {
            self.shared
        }
        async fn lookup(&self, _cx: &StepContext<'_, String>) -> Result<Found, StepError> {
            if let Some(Script::Fail(k)) = self.next("lookup") {
                return Err(Fake::err(k));
            }
            let mut w = self.world.lock().unwrap();
            w.lookups += 1;
            if w.conflict.contains(&self.name) {
                return Ok(Found::Conflict(format!("{} is someone else's", self.name)));
            }
            if let Some(n) = w.hidden_lookups.get_mut(&self.name) {
                if *n > 0 {
                    *n -= 1;
                    return Ok(Found::Absent);
                }
            }
            Ok(match w.present.get(&self.name) {
                Some(o) => Found::Match(o.clone()),
                None => Found::Absent,
            })
        }
        async fn create(&self, cx: &StepContext<'_, String>) -> Result<Outputs, StepError> {
            let script = self.next("create");
            let mut w = self.world.lock().unwrap();
            if let Some((store, run)) = w.steal_lease_on_create.take() {
                // The driver's lease has expired (ttl < 0): another process takes over.
                store
                    .acquire_lease(&run, cx.subject, "thief", 60_000)
                    .unwrap();
            }
            if let Some(Script::Fail(k)) = script {
                return Err(Fake::err(k));
            }
            if let Some(Script::FailWhileOthersCreate(k)) = script {
                let mut o = Outputs::new();
                o.insert("id".into(), "theirs".into());
                w.present.insert(self.name.clone(), o);
                return Err(Fake::err(k));
            }
            if w.present.contains_key(&self.name) {
                return Err(Fake::err(ErrorKind::AlreadyExists));
            }
            let got = cx.inputs.values().cloned().collect::<Vec<_>>().join(",");
            let mut o = Outputs::new();
            o.insert("id".into(), format!("{}-id", self.name));
            o.insert("got".into(), got);
            w.present.insert(self.name.clone(), o.clone());
            *w.applied_creates.entry(self.name.clone()).or_default() += 1;
            match script {
                Some(Script::ApplyThenFail(k)) => Err(Fake::err(k)),
                _ => Ok(o),
            }
        }
        async fn delete(
            &self,
            _cx: &StepContext<'_, String>,
            out: &Outputs,
        ) -> Result<(), StepError> {
            let script = self.next("delete");
            let mut w = self.world.lock().unwrap();
            match script {
                Some(Script::Fail(k)) => return Err(Fake::err(k)),
                Some(Script::FailWhileOthersCreate(k)) => return Err(Fake::err(k)),
                Some(Script::ApplyThenFail(k)) => {
                    w.present.remove(&self.name);
                    w.deletes.push(self.name.clone());
                    return Err(Fake::err(k));
                }
                None => {}
            }
            match w.present.get(&self.name) {
                Some(o) if o.get("id") == out.get("id") => {
                    w.present.remove(&self.name);
                    w.deletes.push(self.name.clone());
                    Ok(())
                }
                _ => Err(Fake::err(ErrorKind::NotFound)),
            }
        }
    }

    const WF: &str = r#"
        version = 1
        name = "t"
        retry = { max_attempts = 3, initial_backoff_ms = 1, max_backoff_ms = 2 }
        [[steps]]
        id = "one"
        action = "a"
        [[steps]]
        id = "two"
        action = "b"
        inputs = { x = "one.id" }
        [[steps]]
        id = "three"
        action = "shared"
        inputs = { x = "two.id" }
    "#;

    fn registry(world: &W) -> Registry<String> {
        let mut r: Registry<String> = BTreeMap::new();
        for (name, inputs, shared) in [
            ("a", &[][..], false),
            ("b", &["x"][..], false),
            ("shared", &["x"][..], true),
            ("c", &[][..], false),
        ] {
            let inputs: &'static [&'static str] = if inputs.is_empty() { &[] } else { &["x"] };
            r.insert(
                name.to_string(),
                Arc::new(Fake {
                    name: name.to_string(),
                    world: world.clone(),
                    inputs,
                    shared,
                }),
            );
        }
        r
    }

    struct Setup {
        world: W,
        store: Arc<Store>,
        engine: Engine<String>,
    }

    fn setup_with(wf: &str, on_failure: OnFailure) -> Setup {
        let world: W = Arc::default();
        let store = Arc::new(Store::open_in_memory().unwrap());
        let workflow = Workflow::parse(wf, "test", &registry(&world)).unwrap();
        let run = store::RunRow {
            id: "r".into(),
            created_at: store::now_rfc3339(),
            workflow_name: "t".into(),
            workflow: wf.into(),
            meta: serde_json::json!({}),
        };
        store
            .create_run(
                &run,
                &[("ag".into(), serde_json::json!("ag"))],
                &workflow.step_ids(),
                on_failure.as_str(),
            )
            .unwrap();
        let engine = Engine::new(
            workflow,
            registry(&world),
            store.clone(),
            EngineOptions::default(),
        );
        Setup {
            world,
            store,
            engine,
        }
    }

    fn setup() -> Setup {
        setup_with(WF, OnFailure::Rollback)
    }

    fn script(s: &Setup, action: &str, op: &'static str, items: &[Script]) {
        s.world
            .lock()
            .unwrap()
            .script
            .entry((action.to_string(), op))
            .or_default()
            .extend(items.iter().copied());
    }

    fn steps(s: &Setup) -> Vec<store::StepRow> {
        s.store.steps("r", "ag").unwrap()
    }

    fn creates(s: &Setup, name: &str) -> u32 {
        *s.world
            .lock()
            .unwrap()
            .applied_creates
            .get(name)
            .unwrap_or(&0)
    }

    async fn run(s: &Setup) -> AgentOutcome {
        s.engine
            .run_agent("r", "ag", &Secrets::default())
            .await
            .unwrap()
    }

    fn present(s: &Setup, name: &str) -> bool {
        s.world.lock().unwrap().present.contains_key(name)
    }

    #[tokio::test]
    async fn happy_path_creates_each_once_and_chains_outputs() {
        let s = setup();
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Done);
        let st = steps(&s);
        assert!(st
            .iter()
            .all(|r| r.state == "done" && r.owned && !r.unresolved));
        assert_eq!(
            st[1].outputs["got"], "a-id",
            "step two got step one's output"
        );
        assert_eq!(st[2].outputs["got"], "b-id");
        for n in ["a", "b", "shared"] {
            assert_eq!(creates(&s, n), 1);
        }
        // Running again changes nothing.
        assert_eq!(run(&s).await.state, AgentState::Done);
        assert_eq!(creates(&s, "a"), 1);
    }

    #[tokio::test]
    async fn existing_matching_resource_is_adopted_and_never_compensated() {
        let s = setup();
        let mut o = Outputs::new();
        o.insert("id".into(), "a-id".into());
        s.world.lock().unwrap().present.insert("a".into(), o);
        // Step two fails permanently: compensation runs.
        script(&s, "b", "create", &[Script::Fail(ErrorKind::Permanent)]);
        let out = run(&s).await;
        // Nothing of ours to compensate: the agent is failed, the adopted user untouched.
        assert_eq!(out.state, AgentState::Failed);
        assert_eq!(steps(&s)[0].state, "adopted");
        assert!(!steps(&s)[0].owned);
        assert!(present(&s, "a"), "adopted resource survives rollback");
        assert_eq!(creates(&s, "a"), 0);
    }

    #[tokio::test]
    async fn conflict_in_the_plan_writes_nothing() {
        let s = setup();
        // Step one is absent (would be created) but step two is in conflict... step two's
        // inputs depend on step one, so put the conflict on step one's own lookup.
        s.world.lock().unwrap().conflict.insert("a".into());
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Failed);
        assert!(out.error.unwrap().contains("someone else"));
        assert_eq!(
            creates(&s, "a") + creates(&s, "b") + creates(&s, "shared"),
            0
        );
        assert_eq!(steps(&s)[0].state, "failed");
    }

    #[tokio::test]
    async fn conflict_found_later_in_the_plan_still_writes_nothing() {
        // Steps without data dependencies are all looked up before the first write.
        let wf = r#"
            version = 1
            name = "t"
            retry = { max_attempts = 3, initial_backoff_ms = 1, max_backoff_ms = 2 }
            [[steps]]
            id = "one"
            action = "a"
            [[steps]]
            id = "two"
            action = "b"
            inputs = { x = "one.id" }
        "#;
        let s = setup_with(wf, OnFailure::Rollback);
        let mut o = Outputs::new();
        o.insert("id".into(), "a-id".into());
        s.world.lock().unwrap().present.insert("a".into(), o);
        s.world.lock().unwrap().conflict.insert("b".into());
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Failed);
        assert_eq!(creates(&s, "b"), 0);
    }

    #[tokio::test]
    async fn write_that_landed_but_failed_is_owned_not_recreated() {
        let s = setup();
        script(
            &s,
            "a",
            "create",
            &[Script::ApplyThenFail(ErrorKind::Ambiguous)],
        );
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Done);
        assert_eq!(creates(&s, "a"), 1, "exactly one create applied");
        let st = &steps(&s)[0];
        assert_eq!(st.state, "done");
        assert!(st.owned, "found after an unknown outcome: ours");
        // And so rollback deletes it.
        s.engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert!(!present(&s, "a"));
    }

    #[tokio::test]
    async fn landed_write_invisible_to_lookups_is_owned_via_already_exists() {
        let s = setup();
        script(
            &s,
            "a",
            "create",
            &[Script::ApplyThenFail(ErrorKind::Ambiguous)],
        );
        // The next lookup misses it (eventual consistency); the create then says exists.
        s.world.lock().unwrap().hidden_lookups.insert("a".into(), 2);
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Done, "{:?}", out.error);
        assert_eq!(creates(&s, "a"), 1);
        assert!(steps(&s)[0].owned);
    }

    #[tokio::test]
    async fn refused_write_never_makes_someone_elses_resource_ours() {
        let s = setup();
        // Our create is throttled (nothing applied) while someone else creates the same
        // resource; the retry's lookup then finds theirs.
        script(
            &s,
            "a",
            "create",
            &[Script::FailWhileOthersCreate(ErrorKind::Transient)],
        );
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Done);
        let st = &steps(&s)[0];
        assert_eq!(st.state, "adopted");
        assert!(
            !st.owned,
            "a refused write does not make their resource ours"
        );
        assert_eq!(st.outputs["id"], "theirs");
        assert_eq!(creates(&s, "a"), 0);
        // So a rollback leaves it alone.
        s.engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert!(present(&s, "a"));
    }

    #[tokio::test]
    async fn an_ambiguous_write_makes_a_resource_found_later_ours() {
        let s = setup();
        // A 5xx (outcome unknown) while the resource appears: indistinguishable from our own
        // write having landed, so it is owned — the documented trade-off of write-ahead.
        script(
            &s,
            "a",
            "create",
            &[Script::FailWhileOthersCreate(ErrorKind::Ambiguous)],
        );
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Done);
        let st = &steps(&s)[0];
        assert!(st.owned);
    }

    #[tokio::test]
    async fn already_exists_without_an_earlier_unknown_write_is_adopted() {
        let s = setup();
        // Someone creates it between our lookup and our create.
        s.world.lock().unwrap().hidden_lookups.insert("a".into(), 1);
        let mut o = Outputs::new();
        o.insert("id".into(), "theirs".into());
        s.world.lock().unwrap().present.insert("a".into(), o);
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Done);
        let st = &steps(&s)[0];
        assert_eq!(st.state, "adopted");
        assert!(!st.owned, "their resource is not ours");
        assert_eq!(st.outputs["id"], "theirs");
    }

    #[tokio::test]
    async fn permanent_failure_compensates_in_reverse_order_skipping_shared() {
        let wf = WF.to_string() + "\n[[steps]]\nid = \"four\"\naction = \"c\"\n";
        let s = setup_with(&wf, OnFailure::Rollback);
        script(&s, "c", "create", &[Script::Fail(ErrorKind::Permanent)]);
        assert_eq!(run(&s).await.state, AgentState::RolledBack);
        let w = s.world.lock().unwrap();
        assert_eq!(
            w.deletes,
            vec!["b".to_string(), "a".to_string()],
            "reverse order, shared kept"
        );
        assert!(w.present.contains_key("shared"));
        let st = s.store.steps("r", "ag").unwrap();
        assert_eq!(st[0].state, "rolled_back");
        assert_eq!(st[2].state, "done", "shared step untouched");
    }

    #[tokio::test]
    async fn keep_on_failure_keeps_and_a_later_rollback_removes() {
        let s = setup_with(WF, OnFailure::Keep);
        script(&s, "b", "create", &[Script::Fail(ErrorKind::Permanent)]);
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Failed);
        assert!(present(&s, "a"));
        // resume does not retry a permanently failed agent
        assert_eq!(run(&s).await.state, AgentState::Failed);
        let out = s
            .engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert_eq!(out.state, AgentState::RolledBack);
        assert!(!present(&s, "a"));
    }

    #[tokio::test]
    async fn transient_past_the_budget_interrupts_and_resume_finishes_once() {
        let s = setup();
        script(
            &s,
            "b",
            "create",
            &[
                Script::Fail(ErrorKind::Transient),
                Script::Fail(ErrorKind::Transient),
                Script::Fail(ErrorKind::Transient),
            ],
        );
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Interrupted);
        assert!(out.error.unwrap().contains("after 3 attempts"));
        assert!(present(&s, "a"), "nothing rolled back on interruption");
        assert_eq!(steps(&s)[1].attempts, 3);
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Done);
        assert_eq!(creates(&s, "a"), 1);
        assert_eq!(creates(&s, "b"), 1);
    }

    #[tokio::test]
    async fn failing_compensation_needs_attention_and_a_later_rollback_finishes() {
        let s = setup();
        script(
            &s,
            "shared",
            "create",
            &[Script::Fail(ErrorKind::Permanent)],
        );
        script(&s, "b", "delete", &[Script::Fail(ErrorKind::Permanent)]);
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::NeedsAttention);
        assert_eq!(steps(&s)[1].state, "needs_attention");
        assert!(present(&s, "a"), "stops at the failed compensation");
        // resume does not touch it
        assert_eq!(run(&s).await.state, AgentState::NeedsAttention);
        let out = s
            .engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert_eq!(out.state, AgentState::RolledBack);
        assert!(!present(&s, "a") && !present(&s, "b"));
        // Idempotent: a second rollback is fine and deletes nothing more.
        let n = s.world.lock().unwrap().deletes.len();
        let out = s
            .engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert_eq!(out.state, AgentState::RolledBack);
        assert_eq!(s.world.lock().unwrap().deletes.len(), n);
    }

    #[tokio::test]
    async fn not_found_on_delete_is_done_after_the_settle_window() {
        let s = setup();
        run(&s).await;
        // Someone deleted it behind our back: the delete answers NotFound.
        s.world.lock().unwrap().present.remove("b");
        let out = s
            .engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert_eq!(out.state, AgentState::RolledBack);
        assert_eq!(steps(&s)[1].state, "rolled_back");
    }

    #[tokio::test]
    async fn not_found_on_delete_within_the_settle_window_is_retried() {
        let wf = WF.replace(
            "action = \"b\"",
            "action = \"b\"\n        settle_ms = 60000",
        );
        let s = setup_with(&wf, OnFailure::Rollback);
        run(&s).await;
        // Invisible to the delete for two calls (not yet propagated), then deletable.
        script(
            &s,
            "b",
            "delete",
            &[
                Script::Fail(ErrorKind::NotFound),
                Script::Fail(ErrorKind::NotFound),
            ],
        );
        let out = s
            .engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert_eq!(out.state, AgentState::RolledBack);
        assert!(
            !present(&s, "b"),
            "deleted once visible, not declared gone early"
        );
    }

    #[tokio::test]
    async fn delete_that_landed_is_done_once_the_create_settle_window_is_over() {
        let wf = WF.replace("action = \"b\"", "action = \"b\"\n        settle_ms = 150");
        let s = setup_with(&wf, OnFailure::Rollback);
        run(&s).await;
        script(
            &s,
            "b",
            "delete",
            &[Script::ApplyThenFail(ErrorKind::Ambiguous)],
        );
        let t = std::time::Instant::now();
        let out = s
            .engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        // The retry's NotFound could be lag inside the create's window: waited out, then done.
        assert_eq!(out.state, AgentState::RolledBack);
        assert_eq!(steps(&s)[1].state, "rolled_back");
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "waited for the window"
        );
    }

    #[tokio::test]
    async fn second_driver_is_refused_while_the_first_holds_the_lease() {
        let s = setup();
        s.store
            .acquire_lease("r", "ag", "other-process", 60_000)
            .unwrap();
        let err = s
            .engine
            .run_agent("r", "ag", &Secrets::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Store(store::Error::Leased { .. })),
            "{err}"
        );
        assert_eq!(creates(&s, "a"), 0);
    }

    #[tokio::test]
    async fn a_driver_that_lost_its_lease_stops_writing() {
        let mut s = setup();
        s.engine.opts.lease_ttl_ms = -1;
        s.world.lock().unwrap().steal_lease_on_create = Some((s.store.clone(), "r".into()));
        let err = s
            .engine
            .run_agent("r", "ag", &Secrets::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Store(store::Error::LeaseLost { .. })),
            "{err}"
        );
        // Its create landed, but it could not checkpoint over the new holder's lease:
        // the step still shows the intent (unresolved), so the new holder will own it.
        let st = &steps(&s)[0];
        assert!(st.unresolved);
        assert_eq!(st.state, "running");
    }

    #[tokio::test]
    async fn transient_lookup_errors_are_retried_and_permanent_ones_fail() {
        let s = setup();
        script(&s, "a", "lookup", &[Script::Fail(ErrorKind::Transient)]);
        assert_eq!(run(&s).await.state, AgentState::Done);
        let s = setup();
        script(&s, "a", "lookup", &[Script::Fail(ErrorKind::Permanent)]);
        let out = run(&s).await;
        assert_eq!(
            out.state,
            AgentState::Failed,
            "nothing to compensate: failed"
        );
        assert_eq!(creates(&s, "a"), 0);
    }

    #[tokio::test]
    async fn plan_reports_create_adopt_and_conflict_without_writing() {
        let s = setup();
        let mut o = Outputs::new();
        o.insert("id".into(), "a-id".into());
        s.world.lock().unwrap().present.insert("a".into(), o);
        s.world.lock().unwrap().conflict.insert("b".into());
        let plan = s.engine.plan(&"ag".to_string(), &Secrets::default()).await;
        let actions: Vec<&str> = plan.iter().map(|p| p.action).collect();
        assert_eq!(actions, vec!["adopt", "conflict", "create"]);
        assert_eq!(creates(&s, "b"), 0);
        assert_eq!(
            s.store.event_count().unwrap(),
            1,
            "only the run's creation event"
        );
    }

    #[tokio::test]
    async fn the_settle_window_runs_from_the_latest_write() {
        let wf = WF.replace("action = \"b\"", "action = \"b\"\n        settle_ms = 200");
        let s = setup_with(&wf, OnFailure::Rollback);
        // b's first write is refused until the budget is spent: interrupted.
        script(
            &s,
            "b",
            "create",
            &[
                Script::Fail(ErrorKind::Transient),
                Script::Fail(ErrorKind::Transient),
                Script::Fail(ErrorKind::Transient),
            ],
        );
        assert_eq!(run(&s).await.state, AgentState::Interrupted);
        // Long after that first write, resume creates b; then the shared step fails
        // permanently and b's delete sees lag right after b's (latest) create.
        tokio::time::sleep(Duration::from_millis(250)).await;
        script(
            &s,
            "shared",
            "create",
            &[Script::Fail(ErrorKind::Permanent)],
        );
        script(
            &s,
            "b",
            "delete",
            &[
                Script::Fail(ErrorKind::NotFound),
                Script::Fail(ErrorKind::NotFound),
            ],
        );
        assert_eq!(run(&s).await.state, AgentState::RolledBack);
        assert!(
            !present(&s, "b"),
            "not declared gone while it was merely not visible"
        );
    }

    #[tokio::test]
    async fn rollback_after_needs_attention_on_an_unresolved_step_finishes_it() {
        let s = setup();
        // Three ambiguous answers; the third write did land. Interrupted, unresolved.
        script(
            &s,
            "b",
            "create",
            &[
                Script::Fail(ErrorKind::Ambiguous),
                Script::Fail(ErrorKind::Ambiguous),
                Script::ApplyThenFail(ErrorKind::Ambiguous),
            ],
        );
        assert_eq!(run(&s).await.state, AgentState::Interrupted);
        assert!(steps(&s)[1].unresolved);
        // The rollback cannot look it up (permanent error): needs attention.
        script(&s, "b", "lookup", &[Script::Fail(ErrorKind::Permanent)]);
        let out = s
            .engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert_eq!(out.state, AgentState::NeedsAttention);
        // Fixed: the next rollback still considers the step, finds the landed write, deletes it.
        let out = s
            .engine
            .rollback_agent("r", "ag", &Secrets::default())
            .await
            .unwrap();
        assert_eq!(out.state, AgentState::RolledBack);
        assert!(!present(&s, "b") && !present(&s, "a"));
    }

    #[tokio::test]
    async fn already_exists_that_never_becomes_visible_is_a_conflict() {
        let wf = WF.replace("action = \"a\"", "action = \"a\"\n        settle_ms = 50");
        let s = setup_with(&wf, OnFailure::Rollback);
        // The service says "exists" but no lookup ever shows a fitting resource.
        s.world
            .lock()
            .unwrap()
            .hidden_lookups
            .insert("a".into(), 1000);
        let mut o = Outputs::new();
        o.insert("id".into(), "elsewhere".into());
        s.world.lock().unwrap().present.insert("a".into(), o);
        let out = run(&s).await;
        assert_eq!(out.state, AgentState::Failed);
        assert!(out.error.unwrap().contains("conflict"));
        assert_eq!(steps(&s)[0].state, "failed");
    }

    #[test]
    fn workflow_validation_rejects_bad_definitions() {
        let world: W = Arc::default();
        let reg = registry(&world);
        let bad = [
            ("version = 2\nname='t'\n[[steps]]\nid='one'\naction='a'", "version 2"),
            ("version = 1\nname='t'\n[[steps]]\nid='one'\naction='nope'", "unknown action \"nope\""),
            (
                "version = 1\nname='t'\n[[steps]]\nid='one'\naction='a'\n[[steps]]\nid='one'\naction='a'",
                "duplicate step id",
            ),
            ("version = 1\nname='t'\n[[steps]]\nid='one'\naction='b'", "needs input \"x\""),
            (
                "version = 1\nname='t'\n[[steps]]\nid='one'\naction='b'\ninputs={x='two.id'}\n[[steps]]\nid='two'\naction='a'",
                "not an earlier step",
            ),
            (
                "version = 1\nname='t'\n[[steps]]\nid='one'\naction='a'\n[[steps]]\nid='two'\naction='b'\ninputs={x='one.nope'}",
                "produces only",
            ),
            (
                "version = 1\nname='t'\n[[steps]]\nid='one'\naction='a'\ninputs={y='one.id'}",
                "takes no input \"y\"",
            ),
            ("version = 1\nname='t'\n[[steps]]\nid='one'\naction='a'\nretyr=1", "unknown field `retyr`"),
            (
                "version = 1\nname='t'\n[[steps]]\nid='one'\naction='a'\nretry={max_attempts=0}",
                "max_attempts >= 1",
            ),
            ("version = 1\nname='t'\nsteps=[]", "has no steps"),
            ("version = 1\nname='t'\n[[steps]]\nid='One'\naction='a'", "must match"),
        ];
        for (src, want) in bad {
            let err = Workflow::parse(src, "test", &reg).unwrap_err().to_string();
            assert!(err.contains(want), "{src:?}: {err}");
        }
        assert!(Workflow::parse(WF, "test", &reg).is_ok());
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 400,
            multiplier: 2.0,
        };
        for _ in 0..200 {
            assert!(p.backoff(1) <= Duration::from_millis(100));
            assert!(p.backoff(2) <= Duration::from_millis(200));
            assert!(p.backoff(10) <= Duration::from_millis(400));
        }
        let distinct: BTreeSet<u128> = (0..50).map(|_| p.backoff(3).as_micros()).collect();
        assert!(distinct.len() > 1, "jittered");
    }

    #[test]
    fn secrets_never_print() {
        let mut s = Secrets::default();
        s.insert("password", "Hunter2Hunter2".into());
        assert!(!format!("{s:?}").contains("Hunter2"));
        assert_eq!(s.get("password"), Some("Hunter2Hunter2"));
    }
}
