//! The AWS port: three small traits with only the calls connect-onboard makes, and their
//! implementations over the official SDK clients built from `aws-config`.
//!
//! Why a port: the onboarding steps (`steps.rs`) are written against these traits, so they
//! read as the domain and do not repeat SDK plumbing. The implementations here are the only
//! code that touches `aws_sdk_*` types; they turn every SDK failure into an [`AwsError`]
//! carrying the service's error *code* (never its message text) and whether the request may
//! have been applied.
//!
//! Endpoints, credentials, profile, region and retry settings all come from the standard
//! `aws-config` chain (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_CONNECT`, ..., `AWS_PROFILE`,
//! `AWS_MAX_ATTEMPTS`). The workflow's calls (its lookups and writes) run with the SDK's
//! retries turned off: a retried create whose first attempt landed would come back as
//! "already exists" and hide that the resource is ours, and the engine's own per-step budget
//! is then the whole budget. Preflight reads keep the SDK's standard retries.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_connect::types as ct;
use aws_sdk_identitystore::types as it;
use aws_sdk_ssoadmin::types as st;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::RetryConfig;

/// A failed AWS call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// The service error code (`ThrottlingException`, ...) or a local one (`Timeout`,
    /// `DispatchFailure`, `ResponseError`).
    pub code: String,
    /// The message.
    pub message: String,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// True when the request may have been applied although it failed (5xx, timeout,
    /// connection dropped, unreadable response).
    pub maybe_applied: bool,
    /// Extra error member `Reason` (Identity Store Conflict: UNIQUENESS_CONSTRAINT_VIOLATION
    /// or CONCURRENT_MODIFICATION).
    pub reason: Option<String>,
}

impl AwsError {
    /// Whether the code is `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
    /// Throttling, by code (all three services).
    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ThrottlingException"
                | "TooManyRequestsException"
                | "Throttling"
                | "RequestLimitExceeded"
        )
    }
    /// A server-side failure (5xx) or a transport failure (the request may or may not
    /// have been sent: see `maybe_applied`).
    pub fn is_server_or_transport(&self) -> bool {
        self.maybe_applied
            || self.status.is_some_and(|s| s >= 500)
            || matches!(
                self.code.as_str(),
                "DispatchFailure" | "Timeout" | "ResponseError"
            )
    }
}

fn from_sdk<E, R>(
    err: aws_sdk_connect::error::SdkError<E, R>,
    reason: impl Fn(&E) -> Option<String>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    use aws_sdk_connect::error::SdkError;
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status_code();
            let e = ctx.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            AwsError {
                message: e.message().unwrap_or("").to_string(),
                maybe_applied: status >= 500,
                status: Some(status),
                reason: reason(e),
                code,
            }
        }
        SdkError::TimeoutError(_) => AwsError {
            code: "Timeout".into(),
            message: "the request timed out".into(),
            status: None,
            maybe_applied: true,
            reason: None,
        },
        SdkError::DispatchFailure(d) => {
            // A refused connection never carried the request; anything else (reset, closed
            // mid-response, timeout) may have.
            let never_sent = d.as_connector_error().is_some_and(|c| refused(c));
            AwsError {
                code: "DispatchFailure".into(),
                message: format!("{:?}", d.as_connector_error()),
                status: None,
                maybe_applied: !never_sent,
                reason: None,
            }
        }
        SdkError::ResponseError(r) => AwsError {
            code: "ResponseError".into(),
            message: format!("unreadable response: {:?}", r.raw()),
            status: r.raw().status_code_opt(),
            maybe_applied: true,
            reason: None,
        },
        SdkError::ConstructionFailure(c) => AwsError {
            code: "ConstructionFailure".into(),
            message: format!("{c:?}"),
            status: None,
            maybe_applied: false,
            reason: None,
        },
        other => AwsError {
            code: "Unknown".into(),
            message: other.to_string(),
            status: None,
            maybe_applied: true,
            reason: None,
        },
    }
}

