//! `sync`: the Identity Center groups of `[[sync.groups]]` (provisioned by the identity
//! provider over SCIM) as the desired state of Connect's agents, converged with `apply`'s
//! machinery. This file owns the mapping: the groups and profile names resolved (a mapping
//! error is an input error before any write, listing the names that exist), the direct
//! members of each group (ListGroupMemberships), each member's user from apply's one bulk
//! ListUsers, and each member as a roster row with its names kept exactly (`roster::Exact`).
//!
//! Rules: the Connect username is the user's primary email (`role_session_name = "email"`)
//! or its UserName, exactly, case kept; a member without one usable primary email is
//! `skip`ped with why, never guessed. A member of several mapped groups gets the union of
//! their security profiles and every other field of the first group listed (the order of
//! `[[sync.groups]]` is the precedence); the plan's detail names the groups. The rest (the
//! plan, the sync workflow that adopts the Identity Center user and never creates or deletes
//! it, `--prune` of the Connect users of members who left every mapped group) is apply's.
//!
//! A [`Scope`] (events of `sync --watch --queue`, read by `events`) narrows what is planned
//! to the agents of some users and groups; the rest are kept as they are. A scope of users
//! only is also read narrowly (`snapshot_for`: those users, not the directories). `watch`
//! owns the unattended loop: the queue, the interval, the standby.

pub mod events;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::agent::fold::fold;
use crate::agent::AgentInput;
use crate::aws::{IdentityStoreApi, IdentityUser, Named};
use crate::config::{Config, RoleSessionName, SyncGroup};
use crate::preflight::{self, resolve_name};
use crate::steps::snapshot::Snapshot;

use super::apply::roster::{Exact, RosterRow, Says, MANAGED};
use super::apply::{Action, PlanRow};
use super::{Error, NewRun};

/// The sync workflow, embedded.
pub const BUILTIN_SYNC_WORKFLOW: &str = include_str!("../../../workflows/sync-agent.toml");

/// The desired agents of the mapped groups.
pub(crate) struct Members {
    /// One row per desired agent, in the groups' order.
    pub rows: Vec<RosterRow>,
    /// Members that cannot be agents, as `skip` rows with why.
    pub skipped: Vec<PlanRow>,
    /// Every name of the skipped members (UserName, emails), folded: never pruned.
    pub kept: HashSet<String>,
    /// A scoped reconcile: only these Connect usernames (folded) may be removed.
    pub remove_only: Option<HashSet<String>>,
    /// Each mapped group's direct members (group id → user ids), as read: the watch keeps
    /// them, so that a group's event also reaches who has left it since.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// `groups` holds these users' memberships only (a scope of users), not every member.
    pub groups_of: Option<BTreeSet<String>>,
}

/// A scope that names users only: sync reads those users, not the directories.
pub(super) fn narrow(scope: Option<&Scope>) -> Option<&Scope> {
    scope.filter(|s| s.groups.is_empty() && !s.users.is_empty())
}

/// The snapshot of a scope of users: each one (DescribeUser) and its Connect user by the
/// username sync gives it, a few reads per user (`phase::bulk_read_for`).
pub(super) async fn snapshot_for(
    config: &Config,
    new: &NewRun,
    scope: &Scope,
    listing: super::phase::Listing,
) -> Result<Snapshot, Error> {
    let (store, ids) = (&new.target.identity_store_id, &new.clients.identity_store);
    let mode = config.identity_center.role_session_name;
    let (mut users, mut usernames) = (Vec::new(), Vec::new());
    for id in &scope.users {
        let read = ids.describe_user(store, id);
        let user = crate::aws::retry::for_caller(std::sync::Arc::from("sync"), read)
            .await
            .map_err(|source| preflight::Error::Aws {
                context: format!("reading the Identity Center user {id} an event names"),
                source,
            })?;
        // Gone from the identity store: nothing of it to plan (as in a full reconcile).
        let Some(u) = user else { continue };
        if let Ok((_, username)) = exact_names(&u, mode) {
            usernames.push(username);
        }
        users.push(u);
    }
    let known = scope.connect_usernames.as_deref();
    super::phase::bulk_read_for(&new.clients, &new.target, listing, &usernames, users, known).await
}

