//! [`SsoAdminApi`] over the SSO Admin SDK client.

use aws_sdk_ssoadmin::types as st;

use super::error::{no_reason, not_found_to_none, paged, send_once};
use super::{Principal, Result, SdkSsoAdmin, SsoAdminApi, SsoApplication, SsoInstance};

fn principal(kind: Principal) -> st::PrincipalType {
    match kind {
        Principal::User => st::PrincipalType::User,
        Principal::Group => st::PrincipalType::Group,
    }
}

#[async_trait::async_trait]
impl SsoAdminApi for SdkSsoAdmin {
    async fn instances(&self) -> Result<Vec<SsoInstance>> {
        Ok(paged!(
            self.1,
            "sso:ListInstances",
            self.0.list_instances(),
            instances,
            |i| {
                SsoInstance {
                    arn: i.instance_arn().unwrap_or_default().to_string(),
                    identity_store_id: i.identity_store_id().unwrap_or_default().to_string(),
                    status: i
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                }
            }
        ))
    }

    async fn applications(&self, instance_arn: &str) -> Result<Vec<SsoApplication>> {
        Ok(paged!(
            self.1,
            "sso:ListApplications",
            self.0.list_applications().instance_arn(instance_arn),
            applications,
            |a| SsoApplication {
                arn: a.application_arn().unwrap_or_default().to_string(),
                name: a.name().unwrap_or_default().to_string(),
                instance_arn: a.instance_arn().unwrap_or(instance_arn).to_string(),
                status: a
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            }
        ))
    }

    async fn describe_application(&self, arn: &str) -> Result<Option<SsoApplication>> {
        not_found_to_none(
            send_once!(
                self.1,
                "sso:DescribeApplication",
                self.0.describe_application().application_arn(arn),
                no_reason
            )
            .map(|a| SsoApplication {
                arn: a.application_arn().unwrap_or(arn).to_string(),
                name: a.name().unwrap_or_default().to_string(),
                instance_arn: a.instance_arn().unwrap_or_default().to_string(),
                status: a
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            }),
        )
    }

    async fn is_assigned(&self, app: &str, kind: Principal, id: &str) -> Result<bool> {
        Ok(not_found_to_none(send_once!(
            self.1,
            "sso:DescribeApplicationAssignment",
            self.0
                .describe_application_assignment()
                .application_arn(app)
                .principal_type(principal(kind))
                .principal_id(id),
            no_reason
        ))?
        .is_some())
    }

    async fn assign(&self, app: &str, kind: Principal, id: &str) -> Result<()> {
        send_once!(
            self.1,
            "sso:CreateApplicationAssignment",
            self.0
                .create_application_assignment()
                .application_arn(app)
                .principal_type(principal(kind))
                .principal_id(id),
            no_reason
        )?;
        Ok(())
    }

    async fn unassign(&self, app: &str, kind: Principal, id: &str) -> Result<()> {
        send_once!(
            self.1,
            "sso:DeleteApplicationAssignment",
            self.0
                .delete_application_assignment()
                .application_arn(app)
                .principal_type(principal(kind))
                .principal_id(id),
            no_reason
        )?;
        Ok(())
    }

    async fn assignments(&self, app: &str) -> Result<Vec<(Principal, String)>> {
        let all = paged!(
            self.1,
            "sso:ListApplicationAssignments",
            self.0
                .list_application_assignments()
                .application_arn(app)
                .max_results(100),
            application_assignments,
            |a| {
                let kind = match a.principal_type() {
                    st::PrincipalType::User => Some(Principal::User),
                    st::PrincipalType::Group => Some(Principal::Group),
                    _ => None,
                };
                kind.map(|k| (k, a.principal_id().to_string()))
            }
        );
        Ok(all.into_iter().flatten().collect())
    }
}
