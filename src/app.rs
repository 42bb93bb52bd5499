//! Operations behind the commands: onboard, resume, rollback, release, status. Each wires
//! the configuration, the AWS clients, the checkpoint store and the engine together and
//! returns data; printing is the CLI's job.
//!
//! Invariants kept here: nothing is written (to AWS or to the state store) before the
//! configuration, the workflow and the agent have all been checked (preflight); a run
//! records its resolved target, so `resume` and `rollback` act on exactly the instance,
//! identity store and application the run started with, whatever the config says now.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::agent::{self, AgentInput, FieldError};
use crate::aws::{self, Clients};
use crate::config::Config;
use crate::preflight::{self, Target};
use crate::steps::{self, Env, Subject};
use crate::store::{self, RunRow, Store};
use crate::workflow::{
    self, AgentState, CrashPoint, Engine, EngineOptions, OnFailure, PlannedStep, Secrets, Workflow,
};

/// The built-in workflow, embedded.
pub const BUILTIN_WORKFLOW: &str = include_str!("../workflows/onboard-agent.toml");

/// Environment variable holding a password for CONNECT_MANAGED instances.
pub const PASSWORD_ENV: &str = "CONNECT_ONBOARD_PASSWORD";

/// Errors that stop an operation. `Input` ones come before any write (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration, workflow, agent field or arguments.
    #[error("{0}")]
    Input(String),
    /// Invalid agent fields.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Fields(Vec<FieldError>),
    /// Preflight failed.
    #[error(transparent)]
    Preflight(#[from] preflight::Error),
    /// The engine or the store failed.
    #[error(transparent)]
    Engine(#[from] workflow::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Error {
    /// Whether the error is an input/usage error that came before any write.
    pub fn is_input(&self) -> bool {
        match self {
            Error::Input(_) | Error::Fields(_) => true,
            Error::Preflight(preflight::Error::Config(_)) => true,
            // A read that failed for a passing reason (throttled, 5xx, network) is not the
            // user's input; one that was refused (access denied, validation) is setup.
            Error::Preflight(preflight::Error::Aws { source, .. }) => {
                !(source.is_throttling() || source.is_server_or_transport())
            }
            Error::Engine(_) | Error::Store(_) => false,
        }
    }
}

/// Settings shared by every command.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// Config file.
    pub config: PathBuf,
    /// State file override.
    pub state: Option<PathBuf>,
    /// Workflow file override.
    pub workflow: Option<PathBuf>,
    /// AWS profile.
    pub profile: Option<String>,
    /// AWS region override (both services).
    pub region: Option<String>,
}

/// Loaded configuration plus where the state lives.
pub struct Context {
    /// The configuration (absent for commands on an existing state file given by `--state`).
    config: Option<Config>,
    /// The state file.
    pub state_path: PathBuf,
    globals: Globals,
}

