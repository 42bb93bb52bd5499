//! Unit tests of the actions over in-process fakes of the port, and of classification.

use super::classify::{classify, outputs, Call};
use super::*;
use crate::aws::{
    AwsError, ConnectApi, IdentityStoreApi, NewConnectUser, NewIdentityUser, Principal, SsoAdminApi,
};
use crate::aws::{ConnectInstance, IdentityUser as IdUser, Named, SsoApplication, SsoInstance};
use crate::engine::{Action, ErrorKind, Found, Outputs, StepContext};

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
            ..Default::default()
        }))
    }
    async fn create_user(&self, _: &str, _: &NewIdentityUser<'_>) -> crate::aws::Result<String> {
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
    async fn membership_id(&self, _: &str, _: &str, _: &str) -> crate::aws::Result<Option<String>> {
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
    async fn describe_application(&self, _: &str) -> crate::aws::Result<Option<SsoApplication>> {
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
        snapshot: None,
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
        identity_user_name: None,
        leaver: None,
        changes: Default::default(),
    };
    let inputs = Outputs::new();
    let secrets = crate::engine::Secrets::default();
    let cx = StepContext {
        subject: &subject,
        inputs: &inputs,
        secrets: &secrets,
        attempt: 1,
    };
    let found = CreateIdentityUser(env).lookup(&cx).await.unwrap();
    assert_eq!(found, Found::Match(outputs([("user_id", "u-1")])));
}

/// An identity store that holds nobody.
struct Nobody;

#[async_trait::async_trait]
impl IdentityStoreApi for Nobody {
    async fn user_id_by_name(&self, _: &str, _: &str) -> crate::aws::Result<Option<String>> {
        Ok(None)
    }
    async fn user_id_by_email(&self, _: &str, _: &str) -> crate::aws::Result<Option<String>> {
        Ok(None)
    }
    async fn describe_user(&self, _: &str, _: &str) -> crate::aws::Result<Option<IdUser>> {
        Ok(None)
    }
    async fn create_user(&self, _: &str, _: &NewIdentityUser<'_>) -> crate::aws::Result<String> {
        unreachable!("sync never creates an Identity Center user")
    }
    async fn delete_user(&self, _: &str, _: &str) -> crate::aws::Result<()> {
        unreachable!("sync never deletes an Identity Center user")
    }
    async fn group_id(&self, _: &str, _: &str) -> crate::aws::Result<Option<String>> {
        unreachable!("lookups only")
    }
    async fn create_group(&self, _: &str, _: &str, _: &str) -> crate::aws::Result<String> {
        unreachable!("lookups only")
    }
    async fn membership_id(&self, _: &str, _: &str, _: &str) -> crate::aws::Result<Option<String>> {
        unreachable!("lookups only")
    }
    async fn create_membership(&self, _: &str, _: &str, _: &str) -> crate::aws::Result<String> {
        unreachable!("lookups only")
    }
    async fn delete_membership(&self, _: &str, _: &str) -> crate::aws::Result<()> {
        unreachable!("lookups only")
    }
}

#[tokio::test]
async fn syncs_identity_user_step_adopts_only_a_missing_user_is_a_conflict_never_created() {
    let env = Env {
        connect: Arc::new(Unused),
        identity_store: Arc::new(Nobody),
        sso_admin: Arc::new(Unused),
        instance_id: "i".into(),
        identity_store_id: "d-1234567890".into(),
        application_arn: "a".into(),
        group: "ConnectAgents".into(),
        assignment: AssignmentMode::Group,
        snapshot: None,
    };
    let spec = crate::agent::validate(
        &crate::agent::AgentInput {
            email: "Ana@Example.com".into(),
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
        identity_user_name: Some("Ana@Example.com".into()),
        leaver: None,
        changes: Default::default(),
    };
    let inputs = Outputs::new();
    let secrets = crate::engine::Secrets::default();
    let cx = StepContext {
        subject: &subject,
        inputs: &inputs,
        secrets: &secrets,
        attempt: 1,
    };
    // Onboarding's step would create it; sync's says it is missing and stops.
    let onboarding = CreateIdentityUser(env.clone()).lookup(&cx).await.unwrap();
    assert_eq!(onboarding, Found::Absent);
    let adopt = AdoptIdentityUser(env);
    match adopt.lookup(&cx).await.unwrap() {
        Found::Conflict(why) => assert!(why.contains("never creates one"), "{why}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let e = adopt.create(&cx).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    let e = adopt
        .delete(&cx, &outputs([("user_id", "u-1")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
}

fn err(code: &str, status: u16) -> AwsError {
    AwsError {
        code: code.into(),
        message: "m".into(),
        status: Some(status),
        maybe_applied: status >= 500,
        reason: None,
        retry_after: None,
        budget_spent: false,
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
            InputNotVisibleYet,
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
