//! The checkpointed states of a step and of an agent, and what to do on a permanent failure.
//! Stored as snake_case strings; an unknown stored name is an error, never a default.

use serde::{Deserialize, Serialize};

/// A step's state in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
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
    /// Every state, for parsing.
    pub const ALL: [StepState; 8] = [
        StepState::Pending,
        StepState::Running,
        StepState::Done,
        StepState::Adopted,
        StepState::Failed,
        StepState::Compensating,
        StepState::RolledBack,
        StepState::NeedsAttention,
    ];
    /// Parses a stored name; an unknown one is an error naming it.
    pub fn parse(s: &str) -> Result<StepState, UnknownState> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownState::new("step", s))
    }
}

/// An agent's state in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
    /// Every state, for parsing.
    pub const ALL: [AgentState; 9] = [
        AgentState::Pending,
        AgentState::Running,
        AgentState::Done,
        AgentState::Failed,
        AgentState::RollingBack,
        AgentState::RolledBack,
        AgentState::Interrupted,
        AgentState::NeedsAttention,
        AgentState::Released,
    ];
    /// Parses a stored name; an unknown one is an error naming it.
    pub fn parse(s: &str) -> Result<AgentState, UnknownState> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownState::new("agent", s))
    }
    /// Unfinished: another onboarding of the same agent must not start while it is so.
    pub fn unfinished(self) -> bool {
        matches!(
            self,
            AgentState::Pending
                | AgentState::Running
                | AgentState::Interrupted
                | AgentState::RollingBack
                | AgentState::NeedsAttention
        )
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
    /// Parses a stored name; an unknown one is an error naming it.
    pub fn parse(s: &str) -> Result<OnFailure, UnknownState> {
        [OnFailure::Rollback, OnFailure::Keep]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownState::new("on_failure", s))
    }
}

/// A stored state name this build does not know (a newer writer, or a damaged file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} state {value:?} in the state store")]
pub struct UnknownState {
    /// Which kind of state (`step`, `agent`, `on_failure`).
    pub what: &'static str,
    /// The stored value.
    pub value: String,
}

impl UnknownState {
    fn new(what: &'static str, value: &str) -> Self {
        UnknownState {
            what,
            value: value.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_and_unknown_names_are_errors() {
        for s in StepState::ALL {
            assert_eq!(StepState::parse(s.as_str()), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in AgentState::ALL {
            assert_eq!(AgentState::parse(s.as_str()), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let e = StepState::parse("finished").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown step state \"finished\" in the state store"
        );
        assert!(AgentState::parse("").is_err());
        assert!(OnFailure::parse("retry").is_err());
    }
}
