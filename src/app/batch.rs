//! `batch`: a file of agents (the console's bulk-upload CSV, native CSV or JSON Lines) as
//! one run. Every row is validated and resolved before the first write (all errors at
//! once); agents then run concurrently, each its own checkpointed saga, paced per AWS API
//! by the clients' shared pacer. Re-running the same file is safe: agents done in an
//! earlier run are reported done with zero writes, unfinished ones resume in their run,
//! failed or rolled-back ones are tried again in the new run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::agent::reader::{InputError, Reader};
use crate::agent::{self, FieldError, Secret};
use crate::aws::pacer::ApiStats;
use crate::engine::{AgentState, Engine, EngineOptions, PlanDecision, Secrets};
use crate::steps::{self, Subject};
use crate::store::{self, MemoryJournal, RunRow, Store};
use crate::target::{self, Target};

use super::onboard::new_run_id;
use super::runs::engine_for_run;
use super::{engine_options, env_for, load_workflow, Context, Error, RunSettings};

/// Rows inserted per state-store transaction when a run is created.
const INSERT_CHUNK: usize = 1_000;

/// What `batch` was asked to do.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The agent file.
    pub file: PathBuf,
    /// Plan only: zero writes, no state file.
    pub dry_run: bool,
    /// Report invalid rows and go on with the valid ones (else: exit 2, nothing written).
    pub skip_invalid: bool,
    /// Agents in flight at once (the pacer, not this, holds each API to its quota).
    pub concurrency: usize,
}

/// One agent's outcome, as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentResult {
    /// The normalised email.
    pub email: String,
    /// The agent's state (`done`, `rolled_back`, ...), or `already_done`/`skipped`.
    pub outcome: String,
    /// The run that holds it.
    pub run_id: Option<String>,
    /// Connect user id, when known.
    pub connect_user_id: Option<String>,
    /// Identity Store user id, when known.
    pub identity_user_id: Option<String>,
    /// Why it is not done.
    pub error: Option<String>,
    /// Where it signs in (done agents).
    #[serde(skip)]
    pub portal_url: Option<String>,
}

/// What `batch` did.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    /// The new run, if one was created.
    pub run_id: Option<String>,
    /// Dry run: nothing was written.
    pub dry_run: bool,
    /// Rows rejected by validation (`file:line: column ...: rule`).
    pub invalid: Vec<String>,
    /// Agents by outcome.
    pub counts: BTreeMap<String, usize>,
    /// Dry run: per step, how many agents would create / adopt / conflict / unknown.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub plan: BTreeMap<String, BTreeMap<String, usize>>,
    /// Every agent of the file that was valid.
    pub agents: Vec<AgentResult>,
    /// Per AWS API: calls, retries, throttled.
    pub calls: Vec<CallStats>,
    /// Wall time of the run phase, in milliseconds.
    pub elapsed_ms: u64,
}

/// Calls made to one API.
#[derive(Debug, Clone, Serialize)]
pub struct CallStats {
    /// `service:Operation`.
    pub api: String,
    /// Calls sent.
    pub calls: u64,
    /// Calls answered with throttling.
    pub throttled: u64,
}

impl From<&ApiStats> for CallStats {
    fn from(s: &ApiStats) -> Self {
        CallStats {
            api: s.api.clone(),
            calls: s.first_attempts + s.retries,
            throttled: s.throttled,
        }
    }
}

/// A validated row.
struct Valid {
    subject: Subject,
    password: Option<Secret>,
}

/// Reads and validates the whole file: every row's errors, each naming `file:line`, the
/// column and the rule; duplicates (same normalised email) name both lines.
fn read_and_validate(
    path: &std::path::Path,
    defaults: &agent::Defaults,
    target: &Target,
    catalog: &target::Catalog,
) -> Result<(Vec<Valid>, Vec<String>), Error> {
    let reader = Reader::open(path).map_err(|errs| Error::Input(join(&errs)))?;
    let file = reader.file_name().to_string();
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for row in reader {
        let row = match row {
            Ok(r) => r,
            Err(errs) => {
                invalid.extend(errs.iter().map(ToString::to_string));
                continue;
            }
        };
        let at = |fe: &FieldError| match row.column_for(&fe.field) {
            Some(col) => format!("{file}:{}: column {col:?}: {fe}", row.line),
            None => format!("{file}:{}: {fe}", row.line),
        };
        let spec = match agent::validate(&row.input, defaults, target.identity_mode) {
            Ok(s) => s,
            Err(e) => {
                invalid.extend(e.0.iter().map(at));
                continue;
            }
        };
        if let Some(first) = seen.get(&spec.email) {
            invalid.push(format!(
                "{file}:{}: agent {} is already on line {first}: one row per agent (emails compare without case)",
                row.line, spec.email
            ));
            continue;
        }
        seen.insert(spec.email.clone(), row.line);
        let password = row.input.password.clone();
        if spec.needs_password && password.is_none() {
            invalid.push(format!(
                "{file}:{}: invalid password <redacted>: instance {} stores users in Amazon Connect (CONNECT_MANAGED): each row needs a password",
                row.line, target.instance_id
            ));
            continue;
        }
        match target::resolve(spec, catalog) {
            Ok(subject) => valid.push(Valid { subject, password }),
            Err(errs) => invalid.extend(errs.iter().map(at)),
        }
    }
    Ok((valid, invalid))
}

