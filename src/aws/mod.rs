//! The AWS port: three small traits with only the calls connect-onboard makes, and their
//! implementations over the official SDK clients built from `aws-config`.
//!
//! Why a port: the onboarding steps (`crate::steps`) are written against these traits, so they
//! read as the domain and do not repeat SDK plumbing. The implementations here are the only
//! code that touches `aws_sdk_*` types; they turn every SDK failure into an [`AwsError`]
//! carrying the service's error *code* (never its message text) and whether the request may
//! have been applied.
//!
//! Endpoints, credentials, profile and region come from the standard `aws-config` chain
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_CONNECT`, ..., `AWS_PROFILE`). The SDK's retries
//! are off on every client: each call, preflight reads included, goes through the pacer and
//! retries only what heals (`retry`: throttling on any call, 5xx/timeouts on reads) for a
//! time budget; a write that may have been applied is never re-sent here (it would come back
//! "already exists" and hide that the resource is ours): the engine looks up and decides.
//!
//! The parts: `error` (AwsError, `send_once!`/`paged!`), `retry` (per-call retries),
//! `pacer` (rate limits), `clients` (aws-config → the three SDK clients), and one file per
//! service implementing its trait.

mod clients;
mod connect;
pub(crate) mod error;
mod identitystore;
pub mod pacer;
pub mod queue;
pub mod retry;
mod ssoadmin;

pub use clients::{load_sdk_config, Clients, SdkConnect, SdkIdentityStore, SdkSsoAdmin};
pub use error::{AwsError, Result};

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
    /// What DescribeUser adds (lookups leave it empty).
    pub detail: Option<ConnectUserDetail>,
}

/// A Connect user's names and profiles, as DescribeUser gives them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectUserDetail {
    /// IdentityInfo.FirstName.
    pub first_name: String,
    /// IdentityInfo.LastName.
    pub last_name: String,
    /// RoutingProfileId.
    pub routing_profile_id: String,
    /// SecurityProfileIds.
    pub security_profile_ids: Vec<String>,
    /// HierarchyGroupId.
    pub hierarchy_group_id: Option<String>,
    /// PhoneConfig (AfterContactWorkTimeLimit in seconds, whichever call read it).
    pub phone: PhoneConfig,
    /// IdentityInfo.SecondaryEmail (DescribeUser only: SearchUsers does not return it).
    pub secondary_email: Option<String>,
    /// IdentityInfo.Mobile (DescribeUser only).
    pub mobile: Option<String>,
    /// Tags.
    pub tags: std::collections::BTreeMap<String, String>,
    /// Whether `secondary_email`, `mobile` and the email were read (DescribeUser), not
    /// just left empty (SearchUsers).
    pub full_identity_info: bool,
}

/// A Connect user's `PhoneConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PhoneConfig {
    /// `SOFT_PHONE` or `DESK_PHONE`.
    pub phone_type: String,
    /// AutoAccept.
    pub auto_accept: bool,
    /// AfterContactWorkTimeLimit, in seconds (SearchUsers answers in milliseconds: the
    /// port converts).
    pub acw_timeout: i32,
    /// DeskPhoneNumber (E.164), when set.
    pub desk_phone_number: Option<String>,
}

