//! `offboard`: leavers, the mirror image of onboarding. Every email (arguments or a `batch`
//! file) is checked first; then each agent's resources are identified by the onboarding
//! rules (Connect username = the email; the one Identity Store user whose UserName or email
//! is it), from per-agent reads or, for many agents, the batch's bulk reads. An agent found
//! on one side only, matching several Identity Center users, or found nowhere is reported
//! and skipped unless the side to remove was asked for explicitly. The plan goes to the
//! caller's confirmation before the first write; then `workflows/offboard-agent.toml`
//! runs per agent on the batch machinery (`run_rows`: re-runs, concurrency, pacing,
//! report, `status`, `resume`).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::agent::reader::Reader;
use crate::agent::{self, FieldError};
use crate::aws::{Clients, ConnectApi, IdentityStoreApi, IdentityUser};
use crate::config::AssignmentMode;
use crate::engine::{AgentKey, AgentState, Workflow};
use crate::preflight::{self, Target};
use crate::steps::snapshot::Snapshot;
use crate::steps::{Leaver, Subject, CONNECT_USER_REMOVAL, IDENTITY_USER_REMOVAL};

use super::drive::{Direction, Directions};
use super::phase::{bulk_read, Listing, Valid, BULK_READS_FROM};
use super::phase::{run_rows, AgentResult, BatchReport, BulkReads, Phase, RunOptions, Sink};
use super::{Context, Error, NewRun, Outcome, RunSettings, WorkflowSource};

/// The offboarding workflow, embedded.
pub const BUILTIN_OFFBOARD_WORKFLOW: &str = include_str!("../../workflows/offboard-agent.toml");

/// Which side of an agent to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    /// Both: an agent found on one side only is skipped.
    #[default]
    Both,
    /// `--connect-only`: the Connect user alone.
    ConnectOnly,
    /// `--identity-only`: the Identity Center user (assignment, membership, user) alone.
    IdentityOnly,
}

/// What `offboard` was asked to do.
#[derive(Debug, Clone)]
pub struct OffboardOptions {
    /// Emails given as arguments.
    pub emails: Vec<String>,
    /// Or a file in any `batch` format (only the email / user login column is read).
    pub file: Option<PathBuf>,
    /// Which sides to remove.
    pub sides: Sides,
    /// Keep the Identity Store user (its assignment and membership still go).
    pub keep_identity_user: bool,
    /// How to run the agents (dry run, concurrency, bulk reads for the identification).
    pub run: RunOptions,
}

/// One agent the plan offboards: what will be deleted, with ids.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedLeaver {
    /// The normalised email.
    pub email: String,
    /// The Connect user to delete.
    pub connect_user_id: Option<String>,
    /// Its username, as Amazon Connect has it (case kept); unknown when resuming.
    pub connect_username: Option<String>,
    /// Which sides this offboarding removes (the other is kept).
    #[serde(skip)]
    pub sides: Sides,
    /// The Identity Store user whose access goes.
    pub identity_user_id: Option<String>,
    /// Its UserName.
    pub identity_user_name: Option<String>,
    /// The Identity Store user is kept.
    pub keep_identity_user: bool,
    /// The group whose membership is removed (the group stays).
    pub group: Option<String>,
    /// The user's own application assignment is removed (user mode).
    pub user_assignment: bool,
    /// An earlier offboarding run this one finishes.
    pub resumes: Option<String>,
}

/// The caller's say once the plan is known, before the first write (also for a dry run or
/// an empty plan, which need no confirmation): `Ok` goes ahead, an error stops with nothing
/// written.
pub type Confirm<'a> = dyn FnMut(&[PlannedLeaver], &[AgentResult]) -> Result<(), Error> + 'a;