/// Whether an error's source chain holds an I/O "connection refused".
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Access to the HTTP status of a raw response.
trait HasStatus {
    fn status_code(&self) -> u16;
    fn status_code_opt(&self) -> Option<u16> {
        Some(self.status_code())
    }
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn no_reason<E>(_: &E) -> Option<String> {
    None
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, AwsError>;

/// A named resource (routing profile, security profile, hierarchy group).
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// What DescribeInstance says.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectInstance {
    /// Id.
    pub id: String,
    /// `SAML`, `CONNECT_MANAGED` or `EXISTING_DIRECTORY`.
    pub identity_management_type: String,
    /// `ACTIVE`, ...
    pub status: String,
}

/// A Connect user as found by a lookup.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectUser {
    /// Id.
    pub id: String,
    /// ARN.
    pub arn: String,
    /// Username.
    pub username: String,
    /// IdentityInfo.Email (DescribeUser only; SAML users have none).
    pub email: Option<String>,
}

/// A Connect user to create (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewConnectUser<'a> {
    /// Username.
    pub username: &'a str,
    /// First name.
    pub first_name: &'a str,
    /// Last name.
    pub last_name: &'a str,
    /// Primary email (CONNECT_MANAGED only).
    pub email: Option<&'a str>,
    /// Secondary email.
    pub secondary_email: Option<&'a str>,
    /// Mobile.
    pub mobile: Option<&'a str>,
    /// Password (CONNECT_MANAGED only).
    pub password: Option<&'a str>,
    /// Directory user id (EXISTING_DIRECTORY only).
    pub directory_user_id: Option<&'a str>,
    /// `SOFT_PHONE` or `DESK_PHONE`.
    pub phone_type: &'a str,
    /// Auto-accept.
    pub auto_accept: bool,
    /// After-contact-work seconds.
    pub acw_timeout: i32,
    /// Desk phone (E.164).
    pub desk_phone_number: Option<&'a str>,
    /// Routing profile id.
    pub routing_profile_id: &'a str,
    /// Security profile ids.
    pub security_profile_ids: Vec<String>,
    /// Hierarchy group id.
    pub hierarchy_group_id: Option<&'a str>,
    /// Tags.
    pub tags: &'a std::collections::BTreeMap<String, String>,
}

/// Amazon Connect, the calls connect-onboard makes.
#[async_trait::async_trait]
pub trait ConnectApi: Send + Sync {
    /// DescribeInstance.
    async fn describe_instance(&self, instance: &str) -> Result<ConnectInstance>;
    /// ListRoutingProfiles, every page.
    async fn routing_profiles(&self, instance: &str) -> Result<Vec<Named>>;
    /// ListSecurityProfiles, every page.
    async fn security_profiles(&self, instance: &str) -> Result<Vec<Named>>;
    /// ListUserHierarchyGroups, every page.
    async fn hierarchy_groups(&self, instance: &str) -> Result<Vec<Named>>;
    /// SearchUsers with Username EXACT.
    async fn find_user(&self, instance: &str, username: &str) -> Result<Option<ConnectUser>>;
    /// DescribeUser (None on ResourceNotFound).
    async fn describe_user(&self, instance: &str, user_id: &str) -> Result<Option<ConnectUser>>;
    /// CreateUser → (id, arn).
    async fn create_user(
        &self,
        instance: &str,
        user: &NewConnectUser<'_>,
    ) -> Result<(String, String)>;
    /// DeleteUser.
    async fn delete_user(&self, instance: &str, user_id: &str) -> Result<()>;
}

/// An Identity Store user as described.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityUser {
    /// Id.
    pub id: String,
    /// UserName.
    pub user_name: String,
    /// Primary email, if one is flagged primary.
    pub primary_email: Option<String>,
    /// Every email value.
    pub emails: Vec<String>,
}

/// An Identity Store user to create.
#[derive(Debug, Clone)]
pub struct NewIdentityUser<'a> {
    /// UserName.
    pub user_name: &'a str,
    /// DisplayName.
    pub display_name: &'a str,
    /// Name.GivenName.
    pub given_name: &'a str,
    /// Name.FamilyName.
    pub family_name: &'a str,
    /// The one email, sent as `{Value, Type: "work", Primary: true}`.
    pub email: &'a str,
}

