//! The resources the world holds: Connect instances, users and profiles; identity
//! stores with their users, groups and memberships (and the indexes that keep their
//! uniqueness checks fast); Identity Center instances, applications and assignments.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub(super) username_index: OnceLock<HashMap<String, String>>,
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
    pub(super) user_index: OnceLock<HashMap<String, Vec<String>>>,
    /// (GroupId, UserId) → MembershipId, for CreateGroupMembership's uniqueness check,
    /// GetGroupMembershipId and IsMemberInGroups. Built from `memberships` on first use.
    #[serde(skip)]
    pub(super) membership_index: OnceLock<HashMap<(String, String), String>>,
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
