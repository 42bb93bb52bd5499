//! The reusable field checks: each returns the violations of one AWS rule, with its limits.

use super::*;

// ---------------------------------------------------------------------------
// Reusable checks (also used by `config` for the [defaults] table)
// ---------------------------------------------------------------------------

pub(super) fn nchars(s: &str) -> usize {
    s.chars().count()
}

/// A `{:?}`-quoted, comma-separated list of characters for messages.
pub(super) fn list_chars(chars: &[char]) -> String {
    chars
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn distinct_offenders(s: &str, ok: impl Fn(char) -> bool) -> Vec<char> {
    let mut out: Vec<char> = Vec::new();
    for c in s.chars() {
        if !ok(c) && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// A broken rule with the *raw* value, from the checks shared with `config`
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
pub(super) fn tag_field(prefix: &str, key: &str) -> String {
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
