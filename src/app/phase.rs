//! The run phase of a file of agents, shared by `batch`, `migrate` and `offboard`: what it
//! reports (`AgentResult`, `BatchReport`, the `Sink` that streams results), and how it runs
//! (`run_rows`): a dry run's plan, or the re-run rules per agent (already done, skipped, to
//! resume or retry in its own run, or new), the new agents inserted a chunk at a time, then
//! every agent driven by the run driver (`drive`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;

use crate::agent::Secret;
use crate::aws::pacer::ApiStats;
use crate::aws::Clients;
use crate::config::AssignmentMode;
use crate::engine::{
    AgentKey, AgentState, Engine, EngineOptions, Registry, RunId, Secrets, StepState, Workflow,
};
use crate::preflight::{self, Target};
use crate::steps::snapshot::{Scope, Snapshot};
use crate::steps::{self, Subject};
use crate::store::{self, MemoryJournal, RunRow, RunStore};

use super::drive::{drive, Direction, Directions, Drive, Driven, Drivers, Work};
use super::onboard::new_run_id;
use super::runs::engine_for_run;
use super::{engine_options, env_for, Context, Error, Outcome, RunSettings, StateStore};

/// Rows inserted per state-store transaction when a run is created.
const INSERT_CHUNK: usize = 1_000;

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
    /// `apply`: the agent's changes, `field: before -> after; ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<String>,
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
    pub(super) fn result(&self) -> AgentResult {
        AgentResult {
            changes: None,
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

/// What the run phase acts with: everything `batch`, `migrate` and `offboard` checked
/// and resolved before it, and how to run.
pub(super) struct Phase<'a> {
    /// The SDK clients (with the shared pacer).
    pub clients: &'a Clients,
    /// The resolved target.
    pub target: &'a Target,
    /// The workflow, checked.
    pub wf: Workflow,
    /// Agents already decided before the run phase (offboard: skipped at planning, or
    /// offboarded before), reported first.
    pub early: Vec<AgentResult>,
    /// How many valid rows `rows` yields.
    pub valid: usize,
    /// Rows that failed validation (`--skip-invalid`), reported, never run.
    pub rejected: Vec<Rejected>,
    /// The valid rows.
    pub rows: &'a Rows<'a>,
    /// How to run them.
    pub opts: &'a RunOptions,
    /// Progress, failure policy.
    pub settings: &'a RunSettings,
    /// The bulk reads already taken (`apply` plans from them); else taken here when worth it.
    pub listed: Option<Arc<Snapshot>>,
    /// `apply`: an agent done in an earlier run is planned again from what AWS shows (its
    /// row is a desired state, not a one-time job), so it goes into the new run.
    pub redo_done: bool,
}

/// The valid rows, readable more than once (a file is streamed again for each pass).
pub(super) type Rows<'a> = dyn Fn() -> Result<Box<dyn Iterator<Item = Valid> + 'a>, Error> + 'a;

/// Where the run phase's results go: the sink (as each is known) and the report (counts,
/// and the agents that are not done).
struct Recorder<'s> {
    sink: &'s mut dyn Sink,
    report: BatchReport,
}

impl Recorder<'_> {
    fn record(&mut self, a: AgentResult) {
        self.sink.finished(&a);
        *self.report.counts.entry(a.outcome).or_default() += 1;
        // A dry run lists every agent with its plan; a run, those that are not done.
        if self.report.dry_run || a.error.is_some() || !a.outcome.finished_well() {
            self.report.agents.push(a);
        }
    }
}

/// The run phase shared by `batch`, `migrate` and `offboard`: a dry run's plan, or the
/// run itself — sort the rows by the re-run rules (inserting the new agents in chunks),
/// then drive them with the run driver; results to `sink`.
pub(super) async fn run_rows(
    ctx: &Context,
    mut phase: Phase<'_>,
    sink: &mut dyn Sink,
) -> Result<BatchReport, Error> {
    sink.started(phase.valid + phase.early.len())
        .map_err(Error::Input)?;
    for r in &phase.rejected {
        sink.rejected(&r.result());
    }
    let started = Instant::now();
    let report = BatchReport {
        run_id: None,
        dry_run: phase.opts.dry_run,
        invalid: (phase.rejected.iter())
            .flat_map(|r| r.problems.iter().cloned())
            .collect(),
        counts: BTreeMap::new(),
        plan: BTreeMap::new(),
        agents: Vec::new(),
        calls: Vec::new(),
        elapsed_ms: 0,
    };
    let mut out = Recorder { sink, report };
    for a in std::mem::take(&mut phase.early) {
        out.record(a);
    }
    if phase.opts.dry_run {
        plan_rows(&phase, &mut out).await?;
    } else {
        let sorted = sort_rows(ctx, &phase, &mut out).await?;
        drive_rows(ctx, &phase, sorted, &mut out).await?;
    }
    let mut report = out.report;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.calls = (phase.clients.connect.1.snapshot().iter())
        .map(Into::into)
        .collect();
    Ok(report)
}

