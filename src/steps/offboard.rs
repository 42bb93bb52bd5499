//! The offboarding actions: the removals of `workflows/offboard-agent.toml`, each an
//! irreversible step (never compensated). Each acts on the ids identified at planning time
//! ([`super::Leaver`]), looks its resource up by id (present: the engine deletes it; absent:
//! done, whoever removed it) and classifies errors by code like the onboarding actions.
//! Shared resources are out of reach by construction: the group is never a target, and only
//! a USER principal's application assignment is ever removed.

use crate::aws::Principal;
use crate::engine::{Action, Found, Outputs, StepContext, StepError};

use super::classify::{classify, outputs, read, recorded, Call};
use super::{Env, Leaver, Subject};
use crate::config::AssignmentMode;

fn leaver<'a>(cx: &'a StepContext<'_, Subject>) -> Option<&'a Leaver> {
    cx.subject.leaver.as_ref()
}

/// The user's own application assignment (user mode). In group mode there is none: the
/// group's assignment is shared, and is never removed.
pub struct RemoveUserAssignment(pub(super) Env);

#[async_trait::async_trait]
impl Action<Subject> for RemoveUserAssignment {
    fn outputs(&self) -> &'static [&'static str] {
        &["principal_type", "principal_id"]
    }
    fn removes(&self) -> bool {
        true
    }
    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let Some(user) = leaver(cx).and_then(|l| l.identity_user_id.as_deref()) else {
            return Ok(Found::Absent);
        };
        if self.0.assignment == AssignmentMode::Group {
            return Ok(Found::Absent);
        }
        let assigned = (self.0.sso_admin)
            .is_assigned(&self.0.application_arn, Principal::User, user)
            .await
            .map_err(read)?;
        Ok(if assigned {
            Found::Match(outputs([
                ("principal_type", "USER"),
                ("principal_id", user),
            ]))
        } else {
            Found::Absent
        })
    }
    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let id = recorded(out, "principal_id")?;
        (self.0.sso_admin)
            .unassign(&self.0.application_arn, Principal::User, id)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}

/// The user's membership of the agents' group (the group itself stays).
pub struct RemoveGroupMembership(pub(super) Env);

#[async_trait::async_trait]
impl Action<Subject> for RemoveGroupMembership {
    fn outputs(&self) -> &'static [&'static str] {
        &["group_id", "membership_id"]
    }
    fn removes(&self) -> bool {
        true
    }
    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let Some(l) = leaver(cx) else {
            return Ok(Found::Absent);
        };
        let (Some(user), Some(group)) = (&l.identity_user_id, &l.group_id) else {
            return Ok(Found::Absent);
        };
        let m = (self.0.identity_store)
            .membership_id(&self.0.identity_store_id, group, user)
            .await
            .map_err(read)?;
        Ok(match m {
            Some(m) => Found::Match(outputs([("group_id", group), ("membership_id", &m)])),
            None => Found::Absent,
        })
    }
    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let m = recorded(out, "membership_id")?;
        (self.0.identity_store)
            .delete_membership(&self.0.identity_store_id, m)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}

/// The Identity Center user (kept with `--keep-identity-user`).
pub struct DeleteIdentityUser(pub(super) Env);

#[async_trait::async_trait]
impl Action<Subject> for DeleteIdentityUser {
    fn outputs(&self) -> &'static [&'static str] {
        &["user_id", "user_name"]
    }
    fn removes(&self) -> bool {
        true
    }
    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let Some(l) = leaver(cx).filter(|l| !l.keep_identity_user) else {
            return Ok(Found::Absent);
        };
        let Some(id) = &l.identity_user_id else {
            return Ok(Found::Absent);
        };
        let u = (self.0.identity_store)
            .describe_user(&self.0.identity_store_id, id)
            .await
            .map_err(read)?;
        Ok(match u {
            Some(u) => Found::Match(outputs([("user_id", &u.id), ("user_name", &u.user_name)])),
            None => Found::Absent,
        })
    }
    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let id = recorded(out, "user_id")?;
        (self.0.identity_store)
            .delete_user(&self.0.identity_store_id, id)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}

/// The Amazon Connect user (Connect DeleteUser: 2/s like CreateUser, through the pacer).
pub struct DeleteConnectUser(pub(super) Env);

#[async_trait::async_trait]
impl Action<Subject> for DeleteConnectUser {
    fn outputs(&self) -> &'static [&'static str] {
        &["user_id", "username"]
    }
    fn removes(&self) -> bool {
        true
    }
    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let Some(id) = leaver(cx).and_then(|l| l.connect_user_id.as_deref()) else {
            return Ok(Found::Absent);
        };
        let u = (self.0.connect)
            .describe_user(&self.0.instance_id, id)
            .await
            .map_err(read)?;
        Ok(match u {
            Some(u) => Found::Match(outputs([("user_id", &u.id), ("username", &u.username)])),
            None => Found::Absent,
        })
    }
    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let id = recorded(out, "user_id")?;
        (self.0.connect)
            .delete_user(&self.0.instance_id, id)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}
