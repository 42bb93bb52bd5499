//! Preflight: everything that is read and checked before the first write.
//!
//! It describes the Connect instance (its identity-management type decides the username
//! and password rules), discovers or verifies the Identity Center instance, identity store
//! and Amazon Connect application, lists the routing profiles, security profiles and
//! hierarchy groups, and resolves each agent's profile *names or ids* to ids. Nothing has
//! been written when it fails: a mismatch or a refused read is a configuration error
//! (exit 2); a passing failure (throttled, 5xx, network) exits 1, to retry later.

use crate::agent::{AgentSpec, FieldError, IdentityMode};
use crate::aws::{AwsError, ConnectApi, Named, SsoAdminApi, SsoApplication, SsoInstance};
use crate::config::{AssignmentMode, Config, IdentityCenterConfig};
use crate::steps::Subject;

/// Where onboarding happens, fully resolved.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// Connect instance id.
    pub instance_id: String,
    /// The instance's identity management.
    pub identity_mode: IdentityMode,
    /// Identity store id.
    pub identity_store_id: String,
    /// Identity Center instance ARN.
    pub sso_instance_arn: String,
    /// The Amazon Connect application's ARN.
    pub application_arn: String,
    /// The agents' group.
    pub group: String,
    /// Group or user assignment.
    pub assignment: AssignmentMode,
    /// The AWS access portal agents sign in through.
    pub portal_url: String,
    /// The Connect region the run uses (recorded so `resume` acts where the run started).
    #[serde(default)]
    pub connect_region: Option<String>,
    /// The Identity Center region the run uses.
    #[serde(default)]
    pub identity_center_region: Option<String>,
    /// The AWS profile of the Identity Center calls, when not the default one.
    #[serde(default)]
    pub identity_center_profile: Option<String>,
}

impl Target {
    /// A target with no ids yet (only the configured group and mode): enough to check a
    /// workflow file against the actions' signatures before any AWS call.
    pub fn placeholder(config: &Config) -> Target {
        Target {
            instance_id: String::new(),
            identity_mode: IdentityMode::Saml,
            identity_store_id: String::new(),
            sso_instance_arn: String::new(),
            application_arn: String::new(),
            group: config.identity_center.group.clone(),
            assignment: config.identity_center.assignment,
            portal_url: String::new(),
            connect_region: None,
            identity_center_region: None,
            identity_center_profile: None,
        }
    }
}

/// The instance's profiles and groups, for name resolution.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Routing profiles.
    pub routing_profiles: Vec<Named>,
    /// Security profiles.
    pub security_profiles: Vec<Named>,
    /// Hierarchy groups.
    pub hierarchy_groups: Vec<Named>,
}

/// A preflight failure; always before any write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration does not match what AWS has.
    #[error("{0}")]
    Config(String),
    /// An AWS read failed.
    #[error("{context}: {source}")]
    Aws {
        /// What was being read.
        context: String,
        /// The error.
        source: AwsError,
    },
}

fn aws(context: impl Into<String>) -> impl FnOnce(AwsError) -> Error {
    let context = context.into();
    move |source| Error::Aws { context, source }
}

/// Describes the instance and discovers or verifies the Identity Center side.
pub async fn discover(
    cfg: &Config,
    connect: &dyn ConnectApi,
    sso: &dyn SsoAdminApi,
) -> Result<(Target, Catalog), Error> {
    discover_with(cfg, connect, sso, false).await
}

/// As [`discover`], for a diagnosis (`doctor`, `drift`): a disabled Amazon Connect
/// application is found and reported by the caller rather than refused here.
pub async fn discover_for_diagnosis(
    cfg: &Config,
    connect: &dyn ConnectApi,
    sso: &dyn SsoAdminApi,
) -> Result<(Target, Catalog), Error> {
    discover_with(cfg, connect, sso, true).await
}