/// A dry run: every row planned with the lookups the real run starts with, over a journal
/// in memory; nothing written.
async fn plan_rows(phase: &Phase<'_>, out: &mut Recorder<'_>) -> Result<(), Error> {
    let (registry, _) = registry_for(phase, phase.valid).await?;
    let engine = Engine::new(
        phase.wf.clone(),
        registry,
        Arc::new(MemoryJournal::default()),
        EngineOptions::default(),
    );
    let mut plans = stream::iter((phase.rows)()?)
        .map(|v| {
            let engine = &engine;
            async move {
                let plan = engine.plan(&v.subject, &secrets_of(&v)).await;
                (v.subject.agent.email, plan)
            }
        })
        .buffered(phase.opts.concurrency.max(1));
    while let Some((email, plan)) = plans.next().await {
        for p in &plan {
            *(out.report.plan.entry(p.step.clone()).or_default())
                .entry(p.decision.as_str().to_string())
                .or_default() += 1;
        }
        let blocker = plan.iter().find(|p| !p.decision.is_clean());
        out.record(AgentResult {
            changes: None,
            email,
            outcome: if blocker.is_some() {
                Outcome::Conflict
            } else {
                Outcome::Planned
            },
            run_id: None,
            connect_user_id: None,
            identity_user_id: None,
            error: blocker.map(|p| format!("{}: {}: {}", p.step, p.decision.as_str(), p.detail)),
            portal_url: None,
            plan: (plan.iter())
                .map(|p| (p.step.clone(), p.decision.as_str().to_string()))
                .collect(),
        });
    }
    Ok(())
}

/// The rows sorted by what their latest run says.
struct Sorted {
    store: StateStore,
    /// The new run's id, if it got agents.
    new_run: Option<RunId>,
    /// Agents in the new run.
    fresh: usize,
    /// Agents to drive in an earlier run, by run: unfinished ones resume; failed or
    /// rolled-back ones are retried there, so that what that run still owns stays its own.
    earlier: BTreeMap<RunId, Vec<(AgentKey, Drive)>>,
    /// CONNECT_MANAGED passwords, in memory only.
    passwords: HashMap<String, Secret>,
}

/// Pass 2: each row by what its latest run says (already done, skipped, to resume or retry
/// in its run, or new); the new ones go into the new run, a chunk of rows per transaction.
async fn sort_rows(
    ctx: &Context,
    phase: &Phase<'_>,
    out: &mut Recorder<'_>,
) -> Result<Sorted, Error> {
    let store = ctx.open_store().await?;
    let mut s = Sorting {
        sorted: Sorted {
            store: store.clone(),
            new_run: None,
            fresh: 0,
            earlier: BTreeMap::new(),
            passwords: HashMap::new(),
        },
        chunk: Vec::with_capacity(INSERT_CHUNK),
        run_id: RunId::from(new_run_id()),
        direction: Direction::of(&phase.wf),
        directions: Directions::default(),
    };
    // A shared store lists the keys it has runs of when that costs fewer requests than a
    // lookup per row; only the rows it lists are then looked up.
    let known = store.known_keys(phase.valid / ROWS_PER_LISTING).await?;
    let mut rows = (phase.rows)()?;
    loop {
        // The next rows' latest runs, asked of the store together (a shared store answers
        // each over the network); the rules are then applied row by row, in order.
        let ahead: Vec<Valid> = rows.by_ref().take(LOOKUP_AHEAD).collect();
        if ahead.is_empty() {
            break;
        }
        let latest = latest_runs(&*store, &ahead, known.as_ref()).await?;
        for (v, latest) in ahead.into_iter().zip(latest) {
            s.sort(phase, out, v, latest).await?;
        }
    }
    let Sorting {
        mut sorted,
        mut chunk,
        run_id,
        ..
    } = s;
    flush(&*store, phase, &run_id, &mut chunk, &mut sorted.new_run).await?;
    Ok(sorted)
}