/// Runs `offboard`.
pub async fn offboard(
    ctx: &Context,
    opts: &OffboardOptions,
    settings: &RunSettings,
    confirm: &mut Confirm<'_>,
    sink: &mut dyn Sink,
) -> Result<BatchReport, Error> {
    let NewRun {
        clients,
        wf,
        target,
        catalog: _,
    } = ctx.new_run(WorkflowSource::Offboard).await?;
    let emails = checked_emails(opts, &target)?;
    // Earlier runs decide first (a finished offboarding, one to finish); nothing is created
    // for a dry run.
    let store = if ctx.has_state().await? {
        Some(ctx.open_store().await?)
    } else {
        None
    };
    let finder = Finder::new(&clients, &target, emails.len(), opts.run.bulk_reads).await?;
    let Leavers { planned, early } =
        plan_leavers(emails, store.as_deref(), &finder, opts, &target).await?;
    let lines: Vec<PlannedLeaver> = planned.iter().map(|(p, _)| p.clone()).collect();
    confirm(&lines, &early)?;
    // What each agent's offboarding leaves in place: a dry run says `keep` for it.
    let kept: HashMap<String, Vec<String>> = (planned.iter())
        .filter_map(|(p, s)| Some((p.email.clone(), kept_steps(&wf, s.leaver.as_ref()?))))
        .collect();
    let subjects: Vec<Subject> = planned.into_iter().map(|(_, s)| s).collect();
    let valid = subjects.len();
    let rows = || -> Result<Box<dyn Iterator<Item = Valid> + '_>, Error> {
        Ok(Box::new(subjects.iter().map(|s| Valid {
            subject: s.clone(),
            password: None,
        })))
    };
    // The identification did the bulk reads; the removals look up by id.
    let run = RunOptions {
        bulk_reads: BulkReads::Never,
        ..opts.run.clone()
    };
    let phase = Phase {
        clients: &clients,
        target: &target,
        wf,
        early,
        valid,
        rejected: Vec::new(),
        rows: &rows,
        opts: &run,
        settings,
        listed: None,
        redo_done: false,
    };
    let mut sink = KeepLabels {
        inner: sink,
        kept: &kept,
    };
    let mut report = run_rows(ctx, phase, &mut sink).await?;
    relabel_kept(&mut report, &kept);
    Ok(report)
}

/// The emails planned, in order.
struct Leavers {
    /// Each plan line with its subject.
    planned: Vec<(PlannedLeaver, Subject)>,
    /// The results decided without a run.
    early: Vec<AgentResult>,
}

/// Plans every email by [`plan_leaver`].
async fn plan_leavers(
    emails: Vec<agent::AgentSpec>,
    store: Option<&dyn crate::store::RunStore>,
    finder: &Finder<'_>,
    opts: &OffboardOptions,
    target: &Target,
) -> Result<Leavers, Error> {
    let mut leavers = Leavers {
        planned: Vec::new(),
        early: Vec::new(),
    };
    let mut directions = Directions::default();
    for spec in emails {
        match plan_leaver(spec, store, &mut directions, finder, opts, target).await? {
            Leaving::Plan(line, subject) => leavers.planned.push((line, *subject)),
            Leaving::Early(a) => leavers.early.push(a),
        }
    }
    Ok(leavers)
}

/// The report's plan says `keep`, not `gone`, for what each agent's offboarding leaves in
/// place (its agents, and the plan's counts).
fn relabel_kept(report: &mut BatchReport, kept: &HashMap<String, Vec<String>>) {
    for a in &mut report.agents {
        for step in keep_labels(a, kept) {
            let counts = report.plan.entry(step).or_default();
            if let Some(n) = counts.get_mut("gone") {
                *n -= 1;
                if *n == 0 {
                    counts.remove("gone");
                }
            }
            *counts.entry("keep".into()).or_default() += 1;
        }
    }
}

/// One email's part of the plan: what to delete, or a result without a run.
enum Leaving {
    /// Its plan line and subject.
    Plan(PlannedLeaver, Box<Subject>),
    /// Decided without a run: skipped, or offboarded before.
    Early(AgentResult),
}