async fn discover_with(
    cfg: &Config,
    connect: &dyn ConnectApi,
    sso: &dyn SsoAdminApi,
    disabled_app_ok: bool,
) -> Result<(Target, Catalog), Error> {
    let instance_id = cfg.connect.instance_id().to_string();
    let identity_mode = connect_identity_mode(connect, &instance_id).await?;
    let ic = &cfg.identity_center;
    let chosen = sso_instance(ic, sso).await?;
    let application_arn = match &ic.application_arn {
        Some(arn) => configured_application(sso, arn, &chosen, disabled_app_ok).await?,
        None => discovered_application(sso, &chosen, disabled_app_ok).await?,
    };

    let catalog = catalog(connect, &instance_id).await?;
    let portal_url = ic
        .portal_url
        .clone()
        .unwrap_or_else(|| format!("https://{}.awsapps.com/start", chosen.identity_store_id));
    Ok((
        Target {
            instance_id,
            identity_mode,
            identity_store_id: chosen.identity_store_id.clone(),
            sso_instance_arn: chosen.arn.clone(),
            application_arn,
            group: ic.group.clone(),
            assignment: ic.assignment,
            portal_url,
            connect_region: None,
            identity_center_region: None,
            identity_center_profile: None,
        },
        catalog,
    ))
}

/// Describes the Connect instance: its identity-management type.
async fn connect_identity_mode(
    connect: &dyn ConnectApi,
    instance_id: &str,
) -> Result<IdentityMode, Error> {
    let inst = match connect.describe_instance(instance_id).await {
        Ok(i) => i,
        Err(e) if e.is("ResourceNotFoundException") => {
            return Err(Error::Config(format!(
                "connect.instance_id {instance_id:?}: no such Amazon Connect instance in this account and region ({e})"
            )))
        }
        Err(e) => return Err(aws(format!("describing Connect instance {instance_id}"))(e)),
    };
    inst.identity_management_type.parse().map_err(|_| {
        Error::Config(format!(
            "Connect instance {instance_id} reports identity management type {:?}, which connect-onboard does not know",
            inst.identity_management_type
        ))
    })
}

/// The Identity Center instance: the configured one, verified against those listed, or
/// the only one listed.
async fn sso_instance(
    ic: &IdentityCenterConfig,
    sso: &dyn SsoAdminApi,
) -> Result<SsoInstance, Error> {
    // The model also accepts an identity store ARN; ListInstances reports the bare id.
    let store_id = ic
        .identity_store_id
        .as_deref()
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_string());
    let listed = match sso.instances().await {
        Ok(l) => l,
        // Fully configured: the ids can be trusted when the account may not list
        // instances (a member account, a restricted role).
        Err(e) if ic.instance_arn.is_some() && store_id.is_some() && !is_passing(&e) => {
            tracing::warn!(error = %e, "cannot list IAM Identity Center instances; using the configured ids");
            Vec::new()
        }
        Err(e) => return Err(aws("listing IAM Identity Center instances")(e)),
    };
    // Only instances that can take users: active (or not saying) and complete.
    let instances: Vec<_> = listed
        .into_iter()
        .filter(|i| {
            (i.status.is_empty() || i.status == "ACTIVE")
                && !i.arn.is_empty()
                && !i.identity_store_id.is_empty()
        })
        .collect();
    match (&ic.instance_arn, &store_id) {
        // Both configured and nothing listed to check them against: trust them.
        (Some(arn), Some(s)) if instances.is_empty() => Ok(SsoInstance {
            arn: arn.clone(),
            identity_store_id: s.clone(),
            status: String::new(),
        }),
        (Some(arn), store) => {
            let Some(i) = instances.iter().find(|i| &i.arn == arn) else {
                return Err(Error::Config(format!(
                    "identity_center.instance_arn {arn:?}: no such IAM Identity Center instance in this region (found: {})",
                    list(instances.iter().map(|i| i.arn.as_str()))
                )));
            };
            if let Some(s) = store {
                if &i.identity_store_id != s {
                    return Err(Error::Config(format!(
                        "identity_center.identity_store_id {s:?} does not belong to instance {arn} (its identity store is {:?})",
                        i.identity_store_id
                    )));
                }
            }
            Ok(i.clone())
        }
        (None, Some(s)) => instances.iter().find(|i| &i.identity_store_id == s).cloned().ok_or_else(|| {
            Error::Config(format!(
                "identity_center.identity_store_id {s:?}: no IAM Identity Center instance in this region uses it (found: {})",
                list(instances.iter().map(|i| i.identity_store_id.as_str()))
            ))
        }),
        (None, None) => match instances.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::Config(
                "no IAM Identity Center instance found in this region: set identity_center.region to its home region".into(),
            )),
            many => Err(Error::Config(format!(
                "several IAM Identity Center instances found; set identity_center.instance_arn to one of: {}",
                list(many.iter().map(|i| i.arn.as_str()))
            ))),
        },
    }
}

