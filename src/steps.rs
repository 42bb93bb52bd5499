//! The four onboarding actions (Connect user, Identity Center user, group membership,
//! application assignment), written against the AWS port in `aws.rs`, and the mapping of
//! each service's error codes to the engine's error classes.
//!
//! Each action is idempotent in the engine's sense: `lookup` is read-only and says whether
//! the resource exists and fits the agent; `create` reports `AlreadyExists` instead of
//! failing on a duplicate; `delete` reports `NotFound` for a resource already gone.
//! Classification is by error code only (aws-domain.md §2.3): Connect
//! `LimitExceededException` is the users-per-instance quota (permanent), not throttling;
//! SSO Admin `ConflictException` and a not-found principal right after its creation are
//! propagation races (transient).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::AgentSpec;
use crate::aws::{
    AwsError, ConnectApi, IdentityStoreApi, NewConnectUser, NewIdentityUser, Principal, SsoAdminApi,
};
use crate::config::AssignmentMode;
use crate::workflow::{Action, ErrorKind, Found, Outputs, Registry, StepContext, StepError};

/// What the engine stores per agent: the validated agent plus the ids its profile names
/// resolved to at preflight. Contains no secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subject {
    /// The validated agent.
    pub agent: AgentSpec,
    /// Routing profile id.
    pub routing_profile_id: String,
    /// Security profile ids.
    pub security_profile_ids: Vec<String>,
    /// Hierarchy group id.
    pub hierarchy_group_id: Option<String>,
}

/// Where the actions act: clients and resolved target ids.
#[derive(Clone)]
pub struct Env {
    /// Amazon Connect.
    pub connect: Arc<dyn ConnectApi>,
    /// Identity Store.
    pub identity_store: Arc<dyn IdentityStoreApi>,
    /// SSO Admin.
    pub sso_admin: Arc<dyn SsoAdminApi>,
    /// Connect instance id.
    pub instance_id: String,
    /// Identity store id.
    pub identity_store_id: String,
    /// Amazon Connect application ARN in Identity Center.
    pub application_arn: String,
    /// Group name.
    pub group: String,
    /// Group or per-user assignment.
    pub assignment: AssignmentMode,
}

/// The secret name the Connect action reads the password from.
pub const PASSWORD: &str = "password";

/// The built-in actions, by the names workflow files use.
pub fn registry(env: &Env) -> Registry<Subject> {
    let mut r: Registry<Subject> = BTreeMap::new();
    r.insert("connect.user".into(), Arc::new(ConnectUser(env.clone())));
    r.insert(
        "identitystore.user".into(),
        Arc::new(IdentityUser(env.clone())),
    );
    r.insert(
        "identitystore.group_membership".into(),
        Arc::new(GroupMembership(env.clone())),
    );
    r.insert(
        "ssoadmin.application_assignment".into(),
        Arc::new(ApplicationAssignment(env.clone())),
    );
    r
}

/// Which call failed, for classification.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Read,
    Create,
    CreateReferencing,
    Delete,
}

