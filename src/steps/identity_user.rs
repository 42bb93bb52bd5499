//! Step 2: the Identity Center user.

use crate::aws::{IdentityUser, NewIdentityUser};
use crate::engine::{Action, Found, Outputs, StepContext, StepError};

use super::classify::{classify, outputs, read, recorded, Call};
use super::snapshot::Lookup;
use super::{Env, Subject};

/// Step 2: the Identity Center user: UserName = email, one primary work email.
pub struct CreateIdentityUser(pub(super) Env);

impl CreateIdentityUser {
    /// By UserName first, then by email: lookups are eventually consistent, so either may
    /// see a just-created user first. What decides is the user found, not the path.
    async fn find(&self, name: &str, email: &str) -> Result<Option<IdentityUser>, StepError> {
        let ids = &self.0.identity_store;
        let store = &self.0.identity_store_id;
        let id = match ids.user_id_by_name(store, name).await.map_err(read)? {
            Some(id) => Some(id),
            None => ids.user_id_by_email(store, email).await.map_err(read)?,
        };
        let Some(id) = id else {
            return Ok(None);
        };
        // None: deleted between the two calls, nothing there any more.
        ids.describe_user(store, &id).await.map_err(read)
    }
}

#[async_trait::async_trait]
impl Action<Subject> for CreateIdentityUser {
    fn outputs(&self) -> &'static [&'static str] {
        &["user_id"]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let email = &cx.subject.agent.email;
        let name = cx.subject.identity_user_name();
        let listed = (self.0.snapshot.as_ref())
            .filter(|s| s.first(Lookup::IdentityUser, email))
            .map(|s| s.identity_user(name).cloned());
        let found = match listed {
            Some(found) => found,
            None => self.find(name, email).await?,
        };
        let Some(u) = found else {
            return Ok(Found::Absent);
        };
        // A migrated agent's names must match exactly, case included: SAML compares the
        // RoleSessionName with the Connect username case-sensitively. Onboarded agents'
        // names are the normalised email, which the service compares without case.
        let exact = cx.subject.identity_user_name.is_some();
        let same = |a: &str, b: &str| {
            if exact {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            }
        };
        if !same(&u.user_name, name) {
            return Ok(Found::Conflict(format!(
                "email {email:?} already belongs to Identity Store user {:?}, not {name:?}",
                u.user_name
            )));
        }
        Ok(match &u.primary_email {
            Some(p) if same(p, email) => Found::Match(outputs([("user_id", &u.id)])),
            Some(p) => Found::Conflict(format!(
                "Identity Store user {name:?} exists with primary email {p:?}, not {email:?}"
            )),
            None => Found::Conflict(format!(
                "Identity Store user {name:?} exists without a primary email (emails: {:?}); SAML sign-in needs {email:?} as its primary email",
                u.emails
            )),
        })
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        let a = &cx.subject.agent;
        let id = self
            .0
            .identity_store
            .create_user(
                &self.0.identity_store_id,
                &NewIdentityUser {
                    user_name: cx.subject.identity_user_name(),
                    display_name: &a.display_name,
                    given_name: &a.first_name,
                    family_name: &a.last_name,
                    email: &a.email,
                },
            )
            .await
            .map_err(|e| classify(e, Call::Create))?;
        Ok(outputs([("user_id", &id)]))
    }

    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let id = recorded(out, "user_id")?;
        self.0
            .identity_store
            .delete_user(&self.0.identity_store_id, id)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}
