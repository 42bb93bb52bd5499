//! The seed file format: [`Seed`] and its parts (TOML or JSON, every field optional,
//! omitted fields keeping the default world's values), and reading it from a file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    det_uuid, World, CONNECT_APPLICATION_PROVIDER_ARN, DEFAULT_ACCOUNT_ID, DEFAULT_AGENTS_GROUP,
    DEFAULT_APPLICATION_ARN, DEFAULT_CONNECT_INSTANCE_ID, DEFAULT_IDENTITY_STORE_ID,
    DEFAULT_REGION, DEFAULT_SSO_INSTANCE_ARN,
};
use crate::faults::{read_config_file, ConfigError};

/// The starting world. Every field is optional in a file; omitted fields keep
/// their default-world values (so `connect_instances = [...]` replaces the
/// default instance, while a file with only `identity_users` extends the
/// default world with users).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    /// Account id used in ARNs.
    pub account_id: String,
    /// Region used in ARNs.
    pub region: String,
    /// Connect instances.
    pub connect_instances: Vec<SeedConnectInstance>,
    /// Identity Center instances (each with its identity store and applications).
    pub sso_instances: Vec<SeedSsoInstance>,
    /// Identity Store users.
    pub identity_users: Vec<SeedIdentityUser>,
    /// Identity Store groups.
    pub identity_groups: Vec<SeedIdentityGroup>,
    /// Group memberships.
    pub memberships: Vec<SeedMembership>,
    /// Application assignments.
    pub assignments: Vec<SeedAssignment>,
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            account_id: DEFAULT_ACCOUNT_ID.into(),
            region: DEFAULT_REGION.into(),
            connect_instances: vec![SeedConnectInstance {
                id: DEFAULT_CONNECT_INSTANCE_ID.into(),
                ..SeedConnectInstance::default()
            }],
            sso_instances: vec![SeedSsoInstance::default()],
            identity_users: vec![],
            identity_groups: vec![SeedIdentityGroup {
                display_name: DEFAULT_AGENTS_GROUP.into(),
                id: Some(format!("1234567890-{}", det_uuid("group/ConnectAgents"))),
                description: Some("Amazon Connect agents".into()),
                identity_store_id: None,
            }],
            memberships: vec![],
            assignments: vec![],
        }
    }
}

impl Seed {
    /// Reads a TOML or JSON (by extension) seed file.
    pub fn from_path(path: &Path) -> Result<Seed, ConfigError> {
        let seed: Seed = read_config_file(path)?;
        World::from_seed(&seed).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(seed)
    }

    /// Parses TOML text.
    pub fn from_toml_str(text: &str) -> Result<Seed, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: "<string>".into(),
            source,
        })
    }
}

fn default_routing_profiles() -> Vec<String> {
    vec![
        "Basic Routing Profile".into(),
        "Sales Routing Profile".into(),
    ]
}
fn default_security_profiles() -> Vec<String> {
    ["Agent", "Admin", "CallCenterManager", "QualityAnalyst"]
        .map(String::from)
        .to_vec()
}
fn default_hierarchy_groups() -> Vec<String> {
    vec!["Tier 1".into(), "Tier 2".into()]
}

/// A seeded Connect instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SeedConnectInstance {
    /// Instance id (UUID).
    pub id: String,
    /// Instance alias.
    pub alias: String,
    /// `SAML`, `CONNECT_MANAGED` or `EXISTING_DIRECTORY`.
    pub identity_management_type: String,
    /// Users-per-instance quota.
    pub max_users: usize,
    /// Routing profile names.
    pub routing_profiles: Vec<String>,
    /// Security profile names.
    pub security_profiles: Vec<String>,
    /// Hierarchy group names.
    pub hierarchy_groups: Vec<String>,
    /// Pre-existing users.
    pub users: Vec<SeedConnectUser>,
}

impl Default for SeedConnectInstance {
    fn default() -> Self {
        SeedConnectInstance {
            id: String::new(),
            alias: "sandbox".into(),
            identity_management_type: "SAML".into(),
            max_users: 500,
            routing_profiles: default_routing_profiles(),
            security_profiles: default_security_profiles(),
            hierarchy_groups: default_hierarchy_groups(),
            users: vec![],
        }
    }
}

