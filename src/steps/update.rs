//! `apply`'s updates: one action per group of fields that one AWS call sets
//! (`UpdateUserRoutingProfile`, `UpdateUserSecurityProfiles`, `UpdateUserHierarchy`,
//! `UpdateUserPhoneConfig`, `UpdateUserIdentityInfo`, `TagResource`, Identity Store
//! `UpdateUser`), each a step of the engine like a create.
//!
//! The subject carries each change as `{before, after}` ([`Changes`]), so the value a step
//! replaces is durable (stored with the agent when its run is created) before the step's
//! write-ahead intent, and its compensation can restore it:
//! - `lookup` reads the field (from `apply`'s bulk read the first time, then DescribeUser):
//!   `after` → done (`Match`; after an unresolved write of ours, the engine counts it ours);
//!   `before` → to write (`Absent`); anything else → `Conflict`: someone changed it since the
//!   plan, and it is left alone. A step whose field does not change matches at once, with no
//!   read.
//! - `create` sends `after`; `delete` (compensation) reads again and sends `before` when the
//!   field still holds `after`, reports `NotFound` (nothing to restore) when it holds `before`
//!   already, and refuses when it holds a third value (someone changed it since: not ours to
//!   overwrite).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::{ConnectUserDetail, IdentityInfo, IdentityNames, PhoneConfig};
use crate::engine::{Action, ErrorKind, Found, Outputs, StepContext, StepError};

use super::classify::{classify, read, Call};
use super::snapshot::Lookup;
use super::{Env, Subject};

/// One field group's change: the value the plan read and the value it sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change<T> {
    /// What the plan read.
    pub before: T,
    /// What the agent's row asks for.
    pub after: T,
}

/// An agent's changes, by the call that makes each. Ids, not names (names are what the
/// plan shows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    /// RoutingProfileId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_profile: Option<Change<String>>,
    /// SecurityProfileIds, sorted (a set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_profiles: Option<Change<Vec<String>>>,
    /// HierarchyGroupId (`None`: in no group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hierarchy_group: Option<Change<Option<String>>>,
    /// PhoneConfig, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Change<PhoneConfig>>,
    /// IdentityInfo, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_info: Option<Change<IdentityInfo>>,
    /// The tags the row sets: before, each key's value (`None`: the key was absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Change<BTreeMap<String, Option<String>>>>,
    /// The Identity Center user's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_names: Option<Change<IdentityNames>>,
}

impl Changes {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// The field group an update action sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// UpdateUserRoutingProfile.
    RoutingProfile,
    /// UpdateUserSecurityProfiles.
    SecurityProfiles,
    /// UpdateUserHierarchy.
    Hierarchy,
    /// UpdateUserPhoneConfig.
    Phone,
    /// UpdateUserIdentityInfo.
    IdentityInfo,
    /// TagResource / UntagResource.
    Tags,
    /// Identity Store UpdateUser.
    IdentityNames,
}

impl Field {
    /// Every field group, in the workflow's order.
    pub const ALL: [Field; 7] = [
        Field::RoutingProfile,
        Field::SecurityProfiles,
        Field::Hierarchy,
        Field::Phone,
        Field::IdentityInfo,
        Field::Tags,
        Field::IdentityNames,
    ];

    /// The action's name in workflow files.
    pub fn action(self) -> &'static str {
        match self {
            Field::RoutingProfile => "connect.update_routing_profile",
            Field::SecurityProfiles => "connect.update_security_profiles",
            Field::Hierarchy => "connect.update_hierarchy",
            Field::Phone => "connect.update_phone_config",
            Field::IdentityInfo => "connect.update_identity_info",
            Field::Tags => "connect.tag_user",
            Field::IdentityNames => "identitystore.update_names",
        }
    }
}

/// A field group's value, as read or as set.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Id(String),
    Ids(Vec<String>),
    Group(Option<String>),
    Phone(PhoneConfig),
    Info(IdentityInfo),
    Tags(BTreeMap<String, Option<String>>),
    Names(IdentityNames),
}

/// The change of `field` in the subject, as values.
fn change_of(field: Field, c: &Changes) -> Option<(Value, Value)> {
    fn pair<T: Clone>(c: &Option<Change<T>>, f: impl Fn(T) -> Value) -> Option<(Value, Value)> {
        c.as_ref()
            .map(|c| (f(c.before.clone()), f(c.after.clone())))
    }
    match field {
        Field::RoutingProfile => pair(&c.routing_profile, Value::Id),
        Field::SecurityProfiles => pair(&c.security_profiles, Value::Ids),
        Field::Hierarchy => pair(&c.hierarchy_group, Value::Group),
        Field::Phone => pair(&c.phone, Value::Phone),
        Field::IdentityInfo => pair(&c.identity_info, Value::Info),
        Field::Tags => pair(&c.tags, Value::Tags),
        Field::IdentityNames => pair(&c.identity_names, Value::Names),
    }
}

