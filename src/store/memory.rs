//! An in-memory journal and run store: the same contract as the state file (lease-fenced
//! changes, one event per change, runs and their agents in insertion order) without a
//! file. Dry runs use it (they must write nothing anywhere), and so do the engine's unit
//! tests and the state-semantics suite (`run_store`). Role leases live in a map.

use crate::engine::journal::EventKind;
use std::collections::BTreeMap;
use std::sync::Mutex;

use super::run_store::{may_take, Leadership};
use super::{fmt_ms, now_ms, now_rfc3339, Error, RunRow};
use crate::engine::journal::{AgentRow, Change, Journal, JournalError, StepRow, StepUpdate};
use crate::engine::{AgentKey, AgentState, OnFailure, RunId, StepId, StepState};

#[derive(Debug)]
struct Entry {
    /// Insertion position (the run store's page cursor).
    seq: i64,
    row: AgentRow,
    steps: Vec<StepRow>,
    lease: Option<(String, i64)>,
}

/// The in-memory journal.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    agents: Mutex<BTreeMap<(String, String), Entry>>,
    events: Mutex<u64>,
    /// Runs, oldest first (only those created through the run store).
    runs: Mutex<Vec<RunRow>>,
    /// The last insertion position given.
    seq: Mutex<i64>,
    /// Role leases: role → (holder, expiry ms).
    roles: Mutex<BTreeMap<String, (String, i64)>>,
}

impl MemoryJournal {
    /// Adds a run's agents with their pending steps.
    pub fn create_run(
        &self,
        run: &str,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) {
        self.add_entries(run, agents, steps, on_failure);
    }

