//! `drift`: every agent of both sides classified from one bulk read (the batch's
//! [`Snapshot`]: Connect ListUsers, Identity Store ListUsers, the group's members and its
//! assignment; in user mode the application's assignments), paced like every call.
//!
//! An agent is a Connect user, or an Identity Center user in the agents' group. Each gets
//! the first status that applies, in this order: `duplicate_identity_user`,
//! `connect_only`, `identity_only`, `no_primary_email`, `username_mismatch`,
//! `not_in_group`, `not_assigned`, `complete`. Read-only; `--fix-plan DIR` files are written
//! by the CLI from [`DriftReport::plan`].

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::aws::{IdentityUser, Principal, SsoAdminApi as _};
use crate::config::{AssignmentMode, RoleSessionName};
use crate::steps::snapshot::{Scope, Snapshot};
use crate::target;

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
    /// Names for a `batch` row (identity side), not printed.
    #[serde(skip)]
    pub names: (String, String),
}

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
    /// The fix plan: connect_only / not_in_group / not_assigned → migrate (it adopts the
    /// Connect user, creates or adopts the Identity Center user, joins, assigns);
    /// identity_only → batch; username_mismatch → offboard the wrongly named Connect user
    /// alone (`--connect-only`: the Identity Center user, its sign-in and MFA, stay), then
    /// batch with the Identity Center email. Duplicates and missing primary emails
    /// are fixed by hand in the console (see their fix).
    pub fn plan(&self) -> FixPlan {
        let mut p = FixPlan::default();
        for a in &self.agents {
            match a.status {
                DriftStatus::ConnectOnly | DriftStatus::NotInGroup | DriftStatus::NotAssigned => {
                    p.migrate_usernames.extend(a.connect_username.clone())
                }
                DriftStatus::IdentityOnly => p.batch.extend(
                    a.email
                        .clone()
                        .map(|e| (e, a.names.0.clone(), a.names.1.clone())),
                ),
                DriftStatus::UsernameMismatch => {
                    p.offboard.extend(a.connect_username.clone());
                    p.batch.extend(
                        a.email
                            .clone()
                            .map(|e| (e, a.names.0.clone(), a.names.1.clone())),
                    );
                }
                _ => {}
            }
        }
        p
    }
}

/// Runs `drift`.
pub async fn drift(ctx: &Context) -> Result<DriftReport, Error> {
    let config = ctx.config()?;
    let mut regions = ctx.new_run_regions();
    let clients = ctx.clients(&mut regions).await?;
    let (target, _) =
        target::discover_for_diagnosis(config, &clients.connect, &clients.sso_admin).await?;
    let read = |what: &str| {
        let context = format!("listing {what} for drift");
        move |source| target::Error::Aws { context, source }
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
            config.identity_center.role_session_name,
            &target.group,
            &is_assigned,
        )
    })
}

/// Classifies every agent of the snapshot.
fn classify(
    snap: &Snapshot,
    session: RoleSessionName,
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
    let mut matched: HashSet<&str> = HashSet::new();
    let mut agents = Vec::new();
    let mut connect: Vec<_> = snap.connect_users().collect();
    connect.sort_by(|a, b| a.username.cmp(&b.username));
    for c in connect {
        let us = matches(&c.username);
        matched.extend(us.iter().map(|u| u.id.as_str()));
        let first = us.first().copied();
        let agent = |status: DriftStatus, fix: Option<String>| DriftAgent {
            connect_username: Some(c.username.clone()),
            identity_user_name: first.map(|u| u.user_name.clone()),
            email: first.and_then(|u| u.primary_email.clone()),
            status,
            fix,
            names: first
                .map(|u| (u.given_name.clone(), u.family_name.clone()))
                .unwrap_or_default(),
        };
        let Some(u) = first else {
            agents.push(agent(
                DriftStatus::ConnectOnly,
                Some("create the Identity Center user: migrate --usernames (fix plan: migrate-usernames.txt)".into()),
            ));
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
        let sent = match session {
            RoleSessionName::Email => u.primary_email.clone(),
            RoleSessionName::UserName => Some(u.user_name.clone()),
        };
        agents.push(if dups.len() > 1 {
            agent(DriftStatus::DuplicateIdentityUser, Some(dup_fix(&dups)))
        } else if u.primary_emails != 1 {
            agent(
                DriftStatus::NoPrimaryEmail,
                Some(format!(
                    "give Identity Center user {:?} exactly one email, marked primary, equal to the Connect username (IAM Identity Center console)",
                    u.user_name
                )),
            )
        } else if sent.as_deref() != Some(c.username.as_str()) {
            agent(
                DriftStatus::UsernameMismatch,
                Some(format!(
                    "Connect username {:?} is not exactly {:?}: remove that Connect user alone (fix plan: offboard --connect-only --file offboard.csv), then onboard again (batch.csv: the Identity Center user is kept and adopted)",
                    c.username,
                    sent.unwrap_or_default()
                )),
            )
        } else if snap.membership(&u.id).is_none() {
            agent(
                DriftStatus::NotInGroup,
                Some(format!("join {group:?}: migrate --usernames (fix plan: migrate-usernames.txt)")),
            )
        } else if !is_assigned(u) {
            agent(
                DriftStatus::NotAssigned,
                Some("assign the application: migrate --usernames (fix plan: migrate-usernames.txt)".into()),
            )
        } else {
            agent(DriftStatus::Complete, None)
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
        let (status, fix) = if dups.len() > 1 {
            (DriftStatus::DuplicateIdentityUser, dup_fix(&dups))
        } else {
            (
                DriftStatus::IdentityOnly,
                "create the Connect user: batch (fix plan: batch.csv), or offboard the Identity Center user".into(),
            )
        };
        agents.push(DriftAgent {
            connect_username: None,
            identity_user_name: Some(u.user_name.clone()),
            email: u.primary_email.clone(),
            status,
            fix: Some(fix),
            names: (u.given_name.clone(), u.family_name.clone()),
        });
    }
    agents.sort_by_key(|a| a.status);
    let mut counts: BTreeMap<&'static str, usize> = [
        DriftStatus::DuplicateIdentityUser,
        DriftStatus::ConnectOnly,
        DriftStatus::IdentityOnly,
        DriftStatus::NoPrimaryEmail,
        DriftStatus::UsernameMismatch,
        DriftStatus::NotInGroup,
        DriftStatus::NotAssigned,
        DriftStatus::Complete,
    ]
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
