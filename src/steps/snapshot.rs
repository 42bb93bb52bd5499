//! Bulk reads for a batch: one listing of each directory, taken before the first write, so
//! that a new agent costs one write per step and no per-agent read (and, for `apply`, an
//! unchanged agent no read at all: SearchUsers lists every user with its fields).
//!
//! What a listing can prove is limited, and the rules say so:
//! - Each (step, agent) is answered from the listing **once**: the plan's lookup. Every
//!   later lookup of that step (after a refused or unanswered write, on resume) asks AWS,
//!   because the listing predates this run's writes.
//! - Absence in a listing may be stale (a user created meanwhile, or not yet visible): the
//!   engine then writes, the service answers "already exists", and the engine's per-agent
//!   lookup and settle rules decide, as they would without a listing.
//! - Shared facts learnt during the run (the group's id, its application assignment) are
//!   remembered, so concurrent agents stop asking once one of them knows.

use crate::agent::fold::fold;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::aws::Result;
use crate::aws::{ConnectApi, ConnectUser, IdentityStoreApi, IdentityUser, Principal, SsoAdminApi};

/// What the listings said, and which lookups they have answered.
#[derive(Debug, Default)]
pub struct Snapshot {
    connect_users: HashMap<String, ConnectUser>,
    /// Identity Store users by id; the two indexes compare without case (as the service's
    /// uniqueness does).
    ids_users: HashMap<String, IdentityUser>,
    ids_by_name: HashMap<String, String>,
    ids_by_email: HashMap<String, String>,
    /// The agents' group: `None` = not listed (ask), `Some(None)` = listed, absent.
    group_id: Mutex<Option<Option<String>>>,
    /// Members of the agents' group: user id → membership id.
    memberships: HashMap<String, String>,
    /// Whether the group is assigned to the application (group mode).
    group_assigned: Mutex<Option<bool>>,
    answered: Mutex<HashSet<(Lookup, String)>>,
}

/// The lookups a snapshot can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// The Connect user, by username.
    ConnectUser,
    /// The Identity Store user, by user name and email.
    IdentityUser,
    /// The membership of a user in the agents' group.
    Membership,
    /// The application assignment.
    Assignment,
    /// A field group `apply` updates.
    Update(super::update::Field),
}

/// Where to list.
pub struct Scope<'a> {
    /// Connect instance id.
    pub instance_id: &'a str,
    /// Identity store id.
    pub identity_store_id: &'a str,
    /// The agents' group name.
    pub group: &'a str,
    /// The Amazon Connect application (group mode: its group assignment is read once).
    pub application_arn: Option<&'a str>,
    /// List Connect's users with their profiles, phone config and tags (SearchUsers, for
    /// `apply`), not just their ids (ListUsers).
    pub details: bool,
}

