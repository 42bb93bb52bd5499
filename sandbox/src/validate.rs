//! Field rules of the emulated APIs (the API References' "CreateUser" constraints and
//! the Connect Administrator Guide's identity-management rules), as pure functions.
//!
//! Each returns `Err(message)` with an AWS-style message; the service modules wrap
//! that in their own error code. Kept free of request plumbing so they are easy to
//! unit-test.

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::is_nfc;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in pattern {pattern}: {e}"))
}

static SAML_USERNAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-zA-Z0-9_\-.@]+$"));
static EMAIL_FORM: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-zA-Z0-9_\-.]+@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*\.[a-zA-Z]{2,63}$"));
static SECONDARY_EMAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,63}$"));
static E164: LazyLock<Regex> = LazyLock::new(|| re(r"^\+[1-9]\d{1,14}$"));
static TAG_KEY: LazyLock<Regex> = LazyLock::new(|| re(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$"));
static IDS_USER_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[\p{L}\p{M}\p{S}\p{N}\p{P}]+$"));
static IDS_TEXT: LazyLock<Regex> =
    LazyLock::new(|| re("^[\\p{L}\\p{M}\\p{S}\\p{N}\\p{P}\\t\\n\\r \u{a0}\u{3000}]+$"));
static IDENTITY_STORE_ID: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
});
static RESOURCE_ID: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^([0-9a-f]{10}-|)[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$",
    )
});
static SSO_INSTANCE_ARN: LazyLock<Regex> =
    LazyLock::new(|| re(r"^arn:aws(-[a-z]{1,5}){0,3}:sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}$"));
static SSO_APPLICATION_ARN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^arn:aws(-[a-z]{1,5}){0,3}:sso::\d{12}:application/(sso)?ins-[a-zA-Z0-9-.]{16}/apl-[a-zA-Z0-9]{16}$",
    )
});

/// Names reserved by IAM Identity Center for users and groups.
pub const RESERVED_IDS_NAMES: [&str; 2] = ["Administrator", "AWSAdministrators"];

type Check = Result<(), String>;

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Connect `Username` for an instance of the given identity management type.
pub fn connect_username(username: &str, identity_management_type: &str) -> Check {
    let n = char_len(username);
    if !(1..=100).contains(&n) {
        return Err(format!("Username must be 1..100 characters, got {n}"));
    }
    if identity_management_type == "SAML" {
        if n > 64 {
            return Err("On SAML instances the username must be at most 64 characters".into());
        }
        if !SAML_USERNAME.is_match(username) {
            return Err("On SAML instances the username may only contain [a-zA-Z0-9_-.@]".into());
        }
        if username.contains('@') && !EMAIL_FORM.is_match(username) {
            return Err("The username may only contain '@' when it is in email format".into());
        }
    }
    Ok(())
}

/// The Connect password pattern `^(?=.*[a-z])(?=.*[A-Z])(?=.*\d)[a-zA-Z\d\S]{8,64}$`,
/// written without look-ahead.
pub fn connect_password(password: &str) -> Check {
    let n = char_len(password);
    let ok = (8..=64).contains(&n)
        && !password.chars().any(char::is_whitespace)
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err("Password must be 8-64 characters with at least one lowercase letter, one uppercase letter and one number".into())
    }
}

/// FirstName / LastName: length bounds and NFC.
pub fn connect_name(field: &str, value: &str, min: usize, max: usize) -> Check {
    let n = char_len(value);
    if n < min || n > max {
        return Err(format!("{field} must be {min}..{max} characters, got {n}"));
    }
    if !is_nfc(value) {
        return Err(format!(
            "{field}: text containing characters in a non-NFC form is not accepted"
        ));
    }
    Ok(())
}

/// Connect `SecondaryEmail`.
pub fn secondary_email(value: &str) -> Check {
    if char_len(value) <= 265 && SECONDARY_EMAIL.is_match(value) {
        Ok(())
    } else {
        Err(format!(
            "SecondaryEmail {value:?} is not a valid email address"
        ))
    }
}

/// E.164 phone numbers (`Mobile`, `DeskPhoneNumber`).
pub fn e164(field: &str, value: &str) -> Check {
    if E164.is_match(value) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be an E.164 number (+ and 2-15 digits)"
        ))
    }
}

/// One Connect tag.
pub fn tag(key: &str, value: &str) -> Check {
    let n = char_len(key);
    if !(1..=128).contains(&n) {
        return Err(format!("Tag key must be 1..128 characters, got {n}"));
    }
    if key.starts_with("aws:") {
        return Err("Tag keys may not start with 'aws:'".into());
    }
    if !TAG_KEY.is_match(key) {
        return Err(format!(
            "Tag key {key:?} contains characters that are not allowed"
        ));
    }
    if char_len(value) > 256 {
        return Err("Tag value must be at most 256 characters".into());
    }
    Ok(())
}

/// Identity Store `UserName`.
pub fn ids_user_name(value: &str) -> Check {
    let n = char_len(value);
    if !(1..=128).contains(&n) || !IDS_USER_NAME.is_match(value) {
        return Err(format!(
            "1 validation error detected: Value at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{{L}}\\p{{M}}\\p{{S}}\\p{{N}}\\p{{P}}]+ and length 1..128 (got {n} characters)"
        ));
    }
    reserved(value)
}

