//! `apply`: a roster as the desired state of the instance's agents. Each row is planned
//! against one bulk read of both directories (`plan`): `create` (onboarded as `batch`
//! does), `update` (the fields that differ, each `{field, before, after}`, and the missing
//! parts of the onboarding), `unchanged` (zero writes), `conflict`; with `--prune`, every
//! managed agent (a Connect user whose Identity Center user is in the agents' group) with
//! no row is planned `remove`, behind a guard against a truncated roster. A dry run returns
//! the plan, fingerprinted (`saved`), which `apply --plan` applies exactly: an agent whose
//! `before` no longer holds is `stale`, never overwritten.
//!
//! The run is the engine's: creates and updates are one run of `workflows/apply-agent.toml`
//! on the batch machinery (`phase::run_rows`: re-run rules, concurrency, pacing, report,
//! `status`/`resume`/`retry`/`rollback`); each update step carries the value it replaces,
//! so compensation and `rollback` restore it. Removals are an `offboard` run.
//!
//! The parts: `roster` (rows as desired states), `diff` (desired vs AWS), `plan` (a row
//! planned), `saved` (the saved plan and its fingerprint), `prune` (removals and the guard).

mod diff;
mod plan;
mod prune;
pub(crate) mod roster;
mod saved;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::steps::snapshot::Snapshot;

use super::phase::{
    bulk_read, run_rows, AgentResult, CallStats, Listing, Phase, Rejected, RunOptions, Sink, Valid,
};
use super::{env_for, Context, Error, NewRun, Outcome, RunSettings, WorkflowSource};

pub use diff::FieldChange;
pub use saved::{Action, PlanRow, PlanTarget, SavedPlan};

/// The apply workflow, embedded.
pub const BUILTIN_APPLY_WORKFLOW: &str = include_str!("../../../workflows/apply-agent.toml");

/// Where the desired state comes from.
#[derive(Debug, Clone)]
pub enum ApplySource {
    /// A roster in any `batch` format.
    File(PathBuf),
    /// A saved plan (`apply --dry-run --json`), applied exactly.
    Plan(PathBuf),
    /// `sync`: the members of the Identity Center groups of `[[sync.groups]]`, read after
    /// the bulk read (`super::sync`), run with the sync workflow; with a scope (events of
    /// `sync --watch --queue`), only the agents it names are planned.
    Groups(Option<super::sync::Scope>),
}

/// What `apply` was asked to do.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The roster or the saved plan.
    pub source: ApplySource,
    /// An empty cell clears a field that may be empty (else it keeps it).
    pub clear_empty: bool,
    /// Remove the managed agents that have no row.
    pub prune: bool,
    /// Allow this many removals past the guard.
    pub max_remove: Option<usize>,
    /// Report invalid rows and go on with the valid ones.
    pub skip_invalid: bool,
    /// How to run (dry run, concurrency).
    pub run: RunOptions,
}

/// What `apply` did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// The plan (a dry run prints it whole, as the saved plan).
    #[serde(skip)]
    pub saved: SavedPlan,
    /// The plan's rows (a run's JSON).
    pub plan: Vec<PlanRow>,
    /// Agents per planned action.
    pub counts: BTreeMap<Action, usize>,
    /// The plan's fingerprint.
    pub fingerprint: String,
    /// The run of the creates and updates, if one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The offboarding run of the removals, if one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_run_id: Option<String>,
    /// Rows rejected by validation (`--skip-invalid`).
    pub invalid: Vec<String>,
    /// Agents by outcome (a run; empty for a dry run).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<Outcome, usize>,
    /// The agents that did not finish well.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentResult>,
    /// Per AWS API: calls, retries, throttled.
    pub calls: Vec<CallStats>,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
    /// `sync`: each mapped group's direct members as read (group id → user ids).
    #[serde(skip)]
    pub group_members: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// `sync` of a scope of users: `group_members` holds these users' memberships only.
    #[serde(skip)]
    pub group_members_of: Option<std::collections::BTreeSet<String>>,
    /// `sync` that listed Connect's users: their usernames (folded → exact).
    #[serde(skip)]
    pub connect_usernames: Option<Arc<HashMap<String, String>>>,
}

/// The caller's say on the removals (non-empty) before the first write: `Ok` goes ahead.
pub type ConfirmRemovals<'a> = dyn FnMut(&[PlanRow]) -> Result<(), Error> + 'a;

