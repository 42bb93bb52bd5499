//! The journal: what the engine needs from a checkpoint store, as a trait ([`Journal`]),
//! with the rows it reads and the updates it writes. `store::Store` (SQLite) and
//! `store::MemoryJournal` implement it; the engine depends on nothing else of theirs.
//!
//! Contract: every method that takes a lease `token` applies its change only while that
//! token holds the agent's lease, atomically with the check, and appends a journal event
//! of the given `kind`; a change is all-or-nothing.

use std::collections::BTreeMap;

use super::ids::{AgentKey, RunId, StepId};
use super::state::{AgentState, OnFailure, StepState};

/// A step's checkpointed row.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// Step id from the workflow.
    pub step_id: StepId,
    /// Position in the workflow.
    pub seq: i64,
    /// State.
    pub state: StepState,
    /// Created by this run (so compensation may delete it).
    pub owned: bool,
    /// A write was sent whose outcome is unknown: if the resource exists, it is ours.
    pub unresolved: bool,
    /// Resource ids recorded after the write (or the adoption).
    pub outputs: BTreeMap<String, String>,
    /// Write attempts made.
    pub attempts: i64,
    /// When the first write was sent (ms).
    pub first_write_ms: Option<i64>,
    /// When the latest write (create or delete) was sent (ms): settle windows run from it.
    pub last_write_ms: Option<i64>,
    /// Last error, `CODE: message`.
    pub last_error: Option<String>,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// An agent's checkpointed row.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    /// Run id.
    pub run_id: RunId,
    /// Agent key (the normalised email).
    pub agent_key: AgentKey,
    /// The validated, secret-free subject (JSON).
    pub subject: serde_json::Value,
    /// State.
    pub state: AgentState,
    /// What to do on a permanent failure.
    pub on_failure: OnFailure,
    /// Last error.
    pub last_error: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// What a journal event records: the kind of each change, as the store's `events` table
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `step_intent`.
    StepIntent,
    /// `step_done`.
    StepDone,
    /// `step_error`.
    StepError,
    /// `step_exists`.
    StepExists,
    /// `step_adopted`.
    StepAdopted,
    /// `step_conflict`.
    StepConflict,
    /// `step_failed`.
    StepFailed,
    /// `step_found_owned`.
    StepFoundOwned,
    /// `step_gone`.
    StepGone,
    /// `step_retry`.
    StepRetry,
    /// `step_deleted`.
    StepDeleted,
    /// `step_nothing_to_undo`.
    StepNothingToUndo,
    /// `delete_intent`.
    DeleteIntent,
    /// `undo_intent`.
    UndoIntent,
    /// `undo_done`.
    UndoDone,
    /// `undo_failed`.
    UndoFailed,
    /// `adopted_resource_deleted`.
    AdoptedResourceDeleted,
    /// `agent_created`.
    AgentCreated,
    /// `agent_subject_replaced`.
    AgentSubjectReplaced,
    /// `released`: an operator released the step's resource from the run.
    Released,
}

impl EventKind {
    /// The name the store records.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::StepIntent => "step_intent",
            EventKind::StepDone => "step_done",
            EventKind::StepError => "step_error",
            EventKind::StepExists => "step_exists",
            EventKind::StepAdopted => "step_adopted",
            EventKind::StepConflict => "step_conflict",
            EventKind::StepFailed => "step_failed",
            EventKind::StepFoundOwned => "step_found_owned",
            EventKind::StepGone => "step_gone",
            EventKind::StepRetry => "step_retry",
            EventKind::StepDeleted => "step_deleted",
            EventKind::StepNothingToUndo => "step_nothing_to_undo",
            EventKind::DeleteIntent => "delete_intent",
            EventKind::UndoIntent => "undo_intent",
            EventKind::UndoDone => "undo_done",
            EventKind::UndoFailed => "undo_failed",
            EventKind::AdoptedResourceDeleted => "adopted_resource_deleted",
            EventKind::AgentCreated => "agent_created",
            EventKind::AgentSubjectReplaced => "agent_subject_replaced",
            EventKind::Released => "released",
        }
    }
}

