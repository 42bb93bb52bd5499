//! The group committer: the engine's journal over the state file. Every change of every
//! concurrent agent is queued to one thread, which runs all the changes queued meanwhile in
//! one transaction (each in its own savepoint) and answers each caller once the group's
//! COMMIT is durable. One fsync per group instead of one per checkpoint, and still every
//! write's intent on disk before the write is sent. A group that would be small waits up
//! to 2 ms for more.

use crate::engine::journal::EventKind;
use std::sync::Mutex;

use rusqlite::Connection;

use super::sqlite::{
    exec, tx_acquire_lease, tx_release_lease, tx_renew_lease, tx_set_agent_state, tx_set_subject,
    tx_update_step,
};
use super::{describe_sqlite, Result, Store};
use crate::engine::journal::{AgentRow, Change, Journal, JournalError, StepRow, StepUpdate};
use crate::engine::{AgentKey, AgentState, RunId, StepId};

/// The engine's journal over the state file. Every change goes through the group
/// committer: the checkpoints of concurrent agents share one transaction and one fsync, and
/// each call returns once its own change is committed (durable before the AWS write it
/// announces). Each change runs inside its own savepoint, so one agent's refusal (a lost
/// lease) never undoes another's.
#[async_trait::async_trait]
impl Journal for Store {
    async fn acquire_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        ttl_ms: i64,
    ) -> std::result::Result<(), JournalError> {
        let (run, agent, token) = (run.to_string(), agent.to_string(), token.to_string());
        self.submit(move |c| tx_acquire_lease(c, &run, &agent, &token, ttl_ms))
            .await
    }
    async fn renew_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        ttl_ms: i64,
    ) -> std::result::Result<(), JournalError> {
        let (run, agent, token) = (run.to_string(), agent.to_string(), token.to_string());
        self.submit(move |c| tx_renew_lease(c, &run, &agent, &token, ttl_ms))
            .await
    }
    async fn release_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
    ) -> std::result::Result<(), JournalError> {
        let (run, agent, token) = (run.to_string(), agent.to_string(), token.to_string());
        self.submit(move |c| tx_release_lease(c, &run, &agent, &token))
            .await
    }
    async fn update_step(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        step: &StepId,
        update: &StepUpdate,
        kind: EventKind,
    ) -> std::result::Result<(), JournalError> {
        let (run, agent, token) = (run.to_string(), agent.to_string(), token.to_string());
        let (step, update) = (step.to_string(), update.clone());
        self.submit(move |c| tx_update_step(c, &run, &agent, &token, &step, &update, kind))
            .await
    }
    async fn set_agent_state(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        state: AgentState,
        last_error: Option<&str>,
    ) -> std::result::Result<(), JournalError> {
        let (run, agent, token) = (run.to_string(), agent.to_string(), token.to_string());
        let last_error = last_error.map(str::to_string);
        self.submit(move |c| {
            tx_set_agent_state(c, &run, &agent, &token, state, last_error.as_deref())
        })
        .await
    }
    async fn set_subject(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        subject: &serde_json::Value,
    ) -> std::result::Result<(), JournalError> {
        let (run, agent, token) = (run.to_string(), agent.to_string(), token.to_string());
        let subject = subject.clone();
        self.submit(move |c| tx_set_subject(c, &run, &agent, &token, &subject))
            .await
    }
    async fn apply(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        changes: Vec<Change>,
    ) -> std::result::Result<(), JournalError> {
        let (run, agent, token) = (run.to_string(), agent.to_string(), token.to_string());
        // One job, so one savepoint: the batch commits whole or not at all.
        self.submit(move |c| {
            for change in &changes {
                match change {
                    Change::Step { step, update, kind } => {
                        tx_update_step(c, &run, &agent, &token, step, update, *kind)?
                    }
                    Change::Agent { state, last_error } => {
                        tx_set_agent_state(c, &run, &agent, &token, *state, last_error.as_deref())?
                    }
                    Change::ReleaseLease => tx_release_lease(c, &run, &agent, &token)?,
                }
            }
            Ok(())
        })
        .await
    }
    async fn agent(
        &self,
        run: &RunId,
        agent: &AgentKey,
    ) -> std::result::Result<AgentRow, JournalError> {
        Ok(Store::agent(self, run, agent)?)
    }
    async fn steps(
        &self,
        run: &RunId,
        agent: &AgentKey,
    ) -> std::result::Result<Vec<StepRow>, JournalError> {
        Ok(Store::steps(self, run, agent)?)
    }
}

