//! The TOML config file (`connect-onboard.toml`): which Connect instance and
//! Identity Center to talk to, the per-agent `[defaults]`, and where the
//! checkpoint database lives.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere, so a misspelt key is an
//! error naming the key and line), and [`Config::validate`] checks every value
//! against the botocore model patterns before any AWS call is made, because the
//! Rust SDK validates nothing client-side. The `[defaults]` rules are shared
//! with `agent::rules` (security profiles, ACW timeout, tags).
//!
//! Endpoints are never configured here: they come only from the
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_CONNECT` / `AWS_ENDPOINT_URL_IDENTITYSTORE`
//! / `AWS_ENDPOINT_URL_SSO_ADMIN` environment variables; credentials and profile
//! come from the standard AWS chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

pub use crate::agent::Defaults;
use crate::agent::{
    check_acw_timeout, check_security_profiles, check_tags, is_reserved_identity_store_name,
    Violation,
};
pub use crate::aws::pacer::RateLimits;

/// Connect instance of the built-in sandbox.
pub const SANDBOX_INSTANCE_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
/// Region of the built-in sandbox.
pub const SANDBOX_REGION: &str = "us-east-1";
/// Default Identity Center group the agents are added to.
pub const DEFAULT_GROUP: &str = "ConnectAgents";
/// Default checkpoint database path.
pub const DEFAULT_STATE_PATH: &str = ".connect-onboard/state.db";

const UUID: &str = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
const REGION_PATTERN: &str = r"^[a-z]{2}(-[a-z]+)+-\d$";
const IDENTITY_STORE_ID_PATTERN: &str = r"^(arn:aws[a-z-]*:identitystore::\d{12}:identitystore/)?(d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$";
const INSTANCE_ARN_PATTERN: &str =
    r"^arn:aws(-[a-z]{1,5}){0,3}:sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}$";
const APPLICATION_ARN_PATTERN: &str = r"^arn:aws(-[a-z]{1,5}){0,3}:sso::\d{12}:application/(sso)?ins-[a-zA-Z0-9-.]{16}/apl-[a-zA-Z0-9]{16}$";
const GROUP_PATTERN: &str = r"[\p{L}\p{M}\p{S}\p{N}\p{P}\t\n\r \u00a0]+";

static UUID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{UUID}$")).expect("a valid pattern"));
/// Captures: 1 partition suffix, 2 region, 3 account, 4 instance UUID.
static CONNECT_ARN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^arn:aws([a-z-]*):connect:([^:]*):(\d{{12}}):instance/({UUID})$"
    ))
    .expect("a valid pattern")
});
static REGION_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]{2}(-[a-z]+)+-[0-9]$").expect("a valid pattern"));
static IDENTITY_STORE_ID_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(arn:aws[a-z-]*:identitystore::[0-9]{12}:identitystore/)?(d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$").expect("a valid pattern")
});
/// Captures: 1 partition, 2 instance id (`ssoins-…`).
static INSTANCE_ARN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:(aws(?:-[a-z]{1,5}){0,3}):sso:::instance/((?:sso)?ins-[a-zA-Z0-9.\-]{16})$")
        .expect("a valid pattern")
});
/// Captures: 1 partition, 2 instance id (`ssoins-…`).
static APPLICATION_ARN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:(aws(?:-[a-z]{1,5}){0,3}):sso::[0-9]{12}:application/((?:sso)?ins-[a-zA-Z0-9.\-]{16})/apl-[a-zA-Z0-9]{16}$").expect("a valid pattern")
});
static GROUP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[\p{L}\p{M}\p{S}\p{N}\p{P}\t\n\r \x{a0}]+$").expect("a valid pattern")
});

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub connect: ConnectConfig,
    #[serde(default)]
    pub identity_center: IdentityCenterConfig,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub state: StateConfig,
    /// `[rate_limits]`: client-side limits per AWS API, overlaid on AWS's default quotas,
    /// and whether a shared store's budget is drawn from (`shared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitsSection>,
    /// `[sync]`: the Identity Center groups `sync` provisions Connect agents from.
    #[serde(default, skip_serializing_if = "SyncConfig::is_empty")]
    pub sync: SyncConfig,
}

/// `[rate_limits]`: `"service:Operation" = { rate, burst }` rules, and `shared`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitsSection {
    /// With a shared store (DynamoDB), draw every quota's tokens from the account's budget
    /// kept in it, shared by every process (default: yes); `false`: each process paces
    /// itself alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// The rules.
    #[serde(flatten)]
    pub rules: RateLimits,
}

/// `[sync]`: the mapping of Identity Center groups to Connect fields.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// `[[sync.groups]]`, in precedence order (the first group listed wins a field).
    pub groups: Vec<SyncGroup>,
}

impl SyncConfig {
    /// No group is mapped.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// `[[sync.groups]]`: every direct member of `group` is a desired agent with these fields
/// (a field left out is left as it is on an existing agent, and takes `[defaults]` on a new
/// one).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncGroup {
    /// The Identity Center group: its display name or its id.
    pub group: String,
    /// Routing profile: name or id.
    pub routing_profile: String,
    /// Security profiles: 1 to 10 names or ids.
    pub security_profiles: Vec<String>,
    /// Agent hierarchy group: name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hierarchy_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_type: Option<crate::agent::PhoneType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_accept: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acw_timeout: Option<i64>,
    /// Tags set (added or changed) on every member's Connect user; others are kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Config {
    /// The effective rate limits: AWS's default quotas with `[rate_limits]` on top.
    pub fn rate_limits(&self) -> RateLimits {
        let defaults = RateLimits::default();
        match &self.rate_limits {
            Some(user) => defaults.with_overrides(&user.rules),
            None => defaults,
        }
    }

