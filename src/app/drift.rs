//! `drift`: every agent of both sides classified from one bulk read (the batch's
//! [`Snapshot`]: Connect ListUsers, Identity Store ListUsers, the group's members and its
//! assignment; in user mode the application's assignments), paced like every call.
//!
//! An agent is a Connect user, or an Identity Center user in the agents' group. Each gets
//! the first status that applies, in this order: `duplicate_identity_user`,
//! `connect_only`, `identity_only`, `no_primary_email`, `username_mismatch`,
//! `not_in_group`, `not_assigned`, `complete`. Read-only; `--fix-plan DIR` files are written
//! by the CLI from [`DriftReport::plan`].
//!
//! The fix plan converges: each agent goes into the plan's files only when the commands
//! that read them (`offboard --connect-only`, `batch`, `migrate --usernames`, in that order)
//! will leave it `complete` — judged by the very rules those commands apply (the same
//! validation, the Connect username `batch` makes, the Identity Center user `migrate` and
//! `batch` adopt). Any other agent is left out, and its fix says why and what to do by hand.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::agent::{self, fold, AgentInput, Defaults, IdentityMode};
use crate::aws::{IdentityUser, Principal, SsoAdminApi as _};
use crate::config::{AssignmentMode, RoleSessionName};
use crate::preflight;
use crate::steps::snapshot::{Scope, Snapshot};

use super::{Context, Error};

/// An agent's drift status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// Two Identity Center users whose names or emails differ only in case.
    DuplicateIdentityUser,
    /// A Connect user with no Identity Center user: cannot sign in.
    ConnectOnly,
    /// In the agents' group, but no Connect user.
    IdentityOnly,
    /// The Identity Center user has no (or more than one) primary email.
    NoPrimaryEmail,
    /// The RoleSessionName is not exactly the Connect username (e.g. case).
    UsernameMismatch,
    /// Not a member of the agents' group.
    NotInGroup,
    /// The group (or the user, in user mode) is not assigned to the application.
    NotAssigned,
    /// Nothing to fix.
    Complete,
}

impl DriftStatus {
    /// Every status, in the order they are tried.
    pub const ALL: [DriftStatus; 8] = [
        DriftStatus::DuplicateIdentityUser,
        DriftStatus::ConnectOnly,
        DriftStatus::IdentityOnly,
        DriftStatus::NoPrimaryEmail,
        DriftStatus::UsernameMismatch,
        DriftStatus::NotInGroup,
        DriftStatus::NotAssigned,
        DriftStatus::Complete,
    ];

    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftStatus::DuplicateIdentityUser => "duplicate_identity_user",
            DriftStatus::ConnectOnly => "connect_only",
            DriftStatus::IdentityOnly => "identity_only",
            DriftStatus::NoPrimaryEmail => "no_primary_email",
            DriftStatus::UsernameMismatch => "username_mismatch",
            DriftStatus::NotInGroup => "not_in_group",
            DriftStatus::NotAssigned => "not_assigned",
            DriftStatus::Complete => "complete",
        }
    }
}

/// One agent.
#[derive(Debug, Clone, Serialize)]
pub struct DriftAgent {
    /// The Connect username, if there is a Connect user.
    pub connect_username: Option<String>,
    /// The Identity Center user name, if there is one (the first, for duplicates).
    pub identity_user_name: Option<String>,
    /// The Identity Center user's primary email.
    pub email: Option<String>,
    /// Status.
    pub status: DriftStatus,
    /// The fix, in one line (None when complete).
    pub fix: Option<String>,
    /// The fix plan's files this agent is in, in the order they are run; empty when it is
    /// fixed by hand (its `fix` says why and how).
    pub fix_plan: Vec<&'static str>,
    /// How the fix plan fixes it.
    #[serde(skip)]
    pub route: Route,
    /// The `batch` row (email, first name, last name), for the routes that use batch.
    #[serde(skip)]
    pub batch_row: Option<(String, String, String)>,
}

/// How the fix plan fixes an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// Nothing to fix, or fixed by hand: in no file.
    #[default]
    None,
    /// `migrate --usernames` (the Connect username).
    Migrate,
    /// `batch` (the Identity Center user's email).
    Batch,
    /// `offboard --connect-only` removes the wrongly named Connect user, then `batch`
    /// makes the right one and adopts the Identity Center user.
    OffboardThenBatch,
    /// `offboard --connect-only` removes a surplus Connect user: another one is exactly
    /// what the identity provider sends.
    Offboard,
}