/// Reserved user and group names.
pub fn reserved(value: &str) -> Check {
    if RESERVED_IDS_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(value))
    {
        Err(format!("{value} is a reserved name"))
    } else {
        Ok(())
    }
}

/// Identity Store free-text attributes (1..1024, printable plus blanks).
pub fn ids_text(field: &str, value: &str) -> Check {
    let n = char_len(value);
    if (1..=1024).contains(&n) && IDS_TEXT.is_match(value) {
        Ok(())
    } else {
        Err(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length 1..1024 and match the allowed characters"
        ))
    }
}

/// `IdentityStoreId` format.
pub fn identity_store_id(value: &str) -> Check {
    if IDENTITY_STORE_ID.is_match(value) {
        Ok(())
    } else {
        Err(format!(
            "1 validation error detected: Value '{value}' at 'identityStoreId' failed to satisfy constraint: Member must satisfy regular expression pattern: d-[0-9a-f]{{10}}$|^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}"
        ))
    }
}

/// Identity Store resource ids (users, groups, memberships) and SSO `PrincipalId`.
pub fn resource_id(field: &str, value: &str) -> Check {
    if RESOURCE_ID.is_match(value) {
        Ok(())
    } else {
        Err(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: ([0-9a-f]{{10}}-|)[A-Fa-f0-9]{{8}}-[A-Fa-f0-9]{{4}}-[A-Fa-f0-9]{{4}}-[A-Fa-f0-9]{{4}}-[A-Fa-f0-9]{{12}}"
        ))
    }
}

/// SSO `InstanceArn`.
pub fn sso_instance_arn(value: &str) -> Check {
    if SSO_INSTANCE_ARN.is_match(value) {
        Ok(())
    } else {
        Err(format!(
            "The InstanceArn {value:?} is not a valid instance ARN"
        ))
    }
}

/// SSO `ApplicationArn`.
pub fn sso_application_arn(value: &str) -> Check {
    if SSO_APPLICATION_ARN.is_match(value) {
        Ok(())
    } else {
        Err(format!(
            "The ApplicationArn {value:?} is not a valid application ARN"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saml_usernames() {
        assert!(connect_username("alice@example.com", "SAML").is_ok());
        assert!(connect_username("alice.smith_1-x", "SAML").is_ok());
        assert!(connect_username("testuser@example", "SAML").is_err());
        assert!(connect_username("a@b@example.com", "SAML").is_err());
        assert!(connect_username("alice smith", "SAML").is_err());
        assert!(connect_username(&"a".repeat(65), "SAML").is_err());
        assert!(connect_username(&"a".repeat(65), "CONNECT_MANAGED").is_ok());
        assert!(connect_username(&"a".repeat(101), "CONNECT_MANAGED").is_err());
        assert!(connect_username("", "CONNECT_MANAGED").is_err());
    }

    #[test]
    fn passwords() {
        assert!(connect_password("Passw0rd").is_ok());
        assert!(connect_password("F@keP@ssw0rd").is_ok());
        assert!(connect_password("password1").is_err());
        assert!(connect_password("PASSWORD1").is_err());
        assert!(connect_password("Password").is_err());
        assert!(connect_password("Pa ssw0rd").is_err());
        assert!(connect_password("Pw0rd").is_err());
        assert!(connect_password(&format!("Aa1{}", "x".repeat(62))).is_err());
    }

    #[test]
    fn names_must_be_nfc() {
        assert!(connect_name("FirstName", "José", 1, 255).is_ok());
        assert!(connect_name("FirstName", "Jose\u{301}", 1, 255).is_err());
        assert!(connect_name("FirstName", "", 1, 255).is_err());
        assert!(connect_name("LastName", &"x".repeat(300), 1, 300).is_ok());
        assert!(connect_name("LastName", &"x".repeat(301), 1, 300).is_err());
    }

    #[test]
    fn phones_emails_tags() {
        assert!(e164("Mobile", "+12145550198").is_ok());
        assert!(e164("Mobile", "12145550198").is_err());
        assert!(e164("Mobile", "+0123").is_err());
        assert!(e164("Mobile", "+1234567890123456").is_err());
        assert!(secondary_email("a.b+c@example.co.uk").is_ok());
        assert!(secondary_email("nope@example").is_err());
        assert!(tag("team", "blue").is_ok());
        assert!(tag("aws:owner", "x").is_err());
        assert!(tag("bad#key", "x").is_err());
        assert!(tag("k", &"v".repeat(257)).is_err());
        assert!(tag("", "v").is_err());
    }

    #[test]
    fn identity_store_rules() {
        assert!(ids_user_name("alice@example.com").is_ok());
        assert!(ids_user_name("alice smith").is_err());
        assert!(ids_user_name("Administrator").is_err());
        assert!(ids_user_name("awsadministrators").is_err());
        assert!(ids_text("displayName", "Alice Smith").is_ok());
        assert!(identity_store_id("d-1234567890").is_ok());
        assert!(identity_store_id("d-12345").is_err());
        assert!(resource_id("userId", "1234567890-aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee").is_ok());
        assert!(resource_id("userId", "nope").is_err());
        assert!(sso_instance_arn("arn:aws:sso:::instance/ssoins-1111111111111111").is_ok());
        assert!(sso_application_arn(
            "arn:aws:sso::123456789012:application/ssoins-1111111111111111/apl-2222222222222222"
        )
        .is_ok());
        assert!(sso_application_arn("arn:aws:sso::1:application/x").is_err());
    }
}
