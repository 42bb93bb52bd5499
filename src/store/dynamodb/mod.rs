//! The DynamoDB state store (`dynamodb://TABLE`): the same runs, agents, steps and leases
//! as the SQLite state file, in one table that every machine naming it shares, with the
//! same guarantees kept by conditional writes (see `journal`).
//!
//! The table (created by `connect-onboard init --state dynamodb://TABLE`, on-demand):
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | run | `RUN#<run>` | `#RUN` | `r_*` (created, workflow name and TOML, target JSON), `g_runs` = `RUNS`, `g_at` = `<created>#<run>` |
//! | agent | `RUN#<run>` | `AGENT#<key>` | `a_key`, `a_seq` (insertion number, table-wide), `a_subject` (secret-free JSON), `a_state`, `a_on_failure`, `a_error`, `a_steps` (its steps' rows, JSON), `a_ver` (bumped by every checkpoint), `a_events`, lease `l_token`/`l_holder`/`l_expires` |
//! | claim | `KEY#<key>` | `#CLAIM` | `c_run`, `c_at`: the agent's last exclusive run (`onboard`), set by a conditional write so that the check and the insert are one change |
//! | role lease | `#ROLE` | the role (e.g. `sync-watch`) | `role_holder`, `role_until` (expiry, epoch ms): one process at a time plays the role (`RunStore::lead`, see `roles`) |
//! | counter | `#META` | `#SEQ` | `n`: the last insertion number given |
//! | schema | `#META` | `#SCHEMA` | `v`: the item layout's version |
//!
//! Indexes: `by_seq` (local: `pk`, `a_seq`, keys only): a run's agents in insertion order,
//! paged; `by_key` (global: `a_key`, `a_seq`, keys only): an agent's runs, oldest first,
//! and its latest; `runs` (global: `g_runs`, `g_at`, all): the runs listing, oldest first.
//!
//! One item per agent carries its steps and its lease, so a checkpoint — however many
//! steps it changes, with the agent's state and the lease release — is one conditional
//! `UpdateItem`, atomic without a transaction. No password is ever in an item: subjects
//! are the validated, secret-free ones. Errors that heal (throttling, 5xx, timeouts) are
//! retried per call by the SDK (standard mode); past its attempts the call fails with
//! [`Error::Remote`], which stops a run with every agent resumable.

mod budget;
mod journal;
mod roles;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, LocalSecondaryIndex, Projection, ProjectionType, PutRequest, ReturnValue,
    ScalarAttributeType, TableStatus, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use super::location::{Access, Initialised};
use super::{now_rfc3339, Error, Result, RunRow, RunStore};
use crate::engine::journal::{AgentRow, JournalError, StepRow};
use crate::engine::{AgentKey, AgentState, OnFailure, RunId, StepId, StepState};

/// The version of the item layout this build writes (the `#META`/`#SCHEMA` item).
const SCHEMA_VERSION: i64 = 1;
const BY_SEQ: &str = "by_seq";
const BY_KEY: &str = "by_key";
const RUNS: &str = "runs";
/// How long a claimed exclusive run that is not in the table yet counts as being created
/// (the claim and the insert are milliseconds apart; a process that died between them
/// holds its agents back this long).
const CLAIM_WINDOW_MS: i64 = 60_000;
/// Items per `BatchWriteItem` (DynamoDB's limit).
const BATCH: usize = 25;

pub(super) type Item = HashMap<String, AttributeValue>;

/// The DynamoDB state store. Cheap to share behind an `Arc`.
pub struct DynamoStore {
    client: Client,
    table: String,
    /// `dynamodb://TABLE[?region=R]`, for messages.
    url: String,
    /// The agent items this process holds the lease of, as last written: a checkpoint
    /// is one conditional write without a read (see `journal`).
    cache: Mutex<HashMap<(String, String), AgentItem>>,
    /// Agent items this process inserted and no one has leased through it yet, as
    /// inserted (at most [`FRESH_MAX`]): their lease is taken by their first checkpoint
    /// (see `journal`).
    fresh: Mutex<HashMap<(String, String), Fresh>>,
    /// First checkpoints of pending leases in flight: at most as many as the engine lets
    /// agents take their lease at once, for the same reason (see `LEASES_IN_FLIGHT`).
    first_writes: tokio::sync::Semaphore,
}

/// An agent item as this process inserted it, kept compact for [`DynamoStore::fresh`]
/// (the subject as its JSON text; what the insert's agents share, shared).
struct Fresh {
    seq: i64,
    subject: Box<str>,
    at: std::sync::Arc<str>,
    steps: std::sync::Arc<[StepId]>,
    on_failure: OnFailure,
}