impl Route {
    /// The fix plan's files, in the order they are run.
    fn files(self) -> Vec<&'static str> {
        match self {
            Route::None => vec![],
            Route::Migrate => vec![MIGRATE_FILE],
            Route::Batch => vec![BATCH_FILE],
            Route::OffboardThenBatch => vec![OFFBOARD_FILE, BATCH_FILE],
            Route::Offboard => vec![OFFBOARD_FILE],
        }
    }
}

/// The fix plan's file for `migrate --usernames`.
pub const MIGRATE_FILE: &str = "migrate-usernames.txt";
/// The fix plan's file for `batch`.
pub const BATCH_FILE: &str = "batch.csv";
/// The fix plan's file for `offboard --connect-only --file`.
pub const OFFBOARD_FILE: &str = "offboard.csv";

/// What `drift` found.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// Agents per status (every status, zeros included).
    pub counts: BTreeMap<&'static str, usize>,
    /// Every agent, sorted by status then name.
    pub agents: Vec<DriftAgent>,
    /// What was read (for the progress line; not in the JSON).
    #[serde(skip)]
    pub read: Read,
}

/// What the bulk read saw, and how long it took.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// Connect users listed.
    pub connect_users: usize,
    /// Identity Center users listed.
    pub identity_users: usize,
    /// Members of the agents' group.
    pub members: usize,
    /// Wall time of the reads.
    pub elapsed: std::time::Duration,
}

/// The files a fix plan consists of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FixPlan {
    /// Connect usernames for `migrate --usernames` (one per line, exact).
    pub migrate_usernames: Vec<String>,
    /// (email, first name, last name) rows for `batch`.
    pub batch: Vec<(String, String, String)>,
    /// Logins for `offboard --file`.
    pub offboard: Vec<String>,
}

impl DriftReport {
    /// The fix plan: each agent's [`Route`] decides its rows (decided by [`classify`] with
    /// the rules of the commands that read them). One row per name in each file: the
    /// commands refuse a file with an agent twice.
    pub fn plan(&self) -> FixPlan {
        let mut p = FixPlan::default();
        for a in &self.agents {
            let connect = a.connect_username.clone();
            match a.route {
                Route::None => {}
                Route::Migrate => p.migrate_usernames.extend(connect),
                Route::Batch => p.batch.extend(a.batch_row.clone()),
                Route::OffboardThenBatch => {
                    p.offboard.extend(connect);
                    p.batch.extend(a.batch_row.clone());
                }
                Route::Offboard => p.offboard.extend(connect),
            }
        }
        let mut seen = HashSet::new();
        p.batch.retain(|r| seen.insert(r.0.to_lowercase()));
        let mut seen = HashSet::new();
        p.offboard.retain(|u| seen.insert(u.to_lowercase()));
        let mut seen = HashSet::new();
        p.migrate_usernames.retain(|u| seen.insert(u.clone()));
        p
    }
}

/// Runs `drift`.
pub async fn drift(ctx: &Context) -> Result<DriftReport, Error> {
    let config = ctx.config()?;
    let mut regions = ctx.new_run_regions();
    let clients = ctx.clients(&mut regions).await?;
    let (target, _) =
        preflight::discover_for_diagnosis(config, &clients.connect, &clients.sso_admin).await?;
    let read = |what: &str| {
        let context = format!("listing {what} for drift");
        move |source| preflight::Error::Aws { context, source }
    };
    let group_mode = target.assignment == AssignmentMode::Group;
    let started = std::time::Instant::now();
    let snap = Snapshot::take(
        &clients.connect,
        &clients.identity_store,
        &clients.sso_admin,
        &Scope {
            instance_id: &target.instance_id,
            identity_store_id: &target.identity_store_id,
            group: &target.group,
            application_arn: group_mode.then_some(target.application_arn.as_str()),
            details: false,
        },
    )
    .await
    .map_err(read("the users of both directories"))?;
    let assigned_users: HashSet<String> = if group_mode {
        HashSet::new()
    } else {
        (clients.sso_admin.assignments(&target.application_arn).await)
            .map_err(read("the application's assignments"))?
            .into_iter()
            .filter(|(k, _)| *k == Principal::User)
            .map(|(_, id)| id)
            .collect()
    };
    let is_assigned = |u: &IdentityUser| {
        if group_mode {
            snap.group_assigned() == Some(true)
        } else {
            assigned_users.contains(&u.id)
        }
    };
    let read = Read {
        connect_users: snap.connect_users().count(),
        identity_users: snap.identity_users().count(),
        members: (snap.identity_users())
            .filter(|u| snap.membership(&u.id).is_some())
            .count(),
        elapsed: started.elapsed(),
    };
    Ok(DriftReport {
        read,
        ..classify(
            &snap,
            &Rules {
                session: config.identity_center.role_session_name,
                mode: target.identity_mode,
                defaults: &config.defaults,
            },
            &target.group,
            &is_assigned,
        )
    })
}

