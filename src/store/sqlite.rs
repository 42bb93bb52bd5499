//! The SQLite state file: one file (WAL, `synchronous=FULL`, mode 0600) holding runs,
//! agents, steps, the append-only `events` journal and the per-agent leases; the
//! [`Journal`] implementation over it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::committer::Job;
use super::lease::Holder;
use super::schema::{check_not_newer, migrate};
use super::{fmt_ms, now_ms, now_rfc3339, Error, Result, RunRow};
use crate::engine::journal::{AgentRow, JournalError, StepRow, StepUpdate};
use crate::engine::{AgentState, OnFailure, StepState};

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

    /// Creates a run with its agents and their pending steps, in one transaction.
    pub fn create_run(
        &self,
        run: &RunRow,
        agents: &[(String, serde_json::Value)],
        steps: &[String],
        on_failure: OnFailure,
    ) -> Result<()> {
        self.with_tx(|tx| insert_run(tx, run, agents, steps, on_failure))
    }

    /// Adds agents (with their pending steps) to an existing run, in one transaction: a
    /// batch inserts its file in chunks, so memory stays bounded by the chunk.
    pub fn add_agents(
        &self,
        run: &str,
        agents: &[(String, serde_json::Value)],
        steps: &[String],
        on_failure: OnFailure,
    ) -> Result<()> {
        self.with_tx(|tx| insert_agents(tx, run, agents, steps, on_failure))
    }

    /// The latest run of the agent with this key, and its state there, if any.
    pub fn latest_by_key(&self, key: &str) -> Result<Option<(String, AgentState)>> {
        self.with_conn(|c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT run_id, state FROM agents WHERE agent_key = ?1
                     ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match row {
                None => Ok(None),
                Some((run, state)) => Ok(Some((run, AgentState::parse(&state)?))),
            }
        })
    }

    /// Every run that holds the agent with this key, oldest first.
    pub fn runs_of_agent(&self, key: &str) -> Result<Vec<String>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT run_id FROM agents WHERE agent_key = ?1 ORDER BY created_at, rowid",
            )?;
            let rows = st.query_map(params![key], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// A page of a run's agent keys after `after` (a rowid; 0 for the first page), in
    /// insertion order, with the rowid to continue from: a large run is walked in pages.
    pub fn agent_keys_page(
        &self,
        run: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT rowid, agent_key FROM agents WHERE run_id = ?1 AND rowid > ?2 ORDER BY rowid LIMIT ?3",
            )?;
            let rows = st.query_map(params![run, after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<(i64, String)>>>()?)
        })
    }

    /// Like [`Store::create_run`], but refuses (with [`Error::Unfinished`]) when one of the
    /// agents already has a run in one of `open_states`, or in one of `holding_states` with a
    /// step that owns or may own a resource. Checked in the same transaction as the insert,
    /// so two processes cannot both pass the check.
    pub fn create_run_exclusive(
        &self,
        run: &RunRow,
        agents: &[(String, serde_json::Value)],
        steps: &[String],
        on_failure: OnFailure,
        open_states: &[AgentState],
        holding_states: &[AgentState],
    ) -> Result<()> {
        self.with_tx(|tx| {
            for (key, _) in agents {
                let mut st = tx.prepare_cached(
                    "SELECT a.run_id, a.state,
                            EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.agent_key = a.agent_key
                                    AND (s.owned = 1 OR s.unresolved = 1))
                     FROM agents a WHERE a.agent_key = ?1 ORDER BY a.created_at",
                )?;
                let rows = st.query_map(params![key], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?))
                })?;
                for row in rows {
                    let (prev_run, state, holds) = row?;
                    let parsed = AgentState::parse(&state)?;
                    if open_states.contains(&parsed)
                        || (holds && holding_states.contains(&parsed))
                    {
                        return Err(Error::Unfinished {
                            agent: key.clone(),
                            run: prev_run,
                            state,
                        });
                    }
                }
            }
            insert_run(tx, run, agents, steps, on_failure)
        })
    }

    /// Takes the agent's lease for `ttl_ms` under `token`, unless a live process holds it.
    /// An expired lease, or one whose holder is a dead process on this host, is taken over.
    pub fn acquire_lease(&self, run: &str, agent: &str, token: &str, ttl_ms: i64) -> Result<()> {
        self.with_tx(|tx| tx_acquire_lease(tx, run, agent, token, ttl_ms))
    }

    /// Extends the lease; fails with `LeaseLost` if `token` no longer holds it.
    pub fn renew_lease(&self, run: &str, agent: &str, token: &str, ttl_ms: i64) -> Result<()> {
        self.with_tx(|tx| tx_renew_lease(tx, run, agent, token, ttl_ms))
    }

    /// Releases the lease if `token` holds it.
    pub fn release_lease(&self, run: &str, agent: &str, token: &str) -> Result<()> {
        self.with_tx(|tx| tx_release_lease(tx, run, agent, token))
    }

    /// Applies `update` to a step, checked against the lease, with a journal event `kind`.
    pub fn update_step(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        step: &str,
        update: &StepUpdate,
        kind: &str,
    ) -> Result<()> {
        self.with_tx(|tx| tx_update_step(tx, run, agent, token, step, update, kind))
    }

    /// Sets the agent's state (and last error), checked against the lease.
    pub fn set_agent_state(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        state: AgentState,
        last_error: Option<&str>,
    ) -> Result<()> {
        self.with_tx(|tx| tx_set_agent_state(tx, run, agent, token, state, last_error))
    }

    /// Replaces the agent's subject, checked against the lease.
    pub fn set_subject(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        subject: &serde_json::Value,
    ) -> Result<()> {
        self.with_tx(|tx| tx_set_subject(tx, run, agent, token, subject))
    }

    /// One run.
    pub fn run(&self, run: &str) -> Result<RunRow> {
        self.with_conn(|c| {
            c.prepare_cached(
                "SELECT id, created_at, workflow_name, workflow, meta FROM runs WHERE id = ?1",
            )?
            .query_row(params![run], run_from_row)
            .optional()?
            .ok_or_else(|| Error::from(JournalError::NotFound(format!("run {run}"))))?
        })
    }

    /// All runs, oldest first.
    pub fn runs(&self) -> Result<Vec<RunRow>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, created_at, workflow_name, workflow, meta FROM runs ORDER BY created_at, id",
            )?;
            let rows = st.query_map([], run_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
    }

    /// The agents of a run, in insertion order.
    pub fn agents(&self, run: &str) -> Result<Vec<AgentRow>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT run_id, agent_key, subject, state, on_failure, last_error, created_at, updated_at
                 FROM agents WHERE run_id = ?1 ORDER BY rowid",
            )?;
            let rows = st.query_map(params![run], agent_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
    }

    /// One agent.
    pub fn agent(&self, run: &str, agent: &str) -> Result<AgentRow> {
        self.with_conn(|c| {
            c.prepare_cached(
                "SELECT run_id, agent_key, subject, state, on_failure, last_error, created_at, updated_at
                 FROM agents WHERE run_id = ?1 AND agent_key = ?2",
            )?
            .query_row(params![run, agent], agent_from_row)
            .optional()?
            .ok_or_else(|| Error::from(JournalError::NotFound(format!("agent {agent} in run {run}"))))?
        })
    }

    /// The steps of one agent, in workflow order.
    pub fn steps(&self, run: &str, agent: &str) -> Result<Vec<StepRow>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT step_id, seq, state, owned, unresolved, outputs, attempts, first_write_ms, last_error, updated_at, last_write_ms
                 FROM steps WHERE run_id = ?1 AND agent_key = ?2 ORDER BY seq",
            )?;
            let rows = st.query_map(params![run, agent], |r| {
                let outputs: Option<String> = r.get(5)?;
                Ok((
                    StepRow {
                        step_id: r.get(0)?,
                        seq: r.get(1)?,
                        state: StepState::Pending,
                        owned: r.get(3)?,
                        unresolved: r.get(4)?,
                        outputs: BTreeMap::new(),
                        attempts: r.get(6)?,
                        first_write_ms: r.get(7)?,
                        last_write_ms: r.get(10)?,
                        last_error: r.get(8)?,
                        updated_at: r.get(9)?,
                    },
                    outputs,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (mut row, outputs, state) = r?;
                row.state = StepState::parse(&state)?;
                if let Some(o) = outputs {
                    row.outputs = serde_json::from_str(&o).map_err(|source| Error::Corrupt {
                        what: "step outputs",
                        source,
                    })?;
                }
                out.push(row);
            }
            Ok(out)
        })
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

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RunRow>> {
    let meta: String = r.get(4)?;
    Ok(Ok(RunRow {
        id: r.get(0)?,
        created_at: r.get(1)?,
        workflow_name: r.get(2)?,
        workflow: r.get(3)?,
        meta: match serde_json::from_str(&meta) {
            Ok(m) => m,
            Err(source) => {
                return Ok(Err(Error::Corrupt {
                    what: "run meta",
                    source,
                }))
            }
        },
    }))
}

fn agent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AgentRow>> {
    let subject: String = r.get(2)?;
    Ok(Ok(AgentRow {
        run_id: r.get(0)?,
        agent_key: r.get(1)?,
        subject: match serde_json::from_str(&subject) {
            Ok(s) => s,
            Err(source) => {
                return Ok(Err(Error::Corrupt {
                    what: "agent subject",
                    source,
                }))
            }
        },
        state: match AgentState::parse(&r.get::<_, String>(3)?) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.into())),
        },
        on_failure: match OnFailure::parse(&r.get::<_, String>(4)?) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.into())),
        },
        last_error: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    }))
}