/// What a reconcile plans: the agents of these Identity Store users and groups only (an
/// event's hint), instead of every member of every mapped group.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// User ids: each one's agent is planned (created, updated, or removed with `--prune`).
    pub users: BTreeSet<String>,
    /// Group ids: the agents of a mapped group's members are planned, and every removal;
    /// an unmapped group plans nothing. (Who has left the group is not in it any more: the
    /// watch adds the group's former members to `users`.)
    pub groups: BTreeSet<String>,
    /// Connect's usernames at the last full read (folded → exact), if known: a user absent
    /// by its exact name is checked against them for a twin in other case, instead of
    /// listing every Connect user again.
    pub connect_usernames: Option<std::sync::Arc<HashMap<String, String>>>,
}

/// A mapped group resolved: its id, and its mapping.
struct Mapped<'a> {
    name: String,
    id: String,
    fields: &'a SyncGroup,
}

/// The members of the mapped groups as desired agents; a mapping error before any write.
pub(super) async fn desired(
    config: &Config,
    new: &NewRun,
    snapshot: &Snapshot,
    scope: Option<&Scope>,
) -> Result<Members, Error> {
    let mapping = &config.sync.groups;
    if mapping.is_empty() {
        return Err(Error::Input(
            "sync: the config maps no group: add a [[sync.groups]] (group, routing_profile, security_profiles) per Identity Center group whose members are agents; nothing was written".into(),
        ));
    }
    if new.target.identity_mode != crate::agent::IdentityMode::Saml {
        return Err(Error::Input(format!(
            "sync: instance {} stores its users with {} identity management: its agents do not sign in through IAM Identity Center, so its groups cannot provision them; sync needs a SAML instance (nothing was written)",
            new.target.instance_id, new.target.identity_mode
        )));
    }
    let store = &new.target.identity_store_id;
    let ids = &new.clients.identity_store;
    let groups = crate::aws::retry::for_caller(std::sync::Arc::from("sync"), async {
        // One GetGroupId per mapped group by its display name; any not found so (an id, a
        // name in other case, a missing group): every group listed (ListGroups, ⌈G/100⌉
        // pages), which resolves ids and names without case and names what exists.
        let mut found = Vec::new();
        for g in mapping {
            match ids.group_id(store, g.group.trim()).await? {
                Some(id) => found.push((id, g.group.trim().to_string())),
                None => return ids.list_groups(store).await,
            }
        }
        Ok(found)
    })
    .await
    .map_err(|source| preflight::Error::Aws {
        context: "reading the Identity Center groups for sync".into(),
        source,
    })?;
    let mapped = resolve(mapping, &groups, &new.catalog)?;
    let users: HashMap<&str, &IdentityUser> = snapshot
        .identity_users()
        .map(|u| (u.id.as_str(), u))
        .collect();
    // Each user's groups, in precedence order; users in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut of_user: HashMap<String, Vec<usize>> = HashMap::new();
    let mut groups_read: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // A scope of users only: their memberships, not every member (the snapshot holds them).
    let few: Option<Vec<String>> =
        narrow(scope).map(|_| snapshot.identity_users().map(|u| u.id.clone()).collect());
    for (i, g) in mapped.iter().enumerate() {
        let read = async {
            match &few {
                None => ids.list_memberships(store, &g.id).await,
                Some(users) => {
                    let mut out = Vec::new();
                    for u in users {
                        if let Some(m) = ids.membership_id(store, &g.id, u).await? {
                            out.push((m, u.clone()));
                        }
                    }
                    Ok(out)
                }
            }
        };
        let members = crate::aws::retry::for_caller(std::sync::Arc::from("sync"), read)
            .await
            .map_err(|source| preflight::Error::Aws {
                context: format!(
                    "listing the members of the Identity Center group {:?}",
                    g.name
                ),
                source,
            })?;
        let ids = groups_read.entry(g.id.clone()).or_default();
        for (_, user) in members {
            ids.insert(user.clone());
            let seen = of_user.entry(user.clone()).or_default();
            if seen.is_empty() {
                order.push(user);
            }
            if !seen.contains(&i) {
                seen.push(i);
            }
        }
    }
    let mode = config.identity_center.role_session_name;
    let mut out = Members {
        rows: Vec::new(),
        skipped: Vec::new(),
        kept: HashSet::new(),
        remove_only: scope.and_then(|s| removable(s, &mapped, &users, mode)),
        groups: groups_read,
        groups_of: few.map(|f| f.into_iter().collect()),
    };
    for user_id in order {
        let in_groups = &of_user[&user_id];
        let names: Vec<&str> = in_groups.iter().map(|&i| mapped[i].name.as_str()).collect();
        let in_scope = scope.is_none_or(|s| {
            s.users.contains(&user_id)
                || in_groups.iter().any(|&i| s.groups.contains(&mapped[i].id))
        });
        if !in_scope {
            // Out of this reconcile's scope: kept as it is (never pruned by it).
            out.kept.insert(fold(&user_id));
            if let Some(u) = users.get(user_id.as_str()) {
                out.kept.extend(names_of(u).map(fold));
            }
            continue;
        }
        let Some(u) = users.get(user_id.as_str()) else {
            // Listed as a member, not by ListUsers (created since): the next sync sees it.
            out.skipped.push(skip(
                &user_id,
                format!(
                    "member of {} but not listed by ListUsers (created during this sync?): not planned; the next sync plans it",
                    shown_groups(&names)
                ),
            ));
            out.kept.insert(fold(&user_id));
            continue;
        };
        match exact_names(u, mode) {
            Ok((email, username)) => {
                let fields: Vec<&SyncGroup> = in_groups.iter().map(|&i| mapped[i].fields).collect();
                out.rows
                    .push(row(u, email, username, &fields, &names, &new.catalog));
            }
            Err(why) => {
                out.skipped.push(skip(&u.user_name, why));
                out.kept.insert(fold(&u.user_name));
                out.kept.extend(u.emails.iter().map(|e| fold(e)));
            }
        }
    }
    Ok(out)
}