impl Snapshot {
    /// Lists Connect's users, the Identity Store's users, the group and its members, and
    /// (group mode) the group's assignment.
    pub async fn take(
        connect: &dyn ConnectApi,
        ids: &dyn IdentityStoreApi,
        sso: &dyn SsoAdminApi,
        scope: &Scope<'_>,
    ) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        let users = if scope.details {
            connect.search_users(scope.instance_id).await?
        } else {
            connect.list_users(scope.instance_id).await?
        };
        for u in users {
            s.connect_users.insert(u.username.clone(), u);
        }
        s.index(ids.list_users(scope.identity_store_id).await?);
        s.read_group(ids, sso, scope, None).await?;
        Ok(s)
    }

    /// The same, of a few agents only (the users an event of `sync --watch` names): each
    /// Connect user by its exact username (SearchUsers EXACT, with its fields; one that is
    /// absent lists them all, to see a twin in other case), the given Identity Store users
    /// (read by their ids), and their memberships in the group (GetGroupMembershipId): a
    /// few reads per agent, whatever the size of the Identity Store.
    pub async fn take_for(
        connect: &dyn ConnectApi,
        ids: &dyn IdentityStoreApi,
        sso: &dyn SsoAdminApi,
        scope: &Scope<'_>,
        usernames: &[String],
        users: Vec<IdentityUser>,
        known: Option<&HashMap<String, String>>,
    ) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        for name in usernames {
            if let Some(u) = connect.search_user_details(scope.instance_id, name).await? {
                s.connect_users.insert(u.username.clone(), u);
                continue;
            }
            // Absent by its exact name: a user of the same name in other case (which
            // SearchUsers EXACT may not match) would make creating it a conflict. Told by
            // the usernames known from the last full read (the twin, by name only), else
            // by listing every Connect user, as `take` does.
            match known {
                Some(known) => {
                    if let Some(twin) = known.get(&fold(name)).filter(|t| *t != name) {
                        let twin = ConnectUser {
                            username: twin.clone(),
                            ..ConnectUser::default()
                        };
                        s.connect_users.insert(twin.username.clone(), twin);
                    }
                }
                None => {
                    for u in connect.search_users(scope.instance_id).await? {
                        s.connect_users.insert(u.username.clone(), u);
                    }
                    break;
                }
            }
        }
        let of: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        s.index(users);
        s.read_group(ids, sso, scope, Some(&of)).await?;
        Ok(s)
    }

    /// The Identity Store users, indexed by name and email without case.
    fn index(&mut self, users: Vec<IdentityUser>) {
        for u in users {
            self.ids_by_name.insert(fold(&u.user_name), u.id.clone());
            for e in &u.emails {
                self.ids_by_email
                    .entry(fold(e))
                    .or_insert_with(|| u.id.clone());
            }
            self.ids_users.insert(u.id.clone(), u);
        }
    }

    /// The agents' group, its members (every one, or the memberships of `of` only), and
    /// (group mode) its assignment.
    async fn read_group(
        &mut self,
        ids: &dyn IdentityStoreApi,
        sso: &dyn SsoAdminApi,
        scope: &Scope<'_>,
        of: Option<&[String]>,
    ) -> Result<()> {
        let store = scope.identity_store_id;
        let group = ids.group_id(store, scope.group).await?;
        if group.is_none() && scope.application_arn.is_some() {
            // A group that does not exist yet is not assigned yet.
            *self
                .group_assigned
                .get_mut()
                .unwrap_or_else(|p| p.into_inner()) = Some(false);
        }
        if let Some(g) = &group {
            match of {
                None => {
                    for (membership, user) in ids.list_memberships(store, g).await? {
                        self.memberships.insert(user, membership);
                    }
                }
                Some(users) => {
                    for user in users {
                        if let Some(m) = ids.membership_id(store, g, user).await? {
                            self.memberships.insert(user.clone(), m);
                        }
                    }
                }
            }
            if let Some(app) = scope.application_arn {
                *self
                    .group_assigned
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner()) =
                    Some(sso.is_assigned(app, Principal::Group, g).await?);
            }
        }
        *self.group_id.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(group);
        Ok(())
    }

    /// True the first time `lookup` is asked for `key`: answer from the listing. Later
    /// times: ask AWS.
    pub fn first(&self, lookup: Lookup, key: &str) -> bool {
        self.answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((lookup, key.to_string()))
    }

    /// Forgets which lookups were answered for an agent that has finished, so that what the
    /// snapshot holds follows the agents in flight, not the file.
    pub fn forget(&self, agent: &str) {
        let mut answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        let updates = super::update::Field::ALL.map(Lookup::Update);
        for lookup in [
            Lookup::ConnectUser,
            Lookup::IdentityUser,
            Lookup::Membership,
            Lookup::Assignment,
        ]
        .into_iter()
        .chain(updates)
        {
            answered.remove(&(lookup, agent.to_string()));
        }
    }

    /// Every Connect user listed (drift reads the whole directory).
    pub fn connect_users(&self) -> impl Iterator<Item = &ConnectUser> {
        self.connect_users.values()
    }

    /// Every Identity Store user listed.
    pub fn identity_users(&self) -> impl Iterator<Item = &IdentityUser> {
        self.ids_users.values()
    }

    /// The Connect user with exactly this username, as listed.
    pub fn connect_user(&self, username: &str) -> Option<&ConnectUser> {
        self.connect_users.get(username)
    }

    /// The Identity Store user with this user name, else with this email (without case), as
    /// listed: the user found decides, as with the per-agent lookup.
    pub fn identity_user(&self, name_or_email: &str) -> Option<&IdentityUser> {
        let key = fold(name_or_email);
        let id = self
            .ids_by_name
            .get(&key)
            .or_else(|| self.ids_by_email.get(&key))?;
        self.ids_users.get(id)
    }

    /// Every listed Identity Store user whose UserName or one of whose emails is
    /// `name_or_email` (without case): offboarding needs exactly one.
    pub fn identity_candidates(&self, name_or_email: &str) -> Vec<&IdentityUser> {
        let key = fold(name_or_email);
        let mut ids: Vec<&String> = Vec::new();
        for id in [self.ids_by_name.get(&key), self.ids_by_email.get(&key)]
            .into_iter()
            .flatten()
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.into_iter()
            .filter_map(|id| self.ids_users.get(id))
            .collect()
    }

    /// The agents' group id, when known (listed, or learnt during the run).
    pub fn group_id(&self) -> Option<String> {
        self.group_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .flatten()
    }

    /// Remembers the group's id once it exists.
    pub fn learn_group_id(&self, id: &str) {
        *self.group_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(Some(id.to_string()));
    }

    /// The user's membership of the agents' group, as listed.
    pub fn membership(&self, user_id: &str) -> Option<&str> {
        self.memberships.get(user_id).map(String::as_str)
    }

    /// Whether the group is assigned to the application, when known.
    pub fn group_assigned(&self) -> Option<bool> {
        *self
            .group_assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that the group's assignment exists.
    pub fn learn_group_assigned(&self) {
        *self
            .group_assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_answers_each_lookup_of_an_agent_once_and_forgets_finished_agents() {
        let s = Snapshot::default();
        assert!(s.first(Lookup::ConnectUser, "ana@example.com"));
        assert!(
            !s.first(Lookup::ConnectUser, "ana@example.com"),
            "later: ask AWS"
        );
        assert!(
            s.first(Lookup::IdentityUser, "ana@example.com"),
            "per lookup"
        );
        assert!(s.first(Lookup::ConnectUser, "ben@example.com"), "per agent");
        s.forget("ana@example.com");
        assert_eq!(
            s.answered.lock().unwrap().len(),
            1,
            "only the agent still in flight is remembered"
        );
    }

    #[test]
    fn identity_users_are_found_by_name_then_email_without_case() {
        let mut s = Snapshot::default();
        let u = IdentityUser {
            id: "u1".into(),
            user_name: "Ana.Silva@Example.com".into(),
            primary_email: Some("Ana.Silva@Example.com".into()),
            emails: vec!["Ana.Silva@Example.com".into()],
            ..Default::default()
        };
        s.ids_by_name.insert(fold(&u.user_name), u.id.clone());
        s.ids_by_email
            .insert("ana.silva@example.com".into(), u.id.clone());
        s.ids_users.insert(u.id.clone(), u);
        assert_eq!(
            s.identity_user("ana.silva@example.com")
                .map(|u| u.id.as_str()),
            Some("u1")
        );
        assert!(s.identity_user("ben@example.com").is_none());
    }

    #[test]
    fn identity_candidates_are_every_user_matching_by_name_or_email_once() {
        let mut s = Snapshot::default();
        for (id, name, email) in [
            ("u1", "am@example.com", "other@example.com"),
            ("u2", "am.big", "am@example.com"),
            ("u3", "cy@example.com", "cy@example.com"),
        ] {
            s.ids_by_name.insert(fold(name), id.into());
            s.ids_by_email.insert(email.into(), id.into());
            s.ids_users.insert(
                id.into(),
                IdentityUser {
                    id: id.into(),
                    user_name: name.into(),
                    primary_email: Some(email.into()),
                    emails: vec![email.into()],
                    primary_emails: 1,
                    given_name: "Am".into(),
                    family_name: "Big".into(),
                    display_name: "Am Big".into(),
                },
            );
        }
        let ids = |e: &str| -> Vec<String> {
            s.identity_candidates(e)
                .iter()
                .map(|u| u.id.clone())
                .collect()
        };
        assert_eq!(ids("AM@example.com"), ["u1", "u2"], "two users: ambiguous");
        assert_eq!(ids("cy@example.com"), ["u3"], "name and email: one user");
        assert!(ids("nobody@example.com").is_empty());
    }
}
