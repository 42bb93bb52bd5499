//! The agent being onboarded: raw input ([`AgentInput`]), the config defaults
//! ([`Defaults`]), and the validated, checkpointable result ([`AgentSpec`]).
//!
//! Every client-side rule lives here because the AWS Rust SDK validates
//! nothing (no lengths, patterns or enums; `CreateUserInputBuilder::build` just
//! copies fields), so a bad row would otherwise fail half-way through a
//! workflow, after the Connect user or the Identity Center user already exists.
//! The rules come from the botocore models of Connect `CreateUser` and Identity
//! Store `CreateUser` and from the identity-management rules of the instance
//! (see `aws-domain.md` §1.5 and §3):
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
//! any reader of tabular input must map empty cells to `None`.

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

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(EMAIL_PATTERN).unwrap());
// `\d` in the regex crate is Unicode; AWS means ASCII digits.
static E164_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\+[1-9][0-9]{1,14}$").unwrap());
static CONNECT_USERNAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.@-]+$").unwrap());
static IDS_USERNAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{M}\p{S}\p{N}\p{P}]+$").unwrap());
static IDS_STRING_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{M}\p{S}\p{N}\p{P}\t\n\r \x{a0}\x{3000}]+$").unwrap());
/// The model's tag-key pattern without its `(?!aws:)` lookahead (checked separately).
static TAG_KEY_CHARS_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").unwrap());

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

// ---------------------------------------------------------------------------
// Reusable checks (also used by config.rs for the [defaults] table)
// ---------------------------------------------------------------------------

fn nchars(s: &str) -> usize {
    s.chars().count()
}

/// A `{:?}`-quoted, comma-separated list of characters for messages.
fn list_chars(chars: &[char]) -> String {
    chars
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn distinct_offenders(s: &str, ok: impl Fn(char) -> bool) -> Vec<char> {
    let mut out: Vec<char> = Vec::new();
    for c in s.chars() {
        if !ok(c) && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// A broken rule with the *raw* value, from the checks shared with config.rs
/// (which quotes values itself). Converts into a [`FieldError`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Violation {
    pub field: String,
    pub raw: String,
    pub rule: String,
}

impl Violation {
    fn new(field: impl Into<String>, raw: &str, rule: impl Into<String>) -> Self {
        Violation {
            field: field.into(),
            raw: raw.to_string(),
            rule: rule.into(),
        }
    }
}

impl From<Violation> for FieldError {
    fn from(v: Violation) -> Self {
        FieldError::new(v.field, &v.raw, v.rule)
    }
}

/// `Administrator` / `AWSAdministrators` (compared case-insensitively).
pub(crate) fn is_reserved_identity_store_name(name: &str) -> bool {
    RESERVED_IDENTITY_STORE_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name.trim()))
}

/// Identity Store `UserName`: 1..128 chars of `[\p{L}\p{M}\p{S}\p{N}\p{P}]+`, not reserved.
pub(crate) fn check_identity_store_username(field: &str, value: &str) -> Vec<Violation> {
    let mut errs = Vec::new();
    let n = nchars(value);
    if n == 0 || n > IDENTITY_STORE_USERNAME_MAX_CHARS {
        errs.push(Violation::new(
            field,
            value,
            format!(
                "as the IAM Identity Center UserName it must be 1 to {IDENTITY_STORE_USERNAME_MAX_CHARS} characters, got {n}"
            ),
        ));
    }
    if n > 0 && !IDS_USERNAME_RE.is_match(value) {
        let bad = distinct_offenders(value, |c| {
            let mut b = [0u8; 4];
            IDS_USERNAME_RE.is_match(c.encode_utf8(&mut b))
        });
        errs.push(Violation::new(
            field,
            value,
            format!(
                "as the IAM Identity Center UserName it must not contain whitespace or control characters (pattern {IDS_USERNAME_PATTERN}); found {}",
                list_chars(&bad)
            ),
        ));
    }
    if is_reserved_identity_store_name(value) {
        errs.push(Violation::new(
            field,
            value,
            "\"Administrator\" and \"AWSAdministrators\" are reserved IAM Identity Center names",
        ));
    }
    errs
}

/// Identity Store name strings (GivenName, FamilyName, DisplayName):
/// 1..1024 chars of `[\p{L}\p{M}\p{S}\p{N}\p{P}\t\n\r \u00a0\u3000]+`.
pub(crate) fn check_identity_store_string(field: &str, value: &str) -> Vec<Violation> {
    let mut errs = Vec::new();
    let n = nchars(value);
    if n == 0 || n > IDENTITY_STORE_STRING_MAX_CHARS {
        errs.push(Violation::new(
            field,
            value,
            format!(
                "IAM Identity Center allows 1 to {IDENTITY_STORE_STRING_MAX_CHARS} characters here, got {n}"
            ),
        ));
    }
    if n > 0 && !IDS_STRING_RE.is_match(value) {
        let bad = distinct_offenders(value, |c| {
            let mut b = [0u8; 4];
            IDS_STRING_RE.is_match(c.encode_utf8(&mut b))
        });
        errs.push(Violation::new(
            field,
            value,
            format!(
                "contains characters IAM Identity Center rejects (allowed: letters, marks, symbols, numbers, punctuation, space, tab, newline, no-break and ideographic space; pattern {IDS_STRING_PATTERN}); found {}",
                list_chars(&bad)
            ),
        ));
    }
    errs
}

/// E.164 phone number (`^\+[1-9]\d{1,14}$`).
pub(crate) fn check_e164(field: &str, value: &str) -> Result<(), Violation> {
    if E164_RE.is_match(value) {
        Ok(())
    } else {
        Err(Violation::new(field, value, E164_RULE))
    }
}

/// Phone type vs desk phone number: desk needs an E.164 number; soft must not have one.
pub(crate) fn check_phone(
    phone_type: PhoneType,
    desk_phone_number: Option<&str>,
) -> Result<Option<String>, Violation> {
    match (phone_type, desk_phone_number.map(str::trim)) {
        (PhoneType::Desk, None) => Err(Violation::new(
            "desk_phone_number",
            "",
            "required when phone_type is \"desk\" (Connect rings this number for DESK_PHONE agents); give an E.164 number such as \"+15555550100\"",
        )),
        (PhoneType::Desk, Some(n)) => check_e164("desk_phone_number", n).map(|()| Some(n.to_string())),
        (PhoneType::Soft, None) => Ok(None),
        (PhoneType::Soft, Some(n)) => Err(Violation::new(
            "desk_phone_number",
            n,
            "only used with phone_type \"desk\" (DESK_PHONE); this agent has phone_type \"soft\" (SOFT_PHONE, the browser softphone), so set phone_type = desk or drop the number",
        )),
    }
}

/// `AfterContactWorkTimeLimit`: 0..=2,000,000 seconds.
pub(crate) fn check_acw_timeout(field: &str, secs: i64) -> Result<i32, Violation> {
    if (0..=ACW_TIMEOUT_MAX_SECS).contains(&secs) {
        Ok(secs as i32)
    } else {
        Err(Violation::new(
            field,
            &secs.to_string(),
            format!(
                "must be 0 to {ACW_TIMEOUT_MAX_SECS} seconds (Connect AfterContactWorkTimeLimit; 0 = no limit)"
            ),
        ))
    }
}

