//! The emulated world: its state ([`World`]) and how it is seeded ([`Seed`]).
//!
//! A [`Seed`] is the deterministic starting point (TOML or JSON file, or
//! [`Seed::default`]); [`World::from_seed`] turns it into live state with fixed,
//! name-derived ids. `World` also offers small helpers (`add_connect_user`,
//! `add_identity_user`, ...) for tests that want pre-existing resources.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::faults::{read_config_file, ConfigError};

/// The default account.
pub const DEFAULT_ACCOUNT_ID: &str = "123456789012";
/// The default region.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The default Connect instance id.
pub const DEFAULT_CONNECT_INSTANCE_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
/// The default Identity Center instance.
pub const DEFAULT_SSO_INSTANCE_ARN: &str = "arn:aws:sso:::instance/ssoins-1111111111111111";
/// The default identity store.
pub const DEFAULT_IDENTITY_STORE_ID: &str = "d-1234567890";
/// The default "Amazon Connect" application.
pub const DEFAULT_APPLICATION_ARN: &str =
    "arn:aws:sso::123456789012:application/ssoins-1111111111111111/apl-2222222222222222";
/// Provider ARN used for Amazon Connect applications.
pub const CONNECT_APPLICATION_PROVIDER_ARN: &str =
    "arn:aws:sso::aws:applicationProvider/catalog/AmazonConnect";
/// The group the default world pre-creates.
pub const DEFAULT_AGENTS_GROUP: &str = "ConnectAgents";

/// Errors building or changing the world outside the wire API.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorldError {
    /// A referenced resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A resource with that name or id already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// A seed value is not valid.
    #[error("invalid seed: {0}")]
    Invalid(String),
}

// ---------------------------------------------------------------------------
// Seed
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/// A named Connect resource (routing profile, security profile, hierarchy group).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConnectResource {
    /// Id (UUID).
    pub id: String,
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
}

/// Connect `UserIdentityInfo`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct IdentityInfo {
    /// FirstName.
    pub first_name: Option<String>,
    /// LastName.
    pub last_name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// SecondaryEmail.
    pub secondary_email: Option<String>,
    /// Mobile.
    pub mobile: Option<String>,
}

/// Connect `UserPhoneConfig` (ACW limit in seconds).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PhoneConfig {
    /// SOFT_PHONE or DESK_PHONE.
    pub phone_type: String,
    /// AutoAccept.
    pub auto_accept: bool,
    /// AfterContactWorkTimeLimit (seconds).
    pub after_contact_work_time_limit: i64,
    /// DeskPhoneNumber.
    pub desk_phone_number: Option<String>,
    /// PersistentConnection.
    pub persistent_connection: Option<bool>,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        PhoneConfig {
            phone_type: "SOFT_PHONE".into(),
            auto_accept: false,
            after_contact_work_time_limit: 0,
            desk_phone_number: None,
            persistent_connection: None,
        }
    }
}

/// A Connect user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConnectUser {
    /// Id (UUID).
    pub id: String,
    /// ARN.
    pub arn: String,
    /// Username (case-sensitive).
    pub username: String,
    /// Identity info.
    pub identity_info: IdentityInfo,
    /// Phone config.
    pub phone_config: PhoneConfig,
    /// DirectoryUserId.
    pub directory_user_id: Option<String>,
    /// Security profile ids.
    pub security_profile_ids: Vec<String>,
    /// Routing profile id.
    pub routing_profile_id: String,
    /// Hierarchy group id.
    pub hierarchy_group_id: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Epoch seconds.
    pub last_modified_time: f64,
    /// Sandbox clock (ms) at creation; None for seeded users (always visible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<u64>,
}

/// A Connect instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConnectInstance {
    /// Id.
    pub id: String,
    /// ARN.
    pub arn: String,
    /// Alias.
    pub alias: String,
    /// SAML | CONNECT_MANAGED | EXISTING_DIRECTORY.
    pub identity_management_type: String,
    /// Epoch seconds.
    pub created_time: f64,
    /// Users-per-instance quota.
    pub max_users: usize,
    /// Routing profiles by id.
    pub routing_profiles: BTreeMap<String, ConnectResource>,
    /// Security profiles by id.
    pub security_profiles: BTreeMap<String, ConnectResource>,
    /// Hierarchy groups by id.
    pub hierarchy_groups: BTreeMap<String, ConnectResource>,
    /// Users by id. Add and remove them with [`ConnectInstance::insert_user`] and
    /// [`ConnectInstance::remove_user`], which keep the username index.
    pub users: BTreeMap<String, ConnectUser>,
    /// Username (exact: Connect usernames are case-sensitive) → user id, for CreateUser's
    /// uniqueness check and SearchUsers' exact Username lookup. Built from `users` on
    /// first use, then kept by `insert_user` and `remove_user`.
    #[serde(skip)]
    username_index: OnceLock<HashMap<String, String>>,
}