    /// `[rate_limits] shared`, when the config says.
    pub fn rate_limits_shared(&self) -> Option<bool> {
        self.rate_limits.as_ref().and_then(|r| r.shared)
    }
}

/// `[connect]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectConfig {
    /// Instance id (UUID) or instance ARN.
    pub instance_id: String,
    /// Optional: else the ARN's region, else the AWS chain's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl ConnectConfig {
    /// The bare instance UUID (the last part of an ARN).
    pub fn instance_id(&self) -> &str {
        let id = self.instance_id.trim();
        if id.starts_with("arn:") {
            match id.rsplit_once("instance/") {
                Some((_, uuid)) => uuid,
                None => id,
            }
        } else {
            id
        }
    }

    /// The explicit region, else the ARN's region, else `None`.
    pub fn region(&self) -> Option<&str> {
        if let Some(r) = self.region.as_deref() {
            return Some(r);
        }
        let id = self.instance_id.trim();
        if !id.starts_with("arn:") {
            return None;
        }
        id.split(':').nth(3).filter(|r| !r.is_empty())
    }
}

/// `[identity_center]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityCenterConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Optional: discovered from `sso-admin ListInstances`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_store_id: Option<String>,
    /// Optional: discovered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_arn: Option<String>,
    /// Optional: discovered (the Amazon Connect application).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_arn: Option<String>,
    /// The Identity Center group the agents join; default "ConnectAgents".
    pub group: String,
    /// How the application is assigned; default `group`.
    pub assignment: AssignmentMode,
    /// Shown in the sign-in notice; default derived later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_url: Option<String>,
    /// AWS profile for the Identity Store and SSO Admin calls, when they need other
    /// credentials than Connect's (Identity Center administered from the management or
    /// delegated-administrator account, Connect in a member account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Which user attribute the Amazon Connect application's SAML mapping sends as the
    /// RoleSessionName (which must equal the Connect username exactly); default `email`.
    pub role_session_name: RoleSessionName,
}

/// The user attribute the identity provider sends as the SAML RoleSessionName.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RoleSessionName {
    /// `${user:email}`: the primary email.
    #[default]
    Email,
    /// `${user:subject}` / the user name.
    UserName,
}

impl Default for IdentityCenterConfig {
    fn default() -> Self {
        IdentityCenterConfig {
            region: None,
            identity_store_id: None,
            instance_arn: None,
            application_arn: None,
            group: DEFAULT_GROUP.to_string(),
            assignment: AssignmentMode::Group,
            portal_url: None,
            profile: None,
            role_session_name: RoleSessionName::Email,
        }
    }
}

/// Assign the Connect application to the group once (default), or to each user.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentMode {
    #[default]
    Group,
    User,
}

/// `[state]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// The SQLite state file (when no `url` is given).
    pub path: PathBuf,
    /// A shared store, `dynamodb://TABLE[?region=R]`: wins over `path`.
    pub url: Option<String>,
    /// The AWS profile of the shared store's client (else `--profile`, else the chain).
    pub profile: Option<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: PathBuf::from(DEFAULT_STATE_PATH),
            url: None,
            profile: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's message already names the key and line.
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config file {}: invalid {key} {value:?}: {rule}", path.display())]
    Invalid {
        path: PathBuf,
        /// Dotted key, e.g. `connect.instance_id`.
        key: String,
        /// The raw value (quoted by Display).
        value: String,
        rule: String,
    },
}

/// The commented example that `connect-onboard init` writes. It works against
/// the local sandbox out of the box.
pub const EXAMPLE: &str = r#"# connect-onboard configuration.
#
# Endpoints are not configured here: they come only from the environment
# variables AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_CONNECT,
# AWS_ENDPOINT_URL_IDENTITYSTORE and AWS_ENDPOINT_URL_SSO_ADMIN.
# Credentials and profile come from the standard AWS chain
# (AWS_PROFILE, AWS_ACCESS_KEY_ID, ~/.aws/config, SSO, instance roles, ...).
# Unknown keys are errors.

[connect]
# The Amazon Connect instance: its id (a UUID) or its ARN
# (arn:aws:connect:<region>:<account>:instance/<uuid>).
instance_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
# Optional: the instance's region. If unset: the region in the ARN, else the
# AWS chain's region (AWS_REGION / profile).
region = "us-east-1"

[identity_center]
# Optional: IAM Identity Center's home region, when it differs from the
# Connect instance's region.
# region = "us-east-1"
# Optional: discovered with sso-admin ListInstances when unset.
# identity_store_id = "d-0123456789"
# Optional: discovered.
# instance_arn = "arn:aws:sso:::instance/ssoins-0123456789abcdef"
# Optional: the Amazon Connect application in Identity Center; discovered.
# application_arn = "arn:aws:sso::123456789012:application/ssoins-0123456789abcdef/apl-0123456789abcdef"
# The Identity Center group every agent is added to (created if missing).
group = "ConnectAgents"
# "group": assign the Connect application to the group once (recommended);
# "user": assign it to each agent.
assignment = "group"
# Optional: the AWS access portal URL shown in the sign-in notice for new
# agents (must start with https://); derived from the identity store if unset.
# portal_url = "https://d-0123456789.awsapps.com/start"
# Optional: an AWS profile for the Identity Center calls (Identity Store, SSO Admin)
# when Identity Center is administered from another account than the Connect
# instance's (the management or delegated-administrator account).
# profile = "identity-center-admin"
# Which attribute the Amazon Connect application's SAML mapping sends as the
# RoleSessionName (it must equal the Connect username exactly): "email"
# (${user:email}, the primary email) or "user_name". Used by doctor and drift.
# role_session_name = "email"