/// Security profiles: each trimmed and non-empty, 1..=10 entries, no case-insensitive duplicates.
pub(crate) fn check_security_profiles(
    field: &str,
    profiles: &[String],
) -> Result<Vec<String>, Vec<Violation>> {
    let mut errs = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for p in profiles {
        let t = p.trim();
        if t.is_empty() {
            errs.push(Violation::new(
                field,
                p,
                "each security profile must be a non-empty name or id",
            ));
        } else if out.iter().any(|o| o.to_lowercase() == t.to_lowercase()) {
            errs.push(Violation::new(
                field,
                t,
                "listed more than once (security profile names are compared case-insensitively)",
            ));
        } else {
            out.push(t.to_string());
        }
    }
    if profiles.is_empty() || profiles.len() > SECURITY_PROFILES_MAX {
        errs.push(Violation::new(
            field,
            &format!("{profiles:?}"),
            format!(
                "must list 1 to {SECURITY_PROFILES_MAX} security profiles (Connect SecurityProfileIds), got {}",
                profiles.len()
            ),
        ));
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// `tags["key"]` (the key quoted like every other value).
fn tag_field(prefix: &str, key: &str) -> String {
    format!("{prefix}[{key:?}]")
}

/// Connect `TagMap`: 0 (omitted) or 1..=50 pairs; key 1..128, not `aws:`-prefixed,
/// chars `[\p{L}\p{Z}\p{N}_.:/=+\-@]`; value 0..256. `field` is `tags` or `defaults.tags`.
pub(crate) fn check_tags(field: &str, tags: &BTreeMap<String, String>) -> Vec<Violation> {
    let mut errs = Vec::new();
    if tags.len() > TAGS_MAX {
        errs.push(Violation::new(
            field,
            &format!("{} tags", tags.len()),
            format!("at most {TAGS_MAX} tags per Connect user (defaults and agent tags together)"),
        ));
    }
    for (k, v) in tags {
        let f = tag_field(field, k);
        let kn = nchars(k);
        if kn == 0 || kn > TAG_KEY_MAX_CHARS {
            errs.push(Violation::new(
                &f,
                k,
                format!("tag keys must be 1 to {TAG_KEY_MAX_CHARS} characters, got {kn}"),
            ));
        }
        if k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            errs.push(Violation::new(
                &f,
                k,
                format!("tag keys must not start with \"aws:\", which is reserved for AWS (pattern {TAG_KEY_PATTERN})"),
            ));
        }
        if !TAG_KEY_CHARS_RE.is_match(k) {
            let bad = distinct_offenders(k, |c| {
                let mut b = [0u8; 4];
                TAG_KEY_CHARS_RE.is_match(c.encode_utf8(&mut b))
            });
            errs.push(Violation::new(
                &f,
                k,
                format!(
                    "tag keys may contain only letters, numbers, spaces and _ . : / = + - @ (pattern {TAG_KEY_PATTERN}); found {}",
                    list_chars(&bad)
                ),
            ));
        }
        let vn = nchars(v);
        if vn > TAG_VALUE_MAX_CHARS {
            errs.push(Violation::new(
                &f,
                v,
                format!("tag values must be at most {TAG_VALUE_MAX_CHARS} characters, got {vn}"),
            ));
        }
    }
    errs
}

/// Connect's password pattern `^(?=.*[a-z])(?=.*[A-Z])(?=.*\d)[a-zA-Z\d\S]{8,64}$`,
/// implemented without lookahead: 8..64 characters, at least one ASCII lower-case
/// letter, one upper-case letter and one digit, no whitespace.
pub fn check_password(p: &Secret) -> Result<(), FieldError> {
    let s = p.expose();
    let n = nchars(s);
    let mut problems: Vec<String> = Vec::new();
    if !(8..=64).contains(&n) {
        problems.push(format!("it has {n} characters"));
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        problems.push("it has no lower-case letter a-z".into());
    }
    if !s.chars().any(|c| c.is_ascii_uppercase()) {
        problems.push("it has no upper-case letter A-Z".into());
    }
    if !s.chars().any(|c| c.is_ascii_digit()) {
        problems.push("it has no digit 0-9".into());
    }
    if s.chars().any(char::is_whitespace) {
        problems.push("it contains whitespace".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(FieldError::redacted(
            "password",
            format!(
                "must be 8 to 64 characters with at least one lower-case letter, one upper-case letter and one digit, and no whitespace (Connect pattern {PASSWORD_PATTERN}); {}",
                problems.join(", ")
            ),
        ))
    }
}

// ---------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------

/// Trim an optional field; a present-but-blank value is an error (omit it instead).
fn opt_nonblank(field: &str, v: &Option<String>, errs: &mut Vec<FieldError>) -> Option<String> {
    let v = v.as_ref()?;
    let t = v.trim();
    if t.is_empty() {
        errs.push(FieldError::new(
            field,
            v,
            "must not be empty when given; omit the field instead",
        ));
        None
    } else {
        Some(t.to_string())
    }
}

/// Primary email: trim + lower-case, required, Connect email pattern, ≤265, and
/// a valid Identity Store UserName. Returns the normalised email if all pass.
fn validate_email(raw: &str, errs: &mut Vec<FieldError>) -> Option<String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        errs.push(FieldError::new(
            "email",
            raw,
            "required: the email is the agent's IAM Identity Center UserName and primary email (and the Connect username on SAML)",
        ));
        return None;
    }
    let before = errs.len();
    let n = nchars(&email);
    if n > EMAIL_MAX_CHARS {
        errs.push(FieldError::new(
            "email",
            &email,
            format!("must be at most {EMAIL_MAX_CHARS} characters, got {n}"),
        ));
    } else {
        errs.extend(
            (check_identity_store_username("email", &email))
                .into_iter()
                .map(FieldError::from),
        );
    }
    if !EMAIL_RE.is_match(&email) {
        errs.push(FieldError::new(
            "email",
            &email,
            format!("must be an email address such as agent@example.com (pattern {EMAIL_PATTERN})"),
        ));
    }
    (errs.len() == before).then_some(email)
}

fn validate_secondary_email(v: &Option<String>, errs: &mut Vec<FieldError>) -> Option<String> {
    let e = opt_nonblank("secondary_email", v, errs)?;
    let n = nchars(&e);
    let mut ok = true;
    if n > EMAIL_MAX_CHARS {
        errs.push(FieldError::new(
            "secondary_email",
            &e,
            format!("must be at most {EMAIL_MAX_CHARS} characters, got {n}"),
        ));
        ok = false;
    }
    if !EMAIL_RE.is_match(&e) {
        errs.push(FieldError::new(
            "secondary_email",
            &e,
            format!("must be an email address such as agent@example.com (pattern {EMAIL_PATTERN})"),
        ));
        ok = false;
    }
    ok.then_some(e)
}