impl ConnectInstance {
    fn username_index(&self) -> &HashMap<String, String> {
        self.username_index.get_or_init(|| {
            (self.users.values())
                .map(|u| (u.username.clone(), u.id.clone()))
                .collect()
        })
    }

    /// The user with exactly this username.
    pub fn user_named(&self, username: &str) -> Option<&ConnectUser> {
        (self.username_index().get(username)).and_then(|id| self.users.get(id))
    }

    /// Adds (or replaces) a user, and its username to the index.
    pub fn insert_user(&mut self, u: ConnectUser) {
        self.remove_user(&u.id);
        if let Some(index) = self.username_index.get_mut() {
            index.insert(u.username.clone(), u.id.clone());
        }
        self.users.insert(u.id.clone(), u);
    }

    /// Removes a user, and its username from the index.
    pub fn remove_user(&mut self, id: &str) -> Option<ConnectUser> {
        let u = self.users.remove(id)?;
        if let Some(index) = self.username_index.get_mut() {
            index.remove(&u.username);
        }
        Some(u)
    }
}

/// An Identity Store user. `name`, `emails` and `attributes` keep the wire JSON.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IdsUser {
    /// UserId.
    pub user_id: String,
    /// UserName.
    pub user_name: String,
    /// DisplayName.
    pub display_name: String,
    /// Name structure as sent.
    pub name: Value,
    /// Emails as sent (0 or 1 entries).
    pub emails: Vec<Value>,
    /// Other attributes as sent (NickName, PhoneNumbers, ...).
    pub attributes: serde_json::Map<String, Value>,
    /// Epoch seconds.
    pub created_at: f64,
    /// Sandbox clock (ms) at creation; None for seeded users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<u64>,
}

impl IdsUser {
    /// Every email value of the user.
    pub fn email_values(&self) -> impl Iterator<Item = &str> {
        self.emails
            .iter()
            .filter_map(|e| e.get("Value").and_then(Value::as_str))
    }
}

/// An Identity Store group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IdsGroup {
    /// GroupId.
    pub group_id: String,
    /// DisplayName.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
    /// Epoch seconds.
    pub created_at: f64,
}

/// A group membership.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Membership {
    /// MembershipId.
    pub membership_id: String,
    /// GroupId.
    pub group_id: String,
    /// MemberId.UserId.
    pub user_id: String,
    /// Epoch seconds.
    pub created_at: f64,
}

/// An identity store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IdentityStore {
    /// Store id.
    pub id: String,
    /// Users quota (ServiceQuotaExceededException past it).
    pub max_users: usize,
    /// Users by id.
    pub users: BTreeMap<String, IdsUser>,
    /// Groups by id.
    pub groups: BTreeMap<String, IdsGroup>,
    /// Memberships by id. Add and remove them with [`IdentityStore::insert_membership`],
    /// [`IdentityStore::remove_membership`] and [`IdentityStore::retain_memberships`],
    /// which keep the membership index.
    pub memberships: BTreeMap<String, Membership>,
    /// `n:<folded user name>` and `e:<folded email>` → the ids of the users holding it, for
    /// the uniqueness checks and GetUserId. Built from `users` on first use, then kept by
    /// [`IdentityStore::insert_user`] and [`IdentityStore::remove_user`].
    #[serde(skip)]
    user_index: OnceLock<HashMap<String, Vec<String>>>,
    /// (GroupId, UserId) → MembershipId, for CreateGroupMembership's uniqueness check,
    /// GetGroupMembershipId and IsMemberInGroups. Built from `memberships` on first use.
    #[serde(skip)]
    membership_index: OnceLock<HashMap<(String, String), String>>,
}