/// Plans one email: an earlier offboarding that finished (done, unless something was
/// left) or is to finish (with what it identified then), an unfinished onboarding
/// (skipped), else what the onboarding rules identify now.
async fn plan_leaver(
    spec: agent::AgentSpec,
    store: Option<&dyn crate::store::RunStore>,
    directions: &mut Directions,
    finder: &Finder<'_>,
    opts: &OffboardOptions,
    target: &Target,
) -> Result<Leaving, Error> {
    let email = spec.email.clone();
    let result = |outcome: Outcome, run: Option<String>, error: Option<String>| {
        Leaving::Early(AgentResult {
            changes: None,
            email: email.clone(),
            outcome,
            run_id: run,
            connect_user_id: None,
            identity_user_id: None,
            error,
            portal_url: None,
            plan: Default::default(),
        })
    };
    let mut offboarded_in: Option<String> = None;
    if let Some(store) = store {
        let key = AgentKey::from(email.as_str());
        if let Some((run, state)) = store.latest_by_key(&key).await? {
            let removes = directions.of(store, &run).await? == Direction::Offboards;
            match (removes, state) {
                (true, AgentState::Done | AgentState::Released) => {
                    offboarded_in = Some(run.into_string())
                }
                // An offboarding to finish: with what it identified then.
                (true, _) => {
                    let subject: Subject =
                        serde_json::from_value(store.agent(&run, &key).await?.subject)
                            .map_err(|e| Error::Input(format!("run {run}: {email}: {e}")))?;
                    let l = subject.leaver.clone().unwrap_or_default();
                    let line = plan_line(&email, &l, (None, None), target, Some(run.into_string()));
                    return Ok(Leaving::Plan(line, Box::new(subject)));
                }
                (false, s) if s.unfinished() => {
                    let why = format!(
                        "its onboarding in run {run} is {}: {} first",
                        s.as_str(),
                        super::status::advice(s, &run, &email).unwrap_or_default()
                    );
                    return Ok(result(Outcome::Skipped, Some(run.into_string()), Some(why)));
                }
                _ => {}
            }
        }
    }
    Ok(
        match finder.identify(&spec.username, &email, opts.sides).await? {
            Identified::Nothing(_) if offboarded_in.is_some() => {
                result(Outcome::AlreadyDone, offboarded_in, None)
            }
            Identified::Nothing(why) | Identified::Skip(why) => {
                result(Outcome::Skipped, None, Some(why))
            }
            Identified::Agent(connect, identity) => {
                let (connect, connect_username) = connect.unzip();
                let l = Leaver {
                    connect_user_id: connect,
                    identity_user_id: identity.as_ref().map(|u| u.id.clone()),
                    group_id: identity.as_ref().and(finder.group_id.clone()),
                    keep_identity_user: opts.keep_identity_user,
                };
                let name = identity.map(|u| u.user_name);
                let line = plan_line(&email, &l, (connect_username, name), target, None);
                let subject = Subject {
                    agent: spec,
                    routing_profile_id: String::new(),
                    security_profile_ids: Vec::new(),
                    hierarchy_group_id: None,
                    identity_user_name: None,
                    leaver: Some(l),
                    changes: Default::default(),
                };
                Leaving::Plan(line, Box::new(subject))
            }
        },
    )
}

/// The steps of `wf` that an offboarding of `l` leaves alone: the side not asked for
/// (`--connect-only`, `--identity-only`) and a kept Identity Center user. Their lookups
/// find nothing to delete, which a dry run would call `gone`; the resources are kept.
fn kept_steps(wf: &Workflow, l: &Leaver) -> Vec<String> {
    let identity_side = l.identity_user_id.is_none();
    (wf.steps.iter())
        .filter(|s| match s.action.as_str() {
            CONNECT_USER_REMOVAL => l.connect_user_id.is_none(),
            IDENTITY_USER_REMOVAL => identity_side || l.keep_identity_user,
            _ => identity_side,
        })
        .map(|s| s.id.clone())
        .collect()
}

/// Relabels `a`'s planned `gone` steps that its offboarding keeps as `keep`; returns them.
fn keep_labels(a: &mut AgentResult, kept: &HashMap<String, Vec<String>>) -> Vec<String> {
    let mut changed = Vec::new();
    for step in kept.get(&a.email).into_iter().flatten() {
        if let Some(d) = a.plan.get_mut(step).filter(|d| d.as_str() == "gone") {
            *d = "keep".into();
            changed.push(step.clone());
        }
    }
    changed
}

/// The caller's sink, seeing `keep` where the offboarding keeps a resource.
struct KeepLabels<'a> {
    inner: &'a mut dyn Sink,
    kept: &'a HashMap<String, Vec<String>>,
}

impl Sink for KeepLabels<'_> {
    fn started(&mut self, total: usize) -> Result<(), String> {
        self.inner.started(total)
    }
    fn rejected(&mut self, row: &AgentResult) {
        self.inner.rejected(row);
    }
    fn finished(&mut self, a: &AgentResult) {
        let mut a = a.clone();
        keep_labels(&mut a, self.kept);
        self.inner.finished(&a);
    }
}