/// Runs `apply`: the desired states read, the world listed once, every agent planned, then
/// (unless a dry run) the removals confirmed and the plan run.
pub async fn apply(
    ctx: &Context,
    opts: &ApplyOptions,
    settings: &RunSettings,
    confirm: &mut ConfirmRemovals<'_>,
    sink: &mut dyn Sink,
) -> Result<ApplyReport, Error> {
    let started = Instant::now();
    let config = ctx.config()?;
    // `sync`, or a plan that `sync` made: its workflow, its members, its removals.
    let sync = match &opts.source {
        ApplySource::Groups(_) => true,
        ApplySource::Plan(path) => SavedPlan::made_by_sync(path),
        ApplySource::File(_) => false,
    };
    let new = ctx
        .new_run(match sync {
            true => WorkflowSource::Sync,
            false => WorkflowSource::Apply,
        })
        .await?;
    let here = PlanTarget {
        instance_id: new.target.instance_id.clone(),
        identity_store_id: new.target.identity_store_id.clone(),
        group: new.target.group.clone(),
    };
    let mut desired = Desired::read(opts, &here, sync)?;
    let listing = Listing {
        details: true,
        assignment: true,
        what: "listing users for apply's plan",
    };
    let few = match &opts.source {
        ApplySource::Groups(scope) => super::sync::narrow(scope.as_ref()),
        _ => None,
    };
    let snapshot = Arc::new(match few {
        Some(scope) => super::sync::snapshot_for(config, &new, scope, listing).await?,
        None => bulk_read(&new.clients, &new.target, listing).await?,
    });
    // `sync` that listed Connect's users: their names, for the watch's next narrow reads.
    let connect_usernames = (sync && few.is_none()).then(|| {
        Arc::new(
            (snapshot.connect_users())
                .map(|u| (crate::agent::fold::fold(&u.username), u.username.clone()))
                .collect::<HashMap<_, _>>(),
        )
    });
    let mut planning = Planning::default();
    let mut group_members = BTreeMap::new();
    let mut group_members_of = None;
    if sync {
        let scope = match &opts.source {
            ApplySource::Groups(scope) => scope.as_ref(),
            _ => None,
        };
        let members = super::sync::desired(config, &new, &snapshot, scope).await?;
        group_members = members.groups.clone();
        group_members_of = members.groups_of.clone();
        desired.members(members, &mut planning);
    }
    let planner = plan::Planner::new(
        &new.target,
        &new.catalog,
        &config.defaults,
        {
            let mut env = env_for(&new.clients, &new.target);
            env.snapshot = Some(snapshot.clone());
            env
        },
        snapshot.clone(),
        new.wf.clone(),
    );
    planning.plan(&planner, &desired).await?;
    refuse_invalid(opts, &planning.rejected)?;
    let removals = match desired.prune {
        true => planning.removals(&snapshot, &new.target, &desired, opts.max_remove, sync)?,
        false => Vec::new(),
    };
    let mut rows = planning.plan_rows.clone();
    rows.extend(removals.iter().cloned());
    let saved = match sync {
        true => SavedPlan::new(here, desired.prune, rows).of_sync(),
        false => SavedPlan::new(here, desired.prune, rows),
    };
    let mut report = ApplyReport {
        dry_run: opts.run.dry_run,
        plan: saved.plan.clone(),
        counts: saved.counts.clone(),
        fingerprint: saved.fingerprint.clone(),
        saved,
        run_id: None,
        prune_run_id: None,
        invalid: (planning.rejected.iter())
            .flat_map(|r| r.problems.iter().cloned())
            .collect(),
        outcomes: BTreeMap::new(),
        agents: Vec::new(),
        calls: Vec::new(),
        elapsed_ms: 0,
        group_members,
        group_members_of,
        connect_usernames,
    };
    if !opts.run.dry_run {
        if !removals.is_empty() {
            confirm(&removals)?;
        }
        let run = Running {
            ctx,
            new: &new,
            snapshot,
            opts,
            settings,
            sync,
        };
        run.run(planning, removals, sink, &mut report).await?;
    }
    report.calls = calls(&new.clients);
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The desired states: the roster's rows, or a saved plan's.
struct Desired {
    rows: Vec<roster::RosterRow>,
    /// Rows that could not be read.
    unread: Vec<roster::Unread>,
    /// The saved plan applied (`--plan`).
    saved: Option<SavedPlan>,
    /// Removals are planned.
    prune: bool,
    /// `sync`: who must never be pruned besides the rows (members that were skipped), folded.
    kept: HashSet<String>,
    /// `sync` with a scope: only these Connect usernames (folded) may be removed.
    remove_only: Option<HashSet<String>>,
}

impl Desired {
    /// Every row, every problem of the file at once (planned later, never run). `sync`: the
    /// rows are the mapped groups' members, read after the bulk read (`members`).
    fn read(opts: &ApplyOptions, here: &PlanTarget, sync: bool) -> Result<Desired, Error> {
        let mut d = match &opts.source {
            ApplySource::File(path) => {
                let (rows, unread) = roster::read(path, opts.clear_empty)?;
                if rows.is_empty() && unread.is_empty() {
                    return Err(Error::Input(format!(
                        "{}: no agent rows, only a header: nothing to apply; nothing was written",
                        path.display()
                    )));
                }
                Desired {
                    rows,
                    unread,
                    saved: None,
                    prune: opts.prune,
                    kept: HashSet::new(),
                    remove_only: None,
                }
            }
            ApplySource::Plan(path) => {
                let saved = SavedPlan::load(path, here)?;
                let file = path.display().to_string();
                let rows = match sync {
                    true => Vec::new(),
                    false => (saved.plan.iter().enumerate())
                        .filter(|(_, p)| matches!(p.action, Action::Create | Action::Update))
                        .map(|(i, p)| plan::row_of_plan(&file, i, p))
                        .collect(),
                };
                Desired {
                    rows,
                    unread: Vec::new(),
                    prune: saved.prune,
                    saved: Some(saved),
                    kept: HashSet::new(),
                    remove_only: None,
                }
            }
            // Read after the bulk read (`super::sync::desired`).
            ApplySource::Groups(_) => Desired {
                rows: Vec::new(),
                unread: Vec::new(),
                saved: None,
                prune: opts.prune,
                kept: HashSet::new(),
                remove_only: None,
            },
        };
        duplicates(&mut d.rows);
        Ok(d)
    }

    /// `sync`: the mapped groups' members as the rows. A saved plan of `sync` plans only the
    /// agents it creates or updates, from what the members are now (`prune::against_saved`
    /// then judges them); one that is no longer a member is stale. Every member (and every
    /// skipped one) is kept from the removals.
    fn members(&mut self, members: super::sync::Members, planning: &mut Planning) {
        use crate::agent::fold::fold;
        self.kept = members.kept;
        self.remove_only = members.remove_only;
        let Some(saved) = &self.saved else {
            self.rows = members.rows;
            for p in members.skipped {
                planning.decided(p);
            }
            return;
        };
        self.kept.extend(
            (members.rows.iter()).filter_map(|r| r.exact.as_ref().map(|x| fold(&x.username))),
        );
        let planned: Vec<&PlanRow> = (saved.plan.iter())
            .filter(|p| matches!(p.action, Action::Create | Action::Update))
            .collect();
        for p in &planned {
            if !members.rows.iter().any(|r| r.email == p.agent) {
                planning.decided(PlanRow {
                    detail: Some(
                        "no longer a member of a mapped group (or no longer a usable agent); nothing was written for this agent"
                            .into(),
                    ),
                    ..(*p).clone()
                });
            }
        }
        self.rows = (members.rows.into_iter())
            .filter(|r| planned.iter().any(|p| p.agent == r.email))
            .collect();
    }

    /// The saved plan's row of an agent, if a saved plan is applied.
    fn saved_row(&self, agent: &str) -> Option<&PlanRow> {
        (self.saved.iter())
            .flat_map(|s| s.plan.iter())
            .find(|p| p.agent == agent)
    }

    /// The agents the roster names (a saved plan: those it does not remove), folded.
    fn roster(&self) -> HashSet<String> {
        (self.rows.iter())
            .map(|r| match &r.exact {
                // `sync`: the Connect username (the email, or the UserName).
                Some(x) => crate::agent::fold::fold(&x.username),
                None => crate::agent::fold::fold(&r.email),
            })
            .chain(self.kept.iter().cloned())
            .chain(
                (self.saved.iter())
                    .flat_map(|s| s.plan.iter())
                    .filter(|p| p.action != Action::Remove)
                    .map(|p| crate::agent::fold::fold(&p.agent)),
            )
            .collect()
    }
}

/// Every agent planned: what the run drives, what was decided without it, what was rejected.
#[derive(Default)]
struct Planning {
    /// The plan, in the file's order.
    plan_rows: Vec<PlanRow>,
    /// Creates and updates.
    runs: Vec<(PlanRow, Valid)>,
    /// Unchanged, conflict, stale: reported, not run.
    early: Vec<AgentResult>,
    /// Rows that break a rule.
    rejected: Vec<Rejected>,
}

impl Planning {
    async fn plan(&mut self, planner: &plan::Planner<'_>, desired: &Desired) -> Result<(), Error> {
        self.rejected
            .extend((desired.unread.iter()).map(|(who, problems)| Rejected {
                who: who.clone(),
                problems: problems.clone(),
            }));
        for row in &desired.rows {
            let planned = planner.plan(row).await?;
            let planned = match desired.saved_row(&row.email) {
                Some(was) => prune::against_saved(was, planned),
                None => planned,
            };
            match planned {
                plan::Planned::Run(p, v) => {
                    self.plan_rows.push(p.clone());
                    self.runs.push((p, *v));
                }
                plan::Planned::Decided(p) => self.decided(p),
                plan::Planned::Rejected(r) => self.rejected.push(r),
            }
        }
        // A saved plan's rows that are not run are reported as planned.
        for p in desired.saved.iter().flat_map(|s| s.plan.iter()) {
            if matches!(
                p.action,
                Action::Unchanged | Action::Conflict | Action::Skip
            ) {
                self.decided(p.clone());
            }
        }
        Ok(())
    }

    pub(crate) fn decided(&mut self, p: PlanRow) {
        self.early.push(decided(&p));
        self.plan_rows.push(p);
    }

    /// The removals of `--prune`, behind the guard; managed agents that cannot be pruned
    /// are planned `conflict`.
    fn removals(
        &mut self,
        snapshot: &Snapshot,
        target: &crate::preflight::Target,
        desired: &Desired,
        max_remove: Option<usize>,
        sync: bool,
    ) -> Result<Vec<PlanRow>, Error> {
        let planned: Option<Vec<&PlanRow>> = desired.saved.as_ref().map(|s| {
            (s.plan.iter())
                .filter(|p| p.action == Action::Remove)
                .collect()
        });
        let (removals, odd) = prune::removals(
            snapshot,
            target,
            &desired.roster(),
            planned,
            max_remove,
            sync,
        )?;
        for p in odd {
            self.decided(p);
        }
        let removals = match &desired.remove_only {
            Some(only) => (removals.into_iter())
                .filter(|r| only.contains(&crate::agent::fold::fold(&r.agent)))
                .collect(),
            None => removals,
        };
        Ok(removals)
    }
}

/// What the run of a plan acts with.
struct Running<'a> {
    ctx: &'a Context,
    new: &'a NewRun,
    snapshot: Arc<Snapshot>,
    opts: &'a ApplyOptions,
    settings: &'a RunSettings,
    /// `sync`: removals delete the Connect user alone.
    sync: bool,
}

