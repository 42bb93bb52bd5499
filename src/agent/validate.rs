//! Validation of one agent's input for the instance's identity mode: all errors at once.

use super::*;

/// Trim an optional field; a present-but-blank value is an error (omit it instead).
pub(super) fn opt_nonblank(
    field: &str,
    v: &Option<String>,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
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
pub(super) fn validate_email(raw: &str, errs: &mut Vec<FieldError>) -> Option<String> {
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
    // The rules judge the normalised email; the error quotes it as written, so that it can
    // be found in the file.
    let written = format!("{:?}", raw.trim());
    for e in &mut errs[before..] {
        e.value.clone_from(&written);
    }
    (errs.len() == before).then_some(email)
}

pub(super) fn validate_secondary_email(
    v: &Option<String>,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
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
pub(super) fn validate_username(
    given: &Option<String>,
    email_norm: &str,
    email_ok: bool,
    mode: IdentityMode,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    match mode {
        IdentityMode::Saml => saml_username(given, email_norm, email_ok, errs),
        IdentityMode::ConnectManaged | IdentityMode::ExistingDirectory => {
            directory_username(given, email_norm, email_ok, mode, errs)
        }
    }
}

/// On a SAML instance the username is the email: a given one must equal it, and the email
/// must fit Connect's SAML username (and IAM's RoleSessionName) length and characters.
fn saml_username(
    given: &Option<String>,
    email_norm: &str,
    email_ok: bool,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    let before = errs.len();
    if let Some(g) = given {
        if !email_norm.is_empty() && g.trim().to_lowercase() != email_norm {
            errs.push(FieldError::new(
                "username",
                g,
                format!(
                    "must equal the email {email_norm:?} on a SAML instance (SAML sign-in needs Connect username == RoleSessionName == the Identity Center user's email); leave the username out (--username, or the file's user login column) or make it the email"
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

/// On a Connect-managed or existing-directory instance the username is the given one, or
/// the email: Connect's non-SAML length and character rules.
fn directory_username(
    given: &Option<String>,
    email_norm: &str,
    email_ok: bool,
    mode: IdentityMode,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
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
        let bad = distinct_offenders(&u, |c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
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

pub(super) fn validate_name(
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
/// applying `defaults`. Collects all errors: each field's check adds its own to `errs`.
pub fn validate(
    input: &AgentInput,
    defaults: &Defaults,
    mode: IdentityMode,
) -> Result<AgentSpec, ValidationErrors> {
    let mut errs: Vec<FieldError> = Vec::new();
    let e = &mut errs;

    let email = validate_email(&input.email, e);
    let email_norm = input.email.trim().to_lowercase();
    let username = validate_username(&input.username, &email_norm, email.is_some(), mode, e);
    let (first_max, last_max) = match mode {
        IdentityMode::Saml | IdentityMode::ExistingDirectory => (255, 300),
        IdentityMode::ConnectManaged => (255, 256),
    };
    let first = validate_name("first_name", &input.first_name, first_max, mode, e);
    let last = validate_name("last_name", &input.last_name, last_max, mode, e);
    let display_name = validate_display_name(first.as_deref(), last.as_deref(), e);
    validate_password(mode, input, e);
    let directory_user_id = validate_directory_user_id(mode, input, e);
    let secondary_email = validate_secondary_email(&input.secondary_email, e);
    let mobile = validate_mobile(input, e);
    let phone_type = input.phone_type.unwrap_or(defaults.phone_type);
    let desk_phone_number = validate_desk_phone(phone_type, input, e);
    let auto_accept = input.auto_accept.unwrap_or(defaults.auto_accept);
    let acw_timeout = validate_acw(input, defaults, e);
    let security_profiles = validate_security_profiles(input, defaults, e);
    let routing_profile = validate_routing_profile(input, defaults, e);
    let hierarchy_group = if input.hierarchy_group.is_some() {
        opt_nonblank("hierarchy_group", &input.hierarchy_group, e)
    } else {
        opt_nonblank("hierarchy_group", &defaults.hierarchy_group, e)
    };
    let tags = validate_tags(input, defaults, e);

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

/// The Identity Store display name, "First Last", within its own limits.
fn validate_display_name(
    first: Option<&str>,
    last: Option<&str>,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    let (f, l) = (first?, last?);
    let d = format!("{f} {l}");
    let e = check_identity_store_string("display_name", &d);
    if e.is_empty() {
        Some(d)
    } else {
        errs.extend(e.into_iter().map(FieldError::from));
        None
    }
}

/// A password only where Connect stores users (CONNECT_MANAGED), and a good one there.
fn validate_password(mode: IdentityMode, input: &AgentInput, errs: &mut Vec<FieldError>) {
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
}

/// A directory user id, only on an EXISTING_DIRECTORY instance.
fn validate_directory_user_id(
    mode: IdentityMode,
    input: &AgentInput,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    let directory_user_id = opt_nonblank("directory_user_id", &input.directory_user_id, errs);
    if let (Some(d), true) = (&directory_user_id, mode != IdentityMode::ExistingDirectory) {
        errs.push(FieldError::new(
            "directory_user_id",
            d,
            format!(
                "only allowed on an EXISTING_DIRECTORY instance; this instance uses {mode}, where Connect returns an error if DirectoryUserId is included"
            ),
        ));
    }
    directory_user_id
}

/// A mobile number, E.164.
fn validate_mobile(input: &AgentInput, errs: &mut Vec<FieldError>) -> Option<String> {
    let mobile = opt_nonblank("mobile", &input.mobile, errs);
    if let Some(m) = &mobile {
        if let Err(e) = check_e164("mobile", m) {
            errs.push(e.into());
        }
    }
    mobile
}

/// The desk phone number the phone type needs (a blank one is "not given", and said).
fn validate_desk_phone(
    phone_type: PhoneType,
    input: &AgentInput,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    let desk_raw = input.desk_phone_number.as_deref();
    match desk_raw {
        Some(d) if d.trim().is_empty() => match check_phone(phone_type, None) {
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
        },
        _ => match check_phone(phone_type, desk_raw) {
            Ok(n) => n,
            Err(e) => {
                errs.push(e.into());
                None
            }
        },
    }
}

/// The after-contact-work timeout, the agent's or the default.
fn validate_acw(input: &AgentInput, defaults: &Defaults, errs: &mut Vec<FieldError>) -> i32 {
    let acw = input.acw_timeout.unwrap_or(defaults.acw_timeout);
    check_acw_timeout("acw_timeout", acw).unwrap_or_else(|e| {
        errs.push(e.into());
        0
    })
}

/// The security profiles, the agent's or the default ones.
fn validate_security_profiles(
    input: &AgentInput,
    defaults: &Defaults,
    errs: &mut Vec<FieldError>,
) -> Vec<String> {
    let source: &[String] = if input.security_profiles.is_empty() {
        &defaults.security_profiles
    } else {
        &input.security_profiles
    };
    check_security_profiles("security_profiles", source).unwrap_or_else(|e| {
        errs.extend(e.into_iter().map(FieldError::from));
        Vec::new()
    })
}

/// The routing profile, the agent's or the default; one is required.
fn validate_routing_profile(
    input: &AgentInput,
    defaults: &Defaults,
    errs: &mut Vec<FieldError>,
) -> String {
    if let Some(r) = &input.routing_profile {
        return opt_nonblank("routing_profile", &Some(r.clone()), errs).unwrap_or_default();
    }
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

/// Tags: the defaults, then the agent's own (the agent's win); a key twice in the agent's
/// list is an error.
fn validate_tags(
    input: &AgentInput,
    defaults: &Defaults,
    errs: &mut Vec<FieldError>,
) -> BTreeMap<String, String> {
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
    errs.extend(check_tags("tags", &tags).into_iter().map(FieldError::from));
    tags
}

/// The agent of an existing SAML Connect user being migrated to Identity Center: its
/// username, kept exactly (case included: SAML compares it case-sensitively with the
/// RoleSessionName), is the Identity Store UserName and its one primary email. A username
/// that is not an email is refused with why: the primary email is never guessed.
pub fn migrated(
    username: &str,
    first_name: &str,
    last_name: &str,
) -> Result<AgentSpec, ValidationErrors> {
    let mut errs = Vec::new();
    if !EMAIL_RE.is_match(username) {
        errs.push(FieldError::new(
            "username",
            username,
            "is not an email address, so the Identity Center user's primary email (which SAML sign-in sends as the RoleSessionName) cannot be derived from it; migrate does not guess one",
        ));
    }
    errs.extend(
        check_identity_store_username("username", username)
            .into_iter()
            .map(FieldError::from),
    );
    for (field, v) in [("first_name", first_name), ("last_name", last_name)] {
        if v.trim().is_empty() {
            errs.push(FieldError::new(
                field,
                v,
                "required: IAM Identity Center needs GivenName and FamilyName, and this Connect user has none",
            ));
        } else {
            errs.extend(
                check_identity_store_string(field, v.trim())
                    .into_iter()
                    .map(FieldError::from),
            );
        }
    }
    if !errs.is_empty() {
        return Err(ValidationErrors(errs));
    }
    let (first, last) = (first_name.trim().to_string(), last_name.trim().to_string());
    Ok(AgentSpec {
        email: username.to_string(),
        username: username.to_string(),
        display_name: format!("{first} {last}"),
        first_name: first,
        last_name: last,
        identity_mode: IdentityMode::Saml,
        routing_profile: String::new(),
        security_profiles: Vec::new(),
        hierarchy_group: None,
        phone_type: PhoneType::Soft,
        desk_phone_number: None,
        auto_accept: false,
        acw_timeout: 0,
        secondary_email: None,
        mobile: None,
        directory_user_id: None,
        tags: BTreeMap::new(),
        needs_password: false,
        send_email_to_connect: false,
    })
}

/// An agent being offboarded: only its email is needed (trimmed and lower-cased once, as at
/// onboarding: the Identity Store UserName and primary email compare without case). The
/// username keeps the case typed, as Connect usernames are case-sensitive (a migrated user
/// keeps its own). The other fields stay empty: offboarding sends none of them.
pub fn leaver(typed: &str, mode: IdentityMode) -> Result<AgentSpec, ValidationErrors> {
    let mut errs = Vec::new();
    let Some(email) = validate_email(typed, &mut errs) else {
        return Err(ValidationErrors(errs));
    };
    Ok(AgentSpec {
        username: typed.trim().to_string(),
        email,
        first_name: String::new(),
        last_name: String::new(),
        display_name: String::new(),
        identity_mode: mode,
        routing_profile: String::new(),
        security_profiles: Vec::new(),
        hierarchy_group: None,
        phone_type: PhoneType::Soft,
        desk_phone_number: None,
        auto_accept: false,
        acw_timeout: 0,
        secondary_email: None,
        mobile: None,
        directory_user_id: None,
        tags: BTreeMap::new(),
        needs_password: false,
        send_email_to_connect: false,
    })
}
