//! [`IdentityStoreApi`] over the Identity Store SDK client.

use aws_sdk_identitystore::types as it;

use super::error::{no_reason, not_found_to_none, send_once};
use super::{
    IdentityNames, IdentityStoreApi, IdentityUser, NewIdentityUser, Result, SdkIdentityStore,
};

/// The typed `Reason` of an Identity Store ConflictException (UNIQUENESS_CONSTRAINT_VIOLATION
/// or CONCURRENT_MODIFICATION): the generated parser keeps it on the typed error only.
fn conflict_reason(c: &aws_sdk_identitystore::types::error::ConflictException) -> Option<String> {
    c.reason().map(|r| r.as_str().to_string())
}

macro_rules! ids_reason {
    ($op:ident :: $err:ident) => {
        |e: &aws_sdk_identitystore::operation::$op::$err| match e {
            aws_sdk_identitystore::operation::$op::$err::ConflictException(c) => conflict_reason(c),
            _ => None,
        }
    };
}

fn unique(path: &str, value: &str) -> it::AlternateIdentifier {
    it::AlternateIdentifier::UniqueAttribute(
        it::UniqueAttribute::builder()
            .attribute_path(path)
            .attribute_value(aws_smithy_types::Document::String(value.to_string()))
            .build()
            .expect("both members set"),
    )
}

/// A user as DescribeUser and ListUsers both give it: its names and emails, the primary one
/// apart.
fn identity_user(
    id: &str,
    user_name: Option<&str>,
    name: Option<&it::Name>,
    display_name: Option<&str>,
    emails: &[it::Email],
) -> IdentityUser {
    IdentityUser {
        display_name: display_name.unwrap_or_default().to_string(),
        primary_emails: emails.iter().filter(|e| e.primary()).count(),
        given_name: (name.and_then(|n| n.given_name()))
            .unwrap_or_default()
            .to_string(),
        family_name: (name.and_then(|n| n.family_name()))
            .unwrap_or_default()
            .to_string(),
        id: id.to_string(),
        user_name: user_name.unwrap_or_default().to_string(),
        primary_email: (emails.iter())
            .find(|e| e.primary())
            .and_then(|e| e.value())
            .map(str::to_string),
        emails: emails
            .iter()
            .filter_map(|e| e.value())
            .map(str::to_string)
            .collect(),
    }
}

/// One UpdateUser operation: replace the attribute at `path` with a string.
fn set_text(path: &str, value: &str) -> it::AttributeOperation {
    it::AttributeOperation::builder()
        .attribute_path(path)
        .attribute_value(aws_smithy_types::Document::String(value.to_string()))
        .build()
        .expect("the path is set")
}

impl SdkIdentityStore {
    async fn get_user_id(&self, store: &str, path: &str, value: &str) -> Result<Option<String>> {
        not_found_to_none(
            send_once!(
                self.1,
                "identitystore:GetUserId",
                self.0
                    .get_user_id()
                    .identity_store_id(store)
                    .alternate_identifier(unique(path, value)),
                no_reason
            )
            .map(|o| o.user_id().to_string()),
        )
    }
}

#[async_trait::async_trait]
impl IdentityStoreApi for SdkIdentityStore {
    async fn user_id_by_name(&self, store: &str, user_name: &str) -> Result<Option<String>> {
        self.get_user_id(store, "userName", user_name).await
    }

    async fn user_id_by_email(&self, store: &str, email: &str) -> Result<Option<String>> {
        self.get_user_id(store, "emails.value", email).await
    }

    async fn describe_user(&self, store: &str, user_id: &str) -> Result<Option<IdentityUser>> {
        not_found_to_none(
            send_once!(
                self.1,
                "identitystore:DescribeUser",
                self.0
                    .describe_user()
                    .identity_store_id(store)
                    .user_id(user_id),
                no_reason
            )
            .map(|o| {
                identity_user(
                    o.user_id(),
                    o.user_name(),
                    o.name(),
                    o.display_name(),
                    o.emails(),
                )
            }),
        )
    }

    async fn create_user(&self, store: &str, u: &NewIdentityUser<'_>) -> Result<String> {
        let out = send_once!(
            self.1,
            "identitystore:CreateUser",
            self.0
                .create_user()
                .identity_store_id(store)
                .user_name(u.user_name)
                .display_name(u.display_name)
                .name(
                    it::Name::builder()
                        .given_name(u.given_name)
                        .family_name(u.family_name)
                        .build(),
                )
                .emails(
                    it::Email::builder()
                        .value(u.email)
                        .r#type("work")
                        .primary(true)
                        .build(),
                ),
            ids_reason!(create_user::CreateUserError)
        )?;
        Ok(out.user_id().to_string())
    }

