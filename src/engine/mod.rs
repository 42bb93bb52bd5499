//! The generic durable workflow engine: workflow definitions as data, and the executor that
//! runs, resumes and compensates them one agent at a time over a [`Journal`].
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
//! - **Irreversible steps** (removals, `remove`): the step's resource is looked up; present,
//!   its intent to delete (state `running`, the ids) is committed before the delete is sent;
//!   absent, or a delete answered "not found", the step is done. Never owned, so never
//!   compensated; `rollback` of such a workflow is refused.

//!
//! Layer rule (checked by `tests/it/tidy.rs`): this folder names nothing from `aws`, `steps`,
//! `target`, `config`, `app`, `cli` or `store`; the store implements [`Journal`], the
//! caller supplies the [`Registry`] of actions.
//!
//! The parts: [`definition`] (the workflow file), [`action`] (what a step is), [`state`]
//! (checkpointed states), [`retry`] (the policy and the one retry decision), [`clock`]
//! (injected time), [`journal`] (the store trait), [`ids`] (its run, agent and step ids), [`hooks`] (progress and crash points),
//! `driver` / `execute` / `remove` / `compensate` (the executor).

pub mod action;
pub mod clock;
mod compensate;
pub mod definition;
mod driver;
mod execute;
pub mod hooks;
pub mod ids;
pub mod journal;
mod plumbing;
mod remove;
pub mod retry;
pub mod state;
#[cfg(test)]
mod tests;
mod write;

pub use action::{Action, ErrorKind, Found, Outputs, Registry, Secrets, StepContext, StepError};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use definition::{Step, Workflow, WorkflowError};
pub use driver::{
    AgentOutcome, AgentRecord, Engine, EngineOptions, Error, PlanDecision, PlannedStep,
    LEASES_IN_FLIGHT,
};
pub use hooks::{CrashPoint, Progress, ProgressFn};
pub use ids::{AgentKey, RunId, StepId};
pub use journal::{AgentRow, Journal, JournalError, StepRow, StepUpdate};
pub use retry::RetryPolicy;
pub use state::{AgentState, OnFailure, StepState, UnknownState};