/// Pass 2's state: the rows sorted so far, and the new run's agents not inserted yet.
struct Sorting {
    sorted: Sorted,
    chunk: Vec<(AgentKey, serde_json::Value)>,
    run_id: RunId,
    direction: Direction,
    directions: Directions,
}

impl Sorting {
    /// One row, by what its latest run (`latest`) says.
    async fn sort(
        &mut self,
        phase: &Phase<'_>,
        out: &mut Recorder<'_>,
        v: Valid,
        latest: Option<(RunId, AgentState)>,
    ) -> Result<(), Error> {
        let store = self.sorted.store.clone();
        let key = AgentKey::from(v.subject.agent.email.as_str());
        let rule = rerun_rule(
            &*store,
            &mut self.directions,
            self.direction,
            &key,
            latest,
            phase.target,
        )
        .await?;
        let rule = match rule {
            Rerun::Report(a) if phase.redo_done && a.outcome == Outcome::AlreadyDone => Rerun::New,
            Rerun::InRun(_, Drive::Retry) if phase.redo_done => Rerun::New,
            other => other,
        };
        let earlier = |run: RunId, how: Drive, sorted: &mut Sorted| {
            sorted
                .earlier
                .entry(run)
                .or_default()
                .push((key.clone(), how));
        };
        match rule {
            Rerun::Report(a) => {
                out.record(a);
                return Ok(());
            }
            Rerun::InRun(run, Drive::Resume) => earlier(run, Drive::Resume, &mut self.sorted),
            Rerun::InRun(run, _) => {
                // This file's row when the run has the same workflow; else the run's own.
                let how = if store.run(&run).await?.workflow_name == phase.wf.name {
                    Drive::RetryWith(subject_json(&v.subject)?)
                } else {
                    Drive::Retry
                };
                earlier(run, how, &mut self.sorted);
            }
            Rerun::New => {
                self.sorted.fresh += 1;
                self.chunk.push((key.clone(), subject_json(&v.subject)?));
                if self.chunk.len() == INSERT_CHUNK {
                    let (chunk, new_run) = (&mut self.chunk, &mut self.sorted.new_run);
                    flush(&*store, phase, &self.run_id, chunk, new_run).await?;
                }
            }
        }
        if let Some(p) = v.password {
            self.sorted.passwords.insert(key.into_string(), p);
        }
        Ok(())
    }
}

/// Inserts a chunk of new agents in one transaction, creating the run with the first.
async fn flush(
    store: &dyn RunStore,
    phase: &Phase<'_>,
    run_id: &RunId,
    chunk: &mut Vec<(AgentKey, serde_json::Value)>,
    new_run: &mut Option<RunId>,
) -> Result<(), Error> {
    if chunk.is_empty() {
        return Ok(());
    }
    let (wf, on_failure) = (&phase.wf, phase.settings.on_failure);
    if new_run.is_none() {
        let run = RunRow {
            id: run_id.clone(),
            created_at: store::now_rfc3339(),
            workflow_name: wf.name.clone(),
            workflow: wf.source.clone(),
            meta: serde_json::to_value(phase.target).unwrap_or_default(),
        };
        store
            .create_run(&run, &[], &wf.step_ids(), on_failure)
            .await?;
        *new_run = Some(run_id.clone());
    }
    store
        .add_agents(run_id, chunk, &wf.step_ids(), on_failure)
        .await?;
    chunk.clear();
    Ok(())
}

/// Rows whose latest runs are asked of the store at once.
const LOOKUP_AHEAD: usize = 64;
/// Of those, asked concurrently.
const LOOKUPS_IN_FLIGHT: usize = 16;

/// The store's key listing is asked for when it takes at most one request per this many
/// rows (a listing page holds thousands of keys; a lookup answers one row).
const ROWS_PER_LISTING: usize = 50;

