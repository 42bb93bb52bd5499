//! What a step is to the engine: the [`Action`] trait the caller implements, its context,
//! its results ([`Found`], [`StepError`] with an [`ErrorKind`]) and the in-memory [`Secrets`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
    /// The service says the resource exists, but lookups do not show it yet (eventual
    /// consistency): wait, within the step's settle window, rather than write again.
    NotVisibleYet,
    /// A write refers to a resource an earlier step of the agent wrote (one of its inputs),
    /// and the service does not find it yet (Identity Center takes seconds before a new user
    /// can be a principal): wait within the settle window of *that* write, rather than give
    /// up after the attempt budget.
    InputNotVisibleYet,
    /// A passing error that a lower layer already retried for its whole time budget (a
    /// throttling storm that outlived it): stop now, resumable, without retrying again.
    Spent,
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
    /// 1 for the first call of this step in this pass, higher for each retry (a pacer can
    /// let first attempts go before retries).
    pub attempt: u32,
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
    /// A removal: its step deletes the resource `lookup` finds (and is done when it finds
    /// none); such a step must be marked `irreversible = true` and is never compensated.
    fn removes(&self) -> bool {
        false
    }
    /// Looks for the resource, read-only.
    async fn lookup(&self, cx: &StepContext<'_, S>) -> Result<Found, StepError>;
    /// A dry run's lookup while some inputs are not known (an earlier step would create
    /// the resource they come from; `cx.inputs` holds only the known ones): `None` when
    /// the answer depends on them (the default), else what the lookup would find. A
    /// resource that does not depend on the agent (a shared one) can be found anyway, so
    /// that the plan says what the run will do.
    async fn lookup_unbound(&self, cx: &StepContext<'_, S>) -> Option<Result<Found, StepError>> {
        let _ = cx;
        None
    }
    /// Creates the resource. `AlreadyExists` if it is there already. A removal never
    /// creates (the engine never calls this for an irreversible step).
    async fn create(&self, cx: &StepContext<'_, S>) -> Result<Outputs, StepError> {
        let _ = cx;
        Err(StepError::new(
            ErrorKind::Permanent,
            "NotSupported",
            "this action removes a resource and creates none",
        ))
    }
    /// Deletes the resource recorded in `outputs`. `NotFound` if it is gone.
    async fn delete(&self, cx: &StepContext<'_, S>, outputs: &Outputs) -> Result<(), StepError>;
}

/// The built-in actions by name.
pub type Registry<S> = BTreeMap<String, Arc<dyn Action<S>>>;