impl IdentityStore {
    /// The index keys of a user: its user name and emails, folded.
    fn keys(u: &IdsUser) -> Vec<String> {
        let mut keys = vec![format!("n:{}", u.user_name.to_lowercase())];
        keys.extend(u.email_values().map(|e| format!("e:{}", e.to_lowercase())));
        keys
    }

    fn user_index(&self) -> &HashMap<String, Vec<String>> {
        self.user_index.get_or_init(|| {
            let mut index: HashMap<String, Vec<String>> = HashMap::new();
            for u in self.users.values() {
                for k in Self::keys(u) {
                    index.entry(k).or_default().push(u.user_id.clone());
                }
            }
            index
        })
    }

    /// Adds (or replaces) a user, and its names to the index.
    pub fn insert_user(&mut self, u: IdsUser) {
        self.remove_user(&u.user_id);
        if let Some(index) = self.user_index.get_mut() {
            for k in Self::keys(&u) {
                index.entry(k).or_default().push(u.user_id.clone());
            }
        }
        self.users.insert(u.user_id.clone(), u);
    }

    /// Removes a user, and its names from the index (not its memberships).
    pub fn remove_user(&mut self, id: &str) -> Option<IdsUser> {
        let u = self.users.remove(id)?;
        if let Some(index) = self.user_index.get_mut() {
            for k in Self::keys(&u) {
                if let Some(ids) = index.get_mut(&k) {
                    ids.retain(|x| x != id);
                    if ids.is_empty() {
                        index.remove(&k);
                    }
                }
            }
        }
        Some(u)
    }

    /// The users holding this user name (`kind` 'n') or email ('e'), compared without
    /// case, in no particular order.
    pub fn users_holding(&self, kind: char, value: &str) -> impl Iterator<Item = &IdsUser> {
        let key = format!("{kind}:{}", value.to_lowercase());
        (self.user_index().get(&key).into_iter().flatten()).filter_map(|id| self.users.get(id))
    }

    /// Whether a user holds this user name (`kind` 'n') or email ('e'), compared without case.
    pub fn holds(&self, kind: char, value: &str) -> bool {
        self.users_holding(kind, value).next().is_some()
    }

    fn membership_index(&self) -> &HashMap<(String, String), String> {
        self.membership_index.get_or_init(|| {
            (self.memberships.values())
                .map(|m| {
                    (
                        (m.group_id.clone(), m.user_id.clone()),
                        m.membership_id.clone(),
                    )
                })
                .collect()
        })
    }

    /// The membership of `user_id` in `group_id`.
    pub fn membership(&self, group_id: &str, user_id: &str) -> Option<&Membership> {
        (self.membership_index())
            .get(&(group_id.to_string(), user_id.to_string()))
            .and_then(|id| self.memberships.get(id))
    }

    /// Adds (or replaces) a membership, and its pair to the index.
    pub fn insert_membership(&mut self, m: Membership) {
        self.remove_membership(&m.membership_id);
        if let Some(index) = self.membership_index.get_mut() {
            index.insert(
                (m.group_id.clone(), m.user_id.clone()),
                m.membership_id.clone(),
            );
        }
        self.memberships.insert(m.membership_id.clone(), m);
    }

    /// Removes a membership by id, and its pair from the index.
    pub fn remove_membership(&mut self, id: &str) -> Option<Membership> {
        let m = self.memberships.remove(id)?;
        if let Some(index) = self.membership_index.get_mut() {
            index.remove(&(m.group_id.clone(), m.user_id.clone()));
        }
        Some(m)
    }

    /// Keeps the memberships `keep` accepts (a scan: for deleting a user or a group).
    pub fn retain_memberships(&mut self, mut keep: impl FnMut(&Membership) -> bool) {
        let mut index = self.membership_index.get_mut();
        self.memberships.retain(|_, m| {
            let kept = keep(m);
            if let (false, Some(index)) = (kept, index.as_mut()) {
                index.remove(&(m.group_id.clone(), m.user_id.clone()));
            }
            kept
        });
    }
}

/// An Identity Center instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SsoInstance {
    /// InstanceArn.
    pub instance_arn: String,
    /// IdentityStoreId.
    pub identity_store_id: String,
    /// Name.
    pub name: Option<String>,
    /// Epoch seconds.
    pub created_date: f64,
}