/// The rules a fix is judged by: what the identity provider sends, the instance's identity
/// management, and the defaults `batch` applies to a row.
pub(super) struct Rules<'a> {
    /// What the identity provider sends as the RoleSessionName.
    pub session: RoleSessionName,
    /// The Connect instance's identity management.
    pub mode: IdentityMode,
    /// The config's `[defaults]`, which `batch` applies to each row.
    pub defaults: &'a Defaults,
}

impl Rules<'_> {
    /// What the identity provider sends as the RoleSessionName for `u`.
    pub(super) fn sent(&self, u: &IdentityUser) -> Option<String> {
        match self.session {
            RoleSessionName::Email => u.primary_email.clone(),
            RoleSessionName::UserName => Some(u.user_name.clone()),
        }
    }

    /// Why no command of connect-onboard fixes agents here: on an instance that is not
    /// SAML, nobody signs in through IAM Identity Center (and `migrate` refuses it).
    pub(super) fn not_saml(&self) -> Option<String> {
        (self.mode != IdentityMode::Saml).then(|| {
            format!(
                "the instance uses {} identity management: its users sign in to Amazon Connect itself, not through IAM Identity Center",
                self.mode
            )
        })
    }

    /// The `batch` row that gives `u` its Connect user, when `batch` will leave the agent
    /// complete: the row passes batch's validation; batch names the Connect user by the
    /// email lower-cased, which must be exactly what the identity provider sends for `u`;
    /// and batch adopts `u` (its user name and one primary email are that email, without
    /// case). Else why not.
    pub(super) fn batch_row(&self, u: &IdentityUser) -> Result<(String, String, String), String> {
        if let Some(why) = self.not_saml() {
            return Err(why);
        }
        let p = match (&u.primary_email, u.primary_emails) {
            (Some(p), 1) => p.clone(),
            _ => {
                return Err(format!(
                    "Identity Center user {:?} has no single primary email for batch to onboard",
                    u.user_name
                ))
            }
        };
        let input = AgentInput {
            email: p.clone(),
            first_name: u.given_name.clone(),
            last_name: u.family_name.clone(),
            ..AgentInput::default()
        };
        let spec = agent::validate(&input, self.defaults, self.mode).map_err(|e| {
            let why: Vec<String> = e.0.iter().map(ToString::to_string).collect();
            format!("batch would refuse its row: {}", why.join("; "))
        })?;
        if !(fold::same(&u.user_name, &spec.email) && fold::same(&p, &spec.email)) {
            return Err(format!(
                "its user name {:?} is not its email {p:?}, and batch adopts only an Identity Center user named by its email",
                u.user_name
            ));
        }
        let sent = self.sent(u);
        if sent.as_deref() != Some(spec.username.as_str()) {
            return Err(format!(
                "the identity provider sends {}, and batch would name the Connect user {:?} (connect-onboard makes Connect usernames from the email, lower-cased)",
                sent.map(|s| format!("{s:?}")).unwrap_or_else(|| "nothing".into()),
                spec.username
            ));
        }
        Ok((p, u.given_name.clone(), u.family_name.clone()))
    }

    /// Why `migrate --usernames` will not leave Connect user `c` complete (with `u`, its
    /// Identity Center user if there is one), if it will not: migrate refuses the username,
    /// or the Identity Center user is not the one migrate adopts (its user name and one
    /// primary email exactly the Connect username).
    pub(super) fn migrate_refusal(&self, c: &str, u: Option<&IdentityUser>) -> Option<String> {
        if let Some(why) = self.not_saml() {
            return Some(why);
        }
        if let Err(e) = agent::migrated(c, "First", "Last") {
            let why: Vec<String> = e.0.iter().map(ToString::to_string).collect();
            return Some(format!(
                "migrate refuses Connect user {c:?}: {}",
                why.join("; ")
            ));
        }
        let u = u?;
        let exact =
            u.user_name == c && u.primary_email.as_deref() == Some(c) && u.primary_emails == 1;
        (!exact).then(|| {
            format!(
                "migrate adopts only an Identity Center user whose user name and one primary email are exactly {c:?}, and {:?} has primary email {}",
                u.user_name,
                u.primary_email.as_deref().map(|e| format!("{e:?}")).unwrap_or_else(|| "none".into())
            )
        })
    }
}