/// A change to one step, applied in one transaction with its journal event.
#[derive(Debug, Clone, Default)]
pub struct StepUpdate {
    /// New state.
    pub state: Option<StepState>,
    /// New owned flag.
    pub owned: Option<bool>,
    /// New unresolved flag.
    pub unresolved: Option<bool>,
    /// Replace outputs.
    pub outputs: Option<BTreeMap<String, String>>,
    /// Add one to attempts.
    pub bump_attempts: bool,
    /// A write is about to be sent at this time (ms): set last_write_ms, and first_write_ms
    /// if not yet set.
    pub mark_write: Option<i64>,
    /// Set (Some(Some)) or clear (Some(None)) the last error.
    pub last_error: Option<Option<String>>,
}

/// One change of a [`Journal::apply`] batch.
#[derive(Debug, Clone)]
pub enum Change {
    /// [`Journal::update_step`].
    Step {
        /// Step id.
        step: StepId,
        /// The update.
        update: StepUpdate,
        /// Journal event kind.
        kind: EventKind,
    },
    /// [`Journal::set_agent_state`].
    Agent {
        /// New state.
        state: AgentState,
        /// Last error.
        last_error: Option<String>,
    },
    /// [`Journal::release_lease`] (last of a batch: the changes before it still need it).
    ReleaseLease,
}

/// Why the journal refused or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JournalError {
    /// Another live process holds the agent's lease.
    #[error("agent {agent} of run {run} is being worked on by {holder} (lease until {expires}); wait for it or stop that process")]
    Leased {
        /// Run id.
        run: String,
        /// Agent key.
        agent: String,
        /// Who holds it (host, pid).
        holder: String,
        /// When the lease expires (RFC 3339).
        expires: String,
    },
    /// This process no longer holds the lease it is writing under.
    #[error("lost the lease on agent {agent} of run {run}: another process took it over")]
    LeaseLost {
        /// Run id.
        run: String,
        /// Agent key.
        agent: String,
    },
    /// No such run or agent.
    #[error("no {0} in the state store")]
    NotFound(String),
    /// The stored data does not parse (an unknown state, malformed JSON).
    #[error("state store: {0}")]
    Corrupt(String),
    /// The storage itself failed (I/O, disk full, locking).
    #[error("state store: {0}")]
    Storage(String),
}

/// The checkpoint operations the engine drives an agent with. Async, so that a store may
/// commit the checkpoints of many concurrent agents together (group commit); a call
/// returns once its change is durable.
#[async_trait::async_trait]
pub trait Journal: Send + Sync {
    /// Takes the agent's lease for `ttl_ms` under `token`, unless a live process holds it.
    async fn acquire_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        ttl_ms: i64,
    ) -> Result<(), JournalError>;
    /// Extends the lease; `LeaseLost` if `token` no longer holds it.
    async fn renew_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        ttl_ms: i64,
    ) -> Result<(), JournalError>;
    /// Releases the lease if `token` holds it.
    async fn release_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
    ) -> Result<(), JournalError>;
    /// Applies `update` to a step under the lease, with a journal event `kind`.
    async fn update_step(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        step: &StepId,
        update: &StepUpdate,
        kind: EventKind,
    ) -> Result<(), JournalError>;
    /// Sets the agent's state and last error under the lease.
    async fn set_agent_state(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        state: AgentState,
        last_error: Option<&str>,
    ) -> Result<(), JournalError>;
    /// Replaces the agent's subject under the lease (a retry with corrected input).
    async fn set_subject(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        subject: &serde_json::Value,
    ) -> Result<(), JournalError>;
    /// Applies `changes` to one agent under the lease, in order and all-or-nothing, as one
    /// durable change: what the engine learnt since its last write-ahead record, together
    /// with the next one (or with the end of the agent's pass).
    async fn apply(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        changes: Vec<Change>,
    ) -> Result<(), JournalError>;
    /// One agent.
    async fn agent(&self, run: &RunId, agent: &AgentKey) -> Result<AgentRow, JournalError>;
    /// The steps of one agent, in workflow order.
    async fn steps(&self, run: &RunId, agent: &AgentKey) -> Result<Vec<StepRow>, JournalError>;
}
