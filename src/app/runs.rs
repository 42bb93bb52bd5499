//! Operations on stored runs: `resume`, `rollback`, `release`. Each rebuilds the engine
//! from the run's own snapshot (workflow text and target), not from today's config.

use crate::engine::journal::EventKind;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::agent;
use crate::agent::reader::{Reader, Row};
use crate::aws::Clients;
use crate::engine::{
    self, AgentKey, AgentRow, AgentState, Engine, RunId, Secrets, StepId, StepRow, StepState,
    Workflow,
};
use crate::preflight;
use crate::preflight::Target;
use crate::steps::{self, Subject};
use crate::store::{RunRow, RunStore};

use super::drive::{drive, Drive, Driven, Drivers, Work};
use super::status::{advice, run_status, RunStatus};
use super::{
    engine_options, env_for, Context, Error, Regions, RunSettings, StateStore, PASSWORD_ENV,
};
use futures::StreamExt;

/// Rebuilds the engine of a stored run: its own workflow snapshot and target.
pub(super) async fn engine_for_run(
    ctx: &Context,
    store: &StateStore,
    run: &RunRow,
    settings: &RunSettings,
) -> Result<Engine<Subject>, Error> {
    Ok(run_parts(ctx, store, run, settings).await?.0)
}

/// A stored run's target, as recorded at its start.
fn target_of(run: &RunRow) -> Result<Target, Error> {
    serde_json::from_value(run.meta.clone())
        .map_err(|e| Error::Input(format!("run {}: stored target does not parse: {e}", run.id)))
}

/// The engine of a stored run, and the clients it acts through.
async fn run_parts(
    ctx: &Context,
    store: &StateStore,
    run: &RunRow,
    settings: &RunSettings,
) -> Result<(Engine<Subject>, Clients, Target), Error> {
    let target = target_of(run)?;
    // The run's own regions (recorded at onboard), not today's config.
    let mut regions = Regions {
        connect: target.connect_region.clone(),
        identity_center: target.identity_center_region.clone(),
        identity_center_profile: target.identity_center_profile.clone(),
    };
    let clients = ctx.clients(&mut regions).await?;
    let registry = steps::registry(&env_for(&clients, &target));
    let wf = Workflow::parse(&run.workflow, &format!("of run {}", run.id), &registry)
        .map_err(|e| Error::Input(e.to_string()))?;
    let engine = Engine::new(wf, registry, store.clone(), engine_options(settings)?);
    Ok((engine, clients, target))
}

/// An agent's subject as its run stored it.
fn stored_subject(a: &crate::store::AgentRow) -> Result<Subject, Error> {
    serde_json::from_value(a.subject.clone()).map_err(|e| {
        Error::Input(format!(
            "agent {}: stored subject does not parse: {e}",
            a.agent_key
        ))
    })
}

