//! The engine's journal over the DynamoDB table: every lease operation and checkpoint is
//! one conditional `UpdateItem` on the agent's item.
//!
//! - **Lease**: taken when the item has no holder, or this token, or an expired one
//!   (`l_expires < now`), or a holder known dead on this host (then by compare-and-swap
//!   on its token); renewed only while `l_token` is the caller's. Expiry compares the
//!   machines' clocks: keep them in sync (NTP), as the lease TTL is tens of seconds.
//! - **Pending lease**: an agent this process inserted (and has not leased before) is
//!   leased without a write: the lease is the cache's until the agent's first checkpoint,
//!   which takes it in the same write, conditioned on the item being as inserted
//!   (`a_ver`) with no live holder. Before that checkpoint the engine only reads (the
//!   intent precedes every AWS write), so a process that another beat to the lease is
//!   refused at its first write, having written nothing; a process that dies before it
//!   leaves no lease behind. A renewal before the first checkpoint writes the lease; a
//!   release of a pending lease writes nothing. One write per agent less.
//! - **Checkpoint**: conditioned on `l_token = caller AND a_ver = the version the caller
//!   last saw`, and sets `a_ver + 1`: a process that lost its lease (paused past it,
//!   then woken) is refused (`LeaseLost`) and cannot overwrite the new holder's progress,
//!   and no checkpoint lands on a state it did not start from (no going backwards). The
//!   item the holder last wrote is cached, so a checkpoint is one write and no read.
//!   A refused write is diagnosed by one consistent read: the item is gone (`NotFound`),
//!   another holds it (`LeaseLost`), or the version is exactly one past with the caller's
//!   token — the caller's own write, landed on an attempt whose answer was lost and then
//!   re-sent by the SDK — which is success.
//! - **Durable before acknowledged**: DynamoDB answers a write once it is stored in
//!   several facilities, and the engine awaits that answer before the AWS write it
//!   announces.
//!
//! Reads of an agent whose lease this process holds are answered from that cache.
//!
//! Events are counted on the item (`a_events`), not stored one by one (the state file's
//! `events` table is read by no command).

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{agent_sk, is_condition_failed, n, run_pk, s, AgentItem, DynamoStore};
use crate::engine::journal::{
    AgentRow, Change, EventKind, Journal, JournalError, StepRow, StepUpdate,
};
use crate::engine::{AgentKey, AgentState, RunId, StepId};
use crate::store::lease::Holder;
use crate::store::memory::apply_update;
use crate::store::{fmt_ms, now_ms, now_rfc3339, Error};

type JResult<T> = std::result::Result<T, JournalError>;