/// A fix done by hand: why the fix plan leaves the agent out, and what to do.
fn by_hand(why: &str, what: &str) -> String {
    format!("not in the fix plan ({why}): {what}")
}

/// Classifies every agent of the snapshot: each Connect user, then each member of the
/// group that has none.
fn classify(
    snap: &Snapshot,
    rules: &Rules<'_>,
    group: &str,
    is_assigned: &dyn Fn(&IdentityUser) -> bool,
) -> DriftReport {
    let mut c = Classifier::new(snap, rules, group, is_assigned);
    let mut agents = Vec::new();
    let mut connect: Vec<_> = snap.connect_users().collect();
    connect.sort_by(|a, b| a.username.cmp(&b.username));
    for u in connect {
        agents.push(c.connect_user(u));
    }
    // Group members with no Connect user.
    let mut rest: Vec<&IdentityUser> = snap
        .identity_users()
        .filter(|u| !c.matched.contains(u.id.as_str()) && snap.membership(&u.id).is_some())
        .collect();
    rest.sort_by(|a, b| a.user_name.cmp(&b.user_name));
    for u in rest {
        agents.push(c.identity_only(u));
    }
    agents.sort_by_key(|a| a.status);
    let mut counts: BTreeMap<&'static str, usize> = DriftStatus::ALL
        .into_iter()
        .map(|s| (s.as_str(), 0))
        .collect();
    for a in &agents {
        *counts.entry(a.status.as_str()).or_default() += 1;
    }
    DriftReport {
        counts,
        agents,
        read: Read::default(),
    }
}

/// What classifying needs across agents: the listings indexed without case, and what the
/// plan already decided (who is matched, which Connect user of a folded name it offboards).
struct Classifier<'a> {
    snap: &'a Snapshot,
    rules: &'a Rules<'a>,
    group: &'a str,
    is_assigned: &'a dyn Fn(&IdentityUser) -> bool,
    /// Identity Center users by every folded name and email they carry.
    by_key: HashMap<String, Vec<&'a IdentityUser>>,
    /// Connect usernames by folded form: of two that differ only in case, at most one can
    /// have an Identity Center user, and offboard takes one entry per email.
    folded: HashMap<String, Vec<&'a str>>,
    /// The first Connect user of each folded name that the plan offboards.
    offboarded: HashMap<String, String>,
    /// Identity Center users matched to a Connect user.
    matched: HashSet<&'a str>,
}

/// Every name and email an Identity Center user carries.
fn names(u: &IdentityUser) -> Vec<&str> {
    (u.emails.iter().map(String::as_str))
        .chain([u.user_name.as_str()])
        .collect()
}

fn dup_fix(us: &[&IdentityUser]) -> String {
    format!(
        "keep one Identity Center user per person: delete or rename one of {} in the IAM Identity Center console (the identity provider may send either)",
        us.iter().map(|u| format!("{:?}", u.user_name)).collect::<Vec<_>>().join(", ")
    )
}

impl<'a> Classifier<'a> {
    fn new(
        snap: &'a Snapshot,
        rules: &'a Rules<'a>,
        group: &'a str,
        is_assigned: &'a dyn Fn(&IdentityUser) -> bool,
    ) -> Self {
        let mut by_key: HashMap<String, Vec<&IdentityUser>> = HashMap::new();
        for u in snap.identity_users() {
            for k in fold::keys(&u.user_name, &u.emails) {
                by_key.entry(k).or_default().push(u);
            }
        }
        let mut folded: HashMap<String, Vec<&str>> = HashMap::new();
        for c in snap.connect_users() {
            (folded.entry(c.username.to_lowercase()).or_default()).push(c.username.as_str());
        }
        for v in folded.values_mut() {
            v.sort_unstable();
        }
        Classifier {
            snap,
            rules,
            group,
            is_assigned,
            by_key,
            folded,
            offboarded: HashMap::new(),
            matched: HashSet::new(),
        }
    }