/// Maps an AWS error to the engine's class, by code.
fn classify(e: AwsError, call: Call) -> StepError {
    let kind = if e.is_throttling() {
        ErrorKind::Transient
    } else if e.is_server_or_transport() {
        if matches!(call, Call::Read) || !e.maybe_applied {
            ErrorKind::Transient
        } else {
            ErrorKind::Ambiguous
        }
    } else {
        match (e.code.as_str(), call) {
            // Connect: username taken. Identity Store: UserName/email/membership unique.
            ("DuplicateResourceException", Call::Create | Call::CreateReferencing) => {
                ErrorKind::AlreadyExists
            }
            ("ConflictException", _) if e.reason.as_deref() == Some("CONCURRENT_MODIFICATION") => {
                ErrorKind::Transient
            }
            ("ConflictException", Call::Create) => ErrorKind::AlreadyExists,
            // SSO Admin: "the previous write did not have time to propagate"; Identity Store
            // CreateGroupMembership: a duplicate membership or a concurrent modification
            // (the reason is not always sent). Retry: the lookup before the next write
            // adopts a membership that really exists.
            ("ConflictException", Call::CreateReferencing | Call::Delete) => ErrorKind::Transient,
            // A principal or user created a moment ago may not be visible yet.
            ("ResourceNotFoundException", Call::CreateReferencing) => ErrorKind::Transient,
            ("ResourceNotFoundException", Call::Delete) => ErrorKind::NotFound,
            // Connect users-per-instance quota: the SDK would retry it as throttling.
            ("LimitExceededException", _) => ErrorKind::Permanent,
            // Identity Store's opaque, passing "UnknownOperationException: UnknownError" on
            // GetUserId / GetGroupId (terraform-provider-aws #27830, #31624).
            ("UnknownOperationException", Call::Read) => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    };
    StepError::new(kind, e.code, e.message)
}

fn read(e: AwsError) -> StepError {
    classify(e, Call::Read)
}

/// An id recorded in a step's outputs; a missing or empty one is never sent as an id.
fn recorded<'a>(out: &'a Outputs, key: &str) -> Result<&'a str, StepError> {
    out.get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            StepError::new(
                ErrorKind::Permanent,
                "MissingId",
                format!("the checkpoint has no {key} to delete by"),
            )
        })
}

fn outputs<const N: usize>(pairs: [(&str, &str); N]) -> Outputs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Step 1: the Amazon Connect user (username = the normalised email on SAML).
pub struct ConnectUser(Env);