/// IAM Identity Center's Identity Store, the calls connect-onboard makes.
#[async_trait::async_trait]
pub trait IdentityStoreApi: Send + Sync {
    /// GetUserId by `userName` (None on ResourceNotFound).
    async fn user_id_by_name(&self, store: &str, user_name: &str) -> Result<Option<String>>;
    /// GetUserId by `emails.value`.
    async fn user_id_by_email(&self, store: &str, email: &str) -> Result<Option<String>>;
    /// DescribeUser.
    async fn describe_user(&self, store: &str, user_id: &str) -> Result<Option<IdentityUser>>;
    /// CreateUser → user id.
    async fn create_user(&self, store: &str, user: &NewIdentityUser<'_>) -> Result<String>;
    /// DeleteUser.
    async fn delete_user(&self, store: &str, user_id: &str) -> Result<()>;
    /// GetGroupId by `displayName`.
    async fn group_id(&self, store: &str, name: &str) -> Result<Option<String>>;
    /// CreateGroup → group id.
    async fn create_group(&self, store: &str, name: &str, description: &str) -> Result<String>;
    /// GetGroupMembershipId.
    async fn membership_id(
        &self,
        store: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<String>>;
    /// CreateGroupMembership → membership id.
    async fn create_membership(&self, store: &str, group_id: &str, user_id: &str)
        -> Result<String>;
    /// DeleteGroupMembership.
    async fn delete_membership(&self, store: &str, membership_id: &str) -> Result<()>;
}

/// An Identity Center instance.
#[derive(Debug, Clone, PartialEq)]
pub struct SsoInstance {
    /// ARN.
    pub arn: String,
    /// Its identity store.
    pub identity_store_id: String,
    /// `ACTIVE`, `CREATE_IN_PROGRESS`, ... (empty when not reported).
    pub status: String,
}

/// An Identity Center application.
#[derive(Debug, Clone, PartialEq)]
pub struct SsoApplication {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// Owning instance.
    pub instance_arn: String,
    /// `ENABLED` or `DISABLED` (empty when not reported).
    pub status: String,
}

/// `USER` or `GROUP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A user.
    User,
    /// A group.
    Group,
}

/// IAM Identity Center's SSO Admin, the calls connect-onboard makes.
#[async_trait::async_trait]
pub trait SsoAdminApi: Send + Sync {
    /// ListInstances, every page.
    async fn instances(&self) -> Result<Vec<SsoInstance>>;
    /// ListApplications, every page.
    async fn applications(&self, instance_arn: &str) -> Result<Vec<SsoApplication>>;
    /// DescribeApplication (None on ResourceNotFound).
    async fn describe_application(&self, arn: &str) -> Result<Option<SsoApplication>>;
    /// DescribeApplicationAssignment: is this principal directly assigned?
    async fn is_assigned(&self, app: &str, kind: Principal, id: &str) -> Result<bool>;
    /// CreateApplicationAssignment.
    async fn assign(&self, app: &str, kind: Principal, id: &str) -> Result<()>;
    /// DeleteApplicationAssignment.
    async fn unassign(&self, app: &str, kind: Principal, id: &str) -> Result<()>;
}

/// Loads the shared AWS configuration: the standard chain, with an optional profile and
/// region override, and a per-attempt timeout.
pub async fn load_sdk_config(
    profile: Option<&str>,
    region: Option<&str>,
    attempt_timeout: std::time::Duration,
) -> SdkConfig {
    // A stalled connection must end as a timeout (classified "may have applied"), never
    // hang a driver that keeps its lease alive.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .operation_attempt_timeout(attempt_timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}

/// The three SDK clients.
#[derive(Clone, Debug)]
pub struct Clients {
    /// Amazon Connect.
    pub connect: SdkConnect,
    /// Identity Store.
    pub identity_store: SdkIdentityStore,
    /// SSO Admin.
    pub sso_admin: SdkSsoAdmin,
}

impl Clients {
    /// Builds clients from `sdk`, with Connect and Identity Center in their own regions when
    /// given (Identity Center's home region can differ from the Connect instance's).
    /// `ic_sdk`, when given, carries other credentials for the Identity Center side.
    pub fn new(
        sdk: &SdkConfig,
        ic_sdk: Option<&SdkConfig>,
        connect_region: Option<&str>,
        ic_region: Option<&str>,
    ) -> Clients {
        let mut c = aws_sdk_connect::config::Builder::from(sdk);
        if let Some(r) = connect_region {
            c = c.region(Region::new(r.to_string()));
        }
        let ic = ic_sdk.unwrap_or(sdk);
        let mut i = aws_sdk_identitystore::config::Builder::from(ic);
        let mut s = aws_sdk_ssoadmin::config::Builder::from(ic);
        if let Some(r) = ic_region {
            i = i.region(Region::new(r.to_string()));
            s = s.region(Region::new(r.to_string()));
        }
        Clients {
            connect: SdkConnect(aws_sdk_connect::Client::from_conf(c.build())),
            identity_store: SdkIdentityStore(aws_sdk_identitystore::Client::from_conf(i.build())),
            sso_admin: SdkSsoAdmin(aws_sdk_ssoadmin::Client::from_conf(s.build())),
        }
    }
}

/// [`ConnectApi`] over `aws_sdk_connect::Client`.
#[derive(Clone, Debug)]
pub struct SdkConnect(pub aws_sdk_connect::Client);
/// [`IdentityStoreApi`] over `aws_sdk_identitystore::Client`.
#[derive(Clone, Debug)]
pub struct SdkIdentityStore(pub aws_sdk_identitystore::Client);
/// [`SsoAdminApi`] over `aws_sdk_ssoadmin::Client`.
#[derive(Clone, Debug)]
pub struct SdkSsoAdmin(pub aws_sdk_ssoadmin::Client);

fn not_found_to_none<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(e),
    }
}

