//! [`ConnectApi`] over the Amazon Connect SDK client.

use aws_sdk_connect::types as ct;

use super::error::{no_reason, not_found_to_none, paged, send_once};
use super::{
    AwsError, ConnectApi, ConnectInstance, ConnectUser, ConnectUserDetail, IdentityInfo, Named,
    NewConnectUser, PhoneConfig, Result, SdkConnect,
};

/// A search or list entry that is the user named `username` and carries an id (an entry
/// without one could not be deleted later, so it is not a usable match).
fn user_hit(
    found: Option<&str>,
    id: Option<&str>,
    arn: Option<&str>,
    username: &str,
) -> Option<ConnectUser> {
    let id = id.filter(|i| !i.is_empty())?;
    (found == Some(username)).then(|| ConnectUser {
        id: id.to_string(),
        arn: arn.unwrap_or_default().to_string(),
        username: username.to_string(),
        ..Default::default()
    })
}

/// An optional text as the port holds it: absent and empty are both `None`.
fn text(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(str::to_string)
}

/// A `PhoneConfig` as the port holds it, the after-contact-work limit in seconds: `acw_unit`
/// is what the call answered in (1 for seconds, 1000 for SearchUsers' milliseconds).
fn phone(p: Option<&ct::UserPhoneConfig>, acw_unit: i32) -> PhoneConfig {
    p.map(|p| PhoneConfig {
        phone_type: p.phone_type().as_str().to_string(),
        auto_accept: p.auto_accept(),
        acw_timeout: p.after_contact_work_time_limit() / acw_unit,
        desk_phone_number: text(p.desk_phone_number()),
    })
    .unwrap_or_default()
}

