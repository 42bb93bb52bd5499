//! The forward pass of one agent: plan (look every step up before any write), then per
//! step look up, record the intent, write, record the result; retries by [`decide`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::action::{ErrorKind, Found, Outputs, StepContext, StepError};
use super::definition::Workflow;
use super::driver::{bind, fmt_outputs, AgentOutcome, Driver, Error, Lookup, Stop};
use super::hooks::{CrashPoint, Progress};
use super::journal::{Change, Journal, JournalError, StepUpdate};
use super::retry::{decide, Decision, Loop};
use super::state::{AgentState, OnFailure, StepState};
use super::write::{Call, Crashes};

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
                agent: self.agent.clone(),
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
                run: self.run.clone(),
                agent: self.agent.clone(),
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
        kind: &'static str,
    ) -> Result<(), Error> {
        self.fenced()?;
        let step = self.wf().steps[idx].id.clone();
        tracing::debug!(run = %self.run, agent = %self.agent, %step, kind, state = ?up.state, "checkpoint");
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
        self.journal()
            .apply(&self.run, &self.agent, &self.token, changes)
            .await
    }

    /// Records `up` in memory and defers its checkpoint to the next durable record. Only for
    /// what precedes no write (a result, an adoption): if the process dies before the next
    /// record, the step is looked up again, and a resource found where an intent was
    /// recorded is still known to be ours. Saves a commit per step.
    pub(super) fn defer(
        &mut self,
        idx: usize,
        up: StepUpdate,
        kind: &'static str,
    ) -> Result<(), Error> {
        self.fenced()?;
        let step = self.wf().steps[idx].id.clone();
        tracing::debug!(run = %self.run, agent = %self.agent, %step, kind, state = ?up.state, "checkpoint deferred");
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
                "step_found_owned"
            } else {
                "step_adopted"
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
            "step_conflict",
        )
        .await?;
        Ok(Stop::Permanent(format!("{step_id}: conflict: {m}")))
    }

    pub(super) async fn forward(&mut self) -> Result<AgentOutcome, Error> {
        let state = self.state_at_start;
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
                    error: Some(
                        "compensation failed earlier: `rollback` retries it, `release` closes it"
                            .into(),
                    ),
                })
            }
            _ => {}
        }
        self.defer_agent(AgentState::Running)?;

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
                // A removal decides in `remove` (present: delete; absent: done).
                Ok(l) if self.wf().steps[idx].irreversible => planned[idx] = Some(l),
                Ok(Lookup::Match(o)) => self.record_found(idx, o).await?,
                Ok(Lookup::Conflict(m)) => {
                    let stop = self.conflict(idx, m).await?;
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
            let done = if self.wf().steps[idx].irreversible {
                self.remove(idx, looked_up).await?
            } else {
                self.execute(idx, looked_up).await?
            };
            if let Err(stop) = done {
                return self.stop(stop).await;
            }
        }
        // Durable with the lease's release, in `finish`.
        self.defer_agent(AgentState::Done)?;
        Ok(AgentOutcome {
            state: AgentState::Done,
            error: None,
        })
    }

    pub(super) async fn lookup_with_retry(
        &mut self,
        idx: usize,
    ) -> Result<Result<Lookup, Stop>, Error> {
        let policy = self.wf().steps[idx].retry;
        let step_id = self.wf().steps[idx].id.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.fenced()?;
            match self.lookup(idx, attempt).await {
                Ok(l) => return Ok(Ok(l)),
                Err(e) => match decide(&policy, Loop::Lookup, e.kind, false, attempt) {
                    Decision::Retry(delay) => {
                        self.progress(&step_id, "retrying", e.to_string());
                        self.engine.opts.clock.sleep(delay).await;
                    }
                    Decision::Exhausted => {
                        self.note_error(idx, &e).await?;
                        return Ok(Err(Stop::Interrupted(format!("{step_id}: {e}"))));
                    }
                    Decision::Permanent => {
                        self.note_error(idx, &e).await?;
                        return Ok(Err(Stop::Permanent(format!("{step_id}: {e}"))));
                    }
                },
            }
        }
    }

    pub(super) async fn note_error(&mut self, idx: usize, e: &StepError) -> Result<(), Error> {
        self.update(
            idx,
            StepUpdate {
                last_error: Some(Some(e.to_string())),
                ..Default::default()
            },
            "step_error",
        )
        .await
    }

    /// Runs one step to done/adopted. `looked_up` is the plan's fresh lookup, if any.
    pub(super) async fn execute(
        &mut self,
        idx: usize,
        mut looked_up: Option<Lookup>,
    ) -> Result<Result<(), Stop>, Error> {
        let step = self.wf().steps[idx].clone();
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
                None => match self.lookup(idx, attempt + 1).await {
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
                    self.record_found(idx, o).await?;
                    return Ok(Ok(()));
                }
                Lookup::Conflict(m) => return Ok(Err(self.conflict(idx, m).await?)),
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
                        return Ok(Err(self.conflict(idx, m).await?));
                    }
                    let e = StepError::new(
                        ErrorKind::NotVisibleYet,
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
            let intent = StepUpdate {
                state: Some(StepState::Running),
                unresolved: Some(true),
                bump_attempts: true,
                mark_write: Some(self.engine.opts.clock.now_ms()),
                ..Default::default()
            };
            let crashes = Crashes {
                before: Some(CrashPoint::BeforeWrite),
                after: CrashPoint::AfterWrite,
            };
            let result = self
                .send(idx, attempt, (intent, "step_intent"), Call::Create, crashes)
                .await?;
            match result {
                Ok(outputs) => {
                    let detail = fmt_outputs(&outputs);
                    self.defer(
                        idx,
                        StepUpdate {
                            state: Some(StepState::Done),
                            owned: Some(true),
                            unresolved: Some(false),
                            outputs: Some(outputs),
                            last_error: Some(None),
                            ..Default::default()
                        },
                        "step_done",
                    )?;
                    self.crash_after_checkpoint(&step.id).await?;
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
                    )
                    .await?;
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
                    )
                    .await?;
                    if let Some(stop) = self.retry_or_stop(idx, attempt, &e).await? {
                        return Ok(Err(stop));
                    }
                }
            }
        }
    }

    /// Sleeps for the next backoff if [`decide`] says retry; otherwise records and returns
    /// why the agent stops.
    pub(super) async fn retry_or_stop(
        &mut self,
        idx: usize,
        attempt: u32,
        e: &StepError,
    ) -> Result<Option<Stop>, Error> {
        let step = &self.wf().steps[idx];
        let (id, policy) = (step.id.clone(), step.retry);
        let within = if e.kind == ErrorKind::InputNotVisibleYet {
            self.inputs_within_settle(idx)
        } else {
            self.within_settle(idx)
        };
        let decision = decide(&policy, Loop::Write, e.kind, within, attempt);
        match decision {
            Decision::Permanent => {
                self.progress(&id, "failed", e.to_string());
                let state = if self.steps[idx].unresolved {
                    StepState::Running
                } else {
                    StepState::Failed
                };
                self.update(
                    idx,
                    StepUpdate {
                        state: Some(state),
                        last_error: Some(Some(e.to_string())),
                        ..Default::default()
                    },
                    "step_failed",
                )
                .await?;
                Ok(Some(Stop::Permanent(format!("{id}: {e}"))))
            }
            Decision::Exhausted => {
                self.note_error(idx, e).await?;
                Ok(Some(Stop::Interrupted(format!(
                    "{id}: still failing after {attempt} attempts: {e}"
                ))))
            }
            Decision::Retry(delay) => {
                self.progress(&id, "retrying", e.to_string());
                self.engine.opts.clock.sleep(delay).await;
                Ok(None)
            }
        }
    }

    pub(super) async fn stop(&mut self, stop: Stop) -> Result<AgentOutcome, Error> {
        match stop {
            Stop::Interrupted(msg) => {
                self.set_agent(AgentState::Interrupted, Some(&msg)).await?;
                Ok(AgentOutcome {
                    state: AgentState::Interrupted,
                    error: Some(msg),
                })
            }
            Stop::Permanent(msg) => {
                let on_failure = self.on_failure;
                let holds_anything = self.steps.iter().any(|rt| rt.owned || rt.unresolved);
                if on_failure == OnFailure::Keep || !holds_anything {
                    self.set_agent(AgentState::Failed, Some(&msg)).await?;
                    return Ok(AgentOutcome {
                        state: AgentState::Failed,
                        error: Some(msg),
                    });
                }
                self.compensate(Some(msg)).await
            }
        }
    }
}
