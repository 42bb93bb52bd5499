//! `RunStore`: the run-level operations of a state store (create a run, add its agents,
//! find an agent's latest run, page through a run, list runs), beside the engine's
//! per-agent [`Journal`]. One trait, so that a second backend (a shared store) has one
//! place to plug in, and one suite of state semantics (`semantics` below) that every
//! implementation must pass: the SQLite [`Store`] and the in-memory [`MemoryJournal`].
//! Beside runs, the store keeps **role leases** ([`RunStore::lead`]): a named singleton
//! lock with an expiry, so that one process at a time plays a role on a store (e.g. one
//! `sync --watch` per table) and a standby takes over when the holder stops renewing.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{AgentKey, AgentState, Journal, OnFailure, RunId, StepId};

use super::{fmt_ms, AgentRow, Holder, MemoryJournal, Result, RunRow, StepRow, Store};

/// What [`RunStore::lead`] found: this holder leads, or another live holder does. One JSON
/// object for JSON Lines: `{"lease":"lead","until_ms":…}` or
/// `{"lease":"standby","holder":"…","until_ms":…}` (expiry in ms since the Unix epoch;
/// [`Leadership::until`] gives it as RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "lease", rename_all = "snake_case")]
pub enum Leadership {
    /// This holder holds the lease until `until_ms` (unless it renews it).
    Lead {
        /// Expiry, ms since the Unix epoch.
        until_ms: i64,
    },
    /// Another live holder has the lease until `until_ms` (unless it renews it).
    Standby {
        /// The holder string that holder gave.
        holder: String,
        /// Expiry, ms since the Unix epoch.
        until_ms: i64,
    },
}

impl Leadership {
    /// Whether this holder leads.
    pub fn leads(&self) -> bool {
        matches!(self, Leadership::Lead { .. })
    }

    /// The lease's expiry as RFC 3339 (UTC, milliseconds).
    pub fn until(&self) -> String {
        match self {
            Leadership::Lead { until_ms } | Leadership::Standby { until_ms, .. } => {
                fmt_ms(*until_ms)
            }
        }
    }
}

/// A role lease's ttl in ms (at least 1).
pub(super) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}

/// Whether `holder` may take a role lease that `current` (holder, expiry ms) holds, at
/// `now` (ms): when nobody holds it, it is `holder`'s own (a renewal), it has expired, or
/// its holder is a [`Holder`] known to be dead (same host, boot and PID namespace; see
/// [`Holder::role_holder`]). Never a live lease of another holder.
pub(super) fn may_take(current: Option<(&str, i64)>, holder: &str, now: i64) -> bool {
    match current {
        None => true,
        Some((h, until)) => h == holder || until <= now || holder_is_dead(h),
    }
}

/// Whether a role lease's holder string names a process known to be dead (a serialized
/// [`Holder`], as [`Holder::role_holder`] makes; any other string is presumed alive).
pub(super) fn holder_is_dead(holder: &str) -> bool {
    serde_json::from_str::<Holder>(holder).is_ok_and(|h| h.is_dead())
}

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
    /// Every agent key that has a run, when the store can list them all in at most
    /// `requests` requests: a roster's lookups then ask [`RunStore::latest_by_key`] only of
    /// the keys listed (a key not listed has no run). `None` when the listing would take
    /// more, or when a lookup per key costs nothing worth saving (the state file). A shared
    /// store's listing is as consistent as its `latest_by_key` (DynamoDB: both read the
    /// same eventually consistent index).
    async fn known_keys(&self, _requests: usize) -> Result<Option<HashSet<AgentKey>>> {
        Ok(None)
    }
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
    /// Writes a run as another store holds it (`state copy`): the run, then its agents in
    /// order, each with its state and steps as they are (no lease).
    async fn import_run(&self, run: &RunRow, agents: &[(AgentRow, Vec<StepRow>)]) -> Result<()>;
    /// Takes or renews the lease of `role` (e.g. `"sync-watch"`) for `holder` (an opaque
    /// string naming this process, e.g. [`Holder::role_holder`]) for `ttl`, in one atomic
    /// change: [`Leadership::Lead`] when this holder now holds it until now + `ttl` (it was
    /// free, expired, already this holder's — a renewal is a `lead` by the same holder — or
    /// held by a [`Holder`] known to be dead on this host); else [`Leadership::Standby`] with
    /// the live holder and its expiry. A holder whose lease expired has lost it: if another
    /// took it meanwhile, its next `lead` is `Standby` (a live lease is never taken back).
    /// Expiry is by the wall clock (ms since the Unix epoch, as the agents' leases): the
    /// machines sharing a store must keep their clocks in sync (NTP); a skew of `s` moves
    /// a takeover by `s`.
    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<Leadership>;
    /// Gives the lease of `role` up if `holder` holds it (a clean exit), so that a standby
    /// takes it at its next `lead`; when `holder` does not hold it, nothing changes.
    async fn resign(&self, role: &str, holder: &str) -> Result<()>;
    /// The account's rate budget shared by every process using this store (a shared
    /// store), if any; a store on one machine has none.
    fn rate_budget(&self) -> Option<std::sync::Arc<dyn RateBudget>> {
        None
    }
}