/// Tags as the port holds them (sorted).
fn tags(
    t: Option<&std::collections::HashMap<String, String>>,
) -> std::collections::BTreeMap<String, String> {
    t.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// A SearchUsers entry, with what SearchUsers returns of its details (names, profiles,
/// hierarchy group, phone config with the ACW limit converted from milliseconds, tags).
fn search_hit(u: &ct::UserSearchSummary) -> ConnectUser {
    ConnectUser {
        id: u.id().unwrap_or_default().to_string(),
        arn: u.arn().unwrap_or_default().to_string(),
        username: u.username().unwrap_or_default().to_string(),
        email: None,
        detail: Some(ConnectUserDetail {
            first_name: (u.identity_info().and_then(|i| i.first_name()))
                .unwrap_or_default()
                .to_string(),
            last_name: (u.identity_info().and_then(|i| i.last_name()))
                .unwrap_or_default()
                .to_string(),
            routing_profile_id: u.routing_profile_id().unwrap_or_default().to_string(),
            security_profile_ids: u.security_profile_ids().to_vec(),
            hierarchy_group_id: text(u.hierarchy_group_id()),
            phone: phone(u.phone_config(), 1000),
            secondary_email: None,
            mobile: None,
            tags: tags(u.tags()),
            full_identity_info: false,
        }),
    }
}

impl SdkConnect {
    /// SearchUsers with `Username` EXACT, every page: the user of exactly that name.
    async fn search_exact(
        &self,
        instance: &str,
        username: &str,
    ) -> Result<Option<ct::UserSearchSummary>> {
        let criteria = ct::UserSearchCriteria::builder()
            .string_condition(
                ct::StringCondition::builder()
                    .field_name("Username")
                    .value(username)
                    .comparison_type(ct::StringComparisonType::Exact)
                    .build(),
            )
            .build();
        let mut token: Option<String> = None;
        loop {
            let page = send_once!(
                self.1,
                "connect:SearchUsers",
                self.0
                    .search_users()
                    .instance_id(instance)
                    .search_criteria(criteria.clone())
                    .max_results(100)
                    .set_next_token(token.take()),
                no_reason
            )?;
            // EXACT matching is what we asked for; compare again, as Connect usernames are
            // case-sensitive and an emulator or a future API may match more loosely.
            if let Some(u) = (page.users().iter())
                .find(|u| user_hit(u.username(), u.id(), u.arn(), username).is_some())
            {
                return Ok(Some(u.clone()));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(None),
            }
        }
    }

    /// SearchUsers with `Username` EXACT: the user's id and ARN.
    async fn search_user(&self, instance: &str, username: &str) -> Result<Option<ConnectUser>> {
        Ok(self
            .search_exact(instance, username)
            .await?
            .and_then(|u| user_hit(u.username(), u.id(), u.arn(), username)))
    }

    /// ListUsers, every page, compared by username.
    async fn list_user(&self, instance: &str, username: &str) -> Result<Option<ConnectUser>> {
        Ok(self
            .list_users(instance)
            .await?
            .into_iter()
            .find(|u| u.username == username))
    }
}

/// Every page of a Connect `List*` call whose summaries have an id and a name.
macro_rules! named_pages {
    ($sdk:expr, $api:expr, $op:ident, $list:ident, $instance:expr) => {
        paged!(
            $sdk.1,
            $api,
            $sdk.0.$op().instance_id($instance).max_results(1000),
            $list,
            |p| Named {
                id: p.id().unwrap_or_default().to_string(),
                name: p.name().unwrap_or_default().to_string()
            }
        )
    };
}

#[async_trait::async_trait]
impl ConnectApi for SdkConnect {
    async fn describe_instance(&self, instance: &str) -> Result<ConnectInstance> {
        let out = send_once!(
            self.1,
            "connect:DescribeInstance",
            self.0.describe_instance().instance_id(instance),
            no_reason
        )?;
        let i = out.instance();
        Ok(ConnectInstance {
            id: i.and_then(|i| i.id()).unwrap_or(instance).to_string(),
            identity_management_type: i
                .and_then(|i| i.identity_management_type())
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            status: i
                .and_then(|i| i.instance_status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        })
    }

    async fn routing_profiles(&self, instance: &str) -> Result<Vec<Named>> {
        Ok(named_pages!(
            self,
            "connect:ListRoutingProfiles",
            list_routing_profiles,
            routing_profile_summary_list,
            instance
        ))
    }

    async fn security_profiles(&self, instance: &str) -> Result<Vec<Named>> {
        Ok(named_pages!(
            self,
            "connect:ListSecurityProfiles",
            list_security_profiles,
            security_profile_summary_list,
            instance
        ))
    }

    async fn hierarchy_groups(&self, instance: &str) -> Result<Vec<Named>> {
        Ok(named_pages!(
            self,
            "connect:ListUserHierarchyGroups",
            list_user_hierarchy_groups,
            user_hierarchy_group_summary_list,
            instance
        ))
    }

    async fn find_user(&self, instance: &str, username: &str) -> Result<Option<ConnectUser>> {
        match self.search_user(instance, username).await {
            // An endpoint without SearchUsers (an older emulator, a partition that lacks it):
            // page through ListUsers instead, as the Connect admin guide suggests.
            Err(e)
                if e.is("UnknownOperationException")
                    || e.status == Some(404) && e.code == "Unknown" =>
            {
                self.list_user(instance, username).await
            }
            other => other,
        }
    }

    async fn list_users(&self, instance: &str) -> Result<Vec<ConnectUser>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = send_once!(
                self.1,
                "connect:ListUsers",
                self.0
                    .list_users()
                    .instance_id(instance)
                    .max_results(1000)
                    .set_next_token(token.take()),
                no_reason
            )?;
            out.extend(page.user_summary_list().iter().filter_map(|u| {
                user_hit(
                    u.username(),
                    u.id(),
                    u.arn(),
                    u.username().unwrap_or_default(),
                )
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn describe_user(&self, instance: &str, user_id: &str) -> Result<Option<ConnectUser>> {
        not_found_to_none(
            send_once!(
                self.1,
                "connect:DescribeUser",
                self.0
                    .describe_user()
                    .instance_id(instance)
                    .user_id(user_id),
                no_reason
            )
            .map(|o| {
                let u = o.user();
                ConnectUser {
                    id: u.and_then(|u| u.id()).unwrap_or(user_id).to_string(),
                    arn: u.and_then(|u| u.arn()).unwrap_or_default().to_string(),
                    username: u.and_then(|u| u.username()).unwrap_or_default().to_string(),
                    email: u
                        .and_then(|u| u.identity_info())
                        .and_then(|i| i.email())
                        .filter(|e| !e.is_empty())
                        .map(str::to_string),
                    detail: u.map(|u| ConnectUserDetail {
                        first_name: (u.identity_info().and_then(|i| i.first_name()))
                            .unwrap_or_default()
                            .to_string(),
                        last_name: (u.identity_info().and_then(|i| i.last_name()))
                            .unwrap_or_default()
                            .to_string(),
                        routing_profile_id: u.routing_profile_id().unwrap_or_default().to_string(),
                        security_profile_ids: u.security_profile_ids().to_vec(),
                        hierarchy_group_id: text(u.hierarchy_group_id()),
                        phone: phone(u.phone_config(), 1),
                        secondary_email: text(u.identity_info().and_then(|i| i.secondary_email())),
                        mobile: text(u.identity_info().and_then(|i| i.mobile())),
                        tags: tags(u.tags()),
                        full_identity_info: true,
                    }),
                }
            }),
        )
    }

    async fn create_user(
        &self,
        instance: &str,
        u: &NewConnectUser<'_>,
    ) -> Result<(String, String)> {
        let mut identity = ct::UserIdentityInfo::builder()
            .first_name(u.first_name)
            .last_name(u.last_name);
        if let Some(e) = u.email {
            identity = identity.email(e);
        }
        if let Some(e) = u.secondary_email {
            identity = identity.secondary_email(e);
        }
        if let Some(m) = u.mobile {
            identity = identity.mobile(m);
        }
        let mut phone = ct::UserPhoneConfig::builder()
            .phone_type(ct::PhoneType::from(u.phone_type))
            .auto_accept(u.auto_accept)
            .after_contact_work_time_limit(u.acw_timeout);
        if let Some(d) = u.desk_phone_number {
            phone = phone.desk_phone_number(d);
        }
        let mut req = self
            .0
            .create_user()
            .instance_id(instance)
            .username(u.username)
            .identity_info(identity.build())
            .phone_config(phone.build())
            .routing_profile_id(u.routing_profile_id)
            .set_security_profile_ids(Some(u.security_profile_ids.clone()))
            .set_hierarchy_group_id(u.hierarchy_group_id.map(str::to_string))
            .set_password(u.password.map(str::to_string))
            .set_directory_user_id(u.directory_user_id.map(str::to_string));
        if !u.tags.is_empty() {
            req = req.set_tags(Some(
                u.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ));
        }
        let out = send_once!(self.1, "connect:CreateUser", req, no_reason)?;
        match out.user_id().filter(|id| !id.is_empty()) {
            Some(id) => Ok((
                id.to_string(),
                out.user_arn().unwrap_or_default().to_string(),
            )),
            // Created, but we cannot tell which user: let the lookup resolve it.
            None => Err(AwsError {
                code: "ResponseError".into(),
                message: "CreateUser answered without a UserId".into(),
                status: None,
                maybe_applied: true,
                reason: None,
                retry_after: None,
                budget_spent: false,
            }),
        }
    }

    async fn delete_user(&self, instance: &str, user_id: &str) -> Result<()> {
        send_once!(
            self.1,
            "connect:DeleteUser",
            self.0.delete_user().instance_id(instance).user_id(user_id),
            no_reason
        )?;
        Ok(())
    }

    async fn search_user_details(
        &self,
        instance: &str,
        username: &str,
    ) -> Result<Option<ConnectUser>> {
        Ok(self
            .search_exact(instance, username)
            .await?
            .map(|u| search_hit(&u)))
    }

    async fn search_users(&self, instance: &str) -> Result<Vec<ConnectUser>> {
        // No criteria: every user. 500 is the model's page maximum (the sandbox's too).
        let users = paged!(
            self.1,
            "connect:SearchUsers",
            self.0.search_users().instance_id(instance).max_results(500),
            users,
            |u| search_hit(u)
        );
        // An entry without an id could not be updated by id: not a usable user.
        Ok(users.into_iter().filter(|u| !u.id.is_empty()).collect())
    }

    async fn update_routing_profile(&self, instance: &str, user_id: &str, id: &str) -> Result<()> {
        send_once!(
            self.1,
            "connect:UpdateUserRoutingProfile",
            self.0
                .update_user_routing_profile()
                .instance_id(instance)
                .user_id(user_id)
                .routing_profile_id(id),
            no_reason
        )?;
        Ok(())
    }

    async fn update_security_profiles(
        &self,
        instance: &str,
        user_id: &str,
        ids: &[String],
    ) -> Result<()> {
        send_once!(
            self.1,
            "connect:UpdateUserSecurityProfiles",
            self.0
                .update_user_security_profiles()
                .instance_id(instance)
                .user_id(user_id)
                .set_security_profile_ids(Some(ids.to_vec())),
            no_reason
        )?;
        Ok(())
    }

    async fn update_hierarchy(
        &self,
        instance: &str,
        user_id: &str,
        group: Option<&str>,
    ) -> Result<()> {
        // No HierarchyGroupId: the user leaves its group (UpdateUserHierarchy's documented
        // way to remove it).
        send_once!(
            self.1,
            "connect:UpdateUserHierarchy",
            self.0
                .update_user_hierarchy()
                .instance_id(instance)
                .user_id(user_id)
                .set_hierarchy_group_id(group.map(str::to_string)),
            no_reason
        )?;
        Ok(())
    }

    async fn update_phone_config(
        &self,
        instance: &str,
        user_id: &str,
        p: &PhoneConfig,
    ) -> Result<()> {
        let config = ct::UserPhoneConfig::builder()
            .phone_type(ct::PhoneType::from(p.phone_type.as_str()))
            .auto_accept(p.auto_accept)
            .after_contact_work_time_limit(p.acw_timeout)
            .set_desk_phone_number(p.desk_phone_number.clone())
            .build();
        send_once!(
            self.1,
            "connect:UpdateUserPhoneConfig",
            self.0
                .update_user_phone_config()
                .instance_id(instance)
                .user_id(user_id)
                .phone_config(config),
            no_reason
        )?;
        Ok(())
    }

    async fn update_identity_info(
        &self,
        instance: &str,
        user_id: &str,
        info: &IdentityInfo,
    ) -> Result<()> {
        let identity = ct::UserIdentityInfo::builder()
            .first_name(&info.first_name)
            .last_name(&info.last_name)
            .set_email(info.email.clone())
            .set_secondary_email(info.secondary_email.clone())
            .set_mobile(info.mobile.clone())
            .build();
        send_once!(
            self.1,
            "connect:UpdateUserIdentityInfo",
            self.0
                .update_user_identity_info()
                .instance_id(instance)
                .user_id(user_id)
                .identity_info(identity),
            no_reason
        )?;
        Ok(())
    }

    async fn tag_user(
        &self,
        arn: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        send_once!(
            self.1,
            "connect:TagResource",
            self.0.tag_resource().resource_arn(arn).set_tags(Some(
                tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            )),
            no_reason
        )?;
        Ok(())
    }

    async fn untag_user(&self, arn: &str, keys: &[String]) -> Result<()> {
        send_once!(
            self.1,
            "connect:UntagResource",
            self.0
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.to_vec())),
            no_reason
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_hit_needs_the_exact_username_and_an_id() {
        let hit = user_hit(
            Some("ana@example.com"),
            Some("u-1"),
            Some("arn"),
            "ana@example.com",
        );
        assert_eq!(hit.map(|u| u.id), Some("u-1".to_string()));
        // Case-sensitive, as Connect usernames are.
        assert!(user_hit(
            Some("Ana@example.com"),
            Some("u-1"),
            None,
            "ana@example.com"
        )
        .is_none());
        // An entry without an id could never be deleted by id: not a usable match.
        assert!(user_hit(Some("ana@example.com"), None, None, "ana@example.com").is_none());
        assert!(user_hit(Some("ana@example.com"), Some(""), None, "ana@example.com").is_none());
    }
}