impl Running<'_> {
    /// Creates and updates in one run of the apply workflow, then the removals in an
    /// offboarding run; outcomes to `sink` and `report`.
    async fn run(
        self,
        planning: Planning,
        removals: Vec<PlanRow>,
        sink: &mut dyn Sink,
        report: &mut ApplyReport,
    ) -> Result<(), Error> {
        let mut actions: HashMap<String, (Action, String)> = (planning.runs.iter())
            .map(|(p, _)| (p.agent.clone(), (p.action, shown_changes(&p.changes))))
            .collect();
        for r in &removals {
            actions.insert(r.agent.clone(), (Action::Remove, String::new()));
        }
        let valid: Vec<Valid> = planning.runs.into_iter().map(|(_, v)| v).collect();
        let mut out = ApplySink {
            inner: sink,
            actions,
            outcomes: BTreeMap::new(),
            agents: Vec::new(),
            started: false,
            total: valid.len() + planning.early.len() + removals.len(),
        };
        let rows_fn = || -> Result<Box<dyn Iterator<Item = Valid> + '_>, Error> {
            Ok(Box::new(valid.iter().cloned()))
        };
        let phase = Phase {
            clients: &self.new.clients,
            target: &self.new.target,
            wf: self.new.wf.clone(),
            early: planning.early,
            valid: valid.len(),
            rejected: planning.rejected,
            rows: &rows_fn,
            opts: &self.opts.run,
            settings: self.settings,
            listed: Some(self.snapshot.clone()),
            redo_done: true,
        };
        let ran = run_rows(self.ctx, phase, &mut out).await?;
        report.run_id = ran.run_id;
        if !removals.is_empty() {
            report.prune_run_id = prune::run(
                self.ctx,
                &removals,
                self.opts,
                self.settings,
                self.sync,
                &mut out,
            )
            .await?;
        }
        report.outcomes = out.outcomes;
        report.agents = out.agents;
        Ok(())
    }
}

