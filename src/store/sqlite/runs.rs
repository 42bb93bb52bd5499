//! The run-level operations of the state file: creating a run (optionally refusing agents
//! that have an unfinished run), adding agents in chunks, and reading runs, agents and steps
//! back.

use crate::engine::journal::EventKind;
use rusqlite::{params, Connection, OptionalExtension};

use super::checkpoint::{exec, journal};
use super::rows::{agent_from_row, run_from_row, step_from_row};
use super::Store;
use crate::engine::journal::{AgentRow, JournalError, StepRow};
use crate::engine::{AgentKey, AgentState, OnFailure, RunId, StepId};
use crate::store::{now_rfc3339, Error, Result, RunRow};

impl Store {
    /// Creates a run with its agents and their pending steps, in one transaction.
    pub fn create_run(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        self.with_tx(|tx| insert_run(tx, run, agents, steps, on_failure))
    }

    /// Adds agents (with their pending steps) to an existing run, in one transaction: a
    /// batch inserts its file in chunks, so memory stays bounded by the chunk.
    pub fn add_agents<K: AsRef<str>>(
        &self,
        run: &str,
        agents: &[(K, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        self.with_tx(|tx| insert_agents(tx, run, agents, steps, on_failure))
    }

    /// Every run that holds the agent with this key, oldest first.
    pub fn runs_of_agent(&self, key: &str) -> Result<Vec<RunId>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT run_id FROM agents WHERE agent_key = ?1 ORDER BY created_at, rowid",
            )?;
            let rows = st.query_map(params![key], |r| r.get::<_, String>(0).map(RunId::from))?;
            Ok(rows.collect::<rusqlite::Result<Vec<RunId>>>()?)
        })
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
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
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
                let rows = st.query_map(params![key.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?))
                })?;
                for row in rows {
                    let (prev_run, state, holds) = row?;
                    let parsed = AgentState::parse(&state)?;
                    if open_states.contains(&parsed)
                        || (holds && holding_states.contains(&parsed))
                    {
                        return Err(Error::Unfinished {
                            agent: key.to_string(),
                            run: prev_run,
                            state,
                        });
                    }
                }
            }
            insert_run(tx, run, agents, steps, on_failure)
        })
    }

    /// Writes a run as another store holds it (`state copy`), in one transaction: the run,
    /// its agents in order with their states (no lease), their steps as they are.
    pub fn import_run(&self, run: &RunRow, agents: &[(AgentRow, Vec<StepRow>)]) -> Result<()> {
        self.with_tx(|tx| {
            exec(
                tx,
                "INSERT INTO runs (id, created_at, workflow_name, workflow, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run.id.as_str(), run.created_at, run.workflow_name, run.workflow, run.meta.to_string()],
            )?;
            for (a, steps) in agents {
                exec(
                    tx,
                    "INSERT INTO agents (run_id, agent_key, subject, state, on_failure, last_error, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![run.id.as_str(), a.agent_key.as_str(), a.subject.to_string(), a.state.as_str(),
                        a.on_failure.as_str(), a.last_error, a.created_at, a.updated_at],
                )?;
                for st in steps {
                    let outputs = serde_json::to_string(&st.outputs).unwrap_or_default();
                    exec(
                        tx,
                        "INSERT INTO steps (run_id, agent_key, step_id, seq, state, owned, unresolved, outputs,
                                            attempts, first_write_ms, last_error, updated_at, last_write_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                        params![run.id.as_str(), a.agent_key.as_str(), st.step_id.as_str(), st.seq, st.state.as_str(),
                            st.owned, st.unresolved, outputs, st.attempts, st.first_write_ms,
                            st.last_error, st.updated_at, st.last_write_ms],
                    )?;
                }
                journal(tx, &run.id, &a.agent_key, None, "agent_imported", None)?;
            }
            Ok(())
        })
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
            let rows = st.query_map(params![run, agent], step_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
    }
}

fn insert_run(
    tx: &Connection,
    run: &RunRow,
    agents: &[(AgentKey, serde_json::Value)],
    steps: &[StepId],
    on_failure: OnFailure,
) -> Result<()> {
    exec(
                tx,
                "INSERT INTO runs (id, created_at, workflow_name, workflow, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run.id.as_str(), run.created_at, run.workflow_name, run.workflow, run.meta.to_string()],
            )?;
    insert_agents(tx, &run.id, agents, steps, on_failure)
}

fn insert_agents<K: AsRef<str>>(
    tx: &Connection,
    run_id: &str,
    agents: &[(K, serde_json::Value)],
    steps: &[StepId],
    on_failure: OnFailure,
) -> Result<()> {
    let now = now_rfc3339();
    for (key, subject) in agents {
        let key = key.as_ref();
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
                params![run_id, key, step.as_str(), seq as i64, now],
            )?;
        }
        journal(
            tx,
            run_id,
            key,
            None,
            EventKind::AgentCreated.as_str(),
            None,
        )?;
    }
    Ok(())
}
