//! The write-ahead sequence, once: every write the engine sends — a forward step's create,
//! an irreversible step's delete, a compensation's delete — goes through [`Driver::send`]:
//! its intent is durable before the call, the call gets the step's bound inputs, and the
//! crash-test hooks stand at the same points around every write. Also the one rule for a
//! delete answered "not found" ([`delete_not_found`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::action::{ErrorKind, Outputs, StepContext, StepError};
use super::driver::{bind, Driver, Error};
use super::hooks::CrashPoint;
use super::journal::{Change, EventKind, StepUpdate};
use super::state::StepState;

/// Which call a write is.
pub(super) enum Call<'o> {
    /// The step's create.
    Create,
    /// The step's delete of these resources.
    Delete(&'o Outputs),
}

/// Where the crash-test hooks stand around one write.
pub(super) struct Crashes {
    /// After the intent is durable, before the call (`None`: no hook).
    pub before: Option<CrashPoint>,
    /// After the call, before its result is recorded.
    pub after: CrashPoint,
}

impl Crashes {
    /// A forward write's or a removal's: before and after the call.
    pub const AROUND_WRITE: Crashes = Crashes {
        before: Some(CrashPoint::BeforeWrite),
        after: CrashPoint::AfterWrite,
    };
    /// A compensation's: after its delete.
    pub const AFTER_DELETE: Crashes = Crashes {
        before: None,
        after: CrashPoint::AfterDelete,
    };
}

impl<S> Driver<'_, S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Records `intent` (with the journal event `kind`) durably, then sends `call` with the
    /// step's inputs bound from the earlier steps' outputs, the crash hooks around it. The
    /// outer error is the journal's; the inner result is the call's (a delete's `Ok` holds
    /// no outputs). No `intent`: it is durable already (declared with the step before, see
    /// [`Driver::declare`]); the lease is still checked.
    pub(super) async fn send(
        &mut self,
        idx: usize,
        attempt: u32,
        intent: Option<(StepUpdate, EventKind)>,
        call: Call<'_>,
        crashes: Crashes,
    ) -> Result<Result<Outputs, StepError>, Error> {
        let step = self.wf().steps[idx].clone();
        let action = self.engine.registry[&step.action].clone();
        match intent {
            Some((update, kind)) => self.update(idx, update, kind).await?,
            None => self.fenced()?,
        }
        if let Some(point) = crashes.before {
            self.crash(point, &step.id);
        }
        let inputs = bind(&step, &self.known()).unwrap_or_default();
        let cx = StepContext {
            subject: &self.subject,
            inputs: &inputs,
            secrets: self.secrets,
            attempt,
        };
        let result = match call {
            Call::Create => action.create(&cx).await,
            Call::Delete(outputs) => action.delete(&cx, outputs).await.map(|()| Outputs::new()),
        };
        self.crash(crashes.after, &step.id);
        Ok(result)
    }
}

impl<S> Driver<'_, S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Declares step `idx`'s intent in the next checkpoint (that of the step before it), so
    /// that its create is sent without a checkpoint of its own if it comes within
    /// [`DECLARED_FOR_MS`]. The write time it records is the end of that bound, never earlier
    /// than the send: a settle window counts from it.
    pub(super) fn declare(&mut self, idx: usize) -> Result<(), Error> {
        let now = self.engine.opts.clock.now_ms();
        let intent = StepUpdate {
            state: Some(StepState::Running),
            unresolved: Some(true),
            bump_attempts: true,
            mark_write: Some(now + DECLARED_FOR_MS),
            ..Default::default()
        };
        self.defer(idx, intent, EventKind::StepIntent)?;
        self.declared = Some((idx, now));
        Ok(())
    }

    /// Whether step `idx`'s intent was declared ahead: `Some(true)` when that declaration
    /// is durable and recent (at most [`DECLARED_FOR_MS`] old: the write time it recorded
    /// is not earlier than now), `Some(false)` when it must be written again, `None` when
    /// there was none.
    pub(super) fn take_declared(&mut self, idx: usize) -> Option<bool> {
        let (step, at) = self.declared.filter(|(s, _)| *s == idx)?;
        self.declared = None;
        let id = &self.wf().steps[step].id;
        let pending = self.deferred.iter().any(|c| {
            matches!(c, Change::Step { step, kind: EventKind::StepIntent, .. } if step.as_str() == id)
        });
        let fresh = self.engine.opts.clock.now_ms() - at <= DECLARED_FOR_MS;
        Some(!pending && fresh)
    }

    /// A declared intent whose step is not sent in this pass (the agent stops first) is
    /// taken back: the step is pending again, not unresolved (no write of it was sent).
    pub(super) fn undeclare(&mut self) -> Result<(), Error> {
        let Some((idx, _)) = self.declared.take() else {
            return Ok(());
        };
        let back = StepUpdate {
            state: Some(StepState::Pending),
            unresolved: Some(false),
            ..Default::default()
        };
        self.defer(idx, back, EventKind::StepError)
    }
}

/// How long a declared intent stands for its step's write: past it, the intent is written
/// again (the write time it recorded would be earlier than the send). Long enough for the
/// checkpoint carrying it and the step before it to go through a busy table (on a saturated
/// emulator 1 s was often not); short against the settle windows it may lengthen (30–60 s),
/// and only when a write's outcome is unknown.
pub(super) const DECLARED_FOR_MS: i64 = 5_000;

/// A delete answered "not found": done — nothing is left to delete — except while the
/// resource is within the settle window of a write of ours (`within_settle`), where "not
/// found" may only mean "not visible yet": then it is a transient error, waited out rather
/// than leaving the resource behind. Compensation deletes what this run just created, so
/// its window applies; an irreversible removal deletes what existed before the run (it was
/// looked up and found first, and no write of ours made it), so for it the window is never
/// open and "not found" is done at once.
pub(super) fn delete_not_found(
    res: Result<Outputs, StepError>,
    within_settle: bool,
) -> Result<Outputs, StepError> {
    match res {
        Err(e) if e.kind == ErrorKind::NotFound && within_settle => Err(StepError::new(
            ErrorKind::Transient,
            e.code,
            format!(
                "{} (within the settle window: may not be visible yet)",
                e.message
            ),
        )),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(Outputs::new()),
        other => other,
    }
}