fn plan_line(
    email: &str,
    l: &Leaver,
    names: (Option<String>, Option<String>),
    target: &Target,
    resumes: Option<String>,
) -> PlannedLeaver {
    let identity = l.identity_user_id.is_some();
    let (connect_username, identity_user_name) = names;
    PlannedLeaver {
        email: email.to_string(),
        connect_user_id: l.connect_user_id.clone(),
        connect_username,
        sides: match (l.connect_user_id.is_some(), identity) {
            (true, false) => Sides::ConnectOnly,
            (false, true) => Sides::IdentityOnly,
            _ => Sides::Both,
        },
        identity_user_id: l.identity_user_id.clone(),
        identity_user_name,
        keep_identity_user: l.keep_identity_user,
        group: (identity && l.group_id.is_some()).then(|| target.group.clone()),
        user_assignment: identity && target.assignment == AssignmentMode::User,
        resumes,
    }
}

/// Every email checked before any read: `origin: invalid email ...: rule`; duplicates name
/// both places. Any problem: nothing is written.
fn checked_emails(opts: &OffboardOptions, target: &Target) -> Result<Vec<agent::AgentSpec>, Error> {
    let mut raw: Vec<(String, String)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    match &opts.file {
        Some(path) => {
            let reader = Reader::open_emails(path).map_err(|errs| Error::unreadable(&errs))?;
            let file = reader.file_name().to_string();
            for row in reader {
                match row {
                    Ok(r) => {
                        let at = match r.column_for("email") {
                            Some(col) => format!("{file}:{}: column {col:?}", r.line),
                            None => format!("{file}:{}", r.line),
                        };
                        raw.push((at, r.input.email));
                    }
                    Err(errs) => problems.extend(errs.iter().map(ToString::to_string)),
                }
            }
        }
        None => raw.extend(
            (opts.emails.iter().enumerate())
                .map(|(i, e)| (format!("argument {}", i + 1), e.clone())),
        ),
    }
    if raw.is_empty() && problems.is_empty() {
        return Err(Error::Input(
            "no agent to offboard: give their emails, or --file FILE".into(),
        ));
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut specs = Vec::new();
    for (at, email) in raw {
        match agent::leaver(&email, target.identity_mode) {
            Err(e) => problems.extend(e.0.iter().map(|fe: &FieldError| format!("{at}: {fe}"))),
            Ok(spec) => {
                if let Some(first) = seen.get(&spec.email) {
                    problems.push(format!(
                        "{at}: agent {} is already at {first}: one entry per agent (emails compare without case)",
                        spec.email
                    ));
                    continue;
                }
                seen.insert(spec.email.clone(), at);
                specs.push(spec);
            }
        }
    }
    if !problems.is_empty() {
        let summary = format!("{} problem(s); nothing was written", problems.len());
        return Err(Error::Invalid { problems, summary });
    }
    Ok(specs)
}

/// What identification found for one agent.
enum Identified {
    /// Its Connect user (id, username) and Identity Store user (the sides asked for).
    Agent(Option<(String, String)>, Option<IdentityUser>),
    /// Something, but not what can be removed safely: why.
    Skip(String),
    /// Nothing on the sides asked for: why.
    Nothing(String),
}

/// Finds an agent's Connect user and Identity Store user by the onboarding rules: per agent,
/// or from one listing of each directory for many agents.
struct Finder<'a> {
    clients: &'a Clients,
    target: &'a Target,
    snapshot: Option<Snapshot>,
    group_id: Option<String>,
}

fn aws(context: String) -> impl FnOnce(crate::aws::AwsError) -> Error {
    move |source| preflight::Error::Aws { context, source }.into()
}

