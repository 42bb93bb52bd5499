//! How a [`Seed`] becomes live state: [`World::from_seed`] validates each seeded
//! resource, gives it its fixed, name-derived id, and resolves names (profiles,
//! groups, users, applications) to ids.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::json;

use super::ids::{ids_prefix, valid_uuid};
use super::{
    det_uuid, Application, ConnectInstance, ConnectResource, ConnectUser, IdentityInfo,
    IdentityStore, IdsGroup, IdsUser, PhoneConfig, Seed, SeedConnectInstance, SeedConnectUser,
    SeedIdentityUser, SeedPhoneConfig, SeedSsoInstance, SsoInstance, World, WorldError,
};

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

    pub(super) fn seed_connect_user(
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
        let phone_config = match &u.phone {
            Some(p) => seed_phone_config(&u.username, p)?,
            None => PhoneConfig::default(),
        };
        if let Some(m) = &u.mobile {
            crate::validate::e164("mobile", m)
                .map_err(|e| WorldError::Invalid(format!("connect user {}: {e}", u.username)))?;
        }
        for (k, v) in &u.tags {
            crate::validate::tag(k, v)
                .map_err(|e| WorldError::Invalid(format!("connect user {}: {e}", u.username)))?;
        }
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
                mobile: u.mobile.clone(),
            },
            phone_config,
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
    pub(super) fn insert_identity_user(
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

    pub(super) fn insert_group(
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
}

fn first_id(map: &BTreeMap<String, ConnectResource>, what: &str) -> Result<String, WorldError> {
    map.values()
        .next()
        .map(|r| r.id.clone())
        .ok_or_else(|| WorldError::NotFound(format!("any {what}")))
}

/// A seeded phone config, checked by CreateUser's rules.
fn seed_phone_config(username: &str, p: &SeedPhoneConfig) -> Result<PhoneConfig, WorldError> {
    let bad = |e: String| WorldError::Invalid(format!("connect user {username}: phone: {e}"));
    if p.phone_type != "SOFT_PHONE" && p.phone_type != "DESK_PHONE" {
        return Err(bad(format!(
            "phone_type {:?} must be SOFT_PHONE or DESK_PHONE",
            p.phone_type
        )));
    }
    if !(0..=2_000_000).contains(&p.acw_timeout) {
        return Err(bad("acw_timeout must be 0..2000000 seconds".into()));
    }
    if let Some(d) = &p.desk_phone_number {
        crate::validate::e164("desk_phone_number", d).map_err(bad)?;
    } else if p.phone_type == "DESK_PHONE" {
        return Err(bad("DESK_PHONE needs a desk_phone_number".into()));
    }
    Ok(PhoneConfig {
        phone_type: p.phone_type.clone(),
        auto_accept: p.auto_accept,
        after_contact_work_time_limit: p.acw_timeout,
        desk_phone_number: p.desk_phone_number.clone(),
        persistent_connection: None,
    })
}