/// A scoped reconcile's removals: any (a mapped group is in scope: who left it is not
/// listed any more), else the Connect usernames the scope's users would have (folded).
fn removable(
    scope: &Scope,
    mapped: &[Mapped<'_>],
    users: &HashMap<&str, &IdentityUser>,
    mode: RoleSessionName,
) -> Option<HashSet<String>> {
    if mapped.iter().any(|g| scope.groups.contains(&g.id)) {
        return None;
    }
    Some(
        (scope.users.iter())
            .filter_map(|id| users.get(id.as_str()))
            .flat_map(|u| {
                let username = exact_names(u, mode).ok().map(|(_, n)| n);
                names_of(u).map(str::to_string).chain(username)
            })
            .map(|n| fold(&n))
            .collect(),
    )
}

/// A user's UserName and emails.
fn names_of(u: &IdentityUser) -> impl Iterator<Item = &str> {
    std::iter::once(u.user_name.as_str()).chain(u.emails.iter().map(String::as_str))
}

/// Every mapped group and profile name resolved, or every mapping error at once.
fn resolve<'a>(
    mapping: &'a [SyncGroup],
    groups: &[(String, String)],
    catalog: &preflight::Catalog,
) -> Result<Vec<Mapped<'a>>, Error> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let existing = || {
        let mut names: Vec<&str> = groups.iter().map(|(_, n)| n.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
    };
    for (i, g) in mapping.iter().enumerate() {
        let at = |k: &str| format!("sync.groups[{i}].{k}");
        let wanted = g.group.trim();
        // By id, else by display name (unique without case in an identity store).
        let found = (groups.iter().find(|(id, _)| id == wanted))
            .or_else(|| groups.iter().find(|(_, n)| n.eq_ignore_ascii_case(wanted)));
        match found {
            Some((id, name)) => out.push(Mapped {
                name: name.clone(),
                id: id.clone(),
                fields: g,
            }),
            None => errors.push(format!(
                "{} {:?}: no Identity Center group has this display name or id; existing: {}",
                at("group"),
                g.group,
                existing()
            )),
        }
        let mut check = |key: String, what: &str, value: &str, items: &[Named]| {
            if let Err(e) = resolve_name(&key, what, value, items) {
                errors.push(format!("{} {}: {}", e.field, e.value, e.rule));
            }
        };
        check(
            at("routing_profile"),
            "routing profile",
            &g.routing_profile,
            &catalog.routing_profiles,
        );
        for sp in &g.security_profiles {
            check(
                at("security_profiles"),
                "security profile",
                sp,
                &catalog.security_profiles,
            );
        }
        if let Some(h) = &g.hierarchy_group {
            check(
                at("hierarchy_group"),
                "hierarchy group",
                h,
                &catalog.hierarchy_groups,
            );
        }
    }
    if !errors.is_empty() {
        let summary = format!(
            "{} problem(s) in the config's [[sync.groups]]; nothing was written",
            errors.len()
        );
        return Err(Error::Invalid {
            problems: errors,
            summary,
        });
    }
    Ok(out)
}

