//! `RunStore`: the run-level operations of a state store (create a run, add its agents,
//! find an agent's latest run, page through a run, list runs), beside the engine's
//! per-agent [`Journal`]. One trait, so that a second backend (a shared store) has one
//! place to plug in, and one suite of state semantics (`semantics` below) that every
//! implementation must pass: the SQLite [`Store`] and the in-memory [`MemoryJournal`].

use crate::engine::{AgentKey, AgentState, Journal, OnFailure, RunId, StepId};

use super::{AgentRow, MemoryJournal, Result, RunRow, Store};

/// The run-level operations of a state store. Async like [`Journal`]: a networked backend
/// answers later; the SQLite store answers at once.
///
/// Every id is typed ([`RunId`], [`AgentKey`], [`StepId`]): a run id cannot be passed
/// where an agent key is expected.
#[async_trait::async_trait]
pub trait RunStore: Journal {
    /// Creates a run with its agents and their pending steps, all or nothing.
    async fn create_run(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()>;
    /// Like [`RunStore::create_run`], but refuses ([`super::Error::Unfinished`]) when an
    /// agent has a run in one of `open_states`, or in one of `holding_states` with a step
    /// that owns or may own a resource; the check and the insert are one atomic change.
    async fn create_run_exclusive(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
        open_states: &[AgentState],
        holding_states: &[AgentState],
    ) -> Result<()>;
    /// Adds agents (with their pending steps) to an existing run, all or nothing.
    async fn add_agents(
        &self,
        run: &RunId,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()>;
    /// The latest run of the agent with this key, and its state there.
    async fn latest_by_key(&self, key: &AgentKey) -> Result<Option<(RunId, AgentState)>>;
    /// Every run that holds the agent with this key, oldest first.
    async fn runs_of_agent(&self, key: &AgentKey) -> Result<Vec<RunId>>;
    /// Up to `limit` of a run's agent keys after position `after` (0 first), in insertion
    /// order, each with its position to continue from.
    async fn agent_keys_page(
        &self,
        run: &RunId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AgentKey)>>;
    /// One run (`NotFound` if there is none).
    async fn run(&self, run: &RunId) -> Result<RunRow>;
    /// All runs, oldest first.
    async fn runs(&self) -> Result<Vec<RunRow>>;
    /// A run's agents, in insertion order.
    async fn agents(&self, run: &RunId) -> Result<Vec<AgentRow>>;
}

/// A page of keys as the store's own queries give them, typed.
fn keys(page: Vec<(i64, String)>) -> Vec<(i64, AgentKey)> {
    page.into_iter()
        .map(|(pos, k)| (pos, AgentKey::from(k)))
        .collect()
}

#[async_trait::async_trait]
impl RunStore for Store {
    async fn create_run(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        Store::create_run(self, run, agents, steps, on_failure)
    }
    async fn create_run_exclusive(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
        open_states: &[AgentState],
        holding_states: &[AgentState],
    ) -> Result<()> {
        Store::create_run_exclusive(
            self,
            run,
            agents,
            steps,
            on_failure,
            open_states,
            holding_states,
        )
    }
    async fn add_agents(
        &self,
        run: &RunId,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        Store::add_agents(self, run, agents, steps, on_failure)
    }
    async fn latest_by_key(&self, key: &AgentKey) -> Result<Option<(RunId, AgentState)>> {
        Ok(Store::latest_by_key(self, key)?.map(|(run, state)| (RunId::from(run), state)))
    }
    async fn runs_of_agent(&self, key: &AgentKey) -> Result<Vec<RunId>> {
        Store::runs_of_agent(self, key)
    }
    async fn agent_keys_page(
        &self,
        run: &RunId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AgentKey)>> {
        Ok(keys(Store::agent_keys_page(self, run, after, limit)?))
    }
    async fn run(&self, run: &RunId) -> Result<RunRow> {
        Store::run(self, run)
    }
    async fn runs(&self) -> Result<Vec<RunRow>> {
        Store::runs(self)
    }
    async fn agents(&self, run: &RunId) -> Result<Vec<AgentRow>> {
        Store::agents(self, run)
    }
}

#[async_trait::async_trait]
impl RunStore for MemoryJournal {
    async fn create_run(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        self.insert_run(run, agents, steps, on_failure, None)
    }
    async fn create_run_exclusive(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
        open_states: &[AgentState],
        holding_states: &[AgentState],
    ) -> Result<()> {
        self.insert_run(
            run,
            agents,
            steps,
            on_failure,
            Some((open_states, holding_states)),
        )
    }
    async fn add_agents(
        &self,
        run: &RunId,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        self.run_row(run)?;
        self.add_entries(run, agents, steps, on_failure);
        Ok(())
    }
    async fn latest_by_key(&self, key: &AgentKey) -> Result<Option<(RunId, AgentState)>> {
        Ok(self
            .latest(key)
            .map(|(run, state)| (RunId::from(run), state)))
    }
    async fn runs_of_agent(&self, key: &AgentKey) -> Result<Vec<RunId>> {
        Ok(self.runs_holding(key))
    }
    async fn agent_keys_page(
        &self,
        run: &RunId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AgentKey)>> {
        Ok(keys(self.keys_after(run, after, limit)))
    }
    async fn run(&self, run: &RunId) -> Result<RunRow> {
        self.run_row(run)
    }
    async fn runs(&self) -> Result<Vec<RunRow>> {
        Ok(self.run_rows())
    }
    async fn agents(&self, run: &RunId) -> Result<Vec<AgentRow>> {
        Ok(self.rows_of(run))
    }
}

/// The state semantics every [`RunStore`] keeps, run against each implementation.
#[cfg(test)]
mod semantics {
    use std::sync::Arc;

    use super::*;
    use crate::engine::journal::Change;
    use crate::engine::journal::EventKind;
    use crate::engine::{JournalError, StepState, StepUpdate};
    use crate::store::Error;

    fn stores() -> Vec<(&'static str, Arc<dyn RunStore>)> {
        vec![
            ("sqlite", Arc::new(Store::open_in_memory().unwrap())),
            ("memory", Arc::new(MemoryJournal::default())),
        ]
    }

    fn run_row(id: &str, at: &str) -> RunRow {
        RunRow {
            id: id.into(),
            created_at: at.into(),
            workflow_name: "onboard-agent".into(),
            workflow: String::new(),
            meta: serde_json::json!({}),
        }
    }

    fn agents<K: From<String>>(keys: &[&str]) -> Vec<(K, serde_json::Value)> {
        keys.iter()
            .map(|k| (K::from(k.to_string()), serde_json::json!({ "email": k })))
            .collect()
    }

    fn steps() -> Vec<StepId> {
        vec!["connect_user".into(), "identity_user".into()]
    }

    fn rid(id: &str) -> RunId {
        id.into()
    }

    fn key(k: &str) -> AgentKey {
        k.into()
    }

    /// Run `id`, created at `at`, with `keys` as its agents.
    async fn seed(s: &dyn RunStore, id: &str, at: &str, keys: &[&str]) {
        s.create_run(
            &run_row(id, at),
            &agents(keys),
            &steps(),
            OnFailure::Rollback,
        )
        .await
        .unwrap();
    }

    const T1: &str = "2026-12-07T10:00:00.000Z";
    const T2: &str = "2026-12-07T11:00:00.000Z";

    #[tokio::test]
    async fn runs_agents_and_pages_come_back_as_inserted() {
        for (name, s) in stores() {
            seed(&*s, "r1", T1, &["b@x", "a@x"]).await;
            s.add_agents(&rid("r1"), &agents(&["c@x"]), &steps(), OnFailure::Rollback)
                .await
                .unwrap();
            let keys: Vec<AgentKey> = (s.agents(&rid("r1")).await.unwrap().into_iter())
                .map(|a| a.agent_key)
                .collect();
            assert_eq!(keys, ["b@x", "a@x", "c@x"], "{name}: insertion order");
            let first = s.agent_keys_page(&rid("r1"), 0, 2).await.unwrap();
            assert_eq!(
                first.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>(),
                ["b@x", "a@x"],
                "{name}"
            );
            let rest = s.agent_keys_page(&rid("r1"), first[1].0, 2).await.unwrap();
            assert_eq!(
                rest.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>(),
                ["c@x"],
                "{name}: the page after the last position"
            );
            let steps_of = s.steps(&rid("r1"), &key("c@x")).await.unwrap();
            assert!(
                steps_of.iter().all(|st| st.state == StepState::Pending),
                "{name}: new agents' steps are pending"
            );
            assert!(
                matches!(
                    s.run(&rid("nope")).await,
                    Err(Error::Journal(JournalError::NotFound(_)))
                ),
                "{name}: an unknown run is NotFound"
            );
            assert!(
                s.add_agents(
                    &rid("nope"),
                    &agents(&["d@x"]),
                    &steps(),
                    OnFailure::Rollback
                )
                .await
                .is_err(),
                "{name}: agents of an unknown run are refused"
            );
        }
    }

    #[tokio::test]
    async fn the_latest_run_of_an_agent_is_the_newest() {
        for (name, s) in stores() {
            seed(&*s, "r1", T1, &["a@x"]).await;
            seed(&*s, "r2", T2, &["a@x"]).await;
            assert_eq!(
                s.latest_by_key(&key("a@x")).await.unwrap(),
                Some((rid("r2"), AgentState::Pending)),
                "{name}"
            );
            assert_eq!(s.latest_by_key(&key("z@x")).await.unwrap(), None, "{name}");
            assert_eq!(
                s.runs_of_agent(&key("a@x")).await.unwrap(),
                ["r1", "r2"],
                "{name}"
            );
            let ids: Vec<RunId> = s.runs().await.unwrap().into_iter().map(|r| r.id).collect();
            assert_eq!(ids, ["r1", "r2"], "{name}: oldest first");
        }
    }

    #[tokio::test]
    async fn an_unfinished_agent_refuses_an_exclusive_run_and_nothing_is_written() {
        for (name, s) in stores() {
            seed(&*s, "r1", T1, &["a@x"]).await;
            let refused = s
                .create_run_exclusive(
                    &run_row("r2", T2),
                    &agents(&["a@x"]),
                    &steps(),
                    OnFailure::Rollback,
                    &[AgentState::Pending, AgentState::Running],
                    &[],
                )
                .await;
            assert!(
                matches!(refused, Err(Error::Unfinished { ref run, .. }) if run == "r1"),
                "{name}: {refused:?}"
            );
            assert!(
                s.run(&rid("r2")).await.is_err(),
                "{name}: no half-created run"
            );
            // A done agent does not hold the next run back.
            s.acquire_lease(&rid("r1"), &key("a@x"), "t", 60_000)
                .await
                .unwrap();
            s.set_agent_state(&rid("r1"), &key("a@x"), "t", AgentState::Done, None)
                .await
                .unwrap();
            s.create_run_exclusive(
                &run_row("r3", T2),
                &agents(&["a@x"]),
                &steps(),
                OnFailure::Rollback,
                &[AgentState::Pending, AgentState::Running],
                &[],
            )
            .await
            .unwrap();
            assert_eq!(
                s.latest_by_key(&key("a@x")).await.unwrap().map(|(r, _)| r),
                Some(rid("r3")),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_live_lease_has_one_holder_and_fences_every_checkpoint() {
        for (name, s) in stores() {
            seed(&*s, "r1", T1, &["a@x"]).await;
            s.acquire_lease(&rid("r1"), &key("a@x"), "A", 60_000)
                .await
                .unwrap();
            assert!(
                matches!(
                    s.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000).await,
                    Err(JournalError::Leased { .. })
                ),
                "{name}: a second holder is refused"
            );
            let up = StepUpdate {
                state: Some(StepState::Running),
                unresolved: Some(true),
                ..Default::default()
            };
            assert!(
                matches!(
                    s.update_step(
                        &rid("r1"),
                        &key("a@x"),
                        "B",
                        &"connect_user".into(),
                        &up,
                        EventKind::StepIntent
                    )
                    .await,
                    Err(JournalError::LeaseLost { .. })
                ),
                "{name}: a checkpoint under another's lease is refused"
            );
            s.update_step(
                &rid("r1"),
                &key("a@x"),
                "A",
                &"connect_user".into(),
                &up,
                EventKind::StepIntent,
            )
            .await
            .unwrap();
            s.renew_lease(&rid("r1"), &key("a@x"), "A", 60_000)
                .await
                .unwrap();
            s.release_lease(&rid("r1"), &key("a@x"), "A").await.unwrap();
            s.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000)
                .await
                .unwrap();
            assert!(
                matches!(
                    s.renew_lease(&rid("r1"), &key("a@x"), "A", 60_000).await,
                    Err(JournalError::LeaseLost { .. })
                ),
                "{name}: the old holder cannot renew"
            );
            let st = s.steps(&rid("r1"), &key("a@x")).await.unwrap();
            assert_eq!(st[0].state, StepState::Running, "{name}");
            assert!(st[0].unresolved, "{name}");
        }
    }

    #[tokio::test]
    async fn a_batch_of_changes_is_all_or_nothing() {
        for (name, s) in stores() {
            seed(&*s, "r1", T1, &["a@x"]).await;
            s.acquire_lease(&rid("r1"), &key("a@x"), "A", 60_000)
                .await
                .unwrap();
            let done = StepUpdate {
                state: Some(StepState::Done),
                ..Default::default()
            };
            let bad = vec![
                Change::Step {
                    step: "connect_user".into(),
                    update: done.clone(),
                    kind: EventKind::StepDone,
                },
                Change::Step {
                    step: "no_such_step".into(),
                    update: done.clone(),
                    kind: EventKind::StepDone,
                },
            ];
            assert!(
                s.apply(&rid("r1"), &key("a@x"), "A", bad).await.is_err(),
                "{name}"
            );
            assert_eq!(
                s.steps(&rid("r1"), &key("a@x")).await.unwrap()[0].state,
                StepState::Pending,
                "{name}: nothing of a refused batch is applied"
            );
            let good = vec![
                Change::Step {
                    step: "connect_user".into(),
                    update: done,
                    kind: EventKind::StepDone,
                },
                Change::Agent {
                    state: AgentState::Done,
                    last_error: None,
                },
                Change::ReleaseLease,
            ];
            s.apply(&rid("r1"), &key("a@x"), "A", good).await.unwrap();
            assert_eq!(
                s.agent(&rid("r1"), &key("a@x")).await.unwrap().state,
                AgentState::Done,
                "{name}"
            );
            s.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000)
                .await
                .unwrap_or_else(|e| panic!("{name}: the batch released the lease: {e}"));
        }
    }
}
