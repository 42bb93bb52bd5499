//! Helpers for tests that want pre-existing resources: `add_connect_user`,
//! `add_identity_user`, `add_group`, `add_membership`, `add_assignment`,
//! `remove_connect_user`. Resources added here are visible at once (no
//! consistency window).

use super::ids::ids_prefix;
use super::{new_uuid, Assignment, Membership, SeedConnectUser, World, WorldError};

impl World {
    /// Adds a Connect user to `instance_id` with the instance's first security and
    /// routing profiles; returns its id. Visible immediately (no consistency window).
    pub fn add_connect_user(
        &mut self,
        instance_id: &str,
        username: &str,
        first: &str,
        last: &str,
    ) -> Result<String, WorldError> {
        let seed = SeedConnectUser {
            id: Some(new_uuid()),
            username: username.into(),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            ..Default::default()
        };
        self.seed_connect_user(instance_id, &seed)?;
        Ok(seed.id.unwrap_or_default())
    }

    /// Adds a user (UserName, primary work email, given/family name, DisplayName
    /// "Given Family") to the default identity store; returns its id.
    pub fn add_identity_user(
        &mut self,
        user_name: &str,
        email: &str,
        given: &str,
        family: &str,
    ) -> Result<String, WorldError> {
        let store = self.store_id_or_default(None)?;
        let prefix = ids_prefix(&store);
        self.insert_identity_user(
            &store,
            user_name,
            &format!("{given} {family}"),
            given,
            family,
            Some(email),
            Some(format!("{prefix}-{}", new_uuid())),
        )
    }

    /// Adds a group to the default identity store; returns its id.
    pub fn add_group(&mut self, display_name: &str) -> Result<String, WorldError> {
        let store = self.store_id_or_default(None)?;
        let prefix = ids_prefix(&store);
        self.insert_group(
            &store,
            display_name,
            None,
            Some(format!("{prefix}-{}", new_uuid())),
        )
    }

    /// Adds a membership in the default identity store; returns its id.
    pub fn add_membership(&mut self, group_id: &str, user_id: &str) -> Result<String, WorldError> {
        let store = self.store_id_or_default(None)?;
        self.add_membership_in(&store, group_id, user_id)
    }

    pub(super) fn add_membership_in(
        &mut self,
        store_id: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<String, WorldError> {
        let store = self.identity_store_mut(store_id)?;
        if !store.groups.contains_key(group_id) {
            return Err(WorldError::NotFound(format!("group {group_id}")));
        }
        if !store.users.contains_key(user_id) {
            return Err(WorldError::NotFound(format!("user {user_id}")));
        }
        if store.membership(group_id, user_id).is_some() {
            return Err(WorldError::Duplicate(format!(
                "membership {group_id}/{user_id}"
            )));
        }
        let id = new_uuid();
        store.insert_membership(Membership {
            membership_id: id.clone(),
            group_id: group_id.into(),
            user_id: user_id.into(),
            created_at: 1_700_000_000.0,
        });
        Ok(id)
    }

    /// Adds a direct application assignment (`USER` or `GROUP`).
    pub fn add_assignment(
        &mut self,
        application_arn: &str,
        principal_type: &str,
        principal_id: &str,
    ) -> Result<(), WorldError> {
        self.store_of_application(application_arn)?;
        let a = Assignment {
            application_arn: application_arn.into(),
            principal_type: principal_type.into(),
            principal_id: principal_id.into(),
        };
        if !self.assignments.insert(a) {
            return Err(WorldError::Duplicate(format!("assignment {principal_id}")));
        }
        Ok(())
    }

    /// Removes a Connect user by id (true if it existed).
    pub fn remove_connect_user(&mut self, instance_id: &str, user_id: &str) -> bool {
        self.connect_instances
            .get_mut(instance_id)
            .is_some_and(|i| i.remove_user(user_id).is_some())
    }
}
