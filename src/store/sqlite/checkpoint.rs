//! The lease-checked checkpoint writes: taking, renewing and releasing an agent's lease,
//! updating a step, an agent's state or its subject — each checked against the lease and
//! appending its `events` row in the same transaction. The `tx_*` functions run inside a
//! transaction the caller (the group committer, or the synchronous methods here) holds.

use crate::engine::journal::EventKind;
use rusqlite::{params, Connection, OptionalExtension};

use super::Store;
use crate::engine::journal::{JournalError, StepUpdate};
use crate::engine::{AgentState, StepState};
use crate::store::lease::Holder;
use crate::store::{fmt_ms, now_ms, now_rfc3339, Error, Result};

/// The checkpoint writes, synchronous, for the store's own unit tests: the product writes
/// through the async [`Journal`](crate::engine::Journal) impl and its group committer.
impl Store {
    /// Takes the agent's lease for `ttl_ms` under `token`, unless a live process holds it.
    /// An expired lease, or one whose holder is a dead process on this host, is taken over.
    #[cfg(test)]
    pub(crate) fn acquire_lease(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        ttl_ms: i64,
    ) -> Result<()> {
        self.with_tx(|tx| tx_acquire_lease(tx, run, agent, token, ttl_ms))
    }

    /// Extends the lease; fails with `LeaseLost` if `token` no longer holds it.
    #[cfg(test)]
    pub(crate) fn renew_lease(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        ttl_ms: i64,
    ) -> Result<()> {
        self.with_tx(|tx| tx_renew_lease(tx, run, agent, token, ttl_ms))
    }

    /// Applies `update` to a step, checked against the lease, with a journal event `kind`.
    #[cfg(test)]
    pub(crate) fn update_step(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        step: &str,
        update: &StepUpdate,
        kind: EventKind,
    ) -> Result<()> {
        self.with_tx(|tx| tx_update_step(tx, run, agent, token, step, update, kind))
    }

    /// Sets the agent's state (and last error), checked against the lease.
    #[cfg(test)]
    pub(crate) fn set_agent_state(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        state: AgentState,
        last_error: Option<&str>,
    ) -> Result<()> {
        self.with_tx(|tx| tx_set_agent_state(tx, run, agent, token, state, last_error))
    }
}

pub(in crate::store) fn tx_acquire_lease(
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

pub(in crate::store) fn tx_renew_lease(
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

pub(in crate::store) fn tx_release_lease(
    tx: &Connection,
    run: &str,
    agent: &str,
    token: &str,
) -> Result<()> {
    exec(
        tx,
        "UPDATE agents SET lease_token = NULL, lease_holder = NULL, lease_expires_ms = NULL
         WHERE run_id = ?1 AND agent_key = ?2 AND lease_token = ?3",
        params![run, agent, token],
    )?;
    Ok(())
}

pub(in crate::store) fn tx_update_step(
    tx: &Connection,
    run: &str,
    agent: &str,
    token: &str,
    step: &str,
    update: &StepUpdate,
    kind: EventKind,
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
    journal(tx, run, agent, Some(step), kind.as_str(), detail.as_deref())?;
    Ok(())
}

pub(in crate::store) fn tx_set_agent_state(
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

pub(in crate::store) fn tx_set_subject(
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
    journal(
        tx,
        run,
        agent,
        None,
        EventKind::AgentSubjectReplaced.as_str(),
        None,
    )?;
    Ok(())
}

/// Executes `sql` with a statement prepared once per connection (SQLite's parser is not
/// free, and every checkpoint runs the same few statements).
pub(in crate::store) fn exec<P: rusqlite::Params>(
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

pub(super) fn journal(
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