#[async_trait::async_trait]
impl Action<Subject> for ConnectUser {
    fn outputs(&self) -> &'static [&'static str] {
        &["user_id", "user_arn"]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let a = &cx.subject.agent;
        let connect = &self.0.connect;
        let Some(u) = connect
            .find_user(&self.0.instance_id, &a.username)
            .await
            .map_err(read)?
        else {
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

/// Step 2: the Identity Center user: UserName = email, one primary work email.
pub struct IdentityUser(Env);

#[async_trait::async_trait]
impl Action<Subject> for IdentityUser {
    fn outputs(&self) -> &'static [&'static str] {
        &["user_id"]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let ids = &self.0.identity_store;
        let store = &self.0.identity_store_id;
        let email = &cx.subject.agent.email;
        // By UserName first, then by email: lookups are eventually consistent, so either may
        // see a just-created user first. What decides is the user found, not the path.
        let id = match ids.user_id_by_name(store, email).await.map_err(read)? {
            Some(id) => Some(id),
            None => ids.user_id_by_email(store, email).await.map_err(read)?,
        };
        let Some(id) = id else {
            return Ok(Found::Absent);
        };
        let Some(u) = ids.describe_user(store, &id).await.map_err(read)? else {
            // Deleted between the two calls: nothing there any more.
            return Ok(Found::Absent);
        };
        if !u.user_name.eq_ignore_ascii_case(email) {
            return Ok(Found::Conflict(format!(
                "email {email:?} already belongs to Identity Store user {:?}, not {email:?}",
                u.user_name
            )));
        }
        Ok(match &u.primary_email {
            Some(p) if p.eq_ignore_ascii_case(email) => Found::Match(outputs([("user_id", &u.id)])),
            Some(p) => Found::Conflict(format!(
                "Identity Store user {email:?} exists with primary email {p:?}, not {email:?}"
            )),
            None => Found::Conflict(format!(
                "Identity Store user {email:?} exists without a primary email (emails: {:?}); SAML sign-in needs {email:?} as its primary email",
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
                    user_name: &a.email,
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

/// Step 3: membership of the agents' group (the group itself is shared: created if
/// missing, never deleted).
pub struct GroupMembership(Env);

impl GroupMembership {
    async fn ensure_group(&self) -> Result<String, StepError> {
        let ids = &self.0.identity_store;
        let store = &self.0.identity_store_id;
        if let Some(g) = ids.group_id(store, &self.0.group).await.map_err(read)? {
            return Ok(g);
        }
        match ids
            .create_group(
                store,
                &self.0.group,
                "Amazon Connect agents (managed by connect-onboard)",
            )
            .await
        {
            Ok(g) => Ok(g),
            Err(e) => {
                let se = classify(e, Call::Create);
                if se.kind != ErrorKind::AlreadyExists && se.kind != ErrorKind::Ambiguous {
                    return Err(se);
                }
                // Created concurrently (or by our own unanswered call): look it up.
                ids.group_id(store, &self.0.group)
                    .await
                    .map_err(read)?
                    .ok_or_else(|| {
                        StepError::new(
                            ErrorKind::Transient,
                            "NotVisibleYet",
                            format!("group {:?} exists but is not visible yet", self.0.group),
                        )
                    })
            }
        }
    }
}

#[async_trait::async_trait]
impl Action<Subject> for GroupMembership {
    fn inputs(&self) -> &'static [&'static str] {
        &["user_id"]
    }

    fn outputs(&self) -> &'static [&'static str] {
        &["group_id", "membership_id"]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let ids = &self.0.identity_store;
        let store = &self.0.identity_store_id;
        let user = cx.input("user_id")?;
        let Some(group) = ids.group_id(store, &self.0.group).await.map_err(read)? else {
            return Ok(Found::Absent);
        };
        Ok(
            match ids.membership_id(store, &group, user).await.map_err(read)? {
                Some(m) => Found::Match(outputs([("group_id", &group), ("membership_id", &m)])),
                None => Found::Absent,
            },
        )
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        let user = cx.input("user_id")?;
        let group = self.ensure_group().await?;
        let m = self
            .0
            .identity_store
            .create_membership(&self.0.identity_store_id, &group, user)
            .await
            .map_err(|e| classify(e, Call::CreateReferencing))?;
        Ok(outputs([("group_id", &group), ("membership_id", &m)]))
    }

    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let m = recorded(out, "membership_id")?;
        self.0
            .identity_store
            .delete_membership(&self.0.identity_store_id, m)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}

/// Step 4: access to the Amazon Connect application: the group once (shared) or the
/// user directly (owned), per `identity_center.assignment`.
pub struct ApplicationAssignment(Env);

impl ApplicationAssignment {
    fn principal<'a>(
        &self,
        cx: &'a StepContext<'_, Subject>,
    ) -> Result<(Principal, &'a str), StepError> {
        Ok(match self.0.assignment {
            AssignmentMode::Group => (Principal::Group, cx.input("group_id")?),
            AssignmentMode::User => (Principal::User, cx.input("user_id")?),
        })
    }
}

fn principal_name(p: Principal) -> &'static str {
    match p {
        Principal::User => "USER",
        Principal::Group => "GROUP",
    }
}

#[async_trait::async_trait]
impl Action<Subject> for ApplicationAssignment {
    fn inputs(&self) -> &'static [&'static str] {
        &["user_id", "group_id"]
    }

    fn outputs(&self) -> &'static [&'static str] {
        &["principal_type", "principal_id"]
    }

    fn shared(&self) -> bool {
        self.0.assignment == AssignmentMode::Group
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let (kind, id) = self.principal(cx)?;
        let assigned = self
            .0
            .sso_admin
            .is_assigned(&self.0.application_arn, kind, id)
            .await
            .map_err(read)?;
        Ok(if assigned {
            Found::Match(outputs([
                ("principal_type", principal_name(kind)),
                ("principal_id", id),
            ]))
        } else {
            Found::Absent
        })
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        let (kind, id) = self.principal(cx)?;
        self.0
            .sso_admin
            .assign(&self.0.application_arn, kind, id)
            .await
            .map_err(|e| classify(e, Call::CreateReferencing))?;
        Ok(outputs([
            ("principal_type", principal_name(kind)),
            ("principal_id", id),
        ]))
    }

    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let kind = if out.get("principal_type").map(String::as_str) == Some("GROUP") {
            Principal::Group
        } else {
            Principal::User
        };
        let id = recorded(out, "principal_id")?;
        self.0
            .sso_admin
            .unassign(&self.0.application_arn, kind, id)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{ConnectInstance, IdentityUser as IdUser, Named, SsoApplication, SsoInstance};

    /// An identity store whose GetUserId by userName has not caught up yet, while the one
    /// by email already sees the user (the two are separately eventually consistent).
    struct Lagging;

    #[async_trait::async_trait]
    impl IdentityStoreApi for Lagging {
        async fn user_id_by_name(&self, _: &str, _: &str) -> crate::aws::Result<Option<String>> {
            Ok(None)
        }
        async fn user_id_by_email(&self, _: &str, _: &str) -> crate::aws::Result<Option<String>> {
            Ok(Some("u-1".into()))
        }
        async fn describe_user(&self, _: &str, id: &str) -> crate::aws::Result<Option<IdUser>> {
            Ok(Some(IdUser {
                id: id.into(),
                user_name: "ana@example.com".into(),
                primary_email: Some("ana@example.com".into()),
                emails: vec!["ana@example.com".into()],
            }))
        }
        async fn create_user(
            &self,
            _: &str,
            _: &NewIdentityUser<'_>,
        ) -> crate::aws::Result<String> {
            unreachable!("lookups only")
        }
        async fn delete_user(&self, _: &str, _: &str) -> crate::aws::Result<()> {
            unreachable!("lookups only")
        }
        async fn group_id(&self, _: &str, _: &str) -> crate::aws::Result<Option<String>> {
            unreachable!("lookups only")
        }
        async fn create_group(&self, _: &str, _: &str, _: &str) -> crate::aws::Result<String> {
            unreachable!("lookups only")
        }
        async fn membership_id(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> crate::aws::Result<Option<String>> {
            unreachable!("lookups only")
        }
        async fn create_membership(&self, _: &str, _: &str, _: &str) -> crate::aws::Result<String> {
            unreachable!("lookups only")
        }
        async fn delete_membership(&self, _: &str, _: &str) -> crate::aws::Result<()> {
            unreachable!("lookups only")
        }
    }

    struct Unused;

    #[async_trait::async_trait]
    impl ConnectApi for Unused {
        async fn describe_instance(&self, _: &str) -> crate::aws::Result<ConnectInstance> {
            unreachable!()
        }
        async fn routing_profiles(&self, _: &str) -> crate::aws::Result<Vec<Named>> {
            unreachable!()
        }
        async fn security_profiles(&self, _: &str) -> crate::aws::Result<Vec<Named>> {
            unreachable!()
        }
        async fn hierarchy_groups(&self, _: &str) -> crate::aws::Result<Vec<Named>> {
            unreachable!()
        }
        async fn find_user(
            &self,
            _: &str,
            _: &str,
        ) -> crate::aws::Result<Option<crate::aws::ConnectUser>> {
            unreachable!()
        }
        async fn describe_user(
            &self,
            _: &str,
            _: &str,
        ) -> crate::aws::Result<Option<crate::aws::ConnectUser>> {
            unreachable!()
        }
        async fn create_user(
            &self,
            _: &str,
            _: &NewConnectUser<'_>,
        ) -> crate::aws::Result<(String, String)> {
            unreachable!()
        }
        async fn delete_user(&self, _: &str, _: &str) -> crate::aws::Result<()> {
            unreachable!()
        }
    }

    #[async_trait::async_trait]
    impl SsoAdminApi for Unused {
        async fn instances(&self) -> crate::aws::Result<Vec<SsoInstance>> {
            unreachable!()
        }
        async fn applications(&self, _: &str) -> crate::aws::Result<Vec<SsoApplication>> {
            unreachable!()
        }
        async fn describe_application(
            &self,
            _: &str,
        ) -> crate::aws::Result<Option<SsoApplication>> {
            unreachable!()
        }
        async fn is_assigned(&self, _: &str, _: Principal, _: &str) -> crate::aws::Result<bool> {
            unreachable!()
        }
        async fn assign(&self, _: &str, _: Principal, _: &str) -> crate::aws::Result<()> {
            unreachable!()
        }
        async fn unassign(&self, _: &str, _: Principal, _: &str) -> crate::aws::Result<()> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn a_user_found_only_by_email_is_ours_when_its_user_name_is_the_email() {
        // Found by chaos testing: the userName lookup lagged behind the email lookup, and the
        // agent's own user was reported as "already belongs to ... not ...".
        let env = Env {
            connect: Arc::new(Unused),
            identity_store: Arc::new(Lagging),
            sso_admin: Arc::new(Unused),
            instance_id: "i".into(),
            identity_store_id: "d-1234567890".into(),
            application_arn: "a".into(),
            group: "ConnectAgents".into(),
            assignment: AssignmentMode::Group,
        };
        let spec = crate::agent::validate(
            &crate::agent::AgentInput {
                email: "ana@example.com".into(),
                first_name: "Ana".into(),
                last_name: "Silva".into(),
                ..Default::default()
            },
            &crate::agent::Defaults::default(),
            crate::agent::IdentityMode::Saml,
        )
        .unwrap();
        let subject = Subject {
            agent: spec,
            routing_profile_id: "rp".into(),
            security_profile_ids: vec!["sp".into()],
            hierarchy_group_id: None,
        };
        let inputs = Outputs::new();
        let secrets = crate::workflow::Secrets::default();
        let cx = StepContext {
            subject: &subject,
            inputs: &inputs,
            secrets: &secrets,
        };
        let found = IdentityUser(env).lookup(&cx).await.unwrap();
        assert_eq!(found, Found::Match(outputs([("user_id", "u-1")])));
    }

    fn err(code: &str, status: u16) -> AwsError {
        AwsError {
            code: code.into(),
            message: "m".into(),
            status: Some(status),
            maybe_applied: status >= 500,
            reason: None,
        }
    }

    #[test]
    fn classification_is_by_code() {
        use ErrorKind::*;
        let cases = [
            (err("ThrottlingException", 429), Call::Create, Transient),
            (err("TooManyRequestsException", 429), Call::Read, Transient),
            (
                err("InternalServiceException", 500),
                Call::Create,
                Ambiguous,
            ),
            (err("InternalServiceException", 500), Call::Read, Transient),
            (err("LimitExceededException", 429), Call::Create, Permanent),
            (
                err("DuplicateResourceException", 409),
                Call::Create,
                AlreadyExists,
            ),
            (err("ConflictException", 409), Call::Create, AlreadyExists),
            (
                err("ConflictException", 400),
                Call::CreateReferencing,
                Transient,
            ),
            (
                err("ResourceNotFoundException", 400),
                Call::CreateReferencing,
                Transient,
            ),
            (
                err("ResourceNotFoundException", 404),
                Call::Delete,
                NotFound,
            ),
            (
                err("ResourceNotFoundException", 404),
                Call::Create,
                Permanent,
            ),
            (
                err("InvalidParameterException", 400),
                Call::Create,
                Permanent,
            ),
            (err("AccessDeniedException", 403), Call::Read, Permanent),
            (err("ValidationException", 400), Call::Create, Permanent),
            (err("UnknownOperationException", 400), Call::Read, Transient),
            (
                err("UnknownOperationException", 400),
                Call::Create,
                Permanent,
            ),
        ];
        for (e, call, want) in cases {
            let code = e.code.clone();
            assert_eq!(classify(e, call).kind, want, "{code}");
        }
        let mut concurrent = err("ConflictException", 409);
        concurrent.reason = Some("CONCURRENT_MODIFICATION".into());
        assert_eq!(classify(concurrent, Call::Create).kind, Transient);
        let mut dropped = err("DispatchFailure", 0);
        dropped.status = None;
        dropped.maybe_applied = true;
        assert_eq!(classify(dropped.clone(), Call::Create).kind, Ambiguous);
        // A refused connection never carried the request: retry, but it owns nothing.
        dropped.maybe_applied = false;
        assert_eq!(classify(dropped, Call::Create).kind, Transient);
    }
}