    /// Adds agents to a run (its row aside).
    pub(super) fn add_entries<K: AsRef<str>>(
        &self,
        run: &str,
        agents: &[(K, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) {
        let now = now_rfc3339();
        let mut map = self.lock();
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        for (key, subject) in agents {
            let key = AgentKey::from(key.as_ref());
            *seq += 1;
            let steps = steps
                .iter()
                .enumerate()
                .map(|(seq, id)| StepRow {
                    step_id: id.clone(),
                    seq: seq as i64,
                    state: StepState::Pending,
                    owned: false,
                    unresolved: false,
                    outputs: BTreeMap::new(),
                    attempts: 0,
                    first_write_ms: None,
                    last_write_ms: None,
                    last_error: None,
                    updated_at: now.clone(),
                })
                .collect();
            let row = AgentRow {
                run_id: RunId::from(run),
                agent_key: key.clone(),
                subject: subject.clone(),
                state: AgentState::Pending,
                on_failure,
                last_error: None,
                created_at: now.clone(),
                updated_at: now.clone(),
            };
            map.insert(
                (run.to_string(), key.into_string()),
                Entry {
                    seq: *seq,
                    row,
                    steps,
                    lease: None,
                },
            );
            *self.events.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
    }

    /// A run, with its agents; with `exclusive`, refused when one of the agents has a run
    /// in an open state, or in a holding state with a step that owns or may own a resource.
    pub(super) fn insert_run(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
        exclusive: Option<(&[AgentState], &[AgentState])>,
    ) -> Result<(), Error> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((open, holding)) = exclusive {
            let map = self.lock();
            for (key, _) in agents {
                let earlier = map.values().filter(|e| &e.row.agent_key == key);
                for e in earlier {
                    let holds = e.steps.iter().any(|s| s.owned || s.unresolved);
                    if open.contains(&e.row.state) || (holds && holding.contains(&e.row.state)) {
                        return Err(Error::Unfinished {
                            agent: key.to_string(),
                            run: e.row.run_id.to_string(),
                            state: e.row.state.as_str().to_string(),
                        });
                    }
                }
            }
        }
        runs.push(run.clone());
        drop(runs);
        self.add_entries(&run.id, agents, steps, on_failure);
        Ok(())
    }

    /// A run with its agents as they are (`state copy`).
    pub(super) fn import(&self, run: &RunRow, agents: &[(AgentRow, Vec<StepRow>)]) {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(run.clone());
        let mut map = self.lock();
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        for (row, steps) in agents {
            *seq += 1;
            map.insert(
                (run.id.to_string(), row.agent_key.to_string()),
                Entry {
                    seq: *seq,
                    row: row.clone(),
                    steps: steps.clone(),
                    lease: None,
                },
            );
        }
    }

    /// One run created through the run store.
    pub(super) fn run_row(&self, run: &str) -> Result<RunRow, Error> {
        (self.runs.lock().unwrap_or_else(|p| p.into_inner()).iter())
            .find(|r| r.id == run)
            .cloned()
            .ok_or_else(|| JournalError::NotFound(format!("run {run}")).into())
    }

    /// The runs, oldest first.
    pub(super) fn run_rows(&self) -> Vec<RunRow> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A run's entries, in insertion order.
    fn entries_of(&self, run: &str) -> Vec<(i64, AgentRow)> {
        let mut rows: Vec<(i64, AgentRow)> = (self.lock().values())
            .filter(|e| e.row.run_id == run)
            .map(|e| (e.seq, e.row.clone()))
            .collect();
        rows.sort_by_key(|(seq, _)| *seq);
        rows
    }

    /// A run's agents, in insertion order.
    pub(super) fn rows_of(&self, run: &str) -> Vec<AgentRow> {
        self.entries_of(run).into_iter().map(|(_, r)| r).collect()
    }

    /// Up to `limit` keys of a run after position `after`.
    pub(super) fn keys_after(&self, run: &str, after: i64, limit: usize) -> Vec<(i64, String)> {
        (self.entries_of(run).into_iter())
            .filter(|(seq, _)| *seq > after)
            .take(limit)
            .map(|(seq, r)| (seq, r.agent_key.into_string()))
            .collect()
    }

    /// The runs holding `key`, oldest first.
    pub(super) fn runs_holding(&self, key: &str) -> Vec<RunId> {
        let mut held: Vec<(i64, RunId)> = (self.lock().values())
            .filter(|e| e.row.agent_key == key)
            .map(|e| (e.seq, e.row.run_id.clone()))
            .collect();
        held.sort();
        held.into_iter().map(|(_, r)| r).collect()
    }

    /// The newest run holding `key`, and the agent's state there.
    pub(super) fn latest(&self, key: &str) -> Option<(String, AgentState)> {
        (self.lock().values())
            .filter(|e| e.row.agent_key == key)
            .max_by_key(|e| e.seq)
            .map(|e| (e.row.run_id.to_string(), e.row.state))
    }

    /// Number of journal events so far.
    pub fn event_count(&self) -> u64 {
        *self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes or renews `role` for `holder` for `ttl_ms` (see `RunStore::lead`).
    pub(super) fn lead_role(&self, role: &str, holder: &str, ttl_ms: i64) -> Leadership {
        let mut roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let cur = roles.get(role).map(|(h, x)| (h.as_str(), *x));
        if !may_take(cur, holder, now) {
            let (holder, until_ms) = roles.get(role).cloned().unwrap_or_default();
            return Leadership::Standby { holder, until_ms };
        }
        let until_ms = now + ttl_ms;
        roles.insert(role.to_string(), (holder.to_string(), until_ms));
        Leadership::Lead { until_ms }
    }

    /// Gives `role` up if `holder` holds it (see `RunStore::resign`).
    pub(super) fn resign_role(&self, role: &str, holder: &str) {
        let mut roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
        if roles.get(role).is_some_and(|(h, _)| h == holder) {
            roles.remove(role);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Entry>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the agent's entry if `token` holds its lease, counting one event.
    fn fenced<T>(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> Result<T, JournalError> {
        let mut map = self.lock();
        let e = map
            .get_mut(&(run.to_string(), agent.to_string()))
            .ok_or_else(|| JournalError::NotFound(format!("agent {agent} in run {run}")))?;
        if e.lease.as_ref().map(|(t, _)| t.as_str()) != Some(token) {
            return Err(JournalError::LeaseLost {
                run: run.into(),
                agent: agent.into(),
            });
        }
        let out = f(e);
        *self.events.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Ok(out)
    }
}

impl Entry {
    /// Applies `up` to step `step`; false if the agent has no such step.
    fn update_step(&mut self, step: &str, up: &StepUpdate) -> bool {
        let Some(s) = self.steps.iter_mut().find(|s| s.step_id == step) else {
            return false;
        };
        apply_update(s, up);
        true
    }

    fn set_state(&mut self, state: AgentState, last_error: Option<&str>) {
        self.row.state = state;
        self.row.last_error = last_error.map(str::to_string);
        self.row.updated_at = now_rfc3339();
    }
}

/// Applies a [`StepUpdate`] to a step's row, as every store does (the DynamoDB store's
/// item holds its steps as rows too).
pub(super) fn apply_update(s: &mut StepRow, up: &StepUpdate) {
    if let Some(v) = up.state {
        s.state = v;
    }
    if let Some(v) = up.owned {
        s.owned = v;
    }
    if let Some(v) = up.unresolved {
        s.unresolved = v;
    }
    if let Some(v) = &up.outputs {
        s.outputs = v.clone();
    }
    if up.bump_attempts {
        s.attempts += 1;
    }
    if let Some(at) = up.mark_write {
        s.first_write_ms.get_or_insert(at);
        s.last_write_ms = Some(at);
    }
    if let Some(v) = &up.last_error {
        s.last_error = v.clone();
    }
    s.updated_at = now_rfc3339();
}

/// The journal operations, synchronous (the [`Journal`] impl below awaits nothing).
impl MemoryJournal {
    /// See [`Journal`].
    pub fn acquire_lease(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        ttl_ms: i64,
    ) -> Result<(), JournalError> {
        let mut map = self.lock();
        let e = map
            .get_mut(&(run.to_string(), agent.to_string()))
            .ok_or_else(|| JournalError::NotFound(format!("agent {agent} in run {run}")))?;
        let now = now_ms();
        if let Some((held, exp)) = &e.lease {
            if held != token && *exp > now {
                return Err(JournalError::Leased {
                    run: run.into(),
                    agent: agent.into(),
                    holder: "another task of this process".into(),
                    expires: fmt_ms(*exp),
                });
            }
        }
        e.lease = Some((token.to_string(), now + ttl_ms));
        Ok(())
    }

    /// See [`Journal`].
    pub fn renew_lease(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        ttl_ms: i64,
    ) -> Result<(), JournalError> {
        self.fenced(run, agent, token, |e| {
            e.lease = Some((token.to_string(), now_ms() + ttl_ms))
        })
    }

    /// See [`Journal`].
    pub fn release_lease(&self, run: &str, agent: &str, token: &str) -> Result<(), JournalError> {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(&(run.to_string(), agent.to_string())) {
            if e.lease.as_ref().is_some_and(|(t, _)| t == token) {
                e.lease = None;
            }
        }
        Ok(())
    }

    /// See [`Journal`].
    pub fn update_step(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        step: &str,
        up: &StepUpdate,
        _kind: EventKind,
    ) -> Result<(), JournalError> {
        let found = self.fenced(run, agent, token, |e| e.update_step(step, up))?;
        if !found {
            return Err(JournalError::NotFound(format!(
                "step {step} of agent {agent} in run {run}"
            )));
        }
        Ok(())
    }

    /// See [`Journal`]: checks every step exists before changing anything (all or nothing).
    pub fn apply(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        changes: &[Change],
    ) -> Result<(), JournalError> {
        self.fenced(run, agent, token, |e| {
            let missing = changes.iter().find_map(|c| match c {
                Change::Step { step, .. } if !e.steps.iter().any(|s| &s.step_id == step) => {
                    Some(step.clone())
                }
                _ => None,
            });
            if let Some(step) = missing {
                return Err(JournalError::NotFound(format!(
                    "step {step} of agent {agent} in run {run}"
                )));
            }
            for c in changes {
                match c {
                    Change::Step { step, update, .. } => {
                        e.update_step(step, update);
                    }
                    Change::Agent { state, last_error } => {
                        e.set_state(*state, last_error.as_deref())
                    }
                    Change::ReleaseLease => e.lease = None,
                }
            }
            Ok(())
        })?
    }

    /// See [`Journal`].
    pub fn set_agent_state(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        state: AgentState,
        last_error: Option<&str>,
    ) -> Result<(), JournalError> {
        self.fenced(run, agent, token, |e| e.set_state(state, last_error))
    }

    /// See [`Journal`].
    pub fn set_subject(
        &self,
        run: &str,
        agent: &str,
        token: &str,
        subject: &serde_json::Value,
    ) -> Result<(), JournalError> {
        self.fenced(run, agent, token, |e| e.row.subject = subject.clone())
    }

    /// See [`Journal`].
    pub fn agent(&self, run: &str, agent: &str) -> Result<AgentRow, JournalError> {
        self.lock()
            .get(&(run.to_string(), agent.to_string()))
            .map(|e| e.row.clone())
            .ok_or_else(|| JournalError::NotFound(format!("agent {agent} in run {run}")))
    }

    /// See [`Journal`].
    pub fn steps(&self, run: &str, agent: &str) -> Result<Vec<StepRow>, JournalError> {
        self.lock()
            .get(&(run.to_string(), agent.to_string()))
            .map(|e| e.steps.clone())
            .ok_or_else(|| JournalError::NotFound(format!("agent {agent} in run {run}")))
    }
}

#[async_trait::async_trait]
impl Journal for MemoryJournal {
    async fn acquire_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        ttl_ms: i64,
    ) -> Result<(), JournalError> {
        MemoryJournal::acquire_lease(self, run, agent, token, ttl_ms)
    }
    async fn renew_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        ttl_ms: i64,
    ) -> Result<(), JournalError> {
        MemoryJournal::renew_lease(self, run, agent, token, ttl_ms)
    }
    async fn release_lease(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
    ) -> Result<(), JournalError> {
        MemoryJournal::release_lease(self, run, agent, token)
    }
    async fn update_step(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        step: &StepId,
        up: &StepUpdate,
        kind: EventKind,
    ) -> Result<(), JournalError> {
        MemoryJournal::update_step(self, run, agent, token, step, up, kind)
    }
    async fn set_agent_state(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        state: AgentState,
        last_error: Option<&str>,
    ) -> Result<(), JournalError> {
        MemoryJournal::set_agent_state(self, run, agent, token, state, last_error)
    }
    async fn set_subject(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        subject: &serde_json::Value,
    ) -> Result<(), JournalError> {
        MemoryJournal::set_subject(self, run, agent, token, subject)
    }
    async fn apply(
        &self,
        run: &RunId,
        agent: &AgentKey,
        token: &str,
        changes: Vec<Change>,
    ) -> Result<(), JournalError> {
        MemoryJournal::apply(self, run, agent, token, &changes)
    }
    async fn agent(&self, run: &RunId, agent: &AgentKey) -> Result<AgentRow, JournalError> {
        MemoryJournal::agent(self, run, agent)
    }
    async fn steps(&self, run: &RunId, agent: &AgentKey) -> Result<Vec<StepRow>, JournalError> {
        MemoryJournal::steps(self, run, agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_fenced_by_the_lease_and_counted() {
        let j = MemoryJournal::default();
        j.create_run(
            "r",
            &[("a".into(), serde_json::json!("a"))],
            &["s".into()],
            OnFailure::Keep,
        );
        assert_eq!(j.event_count(), 1);
        let up = StepUpdate {
            state: Some(StepState::Running),
            mark_write: Some(5),
            ..Default::default()
        };
        assert!(matches!(
            j.update_step("r", "a", "t", "s", &up, EventKind::StepIntent),
            Err(JournalError::LeaseLost { .. })
        ));
        j.acquire_lease("r", "a", "t", 60_000).unwrap();
        assert!(matches!(
            j.acquire_lease("r", "a", "u", 60_000),
            Err(JournalError::Leased { .. })
        ));
        j.update_step("r", "a", "t", "s", &up, EventKind::StepIntent)
            .unwrap();
        let s = &j.steps("r", "a").unwrap()[0];
        assert_eq!(
            (s.state, s.first_write_ms, s.last_write_ms),
            (StepState::Running, Some(5), Some(5))
        );
        assert_eq!(j.event_count(), 2);
        assert!(matches!(
            j.update_step("r", "a", "t", "nope", &up, EventKind::StepIntent),
            Err(JournalError::NotFound(_))
        ));
        j.set_agent_state("r", "a", "t", AgentState::Done, None)
            .unwrap();
        assert_eq!(j.agent("r", "a").unwrap().state, AgentState::Done);
        // An expired lease is taken over, and the old holder is fenced.
        j.acquire_lease("r", "a", "t", -1).unwrap();
        j.acquire_lease("r", "a", "u", 60_000).unwrap();
        assert!(j
            .set_agent_state("r", "a", "t", AgentState::Failed, None)
            .is_err());
    }
}