fn connect_no_retry() -> aws_sdk_connect::config::Builder {
    aws_sdk_connect::config::Builder::default().retry_config(RetryConfig::disabled())
}
fn ids_no_retry() -> aws_sdk_identitystore::config::Builder {
    aws_sdk_identitystore::config::Builder::default().retry_config(RetryConfig::disabled())
}
fn sso_no_retry() -> aws_sdk_ssoadmin::config::Builder {
    aws_sdk_ssoadmin::config::Builder::default().retry_config(RetryConfig::disabled())
}

macro_rules! paged {
    ($req:expr, $list:ident, |$item:ident| $map:expr) => {{
        let mut out = Vec::new();
        let mut pages = $req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk(e, no_reason))?;
            for $item in page.$list() {
                out.push($map);
            }
        }
        out
    }};
}

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

impl SdkConnect {
    /// SearchUsers with `Username` EXACT, every page.
    async fn search_user(&self, instance: &str, username: &str) -> Result<Option<ConnectUser>> {
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
            let page = self
                .0
                .search_users()
                .instance_id(instance)
                .search_criteria(criteria.clone())
                .max_results(100)
                .set_next_token(token.take())
                .customize()
                .config_override(connect_no_retry())
                .send()
                .await
                .map_err(|e| from_sdk(e, no_reason))?;
            // EXACT matching is what we asked for; compare again, as Connect usernames are
            // case-sensitive and an emulator or a future API may match more loosely.
            if let Some(u) = page
                .users()
                .iter()
                .find_map(|u| user_hit(u.username(), u.id(), u.arn(), username))
            {
                return Ok(Some(u));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(None),
            }
        }
    }

    /// ListUsers, every page, compared by username.
    async fn list_user(&self, instance: &str, username: &str) -> Result<Option<ConnectUser>> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .0
                .list_users()
                .instance_id(instance)
                .max_results(1000)
                .set_next_token(token.take())
                .customize()
                .config_override(connect_no_retry())
                .send()
                .await
                .map_err(|e| from_sdk(e, no_reason))?;
            if let Some(u) = page
                .user_summary_list()
                .iter()
                .find_map(|u| user_hit(u.username(), u.id(), u.arn(), username))
            {
                return Ok(Some(u));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(None),
            }
        }
    }
}

