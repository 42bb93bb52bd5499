//! Operations behind the commands: onboard, batch, migrate, offboard, resume, rollback,
//! release, status. Each wires
//! the configuration, the AWS clients, the checkpoint store and the engine together and
//! returns data; printing is the CLI's job.
//!
//! Invariants kept here: nothing is written (to AWS or to the state store) before the
//! configuration, the workflow and the agent have all been checked (preflight); a run
//! records its resolved target, so `resume` and `rollback` act on exactly the instance,
//! identity store and application the run started with, whatever the config says now.//!
//! The parts: this file (errors, the loaded context, engine wiring), `env` (every
//! environment knob, read in one place), `onboard`, `batch`, `runs` (resume, rollback,
//! release), `status`, and the read-only diagnoses `doctor`, `drift`, `iam_policy`, one file
//! per operation. Nothing here prints or decides an exit code.

mod apply;
mod batch;
mod doctor;
mod drift;
mod drive;
pub mod env;
mod iam_policy;
mod migrate;
mod offboard;
mod onboard;
mod outcome;
mod phase;
mod runs;
mod state;
mod status;
mod sync;

pub use crate::aws::retry::{Wait, WaitFn};
/// The name under which the CLI hands a password to the steps (in memory only).
pub use crate::steps::PASSWORD as PASSWORD_SECRET;
pub use crate::store::Initialised as StateInitialised;
pub use apply::{
    apply, Action as ApplyAction, ApplyOptions, ApplyReport, ApplySource, FieldChange, PlanRow,
    SavedPlan, BUILTIN_APPLY_WORKFLOW,
};
pub use batch::{batch, BatchOptions};
pub use doctor::{doctor, Check, CheckStatus, DoctorReport};
pub use drift::{drift, DriftAgent, DriftReport, DriftStatus, FixPlan, Read as DriftRead};
pub use env::PASSWORD_ENV;
pub use iam_policy::{iam_policy, PolicyFor, ACTIONS};
pub use migrate::{migrate, MigrateOptions, BUILTIN_MIGRATE_WORKFLOW};
pub use offboard::{offboard, OffboardOptions, PlannedLeaver, Sides, BUILTIN_OFFBOARD_WORKFLOW};
pub use onboard::{onboard, OnboardReport};
pub use outcome::Outcome;
pub use phase::{
    AgentResult, BatchReport, BulkReads, CallStats, RunOptions, Sink, BULK_READS_FROM,
};
pub use runs::{
    release, resume, retry, rollback, ConfirmRollback, PlannedRemoval, PlannedRollback,
    RollbackReport, RunsReport,
};
pub use state::{state_copy, CopyReport};
pub use status::{status, AgentStatus, RunStatus, StepStatus};
pub use sync::events::Hint as SyncHint;
pub use sync::watch::{
    Next as WatchNext, Seen as WatchEvent, WatchOptions, Watcher, Why as ReconcileWhy,
};
pub use sync::{Scope as SyncScope, BUILTIN_SYNC_WORKFLOW};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::agent::FieldError;
use crate::aws::{self, Clients};
use crate::config::Config;
use crate::engine::{self, EngineOptions, OnFailure, Workflow};
use crate::preflight::{self, Target};
use crate::steps::{self, Env};
use crate::store;

/// The built-in workflow, embedded.
pub const BUILTIN_WORKFLOW: &str = include_str!("../../workflows/onboard-agent.toml");

/// Errors that stop an operation. `Input` ones come before any write (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration, workflow, agent field or arguments.
    #[error("{0}")]
    Input(String),
    /// Invalid agent fields.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Fields(Vec<FieldError>),
    /// Rows of an agent file that failed validation: every problem (`file:line: column
    /// ...: rule`), then a summary line; nothing was written.
    #[error("{}\n{summary}", problems.join("\n"))]
    Invalid {
        /// Every problem of every row.
        problems: Vec<String>,
        /// What it means for the command.
        summary: String,
    },
    /// Preflight failed.
    #[error(transparent)]
    Preflight(#[from] preflight::Error),
    /// The engine or the store failed.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The state file failed mid-run: the run stopped, every unfinished agent resumable.
    #[error("{0}")]
    Stopped(String),
}

