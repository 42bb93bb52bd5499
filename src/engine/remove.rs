//! Irreversible steps: a removal looks its resource up, deletes it when present and is done
//! when it is absent. The intent to delete (state `running`, the ids about to be deleted) is
//! durable before the delete is sent; the result is deferred like a create's. A delete
//! answered "not found" is done (someone else removed it, or our unanswered delete
//! landed). A removal is never owned, so compensation never touches it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::action::{ErrorKind, StepContext};
use super::driver::{bind, fmt_outputs, Driver, Error, Lookup, Stop};
use super::hooks::CrashPoint;
use super::journal::StepUpdate;
use super::state::StepState;

impl<S> Driver<'_, S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Runs one irreversible step to done. `looked_up` is the plan's fresh lookup, if any.
    pub(super) async fn remove(
        &mut self,
        idx: usize,
        mut looked_up: Option<Lookup>,
    ) -> Result<Result<(), Stop>, Error> {
        let step = self.wf().steps[idx].clone();
        let action = self.engine.registry[&step.action].clone();
        let mut attempt: u32 = 0;
        loop {
            self.fenced()?;
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
            let outputs = match found {
                Lookup::Absent => {
                    self.removed(idx, None)?;
                    return Ok(Ok(()));
                }
                Lookup::Conflict(m) => return Ok(Err(self.conflict(idx, m).await?)),
                Lookup::Unknown => {
                    return Ok(Err(Stop::Permanent(format!(
                        "{}: inputs are not available (an earlier step has no outputs)",
                        step.id
                    ))))
                }
                Lookup::Match(o) => o,
            };
            // Write-ahead: the intent to delete, with what is deleted, before the delete.
            attempt += 1;
            self.update(
                idx,
                StepUpdate {
                    state: Some(StepState::Running),
                    owned: Some(false),
                    unresolved: Some(false),
                    outputs: Some(outputs.clone()),
                    bump_attempts: true,
                    mark_write: Some(self.engine.opts.clock.now_ms()),
                    ..Default::default()
                },
                "delete_intent",
            )
            .await?;
            self.crash(CrashPoint::BeforeWrite, &step.id);
            let inputs = bind(&step, &self.known()).unwrap_or_default();
            let cx = StepContext {
                subject: &self.subject,
                inputs: &inputs,
                secrets: self.secrets,
                attempt,
            };
            let result = action.delete(&cx, &outputs).await;
            self.crash(CrashPoint::AfterWrite, &step.id);
            match result {
                Ok(()) => {
                    self.removed(idx, Some(&outputs))?;
                    self.crash_after_checkpoint(&step.id).await?;
                    return Ok(Ok(()));
                }
                // Gone meanwhile (someone else, or an earlier delete of ours): done.
                Err(e) if e.kind == ErrorKind::NotFound => {
                    self.removed(idx, None)?;
                    self.crash_after_checkpoint(&step.id).await?;
                    return Ok(Ok(()));
                }
                Err(e) => {
                    self.update(
                        idx,
                        StepUpdate {
                            last_error: Some(Some(e.to_string())),
                            ..Default::default()
                        },
                        "step_error",
                    )
                    .await?;
                    // Look again before the next delete: it may have landed.
                    if let Some(stop) = self.retry_or_stop(idx, attempt, &e).await? {
                        return Ok(Err(stop));
                    }
                }
            }
        }
    }

    /// Records a removal done (deferred: it precedes no write). `deleted`: the ids this pass
    /// deleted; `None`: nothing was there (the ids of an earlier intent, if any, are kept).
    fn removed(
        &mut self,
        idx: usize,
        deleted: Option<&super::action::Outputs>,
    ) -> Result<(), Error> {
        let step_id = self.wf().steps[idx].id.clone();
        self.defer(
            idx,
            StepUpdate {
                state: Some(StepState::Done),
                owned: Some(false),
                unresolved: Some(false),
                last_error: Some(None),
                ..Default::default()
            },
            if deleted.is_some() {
                "step_deleted"
            } else {
                "step_gone"
            },
        )?;
        match deleted {
            Some(o) => self.progress(&step_id, "deleted", fmt_outputs(o)),
            None => self.progress(&step_id, "gone", "nothing to delete".into()),
        }
        Ok(())
    }
}