fn insert_run(
    tx: &Connection,
    run: &RunRow,
    agents: &[(String, serde_json::Value)],
    steps: &[String],
    on_failure: OnFailure,
) -> Result<()> {
    exec(
                tx,
                "INSERT INTO runs (id, created_at, workflow_name, workflow, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run.id, run.created_at, run.workflow_name, run.workflow, run.meta.to_string()],
            )?;
    insert_agents(tx, &run.id, agents, steps, on_failure)
}

fn insert_agents(
    tx: &Connection,
    run_id: &str,
    agents: &[(String, serde_json::Value)],
    steps: &[String],
    on_failure: OnFailure,
) -> Result<()> {
    let now = now_rfc3339();
    for (key, subject) in agents {
        exec(
                tx,
                    "INSERT INTO agents (run_id, agent_key, subject, state, on_failure, created_at, updated_at)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5)",
                    params![run_id, key, subject.to_string(), on_failure.as_str(), now],
                )?;
        for (seq, step) in steps.iter().enumerate() {
            exec(
                tx,
                "INSERT INTO steps (run_id, agent_key, step_id, seq, state, updated_at)
                         VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
                params![run_id, key, step, seq as i64, now],
            )?;
        }
        journal(tx, run_id, key, None, "agent_created", None)?;
    }
    Ok(())
}

