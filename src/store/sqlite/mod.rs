//! The SQLite state file: one file (WAL, `synchronous=FULL`, mode 0600) holding runs,
//! agents, steps, the append-only `events` journal, the per-agent leases and the role
//! leases (`roles`); the [`Journal`](crate::engine::Journal) implementation over it (in
//! `committer`).
//!
//! This module opens the file and owns the connection and its transactions; the run-level
//! reads and inserts are in `runs`, the lease-checked checkpoint writes (and the journal
//! rows they append) in `checkpoint`, the mapping of rows to the journal's types in `rows`,
//! the role leases (`RunStore::lead`) in `roles`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::committer::Job;
use super::schema::{check_not_newer, migrate};
use super::{Error, Result};

mod checkpoint;
mod roles;
mod rows;
mod runs;

pub(super) use checkpoint::{
    exec, tx_acquire_lease, tx_release_lease, tx_renew_lease, tx_set_agent_state, tx_set_subject,
    tx_update_step,
};

/// The SQLite checkpoint store. Cheap to share behind an `Arc`.
pub struct Store {
    pub(super) conn: Arc<Mutex<Connection>>,
    /// The group committer's queue, started on the first journal change.
    pub(super) committer: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    /// Groups committed so far (for tests and benchmarks).
    pub(super) groups: Arc<std::sync::atomic::AtomicU64>,
    /// The state file (`:memory:` for an in-memory store), for error messages.
    pub(super) path: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path`: parent directory created, file mode
    /// 0600, WAL journal, busy timeout, migrations applied. Any failure is an
    /// [`Error::Open`] naming the file and the problem (not a state file, too new,
    /// unwritable, disk full), before anything is read or written.
    pub fn open(path: &Path) -> Result<Store> {
        Self::open_file(path).map_err(|e| Error::Open {
            path: path.display().to_string(),
            problem: match &e {
                Error::Sqlite(s) => super::describe_sqlite(s),
                Error::TooNew { found, known } => format!(
                    "written by a newer connect-onboard (schema version {found}; this build knows up to {known}): use that version, or another --state"
                ),
                Error::Io { path: p, source } if p != &path.display().to_string() => {
                    format!("cannot create its directory {p}: {source}")
                }
                Error::Io { source, .. } => format!("cannot be created: {source}"),
                e => e.to_string(),
            },
        })
    }

    fn open_file(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let existed = path.exists();
        if !existed {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        let conn = Connection::open(path)?;
        check_not_newer(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn, &path.display().to_string())
    }

    /// An in-memory store, for unit tests of the engine.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?, ":memory:")
    }

    fn init(mut conn: Connection, path: &str) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            committer: Mutex::new(None),
            groups: Arc::default(),
            path: Arc::from(path),
        })
    }

    /// Runs `f` in one `IMMEDIATE` transaction: committed if it returns `Ok`, rolled back
    /// otherwise (or if the commit fails). BEGIN and COMMIT are cached statements too.
    fn with_tx<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        exec(&conn, "BEGIN IMMEDIATE", []).map_err(|e| self.failed(e.into()))?;
        let out = f(&conn).and_then(|v| {
            exec(&conn, "COMMIT", [])?;
            Ok(v)
        });
        if out.is_err() && !conn.is_autocommit() {
            let _ = exec(&conn, "ROLLBACK", []);
        }
        out.map_err(|e| self.failed(e))
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| self.failed(e))
    }

    /// A SQLite failure, as one of this state file (named, with a hint at the cause).
    fn failed(&self, e: Error) -> Error {
        match e {
            Error::Sqlite(s) => Error::File {
                path: self.path.to_string(),
                problem: super::describe_sqlite(&s),
            },
            e => e,
        }
    }

    /// Groups of journal changes committed so far (each one transaction, one fsync).
    pub fn groups_committed(&self) -> u64 {
        self.groups.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Number of journal events (for tests and benchmarks).
    pub fn event_count(&self) -> Result<i64> {
        self.with_conn(|c| Ok(c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rusqlite::params;

    use super::*;
    use crate::engine::journal::EventKind;
    use crate::engine::journal::Journal;
    use crate::engine::journal::{JournalError, StepUpdate};
    use crate::engine::{AgentState, OnFailure, StepState};
    use crate::store::lease::start_ticks;
    use crate::store::lease::Holder;
    use crate::store::schema::MIGRATIONS;
    use crate::store::{now_ms, now_rfc3339, RunRow};

    fn seeded() -> Store {
        let s = Store::open_in_memory().unwrap();
        let run = RunRow {
            id: "r1".into(),
            created_at: now_rfc3339(),
            workflow_name: "wf".into(),
            workflow: "".into(),
            meta: serde_json::json!({}),
        };
        s.create_run(
            &run,
            &[("a@x.io".into(), serde_json::json!({"k": 1}))],
            &["s1".into(), "s2".into()],
            OnFailure::Rollback,
        )
        .unwrap();
        s
    }

    #[test]
    fn migrations_are_idempotent_and_versioned() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&mut c),
            Err(Error::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn an_unknown_stored_state_is_an_error_naming_it() {
        let s = seeded();
        s.with_conn(|c| {
            c.execute(
                "UPDATE steps SET state = 'finished' WHERE step_id = 's1'",
                [],
            )?;
            c.execute("UPDATE agents SET state = 'paused'", [])?;
            Ok(())
        })
        .unwrap();
        let e = s.steps("r1", "a@x.io").unwrap_err().to_string();
        assert!(e.contains("unknown step state \"finished\""), "{e}");
        let e = s.agent("r1", "a@x.io").unwrap_err().to_string();
        assert!(e.contains("unknown agent state \"paused\""), "{e}");
    }

    #[test]
    fn a_file_that_does_not_open_names_itself_and_its_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        std::fs::write(&p, vec![0x5a; 8192]).unwrap();
        let e = Store::open(&p).unwrap_err();
        assert!(e.is_open_failure(), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!(
                "state file {}: not a connect-onboard state file",
                p.display()
            )),
            "{shown}"
        );
        let c = Connection::open(dir.path().join("new.db")).unwrap();
        c.pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
            .unwrap();
        drop(c);
        let e = Store::open(&dir.path().join("new.db"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("written by a newer connect-onboard"), "{e}");
    }

    #[test]
    fn file_is_private_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.db");
        let s = Store::open(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let jm: String = s
            .with_conn(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(jm, "wal");
    }

    #[test]
    fn lease_excludes_a_second_live_holder_and_checks_writes() {
        let s = seeded();
        s.acquire_lease("r1", "a@x.io", "t1", 60_000).unwrap();
        // Same process, other token: the holder is alive (it is us), so refused.
        let err = s.acquire_lease("r1", "a@x.io", "t2", 60_000).unwrap_err();
        assert!(
            matches!(err, Error::Journal(JournalError::Leased { .. })),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains(&format!("pid {}", std::process::id())));
        // Writes under a token that does not hold the lease are refused.
        let up = StepUpdate {
            state: Some(StepState::Running),
            ..Default::default()
        };
        assert!(matches!(
            s.update_step("r1", "a@x.io", "t2", "s1", &up, EventKind::StepIntent),
            Err(Error::Journal(JournalError::LeaseLost { .. }))
        ));
        s.update_step("r1", "a@x.io", "t1", "s1", &up, EventKind::StepIntent)
            .unwrap();
        assert_eq!(
            s.steps("r1", "a@x.io").unwrap()[0].state,
            StepState::Running
        );
        s.renew_lease("r1", "a@x.io", "t1", 60_000).unwrap();
        assert!(s.renew_lease("r1", "a@x.io", "t2", 60_000).is_err());
    }

    #[test]
    fn expired_lease_is_taken_over_and_old_holder_is_fenced() {
        let s = seeded();
        s.acquire_lease("r1", "a@x.io", "t1", -1).unwrap();
        s.acquire_lease("r1", "a@x.io", "t2", 60_000).unwrap();
        assert!(matches!(
            s.set_agent_state("r1", "a@x.io", "t1", AgentState::Done, None),
            Err(Error::Journal(JournalError::LeaseLost { .. }))
        ));
    }

    #[test]
    fn dead_holder_on_this_host_is_taken_over() {
        let s = seeded();
        // Spawn and reap a child so its pid is certainly dead.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Holder {
            pid,
            ..Holder::current()
        };
        s.with_conn(|c| {
            c.execute(
                "UPDATE agents SET lease_token = 'old', lease_holder = ?1, lease_expires_ms = ?2",
                params![serde_json::to_string(&dead).unwrap(), now_ms() + 60_000],
            )?;
            Ok(())
        })
        .unwrap();
        s.acquire_lease("r1", "a@x.io", "new", 60_000).unwrap();
    }

    #[test]
    fn a_reused_pid_or_another_namespace_is_judged_correctly() {
        let me = Holder::current();
        assert!(me.start_ticks.is_some() && !me.pid_ns.is_empty());
        // A live process (our parent) recorded with its real start time: alive.
        let parent = std::os::unix::process::parent_id();
        let alive = Holder {
            pid: parent,
            start_ticks: start_ticks(&parent.to_string()),
            ..me.clone()
        };
        assert!(!alive.is_dead());
        // The same pid with another start time: the pid was reused, the holder is gone.
        let reused = Holder {
            start_ticks: alive.start_ticks.map(|t| t + 1),
            ..alive.clone()
        };
        assert!(reused.is_dead());
        // Another PID namespace: its pids mean nothing here, presumed alive.
        let elsewhere = Holder {
            pid: 999_999,
            pid_ns: "pid:[1]".into(),
            ..me.clone()
        };
        assert!(!elsewhere.is_dead());
        let gone = Holder { pid: 999_999, ..me };
        assert!(gone.is_dead() || std::path::Path::new("/proc/999999").exists());
    }

    #[test]
    fn step_update_is_journaled_and_outputs_round_trip() {
        let s = seeded();
        s.acquire_lease("r1", "a@x.io", "t", 60_000).unwrap();
        let before = s.event_count().unwrap();
        let mut out = BTreeMap::new();
        out.insert("user_id".to_string(), "u-1".to_string());
        s.update_step(
            "r1",
            "a@x.io",
            "t",
            "s2",
            &StepUpdate {
                state: Some(StepState::Done),
                owned: Some(true),
                outputs: Some(out.clone()),
                bump_attempts: true,
                mark_write: Some(now_ms()),
                ..Default::default()
            },
            EventKind::StepDone,
        )
        .unwrap();
        assert_eq!(s.event_count().unwrap(), before + 1);
        let st = &s.steps("r1", "a@x.io").unwrap()[1];
        assert_eq!(st.outputs, out);
        assert!(st.owned);
        assert_eq!(st.attempts, 1);
        assert!(st.first_write_ms.is_some());
        assert_eq!(st.first_write_ms, st.last_write_ms);
    }

    #[tokio::test]
    #[allow(clippy::await_holding_lock)] // deliberately: the committer must queue behind it
    async fn concurrent_changes_share_a_commit_and_a_refusal_undoes_only_its_own() {
        let s = Arc::new(seeded());
        Store::acquire_lease(&s, "r1", "a@x.io", "t", 60_000).unwrap();
        let before = s.event_count().unwrap();
        // Hold the connection so that both changes queue up behind it: one group.
        let held = s.conn.lock().unwrap();
        let up = |state| StepUpdate {
            state: Some(state),
            ..Default::default()
        };
        let (a, b) = (s.clone(), s.clone());
        let ok = tokio::spawn(async move {
            Journal::update_step(
                &*a,
                &"r1".into(),
                &"a@x.io".into(),
                "t",
                &"s1".into(),
                &up(StepState::Running),
                EventKind::StepIntent,
            )
            .await
        });
        let refused = tokio::spawn(async move {
            Journal::update_step(
                &*b,
                &"r1".into(),
                &"a@x.io".into(),
                "stolen",
                &"s2".into(),
                &up(StepState::Done),
                EventKind::StepIntent,
            )
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(held);
        assert_eq!(ok.await.unwrap(), Ok(()));
        assert!(matches!(
            refused.await.unwrap(),
            Err(JournalError::LeaseLost { .. })
        ));
        assert_eq!(s.groups_committed(), 1, "both changes in one transaction");
        let steps = s.steps("r1", "a@x.io").unwrap();
        assert_eq!(
            steps[0].state,
            StepState::Running,
            "the fenced change is kept"
        );
        assert_eq!(
            steps[1].state,
            StepState::Pending,
            "the refused one left nothing"
        );
        assert_eq!(
            s.event_count().unwrap(),
            before + 1,
            "one event, the kept change's"
        );
    }
}
