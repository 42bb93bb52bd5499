//! The one exit-code table. Every command's code is decided here, from what the operation
//! returned; nothing else in the crate knows the numbers.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every agent done (for `rollback`: everything rolled back) |
//! | 1 | some agent failed, was rolled back, is in conflict, interrupted or skipped; a passing AWS failure before any write; an unknown run; the state file failed mid-run (the run stopped, every agent resumable) |
//! | 2 | usage, configuration, workflow or validation error, or a state file that cannot be opened (corrupt, newer schema, unwritable, disk full), before any write |
//! | 3 | a compensation failed: an agent needs attention |
//!
//! `doctor`: 0 every check ok, 1 a problem or a check that could not be made; `drift`: 0
//! every agent complete, 1 otherwise; both 2 for usage/config errors.

use crate::app::{self, RunStatus};
use crate::engine::{AgentState, PlanDecision, PlannedStep};

/// Every agent done.
pub const OK: u8 = 0;
/// Some agent did not finish, or a passing failure.
pub const INCOMPLETE: u8 = 1;
/// Bad input, before any write.
pub const INPUT: u8 = 2;
/// A compensation failed.
pub const NEEDS_ATTENTION: u8 = 3;

/// The code of an operation that stopped with an error.
pub fn for_error(e: &app::Error) -> u8 {
    if e.is_input() {
        INPUT
    } else {
        INCOMPLETE
    }
}

/// A dry run: clean only if every step would be created or adopted.
pub fn for_plan(steps: &[PlannedStep]) -> u8 {
    if steps
        .iter()
        .all(|s| matches!(s.decision, PlanDecision::Create | PlanDecision::Adopt))
    {
        OK
    } else {
        INCOMPLETE
    }
}

fn states(runs: &[RunStatus]) -> impl Iterator<Item = AgentState> + '_ {
    runs.iter().flat_map(|r| r.agents.iter().map(|a| a.state))
}

/// `onboard`, `resume`, `demo`: 0 when every agent is done (or released) and none was
/// skipped, 3 when one needs attention, else 1.
pub fn for_runs(runs: &[RunStatus], skipped: usize) -> u8 {
    if states(runs).any(|s| s == AgentState::NeedsAttention) {
        NEEDS_ATTENTION
    } else if skipped == 0 && states(runs).all(|s| app::Outcome::of_state(s).finished_well()) {
        OK
    } else {
        INCOMPLETE
    }
}

/// `rollback`: 0 once it finished, 3 if a compensation failed, 1 if an agent was skipped.
pub fn for_rollback(runs: &[RunStatus], skipped: usize) -> u8 {
    if states(runs).any(|s| s == AgentState::NeedsAttention) {
        NEEDS_ATTENTION
    } else if skipped == 0 {
        OK
    } else {
        INCOMPLETE
    }
}

/// `batch`: 0 when every valid agent is done (now or in an earlier run) and no row was
/// skipped as invalid, 3 when one needs attention, else 1. A dry run: 0 for a clean plan.
pub fn for_batch(r: &app::BatchReport) -> u8 {
    if r.counts.contains_key(&app::Outcome::NeedsAttention) {
        NEEDS_ATTENTION
    } else if r.invalid.is_empty() && r.counts.keys().all(|o| o.finished_well()) {
        OK
    } else {
        INCOMPLETE
    }
}

/// `apply`: 3 when a compensation failed; 0 when every agent converged (a dry run: every
/// agent planned without conflict) and no row was invalid; else 1 (failed, stale, conflict,
/// skipped, interrupted).
pub fn for_apply(r: &app::ApplyReport) -> u8 {
    let planned_clean = r.dry_run
        && !r.saved.counts.contains_key(&app::ApplyAction::Conflict)
        && !r.saved.counts.contains_key(&app::ApplyAction::Skip);
    if r.outcomes.contains_key(&app::Outcome::NeedsAttention) {
        NEEDS_ATTENTION
    } else if r.invalid.is_empty()
        && (planned_clean || !r.dry_run && r.outcomes.keys().all(|o| o.finished_well()))
    {
        OK
    } else {
        INCOMPLETE
    }
}

/// `doctor`: 0 when every check passed, 1 when a problem was found or a check could not be
/// made.
pub fn for_doctor(r: &app::DoctorReport) -> u8 {
    if r.ok {
        OK
    } else {
        INCOMPLETE
    }
}

/// `drift`: 0 when every agent is complete, 1 when one drifted.
pub fn for_drift(r: &app::DriftReport) -> u8 {
    if r.agents
        .iter()
        .all(|a| a.status == app::DriftStatus::Complete)
    {
        OK
    } else {
        INCOMPLETE
    }
}