/// A Connect user's `IdentityInfo`, whole (UpdateUserIdentityInfo replaces it whole).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct IdentityInfo {
    /// FirstName.
    pub first_name: String,
    /// LastName.
    pub last_name: String,
    /// Email (CONNECT_MANAGED instances; never sent when `None`).
    pub email: Option<String>,
    /// SecondaryEmail.
    pub secondary_email: Option<String>,
    /// Mobile (E.164).
    pub mobile: Option<String>,
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
    /// ListUsers, every page: the instance's users (id, ARN, username), for bulk reads.
    async fn list_users(&self, instance: &str) -> Result<Vec<ConnectUser>> {
        Err(AwsError::unsupported("connect:ListUsers", instance))
    }
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
    /// SearchUsers without criteria, every page: the instance's users with their profiles,
    /// hierarchy group, phone config, first and last name and tags (`detail` set; its
    /// `secondary_email`/`mobile` are not returned by SearchUsers: `full_identity_info`
    /// false), for `apply`'s bulk reads.
    async fn search_users(&self, instance: &str) -> Result<Vec<ConnectUser>> {
        Err(AwsError::unsupported("connect:SearchUsers", instance))
    }
    /// SearchUsers with Username EXACT, with what [`ConnectApi::search_users`] gives of a
    /// user (`detail` set), for `sync`'s reads of the users an event names.
    async fn search_user_details(
        &self,
        instance: &str,
        username: &str,
    ) -> Result<Option<ConnectUser>> {
        Err(AwsError::unsupported(
            "connect:SearchUsers",
            &format!("{instance}/{username}"),
        ))
    }
    /// UpdateUserRoutingProfile.
    async fn update_routing_profile(&self, instance: &str, user_id: &str, id: &str) -> Result<()> {
        let _ = (user_id, id);
        Err(AwsError::unsupported(
            "connect:UpdateUserRoutingProfile",
            instance,
        ))
    }
    /// UpdateUserSecurityProfiles (the whole set).
    async fn update_security_profiles(
        &self,
        instance: &str,
        user_id: &str,
        ids: &[String],
    ) -> Result<()> {
        let _ = (user_id, ids);
        Err(AwsError::unsupported(
            "connect:UpdateUserSecurityProfiles",
            instance,
        ))
    }
    /// UpdateUserHierarchy (`None`: the user leaves its hierarchy group).
    async fn update_hierarchy(
        &self,
        instance: &str,
        user_id: &str,
        group: Option<&str>,
    ) -> Result<()> {
        let _ = (user_id, group);
        Err(AwsError::unsupported(
            "connect:UpdateUserHierarchy",
            instance,
        ))
    }
    /// UpdateUserPhoneConfig (the whole config).
    async fn update_phone_config(
        &self,
        instance: &str,
        user_id: &str,
        phone: &PhoneConfig,
    ) -> Result<()> {
        let _ = (user_id, phone);
        Err(AwsError::unsupported(
            "connect:UpdateUserPhoneConfig",
            instance,
        ))
    }
    /// UpdateUserIdentityInfo (the whole info; `None` fields are sent absent).
    async fn update_identity_info(
        &self,
        instance: &str,
        user_id: &str,
        info: &IdentityInfo,
    ) -> Result<()> {
        let _ = (user_id, info);
        Err(AwsError::unsupported(
            "connect:UpdateUserIdentityInfo",
            instance,
        ))
    }
    /// TagResource on a user's ARN (adds or changes these tags; others stay).
    async fn tag_user(
        &self,
        arn: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let _ = tags;
        Err(AwsError::unsupported("connect:TagResource", arn))
    }
    /// UntagResource on a user's ARN.
    async fn untag_user(&self, arn: &str, keys: &[String]) -> Result<()> {
        let _ = keys;
        Err(AwsError::unsupported("connect:UntagResource", arn))
    }
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
    /// How many emails are flagged primary (SAML's `${user:email}` needs exactly one).
    pub primary_emails: usize,
    /// Name.GivenName.
    pub given_name: String,
    /// Name.FamilyName.
    pub family_name: String,
    /// DisplayName.
    pub display_name: String,
}

/// An Identity Store user's names, as `apply` sets them (UpdateUser).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct IdentityNames {
    /// Name.GivenName.
    pub given_name: String,
    /// Name.FamilyName.
    pub family_name: String,
    /// DisplayName.
    pub display_name: String,
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
    /// ListUsers, every page: every user with its names and emails, for bulk reads.
    async fn list_users(&self, store: &str) -> Result<Vec<IdentityUser>> {
        Err(AwsError::unsupported("identitystore:ListUsers", store))
    }
    /// ListGroups, every page: (group id, display name) of every group.
    async fn list_groups(&self, store: &str) -> Result<Vec<(String, String)>> {
        Err(AwsError::unsupported("identitystore:ListGroups", store))
    }
    /// ListGroupMemberships, every page: (membership id, user id) of the group's members.
    async fn list_memberships(
        &self,
        _store: &str,
        group_id: &str,
    ) -> Result<Vec<(String, String)>> {
        Err(AwsError::unsupported(
            "identitystore:ListGroupMemberships",
            group_id,
        ))
    }
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
    /// UpdateUser: replaces `name.givenName`, `name.familyName` and `displayName`.
    async fn update_names(&self, store: &str, user_id: &str, names: &IdentityNames) -> Result<()> {
        let _ = (user_id, names);
        Err(AwsError::unsupported("identitystore:UpdateUser", store))
    }
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
    /// ListApplicationAssignments, every page: the application's direct assignments.
    async fn assignments(&self, app: &str) -> Result<Vec<(Principal, String)>> {
        Err(AwsError::unsupported("sso:ListApplicationAssignments", app))
    }
}
