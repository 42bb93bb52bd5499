//! Irreversible steps: a removal looks its resource up, deletes it when present and is done
//! when it is absent. The intent to delete (state `running`, the ids about to be deleted) is
//! durable before the delete is sent; the result is deferred like a create's. A delete
//! answered "not found" is done (someone else removed it, or our unanswered delete
//! landed). A removal is never owned, so compensation never touches it.

use super::journal::EventKind;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::action::{ErrorKind, Outputs};
use super::driver::{fmt_outputs, Driver, Error, Lookup, Stop};
use super::journal::StepUpdate;
use super::state::StepState;
use super::write::{delete_not_found, Call, Crashes};

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
            attempt += 1;
            if let Some(result) = self.delete(idx, &step.id, attempt, outputs).await? {
                return Ok(result);
            }
        }
    }

    /// Write-ahead: the intent to delete, with what is deleted, before the delete.
    ///
    /// `Some` when the step is finished (done, or stopped); `None` to look again.
    async fn delete(
        &mut self,
        idx: usize,
        step_id: &str,
        attempt: u32,
        outputs: Outputs,
    ) -> Result<Option<Result<(), Stop>>, Error> {
        let intent = StepUpdate {
            state: Some(StepState::Running),
            owned: Some(false),
            unresolved: Some(false),
            outputs: Some(outputs.clone()),
            bump_attempts: true,
            mark_write: Some(self.engine.opts.clock.now_ms()),
            ..Default::default()
        };
        let sent = self
            .send(
                idx,
                attempt,
                Some((intent, EventKind::DeleteIntent)),
                Call::Delete(&outputs),
                Crashes::AROUND_WRITE,
            )
            .await?;
        // What existed before the run: no write of ours to settle, so "not found" is
        // gone meanwhile (someone else, or an earlier delete of ours): done.
        let gone = matches!(&sent, Err(e) if e.kind == ErrorKind::NotFound);
        match delete_not_found(sent, false) {
            Ok(_) => {
                self.removed(idx, (!gone).then_some(&outputs))?;
                self.crash_after_checkpoint(step_id).await?;
                Ok(Some(Ok(())))
            }
            Err(e) => {
                self.update(
                    idx,
                    StepUpdate {
                        last_error: Some(Some(e.to_string())),
                        ..Default::default()
                    },
                    EventKind::StepError,
                )
                .await?;
                // Look again before the next delete: it may have landed.
                Ok(self.retry_or_stop(idx, attempt, &e).await?.map(Err))
            }
        }
    }

    /// Records a removal done (deferred: it precedes no write). `deleted`: the ids this pass
    /// deleted; `None`: nothing was there (the ids of an earlier intent, if any, are kept).
    fn removed(&mut self, idx: usize, deleted: Option<&Outputs>) -> Result<(), Error> {
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
                EventKind::StepDeleted
            } else {
                EventKind::StepGone
            },
        )?;
        match deleted {
            Some(o) => self.progress(&step_id, "deleted", fmt_outputs(o)),
            None => self.progress(&step_id, "gone", "nothing to delete".into()),
        }
        Ok(())
    }
}