impl Error {
    /// A file that cannot be read as agents (every problem the reader found, one a line).
    pub(crate) fn unreadable(errs: &[crate::agent::reader::InputError]) -> Error {
        Error::Input(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// Whether the error is an input/usage error that came before any write.
    pub fn is_input(&self) -> bool {
        match self {
            Error::Input(_) | Error::Fields(_) | Error::Invalid { .. } => true,
            Error::Preflight(preflight::Error::Config(_)) => true,
            // A read that failed for a passing reason (throttled, 5xx, network) is not the
            // user's input; one that was refused (access denied, validation) is setup.
            Error::Preflight(preflight::Error::Aws { source, .. }) => {
                !(source.is_throttling() || source.is_server_or_transport())
            }
            // `rollback` of a run whose steps delete: refused before anything is touched.
            Error::Engine(engine::Error::Irreversible { .. }) => true,
            // The state file cannot be opened (corrupt, too new, unwritable): setup, and
            // nothing was written anywhere.
            Error::Store(e) => e.is_open_failure(),
            Error::Engine(_) | Error::Stopped(_) => false,
        }
    }
}

/// Settings shared by every command.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// Config file.
    pub config: PathBuf,
    /// Whether `--config` named it (then it must exist, whatever else is given).
    pub config_given: bool,
    /// State store override: a file path, or `dynamodb://TABLE[?region=R]`.
    pub state: Option<PathBuf>,
    /// Workflow file override.
    pub workflow: Option<PathBuf>,
    /// AWS profile.
    pub profile: Option<String>,
    /// AWS region override (both services).
    pub region: Option<String>,
    /// Told of every wait between two tries of an AWS call (the progress line).
    pub on_wait: Option<WaitFn>,
}

/// Loaded configuration plus where the state lives.
pub struct Context {
    /// The configuration (absent for commands on an existing state file given by `--state`).
    config: Option<Config>,
    /// Where the state lives (a file, or a shared table): only `store` tells them apart.
    pub state: store::Location,
    pub(crate) globals: Globals,
    /// The one pacer of the process: every client this context builds (the new run's, and
    /// those of earlier runs a batch resumes or retries) shares it, so each AWS quota is
    /// paced once and every call the command makes is counted in one place.
    pacer: std::sync::OnceLock<aws::pacer::Pacer>,
}

/// Where a run's clients point, resolved once and recorded in the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Regions {
    pub(crate) connect: Option<String>,
    pub(crate) identity_center: Option<String>,
    /// Profile of the Identity Center clients (else the global one).
    pub(crate) identity_center_profile: Option<String>,
}

impl Context {
    /// Loads the config file named by `globals` (exit-2 errors name the key).
    pub fn load(globals: &Globals) -> Result<Context, Error> {
        let config = Config::load(&globals.config).map_err(|e| {
            let hint = if matches!(e, crate::config::ConfigError::Read { .. }) {
                " (create one with `connect-onboard init`)"
            } else {
                ""
            };
            Error::Input(format!("{e}{hint}"))
        })?;
        Context::from_config(config, globals)
    }

    /// For commands on existing runs (resume, rollback, release, status): the config file
    /// is optional, since every run records its target; without one the state file is
    /// `--state`, else the default `[state] path`. A `--config PATH` that was given must
    /// exist, even with `--state`.
    pub fn load_for_state(globals: &Globals) -> Result<Context, Error> {
        if !globals.config_given && !globals.config.exists() {
            return Ok(Context {
                config: None,
                state: state_location(globals, None)?,
                globals: globals.clone(),
                pacer: Default::default(),
            });
        }
        Context::load(globals)
    }

    /// Wraps an already loaded configuration (a `--state` or `[state] url` that is not a
    /// store is an input error naming it).
    pub fn from_config(config: Config, globals: &Globals) -> Result<Context, Error> {
        Ok(Context {
            state: state_location(globals, Some(&config))?,
            config: Some(config),
            globals: globals.clone(),
            pacer: Default::default(),
        })
    }

    /// The configuration; onboarding needs one.
    pub fn config(&self) -> Result<&Config, Error> {
        self.config.as_ref().ok_or_else(|| {
            Error::Input(format!(
                "no config file at {} (create one with `connect-onboard init`)",
                self.globals.config.display()
            ))
        })
    }

