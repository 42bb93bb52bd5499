//! The checkpoint store: the SQLite state file ([`Store`], `sqlite`) that implements the
//! engine's [`Journal`](crate::engine::Journal), its schema migrations (`schema`) and
//! lease holders (`lease`); the DynamoDB table shared by machines ([`DynamoStore`],
//! `dynamodb`: the same guarantees by conditional writes); where the state lives and which
//! backend opens it (`location`); and [`MemoryJournal`], the in-memory journal that dry runs
//! and engine unit tests use.
//!
//! Why here: the engine's durability rests on three properties this layer guarantees, and
//! nothing else touches SQL or the table. (The points below are the state file's; the
//! table's are in `dynamodb`.)
//! - **Every transition is atomic and durable before it is acknowledged.** Each state change
//!   of a step or agent (with its `events` row) runs in its own savepoint inside an
//!   `IMMEDIATE` transaction that the group committer (`committer`) shares among the changes
//!   queued at that moment; the caller hears back only after that COMMIT is fsync'd, so a
//!   crash leaves either the old state or the new one, never half.
//! - **Lease-checked writes.** Every checkpoint of an agent is conditioned on the caller still
//!   holding that agent's lease (checked in the same transaction), so a driver that lost its
//!   lease cannot overwrite the new holder's progress.
//! - **Append-only migrations** (see `schema`).
//!
//! The store knows nothing about AWS: subjects and outputs are opaque JSON. It may use the
//! engine's journal types and states, nothing else of the crate.

mod committer;
mod dynamodb;
mod lease;
mod location;
mod memory;
mod run_store;
mod schema;
mod sqlite;

pub use crate::engine::journal::{AgentRow, JournalError, StepRow, StepUpdate};
pub use dynamodb::DynamoStore;
pub use lease::Holder;
pub use location::{
    has_state, init, open, open_existing, Access, Initialised, Location, Permissions,
};
pub use memory::MemoryJournal;
pub use run_store::{Leadership, RateBudget, RunStore};
pub use sqlite::Store;

use serde::{Deserialize, Serialize};

use crate::engine::clock::system_now_ms;
use crate::engine::{RunId, UnknownState};

/// Errors of the checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A journal-level refusal or failure (lease held or lost, not found, corrupt).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A stored state name this build does not know.
    #[error(transparent)]
    UnknownState(#[from] UnknownState),
    /// SQLite failed (I/O, corruption, locking past the busy timeout).
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The state file could not be created or its permissions set.
    #[error("state store {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The state file cannot be used: it does not open, is not a state file (corrupt,
    /// truncated), was written by a newer build, or cannot be written. Raised by
    /// [`Store::open`] before anything is read or written.
    #[error("state file {path}: {problem}")]
    Open {
        /// The state file.
        path: String,
        /// What is wrong with it, and what to do.
        problem: String,
    },
    /// Reading or writing the open state file failed (disk full, I/O error, locked past the
    /// busy timeout).
    #[error("state file {path}: {problem}")]
    File {
        /// The state file.
        path: String,
        /// What failed.
        problem: String,
    },
    /// The state file was written by a newer connect-onboard.
    #[error("schema version {found} is newer than this build understands ({known})")]
    TooNew {
        /// Version in the file.
        found: usize,
        /// Newest version this build knows.
        known: usize,
    },
    /// A stored JSON column did not parse.
    #[error("state store holds malformed {what}: {source}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
    /// No state file at the path a command on existing runs was given: nothing has run
    /// with it yet.
    #[error("no state file at {0}: no onboarding has run with this state file yet (see --state or [state] path)")]
    NoState(String),
    /// The state table does not exist (a `dynamodb://` store): nothing was read or written.
    #[error("state table {url}: the table {table} does not exist (or not in this account and region): create it with `connect-onboard init --state {url}`")]
    NoTable {
        /// The store's URL.
        url: String,
        /// The table.
        table: String,
    },
    /// The state table cannot be used (access denied, not a connect-onboard table, written
    /// by a newer build, unreachable): nothing was read or written.
    #[error("state table {url}: {problem}")]
    OpenTable {
        /// The store's URL.
        url: String,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// A call to the state table failed past its retries (throttled, unreachable, 5xx).
    #[error("state table {url}: {problem}")]
    Remote {
        /// The store's URL.
        url: String,
        /// What failed.
        problem: String,
    },
    /// The agent already has an unfinished onboarding.
    #[error("{agent} already has an unfinished onboarding in run {run} (state {state}): use `connect-onboard resume {run}` or `connect-onboard rollback {run} --email {agent}` (or `release`)")]
    Unfinished {
        /// Agent key.
        agent: String,
        /// The earlier run.
        run: String,
        /// Its state.
        state: String,
    },
}

impl Error {
    /// Whether the state file could not be opened at all ([`Error::Open`]): nothing was
    /// read from or written to it.
    pub fn is_open_failure(&self) -> bool {
        matches!(
            self,
            Error::Open { .. }
                | Error::NoState(_)
                | Error::NoTable { .. }
                | Error::OpenTable { .. }
        )
    }
}

/// What a failed SQLite call says about the state file, with a hint where the cause is
/// the file or its disk rather than a bug.
pub(crate) fn describe_sqlite(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::NotADatabase | C::DatabaseCorrupt) => format!(
            "not a connect-onboard state file, or corrupt ({e}): restore it from a backup, or use another --state"
        ),
        Some(C::DiskFull | C::SystemIoFailure) => {
            format!("{e} (is the disk full, or the file over a size limit?)")
        }
        Some(C::ReadOnly | C::CannotOpen | C::PermissionDenied) => {
            format!("cannot be written ({e})")
        }
        _ => e.to_string(),
    }
}