impl Fresh {
    /// The item as inserted.
    fn item(&self, run: &str, key: &str) -> Option<AgentItem> {
        let subject = serde_json::from_str(&self.subject).ok()?;
        Some(AgentItem::inserted(
            run,
            key,
            self.seq,
            &subject,
            &self.steps,
            self.on_failure,
            &self.at,
        ))
    }
}

/// At most this many inserted items are kept for [`DynamoStore::fresh`] (the others take
/// their lease by a write of its own, as agents this process did not insert).
const FRESH_MAX: usize = 10_000;

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DynamoStore({})", self.url)
    }
}

fn url_of(table: &str, region: Option<&str>) -> String {
    match region {
        Some(r) => format!("dynamodb://{table}?region={r}"),
        None => format!("dynamodb://{table}"),
    }
}

async fn client(region: Option<&str>, access: &Access) -> Client {
    let attempt = if access.attempt_timeout.is_zero() {
        Duration::from_secs(30)
    } else {
        access.attempt_timeout
    };
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(attempt)
        .build();
    // No stalled-stream protection: it is for streaming bodies (it arms a 100 ms check
    // timer per request in flight); the attempt timeout ends a stalled call.
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
        );
    if let Some(p) = &access.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = region.or(access.region.as_deref()) {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    let sdk = loader.load().await;
    // Throttling, 5xx and dropped connections heal: retried per call (a conditional write
    // that landed and is re-sent is recognised by its version, see `journal`).
    let retry = aws_smithy_types::retry::RetryConfig::standard()
        .with_max_attempts(10)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(10));
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .retry_config(retry)
        .build();
    Client::from_conf(conf)
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn run_pk(run: &str) -> String {
    format!("RUN#{run}")
}

pub(super) fn agent_sk(agent: &str) -> String {
    format!("AGENT#{agent}")
}

/// A step's row as the agent item stores it (short names keep the item small).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredStep {
    #[serde(rename = "i")]
    id: String,
    #[serde(rename = "q")]
    seq: i64,
    #[serde(rename = "s")]
    state: String,
    #[serde(rename = "o", default)]
    owned: bool,
    #[serde(rename = "u", default)]
    unresolved: bool,
    #[serde(
        rename = "x",
        default,
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    outputs: std::collections::BTreeMap<String, String>,
    #[serde(rename = "a", default)]
    attempts: i64,
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    first_write_ms: Option<i64>,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    last_write_ms: Option<i64>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(rename = "t")]
    updated_at: String,
}

/// An agent's item, decoded.
#[derive(Debug, Clone)]
pub(super) struct AgentItem {
    pub(super) run: String,
    pub(super) key: String,
    pub(super) seq: i64,
    pub(super) subject: serde_json::Value,
    pub(super) state: AgentState,
    pub(super) on_failure: OnFailure,
    pub(super) last_error: Option<String>,
    pub(super) created_at: String,
    pub(super) updated_at: String,
    pub(super) steps: Vec<StepRow>,
    pub(super) lease_token: Option<String>,
    pub(super) lease_holder: Option<String>,
    pub(super) lease_expires: Option<i64>,
    /// Set (to the lease's time to live, ms) while the lease is this process's in its
    /// cache only, not in the table yet: taken by the first checkpoint (see `journal`).
    pub(super) pending_ttl: Option<i64>,
    pub(super) ver: i64,
}

impl AgentItem {
    /// A new agent's item, inserted `at` (RFC 3339).
    fn inserted(
        run: &str,
        key: &str,
        seq: i64,
        subject: &serde_json::Value,
        steps: &[StepId],
        on_failure: OnFailure,
        at: &str,
    ) -> AgentItem {
        let now = at.to_string();
        AgentItem {
            run: run.to_string(),
            key: key.to_string(),
            seq,
            subject: subject.clone(),
            state: AgentState::Pending,
            on_failure,
            last_error: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            steps: (steps.iter().enumerate())
                .map(|(i, id)| StepRow {
                    step_id: id.clone(),
                    seq: i as i64,
                    state: StepState::Pending,
                    owned: false,
                    unresolved: false,
                    outputs: Default::default(),
                    attempts: 0,
                    first_write_ms: None,
                    last_write_ms: None,
                    last_error: None,
                    updated_at: now.clone(),
                })
                .collect(),
            lease_token: None,
            lease_holder: None,
            lease_expires: None,
            pending_ttl: None,
            ver: 0,
        }
    }