    /// The Identity Center users a name or email matches without case, by user name.
    fn matches(&self, key: &str) -> Vec<&'a IdentityUser> {
        let mut v = (self.by_key.get(&fold::fold(key)).cloned()).unwrap_or_default();
        v.sort_by(|a, b| a.user_name.cmp(&b.user_name));
        v
    }

    /// `u` and every other user sharing one of its names or emails without case.
    fn dups_of(&self, us: &[&'a IdentityUser], u: &IdentityUser) -> Vec<&'a IdentityUser> {
        let mut all: Vec<&IdentityUser> = us.to_vec();
        for k in names(u) {
            all.extend(self.matches(k));
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all.dedup_by(|a, b| a.id == b.id);
        all
    }

    fn offboardable(&self, c: &str) -> Result<(), String> {
        agent::leaver(c, self.rules.mode).map(|_| ()).map_err(|e| {
            let why: Vec<String> = e.0.iter().map(ToString::to_string).collect();
            format!(
                "offboard cannot name Connect user {c:?}: {}",
                why.join("; ")
            )
        })
    }

    /// A Connect user: the first status that applies, with its fix and route.
    fn connect_user(&mut self, c: &'a crate::aws::ConnectUser) -> DriftAgent {
        let us = self.matches(&c.username);
        self.matched.extend(us.iter().map(|u| u.id.as_str()));
        let first = us.first().copied();
        let agent = |status: DriftStatus, route: Route, fix: String| DriftAgent {
            connect_username: Some(c.username.clone()),
            identity_user_name: first.map(|u| u.user_name.clone()),
            email: first.and_then(|u| u.primary_email.clone()),
            status,
            fix: Some(fix),
            fix_plan: route.files(),
            route,
            batch_row: None,
        };
        let Some(u) = first else {
            return self.connect_only(c, agent);
        };
        let dups = self.dups_of(&us, u);
        let sent = self.rules.sent(u);
        if dups.len() > 1 {
            agent(
                DriftStatus::DuplicateIdentityUser,
                Route::None,
                by_hand("Identity Center is changed by hand", &dup_fix(&dups)),
            )
        } else if u.primary_emails != 1 {
            agent(
                DriftStatus::NoPrimaryEmail,
                Route::None,
                by_hand("Identity Center is changed by hand", &format!(
                    "give Identity Center user {:?} exactly one email, marked primary, equal to the Connect username (IAM Identity Center console)",
                    u.user_name
                )),
            )
        } else if sent.as_deref() != Some(c.username.as_str()) {
            self.username_mismatch(c, u, sent.unwrap_or_default(), agent)
        } else if self.snap.membership(&u.id).is_none() {
            let group = self.group;
            match self.rules.migrate_refusal(&c.username, Some(u)) {
                None => agent(
                    DriftStatus::NotInGroup,
                    Route::Migrate,
                    format!(
                        "join {group:?}: migrate --usernames (fix plan: migrate-usernames.txt)"
                    ),
                ),
                Some(why) => agent(
                    DriftStatus::NotInGroup,
                    Route::None,
                    by_hand(
                        &why,
                        &format!(
                            "add {:?} to the group {group:?} in the IAM Identity Center console",
                            u.user_name
                        ),
                    ),
                ),
            }
        } else if !(self.is_assigned)(u) {
            match self.rules.migrate_refusal(&c.username, Some(u)) {
                None => agent(
                    DriftStatus::NotAssigned,
                    Route::Migrate,
                    "assign the application: migrate --usernames (fix plan: migrate-usernames.txt)".into(),
                ),
                Some(why) => agent(
                    DriftStatus::NotAssigned,
                    Route::None,
                    by_hand(&why, "assign the application to the agents' group (or, in user mode, the user) in the IAM Identity Center console"),
                ),
            }
        } else {
            DriftAgent {
                fix: None,
                ..agent(DriftStatus::Complete, Route::None, String::new())
            }
        }
    }

    /// A Connect user with no Identity Center user: migrate creates it, unless migrate
    /// would refuse or a case twin stands in the way.
    fn connect_only(
        &self,
        c: &crate::aws::ConnectUser,
        agent: impl Fn(DriftStatus, Route, String) -> DriftAgent,
    ) -> DriftAgent {
        let twins = &self.folded[&c.username.to_lowercase()];
        let refusal = self.rules.migrate_refusal(&c.username, None).or_else(|| {
            (twins.len() > 1).then(|| {
                format!(
                    "Connect users {} differ only in case, and only one can have an Identity Center user",
                    twins.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(" and ")
                )
            })
        });
        match refusal {
            None => agent(
                DriftStatus::ConnectOnly,
                Route::Migrate,
                "create the Identity Center user: migrate --usernames (fix plan: migrate-usernames.txt)".into(),
            ),
            Some(why) => agent(
                DriftStatus::ConnectOnly,
                Route::None,
                by_hand(&why, &if twins.len() > 1 {
                    "choose the one to keep: migrate --usernames FILE naming it exactly, then offboard --connect-only the other".to_string()
                } else {
                    format!("give the person an Identity Center user that the identity provider sends as exactly {:?} (IAM Identity Center console), or onboard them by their email with connect-onboard and remove this Connect user in the Amazon Connect console", c.username)
                }),
            ),
        }
    }

    /// A Connect user whose name is not exactly what the identity provider sends (`s`):
    /// removed alone when another Connect user is exactly that, else removed and onboarded
    /// again by `batch` — when both commands can; else by hand, saying why.
    fn username_mismatch(
        &mut self,
        c: &crate::aws::ConnectUser,
        u: &IdentityUser,
        s: String,
        agent: impl Fn(DriftStatus, Route, String) -> DriftAgent,
    ) -> DriftAgent {
        let mismatch = format!("Connect username {:?} is not exactly {s:?}", c.username);
        // Another Connect user is exactly what the identity provider sends: this one is
        // surplus.
        let exact = s != c.username && self.snap.connect_user(&s).is_some();
        let first_offboard = (self.offboarded.get(&c.username.to_lowercase()))
            .filter(|o| **o != c.username)
            .cloned();
        let route = self
            .rules
            .not_saml()
            .map_or(Ok(()), Err)
            .and_then(|()| self.offboardable(&c.username))
            .and_then(|()| match &first_offboard {
                Some(o) => Err(format!("offboard.csv already removes {o:?}, and offboard takes one entry per email: run the plan, then drift again")),
                None => Ok(()),
            })
            .and_then(|()| {
                if exact {
                    Ok((Route::Offboard, None))
                } else {
                    self.rules.batch_row(u).map(|row| (Route::OffboardThenBatch, Some(row)))
                }
            });
        match route {
            Ok((route, row)) => {
                (self.offboarded.entry(c.username.to_lowercase()))
                    .or_insert_with(|| c.username.clone());
                let fix = if route == Route::Offboard {
                    format!("{mismatch}, and Connect user {s:?} is: remove {:?} alone (fix plan: offboard --connect-only --file offboard.csv); {s:?} stays", c.username)
                } else {
                    format!("{mismatch}: remove that Connect user alone (fix plan: offboard --connect-only --file offboard.csv), then onboard again (batch.csv: the Identity Center user is kept and adopted)")
                };
                DriftAgent { batch_row: row, ..agent(DriftStatus::UsernameMismatch, route, fix) }
            }
            Err(why) => agent(
                DriftStatus::UsernameMismatch,
                Route::None,
                by_hand(&format!("{mismatch}; {why}"), &format!(
                    "change Identity Center user {:?}'s primary email (and user name) to {:?} in the IAM Identity Center console, or create the Connect user {s:?} in the Amazon Connect console and remove {:?}",
                    u.user_name, c.username, c.username
                )),
            ),
        }
    }

    /// A member of the group with no Connect user: `batch` creates it when its row would
    /// pass, else by hand.
    fn identity_only(&self, u: &'a IdentityUser) -> DriftAgent {
        let dups = self.dups_of(&[], u);
        let (status, route, fix, row) = if dups.len() > 1 {
            (
                DriftStatus::DuplicateIdentityUser,
                Route::None,
                by_hand("Identity Center is changed by hand", &dup_fix(&dups)),
                None,
            )
        } else {
            match self.rules.batch_row(u) {
                Ok(row) => (
                    DriftStatus::IdentityOnly,
                    Route::Batch,
                    "create the Connect user: batch (fix plan: batch.csv), or offboard the Identity Center user".into(),
                    Some(row),
                ),
                Err(why) => (
                    DriftStatus::IdentityOnly,
                    Route::None,
                    by_hand(&why, &format!(
                        "create the Connect user {} in the Amazon Connect console, then migrate --usernames FILE naming it; or offboard --identity-only the Identity Center user",
                        self.rules.sent(u).map(|s| format!("{s:?}")).unwrap_or_else(|| "named as the identity provider sends".into())
                    )),
                    None,
                ),
            }
        };
        DriftAgent {
            connect_username: None,
            identity_user_name: Some(u.user_name.clone()),
            email: u.primary_email.clone(),
            status,
            fix: Some(fix),
            fix_plan: route.files(),
            route,
            batch_row: row,
        }
    }
}
