//! `batch`: a file of agents (the console's bulk-upload CSV, native CSV or JSON Lines) as
//! one run. Every row is validated and resolved before the first write (all errors at
//! once); agents then run concurrently, each its own checkpointed saga, paced per AWS API
//! by the clients' shared pacer. Re-running the same file is safe: agents done in an
//! earlier run are reported done with zero writes, unfinished ones resume in their run,
//! failed or rolled-back ones are tried again in the new run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::agent::reader::{InputError, Reader};
use crate::agent::{self, FieldError, Secret};
use crate::aws::pacer::ApiStats;
use crate::aws::Clients;
use crate::config::AssignmentMode;
use crate::engine::Workflow;
use crate::engine::{AgentState, Engine, EngineOptions, Registry, Secrets, StepState};
use crate::steps::snapshot::{Scope, Snapshot};
use crate::steps::{self, Subject};
use crate::store::{self, MemoryJournal, RunRow, Store};
use crate::target::{self, Target};

use super::drive::{drive, Direction, Directions, Drive, Drivers, Work};
use super::onboard::new_run_id;
use super::runs::engine_for_run;
use super::{
    engine_options, env_for, Context, Error, NewRun, Outcome, RunSettings, WorkflowSource,
};

/// Rows inserted per state-store transaction when a run is created.
const INSERT_CHUNK: usize = 1_000;

/// What `batch` was asked to do.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The agent file.
    pub file: PathBuf,
    /// Report invalid rows and go on with the valid ones (else: exit 2, nothing written).
    pub skip_invalid: bool,
    /// How to run the agents.
    pub run: RunOptions,
}

/// How `batch` and `migrate` run their agents.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Plan only: zero writes, no state file.
    pub dry_run: bool,
    /// Agents in flight at once (the pacer, not this, holds each API to its quota).
    pub concurrency: usize,
    /// List each directory once instead of looking every agent up.
    pub bulk_reads: BulkReads,
}

/// When a batch lists the directories once instead of looking each agent up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BulkReads {
    /// From [`BULK_READS_FROM`] agents on: a listing costs a call per page of users, per-agent
    /// lookups about seven calls per agent.
    #[default]
    Auto,
    /// Always list.
    Always,
    /// Never: per-agent lookups only.
    Never,
}

/// Valid agents from which `BulkReads::Auto` lists the directories.
pub const BULK_READS_FROM: usize = 20;

/// One agent's outcome, as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentResult {
    /// The normalised email.
    pub email: String,
    /// The agent's state (`done`, `rolled_back`, ...), or what the command decided
    /// (`already_done`, `skipped`, `planned`, `invalid`...).
    pub outcome: Outcome,
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
    /// A dry run: per step, what would happen (`create`, `adopt`, `conflict`, `unknown`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub plan: BTreeMap<String, String>,
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
    pub counts: BTreeMap<Outcome, usize>,
    /// Dry run: per step, how many agents would create / adopt / conflict / unknown.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub plan: BTreeMap<String, BTreeMap<String, usize>>,
    /// The agents that are not done (or carry an error); every agent goes to the sink.
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
    /// Of which retries of an earlier failed call (paced after first attempts).
    pub retries: u64,
    /// Calls answered with throttling.
    pub throttled: u64,
}

impl From<&ApiStats> for CallStats {
    fn from(s: &ApiStats) -> Self {
        CallStats {
            api: s.api.clone(),
            calls: s.first_attempts + s.retries,
            retries: s.retries,
            throttled: s.throttled,
        }
    }
}

/// Where `batch` and `migrate` report as they go: the number of agents once every row is
/// checked, then each agent's result as soon as it is known.
pub trait Sink {
    /// Every row is checked and the command is about to write: `total` agents will be
    /// reported. The sink creates its files now, not before (a rejected command touches
    /// none); an error here stops the command before any AWS write.
    fn started(&mut self, total: usize) -> Result<(), String>;
    /// A row rejected by validation (`--skip-invalid`), outcome `invalid`: reported, not
    /// counted among the agents.
    fn rejected(&mut self, _row: &AgentResult) {}
    /// One agent's result.
    fn finished(&mut self, agent: &AgentResult);
}

