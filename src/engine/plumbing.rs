//! The `Driver`'s plumbing, shared by the forward pass, removals and compensation:
//! checkpoints (durable now, or deferred to the next durable change), the lease fence,
//! crash-test hooks, progress events, lookups and the settle windows.

use super::journal::EventKind;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::action::{Found, Outputs, StepContext, StepError};
use super::definition::Workflow;
use super::driver::{bind, fmt_outputs, AgentRecord, Driver, Error, Lookup, Stop};
use super::hooks::{CrashPoint, Progress};
use super::ids::StepId;
use super::journal::{Change, Journal, JournalError, StepUpdate};
use super::state::{AgentState, StepState};

impl<S> Driver<'_, S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub(super) fn wf(&self) -> &Workflow {
        &self.engine.workflow
    }

    pub(super) fn journal(&self) -> &dyn Journal {
        &*self.engine.journal
    }

    pub(super) fn progress(&self, step: &str, event: &'static str, detail: String) {
        tracing::info!(run = %self.run, agent = %self.agent, step, event, %detail, "step event");
        if let Some(p) = &self.engine.opts.progress {
            p(&Progress {
                agent: self.agent.to_string(),
                step: step.to_string(),
                event,
                detail,
            });
        }
    }

    pub(super) fn crash(&self, point: CrashPoint, step: &str) {
        if let Some((p, s)) = &self.engine.opts.crash_at {
            if *p == point && s == step {
                std::process::abort();
            }
        }
    }

    /// The `after_checkpoint` crash point: makes the step's deferred result durable first,
    /// so the test sees a process that died after the checkpoint.
    pub(super) async fn crash_after_checkpoint(&mut self, step: &str) -> Result<(), Error> {
        if matches!(&self.engine.opts.crash_at, Some((CrashPoint::AfterCheckpoint, s)) if s == step)
        {
            self.commit(None).await?;
            std::process::abort();
        }
        Ok(())
    }

    pub(super) fn fenced(&self) -> Result<(), Error> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(JournalError::LeaseLost {
                run: self.run.to_string(),
                agent: self.agent.to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// Records `up` durably, together with every change deferred since the last durable
    /// record (one journal job): a write-ahead record, or a stop.
    pub(super) async fn update(
        &mut self,
        idx: usize,
        up: StepUpdate,
        kind: EventKind,
    ) -> Result<(), Error> {
        self.fenced()?;
        let step = StepId::from(&self.wf().steps[idx].id);
        tracing::debug!(run = %self.run, agent = %self.agent, %step, kind = kind.as_str(), state = ?up.state, "checkpoint");
        let change = Change::Step {
            step,
            update: up.clone(),
            kind,
        };
        self.commit(Some(change)).await?;
        self.remember(idx, &up);
        Ok(())
    }

    /// Commits the deferred changes, then `last`, as one durable journal change.
    async fn commit(&mut self, last: Option<Change>) -> Result<(), JournalError> {
        let mut changes = std::mem::take(&mut self.deferred);
        changes.extend(last);
        let agent = changes.iter().rev().find_map(|c| match c {
            Change::Agent { state, last_error } => Some((*state, last_error.clone())),
            _ => None,
        });
        let release = matches!(changes.last(), Some(Change::ReleaseLease));
        self.journal()
            .apply(&self.run, &self.agent, &self.token, changes)
            .await?;
        if let Some(a) = agent {
            self.committed = a;
        }
        self.released = release;
        Ok(())
    }

    /// The agent as this pass left it, once every change is committed and the lease
    /// released (else `None`: the caller reads the journal).
    pub(super) fn record(&self) -> Option<AgentRecord> {
        (self.released && self.deferred.is_empty()).then(|| AgentRecord {
            state: self.committed.0,
            last_error: self.committed.1.clone(),
            steps: (self.wf().steps.iter().zip(&self.steps))
                .map(|(s, rt)| (StepId::from(&s.id), rt.state, rt.outputs.clone()))
                .collect(),
        })
    }

    /// Records `up` in memory and defers its checkpoint to the next durable record. Only for
    /// what precedes no write (a result, an adoption): if the process dies before the next
    /// record, the step is looked up again, and a resource found where an intent was
    /// recorded is still known to be ours. Saves a commit per step.
    pub(super) fn defer(
        &mut self,
        idx: usize,
        up: StepUpdate,
        kind: EventKind,
    ) -> Result<(), Error> {
        self.fenced()?;
        let step = StepId::from(&self.wf().steps[idx].id);
        tracing::debug!(run = %self.run, agent = %self.agent, %step, kind = kind.as_str(), state = ?up.state, "checkpoint deferred");
        self.remember(idx, &up);
        self.deferred.push(Change::Step {
            step,
            update: up,
            kind,
        });
        Ok(())
    }

    fn remember(&mut self, idx: usize, up: &StepUpdate) {
        let rt = &mut self.steps[idx];
        if let Some(s) = up.state {
            rt.state = s;
        }
        if let Some(o) = up.owned {
            rt.owned = o;
        }
        if let Some(u) = up.unresolved {
            rt.unresolved = u;
        }
        if let Some(o) = &up.outputs {
            rt.outputs = o.clone();
        }
        if let Some(t) = up.mark_write {
            rt.last_write_ms = Some(t);
        }
    }

    /// Sets the agent's state durably, with the deferred changes.
    pub(super) async fn set_agent(
        &mut self,
        state: AgentState,
        err: Option<&str>,
    ) -> Result<(), Error> {
        self.fenced()?;
        self.commit(Some(Change::Agent {
            state,
            last_error: err.map(str::to_string),
        }))
        .await?;
        Ok(())
    }

    /// Sets the agent's state at the next durable record ([`Driver::finish`] at the latest).
    pub(super) fn defer_agent(&mut self, state: AgentState) -> Result<(), Error> {
        self.fenced()?;
        self.deferred.push(Change::Agent {
            state,
            last_error: None,
        });
        Ok(())
    }

    /// Ends the pass: stops the lease renewal, then commits the deferred changes and the
    /// lease's release as one change. An error only if deferred changes could not be kept
    /// (the outcome they describe is then not durable); a failed release alone is harmless,
    /// the lease expires.
    pub(super) async fn finish(&mut self) -> Result<(), Error> {
        self.renewer.abort();
        let pending = !self.deferred.is_empty();
        match self.commit(Some(Change::ReleaseLease)).await {
            Err(e) if pending => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub(super) fn known(&self) -> BTreeMap<String, Outputs> {
        self.wf()
            .steps
            .iter()
            .zip(&self.steps)
            .filter(|(_, rt)| matches!(rt.state, StepState::Done | StepState::Adopted))
            .map(|(s, rt)| (s.id.clone(), rt.outputs.clone()))
            .collect()
    }

    pub(super) async fn lookup(&self, idx: usize, attempt: u32) -> Result<Lookup, StepError> {
        let step = &self.wf().steps[idx];
        let Some(inputs) = bind(step, &self.known()) else {
            return Ok(Lookup::Unknown);
        };
        let cx = StepContext {
            subject: &self.subject,
            inputs: &inputs,
            secrets: self.secrets,
            attempt,
        };
        Ok(
            match self.engine.registry[&step.action].lookup(&cx).await? {
                Found::Absent => Lookup::Absent,
                Found::Match(o) => Lookup::Match(o),
                Found::Conflict(m) => Lookup::Conflict(m),
            },
        )
    }

    /// Whether a step this one takes an input from was written within the settle window (the
    /// larger of the two steps' `settle_ms`): a not-found on a write that refers to that
    /// resource may just mean "not visible yet". The clock runs from *that* write, not from
    /// this step's own attempts (each of which is a new write).
    pub(super) fn inputs_within_settle(&self, idx: usize) -> bool {
        let wf = self.wf();
        let now = self.engine.opts.clock.now_ms();
        wf.steps[idx].inputs.values().any(|(from, _)| {
            wf.steps
                .iter()
                .position(|s| &s.id == from)
                .is_some_and(|j| {
                    let settle = wf.steps[j].settle_ms.max(wf.steps[idx].settle_ms) as i64;
                    self.steps[j]
                        .last_write_ms
                        .is_some_and(|t| now - t < settle)
                })
        })
    }

    pub(super) fn within_settle(&self, idx: usize) -> bool {
        let settle = self.wf().steps[idx].settle_ms as i64;
        self.steps[idx]
            .last_write_ms
            .is_some_and(|t| self.engine.opts.clock.now_ms() - t < settle)
    }

    /// Records a found resource: owned if a write of ours may have created it, else adopted.
    pub(super) async fn record_found(&mut self, idx: usize, outputs: Outputs) -> Result<(), Error> {
        let ours = self.steps[idx].unresolved;
        let step_id = self.wf().steps[idx].id.clone();
        let detail = fmt_outputs(&outputs);
        let state = if ours {
            StepState::Done
        } else {
            StepState::Adopted
        };
        self.defer(
            idx,
            StepUpdate {
                state: Some(state),
                owned: Some(ours),
                unresolved: Some(false),
                outputs: Some(outputs),
                last_error: Some(None),
                ..Default::default()
            },
            if ours {
                EventKind::StepFoundOwned
            } else {
                EventKind::StepAdopted
            },
        )?;
        self.progress(&step_id, if ours { "exists" } else { "adopted" }, detail);
        Ok(())
    }

    /// Marks a step in conflict (nothing of ours written for it) and says why the agent stops.
    pub(super) async fn conflict(&mut self, idx: usize, m: String) -> Result<Stop, Error> {
        let step_id = self.wf().steps[idx].id.clone();
        self.progress(&step_id, "conflict", m.clone());
        self.update(
            idx,
            StepUpdate {
                state: Some(StepState::Failed),
                last_error: Some(Some(format!("Conflict: {m}"))),
                ..Default::default()
            },
            EventKind::StepConflict,
        )
        .await?;
        Ok(Stop::Permanent(format!("{step_id}: conflict: {m}")))
    }
}