/// Each row's latest run (`RunStore::latest_by_key`), in the rows' order, up to
/// [`LOOKUPS_IN_FLIGHT`] at a time; none asked for a key missing from `known` (the store's
/// listing of the keys that have runs, when it gave one).
async fn latest_runs(
    store: &dyn RunStore,
    rows: &[Valid],
    known: Option<&HashSet<AgentKey>>,
) -> Result<Vec<Option<(RunId, AgentState)>>, Error> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(
        rows.iter()
            .map(|v| AgentKey::from(v.subject.agent.email.as_str())),
    )
    .map(|key| async move {
        match known {
            Some(known) if !known.contains(&key) => Ok(None),
            _ => store.latest_by_key(&key).await,
        }
    })
    .buffered(LOOKUPS_IN_FLIGHT)
    .try_collect()
    .await
    .map_err(Error::from)
}

/// What an agent's latest run says about a new pass at it.
enum Rerun {
    /// Decided without driving it: reported as it is.
    Report(AgentResult),
    /// Drive it in that earlier run (resume, or retry).
    InRun(RunId, Drive),
    /// A new agent of this run.
    New,
}

/// The re-run rules for one agent of a run going `direction`.
async fn rerun_rule(
    store: &dyn RunStore,
    directions: &mut Directions,
    direction: Direction,
    key: &AgentKey,
    latest: Option<(RunId, AgentState)>,
    target: &Target,
) -> Result<Rerun, Error> {
    let Some((run, state)) = latest else {
        return Ok(Rerun::New);
    };
    let skip = |outcome: Outcome, error: Option<String>, portal: bool| AgentResult {
        changes: None,
        email: key.to_string(),
        outcome,
        run_id: Some(run.to_string()),
        connect_user_id: None,
        identity_user_id: None,
        error,
        portal_url: portal.then(|| target.portal_url.clone()),
        plan: BTreeMap::new(),
    };
    if directions.of(store, &run).await? != direction {
        // The other direction: unfinished, it must end first; else this is new.
        if !state.unfinished() {
            return Ok(Rerun::New);
        }
        let what = match direction {
            Direction::Offboards => "onboarding",
            Direction::Onboards => "offboarding",
        };
        let how = super::status::advice(state, &run, key).unwrap_or_default();
        let why = format!("its {what} in run {run} is {}: {how} first", state.as_str());
        return Ok(Rerun::Report(skip(Outcome::Skipped, Some(why), false)));
    }
    Ok(match state {
        // (`offboard` sends an agent it offboarded before only when something is left.)
        AgentState::Done | AgentState::Released if direction == Direction::Onboards => {
            Rerun::Report(skip(Outcome::AlreadyDone, None, true))
        }
        AgentState::NeedsAttention => {
            let why = format!(
                "needs attention in run {run}: {}",
                super::status::advice(AgentState::NeedsAttention, &run, key).unwrap_or_default()
            );
            Rerun::Report(skip(Outcome::Skipped, Some(why), false))
        }
        s if s.resumable() => Rerun::InRun(run, Drive::Resume),
        AgentState::Failed | AgentState::RolledBack => Rerun::InRun(run, Drive::Retry),
        _ => Rerun::New,
    })
}