/// A row that failed validation: who it names (as written, when the row could be read) and
/// every problem, each `file:line: column ...: rule`.
#[derive(Debug, Clone)]
pub(super) struct Rejected {
    /// The row's email or username as written, if it could be read.
    pub who: Option<String>,
    /// Its problems.
    pub problems: Vec<String>,
}

impl From<String> for Rejected {
    fn from(problem: String) -> Self {
        Rejected {
            who: None,
            problems: vec![problem],
        }
    }
}

impl Rejected {
    /// The report's row for it.
    fn result(&self) -> AgentResult {
        AgentResult {
            email: self.who.clone().unwrap_or_default(),
            outcome: Outcome::Invalid,
            run_id: None,
            connect_user_id: None,
            identity_user_id: None,
            error: Some(self.problems.join("; ")),
            portal_url: None,
            plan: BTreeMap::new(),
        }
    }
}

/// A validated row.
#[derive(Clone)]
pub(super) struct Valid {
    /// The agent, resolved.
    pub subject: Subject,
    /// Its password (CONNECT_MANAGED), in memory only.
    pub password: Option<Secret>,
}

/// The file's rows, each validated and resolved: a valid agent or its problems, each naming
/// `file:line`, the column and the rule. Duplicates (same normalised email) name both lines.
/// Streams: only a 128-bit hash of each email seen so far is held (with its line), for the
/// duplicate check.
struct Checked<'a> {
    reader: Reader,
    file: String,
    seen: HashMap<u128, u64>,
    hashers: (std::hash::RandomState, std::hash::RandomState),
    defaults: &'a agent::Defaults,
    target: &'a Target,
    catalog: &'a target::Catalog,
}

impl<'a> Checked<'a> {
    fn open(
        path: &std::path::Path,
        defaults: &'a agent::Defaults,
        target: &'a Target,
        catalog: &'a target::Catalog,
    ) -> Result<Self, Error> {
        let reader = Reader::open(path).map_err(|errs| Error::Input(join(&errs)))?;
        Ok(Checked {
            file: reader.file_name().to_string(),
            reader,
            seen: HashMap::new(),
            hashers: Default::default(),
            defaults,
            target,
            catalog,
        })
    }
}

impl Iterator for Checked<'_> {
    type Item = Result<Valid, Rejected>;

    fn next(&mut self) -> Option<Self::Item> {
        // Every problem of the row at once: its cells that cannot be read, then the rules
        // on the rest of it (a field whose cell failed is not judged again).
        let (row, mut problems, failed) = match self.reader.next()? {
            Ok(r) => (r, Vec::new(), Vec::new()),
            Err(errs) => {
                let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
                let Some(row) = self.reader.take_partial() else {
                    return Some(Err(Rejected {
                        who: None,
                        problems: shown,
                    }));
                };
                let failed: Vec<String> = errs.into_iter().filter_map(|e| e.column).collect();
                (row, shown, failed)
            }
        };
        let who = Some(row.input.email.trim().to_string()).filter(|e| !e.is_empty());
        let reject = |problems: Vec<String>| {
            Some(Err(Rejected {
                who: who.clone(),
                problems,
            }))
        };
        let file = &self.file;
        let at = |fe: &FieldError| match row.column_for(&fe.field) {
            Some(col) => format!("{file}:{}: column {col:?}: {fe}", row.line),
            None => format!("{file}:{}: {fe}", row.line),
        };
        let spec = match agent::validate(&row.input, self.defaults, self.target.identity_mode) {
            Ok(s) => s,
            Err(e) => {
                problems.extend(
                    (e.0.iter())
                        .filter(|fe| {
                            row.column_for(&fe.field)
                                .is_none_or(|c| !failed.iter().any(|f| f == c))
                        })
                        .map(at),
                );
                return reject(problems);
            }
        };
        use std::hash::BuildHasher;
        let key = (u128::from(self.hashers.0.hash_one(&spec.email)) << 64)
            | u128::from(self.hashers.1.hash_one(&spec.email));
        if let Some(first) = self.seen.get(&key) {
            problems.push(format!(
                "{file}:{}: agent {} is already on line {first}: one row per agent (emails compare without case)",
                row.line, spec.email
            ));
            return reject(problems);
        }
        self.seen.insert(key, row.line);
        let password = row.input.password.clone();
        if spec.needs_password
            && password.is_none()
            && !failed
                .iter()
                .any(|c| Some(c.as_str()) == row.column_for("password"))
        {
            problems.push(format!(
                "{file}:{}: invalid password <redacted>: instance {} stores users in Amazon Connect (CONNECT_MANAGED): each row needs a password",
                row.line, self.target.instance_id
            ));
        }
        if !problems.is_empty() {
            return reject(problems);
        }
        match target::resolve(spec, self.catalog) {
            Ok(subject) => Some(Ok(Valid { subject, password })),
            Err(errs) => reject(errs.iter().map(at).collect()),
        }
    }
}