/// The Connect username for the mode. `email_norm` is the trimmed, lower-cased
/// email; when `email_ok` is false it was already reported and no checks derived
/// from it are made (to avoid duplicate noise).
fn validate_username(
    given: &Option<String>,
    email_norm: &str,
    email_ok: bool,
    mode: IdentityMode,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    match mode {
        IdentityMode::Saml => {
            let before = errs.len();
            if let Some(g) = given {
                if !email_norm.is_empty() && g.trim().to_lowercase() != email_norm {
                    errs.push(FieldError::new(
                        "username",
                        g,
                        format!(
                            "must equal the email {email_norm:?} on a SAML instance (SAML sign-in needs Connect username == RoleSessionName == the Identity Center user's email); omit --username"
                        ),
                    ));
                }
            }
            if !email_ok {
                return None;
            }
            let e = email_norm;
            let n = nchars(e);
            if !(SAML_USERNAME_MIN_CHARS..=SAML_USERNAME_MAX_CHARS).contains(&n) {
                errs.push(FieldError::new(
                    "email",
                    e,
                    format!(
                        "on a SAML instance the email is also the Connect username, which must be {SAML_USERNAME_MIN_CHARS} to {SAML_USERNAME_MAX_CHARS} characters (Connect SAML username and IAM RoleSessionName limit), got {n}"
                    ),
                ));
            }
            let bad = distinct_offenders(e, |c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
            if !bad.is_empty() {
                let why_plus = if bad.contains(&'+') {
                    "; '+' is not in Connect's SAML username character set, and on SAML the username cannot differ from the email (it must equal the RoleSessionName sent at sign-in), so a '+' address cannot sign in: use the agent's plain address"
                } else {
                    ""
                };
                errs.push(FieldError::new(
                    "email",
                    e,
                    format!(
                        "on a SAML instance the email is also the Connect username, which may contain only {CONNECT_USERNAME_CHARSET} (Connect SAML username ∩ IAM RoleSessionName); found {}{why_plus}",
                        list_chars(&bad)
                    ),
                ));
            }
            (errs.len() == before).then(|| e.to_string())
        }
        IdentityMode::ConnectManaged | IdentityMode::ExistingDirectory => {
            let (u, defaulted) = match given {
                Some(g) => {
                    let t = g.trim();
                    if t.is_empty() {
                        errs.push(FieldError::new(
                            "username",
                            g,
                            "must not be empty when given; omit it to use the email",
                        ));
                        return None;
                    }
                    (t.to_string(), false)
                }
                None if email_ok => (email_norm.to_string(), true),
                None => return None,
            };
            let before = errs.len();
            let n = nchars(&u);
            if n > NON_SAML_USERNAME_MAX_CHARS {
                let hint = if defaulted {
                    " (it defaults to the email); give a shorter one with --username"
                } else {
                    ""
                };
                errs.push(FieldError::new(
                    "username",
                    &u,
                    format!(
                        "must be at most {NON_SAML_USERNAME_MAX_CHARS} characters on a {mode} instance (Connect's limit for non-SAML usernames), got {n}{hint}"
                    ),
                ));
            }
            if !CONNECT_USERNAME_RE.is_match(&u) {
                let bad =
                    distinct_offenders(&u, |c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
                errs.push(FieldError::new(
                    "username",
                    &u,
                    format!(
                        "may contain only {CONNECT_USERNAME_CHARSET}; found {}",
                        list_chars(&bad)
                    ),
                ));
            } else if u.contains('@') && !EMAIL_RE.is_match(&u) {
                errs.push(FieldError::new(
                    "username",
                    &u,
                    "may contain '@' only in email form (\"testuser@example.com\" is fine, \"testuser@example\" is not)",
                ));
            }
            (errs.len() == before).then_some(u)
        }
    }
}

fn validate_name(
    field: &str,
    raw: &str,
    max: usize,
    mode: IdentityMode,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    let v = raw.trim();
    if v.is_empty() {
        errs.push(FieldError::new(
            field,
            raw,
            "required: IAM Identity Center needs GivenName and FamilyName, and Connect needs them on SAML and CONNECT_MANAGED instances",
        ));
        return None;
    }
    let before = errs.len();
    if !is_nfc(v) {
        let nfc: String = v.nfc().collect();
        errs.push(FieldError::new(
            field,
            v,
            format!(
                "must be in Unicode NFC form (Connect rejects non-NFC names); its NFC form is {nfc:?}"
            ),
        ));
    }
    let n = nchars(v);
    if n > max {
        errs.push(FieldError::new(
            field,
            v,
            format!("must be 1 to {max} characters on a {mode} instance (Connect limit), got {n}"),
        ));
    }
    errs.extend(
        (check_identity_store_string(field, v))
            .into_iter()
            .map(FieldError::from),
    );
    (errs.len() == before).then(|| v.to_string())
}

/// Validate one agent against the rules of the instance's identity `mode`,
/// applying `defaults`. Collects all errors.
pub fn validate(
    input: &AgentInput,
    defaults: &Defaults,
    mode: IdentityMode,
) -> Result<AgentSpec, ValidationErrors> {
    let mut errs: Vec<FieldError> = Vec::new();

    let email = validate_email(&input.email, &mut errs);
    let email_norm = input.email.trim().to_lowercase();
    let username = validate_username(
        &input.username,
        &email_norm,
        email.is_some(),
        mode,
        &mut errs,
    );

    let (first_max, last_max) = match mode {
        IdentityMode::Saml | IdentityMode::ExistingDirectory => (255, 300),
        IdentityMode::ConnectManaged => (255, 256),
    };
    let first = validate_name("first_name", &input.first_name, first_max, mode, &mut errs);
    let last = validate_name("last_name", &input.last_name, last_max, mode, &mut errs);
    let display_name = match (&first, &last) {
        (Some(f), Some(l)) => {
            let d = format!("{f} {l}");
            let e = check_identity_store_string("display_name", &d);
            if e.is_empty() {
                Some(d)
            } else {
                errs.extend((e).into_iter().map(FieldError::from));
                None
            }
        }
        _ => None,
    };

    // Password
    match (mode, &input.password) {
        (IdentityMode::Saml, Some(_)) => errs.push(FieldError::redacted(
            "password",
            "the instance uses SAML: Connect rejects a password (agents sign in through IAM Identity Center)",
        )),
        (IdentityMode::ExistingDirectory, Some(_)) => errs.push(FieldError::redacted(
            "password",
            "the instance uses EXISTING_DIRECTORY: Connect rejects a password (agents sign in with their directory credentials)",
        )),
        (IdentityMode::ConnectManaged, Some(p)) => {
            if let Err(e) = check_password(p) {
                errs.push(e);
            }
        }
        _ => {}
    }

    // DirectoryUserId
    let directory_user_id = opt_nonblank("directory_user_id", &input.directory_user_id, &mut errs);
    if let (Some(d), true) = (&directory_user_id, mode != IdentityMode::ExistingDirectory) {
        errs.push(FieldError::new(
            "directory_user_id",
            d,
            format!(
                "only allowed on an EXISTING_DIRECTORY instance; this instance uses {mode}, where Connect returns an error if DirectoryUserId is included"
            ),
        ));
    }

    let secondary_email = validate_secondary_email(&input.secondary_email, &mut errs);

    let mobile = opt_nonblank("mobile", &input.mobile, &mut errs);
    if let Some(m) = &mobile {
        if let Err(e) = check_e164("mobile", m) {
            errs.push(e.into());
        }
    }

    // Phone
    let phone_type = input.phone_type.unwrap_or(defaults.phone_type);
    let desk_raw = input.desk_phone_number.as_deref();
    let desk_phone_number = match desk_raw {
        Some(d) if d.trim().is_empty() => {
            // Blank counts as "not given" for the desk/soft rule, but say so.
            match check_phone(phone_type, None) {
                Ok(n) => {
                    errs.push(FieldError::new(
                        "desk_phone_number",
                        d,
                        "must not be empty when given; omit the field instead",
                    ));
                    n
                }
                Err(e) => {
                    errs.push(e.into());
                    None
                }
            }
        }
        _ => match check_phone(phone_type, desk_raw) {
            Ok(n) => n,
            Err(e) => {
                errs.push(e.into());
                None
            }
        },
    };

    let auto_accept = input.auto_accept.unwrap_or(defaults.auto_accept);
    let acw_timeout = match check_acw_timeout(
        "acw_timeout",
        input.acw_timeout.unwrap_or(defaults.acw_timeout),
    ) {
        Ok(v) => v,
        Err(e) => {
            errs.push(e.into());
            0
        }
    };

    // Security profiles
    let sp_source: &[String] = if input.security_profiles.is_empty() {
        &defaults.security_profiles
    } else {
        &input.security_profiles
    };
    let security_profiles = match check_security_profiles("security_profiles", sp_source) {
        Ok(v) => v,
        Err(e) => {
            errs.extend((e).into_iter().map(FieldError::from));
            Vec::new()
        }
    };

    // Routing profile
    let routing_profile = match &input.routing_profile {
        Some(r) => opt_nonblank("routing_profile", &Some(r.clone()), &mut errs).unwrap_or_default(),
        None => {
            let d = defaults.routing_profile.trim();
            if d.is_empty() {
                errs.push(FieldError::new(
                    "routing_profile",
                    &defaults.routing_profile,
                    "required: give a routing profile name or id (none given and the configured default is empty)",
                ));
            }
            d.to_string()
        }
    };

    let hierarchy_group = if input.hierarchy_group.is_some() {
        opt_nonblank("hierarchy_group", &input.hierarchy_group, &mut errs)
    } else {
        opt_nonblank("hierarchy_group", &defaults.hierarchy_group, &mut errs)
    };

    // Tags: defaults, then the agent's own (agent wins); duplicates within the agent's list are errors.
    let mut tags = defaults.tags.clone();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in &input.tags {
        if seen.contains(&k.as_str()) {
            errs.push(FieldError::new(
                tag_field("tags", k),
                k,
                "tag key given more than once for this agent",
            ));
            continue;
        }
        seen.push(k);
        tags.insert(k.clone(), v.clone());
    }
    errs.extend(
        (check_tags("tags", &tags))
            .into_iter()
            .map(FieldError::from),
    );

    if !errs.is_empty() {
        return Err(ValidationErrors(errs));
    }
    let email = email.expect("no errors implies a valid email");
    Ok(AgentSpec {
        email,
        username: username.expect("no errors implies a valid username"),
        first_name: first.expect("no errors implies a first name"),
        last_name: last.expect("no errors implies a last name"),
        display_name: display_name.expect("no errors implies a display name"),
        identity_mode: mode,
        routing_profile,
        security_profiles,
        hierarchy_group,
        phone_type,
        desk_phone_number,
        auto_accept,
        acw_timeout,
        secondary_email,
        mobile,
        directory_user_id,
        tags,
        needs_password: mode == IdentityMode::ConnectManaged,
        send_email_to_connect: mode == IdentityMode::ConnectManaged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_MODES: [IdentityMode; 3] = [
        IdentityMode::Saml,
        IdentityMode::ConnectManaged,
        IdentityMode::ExistingDirectory,
    ];

    fn input(email: &str) -> AgentInput {
        AgentInput {
            email: email.to_string(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            ..Default::default()
        }
    }

    fn ok(i: &AgentInput, mode: IdentityMode) -> AgentSpec {
        match validate(i, &Defaults::default(), mode) {
            Ok(s) => s,
            Err(e) => panic!("expected valid on {mode}, got:\n{e}"),
        }
    }

    fn errors(i: &AgentInput, mode: IdentityMode) -> Vec<FieldError> {
        errors_with(i, &Defaults::default(), mode)
    }

    fn errors_with(i: &AgentInput, d: &Defaults, mode: IdentityMode) -> Vec<FieldError> {
        match validate(i, d, mode) {
            Ok(s) => panic!("expected errors on {mode}, got {s:?}"),
            Err(ValidationErrors(v)) => v,
        }
    }

    /// Asserts an error naming `field`, the (unquoted) `value`, and a rule containing `rule`;
    /// also that its Display names all three.
    #[track_caller]
    fn expect(errs: &[FieldError], field: &str, value: &str, rule: &str) {
        let quoted = format!("{value:?}");
        let hit = errs
            .iter()
            .find(|e| e.field == field && e.value == quoted && e.rule.contains(rule));
        match hit {
            Some(e) => {
                let shown = e.to_string();
                assert!(
                    shown.starts_with(&format!("invalid {field} {quoted}: ")),
                    "{shown}"
                );
                assert!(shown.contains(rule), "{shown}");
            }
            None => panic!("no error {field} {quoted} containing {rule:?} in:\n{errs:#?}"),
        }
    }

    // ----- enums, secret, defaults -----

    #[test]
    fn phone_type_parses_both_spellings_case_insensitively() {
        for s in ["soft", "SOFT", "Soft", "SOFT_PHONE", "soft_phone"] {
            assert_eq!(s.parse::<PhoneType>().unwrap(), PhoneType::Soft, "{s}");
        }
        for s in ["desk", "DESK", "DESK_PHONE", "Desk_Phone"] {
            assert_eq!(s.parse::<PhoneType>().unwrap(), PhoneType::Desk, "{s}");
        }
        let e = "mobile".parse::<PhoneType>().unwrap_err();
        assert!(
            e.contains("\"mobile\"") && e.contains("soft") && e.contains("desk"),
            "{e}"
        );
        assert_eq!(PhoneType::Soft.as_aws(), "SOFT_PHONE");
        assert_eq!(PhoneType::Desk.as_aws(), "DESK_PHONE");
        assert_eq!(serde_json::to_string(&PhoneType::Desk).unwrap(), "\"desk\"");
    }

    #[test]
    fn identity_mode_uses_describe_instance_strings() {
        for (s, m) in [
            ("SAML", IdentityMode::Saml),
            ("CONNECT_MANAGED", IdentityMode::ConnectManaged),
            ("EXISTING_DIRECTORY", IdentityMode::ExistingDirectory),
        ] {
            assert_eq!(s.parse::<IdentityMode>().unwrap(), m);
            assert_eq!(m.to_string(), s);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{s}\""));
        }
        assert!("LDAP"
            .parse::<IdentityMode>()
            .unwrap_err()
            .contains("\"LDAP\""));
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("Hunter2Hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose(), "Hunter2Hunter2");
        let mut i = input("a@example.com");
        i.password = Some(s);
        assert!(!format!("{i:?}").contains("Hunter2"));
    }

    #[test]
    fn defaults_have_documented_values_and_reject_unknown_keys() {
        let d = Defaults::default();
        assert_eq!(d.routing_profile, "Basic Routing Profile");
        assert_eq!(d.security_profiles, vec!["Agent".to_string()]);
        assert_eq!(d.hierarchy_group, None);
        assert_eq!(d.phone_type, PhoneType::Soft);
        assert!(!d.auto_accept);
        assert_eq!(d.acw_timeout, 0);
        assert!(d.tags.is_empty());
        let partial: Defaults = toml::from_str("phone_type = \"desk\"").unwrap();
        assert_eq!(partial.phone_type, PhoneType::Desk);
        assert_eq!(partial.routing_profile, "Basic Routing Profile");
        let e = toml::from_str::<Defaults>("routing = \"x\"").unwrap_err();
        assert!(e.to_string().contains("routing"), "{e}");
    }

    // ----- happy paths -----

    #[test]
    fn saml_agent_uses_normalised_email_everywhere() {
        let s = ok(&input("  Jane.Doe@Example.COM "), IdentityMode::Saml);
        assert_eq!(s.email, "jane.doe@example.com");
        assert_eq!(s.username, "jane.doe@example.com");
        assert_eq!(s.display_name, "Jane Doe");
        assert_eq!(s.identity_mode, IdentityMode::Saml);
        assert!(!s.needs_password);
        assert!(!s.send_email_to_connect);
        assert_eq!(s.routing_profile, "Basic Routing Profile");
        assert_eq!(s.security_profiles, vec!["Agent".to_string()]);
        assert_eq!(s.phone_type, PhoneType::Soft);
        assert_eq!(s.desk_phone_number, None);
        assert_eq!(s.acw_timeout, 0);
        assert!(s.tags.is_empty());
        // A given username equal to the email after normalisation is accepted.
        let mut i = input("jane@example.com");
        i.username = Some(" JANE@example.com".into());
        assert_eq!(ok(&i, IdentityMode::Saml).username, "jane@example.com");
    }

    #[test]
    fn connect_managed_agent_needs_password_and_sends_email() {
        let mut i = input("jane@example.com");
        i.username = Some("jdoe".into());
        let s = ok(&i, IdentityMode::ConnectManaged);
        assert_eq!(s.username, "jdoe");
        assert!(s.needs_password);
        assert!(s.send_email_to_connect);
        i.password = Some(Secret::new("Passw0rdOK".into()));
        assert!(ok(&i, IdentityMode::ConnectManaged).needs_password);
        let ed = ok(&input("jane@example.com"), IdentityMode::ExistingDirectory);
        assert!(!ed.needs_password && !ed.send_email_to_connect);
        assert_eq!(ed.username, "jane@example.com");
    }

    #[test]
    fn spec_round_trips_through_json_without_secrets() {
        let mut i = input("jane@example.com");
        i.password = Some(Secret::new("Sup3rSecretPw".into()));
        i.tags = vec![("team".into(), "a".into())];
        let s = ok(&i, IdentityMode::ConnectManaged);
        let j = serde_json::to_string(&s).unwrap();
        assert!(!j.contains("Sup3rSecretPw"));
        assert!(j.contains("\"identity_mode\":\"CONNECT_MANAGED\""), "{j}");
        assert_eq!(serde_json::from_str::<AgentSpec>(&j).unwrap(), s);
    }

    #[test]
    fn all_errors_are_collected_and_displayed_one_per_line() {
        let i = AgentInput {
            mobile: Some("555".into()),
            acw_timeout: Some(-1),
            ..Default::default()
        };
        let e = validate(&i, &Defaults::default(), IdentityMode::Saml).unwrap_err();
        for f in ["email", "first_name", "last_name", "mobile", "acw_timeout"] {
            assert!(e.0.iter().any(|x| x.field == f), "missing {f}: {e}");
        }
        let shown = e.to_string();
        assert_eq!(shown.lines().count(), e.0.len(), "{shown}");
        assert!(shown.lines().all(|l| l.starts_with("invalid ")), "{shown}");
    }

    // ----- email -----

    #[test]
    fn email_is_required() {
        for m in ALL_MODES {
            expect(&errors(&input("   "), m), "email", "   ", "required");
        }
    }

    #[test]
    fn email_must_match_the_pattern() {
        for bad in [
            "jane",
            "jane@example",
            "jane@example.c",
            "ja ne@example.com",
            "jane@exa_mple.com",
        ] {
            let errs = errors(&input(bad), IdentityMode::Saml);
            expect(
                &errs,
                "email",
                &bad.to_lowercase(),
                "pattern ^[a-zA-Z0-9._%+-]+@",
            );
        }
    }

    #[test]
    fn email_is_at_most_265_characters() {
        let long = format!("{}@example.com", "a".repeat(260));
        let errs = errors(&input(&long), IdentityMode::ConnectManaged);
        expect(&errs, "email", &long, "at most 265 characters, got 272");
    }

    #[test]
    fn email_is_at_most_128_characters_as_identity_store_username() {
        let e = format!("{}@example.com", "a".repeat(117)); // 129 chars
        let errs = errors(&input(&e), IdentityMode::ExistingDirectory);
        expect(
            &errs,
            "email",
            &e,
            "IAM Identity Center UserName it must be 1 to 128 characters, got 129",
        );
        let e = format!("{}@example.com", "a".repeat(116)); // 128 chars
        let mut i = input(&e);
        i.username = Some("jdoe".into());
        ok(&i, IdentityMode::ConnectManaged);
    }

    #[test]
    fn identity_store_username_rules() {
        let v: Vec<FieldError> = check_identity_store_username("email", "a b")
            .into_iter()
            .map(Into::into)
            .collect();
        expect(&v, "email", "a b", "must not contain whitespace");
        for r in ["Administrator", "awsadministrators"] {
            let v: Vec<FieldError> = check_identity_store_username("email", r)
                .into_iter()
                .map(Into::into)
                .collect();
            expect(&v, "email", r, "reserved");
        }
        let v: Vec<FieldError> = check_identity_store_username("email", "")
            .into_iter()
            .map(Into::into)
            .collect();
        expect(&v, "email", "", "1 to 128");
        assert!(check_identity_store_username("email", "jane@example.com").is_empty());
    }

    // ----- username -----

    #[test]
    fn saml_username_must_equal_email() {
        let mut i = input("jane@example.com");
        i.username = Some("jdoe".into());
        let errs = errors(&i, IdentityMode::Saml);
        expect(
            &errs,
            "username",
            "jdoe",
            "must equal the email \"jane@example.com\" on a SAML instance",
        );
        expect(&errs, "username", "jdoe", "RoleSessionName");
        // The email's own SAML-username problems are still reported alongside.
        let mut i = input("jane+x@example.com");
        i.username = Some("jdoe".into());
        let errs = errors(&i, IdentityMode::Saml);
        expect(&errs, "username", "jdoe", "must equal the email");
        expect(&errs, "email", "jane+x@example.com", "found '+'");
    }

    #[test]
    fn saml_rejects_plus_in_email_and_says_why() {
        let errs = errors(&input("jane+connect@example.com"), IdentityMode::Saml);
        expect(&errs, "email", "jane+connect@example.com", "found '+'");
        expect(
            &errs,
            "email",
            "jane+connect@example.com",
            "'+' is not in Connect's SAML username character set",
        );
        expect(
            &errs,
            "email",
            "jane+connect@example.com",
            "RoleSessionName",
        );
        // Not a SAML rule: fine on CONNECT_MANAGED with a short username.
        let mut i = input("jane+connect@example.com");
        i.username = Some("jane".into());
        ok(&i, IdentityMode::ConnectManaged);
    }

    #[test]
    fn saml_username_is_at_most_64_characters() {
        let e = format!("{}@example.com", "a".repeat(53)); // 65
        let errs = errors(&input(&e), IdentityMode::Saml);
        expect(&errs, "email", &e, "2 to 64 characters");
        expect(&errs, "email", &e, "got 65");
        ok(
            &input(&format!("{}@example.com", "a".repeat(52))),
            IdentityMode::Saml,
        );
    }

    #[test]
    fn non_saml_username_is_at_most_20_characters_and_suggests_flag() {
        let e = "jane.doe.long@example.com"; // 25
        for m in [
            IdentityMode::ConnectManaged,
            IdentityMode::ExistingDirectory,
        ] {
            let errs = errors(&input(e), m);
            expect(&errs, "username", e, "at most 20 characters");
            expect(&errs, "username", e, "--username");
            expect(&errs, "username", e, &format!("on a {m} instance"));
        }
        let mut i = input(e);
        i.username = Some("a".repeat(21));
        let errs = errors(&i, IdentityMode::ConnectManaged);
        expect(&errs, "username", &"a".repeat(21), "at most 20 characters");
        i.username = Some("a".repeat(20));
        ok(&i, IdentityMode::ConnectManaged);
        ok(&input("j@example.com"), IdentityMode::ConnectManaged);
    }

    #[test]
    fn non_saml_username_charset() {
        let mut i = input("jane@example.com");
        i.username = Some("jane doe!".into());
        let errs = errors(&i, IdentityMode::ConnectManaged);
        expect(
            &errs,
            "username",
            "jane doe!",
            "may contain only [a-zA-Z0-9_\\-.@]; found ' ', '!'",
        );
        i.username = Some("Jane_D-o.e".into());
        assert_eq!(ok(&i, IdentityMode::ConnectManaged).username, "Jane_D-o.e");
    }

    #[test]
    fn non_saml_username_at_sign_only_in_email_form() {
        let mut i = input("jane@example.com");
        i.username = Some("jane@example".into());
        let errs = errors(&i, IdentityMode::ConnectManaged);
        expect(&errs, "username", "jane@example", "'@' only in email form");
        i.username = Some("j@example.com".into());
        ok(&i, IdentityMode::ConnectManaged);
        i.username = Some("  ".into());
        expect(
            &errors(&i, IdentityMode::ConnectManaged),
            "username",
            "  ",
            "must not be empty",
        );
    }

    // ----- names -----

    #[test]
    fn names_are_required_in_every_mode() {
        for m in ALL_MODES {
            let mut i = input("jane@example.com");
            i.username = Some("jane".into());
            i.first_name = " ".into();
            i.last_name = String::new();
            let errs = errors(&i, m);
            expect(&errs, "first_name", " ", "required");
            expect(&errs, "last_name", "", "required");
        }
        let mut i = input("jane@example.com");
        i.first_name = "  Jane ".into();
        assert_eq!(ok(&i, IdentityMode::Saml).first_name, "Jane");
    }

    #[test]
    fn names_must_already_be_nfc() {
        let decomposed = "Jose\u{301}"; // "José" as e + combining acute
        let mut i = input("jose@example.com");
        i.first_name = decomposed.into();
        let errs = errors(&i, IdentityMode::Saml);
        expect(
            &errs,
            "first_name",
            decomposed,
            "must be in Unicode NFC form",
        );
        expect(&errs, "first_name", decomposed, "\"Jos\u{e9}\"");
        i.first_name = "Jos\u{e9}".into();
        assert_eq!(ok(&i, IdentityMode::Saml).first_name, "Jos\u{e9}");
    }

    #[test]
    fn name_lengths_depend_on_the_mode() {
        let mut i = input("jane@example.com");
        i.username = Some("jane".into());
        i.first_name = "a".repeat(256);
        for m in ALL_MODES {
            expect(
                &errors(&i, m),
                "first_name",
                &"a".repeat(256),
                "must be 1 to 255 characters",
            );
        }
        i.first_name = "a".repeat(255);
        i.last_name = "b".repeat(257);
        expect(
            &errors(&i, IdentityMode::ConnectManaged),
            "last_name",
            &"b".repeat(257),
            "must be 1 to 256 characters on a CONNECT_MANAGED instance",
        );
        i.last_name = "b".repeat(256);
        ok(&i, IdentityMode::ConnectManaged);
        i.last_name = "b".repeat(257);
        i.username = None;
        ok(&i, IdentityMode::Saml);
        i.last_name = "b".repeat(301);
        expect(
            &errors(&i, IdentityMode::Saml),
            "last_name",
            &"b".repeat(301),
            "must be 1 to 300 characters on a SAML instance",
        );
        i.last_name = "b".repeat(300);
        ok(&i, IdentityMode::Saml);
    }

    #[test]
    fn names_must_fit_the_identity_store_pattern() {
        let mut i = input("jane@example.com");
        i.last_name = "Doe\u{2028}Smith".into(); // LINE SEPARATOR is not allowed
        expect(
            &errors(&i, IdentityMode::Saml),
            "last_name",
            "Doe\u{2028}Smith",
            "IAM Identity Center rejects",
        );
        i.last_name = "Doe\u{0}".into();
        expect(
            &errors(&i, IdentityMode::Saml),
            "last_name",
            "Doe\u{0}",
            "found '\\0'",
        );
        i.last_name = "O'Brien-Smith \u{3000}\u{a0}Jr.".into();
        ok(&i, IdentityMode::Saml);
    }

    #[test]
    fn identity_store_strings_are_at_most_1024_characters() {
        let v: Vec<FieldError> = check_identity_store_string("display_name", &"x".repeat(1025))
            .into_iter()
            .map(Into::into)
            .collect();
        expect(
            &v,
            "display_name",
            &"x".repeat(1025),
            "allows 1 to 1024 characters here, got 1025",
        );
        assert!(check_identity_store_string("display_name", &"x".repeat(1024)).is_empty());
    }

    // ----- password -----

    #[test]
    fn password_is_rejected_on_saml_and_existing_directory() {
        let mut i = input("jane@example.com");
        i.password = Some(Secret::new("Passw0rdOK".into()));
        let e = errors(&i, IdentityMode::Saml);
        let p = e
            .iter()
            .find(|e| e.field == "password")
            .expect("password error");
        assert_eq!(p.value, "<redacted>");
        assert!(
            p.rule
                .contains("the instance uses SAML: Connect rejects a password"),
            "{p}"
        );
        assert!(!p.to_string().contains("Passw0rdOK"));
        let e = errors(&i, IdentityMode::ExistingDirectory);
        let p = e
            .iter()
            .find(|e| e.field == "password")
            .expect("password error");
        assert_eq!(p.value, "<redacted>");
        assert!(p.rule.contains("EXISTING_DIRECTORY"), "{p}");
    }

    #[test]
    fn check_password_implements_connect_pattern() {
        let good = [
            "Passw0rd",
            "aB3!\u{e9}xyz",
            &format!("aB3{}", "x".repeat(61)),
        ];
        for g in good {
            assert!(check_password(&Secret::new(g.to_string())).is_ok(), "{g}");
        }
        let cases = [
            ("Pass0rd", "it has 7 characters"),
            (&*format!("aB3{}", "x".repeat(62)), "it has 65 characters"),
            ("PASSW0RD", "no lower-case letter"),
            ("passw0rd", "no upper-case letter"),
            ("Password", "no digit"),
            ("Pass w0rd", "whitespace"),
            ("Pass\tw0rd", "whitespace"),
        ];
        for (pw, why) in cases {
            let e = check_password(&Secret::new(pw.to_string())).unwrap_err();
            assert_eq!(e.field, "password");
            assert_eq!(e.value, "<redacted>");
            assert!(e.rule.contains(why), "{pw}: {e}");
            assert!(e.rule.contains("8 to 64 characters"), "{e}");
            assert!(!e.to_string().contains(pw), "{e}");
        }
    }

    #[test]
    fn connect_managed_checks_a_given_password() {
        let mut i = input("jane@example.com");
        i.password = Some(Secret::new("weak".into()));
        let e = errors(&i, IdentityMode::ConnectManaged);
        let p = e
            .iter()
            .find(|e| e.field == "password")
            .expect("password error");
        assert_eq!(p.value, "<redacted>");
        assert!(p.rule.contains("it has 4 characters"), "{p}");
    }

    // ----- other identity fields -----

    #[test]
    fn directory_user_id_only_on_existing_directory() {
        let mut i = input("jane@example.com");
        i.username = Some("jane".into());
        i.directory_user_id = Some("S-1-5-21".into());
        for m in [IdentityMode::Saml, IdentityMode::ConnectManaged] {
            expect(
                &errors(&i, m),
                "directory_user_id",
                "S-1-5-21",
                "only allowed on an EXISTING_DIRECTORY instance",
            );
        }
        let s = ok(&i, IdentityMode::ExistingDirectory);
        assert_eq!(s.directory_user_id.as_deref(), Some("S-1-5-21"));
    }

    #[test]
    fn secondary_email_pattern_and_length() {
        let mut i = input("jane@example.com");
        i.secondary_email = Some(" jane@home".into());
        expect(
            &errors(&i, IdentityMode::Saml),
            "secondary_email",
            "jane@home",
            "pattern ^[a-zA-Z0-9._%+-]+@",
        );
        let long = format!("{}@example.com", "a".repeat(253)); // 265 ok
        i.secondary_email = Some(long.clone());
        assert_eq!(ok(&i, IdentityMode::Saml).secondary_email, Some(long));
        let long = format!("{}@example.com", "a".repeat(254)); // 266
        i.secondary_email = Some(long.clone());
        expect(
            &errors(&i, IdentityMode::Saml),
            "secondary_email",
            &long,
            "at most 265 characters, got 266",
        );
        // '+' is fine in a secondary email even on SAML.
        i.secondary_email = Some("Jane+Alerts@Example.com ".into());
        assert_eq!(
            ok(&i, IdentityMode::Saml).secondary_email.as_deref(),
            Some("Jane+Alerts@Example.com")
        );
    }

    #[test]
    fn mobile_must_be_e164() {
        let mut i = input("jane@example.com");
        for bad in [
            "5555550100",
            "+05555550100",
            "+1",
            "+1234567890123456",
            "+1 555 555 0100",
            "+1555555010\u{665}",
        ] {
            i.mobile = Some(bad.into());
            expect(
                &errors(&i, IdentityMode::Saml),
                "mobile",
                bad,
                r"must be E.164, a '+' then 2 to 15 digits with no leading zero (pattern ^\+[1-9]\d{1,14}$)",
            );
        }
        i.mobile = Some("+15555550100".into());
        assert_eq!(
            ok(&i, IdentityMode::Saml).mobile.as_deref(),
            Some("+15555550100")
        );
    }

    #[test]
    fn blank_optional_fields_are_errors() {
        let mut i = input("jane@example.com");
        i.mobile = Some(" ".into());
        i.secondary_email = Some(String::new());
        i.hierarchy_group = Some("".into());
        i.routing_profile = Some(" ".into());
        let errs = errors(&i, IdentityMode::Saml);
        expect(&errs, "mobile", " ", "must not be empty");
        expect(&errs, "secondary_email", "", "must not be empty");
        expect(&errs, "hierarchy_group", "", "must not be empty");
        expect(&errs, "routing_profile", " ", "must not be empty");
    }

    // ----- phone -----

    #[test]
    fn desk_phone_requires_an_e164_number() {
        let mut i = input("jane@example.com");
        i.phone_type = Some(PhoneType::Desk);
        expect(
            &errors(&i, IdentityMode::Saml),
            "desk_phone_number",
            "",
            "required when phone_type is \"desk\"",
        );
        i.desk_phone_number = Some("12345".into());
        let errs = errors(&i, IdentityMode::Saml);
        expect(&errs, "desk_phone_number", "12345", "must be E.164");
        assert_eq!(
            errs.iter()
                .find(|e| e.field == "desk_phone_number")
                .unwrap()
                .to_string(),
            r#"invalid desk_phone_number "12345": must be E.164, a '+' then 2 to 15 digits with no leading zero (pattern ^\+[1-9]\d{1,14}$)"#
        );
        i.desk_phone_number = Some(" +442071234567 ".into());
        let s = ok(&i, IdentityMode::Saml);
        assert_eq!(s.phone_type, PhoneType::Desk);
        assert_eq!(s.desk_phone_number.as_deref(), Some("+442071234567"));
    }

    #[test]
    fn desk_phone_type_can_come_from_defaults() {
        let d = Defaults {
            phone_type: PhoneType::Desk,
            ..Defaults::default()
        };
        let i = input("jane@example.com");
        expect(
            &errors_with(&i, &d, IdentityMode::Saml),
            "desk_phone_number",
            "",
            "required",
        );
        let mut i = i;
        i.phone_type = Some(PhoneType::Soft);
        assert_eq!(
            validate(&i, &d, IdentityMode::Saml).unwrap().phone_type,
            PhoneType::Soft
        );
    }

    #[test]
    fn soft_phone_with_a_desk_number_is_an_error() {
        let mut i = input("jane@example.com");
        i.desk_phone_number = Some("+15555550100".into());
        expect(
            &errors(&i, IdentityMode::Saml),
            "desk_phone_number",
            "+15555550100",
            "only used with phone_type \"desk\"",
        );
    }

    #[test]
    fn acw_timeout_range() {
        let mut i = input("jane@example.com");
        for bad in [-1i64, 2_000_001, i64::MAX] {
            i.acw_timeout = Some(bad);
            expect(
                &errors(&i, IdentityMode::Saml),
                "acw_timeout",
                &bad.to_string(),
                "must be 0 to 2000000 seconds",
            );
        }
        i.acw_timeout = Some(2_000_000);
        assert_eq!(ok(&i, IdentityMode::Saml).acw_timeout, 2_000_000);
        let d = Defaults {
            acw_timeout: 120,
            auto_accept: true,
            ..Defaults::default()
        };
        let s = validate(&input("jane@example.com"), &d, IdentityMode::Saml).unwrap();
        assert_eq!((s.acw_timeout, s.auto_accept), (120, true));
        let mut i = input("jane@example.com");
        i.auto_accept = Some(false);
        assert!(!validate(&i, &d, IdentityMode::Saml).unwrap().auto_accept);
    }

    // ----- profiles -----

    #[test]
    fn security_profiles_default_count_and_duplicates() {
        let mut i = input("jane@example.com");
        i.security_profiles = vec![" Agent ".into(), "QA".into()];
        assert_eq!(
            ok(&i, IdentityMode::Saml).security_profiles,
            vec!["Agent", "QA"]
        );
        i.security_profiles = (0..11).map(|n| format!("p{n}")).collect();
        let errs = errors(&i, IdentityMode::Saml);
        let e = errs
            .iter()
            .find(|e| e.field == "security_profiles")
            .unwrap();
        assert!(
            e.rule.contains("must list 1 to 10 security profiles") && e.rule.contains("got 11"),
            "{e}"
        );
        i.security_profiles = vec!["Agent".into(), "agent".into()];
        expect(
            &errors(&i, IdentityMode::Saml),
            "security_profiles",
            "agent",
            "more than once",
        );
        i.security_profiles = vec!["Agent".into(), " ".into()];
        expect(
            &errors(&i, IdentityMode::Saml),
            "security_profiles",
            " ",
            "non-empty",
        );
        let d = Defaults {
            security_profiles: vec![],
            ..Defaults::default()
        };
        let errs = errors_with(&input("jane@example.com"), &d, IdentityMode::Saml);
        expect(&errs, "security_profiles", "[]", "got 0");
    }

    #[test]
    fn routing_profile_and_hierarchy_group_defaults() {
        let d = Defaults {
            routing_profile: "Support".into(),
            hierarchy_group: Some("Tier 1".into()),
            ..Defaults::default()
        };
        let s = validate(&input("jane@example.com"), &d, IdentityMode::Saml).unwrap();
        assert_eq!(s.routing_profile, "Support");
        assert_eq!(s.hierarchy_group.as_deref(), Some("Tier 1"));
        let mut i = input("jane@example.com");
        i.routing_profile = Some(" Sales ".into());
        i.hierarchy_group = Some("Tier 2".into());
        let s = validate(&i, &d, IdentityMode::Saml).unwrap();
        assert_eq!(
            (s.routing_profile.as_str(), s.hierarchy_group.as_deref()),
            ("Sales", Some("Tier 2"))
        );
        let d = Defaults {
            routing_profile: " ".into(),
            ..Defaults::default()
        };
        expect(
            &errors_with(&input("jane@example.com"), &d, IdentityMode::Saml),
            "routing_profile",
            " ",
            "required",
        );
    }

    // ----- tags -----

    #[test]
    fn tags_merge_defaults_and_agent_wins() {
        let d = Defaults {
            tags: BTreeMap::from([
                ("team".into(), "default".into()),
                ("site".into(), "lon".into()),
            ]),
            ..Defaults::default()
        };
        let mut i = input("jane@example.com");
        i.tags = vec![("team".into(), "blue".into()), ("x".into(), "".into())];
        let s = validate(&i, &d, IdentityMode::Saml).unwrap();
        assert_eq!(
            s.tags,
            BTreeMap::from([
                ("team".into(), "blue".into()),
                ("site".into(), "lon".into()),
                ("x".into(), "".into())
            ])
        );
    }

    #[test]
    fn duplicate_tag_key_in_agent_list_is_an_error() {
        let mut i = input("jane@example.com");
        i.tags = vec![("team".into(), "a".into()), ("team".into(), "b".into())];
        expect(
            &errors(&i, IdentityMode::Saml),
            "tags[\"team\"]",
            "team",
            "more than once",
        );
    }

    #[test]
    fn tag_key_rules() {
        let mut i = input("jane@example.com");
        i.tags = vec![("AWS:team".into(), "a".into())];
        expect(
            &errors(&i, IdentityMode::Saml),
            "tags[\"AWS:team\"]",
            "AWS:team",
            "must not start with \"aws:\"",
        );
        let k = "k".repeat(129);
        i.tags = vec![(k.clone(), "a".into())];
        expect(
            &errors(&i, IdentityMode::Saml),
            &format!("tags[{k:?}]"),
            &k,
            "1 to 128 characters, got 129",
        );
        i.tags = vec![("".into(), "a".into())];
        expect(
            &errors(&i, IdentityMode::Saml),
            "tags[\"\"]",
            "",
            "1 to 128 characters, got 0",
        );
        i.tags = vec![("team#1".into(), "a".into())];
        expect(
            &errors(&i, IdentityMode::Saml),
            "tags[\"team#1\"]",
            "team#1",
            "found '#'",
        );
        i.tags = vec![
            ("cost center/é:=+-@_.".into(), "a".into()),
            ("awsome".into(), "b".into()),
            ("abcé".into(), "a multi-byte char across byte 4".into()),
        ];
        ok(&i, IdentityMode::Saml);
    }

    #[test]
    fn tag_value_and_count_limits() {
        let mut i = input("jane@example.com");
        let v = "v".repeat(257);
        i.tags = vec![("team".into(), v.clone())];
        expect(
            &errors(&i, IdentityMode::Saml),
            "tags[\"team\"]",
            &v,
            "at most 256 characters, got 257",
        );
        i.tags = vec![("team".into(), "v".repeat(256))];
        ok(&i, IdentityMode::Saml);
        i.tags = (0..50).map(|n| (format!("k{n}"), "v".into())).collect();
        ok(&i, IdentityMode::Saml);
        let d = Defaults {
            tags: BTreeMap::from([("site".into(), "x".into())]),
            ..Defaults::default()
        };
        expect(
            &errors_with(&i, &d, IdentityMode::Saml),
            "tags",
            "51 tags",
            "at most 50 tags",
        );
    }
}