    /// The regions for a new run. Connect: `--region`, else the config, else the AWS
    /// chain's. Identity Center: `identity_center.region` (its home region is its own),
    /// else the Connect region.
    pub(crate) fn new_run_regions(&self) -> Regions {
        let cfg = self.config.as_ref();
        let connect = self
            .globals
            .region
            .clone()
            .or_else(|| cfg.and_then(|c| c.connect.region()).map(str::to_string));
        let identity_center = cfg
            .and_then(|c| c.identity_center.region.clone())
            .or_else(|| connect.clone());
        Regions {
            connect,
            identity_center,
            identity_center_profile: cfg.and_then(|c| c.identity_center.profile.clone()),
        }
    }

    /// Clients for `regions`; a region left open is the AWS chain's, and is filled in.
    pub(crate) async fn clients(&self, regions: &mut Regions) -> Result<Clients, Error> {
        let sdk = aws::load_sdk_config(
            self.globals.profile.as_deref(),
            self.globals.region.as_deref(),
            env::attempt_timeout(),
        )
        .await;
        let chain = sdk.region().map(|r| r.to_string());
        regions.connect = regions.connect.clone().or_else(|| chain.clone());
        regions.identity_center = regions.identity_center.clone().or(chain);
        let ic_sdk = match &regions.identity_center_profile {
            Some(p) => Some(aws::load_sdk_config(Some(p), None, env::attempt_timeout()).await),
            None => None,
        };
        Ok(Clients::new(
            &sdk,
            ic_sdk.as_ref(),
            regions.connect.as_deref(),
            regions.identity_center.as_deref(),
            self.pacer()?,
        ))
    }

    /// The client of the SQS queue at `url` (`sync --watch --queue`): the AWS chain's
    /// profile and endpoint (`AWS_ENDPOINT_URL_SQS`), the region the URL names.
    pub(crate) async fn queue(&self, url: &str) -> Result<Arc<dyn aws::queue::QueueApi>, Error> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::Input(format!(
                "--queue {url:?}: not a queue URL; give the URL SQS shows for the queue, such as https://sqs.eu-west-1.amazonaws.com/123456789012/connect-sync"
            )));
        }
        let sdk = aws::load_sdk_config(
            self.globals.profile.as_deref(),
            self.globals.region.as_deref(),
            env::attempt_timeout().max(std::time::Duration::from_secs(30)),
        )
        .await;
        Ok(Arc::new(aws::queue::SdkQueue::new(&sdk, url)))
    }

    /// The process's pacer, built on first use (see the field).
    pub(crate) fn pacer(&self) -> Result<aws::pacer::Pacer, Error> {
        if let Some(p) = self.pacer.get() {
            return Ok(p.clone());
        }
        let p = pacer(
            self.config
                .as_ref()
                .map(Config::rate_limits)
                .unwrap_or_default(),
            self.globals.on_wait.clone(),
        )?;
        Ok(self.pacer.get_or_init(|| p).clone())
    }

    /// How the state store is reached when it is a shared one: `[state] profile`, else
    /// `--profile`; `--region` when its URL names none.
    pub(crate) fn store_access(&self) -> store::Access {
        let profile = (self.config.as_ref())
            .and_then(|c| c.state.profile.clone())
            .or_else(|| self.globals.profile.clone());
        store::Access {
            profile,
            region: self.globals.region.clone(),
            attempt_timeout: env::attempt_timeout(),
        }
    }

    /// The state store, behind the store traits: nothing above this line knows which
    /// backend it is. A state file is created on first use; a table must exist (`init`).
    pub(crate) async fn open_store(&self) -> Result<StateStore, Error> {
        let store = store::open(&self.state, &self.store_access()).await?;
        self.share_rate_budget(&*store)?;
        Ok(store)
    }

    /// The state store for commands on existing runs: never created by them.
    pub(crate) async fn existing_store(&self) -> Result<StateStore, Error> {
        let store = store::open_existing(&self.state, &self.store_access()).await?;
        self.share_rate_budget(&*store)?;
        Ok(store)
    }

    /// With a shared store, the pacer draws every quota's tokens from the account's budget
    /// in it too (`[rate_limits] shared`, on by default where the store has one), so that
    /// processes on several machines together stay at the quota.
    fn share_rate_budget(&self, store: &dyn store::RunStore) -> Result<(), Error> {
        let wanted = (self.config.as_ref())
            .and_then(|c| c.rate_limits_shared())
            .unwrap_or(true);
        let Some(budget) = store.rate_budget().filter(|_| wanted) else {
            return Ok(());
        };
        let draw: aws::pacer::DrawFn = std::sync::Arc::new(move |d: aws::pacer::Draw| {
            let budget = budget.clone();
            Box::pin(async move {
                (budget.draw(&d.bucket, d.want, d.rate, d.burst).await).map_err(|e| e.to_string())
            })
        });
        self.pacer()?.share(draw);
        Ok(())
    }

    /// Whether the state store exists and may hold runs (a missing or denied table is an
    /// error: a table is never created by a command that reads it).
    pub(crate) async fn has_state(&self) -> Result<bool, Error> {
        Ok(store::has_state(&self.state, &self.store_access()).await?)
    }

    /// `init --state dynamodb://TABLE`: creates the shared store (idempotent); `None` when
    /// `--state` names no shared store (then `init` writes the example config).
    pub async fn init_shared_state(
        globals: &Globals,
    ) -> Result<Option<(String, store::Initialised)>, Error> {
        let Some(given) = &globals.state else {
            return Ok(None);
        };
        let loc = parse_state(&given.to_string_lossy(), "--state")?;
        if !loc.is_shared() {
            return Ok(None);
        }
        let ctx = Context {
            config: None,
            state: loc.clone(),
            globals: globals.clone(),
            pacer: Default::default(),
        };
        let done = store::init(&loc, &ctx.store_access()).await?;
        Ok(Some((loc.to_string(), done)))
    }
}