[defaults]
# Used for every agent unless the agent row/flags say otherwise.
# Routing profile: name or id.
routing_profile = "Basic Routing Profile"
# Security profiles: 1 to 10 names or ids.
security_profiles = ["Agent"]
# "soft" (browser softphone) or "desk" (then each agent needs a desk_phone_number).
phone_type = "soft"
# Optional: hierarchy group name or id.
# hierarchy_group = "Tier 1"
# Auto-accept contacts.
auto_accept = false
# After-contact-work time limit in seconds, 0 to 2000000 (0 = no limit).
acw_timeout = 0
# Optional: tags on every Connect user (an agent's own tags win); at most 50,
# keys must not start with "aws:".
# tags = { team = "support" }

[state]
# The checkpoint database (also --state PATH).
path = ".connect-onboard/state.db"
# Or a DynamoDB table shared by a team or CI (also --state dynamodb://TABLE); create it
# once with `connect-onboard init --state dynamodb://TABLE`.
# url = "dynamodb://connect-onboard-state?region=eu-west-1"
# Optional: the AWS profile of the table's client (else --profile, else the chain).
# profile = "state"
"#;

/// The config for the built-in sandbox: its instance in us-east-1, everything
/// else default or discovered.
pub fn sandbox() -> Config {
    Config {
        rate_limits: None,
        sync: SyncConfig::default(),
        connect: ConnectConfig {
            instance_id: SANDBOX_INSTANCE_ID.to_string(),
            region: Some(SANDBOX_REGION.to_string()),
        },
        identity_center: IdentityCenterConfig::default(),
        defaults: Defaults::default(),
        state: StateConfig::default(),
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, path)
    }

    /// Parse and validate; `path_for_errors` only labels the errors.
    pub fn from_toml_str(s: &str, path_for_errors: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(s).map_err(|e| ConfigError::Parse {
            path: path_for_errors.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(path_for_errors)?;
        Ok(cfg)
    }

    /// Check every value against the AWS models; returns the first problem.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        match self.violations().into_iter().next() {
            None => Ok(()),
            Some(v) => Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: v.field,
                value: v.raw,
                rule: v.rule,
            }),
        }
    }

    /// Every value that breaks its AWS rule, in file order (one function per table).
    fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        connect_violations(&self.connect, &mut out);
        identity_center_id_violations(&self.identity_center, &mut out);
        identity_center_name_violations(&self.identity_center, &mut out);
        defaults_violations(&self.defaults, &mut out);
        sync_violations(&self.sync, &mut out);
        // [state]
        if self.state.path.as_os_str().is_empty() {
            bad(&mut out, "state.path", "", "must not be empty".to_string());
        }
        if let Some(url) = &self.state.url {
            if !url.starts_with("dynamodb://") {
                let rule = "must be dynamodb://TABLE[?region=R] (a file goes in state.path)";
                bad(&mut out, "state.url", url, rule.to_string());
            }
        }
        out
    }
}

/// Records that `key` (value `raw`) breaks `rule`.
fn bad(out: &mut Vec<Violation>, key: &str, raw: &str, rule: String) {
    out.push(Violation {
        field: key.to_string(),
        raw: raw.to_string(),
        rule,
    })
}

/// `[connect]`: the instance id or ARN, and the region (which must agree with the ARN's).
fn connect_violations(connect: &ConnectConfig, out: &mut Vec<Violation>) {
    let id = &connect.instance_id;
    let mut arn_region: Option<&str> = None;
    if let Some(c) = CONNECT_ARN_RE.captures(id) {
        let region = c.get(2).map_or("", |m| m.as_str());
        if REGION_RE.is_match(region) {
            arn_region = Some(region);
        } else {
            bad(
                out,
                "connect.instance_id",
                id,
                format!(
                    "the ARN's region {region:?} is not an AWS region (pattern {REGION_PATTERN})"
                ),
            );
        }
    } else if !UUID_RE.is_match(id) {
        bad(
            out,
            "connect.instance_id",
            id,
            format!(
                "must be a Connect instance id (a UUID such as {SANDBOX_INSTANCE_ID}) or an instance ARN (arn:aws:connect:<region>:<12-digit account>:instance/<uuid>)"
            ),
        );
    }
    if let Some(r) = &connect.region {
        if !REGION_RE.is_match(r) {
            bad(
                out,
                "connect.region",
                r,
                format!("must be an AWS region such as \"us-east-1\" (pattern {REGION_PATTERN})"),
            );
        } else if let Some(ar) = arn_region.filter(|ar| ar != r) {
            bad(
                out,
                "connect.region",
                r,
                format!("differs from the region {ar:?} in connect.instance_id; the instance lives in {ar:?} (drop connect.region or fix it)"),
            );
        }
    }
}