/// An Identity Center application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Application {
    /// ApplicationArn.
    pub arn: String,
    /// InstanceArn.
    pub instance_arn: String,
    /// Name.
    pub name: String,
    /// ApplicationProviderArn.
    pub provider_arn: String,
    /// ENABLED | DISABLED.
    pub status: String,
    /// Description.
    pub description: Option<String>,
    /// Epoch seconds.
    pub created_date: f64,
}

/// A direct application assignment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Assignment {
    /// ApplicationArn.
    pub application_arn: String,
    /// USER | GROUP.
    pub principal_type: String,
    /// PrincipalId.
    pub principal_id: String,
}

/// The whole emulated world.
#[derive(Serialize, Clone, Debug)]
pub struct World {
    /// Account id.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// Connect instances by id.
    pub connect_instances: BTreeMap<String, ConnectInstance>,
    /// Identity stores by id.
    pub identity_stores: BTreeMap<String, IdentityStore>,
    /// Identity Center instances by ARN.
    pub sso_instances: BTreeMap<String, SsoInstance>,
    /// Applications by ARN.
    pub applications: BTreeMap<String, Application>,
    /// Direct assignments (a set: lookups by the whole assignment).
    pub assignments: BTreeSet<Assignment>,
    #[serde(skip)]
    clock: Instant,
}