/// Where the state lives: `--state`, else `[state] url`, else `[state] path`, else the
/// default file.
fn state_location(globals: &Globals, config: Option<&Config>) -> Result<store::Location, Error> {
    if let Some(given) = &globals.state {
        return parse_state(&given.to_string_lossy(), "--state");
    }
    match config {
        Some(c) => match &c.state.url {
            Some(url) => parse_state(url, "[state] url"),
            None => Ok(store::Location::File(c.state.path.clone())),
        },
        None => Ok(store::Location::File(PathBuf::from(
            crate::config::DEFAULT_STATE_PATH,
        ))),
    }
}

fn parse_state(text: &str, what: &str) -> Result<store::Location, Error> {
    store::Location::parse(text).map_err(|e| Error::Input(format!("{what}: {e}")))
}

/// The state store as every operation holds it: the run-level operations and the engine's
/// journal, whatever the backend.
pub(crate) type StateStore = Arc<dyn store::RunStore>;

impl From<engine::JournalError> for Error {
    fn from(e: engine::JournalError) -> Self {
        Error::Store(store::Error::Journal(e))
    }
}

/// What a new run starts from: the clients, its workflow (checked), its resolved target
/// (regions recorded) and the instance's catalog for name resolution.
pub(crate) struct NewRun {
    pub(crate) clients: Clients,
    pub(crate) wf: Workflow,
    pub(crate) target: Target,
    pub(crate) catalog: preflight::Catalog,
}

/// Which workflow a new run runs.
pub(crate) enum WorkflowSource {
    /// `--workflow PATH`, else the built-in onboarding workflow.
    Onboard,
    /// The built-in migration workflow.
    Migrate,
    /// The built-in offboarding workflow.
    Offboard,
    /// The built-in apply workflow (`apply`: create, complete and update agents).
    Apply,
    /// The built-in sync workflow (`sync`: apply's, adopting the Identity Center user).
    Sync,
}