/// A seeded Connect user (profiles by name).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SeedConnectUser {
    /// Fixed id (default: derived from the username).
    pub id: Option<String>,
    /// Username.
    pub username: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Primary email (CONNECT_MANAGED).
    pub email: Option<String>,
    /// Secondary email.
    pub secondary_email: Option<String>,
    /// Security profile names (default: the instance's first).
    pub security_profiles: Vec<String>,
    /// Routing profile name (default: the instance's first).
    pub routing_profile: Option<String>,
    /// Hierarchy group name.
    pub hierarchy_group: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Mobile (E.164).
    pub mobile: Option<String>,
    /// Phone config (default: soft phone, no auto-accept, ACW 0).
    pub phone: Option<SeedPhoneConfig>,
}

/// A seeded user's `PhoneConfig` (ACW in seconds, as CreateUser takes it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedPhoneConfig {
    /// `SOFT_PHONE` (default) or `DESK_PHONE`.
    #[serde(default = "soft_phone")]
    pub phone_type: String,
    /// AutoAccept.
    #[serde(default)]
    pub auto_accept: bool,
    /// AfterContactWorkTimeLimit, seconds.
    #[serde(default)]
    pub acw_timeout: i64,
    /// DeskPhoneNumber (E.164; required for `DESK_PHONE`).
    #[serde(default)]
    pub desk_phone_number: Option<String>,
}

fn soft_phone() -> String {
    "SOFT_PHONE".into()
}

/// A seeded Identity Center instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SeedSsoInstance {
    /// `arn:aws:sso:::instance/ssoins-<16>`.
    pub instance_arn: String,
    /// Its identity store (`d-<10 hex>`).
    pub identity_store_id: String,
    /// Optional instance name.
    pub name: Option<String>,
    /// Applications of this instance.
    pub applications: Vec<SeedApplication>,
}

impl Default for SeedSsoInstance {
    fn default() -> Self {
        SeedSsoInstance {
            instance_arn: DEFAULT_SSO_INSTANCE_ARN.into(),
            identity_store_id: DEFAULT_IDENTITY_STORE_ID.into(),
            name: None,
            applications: vec![SeedApplication::default()],
        }
    }
}

/// A seeded application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SeedApplication {
    /// `arn:aws:sso::<acct>:application/ssoins-<16>/apl-<16>`.
    pub arn: String,
    /// Display name.
    pub name: String,
    /// Provider ARN.
    pub provider_arn: String,
    /// `ENABLED` or `DISABLED`.
    pub status: String,
    /// Description.
    pub description: Option<String>,
}

impl Default for SeedApplication {
    fn default() -> Self {
        SeedApplication {
            arn: DEFAULT_APPLICATION_ARN.into(),
            name: "Amazon Connect".into(),
            provider_arn: CONNECT_APPLICATION_PROVIDER_ARN.into(),
            status: "ENABLED".into(),
            description: None,
        }
    }
}

/// A seeded Identity Store user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SeedIdentityUser {
    /// Store (default: the first SSO instance's).
    pub identity_store_id: Option<String>,
    /// Fixed id.
    pub id: Option<String>,
    /// UserName.
    pub user_name: String,
    /// DisplayName (default "Given Family").
    pub display_name: Option<String>,
    /// Name.GivenName.
    pub given_name: String,
    /// Name.FamilyName.
    pub family_name: String,
    /// Primary work email.
    pub email: Option<String>,
}

/// A seeded Identity Store group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SeedIdentityGroup {
    /// Store (default: the first SSO instance's).
    pub identity_store_id: Option<String>,
    /// Fixed id.
    pub id: Option<String>,
    /// DisplayName.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
}

/// A seeded membership (by group display name / user name, or ids).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SeedMembership {
    /// Store (default: the first SSO instance's).
    pub identity_store_id: Option<String>,
    /// Group display name or id.
    pub group: String,
    /// User name or id.
    pub user: String,
}

/// A seeded application assignment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SeedAssignment {
    /// Application ARN or name.
    pub application: String,
    /// `USER` or `GROUP`.
    pub principal_type: String,
    /// User name / group display name, or id.
    pub principal: String,
}