/// A rate budget kept in a shared store: one token bucket per AWS quota bucket, drawn from
/// by every process, so that together they stay at the quota.
#[async_trait::async_trait]
pub trait RateBudget: Send + Sync {
    /// Takes up to `want` tokens of `bucket` (refilled at `rate` tokens/s up to `burst`):
    /// the tokens granted, 0 while it is empty.
    async fn draw(&self, bucket: &str, want: u32, rate: f64, burst: f64) -> Result<u32>;
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
    async fn import_run(&self, run: &RunRow, agents: &[(AgentRow, Vec<StepRow>)]) -> Result<()> {
        Store::import_run(self, run, agents)
    }
    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<Leadership> {
        Store::lead(self, role, holder, ttl_ms(ttl))
    }
    async fn resign(&self, role: &str, holder: &str) -> Result<()> {
        Store::resign(self, role, holder)
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
    async fn import_run(&self, run: &RunRow, agents: &[(AgentRow, Vec<StepRow>)]) -> Result<()> {
        self.import(run, agents);
        Ok(())
    }
    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<Leadership> {
        Ok(self.lead_role(role, holder, ttl_ms(ttl)))
    }
    async fn resign(&self, role: &str, holder: &str) -> Result<()> {
        self.resign_role(role, holder);
        Ok(())
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

    /// moto's server (`pip install 'moto[server]'`), for the DynamoDB case: required in CI,
    /// else skipped loudly when not installed.
    struct Moto(std::process::Child);

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn start_moto() -> Option<(Moto, String)> {
        // Port 0: moto binds a free port itself and names it (a port picked here and bound
        // later could be taken by another test's moto meanwhile, and the two would share).
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => Moto(c),
            Err(e) if std::env::var("CI").is_ok() => {
                panic!("moto_server is required in CI (pip install 'moto[server]'): {e}")
            }
            Err(e) => {
                eprintln!("\n*** SKIPPING the DynamoDB case: moto_server not found ({e}) ***\n");
                return None;
            }
        };
        // Its "Running on" line names the port; the later lines (one per request) are
        // read and dropped so it never blocks on a full pipe.
        use std::io::BufRead;
        let stderr = child.0.stderr.take().expect("moto's stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let port = (line.split("http://127.0.0.1:").nth(1))
                    .and_then(|p| p.trim().parse::<u16>().ok());
                if let (Some(p), Some(t)) = (port, &tx) {
                    let _ = t.send(p);
                    tx = None;
                }
            }
        });
        let port: u16 = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("moto_server did not say which port it bound");
        Some((child, format!("http://127.0.0.1:{port}")))
    }

    /// A store (a process, with its own cache) on table `table` of the moto server at `url`.
    async fn on_table(url: &str, table: &str) -> crate::store::DynamoStore {
        crate::store::DynamoStore::on_emulator(url, table)
            .await
            .unwrap()
    }

    /// Two stores (two processes) on one table of a moto server of their own; `None`
    /// without moto.
    async fn two_processes(
        table: &str,
    ) -> Option<(Moto, crate::store::DynamoStore, crate::store::DynamoStore)> {
        let (moto, url) = start_moto()?;
        Some((
            moto,
            on_table(&url, table).await,
            on_table(&url, table).await,
        ))
    }

    /// Every backend, fresh: the DynamoDB one on a new table of its own moto server.
    struct Backends {
        list: Vec<(&'static str, Arc<dyn RunStore>)>,
        _moto: Option<Moto>,
    }

    async fn stores() -> Backends {
        let mut list: Vec<(&'static str, Arc<dyn RunStore>)> = vec![
            ("sqlite", Arc::new(Store::open_in_memory().unwrap())),
            ("memory", Arc::new(MemoryJournal::default())),
        ];
        let moto = start_moto();
        if let Some((_, url)) = &moto {
            let s = crate::store::DynamoStore::on_emulator(url, "semantics")
                .await
                .unwrap();
            list.push(("dynamodb", Arc::new(s)));
        }
        Backends {
            list,
            _moto: moto.map(|(m, _)| m),
        }
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
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
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
    async fn a_key_listing_names_exactly_the_keys_that_have_a_run() {
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
            assert_eq!(
                s.known_keys(1).await.unwrap().map(|k| k.len()),
                (name == "dynamodb").then_some(0),
                "{name}: an empty store lists no key (or lists none at all)"
            );
            seed(&*s, "r1", T1, &["a@x", "b@x"]).await;
            seed(&*s, "r2", T2, &["b@x", "c@x"]).await;
            // Past its request budget a store gives no listing (never a partial one).
            assert_eq!(s.known_keys(0).await.unwrap(), None, "{name}");
            let Some(known) = s.known_keys(1).await.unwrap() else {
                assert_ne!(name, "dynamodb", "the shared store lists its keys");
                continue;
            };
            let mut listed: Vec<&str> = known.iter().map(AgentKey::as_str).collect();
            listed.sort_unstable();
            assert_eq!(listed, ["a@x", "b@x", "c@x"], "{name}");
            // The listing agrees with the per-key lookup it stands in for.
            for k in ["a@x", "b@x", "c@x", "z@x"] {
                let has_run = s.latest_by_key(&key(k)).await.unwrap().is_some();
                assert_eq!(known.contains(&key(k)), has_run, "{name}: {k}");
            }
        }
    }

    #[tokio::test]
    async fn the_latest_run_of_an_agent_is_the_newest() {
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
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
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
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
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
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
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
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

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_old_holder_cannot_write() {
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
            seed(&*s, "r1", T1, &["a@x"]).await;
            // A's lease is already expired (a paused or dead holder): B takes it over.
            s.acquire_lease(&rid("r1"), &key("a@x"), "A", -1)
                .await
                .unwrap();
            s.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000)
                .await
                .unwrap_or_else(|e| panic!("{name}: an expired lease is taken over: {e}"));
            let done = StepUpdate {
                state: Some(StepState::Done),
                ..Default::default()
            };
            s.update_step(
                &rid("r1"),
                &key("a@x"),
                "B",
                &"connect_user".into(),
                &done,
                EventKind::StepDone,
            )
            .await
            .unwrap();
            // A wakes up and writes what it was about to: refused, B's progress stays.
            let stale = StepUpdate {
                state: Some(StepState::Running),
                unresolved: Some(true),
                ..Default::default()
            };
            let refused = s
                .apply(
                    &rid("r1"),
                    &key("a@x"),
                    "A",
                    vec![Change::Step {
                        step: "connect_user".into(),
                        update: stale,
                        kind: EventKind::StepIntent,
                    }],
                )
                .await;
            assert!(
                matches!(refused, Err(JournalError::LeaseLost { .. })),
                "{name}: {refused:?}"
            );
            assert!(
                matches!(
                    s.renew_lease(&rid("r1"), &key("a@x"), "A", 60_000).await,
                    Err(JournalError::LeaseLost { .. })
                ),
                "{name}"
            );
            let st = s.steps(&rid("r1"), &key("a@x")).await.unwrap();
            assert_eq!(st[0].state, StepState::Done, "{name}: no going back");
            assert!(!st[0].unresolved, "{name}");
        }
    }

    /// Two processes (two stores, each with its own cache) on one table: the one whose
    /// lease expired while it was paused cannot overwrite the new holder's checkpoints.
    #[tokio::test]
    async fn two_processes_on_one_table_one_paused_past_its_lease() {
        let Some((_moto, a, b)) = two_processes("shared").await else {
            return;
        };
        seed(&a, "r1", T1, &["a@x"]).await;
        let intent = StepUpdate {
            state: Some(StepState::Running),
            unresolved: Some(true),
            ..Default::default()
        };
        a.acquire_lease(&rid("r1"), &key("a@x"), "A", 300)
            .await
            .unwrap();
        a.update_step(
            &rid("r1"),
            &key("a@x"),
            "A",
            &"connect_user".into(),
            &intent,
            EventKind::StepIntent,
        )
        .await
        .unwrap();
        assert!(
            matches!(
                b.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000).await,
                Err(JournalError::Leased { .. })
            ),
            "a live lease on another machine is respected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        b.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000)
            .await
            .unwrap();
        let done = StepUpdate {
            state: Some(StepState::Done),
            owned: Some(true),
            unresolved: Some(false),
            ..Default::default()
        };
        b.update_step(
            &rid("r1"),
            &key("a@x"),
            "B",
            &"connect_user".into(),
            &done,
            EventKind::StepDone,
        )
        .await
        .unwrap();
        // A wakes: its cached item says it holds the lease; the table says otherwise.
        let back = StepUpdate {
            state: Some(StepState::Pending),
            ..Default::default()
        };
        let refused = a
            .update_step(
                &rid("r1"),
                &key("a@x"),
                "A",
                &"connect_user".into(),
                &back,
                EventKind::StepError,
            )
            .await;
        assert!(
            matches!(refused, Err(JournalError::LeaseLost { .. })),
            "{refused:?}"
        );
        let st = a.steps(&rid("r1"), &key("a@x")).await.unwrap();
        assert_eq!((st[0].state, st[0].owned), (StepState::Done, true));
        // B's pass ends: its release lands with its last checkpoint.
        b.apply(
            &rid("r1"),
            &key("a@x"),
            "B",
            vec![
                Change::Agent {
                    state: AgentState::Done,
                    last_error: None,
                },
                Change::ReleaseLease,
            ],
        )
        .await
        .unwrap();
        a.acquire_lease(&rid("r1"), &key("a@x"), "A2", 60_000)
            .await
            .unwrap();
        assert_eq!(
            a.agent(&rid("r1"), &key("a@x")).await.unwrap().state,
            AgentState::Done
        );
    }

    /// The intent of `agent`'s `step` in `run`, under `token`.
    async fn intent_on(
        s: &crate::store::DynamoStore,
        run: &str,
        agent: &str,
        step: &str,
        token: &str,
    ) -> std::result::Result<(), JournalError> {
        let intent = StepUpdate {
            state: Some(StepState::Running),
            unresolved: Some(true),
            ..Default::default()
        };
        (s.update_step(
            &rid(run),
            &key(agent),
            token,
            &step.into(),
            &intent,
            EventKind::StepIntent,
        ))
        .await
    }

    /// The lease of an agent a process inserted is written by its first checkpoint (see
    /// `dynamodb::journal`): until then the table shows no holder; a process that another
    /// beat to the lease, or whose item changed meanwhile, is refused at that checkpoint.
    #[tokio::test]
    async fn a_fresh_agents_lease_is_taken_by_its_first_checkpoint_and_refused_if_another_came_first(
    ) {
        let Some((_moto, a, b)) = two_processes("fresh").await else {
            return;
        };
        seed(&a, "r1", T1, &["a@x", "b@x", "c@x", "d@x"]).await;
        // An agent's last checkpoint: its state, and the lease released.
        let last = |state| {
            vec![
                Change::Agent {
                    state,
                    last_error: None,
                },
                Change::ReleaseLease,
            ]
        };
        // a@x: A's lease is pending, B takes it in the table and writes first.
        a.acquire_lease(&rid("r1"), &key("a@x"), "A", 60_000)
            .await
            .unwrap();
        let it = b.load("r1", "a@x").await.unwrap();
        assert_eq!((it.lease_token, it.ver), (None, 0), "no write at acquire");
        b.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000)
            .await
            .unwrap();
        let refused = intent_on(&a, "r1", "a@x", "connect_user", "A").await;
        assert!(
            matches!(refused, Err(JournalError::Leased { .. })),
            "the item is unchanged, but B holds it: {refused:?}"
        );
        intent_on(&b, "r1", "a@x", "connect_user", "B")
            .await
            .unwrap();
        let it = b.load("r1", "a@x").await.unwrap();
        assert_eq!((it.lease_token.as_deref(), it.ver), (Some("B"), 1));

        // b@x: B leased, wrote and released before A's first checkpoint: the lease is
        // free, but the item is not as A inserted it.
        a.acquire_lease(&rid("r1"), &key("b@x"), "A", 60_000)
            .await
            .unwrap();
        b.acquire_lease(&rid("r1"), &key("b@x"), "B", 60_000)
            .await
            .unwrap();
        (b.apply(&rid("r1"), &key("b@x"), "B", last(AgentState::Failed))
            .await)
            .unwrap();
        let refused = intent_on(&a, "r1", "b@x", "connect_user", "A").await;
        assert!(
            matches!(refused, Err(JournalError::LeaseLost { .. })),
            "{refused:?}"
        );
        let it = b.load("r1", "b@x").await.unwrap();
        assert_eq!(
            (it.state, it.ver),
            (AgentState::Failed, 1),
            "B's write stays"
        );
        assert_eq!(it.steps[0].state, StepState::Pending);

        // c@x: no one else: the first checkpoint writes the lease, which then fences B.
        a.acquire_lease(&rid("r1"), &key("c@x"), "A", 60_000)
            .await
            .unwrap();
        intent_on(&a, "r1", "c@x", "connect_user", "A")
            .await
            .unwrap();
        let it = b.load("r1", "c@x").await.unwrap();
        assert_eq!((it.lease_token.as_deref(), it.ver), (Some("A"), 1));
        assert!(it.lease_expires.unwrap() > crate::store::now_ms() + 50_000);
        assert!(matches!(
            b.acquire_lease(&rid("r1"), &key("c@x"), "B", 60_000).await,
            Err(JournalError::Leased { .. })
        ));
        intent_on(&a, "r1", "c@x", "connect_user", "A")
            .await
            .unwrap();
        assert_eq!(b.load("r1", "c@x").await.unwrap().ver, 2);

        // d@x: A's first checkpoint is its last (it releases), refused after B wrote one
        // checkpoint that also released: the version is the one A's would have made and
        // no one holds the lease, but the content is B's, so A is told, not "done".
        a.acquire_lease(&rid("r1"), &key("d@x"), "A", 60_000)
            .await
            .unwrap();
        b.acquire_lease(&rid("r1"), &key("d@x"), "B", 60_000)
            .await
            .unwrap();
        (b.apply(&rid("r1"), &key("d@x"), "B", last(AgentState::Failed))
            .await)
            .unwrap();
        let refused = a
            .apply(&rid("r1"), &key("d@x"), "A", last(AgentState::Done))
            .await;
        assert!(
            matches!(refused, Err(JournalError::LeaseLost { .. })),
            "{refused:?}"
        );
        assert_eq!(b.load("r1", "d@x").await.unwrap().state, AgentState::Failed);
    }

    /// A pending lease renewed is written (so a slow first step is fenced as any other);
    /// released, it writes nothing; its process dying leaves no lease to wait out.
    #[tokio::test]
    async fn a_pending_lease_is_written_when_renewed_and_leaves_nothing_when_released_or_dropped() {
        let Some((_moto, url)) = start_moto() else {
            return;
        };
        let b = on_table(&url, "pending").await;
        let keys = [
            "a@x", "b@x", "c@x", "d@x", "e@x", "f@x", "g@x", "h@x", "i@x",
        ];
        {
            let a = on_table(&url, "pending").await;
            seed(&a, "r1", T1, &keys).await;
            a.acquire_lease(&rid("r1"), &key("a@x"), "A", 60_000)
                .await
                .unwrap();
            // a dies here.
        }
        b.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000)
            .await
            .unwrap_or_else(|e| panic!("nothing to wait out: {e}"));

        let a = on_table(&url, "pending").await;
        seed(&a, "r2", T2, &keys).await;
        a.acquire_lease(&rid("r2"), &key("b@x"), "A", 60_000)
            .await
            .unwrap();
        a.release_lease(&rid("r2"), &key("b@x"), "A").await.unwrap();
        let it = b.load("r2", "b@x").await.unwrap();
        assert_eq!(
            (it.lease_token, it.ver),
            (None, 0),
            "a release writes nothing"
        );

        a.acquire_lease(&rid("r2"), &key("c@x"), "A", 60_000)
            .await
            .unwrap();
        a.renew_lease(&rid("r2"), &key("c@x"), "A", 60_000)
            .await
            .unwrap();
        assert_eq!(
            b.load("r2", "c@x").await.unwrap().lease_token.as_deref(),
            Some("A")
        );
        assert!(matches!(
            b.acquire_lease(&rid("r2"), &key("c@x"), "B", 60_000).await,
            Err(JournalError::Leased { .. })
        ));
        (intent_on(&a, "r2", "c@x", "connect_user", "A").await).unwrap();

        // A renewal racing the first checkpoint: both land, in either order, and the
        // next checkpoint still finds the version it expects.
        for (i, agent) in ["d@x", "e@x", "f@x", "g@x", "h@x", "i@x"]
            .iter()
            .enumerate()
        {
            a.acquire_lease(&rid("r2"), &key(agent), "A", 60_000)
                .await
                .unwrap();
            let (r2, k) = (rid("r2"), key(agent));
            let renew = a.renew_lease(&r2, &k, "A", 60_000);
            let write = intent_on(&a, "r2", agent, "connect_user", "A");
            // Both sent before either answers; the first polled is sent first.
            let (renewed, written) = if i % 2 == 0 {
                tokio::join!(renew, write)
            } else {
                let (w, r) = tokio::join!(write, renew);
                (r, w)
            };
            renewed.unwrap();
            written.unwrap();
            (intent_on(&a, "r2", agent, "identity_user", "A").await).unwrap();
            let it = b.load("r2", agent).await.unwrap();
            assert_eq!(
                (it.lease_token.as_deref(), it.ver),
                (Some("A"), 2),
                "{agent}"
            );
        }

        // The same refused for a run the process did not insert: leased by a write.
        let c = on_table(&url, "pending").await;
        c.acquire_lease(&rid("r1"), &key("f@x"), "C", 60_000)
            .await
            .unwrap();
        assert_eq!(
            b.load("r1", "f@x").await.unwrap().lease_token.as_deref(),
            Some("C")
        );
    }

    #[tokio::test]
    async fn an_imported_run_comes_back_as_it_was() {
        // A run with progress, in one store...
        let from = MemoryJournal::default();
        seed(&from, "r1", T1, &["b@x", "a@x"]).await;
        from.acquire_lease("r1", "a@x", "A", 60_000).unwrap();
        let done = StepUpdate {
            state: Some(StepState::Done),
            owned: Some(true),
            outputs: Some([("user_id".to_string(), "u-1".to_string())].into()),
            bump_attempts: true,
            mark_write: Some(5),
            ..Default::default()
        };
        from.update_step("r1", "a@x", "A", "connect_user", &done, EventKind::StepDone)
            .unwrap();
        from.set_agent_state("r1", "a@x", "A", AgentState::Failed, Some("E: boom"))
            .unwrap();
        let run = RunStore::run(&from, &rid("r1")).await.unwrap();
        let mut agents = Vec::new();
        for a in RunStore::agents(&from, &rid("r1")).await.unwrap() {
            let st = MemoryJournal::steps(&from, "r1", &a.agent_key).unwrap();
            agents.push((a, st));
        }
        // ... imported into each: the same run, agents in order, states and steps.
        let backends = stores().await;
        for (name, s) in backends.list.iter() {
            s.import_run(&run, &agents).await.unwrap();
            assert_eq!(s.run(&rid("r1")).await.unwrap(), run, "{name}");
            let back = s.agents(&rid("r1")).await.unwrap();
            assert_eq!(
                back,
                agents.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(),
                "{name}"
            );
            for (a, st) in &agents {
                assert_eq!(
                    &s.steps(&rid("r1"), &a.agent_key).await.unwrap(),
                    st,
                    "{name}"
                );
            }
            assert_eq!(
                s.latest_by_key(&key("a@x")).await.unwrap(),
                Some((rid("r1"), AgentState::Failed)),
                "{name}"
            );
            // Imported without a lease: anyone may take it.
            s.acquire_lease(&rid("r1"), &key("a@x"), "B", 60_000)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    /// The shared rate budget (stores that have one: DynamoDB, on moto): however many
    /// drawers race, the tokens granted never exceed the burst plus the rate times the time,
    /// and a drawer is granted tokens at all.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_shared_rate_budget_grants_no_more_than_the_burst_plus_the_rate_over_time() {
        let stores = stores().await;
        for (name, s) in &stores.list {
            let Some(budget) = s.rate_budget() else {
                continue;
            };
            race_for_tokens(name, &[budget], 5).await;
        }
    }

    /// Two processes' budgets on one table (each remembering the item as it last wrote it
    /// and drawing from that copy): the copy of one goes stale as the other draws, and a
    /// draw from a stale copy is refused and read again, so together they still never get
    /// more than the burst plus the rate times the time.
    #[tokio::test(flavor = "multi_thread")]
    async fn two_processes_budgets_drawing_from_their_own_copies_stay_within_the_bound() {
        let Some((_moto, url)) = start_moto() else {
            return;
        };
        let mut budgets = Vec::new();
        for _ in 0..2 {
            let store = crate::store::DynamoStore::on_emulator(&url, "budget-two")
                .await
                .unwrap();
            budgets.push(store.rate_budget().unwrap());
        }
        race_for_tokens("two processes", &budgets, 2).await;
    }

    /// Four drawers (spread over `budgets`) take `want` tokens at a time for 1.5 s from one
    /// bucket at 20/s, burst 5: together they get no more than the burst plus the rate
    /// times the time, and not less than half the rate's worth.
    async fn race_for_tokens(name: &str, budgets: &[std::sync::Arc<dyn RateBudget>], want: u32) {
        let (rate, burst) = (20.0, 5.0);
        let started = std::time::Instant::now();
        let until = started + std::time::Duration::from_millis(1500);
        let drawers = (0..4).map(|i| {
            let budget = budgets[i % budgets.len()].clone();
            tokio::spawn(async move {
                let mut got = 0u32;
                while std::time::Instant::now() < until {
                    got += budget
                        .draw("connect:CreateUser", want, rate, burst)
                        .await
                        .unwrap();
                }
                got
            })
        });
        let mut granted = 0u32;
        for d in drawers.collect::<Vec<_>>() {
            granted += d.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let bound = burst + rate * elapsed;
        assert!(
            f64::from(granted) <= bound + 1.0,
            "{name}: {granted} tokens granted in {elapsed:.2} s, more than {bound:.1}"
        );
        assert!(
            f64::from(granted) >= rate * 1.5 * 0.5,
            "{name}: only {granted} tokens in {elapsed:.2} s"
        );
    }

    /// Two processes creating an exclusive run for one agent at the same instant: both
    /// look before either writes; the first claim wins, the second is refused, looks again
    /// and refuses the run (the check and the insert are one change). Interleaved step by
    /// step: moto answers concurrent requests on threads without making a conditional
    /// write atomic, so racing real requests there would test moto, not the store.
    #[tokio::test]
    async fn two_processes_creating_an_exclusive_run_for_one_agent_at_once_one_is_refused() {
        let Some((_moto, a, b)) = two_processes("exclusive").await else {
            return;
        };
        let open = [AgentState::Pending, AgentState::Running];
        let who: Vec<(AgentKey, serde_json::Value)> = agents(&["a@x"]);
        let (ca, cb) = (a.claim("a@x").await.unwrap(), b.claim("a@x").await.unwrap());
        a.check_exclusive(&who, std::slice::from_ref(&ca), &open, &[])
            .await
            .unwrap();
        b.check_exclusive(&who, std::slice::from_ref(&cb), &open, &[])
            .await
            .unwrap();
        assert!(
            a.take_claims("ra", &who, &[ca]).await.unwrap(),
            "A claims first"
        );
        assert!(
            !b.take_claims("rb", &who, &[cb]).await.unwrap(),
            "B's claim, on what it saw, is refused"
        );
        // B looks again: A's run is being created, then created: refused either way.
        let refused = b
            .create_run_exclusive(
                &run_row("rb", T1),
                &who,
                &steps(),
                OnFailure::Rollback,
                &open,
                &[],
            )
            .await;
        assert!(
            matches!(refused, Err(Error::Unfinished { ref run, .. }) if run == "ra"),
            "{refused:?}"
        );
        a.create_run(&run_row("ra", T1), &who, &steps(), OnFailure::Rollback)
            .await
            .unwrap();
        let refused = b
            .create_run_exclusive(
                &run_row("rb", T1),
                &who,
                &steps(),
                OnFailure::Rollback,
                &open,
                &[],
            )
            .await;
        assert!(
            matches!(refused, Err(Error::Unfinished { ref run, .. }) if run == "ra"),
            "{refused:?}"
        );
        assert_eq!(b.runs_of_agent(&key("a@x")).await.unwrap(), ["ra"]);
    }

    const ROLE: &str = "sync-watch";
    const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

    fn standby(holder: &str, until_ms: i64) -> Leadership {
        Leadership::Standby {
            holder: holder.into(),
            until_ms,
        }
    }

    /// The expiry a `Lead` gives (panics on `Standby`).
    #[track_caller]
    fn lead_until(name: &str, l: Leadership) -> i64 {
        match l {
            Leadership::Lead { until_ms } => until_ms,
            other => panic!("{name}: expected to lead, got {other:?}"),
        }
    }

    /// Waits until the wall clock is past `until_ms` (an expiry), however long that takes.
    async fn sleep_past(until_ms: i64) {
        while crate::store::now_ms() <= until_ms {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn one_holder_leads_a_role_at_a_time_and_a_renewal_extends_its_lease() {
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
            let before = crate::store::now_ms();
            let until = lead_until(name, s.lead(ROLE, "a", MINUTE).await.unwrap());
            let after = crate::store::now_ms();
            assert!(
                (before + 60_000..=after + 60_000).contains(&until),
                "{name}: held for the ttl from now: {until}"
            );
            assert_eq!(
                s.lead(ROLE, "b", MINUTE).await.unwrap(),
                standby("a", until),
                "{name}: another holder waits, told who leads and until when"
            );
            let renewed = lead_until(name, s.lead(ROLE, "a", 2 * MINUTE).await.unwrap());
            assert!(renewed >= until + 60_000, "{name}: a renewal extends");
            assert_eq!(
                s.lead(ROLE, "b", MINUTE).await.unwrap(),
                standby("a", renewed),
                "{name}: still a's, to the renewed expiry"
            );
            lead_until(name, s.lead("another-role", "b", MINUTE).await.unwrap());
        }
    }

    #[tokio::test]
    async fn an_expired_role_lease_goes_to_another_and_is_never_taken_back() {
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
            let short = std::time::Duration::from_millis(300);
            let until = lead_until(name, s.lead(ROLE, "a", short).await.unwrap());
            assert_eq!(
                s.lead(ROLE, "b", MINUTE).await.unwrap(),
                standby("a", until),
                "{name}: live until it expires"
            );
            sleep_past(until).await;
            let b_until = lead_until(name, s.lead(ROLE, "b", MINUTE).await.unwrap());
            assert_eq!(
                s.lead(ROLE, "a", MINUTE).await.unwrap(),
                standby("b", b_until),
                "{name}: the holder that let its lease expire lost it"
            );
            lead_until(name, s.lead(ROLE, "b", MINUTE).await.unwrap());
        }
    }

    #[tokio::test]
    async fn resigning_lets_another_lead_at_once_and_only_the_holder_can_resign() {
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
            let until = lead_until(name, s.lead(ROLE, "a", MINUTE).await.unwrap());
            s.resign(ROLE, "b").await.unwrap();
            assert_eq!(
                s.lead(ROLE, "c", MINUTE).await.unwrap(),
                standby("a", until),
                "{name}: a resign by a non-holder changes nothing"
            );
            s.resign(ROLE, "a").await.unwrap();
            let b_until = lead_until(name, s.lead(ROLE, "b", MINUTE).await.unwrap());
            s.resign(ROLE, "a").await.unwrap();
            assert_eq!(
                s.lead(ROLE, "c", MINUTE).await.unwrap(),
                standby("b", b_until),
                "{name}: the former holder's resign leaves the new holder's lease"
            );
            s.resign(ROLE, "nobody").await.unwrap();
            s.resign("never-held", "a").await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_dead_holders_role_lease_is_taken_over_at_once_a_live_ones_is_not() {
        let backends = stores().await;
        // Our parent's pid with another start time: a process that is gone (pid reused).
        let parent = std::os::unix::process::parent_id();
        let ticks = crate::store::lease::start_ticks(&parent.to_string());
        let dead = Holder {
            pid: parent,
            start_ticks: ticks.map(|t| t + 1),
            ..Holder::current()
        };
        assert!(dead.is_dead());
        let dead = serde_json::to_string(&dead).unwrap();
        for (name, s) in backends.list.iter().cloned() {
            lead_until(name, s.lead(ROLE, &dead, MINUTE).await.unwrap());
            let live = Holder::role_holder();
            let until = lead_until(name, s.lead(ROLE, &live, MINUTE).await.unwrap());
            let other = Holder::role_holder();
            assert_ne!(live, other, "one process, two holders");
            assert_eq!(
                s.lead(ROLE, &other, MINUTE).await.unwrap(),
                standby(&live, until),
                "{name}: a live process's lease is kept"
            );
        }
    }

    #[tokio::test]
    async fn a_role_lease_is_in_no_listing_of_runs_or_agents() {
        let backends = stores().await;
        for (name, s) in backends.list.iter().cloned() {
            seed(&*s, "r1", T1, &["a@x"]).await;
            lead_until(name, s.lead(ROLE, "a", MINUTE).await.unwrap());
            let runs: Vec<RunId> = s.runs().await.unwrap().into_iter().map(|r| r.id).collect();
            assert_eq!(runs, ["r1"], "{name}: runs (status, state copy)");
            let keys: Vec<AgentKey> = (s.agents(&rid("r1")).await.unwrap().into_iter())
                .map(|a| a.agent_key)
                .collect();
            assert_eq!(keys, ["a@x"], "{name}");
            assert_eq!(
                s.runs_of_agent(&key(ROLE)).await.unwrap(),
                Vec::<RunId>::new()
            );
            assert_eq!(s.latest_by_key(&key(ROLE)).await.unwrap(), None, "{name}");
        }
    }

    #[test]
    fn leadership_is_one_json_object_with_its_expiry() {
        let lead = serde_json::to_value(Leadership::Lead {
            until_ms: 1_796_402_766_000,
        })
        .unwrap();
        assert_eq!(
            lead,
            serde_json::json!({"lease": "lead", "until_ms": 1_796_402_766_000_i64})
        );
        let s = standby("h", 1_796_402_766_000);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"lease": "standby", "holder": "h", "until_ms": 1_796_402_766_000_i64})
        );
        assert_eq!(s.until(), "2026-12-04T16:46:06.000Z");
        assert!(!s.leads());
    }
}