/// The value of `field` in a Connect user's detail (tags restricted to `keys`); `None` for
/// the Identity Store's field.
fn connect_value(field: Field, d: &ConnectUserDetail, keys: &[String]) -> Option<Value> {
    Some(match field {
        Field::RoutingProfile => Value::Id(d.routing_profile_id.clone()),
        Field::SecurityProfiles => {
            let mut ids = d.security_profile_ids.clone();
            ids.sort();
            ids.dedup();
            Value::Ids(ids)
        }
        Field::Hierarchy => Value::Group(d.hierarchy_group_id.clone()),
        Field::Phone => Value::Phone(d.phone.clone()),
        Field::IdentityInfo => Value::Info(IdentityInfo {
            first_name: d.first_name.clone(),
            last_name: d.last_name.clone(),
            email: None,
            secondary_email: d.secondary_email.clone(),
            mobile: d.mobile.clone(),
        }),
        Field::Tags => Value::Tags(
            keys.iter()
                .map(|k| (k.clone(), d.tags.get(k).cloned()))
                .collect(),
        ),
        Field::IdentityNames => return None,
    })
}

/// The step that sets one field group of an agent (see the module doc).
pub struct UpdateField(pub(super) Env, pub(super) Field);

impl UpdateField {
    /// What the field holds now: from the bulk read the first time it is asked for this
    /// agent, then from DescribeUser. `None`: the user is gone.
    async fn current(
        &self,
        cx: &StepContext<'_, Subject>,
        keys: &[String],
    ) -> Result<Option<Value>, StepError> {
        let (env, field, a) = (&self.0, self.1, &cx.subject.agent);
        let first = (env.snapshot.as_ref()).filter(|s| s.first(Lookup::Update(field), &a.email));
        if field != Field::IdentityNames {
            let listed = first.and_then(|s| s.connect_user(&a.username).cloned());
            // SearchUsers does not return the secondary email and mobile: read them.
            let listed = listed.filter(|u| field != Field::IdentityInfo || has_full_info(u));
            let user = match listed {
                Some(u) => Some(u),
                None => (env.connect)
                    .describe_user(&env.instance_id, cx.input("user_id")?)
                    .await
                    .map_err(read)?,
            };
            let Some(mut value) =
                (user.and_then(|u| u.detail)).and_then(|d| connect_value(field, &d, keys))
            else {
                return Ok(None);
            };
            if let (Value::Info(info), Some(c)) = (&mut value, &cx.subject.changes.identity_info) {
                // The email is not the plan's to change: carry what it read.
                info.email = c.before.email.clone();
            }
            return Ok(Some(value));
        }
        let listed = first.and_then(|s| s.identity_user(cx.subject.identity_user_name()).cloned());
        let user = match listed {
            Some(u) => Some(u),
            None => (env.identity_store)
                .describe_user(&env.identity_store_id, cx.input("user_id")?)
                .await
                .map_err(read)?,
        };
        Ok(user.map(|u| {
            Value::Names(IdentityNames {
                given_name: u.given_name,
                family_name: u.family_name,
                display_name: u.display_name,
            })
        }))
    }

    /// Sets the field to `v` (tags: a `None` value removes the key).
    async fn set(
        &self,
        cx: &StepContext<'_, Subject>,
        v: &Value,
        call: Call,
    ) -> Result<(), StepError> {
        let env = &self.0;
        let (connect, instance) = (&env.connect, env.instance_id.as_str());
        let res = match v {
            Value::Id(id) => {
                connect
                    .update_routing_profile(instance, cx.input("user_id")?, id)
                    .await
            }
            Value::Ids(ids) => {
                connect
                    .update_security_profiles(instance, cx.input("user_id")?, ids)
                    .await
            }
            Value::Group(g) => {
                connect
                    .update_hierarchy(instance, cx.input("user_id")?, g.as_deref())
                    .await
            }
            Value::Phone(p) => {
                connect
                    .update_phone_config(instance, cx.input("user_id")?, p)
                    .await
            }
            Value::Info(i) => {
                connect
                    .update_identity_info(instance, cx.input("user_id")?, i)
                    .await
            }
            Value::Tags(tags) => {
                let arn = cx.input("user_arn")?;
                let set: BTreeMap<String, String> = (tags.iter())
                    .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                    .collect();
                let unset: Vec<String> = (tags.iter())
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut res = Ok(());
                if !set.is_empty() {
                    res = connect.tag_user(arn, &set).await;
                }
                if res.is_ok() && !unset.is_empty() {
                    res = connect.untag_user(arn, &unset).await;
                }
                res
            }
            Value::Names(n) => {
                (env.identity_store)
                    .update_names(&env.identity_store_id, cx.input("user_id")?, n)
                    .await
            }
        };
        res.map_err(|e| classify(e, call))
    }
}