/// Whether the secrets hold what the agent's subject needs (its password, checked as at
/// onboard, when its instance stores users in Connect).
fn secrets_for(subject: &Subject, base: &Secrets) -> Result<(), String> {
    if !subject.agent.needs_password {
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
pub struct RunsReport {
    /// Status of every run touched.
    pub runs: Vec<RunStatus>,
    /// Agents skipped, with the reason.
    pub skipped: Vec<String>,
    /// Agents driven (0: there was nothing to resume or retry).
    pub driven: usize,
}

impl RunsReport {
    /// One agent driven: an agent held by another process is skipped with the holder named;
    /// any other engine failure stops the operation.
    fn settle(&mut self, result: Result<engine::AgentOutcome, engine::Error>) -> Result<(), Error> {
        match result {
            Ok(_) => Ok(()),
            Err(engine::Error::Journal(e @ engine::JournalError::Leased { .. })) => {
                self.skipped.push(e.to_string());
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drives `todo` of run `run` with its engine, `concurrency` at a time (the run
    /// driver): an agent held by another process is skipped with the holder named; any
    /// other engine failure (a failure of the state file among them) stops the operation.
    async fn drive(
        &mut self,
        run: &RunId,
        engine: Engine<Subject>,
        todo: Vec<(AgentKey, Drive)>,
        secrets: &Secrets,
        settings: &RunSettings,
    ) -> Result<(), Error> {
        self.driven += todo.len();
        let engines = BTreeMap::from([(run.clone(), engine)]);
        let secrets = |_: &AgentKey| secrets.clone();
        let drivers = Drivers {
            engines: &engines,
            secrets: &secrets,
            concurrency: settings.concurrency,
            after: None,
            stop: settings.stop.as_deref(),
        };
        let work = futures::stream::iter(todo).map(|(key, how): (AgentKey, Drive)| {
            Ok(Work {
                run: run.clone(),
                key,
                how,
            })
        });
        // A failure of the state file reaches `settle` as the agent's error and stops the
        // operation there, so the driver's own stop report has nothing left to say.
        drive(&drivers, work, async |d: Driven| match d.result {
            None => Ok(()),
            Some(result) => self.settle(result),
        })
        .await?;
        Ok(())
    }
}

/// Finishes every interrupted or unfinished agent of one run, or of all runs.
pub async fn resume(
    ctx: &Context,
    run_id: Option<&str>,
    secrets: Secrets,
    settings: &RunSettings,
) -> Result<RunsReport, Error> {
    let store = ctx.existing_store().await?;
    let runs = match run_id {
        Some(id) => vec![store.run(&RunId::from(id)).await?],
        None => store.runs().await?,
    };
    let mut report = RunsReport {
        runs: Vec::new(),
        skipped: Vec::new(),
        driven: 0,
    };
    for run in runs {
        let agents = store.agents(&run.id).await?;
        let attention: Vec<_> = agents
            .iter()
            .filter(|a| a.state == AgentState::NeedsAttention)
            .collect();
        for a in &attention {
            report.skipped.push(format!(
                "{} (run {}): needs attention after a failed compensation: {}",
                a.agent_key,
                run.id,
                advice(a.state, &run.id, &a.agent_key).unwrap_or_default()
            ));
        }
        if !agents.iter().any(|a| a.state.resumable()) {
            if run_id.is_some() || !attention.is_empty() {
                report.runs.push(run_status(&*store, &run.id).await?);
            }
            continue;
        }
        let engine = engine_for_run(ctx, &store, &run, settings).await?;
        let mut todo = Vec::new();
        for a in agents {
            if !a.state.resumable() {
                continue;
            }
            // Only an agent going forward may still send the password (a rollback does not).
            let password_steps: Vec<&str> = engine
                .workflow()
                .steps
                .iter()
                .filter(|s| s.action == steps::PASSWORD_ACTION)
                .map(|s| s.id.as_str())
                .collect();
            let needs_connect = a.state != AgentState::RollingBack
                && store.steps(&run.id, &a.agent_key).await?.iter().any(|s| {
                    password_steps.contains(&s.step_id.as_str())
                        && !matches!(s.state, StepState::Done | StepState::Adopted)
                });
            if needs_connect {
                if let Err(why) = secrets_for(&stored_subject(&a)?, &secrets) {
                    report
                        .skipped
                        .push(format!("{} (run {}): {why}", a.agent_key, run.id));
                    continue;
                }
            }
            todo.push((a.agent_key, Drive::Resume));
        }
        report
            .drive(&run.id, engine, todo, &secrets, settings)
            .await?;
        report.runs.push(run_status(&*store, &run.id).await?);
    }
    Ok(report)
}

/// One agent of a rollback's plan: what it would remove.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRollback {
    /// The agent.
    pub email: String,
    /// Its state now (`done`: working users would be deleted).
    pub state: AgentState,
    /// Per step the run owns, last first: the recorded ids of what would be deleted.
    pub remove: Vec<PlannedRemoval>,
    /// Later runs of the agent that adopted some of it: they will be marked `interrupted`.
    pub adopted_by: Vec<String>,
}

/// One resource a rollback would delete.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRemoval {
    /// The step that created it.
    pub step: String,
    /// Its recorded ids.
    pub resources: std::collections::BTreeMap<String, String>,
    /// An `apply` update: its field gets back the value it replaced (nothing is deleted).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restores: bool,
}

/// What `rollback` did: its plan (`--dry-run`), or the rollback.
#[derive(Debug)]
pub enum RollbackReport {
    /// `--dry-run`: what would be removed; nothing was touched.
    Planned {
        /// The run.
        run_id: String,
        /// Per agent in scope.
        agents: Vec<PlannedRollback>,
    },
    /// Rolled back.
    Done(RunsReport),
}

/// Asked before a rollback that would delete a finished (`done`) agent's working users:
/// `Ok` goes on; an error stops it with nothing touched.
pub type ConfirmRollback<'a> = dyn FnMut(&str, &[PlannedRollback]) -> Result<(), Error> + 'a;

/// Compensates the owned steps of a run, or of one agent in it. Rolling back an agent that
/// is `done` deletes users that work, as offboarding does: `confirm` sees the plan first
/// (every agent in scope) and may refuse; a failed, interrupted or needs-attention agent
/// is rolled back without asking. `dry_run` returns the plan only. Later runs that adopted
/// what the rollback deleted are marked `interrupted` (their adopted steps pending again),
/// so that `status` stops showing them `done` and `resume` onboards them again.
pub async fn rollback(
    ctx: &Context,
    run_id: &str,
    email: Option<&str>,
    secrets: Secrets,
    settings: &RunSettings,
    dry_run: bool,
    confirm: &mut ConfirmRollback<'_>,
) -> Result<RollbackReport, Error> {
    let run_id = &RunId::from(run_id);
    let store = ctx.existing_store().await?;
    let run = store.run(run_id).await?;
    let engine = engine_for_run(ctx, &store, &run, settings).await?;
    let mut report = RunsReport {
        runs: Vec::new(),
        skipped: Vec::new(),
        driven: 0,
    };
    let email = email.map(|e| e.trim().to_lowercase());
    if let Some(e) = &email {
        known_agent(&*store, run_id, e).await?;
    }
    let agents: Vec<_> = (store.agents(run_id).await?.into_iter())
        .filter(|a| email.as_ref().is_none_or(|e| e == &a.agent_key))
        .collect();
    let plan = rollback_plan(&engine, &*store, run_id, &agents).await?;
    if dry_run {
        return Ok(RollbackReport::Planned {
            run_id: run_id.to_string(),
            agents: plan,
        });
    }
    let destructive = plan
        .iter()
        .any(|p| p.state == AgentState::Done && !p.remove.is_empty());
    if destructive {
        confirm(run_id, &plan)?;
    }
    for a in agents {
        if a.state == AgentState::Released {
            report.skipped.push(format!(
                "{}: released; its resources are no longer managed",
                a.agent_key
            ));
            continue;
        }
        let before = store.steps(run_id, &a.agent_key).await?;
        let result = engine.rollback_agent(run_id, &a.agent_key, &secrets).await;
        report.settle(result)?;
        // What this rollback deleted: steps that held a resource and are rolled back now.
        let after = store.steps(run_id, &a.agent_key).await?;
        let deleted = deleted_steps(&before, &after);
        if !deleted.is_empty() {
            mark_adopters(&*store, run_id, &a.agent_key, &deleted, &mut report).await?;
        }
    }
    report.runs.push(run_status(&*store, run_id).await?);
    Ok(RollbackReport::Done(report))
}

/// What rolling back `agents` would delete, per agent (released agents left out), and the
/// later runs that adopted it.
async fn rollback_plan(
    engine: &Engine<Subject>,
    store: &dyn RunStore,
    run_id: &RunId,
    agents: &[AgentRow],
) -> Result<Vec<PlannedRollback>, Error> {
    let mut plan = Vec::new();
    for a in agents {
        if a.state == AgentState::Released {
            continue;
        }
        let removed = engine.rollback_plan(run_id, &a.agent_key).await?;
        let adopted_by = (adopters(store, run_id, &a.agent_key, &removed)
            .await?
            .into_iter())
        .map(|(run, _)| run.into_string())
        .collect();
        // An `apply` update gets back the value it replaced: nothing is deleted.
        let restores = |step: &str| {
            (engine.workflow().steps.iter())
                .find(|s| s.id == step)
                .is_some_and(|s| {
                    crate::steps::Field::ALL
                        .iter()
                        .any(|f| f.action() == s.action)
                })
        };
        let remove = (removed.into_iter())
            .map(|(step, resources)| PlannedRemoval {
                restores: restores(&step),
                step,
                resources,
            })
            .collect();
        plan.push(PlannedRollback {
            email: a.agent_key.to_string(),
            state: a.state,
            remove,
            adopted_by,
        });
    }
    Ok(plan)
}

/// What a rollback deleted: the steps that held a resource (`before`) and are rolled back
/// now (`after`), with the resource's ids.
fn deleted_steps(before: &[StepRow], after: &[StepRow]) -> Vec<(String, BTreeMap<String, String>)> {
    (after.iter())
        .filter(|s| s.state == StepState::RolledBack)
        .filter_map(|s| {
            let b = before.iter().find(|b| b.step_id == s.step_id)?;
            (b.state != StepState::RolledBack && !b.outputs.is_empty())
                .then(|| (s.step_id.to_string(), b.outputs.clone()))
        })
        .collect()
}

/// The other runs of `agent` with a step `adopted` with the same ids as one of `removed`,
/// and those steps.
async fn adopters(
    store: &dyn RunStore,
    run: &RunId,
    agent: &AgentKey,
    removed: &[(String, std::collections::BTreeMap<String, String>)],
) -> Result<Vec<(RunId, Vec<StepId>)>, Error> {
    let mut out = Vec::new();
    if removed.is_empty() {
        return Ok(out);
    }
    for other in store.runs_of_agent(agent).await? {
        if &other == run {
            continue;
        }
        let gone: Vec<StepId> = (store.steps(&other, agent).await?.into_iter())
            .filter(|s| s.state == StepState::Adopted)
            .filter(|s| {
                removed
                    .iter()
                    .any(|(id, o)| *id == s.step_id && *o == s.outputs)
            })
            .map(|s| s.step_id)
            .collect();
        if !gone.is_empty() {
            out.push((other, gone));
        }
    }
    Ok(out)
}

/// The other runs of `agent` that adopted a resource `run`'s rollback just deleted: each
/// such step is pending again and the agent `interrupted`, naming why, so `status` no
/// longer shows it `done / adopted` and `resume` (or the batch again) looks it up anew.
async fn mark_adopters(
    store: &dyn RunStore,
    run: &RunId,
    agent: &AgentKey,
    deleted: &[(String, std::collections::BTreeMap<String, String>)],
    report: &mut RunsReport,
) -> Result<(), Error> {
    for (other, gone) in adopters(store, run, agent, deleted).await? {
        let token = uuid::Uuid::new_v4().to_string();
        if let Err(e) = store.acquire_lease(&other, agent, &token, 60_000).await {
            report.skipped.push(format!(
                "{agent} (run {other}) adopted what this rollback deleted ({}) but could not be marked: {e}",
                gone.join(", ")
            ));
            continue;
        }
        let why = format!(
            "{}: adopted, then deleted by `rollback {run}`; {} onboards it again",
            gone.join(", "),
            advice(AgentState::Interrupted, &other, agent).unwrap_or_default()
        );
        // Every step and the agent's state in one change, then the lease goes.
        let mut changes: Vec<crate::engine::journal::Change> = (gone.iter())
            .map(|id| crate::engine::journal::Change::Step {
                step: id.clone(),
                update: crate::engine::StepUpdate {
                    state: Some(StepState::Pending),
                    owned: Some(false),
                    unresolved: Some(false),
                    outputs: Some(Default::default()),
                    last_error: Some(Some(format!("Deleted: deleted by `rollback {run}`"))),
                    ..Default::default()
                },
                kind: EventKind::AdoptedResourceDeleted,
            })
            .collect();
        changes.push(crate::engine::journal::Change::Agent {
            state: AgentState::Interrupted,
            last_error: Some(why),
        });
        changes.push(crate::engine::journal::Change::ReleaseLease);
        if let Err(e) = store.apply(&other, agent, &token, changes).await {
            let _ = store.release_lease(&other, agent, &token).await;
            return Err(e.into());
        }
    }
    Ok(())
}

/// `--email E` names an agent of the run: the same usage error (exit 2) for every command
/// that takes one.
async fn known_agent(store: &dyn RunStore, run_id: &RunId, email: &str) -> Result<(), Error> {
    if store
        .agents(run_id)
        .await?
        .iter()
        .any(|a| a.agent_key == email)
    {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "run {run_id} has no agent {email} (see `connect-onboard status {run_id}`)"
        )))
    }
}

/// Releases one agent of a run: leftovers are kept and no longer owned; the agent is closed.
pub async fn release(ctx: &Context, run_id: &str, email: &str) -> Result<RunStatus, Error> {
    let run_id = &RunId::from(run_id);
    let store = ctx.existing_store().await?;
    let run = store.run(run_id).await?;
    let engine = engine_for_run(ctx, &store, &run, &RunSettings::default()).await?;
    let email = email.trim().to_lowercase();
    known_agent(&*store, run_id, &email).await?;
    engine.release_agent(run_id, &email).await?;
    run_status(&*store, run_id).await
}

/// A corrected row given to `retry --from`: the row (with the cells that could not be read
/// left unset) and those cells' columns.
struct Correction {
    row: Row,
    failed: Vec<String>,
}

/// Corrected rows given to `retry --from`, by normalised email, and the problems of the
/// cells that could not be read (every row's; the rules are checked later, on the rest of
/// each row, so that every problem of a row is reported at once).
fn corrections(path: &Path) -> Result<(HashMap<String, Correction>, Vec<String>), Error> {
    let mut reader = Reader::open(path).map_err(|errs| Error::unreadable(&errs))?;
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    while let Some(row) = reader.next() {
        let (row, failed) = match row {
            Ok(r) => (r, Vec::new()),
            Err(errs) => {
                errors.extend(errs.iter().map(ToString::to_string));
                match reader.take_partial() {
                    Some(r) => (r, errs.into_iter().filter_map(|e| e.column).collect()),
                    None => continue,
                }
            }
        };
        out.insert(
            row.input.email.trim().to_lowercase(),
            Correction { row, failed },
        );
    }
    Ok((out, errors))
}

/// Re-attempts every failed, rolled-back or interrupted agent of one run, or of all runs,
/// after the admin fixed the cause: profile names are resolved again against the instance
/// as it is now, and `--from FILE` gives corrected rows for those agents (matched by email,
/// validated like `batch` rows; a row with a problem stops the retry before any write).
pub async fn retry(
    ctx: &Context,
    run_id: Option<&str>,
    from: Option<&Path>,
    secrets: Secrets,
    settings: &RunSettings,
) -> Result<RunsReport, Error> {
    let store = ctx.existing_store().await?;
    let runs = match run_id {
        Some(id) => vec![store.run(&RunId::from(id)).await?],
        None => store.runs().await?,
    };
    let (fixes, mut unreadable) = from.map(corrections).transpose()?.unwrap_or_default();
    let defaults = ctx.config().map(|c| c.defaults.clone()).unwrap_or_default();
    let mut report = RunsReport {
        runs: Vec::new(),
        skipped: Vec::new(),
        driven: 0,
    };
    for run in runs {
        let agents: Vec<_> = store
            .agents(&run.id)
            .await?
            .into_iter()
            .filter(|a| {
                matches!(a.state, AgentState::Failed | AgentState::RolledBack)
                    || a.state.resumable()
            })
            .collect();
        if agents.is_empty() {
            if run_id.is_some() {
                report.runs.push(run_status(&*store, &run.id).await?);
            }
            continue;
        }
        let (engine, clients, target) = run_parts(ctx, &store, &run, settings).await?;
        // Checked before any write: every corrected row of this run's agents.
        let mut subjects: HashMap<String, serde_json::Value> = HashMap::new();
        let catalog = preflight::catalog(&clients.connect, &target.instance_id).await?;
        let mut problems = Vec::new();
        for a in agents.iter().filter(|a| !a.state.resumable()) {
            let fix = fixes.get(a.agent_key.as_str());
            match retry_subject(a, fix, &defaults, &target, &catalog)? {
                RetryWith::Subject(json) => {
                    subjects.insert(a.agent_key.to_string(), json);
                }
                RetryWith::Invalid(p) => problems.extend(p),
                RetryWith::Skipped(why) => report
                    .skipped
                    .push(format!("{} (run {}): {why}", a.agent_key, run.id)),
            }
        }
        if !problems.is_empty() || !unreadable.is_empty() {
            unreadable.extend(problems);
            return Err(invalid_corrections(unreadable));
        }
        let mut todo = Vec::new();
        for a in agents {
            if let Err(why) = secrets_for(&stored_subject(&a)?, &secrets) {
                report
                    .skipped
                    .push(format!("{} (run {}): {why}", a.agent_key, run.id));
                continue;
            }
            if a.state.resumable() {
                todo.push((a.agent_key, Drive::Resume));
            } else if let Some(subject) = subjects.remove(a.agent_key.as_str()) {
                todo.push((a.agent_key, Drive::RetryWith(subject)));
            }
        }
        report
            .drive(&run.id, engine, todo, &secrets, settings)
            .await?;
        report.runs.push(run_status(&*store, &run.id).await?);
    }
    if !unreadable.is_empty() {
        return Err(invalid_corrections(unreadable));
    }
    Ok(report)
}

/// Corrected rows that do not pass: every problem, nothing written.
fn invalid_corrections(problems: Vec<String>) -> Error {
    let summary = format!(
        "{} problem(s) in the corrected rows; nothing was written",
        problems.len()
    );
    Error::Invalid { problems, summary }
}

/// What a failed or rolled-back agent is retried with.
enum RetryWith {
    /// This subject (JSON, as stored).
    Subject(serde_json::Value),
    /// Its corrected row does not pass: the problems, each with its line.
    Invalid(Vec<String>),
    /// Its profile names do not resolve any more: why.
    Skipped(String),
}

/// The subject to retry `a` with: its corrected row (`fix`) if one was given, else its
/// stored subject, with profile names resolved again against the instance as it is now.
fn retry_subject(
    a: &crate::store::AgentRow,
    fix: Option<&Correction>,
    defaults: &agent::Defaults,
    target: &Target,
    catalog: &preflight::Catalog,
) -> Result<RetryWith, Error> {
    let stored = stored_subject(a)?;
    let spec = match fix {
        Some(Correction { row, failed }) => {
            let line = row.line;
            match agent::validate(&row.input, defaults, target.identity_mode) {
                Ok(spec) if failed.is_empty() => spec,
                // Its unreadable cells are reported already.
                Ok(_) => return Ok(RetryWith::Invalid(Vec::new())),
                Err(e) => {
                    let problems = (e.0.iter())
                        .filter(|fe| {
                            row.column_for(&fe.field)
                                .is_none_or(|c| !failed.iter().any(|f| f == c))
                        })
                        .map(|fe| format!("line {line}: {fe}"))
                        .collect();
                    return Ok(RetryWith::Invalid(problems));
                }
            }
        }
        // A migrated agent names no profiles: its Connect user's own ids stand, and the
        // stored subject is retried as it is.
        None if stored.agent.routing_profile.is_empty() => {
            return Ok(RetryWith::Subject(a.subject.clone()))
        }
        // An `apply` agent's changes are its plan's (ids, each with the value it replaces):
        // retried as planned; names resolved again would drop them.
        None if !stored.changes.is_empty() => return Ok(RetryWith::Subject(a.subject.clone())),
        None => stored.agent.clone(),
    };
    match preflight::resolve(spec, catalog) {
        Ok(mut s) => {
            // What the row does not say is the stored subject's: the Identity Store
            // UserName a migration keeps (case and all), an offboarding's ids.
            s.identity_user_name = stored.identity_user_name.clone();
            s.leaver = stored.leaver.clone();
            s.changes = stored.changes.clone();
            let json = serde_json::to_value(&s)
                .map_err(|e| Error::Input(format!("agent {}: {e}", a.agent_key)))?;
            Ok(RetryWith::Subject(json))
        }
        Err(errs) => Ok(RetryWith::Skipped(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}