fn join(errs: &[InputError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn secrets_of(v: &Valid) -> Secrets {
    let mut s = Secrets::default();
    if let Some(p) = &v.password {
        s.insert(steps::PASSWORD, p.expose().to_string());
    }
    s
}

/// Runs `batch`.
pub async fn batch(
    ctx: &Context,
    opts: &BatchOptions,
    settings: &RunSettings,
) -> Result<BatchReport, Error> {
    let config = ctx.config()?;
    let mut regions = ctx.new_run_regions();
    let clients = ctx.clients(&mut regions).await;
    let wf = load_workflow(
        ctx.globals.workflow.as_deref(),
        &env_for(&clients, &Target::placeholder(config)),
    )?;
    let (mut target, catalog) =
        target::discover(config, &clients.connect, &clients.sso_admin).await?;
    target.connect_region = regions.connect.clone();
    target.identity_center_region = regions.identity_center.clone();
    target.identity_center_profile = regions.identity_center_profile.clone();
    let (valid, invalid) = read_and_validate(&opts.file, &config.defaults, &target, &catalog)?;
    if !invalid.is_empty() && !opts.skip_invalid {
        return Err(Error::Input(format!(
            "{}\n{} problem(s) in {}; nothing was written (fix them, or pass --skip-invalid to onboard the valid rows only)",
            invalid.join("\n"),
            invalid.len(),
            opts.file.display()
        )));
    }
    let registry = steps::registry(&env_for(&clients, &target));
    let concurrency = opts.concurrency.max(1);
    let started = Instant::now();
    let mut report = BatchReport {
        run_id: None,
        dry_run: opts.dry_run,
        invalid,
        counts: BTreeMap::new(),
        plan: BTreeMap::new(),
        agents: Vec::new(),
        calls: Vec::new(),
        elapsed_ms: 0,
    };

    if opts.dry_run {
        // The same lookups the real run starts with; a journal in memory, nothing written.
        let engine = Engine::new(
            wf,
            registry,
            Arc::new(MemoryJournal::default()),
            EngineOptions::default(),
        );
        let plans: Vec<_> = stream::iter(&valid)
            .map(|v| {
                let engine = &engine;
                async move { (v, engine.plan(&v.subject, &secrets_of(v)).await) }
            })
            .buffered(concurrency)
            .collect()
            .await;
        for (v, plan) in plans {
            let clean = plan
                .iter()
                .all(|p| matches!(p.decision, PlanDecision::Create | PlanDecision::Adopt));
            for p in &plan {
                *report
                    .plan
                    .entry(p.step.clone())
                    .or_default()
                    .entry(p.decision.as_str().to_string())
                    .or_default() += 1;
            }
            let outcome = if clean { "planned" } else { "conflict" };
            *report.counts.entry(outcome.into()).or_default() += 1;
            report.agents.push(AgentResult {
                email: v.subject.agent.email.clone(),
                outcome: outcome.into(),
                run_id: None,
                connect_user_id: None,
                identity_user_id: None,
                error: plan
                    .iter()
                    .find(|p| !matches!(p.decision, PlanDecision::Create | PlanDecision::Adopt))
                    .map(|p| format!("{}: {}: {}", p.step, p.decision.as_str(), p.detail)),
                portal_url: None,
            });
        }
        report.calls = clients
            .connect
            .1
            .snapshot()
            .iter()
            .map(Into::into)
            .collect();
        return Ok(report);
    }

    // Sort the file's agents by what their latest run says.
    let store = ctx.open_store()?;
    let mut fresh: Vec<&Valid> = Vec::new();
    let mut resume: BTreeMap<String, Vec<&Valid>> = BTreeMap::new();
    for v in &valid {
        let key = &v.subject.agent.email;
        match store.latest_by_key(key)? {
            Some((run, AgentState::Done | AgentState::Released)) => {
                report.agents.push(AgentResult {
                    email: key.clone(),
                    outcome: "already_done".into(),
                    run_id: Some(run),
                    connect_user_id: None,
                    identity_user_id: None,
                    error: None,
                    portal_url: Some(target.portal_url.clone()),
                })
            }
            Some((run, AgentState::NeedsAttention)) => report.agents.push(AgentResult {
                email: key.clone(),
                outcome: "skipped".into(),
                error: Some(format!(
                    "needs attention in run {run}: `connect-onboard rollback {run} --email {key}` or `release`"
                )),
                run_id: Some(run),
                connect_user_id: None,
                identity_user_id: None,
                portal_url: None,
            }),
            Some((run, s)) if s.resumable() => resume.entry(run).or_default().push(v),
            _ => fresh.push(v),
        }
    }
    let run_id = new_run_id();
    if !fresh.is_empty() {
        let run = RunRow {
            id: run_id.clone(),
            created_at: store::now_rfc3339(),
            workflow_name: wf.name.clone(),
            workflow: wf.source.clone(),
            meta: serde_json::to_value(&target).unwrap_or_default(),
        };
        store.create_run(&run, &[], &wf.step_ids(), settings.on_failure)?;
        for chunk in fresh.chunks(INSERT_CHUNK) {
            let rows: Vec<(String, serde_json::Value)> = chunk
                .iter()
                .map(|v| {
                    (
                        v.subject.agent.email.clone(),
                        serde_json::to_value(&v.subject).unwrap_or_default(),
                    )
                })
                .collect();
            store.add_agents(&run_id, &rows, &wf.step_ids(), settings.on_failure)?;
        }
        report.run_id = Some(run_id.clone());
    }

    // Run: the new run's agents and the unfinished ones of earlier runs, `concurrency` at a
    // time. One agent's failure never stops another.
    let mut engines: BTreeMap<String, Engine<Subject>> = BTreeMap::new();
    if !fresh.is_empty() {
        engines.insert(
            run_id.clone(),
            Engine::new(wf, registry, store.clone(), engine_options(settings)?),
        );
    }
    for run in resume.keys() {
        let row = store.run(run)?;
        engines.insert(
            run.clone(),
            engine_for_run(ctx, &store, &row, settings).await?,
        );
    }
    let work: Vec<(String, &Valid)> = fresh
        .iter()
        .map(|v| (run_id.clone(), *v))
        .chain(
            resume
                .iter()
                .flat_map(|(r, vs)| vs.iter().map(move |v| (r.clone(), *v))),
        )
        .collect();
    let total = work.len();
    let finished = Arc::new(AtomicUsize::new(0));
    let ticker = progress_ticker(settings, finished.clone(), total);
    let errors: Vec<String> = stream::iter(work.iter())
        .map(|(run, v)| {
            let engine = &engines[run];
            let finished = finished.clone();
            async move {
                let r = engine
                    .run_agent(run, &v.subject.agent.email, &secrets_of(v))
                    .await;
                finished.fetch_add(1, Ordering::Relaxed);
                r.err().map(|e| format!("{}: {e}", v.subject.agent.email))
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    if let Some(t) = ticker {
        t.abort();
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    for (run, v) in &work {
        report
            .agents
            .push(result_of(&store, run, &v.subject.agent.email, &target)?);
    }
    for e in errors {
        tracing::warn!("{e}");
        if let Some(a) = report.agents.iter_mut().find(|a| e.starts_with(&a.email)) {
            a.error.get_or_insert(e);
        }
    }
    for a in &report.agents {
        *report.counts.entry(a.outcome.clone()).or_default() += 1;
    }
    report.calls = clients
        .connect
        .1
        .snapshot()
        .iter()
        .map(Into::into)
        .collect();
    Ok(report)
}

fn result_of(store: &Store, run: &str, key: &str, target: &Target) -> Result<AgentResult, Error> {
    let row = store.agent(run, key)?;
    let steps = store.steps(run, key)?;
    let id_of = |step: &str| {
        steps
            .iter()
            .find(|s| s.step_id == step)
            .and_then(|s| s.outputs.get("user_id").cloned())
    };
    Ok(AgentResult {
        email: key.to_string(),
        outcome: row.state.as_str().to_string(),
        run_id: Some(run.to_string()),
        connect_user_id: id_of("connect_user"),
        identity_user_id: id_of("identity_user"),
        error: row.last_error,
        portal_url: (row.state == AgentState::Done).then(|| target.portal_url.clone()),
    })
}

/// Plain progress lines on stderr every few seconds (none with `--json`, which sets no
/// progress callback).
fn progress_ticker(
    settings: &RunSettings,
    finished: Arc<AtomicUsize>,
    total: usize,
) -> Option<tokio::task::JoinHandle<()>> {
    settings.progress.as_ref()?;
    let started = Instant::now();
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let done = finished.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            let rate = done as f64 / secs.max(0.001);
            let eta = if rate > 0.0 {
                format!("{:.0} s", (total - done) as f64 / rate)
            } else {
                "?".into()
            };
            eprintln!("progress: {done}/{total} agents finished, {rate:.2} agents/s, ETA {eta}");
        }
    }))
}