/// Where a run's clients point, resolved once and recorded in the run.
#[derive(Debug, Clone, Default)]
struct Regions {
    connect: Option<String>,
    identity_center: Option<String>,
    /// Profile of the Identity Center clients (else the global one).
    identity_center_profile: Option<String>,
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
        Ok(Context::from_config(config, globals))
    }

    /// For commands on existing runs (resume, rollback, release, status): the config file
    /// is optional when `--state` names the state file, since every run records its target.
    pub fn load_for_state(globals: &Globals) -> Result<Context, Error> {
        if globals.state.is_some() && !globals.config.exists() {
            return Ok(Context {
                config: None,
                state_path: globals.state.clone().unwrap_or_default(),
                globals: globals.clone(),
            });
        }
        Context::load(globals)
    }

    /// Wraps an already loaded configuration.
    pub fn from_config(config: Config, globals: &Globals) -> Context {
        let state_path = globals
            .state
            .clone()
            .unwrap_or_else(|| config.state.path.clone());
        Context {
            config: Some(config),
            state_path,
            globals: globals.clone(),
        }
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
    fn new_run_regions(&self) -> Regions {
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
    async fn clients(&self, regions: &mut Regions) -> Clients {
        let sdk = aws::load_sdk_config(
            self.globals.profile.as_deref(),
            self.globals.region.as_deref(),
            attempt_timeout(),
        )
        .await;
        let chain = sdk.region().map(|r| r.to_string());
        regions.connect = regions.connect.clone().or_else(|| chain.clone());
        regions.identity_center = regions.identity_center.clone().or(chain);
        let ic_sdk = match &regions.identity_center_profile {
            Some(p) => Some(aws::load_sdk_config(Some(p), None, attempt_timeout()).await),
            None => None,
        };
        Clients::new(
            &sdk,
            ic_sdk.as_ref(),
            regions.connect.as_deref(),
            regions.identity_center.as_deref(),
        )
    }

    fn open_store(&self) -> Result<Arc<Store>, Error> {
        Ok(Arc::new(Store::open(&self.state_path)?))
    }

    fn existing_store(&self) -> Result<Arc<Store>, Error> {
        if !self.state_path.exists() {
            return Err(Error::Input(format!(
                "no state file at {}: no onboarding has run with this state file yet (see --state or [state] path)",
                self.state_path.display()
            )));
        }
        self.open_store()
    }
}

/// Per-attempt timeout of every AWS call: 30 s, or `CONNECT_ONBOARD_ATTEMPT_TIMEOUT_MS`.
fn attempt_timeout() -> std::time::Duration {
    let ms = std::env::var("CONNECT_ONBOARD_ATTEMPT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    std::time::Duration::from_millis(ms)
}

/// Per-process engine settings (progress callback, test hooks).
#[derive(Clone, Default)]
pub struct RunSettings {
    /// Progress callback.
    pub progress: Option<crate::workflow::ProgressFn>,
    /// What to do on a permanent failure.
    pub on_failure: OnFailure,
}

fn engine_options(settings: &RunSettings) -> Result<EngineOptions, Error> {
    let mut opts = EngineOptions {
        progress: settings.progress.clone(),
        ..Default::default()
    };
    // Test hooks (documented in ARCHITECTURE.md): crash at a point, shorten the lease.
    if let Ok(v) = std::env::var("CONNECT_ONBOARD_CRASH_AT") {
        let (point, step) = v.split_once(':').ok_or_else(|| {
            Error::Input(format!(
                "CONNECT_ONBOARD_CRASH_AT={v:?}: expected POINT:STEP"
            ))
        })?;
        let point: CrashPoint = point.parse().map_err(Error::Input)?;
        opts.crash_at = Some((point, step.to_string()));
    }
    if let Ok(v) = std::env::var("CONNECT_ONBOARD_LEASE_TTL_MS") {
        opts.lease_ttl_ms = v.parse().map_err(|_| {
            Error::Input(format!("CONNECT_ONBOARD_LEASE_TTL_MS={v:?}: not a number"))
        })?;
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
    }
}

fn load_workflow(path: Option<&Path>, env: &Env) -> Result<Workflow, Error> {
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
    Workflow::parse(&source, &origin, &steps::registry(env))
        .map_err(|e| Error::Input(e.to_string()))
}

/// What `onboard` did.
#[derive(Debug)]
pub enum OnboardReport {
    /// A dry run: the plan, nothing written.
    Plan {
        /// Agent email.
        agent: String,
        /// Steps.
        steps: Vec<PlannedStep>,
    },
    /// A real run.
    Run(RunStatus),
}

/// Onboards one agent: preflight, validation, then the workflow in a new run.
pub async fn onboard(
    ctx: &Context,
    input: AgentInput,
    secrets: Secrets,
    dry_run: bool,
    settings: &RunSettings,
) -> Result<OnboardReport, Error> {
    let config = ctx.config()?;
    let mut regions = ctx.new_run_regions();
    let clients = ctx.clients(&mut regions).await;
    // The workflow is checked before any AWS call, with placeholder ids.
    let placeholder = Target {
        instance_id: String::new(),
        identity_mode: agent::IdentityMode::Saml,
        identity_store_id: String::new(),
        sso_instance_arn: String::new(),
        application_arn: String::new(),
        group: config.identity_center.group.clone(),
        assignment: config.identity_center.assignment,
        portal_url: String::new(),
        connect_region: None,
        identity_center_region: None,
        identity_center_profile: None,
    };
    load_workflow(
        ctx.globals.workflow.as_deref(),
        &env_for(&clients, &placeholder),
    )?;
    let (mut target, catalog) =
        preflight::discover(config, &clients.connect, &clients.sso_admin).await?;
    target.connect_region = regions.connect.clone();
    target.identity_center_region = regions.identity_center.clone();
    target.identity_center_profile = regions.identity_center_profile.clone();
    // The password may arrive as a secret (environment, stdin): validate it like a field.
    let mut input = input;
    if input.password.is_none() {
        input.password = secrets
            .get(steps::PASSWORD)
            .map(|p| agent::Secret::new(p.to_string()));
    }
    let spec = agent::validate(&input, &config.defaults, target.identity_mode)
        .map_err(|e| Error::Fields(e.0))?;
    let subject = preflight::resolve(spec, &catalog).map_err(Error::Fields)?;
    let mut secrets = secrets;
    if let Some(p) = &input.password {
        secrets.insert(steps::PASSWORD, p.expose().to_string());
    }
    if subject.agent.needs_password && secrets.get(steps::PASSWORD).is_none() {
        return Err(Error::Fields(vec![FieldError::redacted(
            "password",
            format!(
                "instance {} stores users in Amazon Connect (CONNECT_MANAGED): a password is required (set {PASSWORD_ENV} or use --password-stdin)",
                target.instance_id
            ),
        )]));
    }
    let env = env_for(&clients, &target);
    let wf = load_workflow(ctx.globals.workflow.as_deref(), &env)?;
    let email = subject.agent.email.clone();

    if dry_run {
        let engine = Engine::new(
            wf,
            steps::registry(&env),
            Arc::new(Store::open_in_memory()?),
            EngineOptions::default(),
        );
        let steps = engine.plan(&subject, &secrets).await;
        return Ok(OnboardReport::Plan {
            agent: email,
            steps,
        });
    }

    let store = ctx.open_store()?;
    let run_id = new_run_id();
    let run = RunRow {
        id: run_id.clone(),
        created_at: store::now_rfc3339(),
        workflow_name: wf.name.clone(),
        workflow: wf.source.clone(),
        meta: serde_json::to_value(&target).unwrap_or_default(),
    };
    let subject_json = serde_json::to_value(&subject).map_err(|e| Error::Input(e.to_string()))?;
    // One live onboarding per agent: an earlier run that is unfinished, or failed but still
    // holds resources, must be resumed, rolled back or released first. The check and the
    // insert are one transaction.
    let open = [
        AgentState::Pending,
        AgentState::Running,
        AgentState::Interrupted,
        AgentState::RollingBack,
        AgentState::NeedsAttention,
    ]
    .map(AgentState::as_str);
    store
        .create_run_exclusive(
            &run,
            &[(email.clone(), subject_json)],
            &wf.step_ids(),
            settings.on_failure.as_str(),
            &open,
            &[AgentState::Failed.as_str()],
        )
        .map_err(|e| match e {
            e @ store::Error::Unfinished { .. } => Error::Input(e.to_string()),
            e => Error::Store(e),
        })?;
    let engine = Engine::new(
        wf,
        steps::registry(&env),
        store.clone(),
        engine_options(settings)?,
    );
    engine.run_agent(&run_id, &email, &secrets).await?;
    Ok(OnboardReport::Run(run_status(&store, &run_id)?))
}

fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    format!("r-{}-{suffix}", now.format(&fmt).unwrap_or_default())
}

/// Rebuilds the engine of a stored run: its own workflow snapshot and target.
async fn engine_for_run(
    ctx: &Context,
    store: &Arc<Store>,
    run: &RunRow,
    settings: &RunSettings,
) -> Result<Engine<Subject>, Error> {
    let target: Target = serde_json::from_value(run.meta.clone())
        .map_err(|e| Error::Input(format!("run {}: stored target does not parse: {e}", run.id)))?;
    // The run's own regions (recorded at onboard), not today's config.
    let mut regions = Regions {
        connect: target.connect_region.clone(),
        identity_center: target.identity_center_region.clone(),
        identity_center_profile: target.identity_center_profile.clone(),
    };
    let clients = ctx.clients(&mut regions).await;
    let env = env_for(&clients, &target);
    let wf = Workflow::parse(
        &run.workflow,
        &format!("of run {}", run.id),
        &steps::registry(&env),
    )
    .map_err(|e| Error::Input(e.to_string()))?;
    Ok(Engine::new(
        wf,
        steps::registry(&env),
        store.clone(),
        engine_options(settings)?,
    ))
}

fn secrets_for(subject: &serde_json::Value, base: &Secrets) -> Result<(), String> {
    let needs = subject
        .pointer("/agent/needs_password")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if !needs {
        return Ok(());
    }
    match base.get(steps::PASSWORD) {
        None => Err(format!(
            "needs its password again (it is never stored): set {PASSWORD_ENV} or use --password-stdin"
        )),
        // Checked before it is sent, as at onboard: a typo must not turn a resumable agent
        // into a failed one.
        Some(p) => agent::check_password(&agent::Secret::new(p.to_string())).map_err(|e| e.to_string()),
    }
}

/// What `resume` or `rollback` did.
#[derive(Debug, Serialize)]
pub struct BatchReport {
    /// Status of every run touched.
    pub runs: Vec<RunStatus>,
    /// Agents skipped, with the reason.
    pub skipped: Vec<String>,
}

/// Finishes every interrupted or unfinished agent of one run, or of all runs.
pub async fn resume(
    ctx: &Context,
    run_id: Option<&str>,
    secrets: Secrets,
    settings: &RunSettings,
) -> Result<BatchReport, Error> {
    let store = ctx.existing_store()?;
    let runs = match run_id {
        Some(id) => vec![store.run(id)?],
        None => store.runs()?,
    };
    let mut report = BatchReport {
        runs: Vec::new(),
        skipped: Vec::new(),
    };
    for run in runs {
        let agents = store.agents(&run.id)?;
        let attention: Vec<_> = agents
            .iter()
            .filter(|a| a.state == AgentState::NeedsAttention.as_str())
            .collect();
        for a in &attention {
            report.skipped.push(format!(
                "{} (run {}): needs attention after a failed compensation; fix the cause, then `connect-onboard rollback {} --email {}`",
                a.agent_key, run.id, run.id, a.agent_key
            ));
        }
        if !agents
            .iter()
            .any(|a| AgentState::parse(&a.state).resumable())
        {
            if run_id.is_some() || !attention.is_empty() {
                report.runs.push(run_status(&store, &run.id)?);
            }
            continue;
        }
        let engine = engine_for_run(ctx, &store, &run, settings).await?;
        for a in agents {
            if !AgentState::parse(&a.state).resumable() {
                continue;
            }
            // Only an agent going forward may still send the password (a rollback does not).
            let needs_connect = a.state != AgentState::RollingBack.as_str()
                && store.steps(&run.id, &a.agent_key)?.iter().any(|s| {
                    s.step_id == "connect_user" && !matches!(s.state.as_str(), "done" | "adopted")
                });
            if needs_connect {
                if let Err(why) = secrets_for(&a.subject, &secrets) {
                    report
                        .skipped
                        .push(format!("{} (run {}): {why}", a.agent_key, run.id));
                    continue;
                }
            }
            match engine.run_agent(&run.id, &a.agent_key, &secrets).await {
                Ok(_) => {}
                Err(workflow::Error::Store(e @ store::Error::Leased { .. })) => {
                    report.skipped.push(e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
        report.runs.push(run_status(&store, &run.id)?);
    }
    Ok(report)
}

/// Compensates the owned steps of a run, or of one agent in it.
pub async fn rollback(
    ctx: &Context,
    run_id: &str,
    email: Option<&str>,
    secrets: Secrets,
    settings: &RunSettings,
) -> Result<BatchReport, Error> {
    let store = ctx.existing_store()?;
    let run = store.run(run_id)?;
    let engine = engine_for_run(ctx, &store, &run, settings).await?;
    let mut report = BatchReport {
        runs: Vec::new(),
        skipped: Vec::new(),
    };
    let email = email.map(|e| e.trim().to_lowercase());
    let agents = store.agents(run_id)?;
    if let Some(e) = &email {
        if !agents.iter().any(|a| &a.agent_key == e) {
            return Err(Error::Input(format!("run {run_id} has no agent {e}")));
        }
    }
    for a in agents {
        if email.as_ref().is_some_and(|e| e != &a.agent_key) {
            continue;
        }
        if AgentState::parse(&a.state) == AgentState::Released {
            report.skipped.push(format!(
                "{}: released; its resources are no longer managed",
                a.agent_key
            ));
            continue;
        }
        match engine.rollback_agent(run_id, &a.agent_key, &secrets).await {
            Ok(_) => {}
            Err(workflow::Error::Store(e @ store::Error::Leased { .. })) => {
                report.skipped.push(e.to_string())
            }
            Err(e) => return Err(e.into()),
        }
    }
    report.runs.push(run_status(&store, run_id)?);
    Ok(report)
}

/// Releases one agent of a run: leftovers are kept and no longer owned; the agent is closed.
pub async fn release(ctx: &Context, run_id: &str, email: &str) -> Result<RunStatus, Error> {
    let store = ctx.existing_store()?;
    let run = store.run(run_id)?;
    let engine = engine_for_run(ctx, &store, &run, &RunSettings::default()).await?;
    let email = email.trim().to_lowercase();
    store.agent(run_id, &email)?;
    engine.release_agent(run_id, &email)?;
    run_status(&store, run_id)
}

/// Status of one run, or of every run.
pub fn status(ctx: &Context, run_id: Option<&str>) -> Result<Vec<RunStatus>, Error> {
    let store = ctx.existing_store()?;
    match run_id {
        Some(id) => Ok(vec![run_status(&store, id)?]),
        None => store
            .runs()?
            .iter()
            .map(|r| run_status(&store, &r.id))
            .collect(),
    }
}

/// One run, as `status --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    /// Run id.
    pub run_id: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Workflow name.
    pub workflow: String,
    /// Where it onboards.
    pub target: serde_json::Value,
    /// Agents.
    pub agents: Vec<AgentStatus>,
}

/// One agent of a run.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// Normalised email (the agent's key).
    pub email: String,
    /// Agent state.
    pub state: String,
    /// Last error.
    pub last_error: Option<String>,
    /// Where the agent signs in.
    pub portal_url: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Steps in order.
    pub steps: Vec<StepStatus>,
}

/// One step of an agent.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    /// Step id.
    pub id: String,
    /// Step state.
    pub state: String,
    /// Created by this run (compensation may delete it).
    pub owned: bool,
    /// Adopted: found existing and left alone by compensation.
    pub adopted: bool,
    /// A write whose outcome is not known yet.
    pub unresolved: bool,
    /// Resource ids.
    pub resources: std::collections::BTreeMap<String, String>,
    /// Write attempts.
    pub attempts: i64,
    /// Last error.
    pub last_error: Option<String>,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

fn run_status(store: &Store, run_id: &str) -> Result<RunStatus, Error> {
    let run = store.run(run_id)?;
    let portal = run
        .meta
        .get("portal_url")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let mut agents = Vec::new();
    for a in store.agents(run_id)? {
        let steps = store
            .steps(run_id, &a.agent_key)?
            .into_iter()
            .map(|s| StepStatus {
                adopted: s.state == "adopted",
                id: s.step_id,
                state: s.state,
                owned: s.owned,
                unresolved: s.unresolved,
                resources: s.outputs,
                attempts: s.attempts,
                last_error: s.last_error,
                updated_at: s.updated_at,
            })
            .collect();
        agents.push(AgentStatus {
            email: a.agent_key,
            state: a.state,
            last_error: a.last_error,
            portal_url: portal.clone(),
            created_at: a.created_at,
            updated_at: a.updated_at,
            steps,
        });
    }
    Ok(RunStatus {
        run_id: run.id,
        created_at: run.created_at,
        workflow: run.workflow_name,
        target: run.meta,
        agents,
    })
}

/// The process exit code for a set of runs: 0 all done, 3 a compensation failed, else 1.
pub fn exit_code(runs: &[RunStatus]) -> u8 {
    let states: Vec<AgentState> = runs
        .iter()
        .flat_map(|r| r.agents.iter().map(|a| AgentState::parse(&a.state)))
        .collect();
    if states.contains(&AgentState::NeedsAttention) {
        3
    } else if states
        .iter()
        .all(|s| matches!(s, AgentState::Done | AgentState::Released))
    {
        0
    } else {
        1
    }
}