/// `[identity_center]`: the region, identity store id, instance and application ARNs (the
/// application must be in the configured instance).
fn identity_center_id_violations(ic: &IdentityCenterConfig, out: &mut Vec<Violation>) {
    if let Some(r) = &ic.region {
        if !REGION_RE.is_match(r) {
            bad(
                out,
                "identity_center.region",
                r,
                format!("must be an AWS region such as \"us-east-1\" (pattern {REGION_PATTERN})"),
            );
        }
    }
    if let Some(s) = &ic.identity_store_id {
        let n = s.chars().count();
        if n > 93 || !IDENTITY_STORE_ID_RE.is_match(s) {
            bad(
                out,
                "identity_center.identity_store_id",
                s,
                format!(
                    "must be an identity store id such as \"d-0123456789\" (\"d-\" and 10 lower-case hex digits), a lower-case UUID, or an identitystore ARN; at most 93 characters (pattern {IDENTITY_STORE_ID_PATTERN})"
                ),
            );
        }
    }
    let mut instance = None;
    if let Some(a) = &ic.instance_arn {
        match INSTANCE_ARN_RE.captures(a) {
            Some(c) => instance = Some((c[1].to_string(), c[2].to_string())),
            None => bad(
                out,
                "identity_center.instance_arn",
                a,
                format!(
                    "must be an IAM Identity Center instance ARN such as \"arn:aws:sso:::instance/ssoins-0123456789abcdef\" (pattern {INSTANCE_ARN_PATTERN})"
                ),
            ),
        }
    }
    if let Some(a) = &ic.application_arn {
        match APPLICATION_ARN_RE.captures(a) {
            Some(c) => {
                if let Some((part, ins)) = &instance {
                    if &c[1] != part || &c[2] != ins {
                        bad(
                            out,
                            "identity_center.application_arn",
                            a,
                            format!(
                                "belongs to Identity Center instance {}:{} but identity_center.instance_arn is {}:{}; the application must be in the configured instance",
                                &c[1], &c[2], part, ins
                            ),
                        );
                    }
                }
            }
            None => bad(
                out,
                "identity_center.application_arn",
                a,
                format!(
                    "must be an IAM Identity Center application ARN such as \"arn:aws:sso::123456789012:application/ssoins-0123456789abcdef/apl-0123456789abcdef\" (pattern {APPLICATION_ARN_PATTERN})"
                ),
            ),
        }
    }
}

/// `[identity_center]`: the group's DisplayName, the profile name and the portal URL.
fn identity_center_name_violations(ic: &IdentityCenterConfig, out: &mut Vec<Violation>) {
    let g = &ic.group;
    let gn = g.chars().count();
    if gn == 0 || gn > 1024 {
        bad(
            out,
            "identity_center.group",
            g,
            format!("must be 1 to 1024 characters (Identity Store group DisplayName), got {gn}"),
        );
    } else if !GROUP_RE.is_match(g) {
        bad(
            out,
            "identity_center.group",
            g,
            format!(
                "contains characters an Identity Store group DisplayName cannot have (pattern {GROUP_PATTERN})"
            ),
        );
    } else if is_reserved_identity_store_name(g) {
        bad(
            out,
            "identity_center.group",
            g,
            "\"Administrator\" and \"AWSAdministrators\" are reserved IAM Identity Center names"
                .to_string(),
        );
    }
    if let Some(p) = &ic.profile {
        if p.trim().is_empty() || p.chars().any(char::is_whitespace) {
            bad(
                out,
                "identity_center.profile",
                p,
                "must be an AWS profile name (no whitespace)".to_string(),
            );
        }
    }
    if let Some(u) = &ic.portal_url {
        let rest = u.strip_prefix("https://").unwrap_or("");
        if rest.is_empty() || rest.starts_with('/') || u.chars().any(char::is_whitespace) {
            bad(
                out,
                "identity_center.portal_url",
                u,
                "must be an https:// URL such as \"https://d-0123456789.awsapps.com/start\""
                    .to_string(),
            );
        }
    }
}

/// `[defaults]`: the profiles, hierarchy group, ACW timeout and tags new agents get.
fn defaults_violations(d: &Defaults, out: &mut Vec<Violation>) {
    if d.routing_profile.trim().is_empty() {
        bad(
            out,
            "defaults.routing_profile",
            &d.routing_profile,
            "must be a non-empty routing profile name or id".to_string(),
        );
    }
    if let Err(vs) = check_security_profiles("defaults.security_profiles", &d.security_profiles) {
        for v in vs {
            bad(out, &v.field, &v.raw, v.rule);
        }
    }
    if let Some(h) = &d.hierarchy_group {
        if h.trim().is_empty() {
            bad(
                out,
                "defaults.hierarchy_group",
                h,
                "must not be empty when given; omit the key instead".to_string(),
            );
        }
    }
    if let Err(v) = check_acw_timeout("defaults.acw_timeout", d.acw_timeout) {
        bad(out, &v.field, &v.raw, v.rule);
    }
    for v in check_tags("defaults.tags", &d.tags) {
        bad(out, &v.field, &v.raw, v.rule);
    }
}