fn join(errs: &[InputError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A subject as the store keeps it.
fn subject_json(s: &Subject) -> Result<serde_json::Value, Error> {
    serde_json::to_value(s).map_err(|e| Error::Input(format!("agent {}: {e}", s.agent.email)))
}

fn secrets_of(v: &Valid) -> Secrets {
    let mut s = Secrets::default();
    if let Some(p) = &v.password {
        s.insert(steps::PASSWORD, p.expose().to_string());
    }
    s
}

/// Runs `batch`. `sink` receives every agent's result as it is known (the CLI streams them
/// to the report and the notices); the returned report keeps counts and the agents that
/// are not done, so memory stays bounded by the concurrency, not the file.
pub async fn batch(
    ctx: &Context,
    opts: &BatchOptions,
    settings: &RunSettings,
    sink: &mut dyn Sink,
) -> Result<BatchReport, Error> {
    let config = ctx.config()?;
    let NewRun {
        clients,
        wf,
        target,
        catalog,
    } = ctx.new_run(WorkflowSource::Onboard).await?;

    // Pass 1: every row checked, nothing kept but the problems.
    let mut rejected = Vec::new();
    let mut valid = 0usize;
    for row in Checked::open(&opts.file, &config.defaults, &target, &catalog)? {
        match row {
            Ok(_) => valid += 1,
            Err(r) => rejected.push(r),
        }
    }
    if valid == 0 && rejected.is_empty() {
        return Err(Error::Input(format!(
            "{}: no agent rows, only a header: nothing to onboard; nothing was written",
            opts.file.display()
        )));
    }
    if !rejected.is_empty() && !opts.skip_invalid {
        let problems: Vec<String> = rejected.into_iter().flat_map(|r| r.problems).collect();
        let summary = format!(
            "{} problem(s) in {}; nothing was written (fix them, or pass --skip-invalid to onboard the valid rows only)",
            problems.len(),
            opts.file.display()
        );
        return Err(Error::Invalid { problems, summary });
    }
    let rows = || -> Result<Box<dyn Iterator<Item = Valid> + '_>, Error> {
        Ok(Box::new(
            Checked::open(&opts.file, &config.defaults, &target, &catalog)?.filter_map(Result::ok),
        ))
    };
    let prepared = Prepared {
        clients: &clients,
        target: &target,
        wf,
        early: Vec::new(),
    };
    run_rows(
        ctx, prepared, valid, rejected, &rows, &opts.run, settings, sink,
    )
    .await
}

/// What the run phase of `batch` and `migrate` acts with.
pub(super) struct Prepared<'a> {
    /// The SDK clients (with the shared pacer).
    pub clients: &'a Clients,
    /// The resolved target.
    pub target: &'a Target,
    /// The workflow, checked.
    pub wf: Workflow,
    /// Agents already decided before the run phase (offboard: skipped at planning, or
    /// offboarded before), reported first.
    pub early: Vec<AgentResult>,
}

/// The valid rows, readable more than once (a file is streamed again for each pass).
pub(super) type Rows<'a> = dyn Fn() -> Result<Box<dyn Iterator<Item = Valid> + 'a>, Error> + 'a;

