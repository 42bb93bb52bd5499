//! Migrate's step 1: the Connect user that already exists, adopted by its exact username.
//! It is never created and never deleted: `migrate` moves existing agents, and a rollback
//! must leave them where they were.

use crate::engine::{Action, ErrorKind, Found, Outputs, StepContext, StepError};

use super::classify::{outputs, read};
use super::snapshot::Lookup;
use super::{Env, Subject};

/// Step 1 of `migrate-agent`: adopt the existing Connect user.
pub struct AdoptConnectUser(pub(super) Env);

#[async_trait::async_trait]
impl Action<Subject> for AdoptConnectUser {
    fn outputs(&self) -> &'static [&'static str] {
        &["user_id", "user_arn"]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let a = &cx.subject.agent;
        let listed = (self.0.snapshot.as_ref())
            .filter(|s| s.first(Lookup::ConnectUser, &a.email))
            .map(|s| s.connect_user(&a.username).cloned());
        let found = match listed {
            Some(found) => found,
            None => (self.0.connect)
                .find_user(&self.0.instance_id, &a.username)
                .await
                .map_err(read)?,
        };
        Ok(match found {
            Some(u) => Found::Match(outputs([("user_id", &u.id), ("user_arn", &u.arn)])),
            None => Found::Conflict(format!(
                "Connect user {:?} does not exist (any more); migrate adopts existing users only",
                a.username
            )),
        })
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        Err(StepError::new(
            ErrorKind::Permanent,
            "NotCreated",
            format!(
                "migrate never creates a Connect user ({:?} was not found)",
                cx.subject.agent.username
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
            "migrate never deletes a Connect user",
        ))
    }
}