impl Context {
    /// Everything read before the first write of a new run: the workflow is checked first
    /// (its validation needs only the actions' signatures, so the registry over placeholder
    /// ids serves, before any AWS call), then preflight discovers and verifies the target.
    pub(crate) async fn new_run(&self, source: WorkflowSource) -> Result<NewRun, Error> {
        let config = self.config()?;
        let mut regions = self.new_run_regions();
        let clients = self.clients(&mut regions).await?;
        let placeholder = env_for(&clients, &Target::placeholder(config));
        let wf = match source {
            WorkflowSource::Onboard => {
                load_workflow(self.globals.workflow.as_deref(), &placeholder)?
            }
            WorkflowSource::Migrate => Workflow::parse(
                BUILTIN_MIGRATE_WORKFLOW,
                "built-in migrate-agent",
                &steps::registry(&placeholder),
            )
            .map_err(|e| Error::Input(e.to_string()))?,
            WorkflowSource::Offboard => Workflow::parse(
                BUILTIN_OFFBOARD_WORKFLOW,
                "built-in offboard-agent",
                &steps::registry(&placeholder),
            )
            .map_err(|e| Error::Input(e.to_string()))?,
            WorkflowSource::Apply => Workflow::parse(
                apply::BUILTIN_APPLY_WORKFLOW,
                "built-in apply-agent",
                &steps::registry(&placeholder),
            )
            .map_err(|e| Error::Input(e.to_string()))?,
            WorkflowSource::Sync => Workflow::parse(
                sync::BUILTIN_SYNC_WORKFLOW,
                "built-in sync-agent",
                &steps::registry(&placeholder),
            )
            .map_err(|e| Error::Input(e.to_string()))?,
        };
        let (mut target, catalog) =
            preflight::discover(config, &clients.connect, &clients.sso_admin).await?;
        target.connect_region = regions.connect.clone();
        target.identity_center_region = regions.identity_center.clone();
        target.identity_center_profile = regions.identity_center_profile.clone();
        Ok(NewRun {
            clients,
            wf,
            target,
            catalog,
        })
    }
}

/// The pacer every AWS call of a process goes through: the configured limits, with a
/// reserve against network jitter ([`aws::pacer::RateLimits::with_headroom`]), and the
/// per-call retry budget.
fn pacer(
    limits: aws::pacer::RateLimits,
    on_wait: Option<WaitFn>,
) -> Result<aws::pacer::Pacer, Error> {
    let retry = aws::retry::CallRetry::with_budget_secs(env::retry_budget().map_err(Error::Input)?);
    Ok(aws::pacer::Pacer::with_retry(
        limits.with_headroom(),
        retry,
        on_wait,
    ))
}

/// Per-process engine settings (progress callback, test hooks).
#[derive(Clone, Default)]
pub struct RunSettings {
    /// Progress callback.
    pub progress: Option<engine::ProgressFn>,
    /// What to do on a permanent failure.
    pub on_failure: OnFailure,
    /// Agents driven at once by `resume` and `retry` (as `--concurrency` in a batch).
    pub concurrency: usize,
    /// Set (by a signal) to start no further agent: those in flight finish and are
    /// checkpointed, the others stay pending for the next pass (`sync --watch`).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

pub(crate) fn engine_options(settings: &RunSettings) -> Result<EngineOptions, Error> {
    let mut opts = EngineOptions {
        progress: settings.progress.clone(),
        ..Default::default()
    };
    opts.crash_at = env::crash_at().map_err(Error::Input)?;
    if let Some(ttl) = env::lease_ttl_ms().map_err(Error::Input)? {
        opts.lease_ttl_ms = ttl;
    }
    Ok(opts)
}

/// The actions' environment for `target`, over the SDK clients.
pub fn env_for(clients: &Clients, target: &Target) -> Env {
    Env {
        connect: Arc::new(clients.connect.clone()),
        identity_store: Arc::new(clients.identity_store.clone()),
        sso_admin: Arc::new(clients.sso_admin.clone()),
        instance_id: target.instance_id.clone(),
        identity_store_id: target.identity_store_id.clone(),
        application_arn: target.application_arn.clone(),
        group: target.group.clone(),
        assignment: target.assignment,
        snapshot: None,
    }
}

pub(crate) fn load_workflow(path: Option<&Path>, env: &Env) -> Result<Workflow, Error> {
    let (source, origin) = match path {
        Some(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| Error::Input(format!("cannot read workflow {}: {e}", p.display())))?,
            p.display().to_string(),
        ),
        None => (
            BUILTIN_WORKFLOW.to_string(),
            "built-in onboard-agent".to_string(),
        ),
    };
    let wf = Workflow::parse(&source, &origin, &steps::registry(env))
        .map_err(|e| Error::Input(e.to_string()))?;
    let irreversible = wf.irreversible_steps();
    if !irreversible.is_empty() {
        return Err(Error::Input(format!(
            "workflow {origin} deletes (irreversible steps: {}): it is not an onboarding workflow; run it with `offboard`",
            irreversible.join(", ")
        )));
    }
    Ok(wf)
}