/// The run phase shared by `batch` and `migrate`: bulk reads, then a dry run's plan or the
/// run itself (re-run rules, chunked inserts, concurrent agents), results to `sink`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_rows(
    ctx: &Context,
    prepared: Prepared<'_>,
    valid: usize,
    rejected: Vec<Rejected>,
    rows: &Rows<'_>,
    opts: &RunOptions,
    settings: &RunSettings,
    sink: &mut dyn Sink,
) -> Result<BatchReport, Error> {
    let Prepared {
        clients,
        target,
        wf,
        early,
    } = prepared;
    sink.started(valid + early.len()).map_err(Error::Input)?;
    for r in &rejected {
        sink.rejected(&r.result());
    }
    let invalid = rejected.into_iter().flat_map(|r| r.problems).collect();
    let target = target.clone();
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
    let mut record = |report: &mut BatchReport, a: AgentResult| {
        sink.finished(&a);
        *report.counts.entry(a.outcome).or_default() += 1;
        // A dry run lists every agent with its plan; a run, those that are not done.
        if report.dry_run || a.error.is_some() || !a.outcome.finished_well() {
            report.agents.push(a);
        }
    };
    for a in early {
        record(&mut report, a);
    }
    if opts.dry_run {
        // The same lookups the real run starts with; a journal in memory, nothing written.
        let (registry, _) = registry_for(clients, &target, valid, opts.bulk_reads).await?;
        let engine = Engine::new(
            wf,
            registry,
            Arc::new(MemoryJournal::default()),
            EngineOptions::default(),
        );
        let mut plans = stream::iter(rows()?)
            .map(|v| {
                let engine = &engine;
                async move {
                    let plan = engine.plan(&v.subject, &secrets_of(&v)).await;
                    (v.subject.agent.email, plan)
                }
            })
            .buffered(concurrency);
        while let Some((email, plan)) = plans.next().await {
            for p in &plan {
                *report
                    .plan
                    .entry(p.step.clone())
                    .or_default()
                    .entry(p.decision.as_str().to_string())
                    .or_default() += 1;
            }
            let blocker = plan.iter().find(|p| !p.decision.is_clean());
            let a = AgentResult {
                email,
                outcome: if blocker.is_some() {
                    Outcome::Conflict
                } else {
                    Outcome::Planned
                },
                run_id: None,
                connect_user_id: None,
                identity_user_id: None,
                error: blocker
                    .map(|p| format!("{}: {}: {}", p.step, p.decision.as_str(), p.detail)),
                portal_url: None,
                plan: plan
                    .iter()
                    .map(|p| (p.step.clone(), p.decision.as_str().to_string()))
                    .collect(),
            };
            record(&mut report, a);
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

    // Pass 2: sort the file's agents by what their latest run says; the new ones go into
    // the new run, a chunk of rows per transaction.
    let store = ctx.open_store()?;
    let run_id = new_run_id();
    let mut run_created = false;
    let mut fresh = 0usize;
    // Agents to drive in an earlier run: unfinished ones resume (no subject); failed or
    // rolled-back ones are retried there, with this file's row when the run has the same
    // workflow, so that what the earlier run still owns stays owned by it.
    let mut resume: BTreeMap<String, Vec<(String, Drive)>> = BTreeMap::new();
    let mut passwords: HashMap<String, Secret> = HashMap::new();
    let mut chunk: Vec<(String, serde_json::Value)> = Vec::with_capacity(INSERT_CHUNK);
    let flush =
        |chunk: &mut Vec<(String, serde_json::Value)>, created: &mut bool| -> Result<(), Error> {
            if chunk.is_empty() {
                return Ok(());
            }
            if !*created {
                let run = RunRow {
                    id: run_id.clone(),
                    created_at: store::now_rfc3339(),
                    workflow_name: wf.name.clone(),
                    workflow: wf.source.clone(),
                    meta: serde_json::to_value(&target).unwrap_or_default(),
                };
                store.create_run(&run, &[], &wf.step_ids(), settings.on_failure)?;
                *created = true;
            }
            store.add_agents(&run_id, chunk, &wf.step_ids(), settings.on_failure)?;
            chunk.clear();
            Ok(())
        };
    // Whether each earlier run removes agents (offboarding) or creates them.
    let direction = Direction::of(&wf);
    let removes = direction == Direction::Offboards;
    let mut directions = Directions::default();
    for v in rows()? {
        let key = v.subject.agent.email.clone();
        let mut latest = store.latest_by_key(&key)?;
        if let Some((run, state)) = &latest {
            if directions.of(&store, run)? != direction {
                // The other direction: unfinished, it must end first; else this is new.
                if state.unfinished() {
                    let what = if removes { "onboarding" } else { "offboarding" };
                    let how = super::status::advice(*state, run, &key).unwrap_or_default();
                    let why = format!("its {what} in run {run} is {}: {how} first", state.as_str());
                    let a = AgentResult {
                        email: key.clone(),
                        outcome: Outcome::Skipped,
                        run_id: Some(run.clone()),
                        connect_user_id: None,
                        identity_user_id: None,
                        error: Some(why),
                        portal_url: None,
                        plan: BTreeMap::new(),
                    };
                    record(&mut report, a);
                    continue;
                }
                latest = None;
            }
        }
        let skip =
            |outcome: Outcome, run: String, error: Option<String>, portal: bool| AgentResult {
                email: key.clone(),
                outcome,
                run_id: Some(run),
                connect_user_id: None,
                identity_user_id: None,
                error,
                portal_url: portal.then(|| target.portal_url.clone()),
                plan: BTreeMap::new(),
            };
        match latest {
            // (`offboard` sends an agent it offboarded before only when something is left.)
            Some((run, AgentState::Done | AgentState::Released)) if !removes => {
                let a = skip(Outcome::AlreadyDone, run, None, true);
                record(&mut report, a);
                continue;
            }
            Some((run, AgentState::NeedsAttention)) => {
                let why = format!(
                    "needs attention in run {run}: {}",
                    super::status::advice(AgentState::NeedsAttention, &run, &key)
                        .unwrap_or_default()
                );
                let a = skip(Outcome::Skipped, run, Some(why), false);
                record(&mut report, a);
                continue;
            }
            Some((run, s)) if s.resumable() => resume
                .entry(run)
                .or_default()
                .push((key.clone(), Drive::Resume)),
            Some((run, AgentState::Failed | AgentState::RolledBack)) => {
                // This file's row when the run has the same workflow; else the run's own.
                let how = if store.run(&run)?.workflow_name == wf.name {
                    Drive::RetryWith(subject_json(&v.subject)?)
                } else {
                    Drive::Retry
                };
                resume.entry(run).or_default().push((key.clone(), how));
            }
            _ => {
                fresh += 1;
                chunk.push((key.clone(), subject_json(&v.subject)?));
                if chunk.len() == INSERT_CHUNK {
                    flush(&mut chunk, &mut run_created)?;
                }
            }
        }
        if let Some(p) = v.password {
            passwords.insert(key, p);
        }
    }
    flush(&mut chunk, &mut run_created)?;

    // Run: the new run's agents and the unfinished ones of earlier runs, `concurrency` at a
    // time. One agent's failure never stops another.
    let mut engines: BTreeMap<String, Engine<Subject>> = BTreeMap::new();
    let new_run: Arc<str> = Arc::from(run_id.as_str());
    let mut snapshot = None;
    if run_created {
        report.run_id = Some(run_id.clone());
        let (registry, listed) = registry_for(clients, &target, fresh, opts.bulk_reads).await?;
        snapshot = listed;
        engines.insert(
            run_id.clone(),
            Engine::new(wf, registry, store.clone(), engine_options(settings)?),
        );
    }
    let mut resumed: Vec<Work> = Vec::new();
    for (run, keys) in resume {
        let row = store.run(&run)?;
        engines.insert(
            run.clone(),
            engine_for_run(ctx, &store, &row, settings).await?,
        );
        let run: Arc<str> = Arc::from(run.as_str());
        resumed.extend(keys.into_iter().map(|(key, how)| Work {
            run: run.clone(),
            key,
            how,
        }));
    }
    // The new run's agents are read back a page at a time, not held.
    let pages = KeyPages {
        store: store.clone(),
        run: new_run,
        after: 0,
        page: Vec::new().into_iter(),
        done: !run_created,
    };
    let work = pages.chain(resumed.into_iter().map(Ok));
    let secrets = |key: &str| {
        let mut s = Secrets::default();
        if let Some(p) = passwords.get(key) {
            s.insert(steps::PASSWORD, p.expose().to_string());
        }
        s
    };
    let forget = |key: &str| {
        if let Some(s) = &snapshot {
            s.forget(key);
        }
    };
    let drivers = Drivers {
        engines: &engines,
        secrets: &secrets,
        concurrency,
        after: Some(&forget),
    };
    let stopped = drive(&drivers, work, |d| {
        let engine = &engines[&*d.work.run];
        let mut a = result_of(&store, &d.work.run, &d.work.key, &target, engine.workflow())?;
        if let Some(Err(e)) = d.result {
            a.error.get_or_insert(e.to_string());
        }
        record(&mut report, a);
        Ok(())
    })
    .await?;
    if let Some(why) = stopped {
        let unfinished: usize = (report.counts.iter())
            .filter(|(o, _)| !o.finished_well())
            .map(|(_, n)| n)
            .sum();
        return Err(Error::Stopped(format!(
            "{why}\nthe run stopped: {unfinished} agent(s) are unfinished, each resumable from its last checkpoint; once the state file can be written again, run `connect-onboard resume`"
        )));
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.calls = clients
        .connect
        .1
        .snapshot()
        .iter()
        .map(Into::into)
        .collect();
    Ok(report)
}

/// A run's agent keys, read from the store a page at a time.
struct KeyPages {
    store: Arc<Store>,
    run: Arc<str>,
    after: i64,
    page: std::vec::IntoIter<(i64, String)>,
    done: bool,
}

/// Keys read per page.
const KEY_PAGE: usize = 1_000;

impl Iterator for KeyPages {
    type Item = Result<Work, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((rowid, key)) = self.page.next() {
                self.after = rowid;
                return Some(Ok(Work {
                    run: self.run.clone(),
                    key,
                    how: Drive::Resume,
                }));
            }
            if self.done {
                return None;
            }
            match self.store.agent_keys_page(&self.run, self.after, KEY_PAGE) {
                Ok(page) => {
                    self.done = page.len() < KEY_PAGE;
                    self.page = page.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }
}

/// The actions for `agents` new agents: over bulk reads when there are enough of them (a
/// listing costs a call per page, per-agent lookups about seven calls per agent).
async fn registry_for(
    clients: &Clients,
    target: &Target,
    agents: usize,
    mode: BulkReads,
) -> Result<(Registry<Subject>, Option<Arc<Snapshot>>), Error> {
    let mut env = env_for(clients, target);
    let bulk = match mode {
        BulkReads::Auto => agents >= BULK_READS_FROM,
        BulkReads::Always => true,
        BulkReads::Never => false,
    };
    if bulk {
        let scope = Scope {
            instance_id: &target.instance_id,
            identity_store_id: &target.identity_store_id,
            group: &target.group,
            application_arn: (target.assignment == AssignmentMode::Group)
                .then_some(target.application_arn.as_str()),
        };
        let snapshot = crate::aws::retry::for_caller(
            Arc::from("bulk read"),
            Snapshot::take(
                &clients.connect,
                &clients.identity_store,
                &clients.sso_admin,
                &scope,
            ),
        )
        .await
        .map_err(|source| target::Error::Aws {
            context: "listing users for the batch's bulk reads".into(),
            source,
        })?;
        env.snapshot = Some(Arc::new(snapshot));
    }
    Ok((steps::registry(&env), env.snapshot))
}

fn result_of(
    store: &Store,
    run: &str,
    key: &str,
    target: &Target,
    wf: &Workflow,
) -> Result<AgentResult, Error> {
    let row = store.agent(run, key)?;
    let steps = store.steps(run, key)?;
    // The user ids of the steps whose actions make users, whatever the workflow names them.
    let id_of = |actions: &[&str]| {
        let ids: Vec<&str> = (wf.steps.iter())
            .filter(|s| actions.contains(&s.action.as_str()))
            .map(|s| s.id.as_str())
            .collect();
        // A step that was rolled back names a user that no longer exists.
        steps
            .iter()
            .find(|s| ids.contains(&s.step_id.as_str()))
            .filter(|s| s.state != StepState::RolledBack)
            .and_then(|s| s.outputs.get("user_id").cloned())
    };
    Ok(AgentResult {
        email: key.to_string(),
        outcome: Outcome::of_state(row.state),
        run_id: Some(run.to_string()),
        connect_user_id: id_of(&[
            steps::CONNECT_USER_ACTIONS[0],
            steps::CONNECT_USER_ACTIONS[1],
            steps::CONNECT_USER_REMOVAL,
        ]),
        identity_user_id: id_of(&[steps::IDENTITY_USER_ACTION, steps::IDENTITY_USER_REMOVAL]),
        error: row.last_error,
        portal_url: (row.state == AgentState::Done && wf.irreversible_steps().is_empty())
            .then(|| target.portal_url.clone()),
        plan: BTreeMap::new(),
    })
}