impl DynamoStore {
    fn cached(&self, run: &str, agent: &str, token: &str) -> Option<AgentItem> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&(run.to_string(), agent.to_string()))
            .filter(|it| it.lease_token.as_deref() == Some(token))
            .cloned()
    }

    /// The cached item of an agent whose lease a task of this process holds.
    fn cached_any(&self, run: &str, agent: &str) -> Option<AgentItem> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&(run.to_string(), agent.to_string())).cloned()
    }

    fn remember(&self, item: AgentItem) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert((item.run.clone(), item.key.clone()), item);
    }

    fn forget(&self, run: &str, agent: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(&(run.to_string(), agent.to_string()));
    }

    /// Sets the lease to `token`, under `condition` (with `values` besides `:t` and
    /// `:now`); the item as written, `None` if the condition failed.
    async fn take_lease(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        ttl_ms: i64,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<AgentItem>, Error> {
        let holder = serde_json::to_string(&Holder::current()).unwrap_or_default();
        let now = now_ms();
        let mut u = (self.client.update_item())
            .table_name(&self.table)
            .key("pk", s(run_pk(run)))
            .key("sk", s(agent_sk(agent)))
            .update_expression("SET l_token = :t, l_holder = :h, l_expires = :x ADD a_events :one")
            .condition_expression(condition)
            .expression_attribute_values(":t", s(token))
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":x", n(now + ttl_ms))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew);
        if condition.contains(":now") {
            u = u.expression_attribute_values(":now", n(now));
        }
        for (k, v) in values {
            u = u.expression_attribute_values(k, v);
        }
        match u.send().await {
            Ok(out) => match out.attributes() {
                Some(a) => Ok(Some(AgentItem::from_item(a)?)),
                None => Ok(None),
            },
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(self.remote("UpdateItem", e)),
        }
    }

    /// The item this process inserted, if no one leased it through this process yet.
    fn take_fresh(&self, run: &str, agent: &str) -> Option<AgentItem> {
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        fresh
            .remove(&(run.to_string(), agent.to_string()))?
            .item(run, agent)
    }

    async fn acquire(&self, run: &str, agent: &str, token: &str, ttl_ms: i64) -> JResult<()> {
        let now = now_ms();
        // A lease of this process not in the table yet (pending) keeps another task of
        // this process out as a written one would.
        if let Some(it) = self.cached_any(run, agent) {
            let other = it.lease_token.as_deref() != Some(token);
            if it.pending_ttl.is_some() && other && it.lease_expires.unwrap_or(0) >= now {
                return Err(JournalError::Leased {
                    run: run.into(),
                    agent: agent.into(),
                    holder: "another task of this process".into(),
                    expires: fmt_ms(it.lease_expires.unwrap_or_default()),
                });
            }
        }
        // Inserted by this process a moment ago: nothing to read, and the lease is taken
        // by the first checkpoint (a write it needs anyway) instead of a write of its own.
        if let Some(mut it) = self.take_fresh(run, agent) {
            it.lease_token = Some(token.to_string());
            it.lease_holder = Some(serde_json::to_string(&Holder::current()).unwrap_or_default());
            it.lease_expires = Some(now + ttl_ms);
            it.pending_ttl = Some(ttl_ms);
            self.remember(it);
            return Ok(());
        }
        let free = "attribute_exists(pk) AND (attribute_not_exists(l_token) OR l_token = :t OR l_expires < :now)";
        if let Some(it) = self
            .take_lease(run, agent, token, ttl_ms, free, vec![])
            .await?
        {
            self.remember(it);
            return Ok(());
        }
        let cur = self.load(run, agent).await?;
        let holder: Option<Holder> =
            (cur.lease_holder.as_deref()).and_then(|h| serde_json::from_str(h).ok());
        if let (Some(h), Some(old)) = (&holder, &cur.lease_token) {
            if h.is_dead() {
                let swap = "l_token = :old";
                if let Some(it) =
                    (self.take_lease(run, agent, token, ttl_ms, swap, vec![(":old", s(old))]))
                        .await?
                {
                    self.remember(it);
                    return Ok(());
                }
            }
        }
        Err(leased(run, agent, &cur))
    }

    async fn renew(&self, run: &str, agent: &str, token: &str, ttl_ms: i64) -> JResult<()> {
        if let Some(it) = self
            .cached(run, agent, token)
            .filter(|it| it.pending_ttl.is_some())
        {
            return self
                .write_pending_lease(run, agent, token, ttl_ms, it.ver)
                .await;
        }
        let out = (self.client.update_item())
            .table_name(&self.table)
            .key("pk", s(run_pk(run)))
            .key("sk", s(agent_sk(agent)))
            .update_expression("SET l_expires = :x")
            .condition_expression("l_token = :t")
            .expression_attribute_values(":t", s(token))
            .expression_attribute_values(":x", n(now_ms() + ttl_ms))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(JournalError::LeaseLost {
                run: run.into(),
                agent: agent.into(),
            }),
            Err(e) => Err(self.remote("UpdateItem", e).into()),
        }
    }

    /// Writes a pending lease (a renewal before the first checkpoint): taken if the item
    /// is still as inserted (version `ver`) with no live holder, or is this token's
    /// already (the first checkpoint landed meanwhile).
    async fn write_pending_lease(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        ttl_ms: i64,
        ver: i64,
    ) -> JResult<()> {
        let cond =
            "l_token = :t OR ((attribute_not_exists(l_token) OR l_expires < :now) AND a_ver = :v)";
        let taken =
            (self.take_lease(run, agent, token, ttl_ms, cond, vec![(":v", n(ver))])).await?;
        let Some(written) = taken else {
            self.forget(run, agent);
            return Err(JournalError::LeaseLost {
                run: run.into(),
                agent: agent.into(),
            });
        };
        // Unless a checkpoint replaced the cached item meanwhile (it took the lease
        // itself), the cached lease is now the table's.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(it) = cache.get_mut(&(run.to_string(), agent.to_string())) {
            if it.lease_token.as_deref() == Some(token) && it.ver == ver {
                it.pending_ttl = None;
                it.lease_expires = written.lease_expires;
            }
        }
        Ok(())
    }

    async fn release(&self, run: &str, agent: &str, token: &str) -> JResult<()> {
        let pending = self
            .cached(run, agent, token)
            .is_some_and(|it| it.pending_ttl.is_some());
        self.forget(run, agent);
        if pending {
            // Never written: nothing to release.
            return Ok(());
        }
        let out = (self.client.update_item())
            .table_name(&self.table)
            .key("pk", s(run_pk(run)))
            .key("sk", s(agent_sk(agent)))
            .update_expression("REMOVE l_token, l_holder, l_expires")
            .condition_expression("l_token = :t")
            .expression_attribute_values(":t", s(token))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Not ours (any more): nothing to release, as with the state file.
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.remote("UpdateItem", e).into()),
        }
    }

    /// Applies `change` to the agent's item under the lease, as one conditional write
    /// (see the module doc); `release` drops the lease in the same write.
    async fn fenced(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        release: bool,
        change: impl FnOnce(&mut AgentItem) -> JResult<()>,
    ) -> JResult<()> {
        let mut item = match self.cached(run, agent, token) {
            Some(it) => it,
            None => self.load(run, agent).await?,
        };
        if item.lease_token.as_deref() != Some(token) {
            return Err(JournalError::LeaseLost {
                run: run.into(),
                agent: agent.into(),
            });
        }
        let seen = item.ver;
        // A pending lease (see `acquire`) is taken by this write.
        let pending = item.pending_ttl;
        let subject_before = item.subject.clone();
        change(&mut item)?;
        item.ver = seen + 1;
        let mut set = vec![
            "a_ver = :nv",
            "a_state = :st",
            "a_steps = :steps",
            "a_updated = :at",
        ];
        let error = match &item.last_error {
            Some(e) => s(e),
            None => AttributeValue::Null(true),
        };
        set.push("a_error = :err");
        if item.subject != subject_before {
            set.push("a_subject = :subj");
        }
        let now = now_ms();
        if let (Some(ttl), false) = (pending, release) {
            set.extend(["l_token = :t", "l_holder = :h", "l_expires = :x"]);
            item.lease_expires = Some(now + ttl);
        }
        item.pending_ttl = None;
        let mut expr = format!("SET {} ADD a_events :one", set.join(", "));
        if release {
            expr.push_str(" REMOVE l_token, l_holder, l_expires");
        }
        let condition = match pending {
            None => "l_token = :t AND a_ver = :v",
            // Unchanged since inserted, and no live holder.
            Some(_) => {
                "a_ver = :v AND (attribute_not_exists(l_token) OR l_token = :t OR l_expires < :now)"
            }
        };
        let mut u = (self.client.update_item())
            .table_name(&self.table)
            .key("pk", s(run_pk(run)))
            .key("sk", s(agent_sk(agent)))
            .update_expression(expr)
            .condition_expression(condition)
            .expression_attribute_values(":t", s(token))
            .expression_attribute_values(":v", n(seen))
            .expression_attribute_values(":nv", n(seen + 1))
            .expression_attribute_values(":st", s(item.state.as_str()))
            .expression_attribute_values(":steps", s(item.steps_json()))
            .expression_attribute_values(":at", s(&item.updated_at))
            .expression_attribute_values(":err", error)
            .expression_attribute_values(":one", n(1));
        if item.subject != subject_before {
            u = u.expression_attribute_values(":subj", s(item.subject.to_string()));
        }
        if pending.is_some() {
            u = u.expression_attribute_values(":now", n(now));
            if !release {
                u = (u.expression_attribute_values(
                    ":h",
                    s(item.lease_holder.clone().unwrap_or_default()),
                ))
                .expression_attribute_values(":x", n(item.lease_expires.unwrap_or(now)));
            }
        }
        let turn = match pending {
            Some(_) => self.first_writes.acquire().await.ok(),
            None => None,
        };
        let sent = u.send().await;
        drop(turn);
        match sent {
            Ok(_) => {}
            Err(e) if is_condition_failed(&e) => {
                self.forget(run, agent);
                let cur = self.load(run, agent).await?;
                // Ours: the version after this write, with what this write set.
                let lease_ok = if release {
                    cur.lease_token.is_none()
                } else {
                    cur.lease_token.as_deref() == Some(token)
                };
                let ours = lease_ok
                    && cur.ver == seen + 1
                    && cur.state == item.state
                    && cur.steps_json() == item.steps_json();
                if !ours {
                    return Err(lost(run, agent, pending.is_some(), &cur, token));
                }
            }
            Err(e) => {
                self.forget(run, agent);
                return Err(self.remote("UpdateItem", e).into());
            }
        }
        if release {
            self.forget(run, agent);
        } else {
            self.remember(item);
        }
        Ok(())
    }
}

