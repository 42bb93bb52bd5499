//! The agent being onboarded: raw input ([`AgentInput`]), the config defaults
//! ([`Defaults`]), and the validated, checkpointable result ([`AgentSpec`]).
//!
//! Every client-side rule lives here because the AWS Rust SDK validates
//! nothing (no lengths, patterns or enums; `CreateUserInputBuilder::build` just
//! copies fields), so a bad row would otherwise fail half-way through a
//! workflow, after the Connect user or the Identity Center user already exists.
//! The rules come from the botocore models of Connect `CreateUser` and Identity
//! Store `CreateUser` and from the identity-management rules of the instance
//! (AWS docs: Amazon Connect API Reference "CreateUser", Identity Store API Reference
//! "CreateUser", Amazon Connect Administrator Guide "Plan for identity management"):
//!
//! * On **SAML** instances the Connect username, the Identity Store `UserName`
//!   and the primary email are one string (the email, trimmed and lower-cased
//!   once), because SAML sign-in requires Connect username == RoleSessionName
//!   == the Identity Center user's email. No `Password`, `Email` (on the Connect
//!   side) or `DirectoryUserId` may be sent.
//! * On **CONNECT_MANAGED** instances the username is at most 20 characters
//!   and a password is required at run time (it is never stored).
//! * On **EXISTING_DIRECTORY** instances no password may be sent; only there may
//!   a `DirectoryUserId` be given.
//!
//! [`validate`] collects *all* problems of an agent at once; each is a
//! [`FieldError`] naming the field (as the CLI names it), the offending value (quoted; a
//! password is always `<redacted>`) and the rule with its limits.
//!
//! Optional string fields that are present but blank are errors, not "absent":
//! any reader of tabular input must map empty cells to `None`.//!
//! The parts: this file (types, limits, errors), `rules` (the reusable field checks, also
//! used by the config's `[defaults]`), `validate` (an input → a spec, all errors at once),
//! `reader` (agent files: the console's bulk-upload CSV, native CSV, JSON Lines).

pub mod fold;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod reader;
mod rules;
#[cfg(test)]
mod tests;
mod validate;

pub use rules::check_password;
pub(crate) use rules::*;
pub use validate::{leaver, migrated, validate};

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use unicode_normalization::{is_nfc, UnicodeNormalization};

// ---------------------------------------------------------------------------
// Limits (named so messages and tests use the same numbers)
// ---------------------------------------------------------------------------

/// Connect's documented email pattern (SecondaryEmail doc) bounds the length to 265.
pub const EMAIL_MAX_CHARS: usize = 265;
/// Identity Store `UserName`: 1..128.
pub const IDENTITY_STORE_USERNAME_MAX_CHARS: usize = 128;
/// Identity Store name / display-name strings: 1..1024.
pub const IDENTITY_STORE_STRING_MAX_CHARS: usize = 1024;
/// Connect SAML username ∩ IAM RoleSessionName: 2..64.
pub const SAML_USERNAME_MIN_CHARS: usize = 2;
pub const SAML_USERNAME_MAX_CHARS: usize = 64;
/// Connect usernames on non-SAML instances: "up to 20 characters".
pub const NON_SAML_USERNAME_MAX_CHARS: usize = 20;
/// `AfterContactWorkTimeLimit`: documented maximum 2,000,000 s (about 23 days).
pub const ACW_TIMEOUT_MAX_SECS: i64 = 2_000_000;
/// `SecurityProfileIds`: 1..10.
pub const SECURITY_PROFILES_MAX: usize = 10;
/// Connect `TagMap`: 1..50 pairs, key 1..128, value 0..256.
pub const TAGS_MAX: usize = 50;
pub const TAG_KEY_MAX_CHARS: usize = 128;
pub const TAG_VALUE_MAX_CHARS: usize = 256;
/// Identity Store user and group names reserved by IAM Identity Center.
pub const RESERVED_IDENTITY_STORE_NAMES: [&str; 2] = ["Administrator", "AWSAdministrators"];

const EMAIL_PATTERN: &str = r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,63}$";
const E164_RULE: &str =
    r"must be E.164, a '+' then 2 to 15 digits with no leading zero (pattern ^\+[1-9]\d{1,14}$)";
const CONNECT_USERNAME_CHARSET: &str = r"[a-zA-Z0-9_\-.@]";
const IDS_USERNAME_PATTERN: &str = r"[\p{L}\p{M}\p{S}\p{N}\p{P}]+";
const IDS_STRING_PATTERN: &str = r"[\p{L}\p{M}\p{S}\p{N}\p{P}\t\n\r \u00a0\u3000]+";
const TAG_KEY_PATTERN: &str = r"^(?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]*$";
const PASSWORD_PATTERN: &str = r"^(?=.*[a-z])(?=.*[A-Z])(?=.*\d)[a-zA-Z\d\S]{8,64}$";

static EMAIL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(EMAIL_PATTERN).expect("a valid pattern"));
// `\d` in the regex crate is Unicode; AWS means ASCII digits.
static E164_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+[1-9][0-9]{1,14}$").expect("a valid pattern"));
static CONNECT_USERNAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.@-]+$").expect("a valid pattern"));
static IDS_USERNAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{M}\p{S}\p{N}\p{P}]+$").expect("a valid pattern"));
static IDS_STRING_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[\p{L}\p{M}\p{S}\p{N}\p{P}\t\n\r \x{a0}\x{3000}]+$").expect("a valid pattern")
});
/// The model's tag-key pattern without its `(?!aws:)` lookahead (checked separately).
static TAG_KEY_CHARS_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").expect("a valid pattern"));

// ---------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------

/// Connect `PhoneConfig.PhoneType`. Spelled `soft`/`desk` in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhoneType {
    Soft,
    Desk,
}

