//! The forward pass of one agent: plan (look every step up before any write), then per
//! step look up, record the intent, write, record the result; retries by [`decide`].

use super::journal::EventKind;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::action::{ErrorKind, StepError};
use super::definition::Step;
use super::driver::{fmt_outputs, AgentOutcome, Driver, Error, Lookup, Stop};
use super::journal::StepUpdate;
use super::retry::{decide, Decision, Loop};
use super::state::{AgentState, OnFailure, StepState};
use super::write::{Call, Crashes};

/// One step's tries so far, across [`Driver::execute`]'s loop.
#[derive(Default)]
struct Tries {
    /// Attempts (lookups that failed, writes, waits for visibility).
    attempt: u32,
    /// Set after a create answered AlreadyExists: the resource exists even if lookups
    /// cannot see it yet, so keep looking instead of writing again.
    exists: Option<StepError>,
}

/// What one turn of [`Driver::execute`]'s loop leads to.
enum Next {
    /// The step is finished: done, or the agent stops.
    Finish(Result<(), Stop>),
    /// Look again (after a backoff).
    Again,
    /// Nothing found: write.
    Write,
}

impl<S> Driver<'_, S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub(super) async fn forward(&mut self) -> Result<AgentOutcome, Error> {
        let state = self.state_at_start;
        match state {
            AgentState::Done
            | AgentState::RolledBack
            | AgentState::Failed
            | AgentState::Released => {
                return Ok(AgentOutcome {
                    state,
                    error: None,
                    record: None,
                });
            }
            AgentState::RollingBack => return self.compensate(None).await,
            AgentState::NeedsAttention => {
                return Ok(AgentOutcome {
                    state,
                    error: Some(
                        "compensation failed earlier: `rollback` retries it, `release` closes it"
                            .into(),
                    ),
                    record: None,
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

        for idx in 0..planned.len() {
            let looked_up = planned[idx].take();
            if matches!(self.steps[idx].state, StepState::Done | StepState::Adopted) {
                continue;
            }
            // The next step, also looked up absent in the plan (so its inputs do not come
            // from this one), declares its intent with this one's: one checkpoint less.
            if matches!(looked_up, Some(Lookup::Absent))
                && matches!(planned.get(idx + 1), Some(Some(Lookup::Absent)))
                && !self.wf().steps[idx].irreversible
                && !self.wf().steps[idx + 1].irreversible
            {
                self.declare(idx + 1)?;
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
            record: None,
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
            EventKind::StepError,
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
        let mut tries = Tries::default();
        loop {
            self.fenced()?;
            match self.look(idx, &step, looked_up.take(), &mut tries).await? {
                Next::Finish(result) => return Ok(result),
                Next::Again => continue,
                Next::Write => {}
            }
            if let Some(result) = self.create(idx, &step, &mut tries).await? {
                return Ok(result);
            }
        }
    }

    /// 1. Look up (unless the plan just did): a resource from an earlier unresolved write
    ///    is ours; one that appeared otherwise is adopted or in conflict.
    async fn look(
        &mut self,
        idx: usize,
        step: &Step,
        looked_up: Option<Lookup>,
        tries: &mut Tries,
    ) -> Result<Next, Error> {
        let found = match looked_up {
            Some(l) => l,
            None => match self.lookup(idx, tries.attempt + 1).await {
                Ok(l) => l,
                Err(e) => {
                    tries.attempt += 1;
                    return self.retry_or_next(idx, tries.attempt, &e).await;
                }
            },
        };
        match found {
            Lookup::Match(o) => {
                self.record_found(idx, o).await?;
                Ok(Next::Finish(Ok(())))
            }
            Lookup::Conflict(m) => Ok(Next::Finish(Err(self.conflict(idx, m).await?))),
            Lookup::Unknown => Ok(Next::Finish(Err(Stop::Permanent(format!(
                "{}: inputs are not available (an earlier step has no outputs)",
                step.id
            ))))),
            Lookup::Absent if tries.exists.is_some() => {
                // Not visible yet: eventual consistency. Wait and look again, until the
                // settle window is over: then what is there is not what we need.
                tries.attempt += 1;
                if !self.within_settle(idx) && tries.attempt >= step.retry.max_attempts {
                    let said = tries
                        .exists
                        .as_ref()
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    let m = format!(
                        "the service reports the resource exists ({said}), but no lookup finds one that fits this agent"
                    );
                    return Ok(Next::Finish(Err(self.conflict(idx, m).await?)));
                }
                let e = StepError::new(
                    ErrorKind::NotVisibleYet,
                    "NotVisibleYet",
                    "the service says the resource exists but lookups do not show it yet",
                );
                self.retry_or_next(idx, tries.attempt, &e).await
            }
            Lookup::Absent => Ok(Next::Write),
        }
    }

    /// [`Self::retry_or_stop`] as the loop's next move.
    async fn retry_or_next(
        &mut self,
        idx: usize,
        attempt: u32,
        e: &StepError,
    ) -> Result<Next, Error> {
        Ok(match self.retry_or_stop(idx, attempt, e).await? {
            Some(stop) => Next::Finish(Err(stop)),
            None => Next::Again,
        })
    }

    /// 2. Write-ahead: record the intent, then write.
    ///
    /// `Some` when the step is finished (done, or stopped); `None` to look again.
    async fn create(
        &mut self,
        idx: usize,
        step: &Step,
        tries: &mut Tries,
    ) -> Result<Option<Result<(), Stop>>, Error> {
        tries.attempt += 1;
        let declared = self.take_declared(idx);
        let was_unresolved = self.steps[idx].unresolved && declared.is_none();
        let intent = StepUpdate {
            state: Some(StepState::Running),
            unresolved: Some(true),
            bump_attempts: true,
            mark_write: Some(self.engine.opts.clock.now_ms()),
            ..Default::default()
        };
        // A fresh declaration is the durable intent already.
        let intent = (declared != Some(true)).then_some((intent, EventKind::StepIntent));
        let result = self
            .send(
                idx,
                tries.attempt,
                intent,
                Call::Create,
                Crashes::AROUND_WRITE,
            )
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
                    EventKind::StepDone,
                )?;
                self.crash_after_checkpoint(&step.id).await?;
                self.progress(&step.id, "created", detail);
                Ok(Some(Ok(())))
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
                    EventKind::StepExists,
                )
                .await?;
                tries.exists = Some(e);
                Ok(None)
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
                    EventKind::StepError,
                )
                .await?;
                Ok(self.retry_or_stop(idx, tries.attempt, &e).await?.map(Err))
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
                    EventKind::StepFailed,
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
        self.undeclare()?;
        match stop {
            Stop::Interrupted(msg) => {
                self.set_agent(AgentState::Interrupted, Some(&msg)).await?;
                Ok(AgentOutcome {
                    state: AgentState::Interrupted,
                    error: Some(msg),
                    record: None,
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
                        record: None,
                    });
                }
                self.compensate(Some(msg)).await
            }
        }
    }
}