/// The member's primary email and Connect username, exactly; or why it cannot be an agent.
fn exact_names(u: &IdentityUser, mode: RoleSessionName) -> Result<(String, String), String> {
    let email = match (&u.primary_email, u.primary_emails) {
        (Some(e), 1) if !e.trim().is_empty() => e.clone(),
        (_, n) if n > 1 => {
            return Err(format!(
                "Identity Center user {:?} has {n} emails flagged primary: SAML sign-in sends one primary email, so which one is its Connect username cannot be told; not guessed: leave one primary in the identity provider",
                u.user_name
            ))
        }
        _ => {
            return Err(format!(
                "Identity Center user {:?} has no primary email (emails: {:?}): {}; not guessed: give it a primary email in the identity provider",
                u.user_name,
                u.emails,
                match mode {
                    RoleSessionName::Email => "SAML sign-in sends the primary email as the Connect username",
                    RoleSessionName::UserName => "an agent needs one (its Identity Center email)",
                }
            ))
        }
    };
    let username = match mode {
        RoleSessionName::Email => email.clone(),
        RoleSessionName::UserName => u.user_name.clone(),
    };
    Ok((email, username))
}

/// A member as a roster row: names from Identity Center; the union of the security profiles
/// of its groups (by the profile each name resolves to), every other field of the first.
fn row(
    u: &IdentityUser,
    email: String,
    username: String,
    fields: &[&SyncGroup],
    groups: &[&str],
    catalog: &preflight::Catalog,
) -> RosterRow {
    let first = fields[0];
    let mut security_profiles: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for sp in fields.iter().flat_map(|g| g.security_profiles.iter()) {
        let id = resolve_name("", "", sp, &catalog.security_profiles)
            .unwrap_or_else(|_| sp.to_lowercase());
        if seen.insert(id) {
            security_profiles.push(sp.clone());
        }
    }
    let input = AgentInput {
        email: email.clone(),
        first_name: u.given_name.clone(),
        last_name: u.family_name.clone(),
        routing_profile: Some(first.routing_profile.clone()),
        security_profiles,
        hierarchy_group: first.hierarchy_group.clone(),
        phone_type: first.phone_type,
        auto_accept: first.auto_accept,
        acw_timeout: first.acw_timeout,
        tags: (first.tags.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    };
    let mut says: BTreeMap<&'static str, Says> = BTreeMap::new();
    for f in MANAGED {
        let set = match f {
            "first_name" | "last_name" | "routing_profile" | "security_profiles" => true,
            "hierarchy_group" => input.hierarchy_group.is_some(),
            "phone_type" => input.phone_type.is_some(),
            "auto_accept" => input.auto_accept.is_some(),
            "acw_timeout" => input.acw_timeout.is_some(),
            "tags" => !input.tags.is_empty(),
            _ => false,
        };
        says.insert(f, if set { Says::Set } else { Says::Keep });
    }
    let detail = match groups {
        [one] => format!("member of {one:?}"),
        [first, ..] => format!(
            "member of {}: security profiles of all of them, the other fields of {first:?} (listed first)",
            shown_groups(groups)
        ),
        [] => String::new(),
    };
    RosterRow {
        at: format!("Identity Center user {:?}", u.user_name),
        email: email.clone(),
        input,
        says,
        password: None,
        problems: Vec::new(),
        exact: Some(Exact {
            email,
            username,
            identity_user_name: u.user_name.clone(),
            detail: Some(detail),
        }),
    }
}

fn shown_groups(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn skip(who: &str, why: String) -> PlanRow {
    PlanRow {
        agent: who.to_string(),
        action: Action::Skip,
        changes: Vec::new(),
        detail: Some(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sync workflow can neither create nor delete an Identity Center user, nor write
    /// its names: its identity step is the adopt-only action, and no step is one that writes
    /// the user.
    #[test]
    fn the_sync_workflow_cannot_create_delete_or_rename_the_identity_center_user() {
        let wf: toml::Value = toml::from_str(BUILTIN_SYNC_WORKFLOW).unwrap();
        let steps = wf["steps"].as_array().unwrap();
        let action = |id: &str| {
            (steps.iter())
                .find(|s| s["id"].as_str() == Some(id))
                .and_then(|s| s["action"].as_str())
                .map(str::to_string)
        };
        assert_eq!(
            action("identity_user").as_deref(),
            Some(crate::steps::IDENTITY_USER_ADOPTION)
        );
        for s in steps {
            let a = s["action"].as_str().unwrap();
            assert!(
                ![
                    crate::steps::IDENTITY_USER_ACTION,
                    crate::steps::IDENTITY_USER_REMOVAL,
                    "identitystore.update_names",
                ]
                .contains(&a),
                "step {} uses {a}",
                s["id"]
            );
        }
        // Otherwise apply's workflow: the same Connect steps, in the same order.
        let apply: toml::Value = toml::from_str(super::super::BUILTIN_APPLY_WORKFLOW).unwrap();
        let ids = |v: &toml::Value| -> Vec<String> {
            (v["steps"].as_array().unwrap().iter())
                .map(|s| s["id"].as_str().unwrap().to_string())
                .filter(|id| id != "identity_names")
                .collect()
        };
        assert_eq!(ids(&wf), ids(&apply));
    }

    fn user(name: &str, primary: Option<&str>, primaries: usize) -> IdentityUser {
        IdentityUser {
            id: "u".into(),
            user_name: name.into(),
            primary_email: primary.map(String::from),
            emails: primary.into_iter().map(String::from).collect(),
            primary_emails: primaries,
            given_name: "Ana".into(),
            family_name: "Silva".into(),
            display_name: "Ana Silva".into(),
        }
    }

    #[test]
    fn the_connect_username_is_the_primary_email_or_the_user_name_exactly_never_guessed() {
        let u = user("asilva", Some("Ana.Silva@Example.com"), 1);
        assert_eq!(
            exact_names(&u, RoleSessionName::Email).unwrap(),
            (
                "Ana.Silva@Example.com".into(),
                "Ana.Silva@Example.com".into()
            )
        );
        assert_eq!(
            exact_names(&u, RoleSessionName::UserName).unwrap().1,
            "asilva"
        );
        let why = exact_names(&user("asilva", None, 0), RoleSessionName::Email).unwrap_err();
        assert!(why.contains("no primary email"), "{why}");
        let why = exact_names(
            &user("asilva", Some("a@example.com"), 2),
            RoleSessionName::Email,
        )
        .unwrap_err();
        assert!(why.contains("2 emails flagged primary"), "{why}");
    }
}