/// The configured Amazon Connect application, verified: it exists, belongs to the chosen
/// instance and (unless `disabled_app_ok`) is enabled.
async fn configured_application(
    sso: &dyn SsoAdminApi,
    arn: &str,
    chosen: &SsoInstance,
    disabled_app_ok: bool,
) -> Result<String, Error> {
    let app = match sso.describe_application(arn).await {
        Ok(a) => a,
        Err(e) if !is_passing(&e) && !e.is("ResourceNotFoundException") => {
            tracing::warn!(error = %e, "cannot describe the configured application; using it as configured");
            Some(SsoApplication {
                arn: arn.to_string(),
                name: String::new(),
                instance_arn: String::new(),
                status: String::new(),
            })
        }
        Err(e) => return Err(aws(format!("describing application {arn}"))(e)),
    };
    match app {
        None => Err(Error::Config(format!(
            "identity_center.application_arn {arn:?}: no such application"
        ))),
        Some(a) if !a.instance_arn.is_empty() && a.instance_arn != chosen.arn => {
            Err(Error::Config(format!(
                "identity_center.application_arn {arn:?} belongs to instance {}, not {}",
                a.instance_arn, chosen.arn
            )))
        }
        Some(a) if a.status == "DISABLED" && !disabled_app_ok => Err(Error::Config(format!(
            "identity_center.application_arn {arn:?}: the application {:?} is disabled; agents could not sign in through it",
            a.name
        ))),
        Some(a) => Ok(a.arn),
    }
}

/// The instance's one application whose name says Amazon Connect (enabled, unless
/// `disabled_app_ok`).
async fn discovered_application(
    sso: &dyn SsoAdminApi,
    chosen: &SsoInstance,
    disabled_app_ok: bool,
) -> Result<String, Error> {
    let apps = sso
        .applications(&chosen.arn)
        .await
        .map_err(aws("listing IAM Identity Center applications"))?;
    let connect_apps: Vec<_> = apps
        .iter()
        .filter(|a| {
            a.name.to_lowercase().contains("connect") && (disabled_app_ok || a.status != "DISABLED")
        })
        .collect();
    match connect_apps.as_slice() {
        [one] => Ok(one.arn.clone()),
        [] => Err(Error::Config(format!(
            "no Amazon Connect application found in {}; add it in the IAM Identity Center console and set identity_center.application_arn (applications found: {})",
            chosen.arn,
            list(apps.iter().map(|a| format!("{} ({})", a.name, a.arn)))
        ))),
        many => Err(Error::Config(format!(
            "several applications look like Amazon Connect; set identity_center.application_arn to one of: {}",
            list(many.iter().map(|a| format!("{} ({})", a.name, a.arn)))
        ))),
    }
}

/// The instance's routing profiles, security profiles and hierarchy groups, for name
/// resolution (also re-read by `retry`, after an admin renamed or created one).
pub async fn catalog(connect: &dyn ConnectApi, instance_id: &str) -> Result<Catalog, Error> {
    let ctx = |what: &str| format!("listing {what} of Connect instance {instance_id}");
    Ok(Catalog {
        routing_profiles: connect
            .routing_profiles(instance_id)
            .await
            .map_err(aws(ctx("routing profiles")))?,
        security_profiles: connect
            .security_profiles(instance_id)
            .await
            .map_err(aws(ctx("security profiles")))?,
        hierarchy_groups: connect
            .hierarchy_groups(instance_id)
            .await
            .map_err(aws(ctx("hierarchy groups")))?,
    })
}