/// The second row of an agent is a problem of its own (naming the first).
fn duplicates(rows: &mut [roster::RosterRow]) {
    let mut seen: HashMap<String, String> = HashMap::new();
    for r in rows {
        let key = r.email.to_lowercase();
        match seen.get(&key) {
            Some(first) => r.problems.push(format!(
                "{}: agent {key} is already at {first}: one row per agent (emails compare without case)",
                r.at
            )),
            None => {
                seen.insert(key, r.at.clone());
            }
        }
    }
}

fn refuse_invalid(opts: &ApplyOptions, rejected: &[Rejected]) -> Result<(), Error> {
    if rejected.is_empty() || opts.skip_invalid {
        return Ok(());
    }
    let problems: Vec<String> = (rejected.iter())
        .flat_map(|r| r.problems.iter().cloned())
        .collect();
    let file = match &opts.source {
        ApplySource::File(p) | ApplySource::Plan(p) => p.display().to_string(),
        ApplySource::Groups(_) => "the members of [[sync.groups]]".to_string(),
    };
    let summary = format!(
        "{} problem(s) in {file}; nothing was written (fix them, or pass --skip-invalid to apply the valid rows only)",
        problems.len()
    );
    Err(Error::Invalid { problems, summary })
}

fn calls(clients: &crate::aws::Clients) -> Vec<CallStats> {
    (clients.connect.1.snapshot().iter())
        .map(Into::into)
        .collect()
}