pub(super) fn tx_acquire_lease(
    tx: &Connection,
    run: &str,
    agent: &str,
    token: &str,
    ttl_ms: i64,
) -> Result<()> {
    let row: Option<(Option<String>, Option<String>, Option<i64>)> = tx
        .query_row(
            "SELECT lease_token, lease_holder, lease_expires_ms FROM agents WHERE run_id = ?1 AND agent_key = ?2",
            params![run, agent],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((cur_token, holder, expires)) = row else {
        return Err(Error::from(JournalError::NotFound(format!(
            "agent {agent} in run {run}"
        ))));
    };
    let now = now_ms();
    if let (Some(cur), Some(exp)) = (cur_token, expires) {
        if cur != token && exp > now {
            let h: Option<Holder> = holder.as_deref().and_then(|h| serde_json::from_str(h).ok());
            let dead = h.as_ref().is_some_and(Holder::is_dead);
            if !dead {
                let who = h
                    .map(|h| format!("pid {} on host {}", h.pid, h.host))
                    .unwrap_or_else(|| "another process".into());
                return Err(JournalError::Leased {
                    run: run.into(),
                    agent: agent.into(),
                    holder: who,
                    expires: fmt_ms(exp),
                }
                .into());
            }
        }
    }
    let holder = serde_json::to_string(&Holder::current()).unwrap_or_default();
    exec(
        tx,
        "UPDATE agents SET lease_token = ?3, lease_holder = ?4, lease_expires_ms = ?5 WHERE run_id = ?1 AND agent_key = ?2",
        params![run, agent, token, holder, now + ttl_ms],
    )?;
    journal(tx, run, agent, None, "lease_acquired", Some(&holder))?;
    Ok(())
}

pub(super) fn tx_renew_lease(
    tx: &Connection,
    run: &str,
    agent: &str,
    token: &str,
    ttl_ms: i64,
) -> Result<()> {
    let n = exec(
        tx,
        "UPDATE agents SET lease_expires_ms = ?4 WHERE run_id = ?1 AND agent_key = ?2 AND lease_token = ?3",
        params![run, agent, token, now_ms() + ttl_ms],
    )?;
    if n == 0 {
        return Err(JournalError::LeaseLost {
            run: run.into(),
            agent: agent.into(),
        }
        .into());
    }
    Ok(())
}

pub(super) fn tx_release_lease(tx: &Connection, run: &str, agent: &str, token: &str) -> Result<()> {
    exec(
        tx,
        "UPDATE agents SET lease_token = NULL, lease_holder = NULL, lease_expires_ms = NULL
         WHERE run_id = ?1 AND agent_key = ?2 AND lease_token = ?3",
        params![run, agent, token],
    )?;
    Ok(())
}

pub(super) fn tx_update_step(
    tx: &Connection,
    run: &str,
    agent: &str,
    token: &str,
    step: &str,
    update: &StepUpdate,
    kind: &str,
) -> Result<()> {
    check_lease(tx, run, agent, token)?;
    // One statement, prepared once per connection: a checkpoint's cost is its
    // fsync, not SQL parsing (measured: re-preparing was a third of the CPU).
    let outputs = update
        .outputs
        .as_ref()
        .map(|o| serde_json::to_string(o).unwrap_or_default());
    let n = exec(
        tx,
        "UPDATE steps SET
            state = COALESCE(?4, state),
            owned = COALESCE(?5, owned),
            unresolved = COALESCE(?6, unresolved),
            outputs = COALESCE(?7, outputs),
            attempts = attempts + ?8,
            first_write_ms = COALESCE(first_write_ms, ?9),
            last_write_ms = COALESCE(?9, last_write_ms),
            last_error = CASE WHEN ?10 THEN ?11 ELSE last_error END,
            updated_at = ?12
         WHERE run_id = ?1 AND agent_key = ?2 AND step_id = ?3",
        params![
            run,
            agent,
            step,
            update.state.map(StepState::as_str),
            update.owned,
            update.unresolved,
            outputs,
            i64::from(update.bump_attempts),
            update.mark_write,
            update.last_error.is_some(),
            update.last_error.clone().flatten(),
            now_rfc3339(),
        ],
    )?;
    if n == 0 {
        return Err(
            JournalError::NotFound(format!("step {step} of agent {agent} in run {run}")).into(),
        );
    }
    let detail = update.last_error.clone().flatten().or(outputs);
    journal(tx, run, agent, Some(step), kind, detail.as_deref())?;
    Ok(())
}

pub(super) fn tx_set_agent_state(
    tx: &Connection,
    run: &str,
    agent: &str,
    token: &str,
    state: AgentState,
    last_error: Option<&str>,
) -> Result<()> {
    check_lease(tx, run, agent, token)?;
    let state = state.as_str();
    exec(
        tx,
        "UPDATE agents SET state = ?3, last_error = ?4, updated_at = ?5 WHERE run_id = ?1 AND agent_key = ?2",
        params![run, agent, state, last_error, now_rfc3339()],
    )?;
    journal(tx, run, agent, None, &format!("agent_{state}"), last_error)?;
    Ok(())
}

pub(super) fn tx_set_subject(
    tx: &Connection,
    run: &str,
    agent: &str,
    token: &str,
    subject: &serde_json::Value,
) -> Result<()> {
    check_lease(tx, run, agent, token)?;
    exec(
        tx,
        "UPDATE agents SET subject = ?3, updated_at = ?4 WHERE run_id = ?1 AND agent_key = ?2",
        params![run, agent, subject.to_string(), now_rfc3339()],
    )?;
    journal(tx, run, agent, None, "agent_subject_replaced", None)?;
    Ok(())
}

/// Executes `sql` with a statement prepared once per connection (SQLite's parser is not
/// free, and every checkpoint runs the same few statements).
pub(super) fn exec<P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

fn check_lease(tx: &Connection, run: &str, agent: &str, token: &str) -> Result<()> {
    let cur: Option<Option<String>> = tx
        .prepare_cached("SELECT lease_token FROM agents WHERE run_id = ?1 AND agent_key = ?2")?
        .query_row(params![run, agent], |r| r.get(0))
        .optional()?;
    match cur {
        None => Err(Error::from(JournalError::NotFound(format!(
            "agent {agent} in run {run}"
        )))),
        Some(Some(t)) if t == token => Ok(()),
        Some(_) => Err(JournalError::LeaseLost {
            run: run.into(),
            agent: agent.into(),
        }
        .into()),
    }
}

fn journal(
    tx: &Connection,
    run: &str,
    agent: &str,
    step: Option<&str>,
    kind: &str,
    detail: Option<&str>,
) -> Result<()> {
    exec(
                tx,
        "INSERT INTO events (at, run_id, agent_key, step_id, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now_rfc3339(), run, agent, step, kind, detail],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::journal::Journal;
    use crate::store::lease::start_ticks;
    use crate::store::schema::MIGRATIONS;

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
            s.update_step("r1", "a@x.io", "t2", "s1", &up, "x"),
            Err(Error::Journal(JournalError::LeaseLost { .. }))
        ));
        s.update_step("r1", "a@x.io", "t1", "s1", &up, "x").unwrap();
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
            "step_done",
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
            Journal::update_step(&*a, "r1", "a@x.io", "t", "s1", &up(StepState::Running), "x").await
        });
        let refused = tokio::spawn(async move {
            Journal::update_step(
                &*b,
                "r1",
                "a@x.io",
                "stolen",
                "s2",
                &up(StepState::Done),
                "x",
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