    pub(super) fn steps_json(&self) -> String {
        let stored: Vec<StoredStep> = (self.steps.iter())
            .map(|s| StoredStep {
                id: s.step_id.to_string(),
                seq: s.seq,
                state: s.state.as_str().to_string(),
                owned: s.owned,
                unresolved: s.unresolved,
                outputs: s.outputs.clone(),
                attempts: s.attempts,
                first_write_ms: s.first_write_ms,
                last_write_ms: s.last_write_ms,
                last_error: s.last_error.clone(),
                updated_at: s.updated_at.clone(),
            })
            .collect();
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// The whole item, as first written (no lease).
    fn to_item(&self) -> Item {
        let mut it = Item::new();
        it.insert("pk".into(), s(run_pk(&self.run)));
        it.insert("sk".into(), s(agent_sk(&self.key)));
        it.insert("a_key".into(), s(&self.key));
        it.insert("a_seq".into(), n(self.seq));
        it.insert("a_subject".into(), s(self.subject.to_string()));
        it.insert("a_state".into(), s(self.state.as_str()));
        it.insert("a_on_failure".into(), s(self.on_failure.as_str()));
        it.insert("a_created".into(), s(&self.created_at));
        it.insert("a_updated".into(), s(&self.updated_at));
        it.insert("a_steps".into(), s(self.steps_json()));
        if let Some(e) = &self.last_error {
            it.insert("a_error".into(), s(e));
        }
        it.insert("a_ver".into(), n(self.ver));
        it.insert("a_events".into(), n(1));
        it
    }

    fn from_item(it: &Item) -> Result<AgentItem> {
        let text = |k: &str| get_s(it, k).unwrap_or_default().to_string();
        let run = text("pk").trim_start_matches("RUN#").to_string();
        let subject =
            serde_json::from_str(get_s(it, "a_subject").unwrap_or("null")).map_err(|source| {
                Error::Corrupt {
                    what: "agent subject",
                    source,
                }
            })?;
        let stored: Vec<StoredStep> = serde_json::from_str(get_s(it, "a_steps").unwrap_or("[]"))
            .map_err(|source| Error::Corrupt {
                what: "agent steps",
                source,
            })?;
        let mut steps = Vec::with_capacity(stored.len());
        for st in stored {
            steps.push(StepRow {
                step_id: StepId::from(st.id),
                seq: st.seq,
                state: StepState::parse(&st.state)?,
                owned: st.owned,
                unresolved: st.unresolved,
                outputs: st.outputs,
                attempts: st.attempts,
                first_write_ms: st.first_write_ms,
                last_write_ms: st.last_write_ms,
                last_error: st.last_error,
                updated_at: st.updated_at,
            });
        }
        steps.sort_by_key(|s| s.seq);
        Ok(AgentItem {
            run,
            key: text("a_key"),
            seq: get_n(it, "a_seq").unwrap_or_default(),
            subject,
            state: AgentState::parse(get_s(it, "a_state").unwrap_or_default())?,
            on_failure: OnFailure::parse(get_s(it, "a_on_failure").unwrap_or_default())?,
            last_error: get_s(it, "a_error").map(str::to_string),
            created_at: text("a_created"),
            updated_at: text("a_updated"),
            steps,
            lease_token: get_s(it, "l_token").map(str::to_string),
            lease_holder: get_s(it, "l_holder").map(str::to_string),
            lease_expires: get_n(it, "l_expires"),
            pending_ttl: None,
            ver: get_n(it, "a_ver").unwrap_or_default(),
        })
    }

    pub(super) fn row(&self) -> AgentRow {
        AgentRow {
            run_id: RunId::from(self.run.as_str()),
            agent_key: AgentKey::from(self.key.as_str()),
            subject: self.subject.clone(),
            state: self.state,
            on_failure: self.on_failure,
            last_error: self.last_error.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

fn run_item(run: &RunRow) -> Item {
    let mut it = Item::new();
    it.insert("pk".into(), s(run_pk(&run.id)));
    it.insert("sk".into(), s("#RUN"));
    it.insert("r_id".into(), s(run.id.as_str()));
    it.insert("r_created".into(), s(&run.created_at));
    it.insert("r_wf_name".into(), s(&run.workflow_name));
    it.insert("r_wf".into(), s(&run.workflow));
    it.insert("r_meta".into(), s(run.meta.to_string()));
    it.insert("g_runs".into(), s("RUNS"));
    it.insert("g_at".into(), s(format!("{}#{}", run.created_at, run.id)));
    it
}

fn run_from_item(it: &Item) -> Result<RunRow> {
    let text = |k: &str| get_s(it, k).unwrap_or_default().to_string();
    Ok(RunRow {
        id: RunId::from(text("r_id")),
        created_at: text("r_created"),
        workflow_name: text("r_wf_name"),
        workflow: text("r_wf"),
        meta: serde_json::from_str(get_s(it, "r_meta").unwrap_or("null")).map_err(|source| {
            Error::Corrupt {
                what: "run meta",
                source,
            }
        })?,
    })
}

/// Whether an SDK error is the service's `ConditionalCheckFailedException`.
pub(super) fn is_condition_failed<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    fn with_client(client: Client, table: &str, url: String) -> DynamoStore {
        DynamoStore {
            client,
            table: table.to_string(),
            url,
            cache: Mutex::default(),
            fresh: Mutex::default(),
            first_writes: tokio::sync::Semaphore::new(crate::engine::LEASES_IN_FLIGHT),
        }
    }

    /// Opens the table: one read of its schema item. A missing table is
    /// [`Error::NoTable`] (naming `init`); access denied, a table that is not a
    /// connect-onboard one, one written by a newer build, or no answer is
    /// [`Error::OpenTable`]. Both before anything is written.
    pub async fn open(table: &str, region: Option<&str>, access: &Access) -> Result<DynamoStore> {
        let store = Self::with_client(client(region, access).await, table, url_of(table, region));
        store.check_schema().await?;
        Ok(store)
    }

    async fn check_schema(&self) -> Result<()> {
        let table = &self.table;
        let got = (self.client.get_item())
            .table_name(table)
            .key("pk", s("#META"))
            .key("sk", s("#SCHEMA"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.open_error(e))?;
        match got.item().and_then(|it| get_n(it, "v")) {
            None => Err(Error::OpenTable {
                url: self.url.clone(),
                problem: format!(
                    "the table {table} is not a connect-onboard state table (no schema item): create one with `connect-onboard init --state dynamodb://NEW-TABLE`"
                ),
            }),
            Some(v) if v > SCHEMA_VERSION => Err(Error::OpenTable {
                url: self.url.clone(),
                problem: format!(
                    "written by a newer connect-onboard (item layout {v}; this build knows up to {SCHEMA_VERSION}): use that version"
                ),
            }),
            Some(_) => Ok(()),
        }
    }

    /// A store on a new table of an emulator at `endpoint` (static test credentials): the
    /// state-semantics suite's DynamoDB case.
    #[cfg(test)]
    pub(crate) async fn on_emulator(endpoint: &str, table: &str) -> Result<DynamoStore> {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "k", "s", None, None, "test",
            ))
            .build();
        let store = Self::with_client(Client::from_conf(conf), table, url_of(table, None));
        store.create().await?;
        store.check_schema().await?;
        Ok(store)
    }

    fn open_error<E>(&self, e: aws_sdk_dynamodb::error::SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut code = e.code().unwrap_or_default().to_string();
        // A refusal whose body names no code (a proxy's, an emulator's) is still one.
        let status = e.raw_response().map(|r| r.status().as_u16());
        if code.is_empty() && matches!(status, Some(401 | 403)) {
            code = format!("HTTP {}", status.unwrap_or_default());
        }
        match code.as_str() {
            "ResourceNotFoundException" => Error::NoTable {
                url: self.url.clone(),
                table: self.table.clone(),
            },
            "AccessDeniedException"
            | "HTTP 401"
            | "HTTP 403"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "MissingAuthenticationTokenException" => Error::OpenTable {
                url: self.url.clone(),
                problem: format!(
                    "access denied ({code}): grant the table's permissions (`connect-onboard iam-policy --state {}`), or check --profile / [state] profile",
                    self.url
                ),
            },
            _ => Error::OpenTable {
                url: self.url.clone(),
                problem: format!("cannot be read: {}", DisplayErrorContext(&e)),
            },
        }
    }

    /// A failed call, past its retries.
    pub(super) fn remote<E, R>(
        &self,
        what: &str,
        e: aws_sdk_dynamodb::error::SdkError<E, R>,
    ) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        Error::Remote {
            url: self.url.clone(),
            problem: format!("{what}: {}", DisplayErrorContext(&e)),
        }
    }

    /// Creates the table (on-demand; its key schema and indexes) unless it exists, waits
    /// for it to be active and writes its schema item: idempotent.
    pub async fn create_table(
        table: &str,
        region: Option<&str>,
        access: &Access,
    ) -> Result<Initialised> {
        Self::with_client(client(region, access).await, table, url_of(table, region))
            .create()
            .await
    }

    async fn create(&self) -> Result<Initialised> {
        let store = self;
        let table = self.table.as_str();
        let bad = |e: aws_sdk_dynamodb::error::BuildError| Error::OpenTable {
            url: store.url.clone(),
            problem: e.to_string(),
        };
        let def = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
        };
        let keys_only = Projection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build();
        let all = Projection::builder()
            .projection_type(ProjectionType::All)
            .build();
        use ScalarAttributeType::{N, S};
        let created = (store.client.create_table())
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(def("pk", S).map_err(bad)?)
            .attribute_definitions(def("sk", S).map_err(bad)?)
            .attribute_definitions(def("a_seq", N).map_err(bad)?)
            .attribute_definitions(def("a_key", S).map_err(bad)?)
            .attribute_definitions(def("g_runs", S).map_err(bad)?)
            .attribute_definitions(def("g_at", S).map_err(bad)?)
            .key_schema(key("pk", KeyType::Hash).map_err(bad)?)
            .key_schema(key("sk", KeyType::Range).map_err(bad)?)
            .local_secondary_indexes(
                LocalSecondaryIndex::builder()
                    .index_name(BY_SEQ)
                    .key_schema(key("pk", KeyType::Hash).map_err(bad)?)
                    .key_schema(key("a_seq", KeyType::Range).map_err(bad)?)
                    .projection(keys_only.clone())
                    .build()
                    .map_err(bad)?,
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(BY_KEY)
                    .key_schema(key("a_key", KeyType::Hash).map_err(bad)?)
                    .key_schema(key("a_seq", KeyType::Range).map_err(bad)?)
                    .projection(keys_only)
                    .build()
                    .map_err(bad)?,
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(RUNS)
                    .key_schema(key("g_runs", KeyType::Hash).map_err(bad)?)
                    .key_schema(key("g_at", KeyType::Range).map_err(bad)?)
                    .projection(all)
                    .build()
                    .map_err(bad)?,
            )
            .send()
            .await;
        let outcome = match created {
            Ok(_) => Initialised::Created,
            Err(e) if e.code() == Some("ResourceInUseException") => Initialised::Existed,
            Err(e) => return Err(store.open_error(e)),
        };
        // A new table is CREATING for a few seconds on AWS (at once on emulators).
        for _ in 0..300 {
            let d = (store.client.describe_table())
                .table_name(table)
                .send()
                .await
                .map_err(|e| store.open_error(e))?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let put = (store.client.put_item())
            .table_name(table)
            .item("pk", s("#META"))
            .item("sk", s("#SCHEMA"))
            .item("v", n(SCHEMA_VERSION))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(outcome),
            Err(e) if is_condition_failed(&e) => Ok(outcome),
            Err(e) => Err(store.open_error(e)),
        }
    }