/// Drives the new run's agents and the earlier runs' ones, `concurrency` at a time.
async fn drive_rows(
    ctx: &Context,
    phase: &Phase<'_>,
    sorted: Sorted,
    out: &mut Recorder<'_>,
) -> Result<(), Error> {
    let Sorted {
        store,
        new_run,
        fresh,
        earlier,
        passwords,
    } = sorted;
    let mut engines: BTreeMap<RunId, Engine<Subject>> = BTreeMap::new();
    let mut snapshot = None;
    if let Some(run) = &new_run {
        out.report.run_id = Some(run.to_string());
        let (registry, listed) = registry_for(phase, fresh).await?;
        snapshot = listed;
        let engine = Engine::new(
            phase.wf.clone(),
            registry,
            store.clone(),
            engine_options(phase.settings)?,
        );
        engines.insert(run.clone(), engine);
    }
    let mut resumed: Vec<Work> = Vec::new();
    for (run, keys) in earlier {
        let row = store.run(&run).await?;
        let engine = engine_for_run(ctx, &store, &row, phase.settings).await?;
        engines.insert(run.clone(), engine);
        resumed.extend(keys.into_iter().map(|(key, how)| Work {
            run: run.clone(),
            key,
            how,
        }));
    }
    // The new run's agents are read back a page at a time, not held.
    let pages = key_pages(store.clone(), new_run);
    let work = pages.chain(stream::iter(resumed.into_iter().map(Ok)));
    let secrets = |key: &AgentKey| {
        let mut s = Secrets::default();
        if let Some(p) = passwords.get(key.as_str()) {
            s.insert(steps::PASSWORD, p.expose().to_string());
        }
        s
    };
    let forget = |key: &AgentKey| {
        if let Some(s) = &snapshot {
            s.forget(key);
        }
    };
    let drivers = Drivers {
        engines: &engines,
        secrets: &secrets,
        concurrency: phase.opts.concurrency,
        after: Some(&forget),
        stop: phase.settings.stop.as_deref(),
    };
    let stopped = drive(&drivers, work, async |d: Driven| {
        let wf = engines[&d.work.run].workflow();
        let record = match &d.result {
            Some(Ok(o)) => o.record.as_ref(),
            _ => None,
        };
        let mut a = result_of(&*store, &d.work, phase.target, wf, record).await?;
        if let Some(Err(e)) = d.result {
            a.error.get_or_insert(e.to_string());
        }
        out.record(a);
        Ok(())
    })
    .await?;
    if let Some(why) = stopped {
        let unfinished: usize = (out.report.counts.iter())
            .filter(|(o, _)| !o.finished_well())
            .map(|(_, n)| n)
            .sum();
        return Err(Error::Stopped(format!(
            "{why}\nthe run stopped: {unfinished} agent(s) are unfinished, each resumable from its last checkpoint; once the state file can be written again, run `connect-onboard resume`"
        )));
    }
    Ok(())
}

/// Keys read per page.
const KEY_PAGE: usize = 1_000;

/// A run's agents to drive, its keys read from the store a page at a time (not held).
fn key_pages(
    store: StateStore,
    run: Option<RunId>,
) -> impl Stream<Item = Result<Work, Error>> + use<> {
    struct Cursor {
        store: StateStore,
        run: RunId,
        after: i64,
        done: bool,
    }
    let cursor = Cursor {
        store,
        done: run.is_none(),
        run: run.unwrap_or_else(|| RunId::from("")),
        after: 0,
    };
    stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        let page = match c.store.agent_keys_page(&c.run, c.after, KEY_PAGE).await {
            Ok(page) => page,
            Err(e) => {
                c.done = true;
                return Some((vec![Err(Error::from(e))], c));
            }
        };
        c.done = page.len() < KEY_PAGE;
        c.after = page.last().map_or(c.after, |(pos, _)| *pos);
        let run = c.run.clone();
        let work = (page.into_iter())
            .map(|(_, key)| {
                Ok(Work {
                    run: run.clone(),
                    key,
                    how: Drive::Resume,
                })
            })
            .collect();
        Some((work, c))
    })
    .flat_map(stream::iter)
}

/// The actions for `agents` new agents: over bulk reads when there are enough of them (a
/// listing costs a call per page, per-agent lookups about seven calls per agent).
async fn registry_for(
    phase: &Phase<'_>,
    agents: usize,
) -> Result<(Registry<Subject>, Option<Arc<Snapshot>>), Error> {
    let (clients, target) = (phase.clients, phase.target);
    let mut env = env_for(clients, target);
    if let Some(listed) = &phase.listed {
        env.snapshot = Some(listed.clone());
        return Ok((steps::registry(&env), env.snapshot));
    }
    let bulk = match phase.opts.bulk_reads {
        BulkReads::Auto => agents >= BULK_READS_FROM,
        BulkReads::Always => true,
        BulkReads::Never => false,
    };
    if bulk {
        let listing = Listing {
            details: false,
            assignment: true,
            what: "listing users for the batch's bulk reads",
        };
        env.snapshot = Some(Arc::new(bulk_read(clients, target, listing).await?));
    }
    Ok((steps::registry(&env), env.snapshot))
}

/// What a bulk read lists besides the users, and what it is for (errors name it).
pub(super) struct Listing {
    /// Connect's users with every field (SearchUsers, for `apply`), not only their ids.
    pub details: bool,
    /// The group's application assignment (group mode).
    pub assignment: bool,
    /// What the listing is for.
    pub what: &'static str,
}

