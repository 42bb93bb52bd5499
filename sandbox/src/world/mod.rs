//! The emulated world: its live state ([`World`]) and the lookups every service uses.
//!
//! The resources the world holds are in `resources`; the seed file format
//! ([`Seed`]) in `seed`; how a seed becomes live state ([`World::from_seed`]) in
//! `populate`; ids and timestamps in `ids`; the small helpers for tests that want
//! pre-existing resources (`add_connect_user`, `add_identity_user`, ...) in
//! `helpers`. Everything public is re-exported here, so callers name
//! `world::...` whatever module holds it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

mod helpers;
mod ids;
mod populate;
mod resources;
mod seed;

pub use ids::{det_uuid, epoch_now, new_uuid};
pub use resources::{
    Application, Assignment, ConnectInstance, ConnectResource, ConnectUser, IdentityInfo,
    IdentityStore, IdsGroup, IdsUser, Membership, PhoneConfig, SsoInstance,
};
pub use seed::{
    Seed, SeedApplication, SeedAssignment, SeedConnectInstance, SeedConnectUser, SeedIdentityGroup,
    SeedIdentityUser, SeedMembership, SeedPhoneConfig, SeedSsoInstance,
};

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

impl World {
    /// Milliseconds on the sandbox clock (since the world was built).
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The state as JSON (the `/_sandbox/state` document).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|e| json!({ "error": e.to_string() }))
    }

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

    pub(super) fn store_id_or_default(&self, id: Option<&str>) -> Result<String, WorldError> {
        match id {
            Some(id) => Ok(id.to_string()),
            None => self
                .default_store_id()
                .ok_or_else(|| WorldError::NotFound("identity store".into())),
        }
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

    #[test]
    fn a_seeded_user_can_have_a_phone_config_a_mobile_and_tags() {
        let text = "[[connect_instances]]\nid = \"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee\"\n\
            [[connect_instances.users]]\nusername = \"p@example.com\"\nfirst_name = \"P\"\n\
            last_name = \"Q\"\nmobile = \"+12145550100\"\ntags = { team = \"blue\" }\n\
            phone = { phone_type = \"DESK_PHONE\", auto_accept = true, acw_timeout = 45, desk_phone_number = \"+12145550198\" }\n";
        let seed = Seed::from_toml_str(text).expect("seed");
        let w = World::from_seed(&seed).expect("world");
        let u = (w.connect_instances["aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"]
            .users
            .values()
            .next())
        .expect("user")
        .clone();
        assert_eq!(u.phone_config.phone_type, "DESK_PHONE");
        assert!(u.phone_config.auto_accept);
        assert_eq!(u.phone_config.after_contact_work_time_limit, 45);
        assert_eq!(
            u.phone_config.desk_phone_number.as_deref(),
            Some("+12145550198")
        );
        assert_eq!(u.identity_info.mobile.as_deref(), Some("+12145550100"));
        assert_eq!(u.tags.get("team").map(String::as_str), Some("blue"));
        // CreateUser's rules apply to what a seed gives.
        for bad in [
            "phone = { phone_type = \"DESK_PHONE\" }",
            "phone = { acw_timeout = -1 }",
            "phone = { phone_type = \"PIGEON\" }",
            "mobile = \"555\"",
            "tags = { \"aws:x\" = \"y\" }",
        ] {
            let text = format!(
                "[[connect_instances]]\nid = \"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee\"\n\
                 [[connect_instances.users]]\nusername = \"p@example.com\"\n{bad}\n"
            );
            let seed = Seed::from_toml_str(&text).expect("parses");
            assert!(World::from_seed(&seed).is_err(), "{bad}");
        }
    }
}