/// Why a checkpoint under `token` was refused: another holder took the lease. For a
/// pending lease (never written) the agent was leased by another process before this
/// one's first checkpoint: [`JournalError::Leased`], as its acquisition would have been
/// told, while that holder is alive.
fn lost(run: &str, agent: &str, pending: bool, cur: &AgentItem, token: &str) -> JournalError {
    match (&cur.lease_token, cur.lease_expires) {
        (Some(other), Some(until)) if pending && other != token && until >= now_ms() => {
            leased(run, agent, cur)
        }
        _ => JournalError::LeaseLost {
            run: run.into(),
            agent: agent.into(),
        },
    }
}

/// The agent is leased by the holder `cur` names.
fn leased(run: &str, agent: &str, cur: &AgentItem) -> JournalError {
    let holder: Option<Holder> =
        (cur.lease_holder.as_deref()).and_then(|h| serde_json::from_str(h).ok());
    JournalError::Leased {
        run: run.into(),
        agent: agent.into(),
        holder: holder
            .map(|h| format!("pid {} on host {}", h.pid, h.host))
            .unwrap_or_else(|| "another process".into()),
        expires: fmt_ms(cur.lease_expires.unwrap_or_default()),
    }
}

/// Applies one change to the item; `NotFound` for a step the agent does not have.
fn apply_change(it: &mut AgentItem, change: &Change) -> JResult<()> {
    match change {
        Change::Step { step, update, .. } => update_step(it, step, update),
        Change::Agent { state, last_error } => {
            set_state(it, *state, last_error.as_deref());
            Ok(())
        }
        Change::ReleaseLease => Ok(()),
    }
}