/// Whether a field holds a value: a soft phone's desk number is not compared (it is not
/// used, and whether UpdateUserPhoneConfig keeps one it is not sent is not documented).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Phone(a), Value::Phone(b)) => same_phone(a, b),
        _ => a == b,
    }
}

/// Two phone configs alike, a soft phone's desk number aside.
pub fn same_phone(a: &PhoneConfig, b: &PhoneConfig) -> bool {
    let soft = |p: &PhoneConfig| p.phone_type != "DESK_PHONE";
    a.phone_type == b.phone_type
        && a.auto_accept == b.auto_accept
        && a.acw_timeout == b.acw_timeout
        && (soft(a) || a.desk_phone_number == b.desk_phone_number)
}

fn has_full_info(u: &crate::aws::ConnectUser) -> bool {
    u.detail.as_ref().is_some_and(|d| d.full_identity_info)
}

/// The tag keys a change sets.
fn tag_keys(cx: &StepContext<'_, Subject>) -> Vec<String> {
    (cx.subject.changes.tags.as_ref())
        .map(|c| c.after.keys().cloned().collect())
        .unwrap_or_default()
}

/// A value as the plan and messages show it (ids where no name is known here).
fn shown(v: &Value) -> String {
    match v {
        Value::Id(s) => format!("{s:?}"),
        Value::Ids(v) => format!("{v:?}"),
        Value::Group(g) => g.as_deref().map_or("none".into(), |g| format!("{g:?}")),
        Value::Phone(p) => format!(
            "{} auto_accept={} acw={}s desk={}",
            p.phone_type,
            p.auto_accept,
            p.acw_timeout,
            p.desk_phone_number.as_deref().unwrap_or("none")
        ),
        Value::Info(i) => format!("{} {}", i.first_name, i.last_name),
        Value::Tags(t) => format!("{t:?}"),
        Value::Names(n) => format!("{:?}", n.display_name),
    }
}

#[async_trait::async_trait]
impl Action<Subject> for UpdateField {
    fn inputs(&self) -> &'static [&'static str] {
        match self.1 {
            // The ARN to tag, the id to read the user by.
            Field::Tags => &["user_id", "user_arn"],
            _ => &["user_id"],
        }
    }

    fn outputs(&self) -> &'static [&'static str] {
        &[]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let Some((before, after)) = change_of(self.1, &cx.subject.changes) else {
            return Ok(Found::Match(Outputs::new()));
        };
        let Some(now) = self.current(cx, &tag_keys(cx)).await? else {
            return Ok(Found::Conflict("the user no longer exists".into()));
        };
        Ok(if same(&now, &after) {
            Found::Match(Outputs::new())
        } else if same(&now, &before) {
            Found::Absent
        } else {
            Found::Conflict(format!(
                "{} is {} now, not {} as planned: changed since the plan, left as it is",
                self.1.action(),
                shown(&now),
                shown(&before)
            ))
        })
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        let Some((_, after)) = change_of(self.1, &cx.subject.changes) else {
            return Ok(Outputs::new());
        };
        self.set(cx, &after, Call::CreateReferencing).await?;
        Ok(Outputs::new())
    }

    async fn delete(&self, cx: &StepContext<'_, Subject>, _out: &Outputs) -> Result<(), StepError> {
        let Some((before, after)) = change_of(self.1, &cx.subject.changes) else {
            return Err(StepError::new(
                ErrorKind::NotFound,
                "NothingToRestore",
                "no change",
            ));
        };
        let gone = || StepError::new(ErrorKind::NotFound, "NothingToRestore", "the user is gone");
        let now = self.current(cx, &tag_keys(cx)).await?.ok_or_else(gone)?;
        if same(&now, &before) {
            return Err(StepError::new(
                ErrorKind::NotFound,
                "NothingToRestore",
                "the value is already the one before the run",
            ));
        }
        if !same(&now, &after) {
            return Err(StepError::new(
                ErrorKind::Permanent,
                "ChangedSince",
                format!(
                    "{} is {} now, neither the value this run set ({}) nor the one it replaced ({}): changed by someone else since, left as it is",
                    self.1.action(),
                    shown(&now),
                    shown(&after),
                    shown(&before)
                ),
            ));
        }
        self.set(cx, &before, Call::Delete).await
    }
}