/// Result alias of this layer.
pub type Result<T> = std::result::Result<T, Error>;

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        JournalError::Storage(e.to_string())
    }
}

impl From<Error> for JournalError {
    fn from(e: Error) -> Self {
        match e {
            Error::Journal(j) => j,
            e @ (Error::UnknownState(_)
            | Error::Corrupt { .. }
            | Error::TooNew { .. }
            | Error::Open { .. }
            | Error::NoState(_)
            | Error::NoTable { .. }
            | Error::OpenTable { .. }) => JournalError::Corrupt(e.to_string()),
            e => JournalError::Storage(e.to_string()),
        }
    }
}

/// Milliseconds since the Unix epoch (wall clock: these times outlive the process).
pub fn now_ms() -> i64 {
    system_now_ms()
}

/// RFC 3339 UTC timestamp for humans and the status JSON.
pub fn now_rfc3339() -> String {
    fmt_ms(now_ms())
}

/// An epoch-milliseconds time as RFC 3339 in UTC with exactly three fractional digits
/// (`2026-12-04T16:46:06.120Z`): the same width for every instant, so that the stored
/// strings sort as the instants do (`ORDER BY created_at`) and read alike in `status`.
pub fn fmt_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

/// A run's row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRow {
    /// Run id.
    pub id: RunId,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Workflow name.
    pub workflow_name: String,
    /// The workflow definition (TOML) the run was started with.
    pub workflow: String,
    /// Free-form run metadata (JSON), e.g. the resolved configuration.
    pub meta: serde_json::Value,
}

#[cfg(test)]
mod time_tests {
    use super::fmt_ms;

    #[test]
    fn timestamps_have_three_fractional_digits_and_sort_as_instants() {
        // A whole second, a tenth and a millisecond: RFC 3339's shortest forms would be
        // `...:06Z`, `...:06.1Z` and `...:06.001Z`, and `Z` sorts after `.`.
        let whole = fmt_ms(1_796_402_766_000);
        let tenth = fmt_ms(1_796_402_766_100);
        let milli = fmt_ms(1_796_402_766_001);
        assert_eq!(whole, "2026-12-04T16:46:06.000Z");
        assert_eq!(tenth, "2026-12-04T16:46:06.100Z");
        assert_eq!(milli, "2026-12-04T16:46:06.001Z");
        let mut sorted = vec![tenth.clone(), whole.clone(), milli.clone()];
        sorted.sort();
        assert_eq!(sorted, vec![whole, milli, tenth]);
    }
}
