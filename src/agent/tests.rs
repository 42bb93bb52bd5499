//! The field rules, one test per rule and per identity mode.

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

#[test]
fn a_migrated_agent_keeps_its_username_exactly_and_needs_an_email_username() {
    let spec = migrated("Ana.Silva@Example.com", "Ana", "Silva").unwrap();
    assert_eq!(spec.email, "Ana.Silva@Example.com", "case kept");
    assert_eq!(spec.username, "Ana.Silva@Example.com");
    assert_eq!(spec.display_name, "Ana Silva");
    let e = migrated("asilva", "Ana", "Silva").unwrap_err().to_string();
    assert!(
        e.contains("invalid username \"asilva\": is not an email address"),
        "{e}"
    );
    let e = migrated("ana@example.com", "", "Silva")
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid first_name"), "{e}");
}