    async fn delete_user(&self, store: &str, user_id: &str) -> Result<()> {
        send_once!(
            self.1,
            "identitystore:DeleteUser",
            self.0
                .delete_user()
                .identity_store_id(store)
                .user_id(user_id),
            ids_reason!(delete_user::DeleteUserError)
        )?;
        Ok(())
    }

    async fn group_id(&self, store: &str, name: &str) -> Result<Option<String>> {
        not_found_to_none(
            send_once!(
                self.1,
                "identitystore:GetGroupId",
                self.0
                    .get_group_id()
                    .identity_store_id(store)
                    .alternate_identifier(unique("displayName", name)),
                no_reason
            )
            .map(|o| o.group_id().to_string()),
        )
    }

    async fn create_group(&self, store: &str, name: &str, description: &str) -> Result<String> {
        let out = send_once!(
            self.1,
            "identitystore:CreateGroup",
            self.0
                .create_group()
                .identity_store_id(store)
                .display_name(name)
                .description(description),
            ids_reason!(create_group::CreateGroupError)
        )?;
        Ok(out.group_id().to_string())
    }

    async fn list_users(&self, store: &str) -> Result<Vec<IdentityUser>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = send_once!(
                self.1,
                "identitystore:ListUsers",
                self.0
                    .list_users()
                    .identity_store_id(store)
                    .max_results(100)
                    .set_next_token(token.take()),
                no_reason
            )?;
            out.extend((page.users().iter()).map(|u| {
                identity_user(
                    u.user_id(),
                    u.user_name(),
                    u.name(),
                    u.display_name(),
                    u.emails(),
                )
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn list_groups(&self, store: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = send_once!(
                self.1,
                "identitystore:ListGroups",
                self.0
                    .list_groups()
                    .identity_store_id(store)
                    .max_results(100)
                    .set_next_token(token.take()),
                no_reason
            )?;
            out.extend((page.groups().iter()).map(|g| {
                (
                    g.group_id().to_string(),
                    g.display_name().unwrap_or_default().to_string(),
                )
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn list_memberships(&self, store: &str, group_id: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = send_once!(
                self.1,
                "identitystore:ListGroupMemberships",
                self.0
                    .list_group_memberships()
                    .identity_store_id(store)
                    .group_id(group_id)
                    .max_results(100)
                    .set_next_token(token.take()),
                no_reason
            )?;
            out.extend(page.group_memberships().iter().filter_map(|m| {
                let user = match m.member_id()? {
                    it::MemberId::UserId(u) => u.clone(),
                    _ => return None,
                };
                let id = Some(m.membership_id()).filter(|i| !i.is_empty())?;
                Some((id.to_string(), user))
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn membership_id(
        &self,
        store: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<String>> {
        not_found_to_none(
            send_once!(
                self.1,
                "identitystore:GetGroupMembershipId",
                self.0
                    .get_group_membership_id()
                    .identity_store_id(store)
                    .group_id(group_id)
                    .member_id(it::MemberId::UserId(user_id.to_string())),
                no_reason
            )
            .map(|o| o.membership_id().to_string()),
        )
    }

    async fn create_membership(
        &self,
        store: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<String> {
        let out = send_once!(
            self.1,
            "identitystore:CreateGroupMembership",
            self.0
                .create_group_membership()
                .identity_store_id(store)
                .group_id(group_id)
                .member_id(it::MemberId::UserId(user_id.to_string())),
            ids_reason!(create_group_membership::CreateGroupMembershipError)
        )?;
        Ok(out.membership_id().to_string())
    }

    async fn delete_membership(&self, store: &str, membership_id: &str) -> Result<()> {
        send_once!(
            self.1,
            "identitystore:DeleteGroupMembership",
            self.0
                .delete_group_membership()
                .identity_store_id(store)
                .membership_id(membership_id),
            ids_reason!(delete_group_membership::DeleteGroupMembershipError)
        )?;
        Ok(())
    }

    async fn update_names(&self, store: &str, user_id: &str, names: &IdentityNames) -> Result<()> {
        send_once!(
            self.1,
            "identitystore:UpdateUser",
            self.0
                .update_user()
                .identity_store_id(store)
                .user_id(user_id)
                .operations(set_text("name.givenName", &names.given_name))
                .operations(set_text("name.familyName", &names.family_name))
                .operations(set_text("displayName", &names.display_name)),
            ids_reason!(update_user::UpdateUserError)
        )?;
        Ok(())
    }
}