/// Every page of a Connect `List*` call whose summaries have an id and a name.
macro_rules! named_pages {
    ($client:expr, $op:ident, $list:ident, $instance:expr) => {
        paged!(
            $client.$op().instance_id($instance).max_results(1000),
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
        let out = self
            .0
            .describe_instance()
            .instance_id(instance)
            .send()
            .await
            .map_err(|e| from_sdk(e, no_reason))?;
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
            self.0,
            list_routing_profiles,
            routing_profile_summary_list,
            instance
        ))
    }

    async fn security_profiles(&self, instance: &str) -> Result<Vec<Named>> {
        Ok(named_pages!(
            self.0,
            list_security_profiles,
            security_profile_summary_list,
            instance
        ))
    }

    async fn hierarchy_groups(&self, instance: &str) -> Result<Vec<Named>> {
        Ok(named_pages!(
            self.0,
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

    async fn describe_user(&self, instance: &str, user_id: &str) -> Result<Option<ConnectUser>> {
        not_found_to_none(
            self.0
                .describe_user()
                .instance_id(instance)
                .user_id(user_id)
                .customize()
                .config_override(connect_no_retry())
                .send()
                .await
                .map_err(|e| from_sdk(e, no_reason))
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
        let out = req
            .customize()
            .config_override(connect_no_retry())
            .send()
            .await
            .map_err(|e| from_sdk(e, no_reason))?;
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
            }),
        }
    }

    async fn delete_user(&self, instance: &str, user_id: &str) -> Result<()> {
        self.0
            .delete_user()
            .instance_id(instance)
            .user_id(user_id)
            .customize()
            .config_override(connect_no_retry())
            .send()
            .await
            .map_err(|e| from_sdk(e, no_reason))?;
        Ok(())
    }
}

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

impl SdkIdentityStore {
    async fn get_user_id(&self, store: &str, path: &str, value: &str) -> Result<Option<String>> {
        not_found_to_none(
            self.0
                .get_user_id()
                .identity_store_id(store)
                .alternate_identifier(unique(path, value))
                .customize()
                .config_override(ids_no_retry())
                .send()
                .await
                .map(|o| o.user_id().to_string())
                .map_err(|e| from_sdk(e, no_reason)),
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
            self.0
                .describe_user()
                .identity_store_id(store)
                .user_id(user_id)
                .customize()
                .config_override(ids_no_retry())
                .send()
                .await
                .map_err(|e| from_sdk(e, no_reason))
                .map(|o| IdentityUser {
                    id: o.user_id().to_string(),
                    user_name: o.user_name().unwrap_or_default().to_string(),
                    primary_email: o
                        .emails()
                        .iter()
                        .find(|e| e.primary())
                        .and_then(|e| e.value())
                        .map(str::to_string),
                    emails: o
                        .emails()
                        .iter()
                        .filter_map(|e| e.value())
                        .map(str::to_string)
                        .collect(),
                }),
        )
    }