/// A change waiting for the group committer, and where its outcome goes.
pub(super) struct Job {
    work: Work,
    reply: tokio::sync::oneshot::Sender<std::result::Result<(), JournalError>>,
}

/// Most changes committed together (bounds the time the connection is held).
const MAX_GROUP: usize = 256;
/// A group smaller than this waits up to [`GATHER`] for more changes before committing:
/// when AWS answers in tens of milliseconds the agents' checkpoints arrive spread out, and
/// each would otherwise be a transaction and an fsync of its own (CPU per agent at 50 ms
/// sandbox latency 1.14 → 1.01 ms, BENCHMARKS.md issue 18 (d)); a checkpoint waits at most
/// 2 ms more, against AWS calls of tens.
const SMALL_GROUP: usize = 8;
/// How long a small group waits for more.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

impl Store {
    /// Hands `work` to the group committer (started on first use) and waits for its commit.
    async fn submit(
        &self,
        work: impl FnOnce(&Connection) -> Result<()> + Send + 'static,
    ) -> std::result::Result<(), JournalError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        let job = Job {
            work: Box::new(work),
            reply,
        };
        let stopped = || JournalError::Storage("the state store's committer stopped".into());
        {
            let mut committer = self.committer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = committer.get_or_insert_with(|| {
                let (tx, rx) = std::sync::mpsc::channel::<Job>();
                let (conn, groups) = (self.conn.clone(), self.groups.clone());
                let path = self.path.clone();
                std::thread::Builder::new()
                    .name("state-committer".into())
                    .spawn(move || commit_loop(&conn, &rx, &groups, &path))
                    .expect("spawn the state store's committer thread");
                tx
            });
            tx.send(job).map_err(|_| stopped())?;
        }
        done.await.map_err(|_| stopped())?
    }
}

/// The group committer: takes every change queued while the previous group was being
/// committed, runs them in one transaction (each in its own savepoint), commits once, and
/// answers each caller. Ends when the store is dropped.
pub(super) fn commit_loop(
    conn: &Mutex<Connection>,
    rx: &std::sync::mpsc::Receiver<Job>,
    groups: &std::sync::atomic::AtomicU64,
    path: &str,
) {
    while let Ok(first) = rx.recv() {
        // A group that would be small waits a moment for more (answers that arrive spread
        // out would otherwise each cost a transaction and an fsync).
        let mut jobs = vec![first];
        let until = std::time::Instant::now() + GATHER;
        while jobs.len() < SMALL_GROUP {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // The connection first, then the queue: what arrived while waiting joins the group.
        let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (works, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.work, j.reply)).unzip();
        let results = commit_group(&conn, works, path);
        drop(conn);
        groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

pub(super) type Work = Box<dyn FnOnce(&Connection) -> Result<()> + Send>;

/// A storage failure of the state file at `path`, described (disk full, unwritable, ...).
fn storage(path: &str, what: &str, e: &rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("state file {path}: {what}: {}", describe_sqlite(e)))
}

fn commit_group(
    conn: &Connection,
    works: Vec<Work>,
    path: &str,
) -> Vec<std::result::Result<(), JournalError>> {
    let n = works.len();
    let failed =
        |what: &str, e: &rusqlite::Error| (0..n).map(|_| Err(storage(path, what, e))).collect();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE", []) {
        return failed("begin failed", &e);
    }
    let mut results = Vec::with_capacity(n);
    for work in works {
        if let Err(e) = exec(conn, "SAVEPOINT job", []) {
            results.push(Err(storage(path, "savepoint failed", &e)));
            continue;
        }
        let r = work(conn);
        let closed = if r.is_ok() {
            exec(conn, "RELEASE job", [])
        } else {
            exec(conn, "ROLLBACK TO job", []).and_then(|_| exec(conn, "RELEASE job", []))
        };
        results.push(match (r, closed) {
            (Err(super::Error::Sqlite(e)), _) => Err(storage(path, "write failed", &e)),
            (Err(e), _) => Err(e.into()),
            (Ok(()), Err(e)) => Err(storage(path, "write failed", &e)),
            (Ok(()), Ok(_)) => Ok(()),
        });
    }
    if let Err(e) = exec(conn, "COMMIT", []) {
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK", []);
        }
        // Nothing of this group is durable: every change is reported failed.
        return failed("commit failed", &e);
    }
    results
}
