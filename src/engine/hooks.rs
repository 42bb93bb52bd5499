//! Hooks out of the engine: progress events for the human output, and the crash points the
//! crash/resume tests abort the process at (the only place they live).

use std::sync::Arc;

use serde::Serialize;

/// Points where a test may crash the process (`abort`), to prove write-ahead recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the intent is committed, before the write is sent.
    BeforeWrite,
    /// After the write returned, before its result is committed.
    AfterWrite,
    /// After the result is committed.
    AfterCheckpoint,
    /// After a compensating delete returned, before it is committed.
    AfterDelete,
}

impl std::str::FromStr for CrashPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "before_write" => Ok(CrashPoint::BeforeWrite),
            "after_write" => Ok(CrashPoint::AfterWrite),
            "after_checkpoint" => Ok(CrashPoint::AfterCheckpoint),
            "after_delete" => Ok(CrashPoint::AfterDelete),
            _ => Err(format!("unknown crash point {s:?}")),
        }
    }
}

/// A progress event for the human output.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Agent key.
    pub agent: String,
    /// Step id.
    pub step: String,
    /// What happened: created, adopted, exists (owned after an unknown outcome), retrying,
    /// failed, conflict, rolled_back, kept_shared, nothing_to_undo, compensation_failed;
    /// for an irreversible step: deleted, gone (nothing to delete).
    pub event: &'static str,
    /// Ids or the error.
    pub detail: String,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;
