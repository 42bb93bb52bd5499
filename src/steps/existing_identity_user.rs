//! `sync`'s step 2: the Identity Center user that the identity provider provisioned,
//! adopted by its exact UserName and primary email. It is never created and never deleted:
//! the identity provider owns it (SCIM), and neither a `sync` run nor its rollback may
//! touch it. A missing user is a conflict, not a create.

use crate::engine::{Action, ErrorKind, Found, Outputs, StepContext, StepError};

use super::identity_user::CreateIdentityUser;
use super::{Env, Subject};

/// Step 2 of `sync-agent`: adopt the existing Identity Center user.
pub struct AdoptIdentityUser(pub(super) Env);

#[async_trait::async_trait]
impl Action<Subject> for AdoptIdentityUser {
    fn outputs(&self) -> &'static [&'static str] {
        &["user_id"]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        // The same lookup as onboarding's (snapshot first, then by UserName, then email;
        // exact names for a subject with an exact UserName); only absence differs.
        Ok(
            match CreateIdentityUser(self.0.clone()).lookup(cx).await? {
                Found::Absent => Found::Conflict(format!(
                    "Identity Center user {:?} does not exist (any more); sync adopts the users the identity provider provisions and never creates one",
                    cx.subject.identity_user_name()
                )),
                found => found,
            },
        )
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        Err(StepError::new(
            ErrorKind::Permanent,
            "NotCreated",
            format!(
                "sync never creates an Identity Center user ({:?} was not found): the identity provider owns it",
                cx.subject.identity_user_name()
            ),
        ))
    }

    async fn delete(
        &self,
        _cx: &StepContext<'_, Subject>,
        _out: &Outputs,
    ) -> Result<(), StepError> {
        // Unreachable by design (the step is only ever adopted, and adopted steps are never
        // compensated), and refused all the same.
        Err(StepError::new(
            ErrorKind::Permanent,
            "NotDeleted",
            "sync never deletes an Identity Center user: the identity provider owns it",
        ))
    }
}