impl PhoneType {
    /// The Connect API value: `SOFT_PHONE` or `DESK_PHONE`.
    pub fn as_aws(&self) -> &'static str {
        match self {
            PhoneType::Soft => "SOFT_PHONE",
            PhoneType::Desk => "DESK_PHONE",
        }
    }
}

impl fmt::Display for PhoneType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PhoneType::Soft => "soft",
            PhoneType::Desk => "desk",
        })
    }
}

impl FromStr for PhoneType {
    type Err = String;
    /// Accepts `soft`, `desk`, `SOFT_PHONE`, `DESK_PHONE`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("soft") || t.eq_ignore_ascii_case("soft_phone") {
            Ok(PhoneType::Soft)
        } else if t.eq_ignore_ascii_case("desk") || t.eq_ignore_ascii_case("desk_phone") {
            Ok(PhoneType::Desk)
        } else {
            Err(format!(
                "invalid phone_type {s:?}: must be \"soft\" or \"desk\" (or SOFT_PHONE / DESK_PHONE)"
            ))
        }
    }
}

/// The instance's `IdentityManagementType` (DescribeInstance); fixed at instance creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IdentityMode {
    Saml,
    ConnectManaged,
    ExistingDirectory,
}

impl IdentityMode {
    /// The DescribeInstance string: `SAML`, `CONNECT_MANAGED`, `EXISTING_DIRECTORY`.
    pub fn as_aws(&self) -> &'static str {
        match self {
            IdentityMode::Saml => "SAML",
            IdentityMode::ConnectManaged => "CONNECT_MANAGED",
            IdentityMode::ExistingDirectory => "EXISTING_DIRECTORY",
        }
    }
}

impl fmt::Display for IdentityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_aws())
    }
}

impl FromStr for IdentityMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "SAML" => Ok(IdentityMode::Saml),
            "CONNECT_MANAGED" => Ok(IdentityMode::ConnectManaged),
            "EXISTING_DIRECTORY" => Ok(IdentityMode::ExistingDirectory),
            _ => Err(format!(
                "unknown IdentityManagementType {s:?}: expected SAML, CONNECT_MANAGED or EXISTING_DIRECTORY"
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------

/// A password; never Serialize, Debug prints "<redacted>".
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

// ---------------------------------------------------------------------------
// Input, defaults, spec
// ---------------------------------------------------------------------------

/// Raw agent fields as typed by an admin (CLI flags). Nothing checked yet.
#[derive(Clone, Debug, Default)]
pub struct AgentInput {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Connect username; default = normalised email. On SAML it must equal the email (after normalisation).
    pub username: Option<String>,
    /// Name or id; `None` → defaults.
    pub routing_profile: Option<String>,
    /// Names or ids; empty → defaults.
    pub security_profiles: Vec<String>,
    pub hierarchy_group: Option<String>,
    pub phone_type: Option<PhoneType>,
    pub desk_phone_number: Option<String>,
    pub auto_accept: Option<bool>,
    pub acw_timeout: Option<i64>,
    pub secondary_email: Option<String>,
    pub mobile: Option<String>,
    pub directory_user_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub password: Option<Secret>,
}

/// Defaults from the config's `[defaults]` table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    pub routing_profile: String,
    pub security_profiles: Vec<String>,
    pub hierarchy_group: Option<String>,
    pub phone_type: PhoneType,
    pub auto_accept: bool,
    pub acw_timeout: i64,
    pub tags: BTreeMap<String, String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            routing_profile: "Basic Routing Profile".to_string(),
            security_profiles: vec!["Agent".to_string()],
            hierarchy_group: None,
            phone_type: PhoneType::Soft,
            auto_accept: false,
            acw_timeout: 0,
            tags: BTreeMap::new(),
        }
    }
}

/// A validated agent: every field already satisfies AWS's documented rules for
/// the instance's identity mode. Serializable (it is stored in the checkpoint
/// DB) and contains no secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AgentSpec {
    /// Trimmed + lower-cased once; Identity Store UserName and primary email, and the Connect username on SAML.
    pub email: String,
    /// Connect `Username`.
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    /// `"First Last"`.
    pub display_name: String,
    pub identity_mode: IdentityMode,
    /// Names or ids, resolved later against the instance.
    pub routing_profile: String,
    pub security_profiles: Vec<String>,
    pub hierarchy_group: Option<String>,
    pub phone_type: PhoneType,
    pub desk_phone_number: Option<String>,
    pub auto_accept: bool,
    pub acw_timeout: i32,
    pub secondary_email: Option<String>,
    pub mobile: Option<String>,
    pub directory_user_id: Option<String>,
    /// Defaults merged with agent tags (agent wins).
    pub tags: BTreeMap<String, String>,
    /// CONNECT_MANAGED: the password must be supplied at run time (never stored).
    pub needs_password: bool,
    /// True only on CONNECT_MANAGED (`IdentityInfo.Email`); never on SAML/EXISTING_DIRECTORY.
    pub send_email_to_connect: bool,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One broken rule, e.g. `invalid desk_phone_number "12345": must be E.164, …`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {field} {value}: {rule}")]
pub struct FieldError {
    pub field: String,
    /// Already quoted/escaped with `{:?}`; for passwords `<redacted>`.
    pub value: String,
    pub rule: String,
}

impl FieldError {
    /// `value` is quoted here.
    pub fn new(field: impl Into<String>, value: &str, rule: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            value: format!("{value:?}"),
            rule: rule.into(),
        }
    }

    /// For secrets: the value is shown as `<redacted>`.
    pub fn redacted(field: impl Into<String>, rule: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            value: "<redacted>".to_string(),
            rule: rule.into(),
        }
    }
}

/// All the problems of one agent; Display prints one per line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn lines(errs: &[FieldError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
