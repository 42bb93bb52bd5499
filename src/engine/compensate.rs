//! Compensation: undo, in reverse order, every step the run owns or may own (an unresolved
//! write), never adopted or shared ones; checkpointed, idempotent, resumable.

use super::journal::EventKind;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::action::{ErrorKind, StepError};
use super::driver::{fmt_outputs, AgentOutcome, Driver, Error, Lookup};
use super::journal::StepUpdate;
use super::retry::{decide, Decision, Loop};
use super::state::{AgentState, StepState};
use super::write::{delete_not_found, Call, Crashes};

/// How an agent's `last_error` starts when its compensation failed (needs attention).
const COMPENSATION_FAILED: &str = "compensation of ";

fn is_compensation_failure(cause: &str) -> bool {
    cause.starts_with(COMPENSATION_FAILED)
}

impl<S> Driver<'_, S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Compensates, in reverse order, every step this run owns (or may own).
    pub(super) async fn compensate(
        &mut self,
        cause: Option<String>,
    ) -> Result<AgentOutcome, Error> {
        let cause = match cause {
            Some(c) => Some(c),
            None => {
                self.journal()
                    .agent(&self.run, &self.agent)
                    .await?
                    .last_error
            }
        };
        self.set_agent(AgentState::RollingBack, cause.as_deref())
            .await?;
        for idx in (0..self.steps.len()).rev() {
            if let Some(stopped) = self.undo_step(idx).await? {
                return Ok(stopped);
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
        // A compensation that failed before and has now finished is no longer a reason.
        let cause =
            cause.filter(|c| state != AgentState::RolledBack || !is_compensation_failure(c));
        self.set_agent(state, cause.as_deref()).await?;
        Ok(AgentOutcome {
            state,
            error: cause,
            record: None,
        })
    }

    /// Whether compensation undoes step `idx`: ours for sure (owned) or possibly (a write
    /// with an unknown outcome), in any state but adopted or already rolled back.
    fn undo_candidate(&self, idx: usize) -> bool {
        let rt = &self.steps[idx];
        match rt.state {
            StepState::Adopted | StepState::RolledBack => false,
            _ => rt.owned || rt.unresolved,
        }
    }

    /// Undoes step `idx` if it is ours, retrying under its policy; `Some` is the agent's
    /// outcome when the undo failed for good (the agent needs attention).
    async fn undo_step(&mut self, idx: usize) -> Result<Option<AgentOutcome>, Error> {
        if !self.undo_candidate(idx) {
            return Ok(None);
        }
        let step = &self.wf().steps[idx];
        if step.irreversible {
            // Never reached (a removal is never owned): a deletion is not undone.
            return Ok(None);
        }
        if self.engine.registry[&step.action].shared() {
            let id = step.id.clone();
            self.progress(
                &id,
                "kept_shared",
                "shared by every agent; not removed".into(),
            );
            return Ok(None);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.fenced()?;
            let e = match self.undo_attempt(idx, attempt).await? {
                Undone::Finished => return Ok(None),
                Undone::Failed(e) => e,
            };
            if !self.undo_retry(idx, attempt, &e).await? {
                return self.needs_attention(idx, &e).await.map(Some);
            }
        }
    }

    /// One attempt at undoing step `idx`: settles an unresolved write first, then records
    /// the intent and deletes what the step created.
    async fn undo_attempt(&mut self, idx: usize, attempt: u32) -> Result<Undone, Error> {
        // An unresolved write without ids: find out whether it landed.
        if self.steps[idx].outputs.is_empty() || self.steps[idx].unresolved {
            if let Some(settled) = self.resolve_before_undo(idx, attempt).await? {
                return Ok(settled);
            }
        }
        let step_id = self.wf().steps[idx].id.clone();
        let intent = StepUpdate {
            state: Some(StepState::Compensating),
            ..Default::default()
        };
        let outputs = self.steps[idx].outputs.clone();
        let res = self
            .send(
                idx,
                attempt,
                Some((intent, EventKind::UndoIntent)),
                Call::Delete(&outputs),
                Crashes::AFTER_DELETE,
            )
            .await?;
        // What this run created: within its settle window "not found" may not be final.
        if let Err(e) = delete_not_found(res, self.within_settle(idx)) {
            return Ok(Undone::Failed(e));
        }
        self.update(
            idx,
            StepUpdate {
                state: Some(StepState::RolledBack),
                last_error: Some(None),
                ..Default::default()
            },
            EventKind::UndoDone,
        )
        .await?;
        self.progress(&step_id, "rolled_back", fmt_outputs(&outputs));
        Ok(Undone::Finished)
    }

    /// Looks up an unresolved write before undoing it: `None` when it landed (now owned,
    /// with its ids: delete it), `Some` when there is nothing to undo or the lookup failed.
    async fn resolve_before_undo(
        &mut self,
        idx: usize,
        attempt: u32,
    ) -> Result<Option<Undone>, Error> {
        match self.lookup(idx, attempt).await {
            Ok(Lookup::Match(o)) => {
                self.update(
                    idx,
                    StepUpdate {
                        owned: Some(true),
                        unresolved: Some(false),
                        outputs: Some(o),
                        ..Default::default()
                    },
                    EventKind::StepFoundOwned,
                )
                .await?;
                Ok(None)
            }
            Ok(Lookup::Absent | Lookup::Conflict(_) | Lookup::Unknown)
                if !self.within_settle(idx) =>
            {
                self.update(
                    idx,
                    StepUpdate {
                        state: Some(StepState::RolledBack),
                        owned: Some(false),
                        unresolved: Some(false),
                        last_error: Some(None),
                        ..Default::default()
                    },
                    EventKind::StepNothingToUndo,
                )
                .await?;
                let id = self.wf().steps[idx].id.clone();
                self.progress(&id, "nothing_to_undo", String::new());
                Ok(Some(Undone::Finished))
            }
            Ok(_) => Ok(Some(Undone::Failed(StepError::new(
                ErrorKind::NotVisibleYet,
                "NotVisibleYet",
                "waiting for the settle window",
            )))),
            Err(e) => Ok(Some(Undone::Failed(e))),
        }
    }

    pub(super) async fn undo_retry(
        &mut self,
        idx: usize,
        attempt: u32,
        e: &StepError,
    ) -> Result<bool, Error> {
        let step = &self.wf().steps[idx];
        let (id, policy) = (step.id.clone(), step.retry);
        match decide(
            &policy,
            Loop::Undo,
            e.kind,
            self.within_settle(idx),
            attempt,
        ) {
            Decision::Retry(delay) => {
                self.note_error(idx, e).await?;
                self.progress(&id, "retrying", e.to_string());
                self.engine.opts.clock.sleep(delay).await;
                Ok(true)
            }
            Decision::Exhausted | Decision::Permanent => Ok(false),
        }
    }

    pub(super) async fn needs_attention(
        &mut self,
        idx: usize,
        e: &StepError,
    ) -> Result<AgentOutcome, Error> {
        let step_id = self.wf().steps[idx].id.clone();
        self.update(
            idx,
            StepUpdate {
                state: Some(StepState::NeedsAttention),
                last_error: Some(Some(e.to_string())),
                ..Default::default()
            },
            EventKind::UndoFailed,
        )
        .await?;
        self.progress(&step_id, "compensation_failed", e.to_string());
        let msg = format!("{COMPENSATION_FAILED}{step_id} failed: {e}");
        self.set_agent(AgentState::NeedsAttention, Some(&msg))
            .await?;
        Ok(AgentOutcome {
            state: AgentState::NeedsAttention,
            error: Some(msg),
            record: None,
        })
    }
}

/// What one attempt at undoing a step came to.
enum Undone {
    /// Rolled back, or nothing to undo: on to the previous step.
    Finished,
    /// This attempt failed (retried under the step's policy, or given up).
    Failed(StepError),
}
