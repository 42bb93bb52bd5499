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

use crate::agent::{self, AgentInput, Defaults, IdentityMode};
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
        if !(u.user_name.eq_ignore_ascii_case(&spec.email) && p.eq_ignore_ascii_case(&spec.email)) {
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

/// Classifies every agent of the snapshot.
fn classify(
    snap: &Snapshot,
    rules: &Rules<'_>,
    group: &str,
    is_assigned: &dyn Fn(&IdentityUser) -> bool,
) -> DriftReport {
    // Identity Center users by every folded name and email they carry.
    let mut by_key: HashMap<String, Vec<&IdentityUser>> = HashMap::new();
    for u in snap.identity_users() {
        let mut keys: Vec<String> = u.emails.iter().map(|e| e.to_lowercase()).collect();
        keys.push(u.user_name.to_lowercase());
        keys.sort();
        keys.dedup();
        for k in keys {
            by_key.entry(k).or_default().push(u);
        }
    }
    let matches = |key: &str| -> Vec<&IdentityUser> {
        let mut v = by_key.get(&key.to_lowercase()).cloned().unwrap_or_default();
        v.sort_by(|a, b| a.user_name.cmp(&b.user_name));
        v
    };
    fn names(u: &IdentityUser) -> Vec<&str> {
        (u.emails.iter().map(String::as_str))
            .chain([u.user_name.as_str()])
            .collect()
    }
    let dup_fix = |us: &[&IdentityUser]| {
        format!(
            "keep one Identity Center user per person: delete or rename one of {} in the IAM Identity Center console (the identity provider may send either)",
            us.iter().map(|u| format!("{:?}", u.user_name)).collect::<Vec<_>>().join(", ")
        )
    };
    // Connect usernames by folded form: of two that differ only in case, at most one can
    // have an Identity Center user, and offboard takes one entry per email.
    let mut folded: HashMap<String, Vec<&str>> = HashMap::new();
    for c in snap.connect_users() {
        (folded.entry(c.username.to_lowercase()).or_default()).push(c.username.as_str());
    }
    for v in folded.values_mut() {
        v.sort_unstable();
    }
    let offboardable = |c: &str| -> Result<(), String> {
        agent::leaver(c, rules.mode).map(|_| ()).map_err(|e| {
            let why: Vec<String> = e.0.iter().map(ToString::to_string).collect();
            format!(
                "offboard cannot name Connect user {c:?}: {}",
                why.join("; ")
            )
        })
    };
    // The first Connect user of each folded name that the plan offboards; offboard.csv
    // holds one entry per email.
    let mut offboarded: HashMap<String, String> = HashMap::new();
    let mut matched: HashSet<&str> = HashSet::new();
    let mut agents = Vec::new();
    let mut connect: Vec<_> = snap.connect_users().collect();
    connect.sort_by(|a, b| a.username.cmp(&b.username));
    for c in connect {
        let us = matches(&c.username);
        matched.extend(us.iter().map(|u| u.id.as_str()));
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
        let twins = &folded[&c.username.to_lowercase()];
        let Some(u) = first else {
            let refusal = rules.migrate_refusal(&c.username, None).or_else(|| {
                (twins.len() > 1).then(|| {
                    format!(
                        "Connect users {} differ only in case, and only one can have an Identity Center user",
                        twins.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(" and ")
                    )
                })
            });
            agents.push(match refusal {
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
            });
            continue;
        };
        // Several users for this person, or another user sharing one of this user's
        // names or emails without case.
        let dups: Vec<&IdentityUser> = {
            let mut all: Vec<&IdentityUser> = us.clone();
            for k in names(u) {
                all.extend(matches(k));
            }
            all.sort_by(|a, b| a.id.cmp(&b.id));
            all.dedup_by(|a, b| a.id == b.id);
            all
        };
        let sent = rules.sent(u);
        agents.push(if dups.len() > 1 {
            agent(DriftStatus::DuplicateIdentityUser, Route::None, by_hand("Identity Center is changed by hand", &dup_fix(&dups)))
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
            let s = sent.clone().unwrap_or_default();
            let mismatch = format!("Connect username {:?} is not exactly {s:?}", c.username);
            // Another Connect user is exactly what the identity provider sends: this one is
            // surplus.
            let exact = s != c.username && snap.connect_user(&s).is_some();
            let first_offboard = offboarded.get(&c.username.to_lowercase()).filter(|o| **o != c.username);
            let route = rules
                .not_saml()
                .map_or(Ok(()), Err)
                .and_then(|()| offboardable(&c.username))
                .and_then(|()| match first_offboard {
                    Some(o) => Err(format!("offboard.csv already removes {o:?}, and offboard takes one entry per email: run the plan, then drift again")),
                    None => Ok(()),
                })
                .and_then(|()| {
                    if exact {
                        Ok((Route::Offboard, None))
                    } else {
                        rules.batch_row(u).map(|row| (Route::OffboardThenBatch, Some(row)))
                    }
                });
            match route {
                Ok((route, row)) => {
                    offboarded.entry(c.username.to_lowercase()).or_insert_with(|| c.username.clone());
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
        } else if snap.membership(&u.id).is_none() {
            match rules.migrate_refusal(&c.username, Some(u)) {
                None => agent(
                    DriftStatus::NotInGroup,
                    Route::Migrate,
                    format!("join {group:?}: migrate --usernames (fix plan: migrate-usernames.txt)"),
                ),
                Some(why) => agent(
                    DriftStatus::NotInGroup,
                    Route::None,
                    by_hand(&why, &format!("add {:?} to the group {group:?} in the IAM Identity Center console", u.user_name)),
                ),
            }
        } else if !is_assigned(u) {
            match rules.migrate_refusal(&c.username, Some(u)) {
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
            DriftAgent { fix: None, ..agent(DriftStatus::Complete, Route::None, String::new()) }
        });
    }
    // Group members with no Connect user.
    let mut rest: Vec<&IdentityUser> = snap
        .identity_users()
        .filter(|u| !matched.contains(u.id.as_str()) && snap.membership(&u.id).is_some())
        .collect();
    rest.sort_by(|a, b| a.user_name.cmp(&b.user_name));
    for u in rest {
        let mut dups: Vec<&IdentityUser> = names(u).into_iter().flat_map(&matches).collect();
        dups.sort_by(|a, b| a.id.cmp(&b.id));
        dups.dedup_by(|a, b| a.id == b.id);
        let (status, route, fix, row) = if dups.len() > 1 {
            (
                DriftStatus::DuplicateIdentityUser,
                Route::None,
                by_hand("Identity Center is changed by hand", &dup_fix(&dups)),
                None,
            )
        } else {
            match rules.batch_row(u) {
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
                        rules.sent(u).map(|s| format!("{s:?}")).unwrap_or_else(|| "named as the identity provider sends".into())
                    )),
                    None,
                ),
            }
        };
        agents.push(DriftAgent {
            connect_username: None,
            identity_user_name: Some(u.user_name.clone()),
            email: u.primary_email.clone(),
            status,
            fix: Some(fix),
            fix_plan: route.files(),
            route,
            batch_row: row,
        });
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