/// Seconds since the epoch, as AWS JSON timestamps are sent.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// A deterministic, UUID-shaped id derived from `name` (FNV-1a + splitmix64, two lanes).
pub fn det_uuid(name: &str) -> String {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let fnv = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let a = mix(fnv);
    let b = mix(a ^ 0x9e37_79b9_7f4a_7c15);
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A fresh random UUID.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `<10 hex>-` prefix Identity Store ids carry for a `d-` store.
fn ids_prefix(store_id: &str) -> String {
    match store_id.strip_prefix("d-") {
        Some(hex) if hex.len() == 10 => hex.to_string(),
        _ => new_uuid().replace('-', "")[..10].to_string(),
    }
}

fn valid_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

impl World {
    /// Builds the world a seed describes.
    pub fn from_seed(seed: &Seed) -> Result<World, WorldError> {
        let mut w = World {
            account_id: seed.account_id.clone(),
            region: seed.region.clone(),
            connect_instances: BTreeMap::new(),
            identity_stores: BTreeMap::new(),
            sso_instances: BTreeMap::new(),
            applications: BTreeMap::new(),
            assignments: BTreeSet::new(),
            clock: Instant::now(),
        };
        for inst in &seed.connect_instances {
            w.seed_connect_instance(inst)?;
        }
        for sso in &seed.sso_instances {
            w.seed_sso_instance(sso)?;
        }
        for u in &seed.identity_users {
            w.seed_identity_user(u)?;
        }
        for g in &seed.identity_groups {
            let store = w.store_id_or_default(g.identity_store_id.as_deref())?;
            w.insert_group(&store, &g.display_name, g.description.clone(), g.id.clone())?;
        }
        for m in &seed.memberships {
            let store = w.store_id_or_default(m.identity_store_id.as_deref())?;
            let group = w.resolve_group(&store, &m.group)?;
            let user = w.resolve_user(&store, &m.user)?;
            w.add_membership_in(&store, &group, &user)?;
        }
        for a in &seed.assignments {
            let app = w.resolve_application(&a.application)?;
            let store = w.store_of_application(&app)?;
            let principal = match a.principal_type.as_str() {
                "USER" => w.resolve_user(&store, &a.principal)?,
                "GROUP" => w.resolve_group(&store, &a.principal)?,
                other => return Err(WorldError::Invalid(format!("principal_type {other}"))),
            };
            w.add_assignment(&app, &a.principal_type, &principal)?;
        }
        Ok(w)
    }

    /// Milliseconds on the sandbox clock (since the world was built).
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The state as JSON (the `/_sandbox/state` document).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|e| json!({ "error": e.to_string() }))
    }

    fn connect_arn(&self, rest: &str) -> String {
        format!("arn:aws:connect:{}:{}:{rest}", self.region, self.account_id)
    }

    fn seed_connect_instance(&mut self, s: &SeedConnectInstance) -> Result<(), WorldError> {
        if !valid_uuid(&s.id) {
            return Err(WorldError::Invalid(format!(
                "connect instance id {:?} is not a UUID",
                s.id
            )));
        }
        if !["SAML", "CONNECT_MANAGED", "EXISTING_DIRECTORY"]
            .contains(&s.identity_management_type.as_str())
        {
            return Err(WorldError::Invalid(format!(
                "identity_management_type {:?}",
                s.identity_management_type
            )));
        }
        let inst_arn = self.connect_arn(&format!("instance/{}", s.id));
        let resources = |kind: &str, names: &[String]| {
            names
                .iter()
                .map(|n| {
                    let id = det_uuid(&format!("{}/{kind}/{n}", s.id));
                    let arn = format!("{inst_arn}/{kind}/{id}");
                    (
                        id.clone(),
                        ConnectResource {
                            id,
                            arn,
                            name: n.clone(),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>()
        };
        let inst = ConnectInstance {
            id: s.id.clone(),
            arn: inst_arn.clone(),
            alias: s.alias.clone(),
            identity_management_type: s.identity_management_type.clone(),
            created_time: 1_700_000_000.0,
            max_users: s.max_users,
            routing_profiles: resources("routing-profile", &s.routing_profiles),
            security_profiles: resources("security-profile", &s.security_profiles),
            hierarchy_groups: resources("agent-group", &s.hierarchy_groups),
            users: BTreeMap::new(),
            username_index: OnceLock::new(),
        };
        if self.connect_instances.insert(s.id.clone(), inst).is_some() {
            return Err(WorldError::Duplicate(format!("connect instance {}", s.id)));
        }
        for u in &s.users {
            self.seed_connect_user(&s.id, u)?;
        }
        Ok(())
    }

    fn seed_connect_user(
        &mut self,
        instance_id: &str,
        u: &SeedConnectUser,
    ) -> Result<(), WorldError> {
        let inst = self.connect_instance(instance_id)?;
        let by_name = |map: &BTreeMap<String, ConnectResource>, name: &str, what: &str| {
            map.values()
                .find(|r| r.name == name || r.id == name)
                .map(|r| r.id.clone())
                .ok_or_else(|| WorldError::NotFound(format!("{what} {name:?}")))
        };
        let security_profile_ids = if u.security_profiles.is_empty() {
            vec![first_id(&inst.security_profiles, "security profile")?]
        } else {
            u.security_profiles
                .iter()
                .map(|n| by_name(&inst.security_profiles, n, "security profile"))
                .collect::<Result<_, _>>()?
        };
        let routing_profile_id = match &u.routing_profile {
            Some(n) => by_name(&inst.routing_profiles, n, "routing profile")?,
            None => first_id(&inst.routing_profiles, "routing profile")?,
        };
        let hierarchy_group_id = match &u.hierarchy_group {
            Some(n) => Some(by_name(&inst.hierarchy_groups, n, "hierarchy group")?),
            None => None,
        };
        let id =
            u.id.clone()
                .unwrap_or_else(|| det_uuid(&format!("{instance_id}/user/{}", u.username)));
        let user = ConnectUser {
            arn: format!("{}/agent/{id}", inst.arn),
            id,
            username: u.username.clone(),
            identity_info: IdentityInfo {
                first_name: u.first_name.clone(),
                last_name: u.last_name.clone(),
                email: u.email.clone(),
                secondary_email: u.secondary_email.clone(),
                mobile: None,
            },
            phone_config: PhoneConfig::default(),
            directory_user_id: None,
            security_profile_ids,
            routing_profile_id,
            hierarchy_group_id,
            tags: u.tags.clone(),
            last_modified_time: 1_700_000_000.0,
            created_ms: None,
        };
        self.insert_connect_user(instance_id, user).map(|_| ())
    }

    fn insert_connect_user(
        &mut self,
        instance_id: &str,
        user: ConnectUser,
    ) -> Result<String, WorldError> {
        let inst = self.connect_instance_mut(instance_id)?;
        if inst.user_named(&user.username).is_some() {
            return Err(WorldError::Duplicate(format!(
                "connect user {}",
                user.username
            )));
        }
        let id = user.id.clone();
        inst.insert_user(user);
        Ok(id)
    }

    fn seed_sso_instance(&mut self, s: &SeedSsoInstance) -> Result<(), WorldError> {
        if self.sso_instances.contains_key(&s.instance_arn) {
            return Err(WorldError::Duplicate(format!(
                "sso instance {}",
                s.instance_arn
            )));
        }
        self.sso_instances.insert(
            s.instance_arn.clone(),
            SsoInstance {
                instance_arn: s.instance_arn.clone(),
                identity_store_id: s.identity_store_id.clone(),
                name: s.name.clone(),
                created_date: 1_700_000_000.0,
            },
        );
        self.identity_stores
            .entry(s.identity_store_id.clone())
            .or_insert_with(|| IdentityStore {
                id: s.identity_store_id.clone(),
                max_users: 100_000,
                users: BTreeMap::new(),
                groups: BTreeMap::new(),
                memberships: BTreeMap::new(),
                user_index: OnceLock::new(),
                membership_index: OnceLock::new(),
            });
        for app in &s.applications {
            if self.applications.contains_key(&app.arn) {
                return Err(WorldError::Duplicate(format!("application {}", app.arn)));
            }
            self.applications.insert(
                app.arn.clone(),
                Application {
                    arn: app.arn.clone(),
                    instance_arn: s.instance_arn.clone(),
                    name: app.name.clone(),
                    provider_arn: app.provider_arn.clone(),
                    status: app.status.clone(),
                    description: app.description.clone(),
                    created_date: 1_700_000_000.0,
                },
            );
        }
        Ok(())
    }

    fn seed_identity_user(&mut self, u: &SeedIdentityUser) -> Result<(), WorldError> {
        let store = self.store_id_or_default(u.identity_store_id.as_deref())?;
        let display = u
            .display_name
            .clone()
            .unwrap_or_else(|| format!("{} {}", u.given_name, u.family_name));
        self.insert_identity_user(
            &store,
            &u.user_name,
            &display,
            &u.given_name,
            &u.family_name,
            u.email.as_deref(),
            u.id.clone(),
        )
        .map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_identity_user(
        &mut self,
        store_id: &str,
        user_name: &str,
        display_name: &str,
        given: &str,
        family: &str,
        email: Option<&str>,
        id: Option<String>,
    ) -> Result<String, WorldError> {
        let store = self.identity_store_mut(store_id)?;
        let lower = user_name.to_lowercase();
        if store.holds('n', user_name) {
            return Err(WorldError::Duplicate(format!("identity user {user_name}")));
        }
        let id = id.unwrap_or_else(|| {
            format!(
                "{}-{}",
                ids_prefix(store_id),
                det_uuid(&format!("{store_id}/user/{lower}"))
            )
        });
        let emails = email
            .map(|e| vec![json!({"Value": e, "Type": "work", "Primary": true})])
            .unwrap_or_default();
        store.insert_user(IdsUser {
            user_id: id.clone(),
            user_name: user_name.to_string(),
            display_name: display_name.to_string(),
            name: json!({"GivenName": given, "FamilyName": family}),
            emails,
            attributes: serde_json::Map::new(),
            created_at: 1_700_000_000.0,
            created_ms: None,
        });
        Ok(id)
    }

    fn insert_group(
        &mut self,
        store_id: &str,
        display_name: &str,
        description: Option<String>,
        id: Option<String>,
    ) -> Result<String, WorldError> {
        let store = self.identity_store_mut(store_id)?;
        let lower = display_name.to_lowercase();
        if store
            .groups
            .values()
            .any(|g| g.display_name.to_lowercase() == lower)
        {
            return Err(WorldError::Duplicate(format!("group {display_name}")));
        }
        let id = id.unwrap_or_else(|| {
            format!(
                "{}-{}",
                ids_prefix(store_id),
                det_uuid(&format!("{store_id}/group/{lower}"))
            )
        });
        store.groups.insert(
            id.clone(),
            IdsGroup {
                group_id: id.clone(),
                display_name: display_name.to_string(),
                description,
                created_at: 1_700_000_000.0,
            },
        );
        Ok(id)
    }

    // -- lookups ----------------------------------------------------------------

    /// A Connect instance by id.
    pub fn connect_instance(&self, id: &str) -> Result<&ConnectInstance, WorldError> {
        self.connect_instances
            .get(id)
            .ok_or_else(|| WorldError::NotFound(format!("connect instance {id}")))
    }

    /// A Connect instance by id, mutable.
    pub fn connect_instance_mut(&mut self, id: &str) -> Result<&mut ConnectInstance, WorldError> {
        self.connect_instances
            .get_mut(id)
            .ok_or_else(|| WorldError::NotFound(format!("connect instance {id}")))
    }

    /// An identity store by id, mutable.
    pub fn identity_store_mut(&mut self, id: &str) -> Result<&mut IdentityStore, WorldError> {
        self.identity_stores
            .get_mut(id)
            .ok_or_else(|| WorldError::NotFound(format!("identity store {id}")))
    }

    /// The first SSO instance's identity store (the default one).
    pub fn default_store_id(&self) -> Option<String> {
        self.sso_instances
            .values()
            .next()
            .map(|i| i.identity_store_id.clone())
            .or_else(|| self.identity_stores.keys().next().cloned())
    }

    fn store_id_or_default(&self, id: Option<&str>) -> Result<String, WorldError> {
        match id {
            Some(id) => Ok(id.to_string()),
            None => self
                .default_store_id()
                .ok_or_else(|| WorldError::NotFound("identity store".into())),
        }
    }

    fn resolve_user(&self, store_id: &str, key: &str) -> Result<String, WorldError> {
        let store = self
            .identity_stores
            .get(store_id)
            .ok_or_else(|| WorldError::NotFound(format!("identity store {store_id}")))?;
        store
            .users
            .values()
            .find(|u| u.user_id == key || u.user_name.eq_ignore_ascii_case(key))
            .map(|u| u.user_id.clone())
            .ok_or_else(|| WorldError::NotFound(format!("identity user {key}")))
    }

    fn resolve_group(&self, store_id: &str, key: &str) -> Result<String, WorldError> {
        let store = self
            .identity_stores
            .get(store_id)
            .ok_or_else(|| WorldError::NotFound(format!("identity store {store_id}")))?;
        store
            .groups
            .values()
            .find(|g| g.group_id == key || g.display_name.eq_ignore_ascii_case(key))
            .map(|g| g.group_id.clone())
            .ok_or_else(|| WorldError::NotFound(format!("group {key}")))
    }

    fn resolve_application(&self, key: &str) -> Result<String, WorldError> {
        self.applications
            .values()
            .find(|a| a.arn == key || a.name == key)
            .map(|a| a.arn.clone())
            .ok_or_else(|| WorldError::NotFound(format!("application {key}")))
    }

    /// The identity store behind an application's instance.
    pub fn store_of_application(&self, app_arn: &str) -> Result<String, WorldError> {
        let app = self
            .applications
            .get(app_arn)
            .ok_or_else(|| WorldError::NotFound(format!("application {app_arn}")))?;
        self.sso_instances
            .get(&app.instance_arn)
            .map(|i| i.identity_store_id.clone())
            .ok_or_else(|| WorldError::NotFound(format!("sso instance {}", app.instance_arn)))
    }

    // -- helpers for tests ---------------------------------------------------------

    /// Adds a Connect user to `instance_id` with the instance's first security and
    /// routing profiles; returns its id. Visible immediately (no consistency window).
    pub fn add_connect_user(
        &mut self,
        instance_id: &str,
        username: &str,
        first: &str,
        last: &str,
    ) -> Result<String, WorldError> {
        let seed = SeedConnectUser {
            id: Some(new_uuid()),
            username: username.into(),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            ..Default::default()
        };
        self.seed_connect_user(instance_id, &seed)?;
        Ok(seed.id.unwrap_or_default())
    }

    /// Adds a user (UserName, primary work email, given/family name, DisplayName
    /// "Given Family") to the default identity store; returns its id.
    pub fn add_identity_user(
        &mut self,
        user_name: &str,
        email: &str,
        given: &str,
        family: &str,
    ) -> Result<String, WorldError> {
        let store = self.store_id_or_default(None)?;
        let prefix = ids_prefix(&store);
        self.insert_identity_user(
            &store,
            user_name,
            &format!("{given} {family}"),
            given,
            family,
            Some(email),
            Some(format!("{prefix}-{}", new_uuid())),
        )
    }

    /// Adds a group to the default identity store; returns its id.
    pub fn add_group(&mut self, display_name: &str) -> Result<String, WorldError> {
        let store = self.store_id_or_default(None)?;
        let prefix = ids_prefix(&store);
        self.insert_group(
            &store,
            display_name,
            None,
            Some(format!("{prefix}-{}", new_uuid())),
        )
    }

    /// Adds a membership in the default identity store; returns its id.
    pub fn add_membership(&mut self, group_id: &str, user_id: &str) -> Result<String, WorldError> {
        let store = self.store_id_or_default(None)?;
        self.add_membership_in(&store, group_id, user_id)
    }

    fn add_membership_in(
        &mut self,
        store_id: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<String, WorldError> {
        let store = self.identity_store_mut(store_id)?;
        if !store.groups.contains_key(group_id) {
            return Err(WorldError::NotFound(format!("group {group_id}")));
        }
        if !store.users.contains_key(user_id) {
            return Err(WorldError::NotFound(format!("user {user_id}")));
        }
        if store.membership(group_id, user_id).is_some() {
            return Err(WorldError::Duplicate(format!(
                "membership {group_id}/{user_id}"
            )));
        }
        let id = new_uuid();
        store.insert_membership(Membership {
            membership_id: id.clone(),
            group_id: group_id.into(),
            user_id: user_id.into(),
            created_at: 1_700_000_000.0,
        });
        Ok(id)
    }

    /// Adds a direct application assignment (`USER` or `GROUP`).
    pub fn add_assignment(
        &mut self,
        application_arn: &str,
        principal_type: &str,
        principal_id: &str,
    ) -> Result<(), WorldError> {
        self.store_of_application(application_arn)?;
        let a = Assignment {
            application_arn: application_arn.into(),
            principal_type: principal_type.into(),
            principal_id: principal_id.into(),
        };
        if !self.assignments.insert(a) {
            return Err(WorldError::Duplicate(format!("assignment {principal_id}")));
        }
        Ok(())
    }

    /// Removes a Connect user by id (true if it existed).
    pub fn remove_connect_user(&mut self, instance_id: &str, user_id: &str) -> bool {
        self.connect_instances
            .get_mut(instance_id)
            .is_some_and(|i| i.remove_user(user_id).is_some())
    }
}

fn first_id(map: &BTreeMap<String, ConnectResource>, what: &str) -> Result<String, WorldError> {
    map.values()
        .next()
        .map(|r| r.id.clone())
        .ok_or_else(|| WorldError::NotFound(format!("any {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_world_is_deterministic() {
        let a = World::from_seed(&Seed::default()).expect("default seed");
        let b = World::from_seed(&Seed::default()).expect("default seed");
        assert_eq!(a.to_json(), b.to_json());
        let inst = a
            .connect_instance(DEFAULT_CONNECT_INSTANCE_ID)
            .expect("instance");
        assert_eq!(inst.identity_management_type, "SAML");
        assert_eq!(inst.security_profiles.len(), 4);
        assert!(a.applications.contains_key(DEFAULT_APPLICATION_ARN));
        let store = &a.identity_stores[DEFAULT_IDENTITY_STORE_ID];
        let g = store.groups.values().next().expect("group");
        assert!(g.group_id.starts_with("1234567890-"));
    }

    #[test]
    fn det_uuid_is_uuid_shaped() {
        let id = det_uuid("x");
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert_ne!(det_uuid("x"), det_uuid("y"));
    }

    #[test]
    fn seed_file_with_users_and_assignments() {
        let seed = Seed::from_toml_str(
            r#"
[[connect_instances]]
id = "11111111-2222-4333-8444-555555555555"
identity_management_type = "CONNECT_MANAGED"
[[connect_instances.users]]
username = "admin"
security_profiles = ["Admin"]

[[identity_users]]
user_name = "bob@example.com"
given_name = "Bob"
family_name = "Builder"
email = "bob@example.com"

[[memberships]]
group = "ConnectAgents"
user = "bob@example.com"

[[assignments]]
application = "Amazon Connect"
principal_type = "GROUP"
principal = "ConnectAgents"
"#,
        )
        .expect("toml");
        let w = World::from_seed(&seed).expect("world");
        let inst = w
            .connect_instance("11111111-2222-4333-8444-555555555555")
            .expect("instance");
        assert_eq!(inst.users.len(), 1);
        assert_eq!(w.assignments.len(), 1);
        assert_eq!(
            w.identity_stores[DEFAULT_IDENTITY_STORE_ID]
                .memberships
                .len(),
            1
        );
    }

    #[test]
    fn bad_seed_is_rejected() {
        let mut seed = Seed::default();
        seed.connect_instances[0].id = "nope".into();
        assert!(World::from_seed(&seed).is_err());
    }
}