/// One listing of both directories of `target`: the one way a command takes bulk reads.
pub(super) async fn bulk_read(
    clients: &Clients,
    target: &Target,
    listing: Listing,
) -> Result<Snapshot, Error> {
    bulk_read_of(clients, target, listing, None).await
}

/// [`bulk_read`] of a few agents only: their Connect users by exact username and the given
/// Identity Store users (`Snapshot::take_for`).
pub(super) async fn bulk_read_for(
    clients: &Clients,
    target: &Target,
    listing: Listing,
    usernames: &[String],
    users: Vec<crate::aws::IdentityUser>,
    known: Option<&HashMap<String, String>>,
) -> Result<Snapshot, Error> {
    bulk_read_of(clients, target, listing, Some((usernames, users, known))).await
}

/// A few agents' reads: their usernames, their Identity Store users, the Connect usernames
/// known from the last full read.
type Few<'a> = (
    &'a [String],
    Vec<crate::aws::IdentityUser>,
    Option<&'a HashMap<String, String>>,
);

async fn bulk_read_of(
    clients: &Clients,
    target: &Target,
    listing: Listing,
    few: Option<Few<'_>>,
) -> Result<Snapshot, Error> {
    let scope = Scope {
        instance_id: &target.instance_id,
        identity_store_id: &target.identity_store_id,
        group: &target.group,
        application_arn: (listing.assignment && target.assignment == AssignmentMode::Group)
            .then_some(target.application_arn.as_str()),
        details: listing.details,
    };
    let (connect, ids, sso) = (
        &clients.connect,
        &clients.identity_store,
        &clients.sso_admin,
    );
    let read = async {
        match few {
            None => Snapshot::take(connect, ids, sso, &scope).await,
            Some((usernames, users, known)) => {
                Snapshot::take_for(connect, ids, sso, &scope, usernames, users, known).await
            }
        }
    };
    let snapshot = crate::aws::retry::for_caller(Arc::from("bulk read"), read)
        .await
        .map_err(|source| preflight::Error::Aws {
            context: listing.what.into(),
            source,
        })?;
    Ok(snapshot)
}

/// An agent's result: from what its pass wrote (`record`), else read from the store.
async fn result_of(
    store: &dyn RunStore,
    work: &super::drive::Work,
    target: &Target,
    wf: &Workflow,
    record: Option<&crate::engine::AgentRecord>,
) -> Result<AgentResult, Error> {
    let (run, key) = (&work.run, &work.key);
    let (state, last_error, steps): (
        AgentState,
        Option<String>,
        Vec<(crate::engine::StepId, StepState, crate::engine::Outputs)>,
    ) = match record {
        Some(r) => (r.state, r.last_error.clone(), r.steps.clone()),
        None => {
            let row = store.agent(run, key).await?;
            let steps = store.steps(run, key).await?;
            let steps = (steps.into_iter())
                .map(|s| (s.step_id, s.state, s.outputs))
                .collect();
            (row.state, row.last_error, steps)
        }
    };
    // The user ids of the steps whose actions make users, whatever the workflow names them.
    let id_of = |actions: &[&str]| {
        let ids: Vec<&str> = (wf.steps.iter())
            .filter(|s| actions.contains(&s.action.as_str()))
            .map(|s| s.id.as_str())
            .collect();
        // A step that was rolled back names a user that no longer exists.
        steps
            .iter()
            .find(|(id, _, _)| ids.contains(&id.as_str()))
            .filter(|(_, state, _)| *state != StepState::RolledBack)
            .and_then(|(_, _, outputs)| outputs.get("user_id").cloned())
    };
    Ok(AgentResult {
        changes: None,
        email: key.to_string(),
        outcome: Outcome::of_state(state),
        run_id: Some(run.to_string()),
        connect_user_id: id_of(&[
            steps::CONNECT_USER_ACTIONS[0],
            steps::CONNECT_USER_ACTIONS[1],
            steps::CONNECT_USER_REMOVAL,
        ]),
        identity_user_id: id_of(&[
            steps::IDENTITY_USER_ACTION,
            steps::IDENTITY_USER_ADOPTION,
            steps::IDENTITY_USER_REMOVAL,
        ]),
        error: last_error,
        portal_url: (state == AgentState::Done && wf.irreversible_steps().is_empty())
            .then(|| target.portal_url.clone()),
        plan: BTreeMap::new(),
    })
}