/// A failure that may pass (throttling, 5xx, network): worth reporting, not working around.
fn is_passing(e: &AwsError) -> bool {
    e.is_throttling() || e.is_server_or_transport()
}

fn list<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let v: Vec<String> = items.map(|s| s.as_ref().to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Resolves one name-or-id against a catalog list: an exact id, else an exact name.
/// One name or id among `items` → its id; an unknown name lists the existing ones, an
/// ambiguous one lists the ids to choose from.
pub fn resolve_name(
    field: &str,
    what: &str,
    value: &str,
    items: &[Named],
) -> Result<String, FieldError> {
    if let Some(n) = items.iter().find(|n| n.id == value) {
        return Ok(n.id.clone());
    }
    let by_name: Vec<&Named> = items.iter().filter(|n| n.name == value).collect();
    match by_name.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(FieldError {
            field: field.into(),
            value: format!("{value:?}"),
            rule: format!(
                "no {what} has this name or id; existing: {}",
                list(items.iter().map(|n| n.name.as_str()))
            ),
        }),
        many => Err(FieldError {
            field: field.into(),
            value: format!("{value:?}"),
            rule: format!(
                "{} {what}s have this name; give the id instead: {}",
                many.len(),
                list(many.iter().map(|n| n.id.as_str()))
            ),
        }),
    }
}

/// Resolves an agent's profile names or ids to ids.
pub fn resolve(agent: AgentSpec, catalog: &Catalog) -> Result<Subject, Vec<FieldError>> {
    let mut errors = Vec::new();
    let routing = resolve_name(
        "routing_profile",
        "routing profile",
        &agent.routing_profile,
        &catalog.routing_profiles,
    )
    .map_err(|e| errors.push(e))
    .ok();
    let mut security = Vec::new();
    for sp in &agent.security_profiles {
        match resolve_name(
            "security_profiles",
            "security profile",
            sp,
            &catalog.security_profiles,
        ) {
            Ok(id) if !security.contains(&id) => security.push(id),
            Ok(id) => errors.push(FieldError {
                field: "security_profiles".into(),
                value: format!("{sp:?}"),
                rule: format!("names the same security profile ({id}) as another entry"),
            }),
            Err(e) => errors.push(e),
        }
    }
    let hierarchy = match &agent.hierarchy_group {
        Some(h) => resolve_name(
            "hierarchy_group",
            "hierarchy group",
            h,
            &catalog.hierarchy_groups,
        )
        .map_err(|e| errors.push(e))
        .ok(),
        None => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Subject {
        agent,
        routing_profile_id: routing.unwrap_or_default(),
        security_profile_ids: security,
        hierarchy_group_id: hierarchy,
        identity_user_name: None,
        leaver: None,
        changes: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(id: &str, name: &str) -> Named {
        Named {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn resolves_ids_then_names_and_lists_what_exists() {
        let items = vec![
            named("id-1", "Agent"),
            named("id-2", "Admin"),
            named("id-3", "Twin"),
            named("id-4", "Twin"),
        ];
        assert_eq!(resolve_name("f", "x", "id-2", &items).unwrap(), "id-2");
        assert_eq!(resolve_name("f", "x", "Agent", &items).unwrap(), "id-1");
        let e = resolve_name("security_profiles", "security profile", "Agnet", &items).unwrap_err();
        assert_eq!(e.field, "security_profiles");
        assert!(e.rule.contains("Agent, Admin"), "{}", e.rule);
        let e = resolve_name("f", "x", "Twin", &items).unwrap_err();
        assert!(
            e.rule.contains("id-3") && e.rule.contains("id-4"),
            "{}",
            e.rule
        );
        // Names are case-sensitive, as in Connect.
        assert!(resolve_name("f", "x", "agent", &items).is_err());
    }
}