fn update_step(it: &mut AgentItem, step: &str, up: &StepUpdate) -> JResult<()> {
    let Some(row) = it.steps.iter_mut().find(|s| s.step_id == step) else {
        return Err(JournalError::NotFound(format!(
            "step {step} of agent {} in run {}",
            it.key, it.run
        )));
    };
    apply_update(row, up);
    it.updated_at = now_rfc3339();
    Ok(())
}

fn set_state(it: &mut AgentItem, state: AgentState, last_error: Option<&str>) {
    it.state = state;
    it.last_error = last_error.map(str::to_string);
    it.updated_at = now_rfc3339();
}

#[async_trait::async_trait]
impl Journal for DynamoStore {
    async fn acquire_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        ttl_ms: i64,
    ) -> JResult<()> {
        self.acquire(run, agent, token, ttl_ms).await
    }
    async fn renew_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        ttl_ms: i64,
    ) -> JResult<()> {
        self.renew(run, agent, token, ttl_ms).await
    }
    async fn release_lease(&self, run: &RunId, agent: &AgentKey, token: &str) -> JResult<()> {
        self.release(run, agent, token).await
    }
    async fn update_step(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        step: &StepId,
        update: &StepUpdate,
        _kind: EventKind,
    ) -> JResult<()> {
        self.fenced(run, agent, token, false, |it| update_step(it, step, update))
            .await
    }
    async fn set_agent_state(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        state: AgentState,
        last_error: Option<&str>,
    ) -> JResult<()> {
        self.fenced(run, agent, token, false, |it| {
            set_state(it, state, last_error);
            Ok(())
        })
        .await
    }
    async fn set_subject(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        subject: &serde_json::Value,
    ) -> JResult<()> {
        self.fenced(run, agent, token, false, |it| {
            it.subject = subject.clone();
            it.updated_at = now_rfc3339();
            Ok(())
        })
        .await
    }
    async fn apply(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        changes: Vec<Change>,
    ) -> JResult<()> {
        // The lease is released by the same write only when it is the last change (the
        // changes before it still need it: they are all in this one write).
        let release = matches!(changes.last(), Some(Change::ReleaseLease));
        self.fenced(run, agent, token, release, |it| {
            for c in &changes {
                apply_change(it, c)?;
            }
            Ok(())
        })
        .await
    }
    // While this process holds the agent's lease its cached item is the table's (only the
    // holder writes, conditioned on the version it cached); a holder that lost the lease
    // may read its stale copy, but every write it would base on it is refused, and the
    // engine writes its intent before any AWS write.
    async fn agent(&self, run: &RunId, agent: &AgentKey) -> JResult<AgentRow> {
        match self.cached_any(run, agent) {
            Some(it) => Ok(it.row()),
            None => Ok(self.load(run, agent).await?.row()),
        }
    }
    async fn steps(&self, run: &RunId, agent: &AgentKey) -> JResult<Vec<StepRow>> {
        match self.cached_any(run, agent) {
            Some(it) => Ok(it.steps),
            None => Ok(self.load(run, agent).await?.steps),
        }
    }
}