/// `[[sync.groups]]`: each group's fields by the rules of `[defaults]`; a group mapped twice.
fn sync_violations(sync: &SyncConfig, out: &mut Vec<Violation>) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, g) in sync.groups.iter().enumerate() {
        let key = |k: &str| format!("sync.groups[{i}].{k}");
        let name = g.group.trim();
        if name.is_empty() {
            bad(
                out,
                &key("group"),
                &g.group,
                "must be an Identity Center group display name or id".into(),
            );
        } else if seen.contains(&name) {
            bad(
                out,
                &key("group"),
                &g.group,
                "is mapped twice: one [[sync.groups]] per group (the order is the precedence)"
                    .into(),
            );
        }
        seen.push(name);
        if g.routing_profile.trim().is_empty() {
            bad(
                out,
                &key("routing_profile"),
                &g.routing_profile,
                "must be a non-empty routing profile name or id".into(),
            );
        }
        if let Err(vs) = check_security_profiles(&key("security_profiles"), &g.security_profiles) {
            for v in vs {
                bad(out, &v.field, &v.raw, v.rule);
            }
        }
        if let Some(h) = g.hierarchy_group.as_deref().filter(|h| h.trim().is_empty()) {
            bad(
                out,
                &key("hierarchy_group"),
                h,
                "must not be empty when given; omit the key instead".into(),
            );
        }
        if let Some(t) = g.acw_timeout {
            if let Err(v) = check_acw_timeout(&key("acw_timeout"), t) {
                bad(out, &v.field, &v.raw, v.rule);
            }
        }
        for v in check_tags(&key("tags"), &g.tags) {
            bad(out, &v.field, &v.raw, v.rule);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::PhoneType;
    use std::collections::BTreeMap;

    const UUID_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    const ARN_ID: &str =
        "arn:aws:connect:eu-west-2:123456789012:instance/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    const SSO_INSTANCE: &str = "arn:aws:sso:::instance/ssoins-0123456789abcdef";
    const SSO_APP: &str =
        "arn:aws:sso::123456789012:application/ssoins-0123456789abcdef/apl-0123456789abcdef";

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(s, Path::new("test.toml"))
    }

    fn with_connect(rest: &str) -> String {
        format!("[connect]\ninstance_id = \"{UUID_ID}\"\n{rest}")
    }

    /// Asserts an Invalid error for `key` with raw `value` and a rule containing
    /// `rule`, and that Display names path, key, quoted value and rule.
    #[track_caller]
    fn expect_invalid(r: Result<Config, ConfigError>, key: &str, value: &str, rule: &str) {
        match r {
            Err(e @ ConfigError::Invalid { .. }) => {
                let shown = e.to_string();
                let ConfigError::Invalid {
                    key: k,
                    value: v,
                    rule: ru,
                    ..
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(k, key, "{shown}");
                assert_eq!(v, value, "{shown}");
                assert!(ru.contains(rule), "{shown}");
                assert!(
                    shown.starts_with(&format!("config file test.toml: invalid {key} {value:?}: ")),
                    "{shown}"
                );
            }
            other => panic!("expected Invalid {key}, got {other:?}"),
        }
    }

    #[track_caller]
    fn expect_parse_error(r: Result<Config, ConfigError>, needle: &str) {
        match r {
            Err(e @ ConfigError::Parse { .. }) => {
                let shown = e.to_string();
                assert!(shown.starts_with("config file test.toml: "), "{shown}");
                assert!(shown.contains(needle), "{shown}");
            }
            other => panic!("expected Parse error containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn sync_groups_parse_in_order_and_are_checked() {
        let c = parse(&with_connect(
            "[[sync.groups]]\ngroup = \"Tier1-Agents\"\nrouting_profile = \"Basic Routing Profile\"\nsecurity_profiles = [\"Agent\"]\nhierarchy_group = \"Tier 1\"\n[[sync.groups]]\ngroup = \"Supervisors\"\nrouting_profile = \"Supervisor Routing\"\nsecurity_profiles = [\"Agent\", \"CallCenterManager\"]\nphone_type = \"desk\"\nauto_accept = true\nacw_timeout = 30\ntags = { team = \"sup\" }\n",
        ))
        .unwrap();
        let g = &c.sync.groups;
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].group, "Tier1-Agents");
        assert_eq!(g[0].hierarchy_group.as_deref(), Some("Tier 1"));
        assert_eq!(g[1].security_profiles, ["Agent", "CallCenterManager"]);
        assert_eq!(g[1].phone_type, Some(PhoneType::Desk));
        assert_eq!(g[1].acw_timeout, Some(30));
        expect_parse_error(
            parse(&with_connect(
                "[[sync.groups]]\ngroup = \"A\"\nrouting_profile = \"R\"\nsecurity_profiles = [\"Agent\"]\nrouting = \"x\"\n",
            )),
            "unknown field `routing`",
        );
        expect_invalid(
            parse(&with_connect(
                "[[sync.groups]]\ngroup = \"A\"\nrouting_profile = \"R\"\nsecurity_profiles = []\n",
            )),
            "sync.groups[0].security_profiles",
            "[]",
            "1 to 10",
        );
        expect_invalid(
            parse(&with_connect(
                "[[sync.groups]]\ngroup = \"A\"\nrouting_profile = \"R\"\nsecurity_profiles = [\"Agent\"]\n[[sync.groups]]\ngroup = \"A\"\nrouting_profile = \"R\"\nsecurity_profiles = [\"Agent\"]\n",
            )),
            "sync.groups[1].group",
            "A",
            "mapped twice",
        );
    }

    #[test]
    fn example_parses_validates_and_is_the_sandbox() {
        let c = parse(EXAMPLE).expect("EXAMPLE must parse and validate");
        assert_eq!(c, sandbox());
        for key in [
            "instance_id",
            "region",
            "identity_store_id",
            "instance_arn",
            "application_arn",
            "group",
            "assignment",
            "routing_profile",
            "security_profiles",
            "phone_type",
            "path",
            "AWS_ENDPOINT_URL_CONNECT",
            "AWS_ENDPOINT_URL_IDENTITYSTORE",
            "AWS_ENDPOINT_URL_SSO_ADMIN",
        ] {
            assert!(EXAMPLE.contains(key), "EXAMPLE lacks {key}");
        }
        // The commented-out values are valid too once uncommented.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(r)
                    if Regex::new(r"^[a-z_]+ = ")
                        .expect("a valid pattern")
                        .is_match(r) =>
                {
                    r
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&uncommented).expect("uncommented EXAMPLE must validate");
        assert_eq!(c.identity_center.application_arn.as_deref(), Some(SSO_APP));
        assert_eq!(
            c.defaults.tags.get("team").map(String::as_str),
            Some("support")
        );
    }

    #[test]
    fn sandbox_config() {
        let c = sandbox();
        assert_eq!(c.connect.instance_id(), SANDBOX_INSTANCE_ID);
        assert_eq!(c.connect.region(), Some("us-east-1"));
        assert_eq!(c.identity_center, IdentityCenterConfig::default());
        assert_eq!(c.identity_center.identity_store_id, None);
        c.validate(Path::new("sandbox")).unwrap();
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(&with_connect("")).unwrap();
        assert_eq!(c.connect.region(), None);
        assert_eq!(c.identity_center.group, "ConnectAgents");
        assert_eq!(c.identity_center.assignment, AssignmentMode::Group);
        assert_eq!(c.identity_center.portal_url, None);
        assert_eq!(c.defaults, Defaults::default());
        assert_eq!(c.state.path, PathBuf::from(".connect-onboard/state.db"));
    }

    #[test]
    fn full_config_values_are_read() {
        let c = parse(&with_connect(&format!(
            "[identity_center]\nregion = \"eu-central-1\"\nidentity_store_id = \"d-0123456789\"\ninstance_arn = \"{SSO_INSTANCE}\"\napplication_arn = \"{SSO_APP}\"\ngroup = \"Agents EU\"\nassignment = \"user\"\nportal_url = \"https://d-0123456789.awsapps.com/start\"\n[defaults]\nrouting_profile = \"Sales\"\nsecurity_profiles = [\"Agent\", \"QA\"]\nhierarchy_group = \"Tier 1\"\nphone_type = \"desk\"\nauto_accept = true\nacw_timeout = 30\ntags = {{ team = \"blue\" }}\n[state]\npath = \"/var/lib/co.db\"\n"
        )))
        .unwrap();
        let ic = &c.identity_center;
        assert_eq!(ic.region.as_deref(), Some("eu-central-1"));
        assert_eq!(ic.assignment, AssignmentMode::User);
        assert_eq!(ic.group, "Agents EU");
        assert_eq!(c.defaults.phone_type, PhoneType::Desk);
        assert_eq!(c.defaults.security_profiles, vec!["Agent", "QA"]);
        assert!(c.defaults.auto_accept);
        assert_eq!(c.defaults.acw_timeout, 30);
        assert_eq!(
            c.defaults.tags,
            BTreeMap::from([("team".to_string(), "blue".to_string())])
        );
        assert_eq!(c.state.path, PathBuf::from("/var/lib/co.db"));
        // Serialize round trip.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(parse(&text).unwrap(), c);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        expect_parse_error(
            parse(&with_connect("endpoint = \"http://x\"\n")),
            "endpoint",
        );
        expect_parse_error(
            parse(&with_connect("[identity_center]\ngroups = \"x\"\n")),
            "groups",
        );
        expect_parse_error(
            parse(&with_connect("[defaults]\nphone = \"soft\"\n")),
            "phone",
        );
        expect_parse_error(parse(&with_connect("[state]\nfile = \"x\"\n")), "file");
        expect_parse_error(parse(&with_connect("[sandbox]\n")), "sandbox");
        // toml names the line.
        expect_parse_error(
            parse(&with_connect("[defaults]\nphone = \"soft\"\n")),
            "line 4",
        );
    }

    #[test]
    fn type_and_enum_errors_are_parse_errors() {
        expect_parse_error(parse("[identity_center]\ngroup = \"x\"\n"), "connect");
        expect_parse_error(
            parse(&with_connect("[identity_center]\nassignment = \"both\"\n")),
            "both",
        );
        expect_parse_error(
            parse(&with_connect("[defaults]\nphone_type = \"mobile\"\n")),
            "mobile",
        );
        expect_parse_error(
            parse(&with_connect("[defaults]\nacw_timeout = \"10\"\n")),
            "acw_timeout",
        );
    }

    #[test]
    fn instance_id_accepts_uuid_or_arn_and_derives_region() {
        let c = parse(&format!("[connect]\ninstance_id = \"{ARN_ID}\"\n")).unwrap();
        assert_eq!(c.connect.instance_id(), UUID_ID);
        assert_eq!(c.connect.region(), Some("eu-west-2"));
        let c = parse(&format!(
            "[connect]\ninstance_id = \"{ARN_ID}\"\nregion = \"eu-west-2\"\n"
        ))
        .unwrap();
        assert_eq!(c.connect.region(), Some("eu-west-2"));
        let gov = "arn:aws-us-gov:connect:us-gov-west-1:123456789012:instance/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
        let c = parse(&format!("[connect]\ninstance_id = \"{gov}\"\n")).unwrap();
        assert_eq!(c.connect.region(), Some("us-gov-west-1"));
        let c = parse(&with_connect("region = \"ap-southeast-2\"\n")).unwrap();
        assert_eq!(c.connect.instance_id(), UUID_ID);
        assert_eq!(c.connect.region(), Some("ap-southeast-2"));
    }

    #[test]
    fn instance_id_must_be_uuid_or_connect_arn() {
        for bad in [
            "",
            "my-instance",
            "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeee",
            "arn:aws:connect:us-east-1:12345:instance/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
            "arn:aws:sso:us-east-1:123456789012:instance/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
            "arn:aws:connect:us-east-1:123456789012:instance/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee/user/x",
        ] {
            expect_invalid(
                parse(&format!("[connect]\ninstance_id = \"{bad}\"\n")),
                "connect.instance_id",
                bad,
                "must be a Connect instance id (a UUID",
            );
        }
        let bad_region =
            "arn:aws:connect:useast1:123456789012:instance/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
        expect_invalid(
            parse(&format!("[connect]\ninstance_id = \"{bad_region}\"\n")),
            "connect.instance_id",
            bad_region,
            "the ARN's region \"useast1\" is not an AWS region",
        );
    }

    #[test]
    fn explicit_region_must_match_the_arn() {
        expect_invalid(
            parse(&format!(
                "[connect]\ninstance_id = \"{ARN_ID}\"\nregion = \"us-east-1\"\n"
            )),
            "connect.region",
            "us-east-1",
            "differs from the region \"eu-west-2\" in connect.instance_id",
        );
    }

    #[test]
    fn regions_must_match_the_pattern() {
        for bad in [
            "US-EAST-1",
            "us-east",
            "useast1",
            "us-east-1a",
            " us-east-1",
        ] {
            expect_invalid(
                parse(&with_connect(&format!("region = \"{bad}\"\n"))),
                "connect.region",
                bad,
                r"pattern ^[a-z]{2}(-[a-z]+)+-\d$",
            );
            expect_invalid(
                parse(&with_connect(&format!(
                    "[identity_center]\nregion = \"{bad}\"\n"
                ))),
                "identity_center.region",
                bad,
                r"pattern ^[a-z]{2}(-[a-z]+)+-\d$",
            );
        }
    }

    #[test]
    fn identity_store_id_forms() {
        for good in [
            "d-0123456789",
            "0123abcd-0123-4567-89ab-0123456789ab",
            "arn:aws:identitystore::123456789012:identitystore/d-0123456789",
        ] {
            parse(&with_connect(&format!(
                "[identity_center]\nidentity_store_id = \"{good}\"\n"
            )))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "d-012345678",
            "d-0123456789A",
            "D-0123456789",
            "0123ABCD-0123-4567-89ab-0123456789ab",
            "ds-0123456789",
        ] {
            expect_invalid(
                parse(&with_connect(&format!(
                    "[identity_center]\nidentity_store_id = \"{bad}\"\n"
                ))),
                "identity_center.identity_store_id",
                bad,
                "\"d-\" and 10 lower-case hex digits",
            );
        }
    }

    #[test]
    fn instance_arn_pattern() {
        for good in [
            SSO_INSTANCE,
            "arn:aws-us-gov:sso:::instance/ins-0123456789abcdef",
            "arn:aws:sso:::instance/ssoins-0123-4567.89abcd",
        ] {
            parse(&with_connect(&format!(
                "[identity_center]\ninstance_arn = \"{good}\"\n"
            )))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "ssoins-0123456789abcdef",
            "arn:aws:sso:::instance/ssoins-0123456789abcde",
            "arn:aws:sso::123456789012:instance/ssoins-0123456789abcdef",
            "arn:azure:sso:::instance/ssoins-0123456789abcdef",
        ] {
            expect_invalid(
                parse(&with_connect(&format!(
                    "[identity_center]\ninstance_arn = \"{bad}\"\n"
                ))),
                "identity_center.instance_arn",
                bad,
                "must be an IAM Identity Center instance ARN",
            );
        }
    }

    #[test]
    fn application_arn_pattern_and_instance_match() {
        for bad in [
            "apl-0123456789abcdef",
            "arn:aws:sso:::application/ssoins-0123456789abcdef/apl-0123456789abcdef",
            "arn:aws:sso::123456789012:application/ssoins-0123456789abcdef/apl-0123456789abcde",
        ] {
            expect_invalid(
                parse(&with_connect(&format!(
                    "[identity_center]\napplication_arn = \"{bad}\"\n"
                ))),
                "identity_center.application_arn",
                bad,
                "must be an IAM Identity Center application ARN",
            );
        }
        let other = "arn:aws:sso:::instance/ssoins-fedcba9876543210";
        expect_invalid(
            parse(&with_connect(&format!(
                "[identity_center]\ninstance_arn = \"{other}\"\napplication_arn = \"{SSO_APP}\"\n"
            ))),
            "identity_center.application_arn",
            SSO_APP,
            "the application must be in the configured instance",
        );
        parse(&with_connect(&format!(
            "[identity_center]\ninstance_arn = \"{SSO_INSTANCE}\"\napplication_arn = \"{SSO_APP}\"\n"
        )))
        .unwrap();
    }

    #[test]
    fn group_name_rules() {
        let g = |v: &str| {
            let quoted = toml::Value::String(v.to_string()).to_string();
            parse(&with_connect(&format!(
                "[identity_center]\ngroup = {quoted}\n"
            )))
        };
        expect_invalid(g(""), "identity_center.group", "", "1 to 1024 characters");
        let long = "g".repeat(1025);
        expect_invalid(g(&long), "identity_center.group", &long, "got 1025");
        g(&"g".repeat(1024)).unwrap();
        expect_invalid(
            g("Administrator"),
            "identity_center.group",
            "Administrator",
            "reserved",
        );
        expect_invalid(
            g("AWSAdministrators"),
            "identity_center.group",
            "AWSAdministrators",
            "reserved",
        );
        expect_invalid(
            g("Agents\u{3000}EU"),
            "identity_center.group",
            "Agents\u{3000}EU",
            "group DisplayName",
        );
        expect_invalid(
            g("Agents\u{7}"),
            "identity_center.group",
            "Agents\u{7}",
            "group DisplayName",
        );
        g("Connect Agents (EU) \u{a0}— Tier1").unwrap();
    }

    #[test]
    fn portal_url_must_be_https() {
        for bad in [
            "http://d-0123456789.awsapps.com/start",
            "d-0123456789.awsapps.com",
            "https://",
            "https://x y",
        ] {
            expect_invalid(
                parse(&with_connect(&format!(
                    "[identity_center]\nportal_url = \"{bad}\"\n"
                ))),
                "identity_center.portal_url",
                bad,
                "must be an https:// URL",
            );
        }
    }

    #[test]
    fn defaults_are_validated_with_the_agent_rules() {
        let d = |body: &str| parse(&with_connect(&format!("[defaults]\n{body}\n")));
        expect_invalid(
            d("routing_profile = \" \""),
            "defaults.routing_profile",
            " ",
            "non-empty",
        );
        expect_invalid(
            d("security_profiles = []"),
            "defaults.security_profiles",
            "[]",
            "must list 1 to 10 security profiles",
        );
        let eleven: Vec<String> = (0..11).map(|n| format!("p{n}")).collect();
        let r = d(&format!("security_profiles = {eleven:?}"));
        expect_invalid(
            r,
            "defaults.security_profiles",
            &format!("{eleven:?}"),
            "got 11",
        );
        expect_invalid(
            d("security_profiles = [\"A\", \"a\"]"),
            "defaults.security_profiles",
            "a",
            "more than once",
        );
        expect_invalid(
            d("hierarchy_group = \"\""),
            "defaults.hierarchy_group",
            "",
            "must not be empty",
        );
        expect_invalid(
            d("acw_timeout = -5"),
            "defaults.acw_timeout",
            "-5",
            "must be 0 to 2000000 seconds",
        );
        expect_invalid(
            d("acw_timeout = 2000001"),
            "defaults.acw_timeout",
            "2000001",
            "must be 0 to 2000000 seconds",
        );
        expect_invalid(
            d("tags = { \"aws:team\" = \"x\" }"),
            "defaults.tags[\"aws:team\"]",
            "aws:team",
            "must not start with \"aws:\"",
        );
        expect_invalid(
            d("tags = { \"a#b\" = \"x\" }"),
            "defaults.tags[\"a#b\"]",
            "a#b",
            "found '#'",
        );
        let many: String = (0..51)
            .map(|n| format!("k{n} = \"v\""))
            .collect::<Vec<_>>()
            .join(", ");
        expect_invalid(
            d(&format!("tags = {{ {many} }}")),
            "defaults.tags",
            "51 tags",
            "at most 50 tags",
        );
    }

    #[test]
    fn state_path_must_not_be_empty() {
        expect_invalid(
            parse(&with_connect("[state]\npath = \"\"\n")),
            "state.path",
            "",
            "must not be empty",
        );
    }

    #[test]
    fn load_reads_a_file_and_reports_read_errors() {
        let dir = std::env::temp_dir().join(format!("agentcfg-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("connect-onboard.toml");
        std::fs::write(&file, EXAMPLE).unwrap();
        assert_eq!(Config::load(&file).unwrap(), sandbox());

        std::fs::write(&file, "[connect]\ninstance_id = \"nope\"\n").unwrap();
        let e = Config::load(&file).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!(
                "config file {}: invalid connect.instance_id \"nope\": ",
                file.display()
            )),
            "{e}"
        );

        let missing = dir.join("missing.toml");
        let e = Config::load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read config file {}: ", missing.display())),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Property tests: arbitrary text and arbitrary values for each key of the example never
/// panic the loader, and every rejection names the file and the key or line, and the rule.
/// 64 cases in CI; more with `PROPTEST_CASES=5000 cargo nextest run -E 'test(/config::fuzz::/)'`.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    use crate::agent::fuzz::config;

    /// A TOML value of any shape: strings of any text, numbers, booleans, arrays, tables.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>().prop_map(|s| format!("{s:?}")),
            "[a-zA-Z0-9:/._ -]{0,40}".prop_map(|s| format!("{s:?}")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| format!("{n:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            proptest::collection::vec("[a-zA-Z ]{0,8}", 0..12).prop_map(|v| format!("{v:?}")),
            "\\PC{0,20}",
            Just("{ a = 1 }".to_string()),
        ]
    }

    fn check(text: &str, key: Option<&str>) -> Result<(), TestCaseError> {
        let path = Path::new("cfg.toml");
        match Config::from_toml_str(text, path) {
            Ok(_) => {}
            Err(ConfigError::Parse { message, .. }) => {
                prop_assert!(message.contains("line"), "no line: {message}");
            }
            Err(ConfigError::Invalid {
                key: k,
                rule,
                value,
                ..
            }) => {
                prop_assert!(!rule.trim().is_empty());
                prop_assert!(
                    k.contains('.') || k == "rate_limits",
                    "not a dotted key: {k}"
                );
                if let Some(key) = key {
                    prop_assert!(
                        k.ends_with(key) || k.contains(&format!("{key}[")),
                        "{k} for a bad {key} = {value:?}"
                    );
                }
            }
            Err(e @ ConfigError::Read { .. }) => prop_assert!(false, "{e}"),
        }
        if let Err(e) = Config::from_toml_str(text, path) {
            prop_assert!(e.to_string().starts_with("config file cfg.toml: "), "{e}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_text_is_rejected_with_a_line_or_a_key(text in "\\PC{0,200}") {
            check(&text, None)?;
        }

        #[test]
        fn a_bad_value_for_any_key_is_rejected_naming_that_key(which in any::<prop::sample::Index>(), value in value()) {
            let lines: Vec<&str> = EXAMPLE.lines().collect();
            let settable: Vec<usize> = (0..lines.len())
                .filter(|&i| !lines[i].starts_with('#') && lines[i].contains(" = "))
                .collect();
            let at = settable[which.index(settable.len())];
            let key = lines[at].split(" = ").next().unwrap_or_default().trim().to_string();
            let mut text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            text[at] = format!("{key} = {value}");
            check(&text.join("\n"), Some(&key))?;
        }
    }
}