    /// The run an agent key's claim item names (the key's last exclusive run) and when it
    /// was claimed (ms), if any.
    pub(in crate::store) async fn claim(&self, key: &str) -> Result<Option<(String, i64)>> {
        let got = (self.client.get_item())
            .table_name(&self.table)
            .key("pk", s(format!("KEY#{key}")))
            .key("sk", s("#CLAIM"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.remote("GetItem", e))?;
        Ok(got.item().and_then(|it| {
            let run = get_s(it, "c_run")?.to_string();
            Some((run, get_n(it, "c_at").unwrap_or_default()))
        }))
    }

    /// Sets each agent's claim to `run`, conditioned on its naming what was checked;
    /// false (the claims taken so far given back) when another process changed one.
    pub(in crate::store) async fn take_claims(
        &self,
        run: &str,
        agents: &[(AgentKey, serde_json::Value)],
        seen: &[Option<(String, i64)>],
    ) -> Result<bool> {
        for (i, ((key, _), before)) in agents.iter().zip(seen).enumerate() {
            let mut u = (self.client.update_item())
                .table_name(&self.table)
                .key("pk", s(format!("KEY#{key}")))
                .key("sk", s("#CLAIM"))
                .update_expression("SET c_run = :run, c_at = :at")
                .expression_attribute_values(":run", s(run))
                .expression_attribute_values(":at", n(super::now_ms()));
            u = match before {
                None => u.condition_expression("attribute_not_exists(c_run) OR c_run = :run"),
                Some((prev, _)) => u
                    .condition_expression("c_run = :seen OR c_run = :run")
                    .expression_attribute_values(":seen", s(prev)),
            };
            match u.send().await {
                Ok(_) => {}
                Err(e) if is_condition_failed(&e) => {
                    for ((key, _), before) in agents[..i].iter().zip(seen) {
                        self.give_back(key, run, before.as_ref()).await?;
                    }
                    return Ok(false);
                }
                Err(e) => return Err(self.remote("UpdateItem", e)),
            }
        }
        Ok(true)
    }

    /// Puts a claim back as it was, if it still names `run`.
    async fn give_back(&self, key: &str, run: &str, before: Option<&(String, i64)>) -> Result<()> {
        let mut u = (self.client.update_item())
            .table_name(&self.table)
            .key("pk", s(format!("KEY#{key}")))
            .key("sk", s("#CLAIM"))
            .condition_expression("c_run = :run")
            .expression_attribute_values(":run", s(run));
        u = match before {
            None => u.update_expression("REMOVE c_run, c_at"),
            Some((prev, at)) => u
                .update_expression("SET c_run = :prev, c_at = :at")
                .expression_attribute_values(":prev", s(prev))
                .expression_attribute_values(":at", n(*at)),
        };
        match u.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.remote("UpdateItem", e)),
        }
    }

    /// `Unfinished` when an agent has a run in an open state, or in a holding state with a
    /// step that owns or may own a resource (its runs by key, and its claimed run).
    pub(in crate::store) async fn check_exclusive(
        &self,
        agents: &[(AgentKey, serde_json::Value)],
        claims: &[Option<(String, i64)>],
        open_states: &[AgentState],
        holding_states: &[AgentState],
    ) -> Result<()> {
        for (i, (key, _)) in agents.iter().enumerate() {
            let mut runs = self.runs_of_agent(key).await?;
            let claimed = claims.get(i).cloned().flatten();
            if let Some((c, _)) = &claimed {
                if !runs.iter().any(|r| r == c) {
                    runs.push(RunId::from(c.as_str()));
                }
            }
            for prev in runs {
                let it = match self.load(&prev, key).await {
                    Ok(it) => it,
                    // Claimed a moment ago and not inserted yet: being created.
                    Err(Error::Journal(JournalError::NotFound(_)))
                        if claimed.as_ref().is_some_and(|(c, at)| {
                            c == &prev && super::now_ms() - at < CLAIM_WINDOW_MS
                        }) =>
                    {
                        return Err(Error::Unfinished {
                            agent: key.to_string(),
                            run: prev.to_string(),
                            state: AgentState::Pending.as_str().to_string(),
                        });
                    }
                    Err(Error::Journal(JournalError::NotFound(_))) => continue,
                    Err(e) => return Err(e),
                };
                let holds = it.steps.iter().any(|s| s.owned || s.unresolved);
                if open_states.contains(&it.state) || (holds && holding_states.contains(&it.state))
                {
                    return Err(Error::Unfinished {
                        agent: key.to_string(),
                        run: prev.to_string(),
                        state: it.state.as_str().to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// An agent's item, read consistently (`NotFound` if there is none).
    pub(super) async fn load(&self, run: &str, agent: &str) -> Result<AgentItem> {
        let got = (self.client.get_item())
            .table_name(&self.table)
            .key("pk", s(run_pk(run)))
            .key("sk", s(agent_sk(agent)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.remote("GetItem", e))?;
        match got.item() {
            Some(it) => AgentItem::from_item(it),
            None => Err(JournalError::NotFound(format!("agent {agent} in run {run}")).into()),
        }
    }

    /// Every page of a query, as one list of items.
    async fn query_all(
        &self,
        what: &str,
        build: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: Option<usize>,
    ) -> Result<Vec<Item>> {
        let mut out: Vec<Item> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = build().set_exclusive_start_key(start.take());
            if let Some(l) = limit {
                q = q.limit((l - out.len()).min(1000) as i32);
            }
            let page = q.send().await.map_err(|e| self.remote(what, e))?;
            out.extend(page.items().iter().cloned());
            let done = limit.is_some_and(|l| out.len() >= l);
            match page.last_evaluated_key() {
                Some(k) if !done && !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The run's item, if any.
    async fn run_item(&self, run: &str) -> Result<Option<RunRow>> {
        let got = (self.client.get_item())
            .table_name(&self.table)
            .key("pk", s(run_pk(run)))
            .key("sk", s("#RUN"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.remote("GetItem", e))?;
        got.item().map(run_from_item).transpose()
    }

    async fn put_run(&self, run: &RunRow) -> Result<()> {
        let put = (self.client.put_item())
            .table_name(&self.table)
            .set_item(Some(run_item(run)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            // Re-sent after it landed (same content), or a run with this id exists.
            Err(e) if is_condition_failed(&e) => match self.run_item(&run.id).await? {
                Some(same) if &same == run => Ok(()),
                _ => Err(Error::Remote {
                    url: self.url.clone(),
                    problem: format!("run {} exists already", run.id),
                }),
            },
            Err(e) => Err(self.remote("PutItem", e)),
        }
    }

    /// Inserts agents with their pending steps: insertion numbers taken from the counter
    /// in one write, then the items 25 per request.
    async fn put_agents<K: AsRef<str>>(
        &self,
        run: &str,
        agents: &[(K, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        if agents.is_empty() {
            return Ok(());
        }
        let first = self.take_seqs(agents.len()).await?;
        let at: std::sync::Arc<str> = now_rfc3339().into();
        let items: Vec<Item> = (agents.iter().enumerate())
            .map(|(i, (key, subject))| {
                let seq = first + i as i64;
                AgentItem::inserted(run, key.as_ref(), seq, subject, steps, on_failure, &at)
                    .to_item()
            })
            .collect();
        self.put_items(items).await?;
        let shared: std::sync::Arc<[StepId]> = steps.into();
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        let room = FRESH_MAX.saturating_sub(fresh.len());
        for (i, (key, subject)) in agents.iter().enumerate().take(room) {
            let it = Fresh {
                seq: first + i as i64,
                subject: subject.to_string().into(),
                at: at.clone(),
                steps: shared.clone(),
                on_failure,
            };
            fresh.insert((run.to_string(), key.as_ref().to_string()), it);
        }
        Ok(())
    }

    /// `count` insertion numbers from the table's counter (one write); the first.
    async fn take_seqs(&self, count: usize) -> Result<i64> {
        let counted = (self.client.update_item())
            .table_name(&self.table)
            .key("pk", s("#META"))
            .key("sk", s("#SEQ"))
            .update_expression("ADD n :k")
            .expression_attribute_values(":k", n(count as i64))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| self.remote("UpdateItem", e))?;
        let last = counted
            .attributes()
            .and_then(|a| get_n(a, "n"))
            .unwrap_or(count as i64);
        Ok(last - count as i64 + 1)
    }

    /// Writes whole items, 25 per request, until none is left unprocessed.
    async fn put_items(&self, items: Vec<Item>) -> Result<()> {
        for chunk in items.chunks(BATCH) {
            let mut pending: Vec<WriteRequest> = Vec::with_capacity(chunk.len());
            for it in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(it.clone()))
                    .build()
                    .map_err(|e| Error::Remote {
                        url: self.url.clone(),
                        problem: e.to_string(),
                    })?;
                pending.push(WriteRequest::builder().put_request(put).build());
            }
            let mut tries = 0u32;
            while !pending.is_empty() {
                let out = (self.client.batch_write_item())
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| self.remote("BatchWriteItem", e))?;
                pending = (out.unprocessed_items())
                    .and_then(|u| u.get(&self.table).cloned())
                    .unwrap_or_default();
                if !pending.is_empty() {
                    tries += 1;
                    if tries > 12 {
                        return Err(Error::Remote {
                            url: self.url.clone(),
                            problem:
                                "BatchWriteItem: items left unprocessed after 12 tries (throttled)"
                                    .into(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(50 << tries.min(7))).await;
                }
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RunStore for DynamoStore {
    fn rate_budget(&self) -> Option<std::sync::Arc<dyn super::run_store::RateBudget>> {
        Some(self.budget())
    }

    async fn create_run(
        &self,
        run: &RunRow,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        self.put_run(run).await?;
        self.put_agents(&run.id, agents, steps, on_failure).await
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
        // The check and the insert are one change across machines: each agent key's
        // claim item names its last exclusive run and is set by a conditional write on
        // what the check saw; a process that lost the race re-checks and sees the winner
        // (a claimed run not inserted yet counts as unfinished for `CLAIM_WINDOW_MS`).
        for _ in 0..5 {
            let mut claims = Vec::with_capacity(agents.len());
            for (key, _) in agents {
                claims.push(self.claim(key).await?);
            }
            self.check_exclusive(agents, &claims, open_states, holding_states)
                .await?;
            if self.take_claims(&run.id, agents, &claims).await? {
                return self.create_run(run, agents, steps, on_failure).await;
            }
        }
        Err(Error::Remote {
            url: self.url.clone(),
            problem: format!("run {}: its agents kept changing under it", run.id),
        })
    }

    async fn add_agents(
        &self,
        run: &RunId,
        agents: &[(AgentKey, serde_json::Value)],
        steps: &[StepId],
        on_failure: OnFailure,
    ) -> Result<()> {
        if self.run_item(run).await?.is_none() {
            return Err(JournalError::NotFound(format!("run {run}")).into());
        }
        self.put_agents(run, agents, steps, on_failure).await
    }

    async fn latest_by_key(&self, key: &AgentKey) -> Result<Option<(RunId, AgentState)>> {
        let newest = self
            .query_all(
                "Query by_key",
                || {
                    (self.client.query())
                        .table_name(&self.table)
                        .index_name(BY_KEY)
                        .key_condition_expression("a_key = :k")
                        .expression_attribute_values(":k", s(key.as_str()))
                        .scan_index_forward(false)
                },
                Some(1),
            )
            .await?;
        let Some(run) = newest
            .first()
            .and_then(|it| get_s(it, "pk"))
            .map(|pk| pk.trim_start_matches("RUN#").to_string())
        else {
            return Ok(None);
        };
        let it = self.load(&run, key).await?;
        Ok(Some((RunId::from(run), it.state)))
    }

    /// The `by_key` index scanned (its keys only), page by page, while it fits in
    /// `requests` pages of up to 1 MB (≈ 10,000 keys each).
    async fn known_keys(&self, requests: usize) -> Result<Option<HashSet<AgentKey>>> {
        let mut keys = HashSet::new();
        let mut start: Option<Item> = None;
        for _ in 0..requests {
            let page = (self.client.scan())
                .table_name(&self.table)
                .index_name(BY_KEY)
                .projection_expression("a_key")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.remote("Scan by_key", e))?;
            keys.extend(
                (page.items().iter()).filter_map(|it| get_s(it, "a_key").map(AgentKey::from)),
            );
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(Some(keys)),
            }
        }
        Ok(None)
    }

    async fn runs_of_agent(&self, key: &AgentKey) -> Result<Vec<RunId>> {
        let items = self
            .query_all(
                "Query by_key",
                || {
                    (self.client.query())
                        .table_name(&self.table)
                        .index_name(BY_KEY)
                        .key_condition_expression("a_key = :k")
                        .expression_attribute_values(":k", s(key.as_str()))
                },
                None,
            )
            .await?;
        Ok((items.iter())
            .filter_map(|it| get_s(it, "pk"))
            .map(|pk| RunId::from(pk.trim_start_matches("RUN#")))
            .collect())
    }

    async fn agent_keys_page(
        &self,
        run: &RunId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AgentKey)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items = self
            .query_all(
                "Query by_seq",
                || {
                    (self.client.query())
                        .table_name(&self.table)
                        .index_name(BY_SEQ)
                        .key_condition_expression("pk = :p AND a_seq > :a")
                        .expression_attribute_values(":p", s(run_pk(run)))
                        .expression_attribute_values(":a", n(after))
                        .consistent_read(true)
                },
                Some(limit),
            )
            .await?;
        Ok((items.iter())
            .take(limit)
            .filter_map(|it| {
                let seq = get_n(it, "a_seq")?;
                let key = get_s(it, "sk")?.strip_prefix("AGENT#")?;
                Some((seq, AgentKey::from(key)))
            })
            .collect())
    }

    async fn run(&self, run: &RunId) -> Result<RunRow> {
        self.run_item(run)
            .await?
            .ok_or_else(|| JournalError::NotFound(format!("run {run}")).into())
    }

    async fn runs(&self) -> Result<Vec<RunRow>> {
        let items = self
            .query_all(
                "Query runs",
                || {
                    (self.client.query())
                        .table_name(&self.table)
                        .index_name(RUNS)
                        .key_condition_expression("g_runs = :r")
                        .expression_attribute_values(":r", s("RUNS"))
                },
                None,
            )
            .await?;
        items.iter().map(run_from_item).collect()
    }

    async fn agents(&self, run: &RunId) -> Result<Vec<AgentRow>> {
        let items = self
            .query_all(
                "Query",
                || {
                    (self.client.query())
                        .table_name(&self.table)
                        .key_condition_expression("pk = :p AND begins_with(sk, :a)")
                        .expression_attribute_values(":p", s(run_pk(run)))
                        .expression_attribute_values(":a", s("AGENT#"))
                        .consistent_read(true)
                },
                None,
            )
            .await?;
        let mut rows = (items.iter())
            .map(AgentItem::from_item)
            .collect::<Result<Vec<_>>>()?;
        rows.sort_by_key(|a| a.seq);
        Ok(rows.iter().map(AgentItem::row).collect())
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<super::Leadership> {
        self.lead_role(role, holder, super::run_store::ttl_ms(ttl))
            .await
    }

    async fn resign(&self, role: &str, holder: &str) -> Result<()> {
        self.resign_role(role, holder).await
    }

    async fn import_run(&self, run: &RunRow, agents: &[(AgentRow, Vec<StepRow>)]) -> Result<()> {
        self.put_run(run).await?;
        let first = self.take_seqs(agents.len()).await?;
        let items: Vec<Item> = (agents.iter().enumerate())
            .map(|(i, (row, steps))| {
                AgentItem {
                    run: run.id.to_string(),
                    key: row.agent_key.to_string(),
                    seq: first + i as i64,
                    subject: row.subject.clone(),
                    state: row.state,
                    on_failure: row.on_failure,
                    last_error: row.last_error.clone(),
                    created_at: row.created_at.clone(),
                    updated_at: row.updated_at.clone(),
                    steps: steps.clone(),
                    lease_token: None,
                    lease_holder: None,
                    lease_expires: None,
                    pending_ttl: None,
                    ver: 0,
                }
                .to_item()
            })
            .collect();
        self.put_items(items).await
    }
}