    async fn create_user(&self, store: &str, u: &NewIdentityUser<'_>) -> Result<String> {
        let out = self
            .0
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
            )
            .customize()
            .config_override(ids_no_retry())
            .send()
            .await
            .map_err(|e| from_sdk(e, ids_reason!(create_user::CreateUserError)))?;
        Ok(out.user_id().to_string())
    }

    async fn delete_user(&self, store: &str, user_id: &str) -> Result<()> {
        self.0
            .delete_user()
            .identity_store_id(store)
            .user_id(user_id)
            .customize()
            .config_override(ids_no_retry())
            .send()
            .await
            .map_err(|e| from_sdk(e, ids_reason!(delete_user::DeleteUserError)))?;
        Ok(())
    }

    async fn group_id(&self, store: &str, name: &str) -> Result<Option<String>> {
        not_found_to_none(
            self.0
                .get_group_id()
                .identity_store_id(store)
                .alternate_identifier(unique("displayName", name))
                .customize()
                .config_override(ids_no_retry())
                .send()
                .await
                .map(|o| o.group_id().to_string())
                .map_err(|e| from_sdk(e, no_reason)),
        )
    }

    async fn create_group(&self, store: &str, name: &str, description: &str) -> Result<String> {
        let out = self
            .0
            .create_group()
            .identity_store_id(store)
            .display_name(name)
            .description(description)
            .customize()
            .config_override(ids_no_retry())
            .send()
            .await
            .map_err(|e| from_sdk(e, ids_reason!(create_group::CreateGroupError)))?;
        Ok(out.group_id().to_string())
    }

    async fn membership_id(
        &self,
        store: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<String>> {
        not_found_to_none(
            self.0
                .get_group_membership_id()
                .identity_store_id(store)
                .group_id(group_id)
                .member_id(it::MemberId::UserId(user_id.to_string()))
                .customize()
                .config_override(ids_no_retry())
                .send()
                .await
                .map(|o| o.membership_id().to_string())
                .map_err(|e| from_sdk(e, no_reason)),
        )
    }

    async fn create_membership(
        &self,
        store: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<String> {
        let out = self
            .0
            .create_group_membership()
            .identity_store_id(store)
            .group_id(group_id)
            .member_id(it::MemberId::UserId(user_id.to_string()))
            .customize()
            .config_override(ids_no_retry())
            .send()
            .await
            .map_err(|e| {
                from_sdk(
                    e,
                    ids_reason!(create_group_membership::CreateGroupMembershipError),
                )
            })?;
        Ok(out.membership_id().to_string())
    }

    async fn delete_membership(&self, store: &str, membership_id: &str) -> Result<()> {
        self.0
            .delete_group_membership()
            .identity_store_id(store)
            .membership_id(membership_id)
            .customize()
            .config_override(ids_no_retry())
            .send()
            .await
            .map_err(|e| {
                from_sdk(
                    e,
                    ids_reason!(delete_group_membership::DeleteGroupMembershipError),
                )
            })?;
        Ok(())
    }
}

fn principal(kind: Principal) -> st::PrincipalType {
    match kind {
        Principal::User => st::PrincipalType::User,
        Principal::Group => st::PrincipalType::Group,
    }
}

#[async_trait::async_trait]
impl SsoAdminApi for SdkSsoAdmin {
    async fn instances(&self) -> Result<Vec<SsoInstance>> {
        Ok(paged!(self.0.list_instances(), instances, |i| {
            SsoInstance {
                arn: i.instance_arn().unwrap_or_default().to_string(),
                identity_store_id: i.identity_store_id().unwrap_or_default().to_string(),
                status: i
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            }
        }))
    }

    async fn applications(&self, instance_arn: &str) -> Result<Vec<SsoApplication>> {
        Ok(paged!(
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
            self.0
                .describe_application()
                .application_arn(arn)
                .send()
                .await
                .map_err(|e| from_sdk(e, no_reason))
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
        Ok(not_found_to_none(
            self.0
                .describe_application_assignment()
                .application_arn(app)
                .principal_type(principal(kind))
                .principal_id(id)
                .customize()
                .config_override(sso_no_retry())
                .send()
                .await
                .map_err(|e| from_sdk(e, no_reason)),
        )?
        .is_some())
    }

    async fn assign(&self, app: &str, kind: Principal, id: &str) -> Result<()> {
        self.0
            .create_application_assignment()
            .application_arn(app)
            .principal_type(principal(kind))
            .principal_id(id)
            .customize()
            .config_override(sso_no_retry())
            .send()
            .await
            .map_err(|e| from_sdk(e, no_reason))?;
        Ok(())
    }

    async fn unassign(&self, app: &str, kind: Principal, id: &str) -> Result<()> {
        self.0
            .delete_application_assignment()
            .application_arn(app)
            .principal_type(principal(kind))
            .principal_id(id)
            .customize()
            .config_override(sso_no_retry())
            .send()
            .await
            .map_err(|e| from_sdk(e, no_reason))?;
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
