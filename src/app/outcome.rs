//! What became of one agent in a command (`Outcome`): its state where it was driven, or
//! what the command decided without driving it. The one rule of "finished well" and the
//! names reports, JSON and counts use.

use serde::Serialize;

use crate::engine::AgentState;

/// One agent's outcome. Declared in the alphabetical order of the names, so that counts
/// keyed by it list as they always have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done in an earlier run: nothing was written.
    AlreadyDone,
    /// A dry run found a step in conflict (or not looked up); `apply`: a change that
    /// cannot be made in place.
    Conflict,
    /// `apply`: a new agent, onboarded.
    Created,
    /// Every step done or adopted.
    Done,
    /// Failed permanently (kept, or nothing was created).
    Failed,
    /// Stopped on errors that heal; `resume` goes on.
    Interrupted,
    /// The row failed validation (`--skip-invalid`).
    Invalid,
    /// A compensation failed: `rollback` or `release`.
    NeedsAttention,
    /// Not started.
    Pending,
    /// A dry run would run it cleanly.
    Planned,
    /// An operator released it.
    Released,
    /// `apply --prune`: offboarded (not in the roster).
    Removed,
    /// Failed and compensated.
    RolledBack,
    /// Compensating (stopped midway).
    RollingBack,
    /// A driver is (or was) working on it.
    Running,
    /// Not driven: another run holds it, it needs attention, or it could not be identified.
    Skipped,
    /// `apply --plan`: the world no longer shows the plan's `before`: nothing written.
    Stale,
    /// `apply`: nothing differs; nothing written.
    Unchanged,
    /// `apply`: an existing agent, its changes made.
    Updated,
}

impl Outcome {
    /// The name reports and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::AlreadyDone => "already_done",
            Outcome::Conflict => "conflict",
            Outcome::Created => "created",
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Invalid => "invalid",
            Outcome::NeedsAttention => "needs_attention",
            Outcome::Pending => "pending",
            Outcome::Planned => "planned",
            Outcome::Released => "released",
            Outcome::Removed => "removed",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollingBack => "rolling_back",
            Outcome::Running => "running",
            Outcome::Skipped => "skipped",
            Outcome::Stale => "stale",
            Outcome::Unchanged => "unchanged",
            Outcome::Updated => "updated",
        }
    }

    /// The outcome of an agent that was driven: its state.
    pub fn of_state(s: AgentState) -> Outcome {
        match s {
            AgentState::Pending => Outcome::Pending,
            AgentState::Running => Outcome::Running,
            AgentState::Done => Outcome::Done,
            AgentState::Failed => Outcome::Failed,
            AgentState::RollingBack => Outcome::RollingBack,
            AgentState::RolledBack => Outcome::RolledBack,
            AgentState::Interrupted => Outcome::Interrupted,
            AgentState::NeedsAttention => Outcome::NeedsAttention,
            AgentState::Released => Outcome::Released,
        }
    }

    /// The agent finished well: done (now or before; `apply`: created, updated, unchanged,
    /// removed), released by an operator, or, in a dry run, planned cleanly. The exit codes, the progress meter and the report's list
    /// of agents that are not done all use this rule.
    pub fn finished_well(self) -> bool {
        matches!(
            self,
            Outcome::Done
                | Outcome::AlreadyDone
                | Outcome::Released
                | Outcome::Planned
                | Outcome::Created
                | Outcome::Updated
                | Outcome::Unchanged
                | Outcome::Removed
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_serialise_as_before_and_sort_alphabetically() {
        let all = [
            Outcome::AlreadyDone,
            Outcome::Conflict,
            Outcome::Created,
            Outcome::Done,
            Outcome::Failed,
            Outcome::Interrupted,
            Outcome::Invalid,
            Outcome::NeedsAttention,
            Outcome::Pending,
            Outcome::Planned,
            Outcome::Released,
            Outcome::Removed,
            Outcome::RolledBack,
            Outcome::RollingBack,
            Outcome::Running,
            Outcome::Skipped,
            Outcome::Stale,
            Outcome::Unchanged,
            Outcome::Updated,
        ];
        let names: Vec<&str> = all.iter().map(|o| o.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "declaration order is the names' order");
        for o in all {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for s in [
            AgentState::Pending,
            AgentState::Running,
            AgentState::Done,
            AgentState::Failed,
            AgentState::RollingBack,
            AgentState::RolledBack,
            AgentState::Interrupted,
            AgentState::NeedsAttention,
            AgentState::Released,
        ] {
            assert_eq!(Outcome::of_state(s).as_str(), s.as_str());
        }
    }

    #[test]
    fn finished_well_is_done_already_done_released_or_planned() {
        let good: Vec<Outcome> = [
            Outcome::Done,
            Outcome::AlreadyDone,
            Outcome::Released,
            Outcome::Planned,
            Outcome::Failed,
            Outcome::Skipped,
            Outcome::Invalid,
            Outcome::Interrupted,
        ]
        .into_iter()
        .filter(|o| o.finished_well())
        .collect();
        assert_eq!(
            good,
            vec![
                Outcome::Done,
                Outcome::AlreadyDone,
                Outcome::Released,
                Outcome::Planned
            ]
        );
    }
}
