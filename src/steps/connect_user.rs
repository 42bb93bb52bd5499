//! Step 1: the Amazon Connect user.

use crate::aws::NewConnectUser;
use crate::engine::{Action, ErrorKind, Found, Outputs, StepContext, StepError};

use super::classify::{classify, outputs, read, recorded, Call};
use super::snapshot::Lookup;
use super::{Env, Subject, PASSWORD};

/// Step 1: the Amazon Connect user (username = the normalised email on SAML).
pub struct CreateConnectUser(pub(super) Env);

#[async_trait::async_trait]
impl Action<Subject> for CreateConnectUser {
    fn outputs(&self) -> &'static [&'static str] {
        &["user_id", "user_arn"]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let a = &cx.subject.agent;
        let connect = &self.0.connect;
        let listed = (self.0.snapshot.as_ref())
            .filter(|s| s.first(Lookup::ConnectUser, &a.email))
            .map(|s| s.connect_user(&a.username).cloned());
        let found = match listed {
            Some(found) => found,
            None => connect
                .find_user(&self.0.instance_id, &a.username)
                .await
                .map_err(read)?,
        };
        let Some(u) = found else {
            return Ok(Found::Absent);
        };
        // On SAML the username *is* the email, so a user with it is this agent. Where the
        // username is chosen (CONNECT_MANAGED), the user's email must be the agent's too.
        if a.send_email_to_connect {
            let described = connect
                .describe_user(&self.0.instance_id, &u.id)
                .await
                .map_err(read)?;
            if let Some(other) = described.and_then(|d| d.email) {
                if !other.eq_ignore_ascii_case(&a.email) {
                    return Ok(Found::Conflict(format!(
                        "Connect user {:?} exists with email {other:?}, not {:?}",
                        a.username, a.email
                    )));
                }
            }
        }
        Ok(Found::Match(outputs([
            ("user_id", &u.id),
            ("user_arn", &u.arn),
        ])))
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        let s = cx.subject;
        let a = &s.agent;
        let password = cx.secrets.get(PASSWORD);
        if a.needs_password && password.is_none() {
            return Err(StepError::new(
                ErrorKind::Permanent,
                "MissingPassword",
                "this instance stores users in Connect and needs a password: set CONNECT_ONBOARD_PASSWORD or use --password-stdin",
            ));
        }
        let user = NewConnectUser {
            username: &a.username,
            first_name: &a.first_name,
            last_name: &a.last_name,
            email: a.send_email_to_connect.then_some(a.email.as_str()),
            secondary_email: a.secondary_email.as_deref(),
            mobile: a.mobile.as_deref(),
            password: if a.needs_password { password } else { None },
            directory_user_id: a.directory_user_id.as_deref(),
            phone_type: a.phone_type.as_aws(),
            auto_accept: a.auto_accept,
            acw_timeout: a.acw_timeout,
            desk_phone_number: a.desk_phone_number.as_deref(),
            routing_profile_id: &s.routing_profile_id,
            security_profile_ids: s.security_profile_ids.clone(),
            hierarchy_group_id: s.hierarchy_group_id.as_deref(),
            tags: &a.tags,
        };
        let (id, arn) = self
            .0
            .connect
            .create_user(&self.0.instance_id, &user)
            .await
            .map_err(|e| classify(e, Call::Create))?;
        Ok(outputs([("user_id", &id), ("user_arn", &arn)]))
    }

    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let id = recorded(out, "user_id")?;
        self.0
            .connect
            .delete_user(&self.0.instance_id, id)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}