impl<'a> Finder<'a> {
    async fn new(
        clients: &'a Clients,
        target: &'a Target,
        agents: usize,
        mode: BulkReads,
    ) -> Result<Finder<'a>, Error> {
        let bulk = match mode {
            BulkReads::Auto => agents >= BULK_READS_FROM,
            BulkReads::Always => true,
            BulkReads::Never => false,
        };
        let snapshot = if bulk {
            let listing = Listing {
                details: false,
                assignment: false,
                what: "listing users to identify the leavers",
            };
            Some(bulk_read(clients, target, listing).await?)
        } else {
            None
        };
        let group_id = match snapshot.as_ref() {
            Some(s) => s.group_id(),
            None => (clients.identity_store)
                .group_id(&target.identity_store_id, &target.group)
                .await
                .map_err(aws(format!("looking up group {:?}", target.group)))?,
        };
        Ok(Finder {
            clients,
            target,
            snapshot,
            group_id,
        })
    }

    /// The Connect user named exactly `name`: (id, username).
    async fn connect_user(&self, name: &str) -> Result<Option<(String, String)>, Error> {
        if let Some(s) = &self.snapshot {
            return Ok(s
                .connect_user(name)
                .map(|u| (u.id.clone(), u.username.clone())));
        }
        let u = (self.clients.connect)
            .find_user(&self.target.instance_id, name)
            .await
            .map_err(aws(format!("looking up Connect user {name:?}")))?;
        Ok(u.map(|u| (u.id, u.username)))
    }

    async fn identity_users(&self, email: &str) -> Result<Vec<IdentityUser>, Error> {
        if let Some(s) = &self.snapshot {
            return Ok(s.identity_candidates(email).into_iter().cloned().collect());
        }
        let ids = &self.clients.identity_store;
        let store = &self.target.identity_store_id;
        let ctx = || format!("looking up Identity Store user {email:?}");
        let by_name = ids
            .user_id_by_name(store, email)
            .await
            .map_err(aws(ctx()))?;
        let by_email = ids
            .user_id_by_email(store, email)
            .await
            .map_err(aws(ctx()))?;
        let mut users = Vec::new();
        for id in [by_name, by_email].into_iter().flatten() {
            if users.iter().any(|u: &IdentityUser| u.id == id) {
                continue;
            }
            // None: deleted between the calls.
            if let Some(u) = ids.describe_user(store, &id).await.map_err(aws(ctx()))? {
                users.push(u);
            }
        }
        Ok(users)
    }

    /// The agent's Connect user id and Identity Store user, or why it is skipped. The
    /// Connect user is the one with exactly the username `typed`, else the one named as its
    /// Identity Center user is (the RoleSessionName that `migrate` kept, case and all).
    async fn identify(&self, typed: &str, email: &str, sides: Sides) -> Result<Identified, Error> {
        let mut connect = match sides {
            Sides::IdentityOnly => None,
            _ => self.connect_user(typed).await?,
        };
        let mut identity = match sides {
            Sides::ConnectOnly => Vec::new(),
            _ => self.identity_users(email).await?,
        };
        if identity.len() > 1 {
            let names: Vec<String> = (identity.iter())
                .map(|u| format!("{} (UserName {:?})", u.id, u.user_name))
                .collect();
            return Ok(Identified::Skip(format!(
                "matches {} IAM Identity Center users by UserName or email: {}; cannot tell which one is the agent's (resolve it in Identity Center)",
                names.len(),
                names.join(", ")
            )));
        }
        if let (Sides::Both, None, [user]) = (sides, &connect, identity.as_slice()) {
            let names = [Some(&user.user_name), user.primary_email.as_ref()];
            for name in names.into_iter().flatten().filter(|n| n.as_str() != typed) {
                connect = self.connect_user(name).await?;
                if connect.is_some() {
                    break;
                }
            }
        }
        let identity = identity.pop();
        Ok(match (sides, connect, identity) {
            (Sides::Both, Some(c), Some(i)) => Identified::Agent(Some(c), Some(i)),
            (Sides::Both, Some((c, _)), None) => Identified::Skip(format!(
                "found in Amazon Connect only (user {c}); no IAM Identity Center user has UserName or email {email:?}: pass --connect-only to delete the Connect user alone"
            )),
            (Sides::Both, None, Some(i)) => Identified::Skip(format!(
                "found in IAM Identity Center only (user {}, UserName {:?}); no Amazon Connect user has username {email:?}: pass --identity-only to remove the Identity Center side alone",
                i.id, i.user_name
            )),
            (Sides::ConnectOnly, Some(c), _) => Identified::Agent(Some(c), None),
            (Sides::IdentityOnly, _, Some(i)) => Identified::Agent(None, Some(i)),
            (Sides::ConnectOnly, None, _) => Identified::Nothing(format!(
                "not found: no Amazon Connect user has username {email:?}"
            )),
            (Sides::IdentityOnly, _, None) => Identified::Nothing(format!(
                "not found: no IAM Identity Center user has UserName or email {email:?}"
            )),
            (Sides::Both, None, None) => Identified::Nothing(format!(
                "not found: no Amazon Connect user has username {email:?} and no IAM Identity Center user has UserName or email {email:?}"
            )),
        })
    }
}