/// A plan row decided without a run, as the report lists it.
fn decided(p: &PlanRow) -> AgentResult {
    let outcome = match p.action {
        Action::Unchanged => Outcome::Unchanged,
        Action::Conflict => Outcome::Conflict,
        Action::Skip => Outcome::Skipped,
        // A saved plan's row that no longer holds (see `prune::against_saved`).
        Action::Create | Action::Update | Action::Remove => Outcome::Stale,
    };
    AgentResult {
        email: p.agent.clone(),
        outcome,
        run_id: None,
        connect_user_id: None,
        identity_user_id: None,
        error: p.detail.clone(),
        portal_url: None,
        plan: BTreeMap::new(),
        changes: None,
    }
}

/// The changes as the report writes them: `field: before -> after; ...`.
pub fn shown_changes(changes: &[FieldChange]) -> String {
    fn text(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Null => "none".to_string(),
            serde_json::Value::String(s) => s.clone(),
            // A list as the files write it.
            serde_json::Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join("|"),
            other => other.to_string(),
        }
    }
    changes
        .iter()
        .map(|c| format!("{}: {} -> {}", c.field, text(&c.before), text(&c.after)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The CLI's sink, seen through apply's outcomes: a done agent was created or updated (or,
/// in the prune run, removed); counts and the agents not finished well are kept here.
struct ApplySink<'s> {
    inner: &'s mut dyn Sink,
    /// Agent → what the plan does to it, and its changes as the report writes them.
    actions: HashMap<String, (Action, String)>,
    outcomes: BTreeMap<Outcome, usize>,
    agents: Vec<AgentResult>,
    /// The inner sink was started (once, for every phase).
    started: bool,
    total: usize,
}

impl Sink for ApplySink<'_> {
    fn started(&mut self, _phase_total: usize) -> Result<(), String> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        self.inner.started(self.total)
    }
    fn rejected(&mut self, row: &AgentResult) {
        self.inner.rejected(row);
    }
    fn finished(&mut self, agent: &AgentResult) {
        let mut a = agent.clone();
        // `sync`'s removals are planned by the exact Connect username; offboarding reports
        // its normalised email.
        if !self.actions.contains_key(&a.email) {
            if let Some(k) = (self.actions.keys()).find(|k| k.eq_ignore_ascii_case(&a.email)) {
                a.email.clone_from(k);
            }
        }
        let planned = self.actions.get(&a.email);
        if a.outcome == Outcome::Done {
            a.outcome = match planned.map(|(act, _)| *act) {
                Some(Action::Create) => Outcome::Created,
                Some(Action::Remove) => Outcome::Removed,
                _ => Outcome::Updated,
            };
        }
        if let Some((_, changes)) = planned.filter(|(_, c)| !c.is_empty()) {
            a.changes = Some(changes.clone());
        }
        // A sign-in notice for whom can sign in only now: created, or given their Identity
        // Center user.
        let new_sign_in = a.outcome == Outcome::Created
            || (a.changes.as_deref()).is_some_and(|c| c.contains("identity_center_user:"));
        if !new_sign_in {
            a.portal_url = None;
        }
        *self.outcomes.entry(a.outcome).or_default() += 1;
        if !a.outcome.finished_well() || a.error.is_some() && a.outcome != Outcome::Unchanged {
            self.agents.push(a.clone());
        }
        self.inner.finished(&a);
    }
}
