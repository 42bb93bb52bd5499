//! Property tests of bad input: the field validators and the agent-file reader over
//! arbitrary values and bytes never panic, and every rejection names where (the field; the
//! file, line and column) and the rule, never echoing a password.
//!
//! CI runs 64 cases per property; more locally with `PROPTEST_CASES=5000 cargo nextest run
//! -E 'test(/agent::fuzz::/)'`.

use std::io::Cursor;

use proptest::prelude::*;

use super::reader::{InputError, Reader, FIELDS};
use super::{validate, AgentInput, Defaults, IdentityMode, PhoneType, Secret};

/// 64 cases unless `PROPTEST_CASES` says otherwise (every property test of the crate).
pub(crate) fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        ..ProptestConfig::default()
    }
}

/// Strings that reach the rules' edges: ASCII, any Unicode, control characters, spaces.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9@._+ -]{0,30}",
        "\\PC{0,40}",
        any::<String>(),
        Just(String::new()),
        "[a-z]{1,10}@[a-z]{1,10}\\.(com|example)",
        "\\+[0-9]{0,20}",
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn input() -> impl Strategy<Value = AgentInput> {
    (
        (text(), text(), text(), opt_text(), opt_text()),
        (
            proptest::collection::vec(text(), 0..12),
            opt_text(),
            proptest::option::of(prop_oneof![Just(PhoneType::Soft), Just(PhoneType::Desk)]),
            opt_text(),
            proptest::option::of(any::<bool>()),
        ),
        (
            proptest::option::of(any::<i64>()),
            opt_text(),
            opt_text(),
            opt_text(),
            proptest::collection::vec((text(), text()), 0..4),
            proptest::option::of("\\PC{0,70}"),
        ),
    )
        .prop_map(
            |((e, f, l, u, rp), (sp, hg, pt, dp, aa), (acw, se, m, d, tags, pw))| AgentInput {
                email: e,
                first_name: f,
                last_name: l,
                username: u,
                routing_profile: rp,
                security_profiles: sp,
                hierarchy_group: hg,
                phone_type: pt,
                desk_phone_number: dp,
                auto_accept: aa,
                acw_timeout: acw,
                secondary_email: se,
                mobile: m,
                directory_user_id: d,
                tags,
                password: pw.map(Secret::new),
            },
        )
}

fn mode() -> impl Strategy<Value = IdentityMode> {
    prop_oneof![
        Just(IdentityMode::Saml),
        Just(IdentityMode::ConnectManaged),
        Just(IdentityMode::ExistingDirectory),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Every problem names a field of the input, quotes the value (a password only as
    /// `<redacted>`) and states a rule.
    #[test]
    fn every_validation_error_names_its_field_value_and_rule(input in input(), mode in mode()) {
        let Err(errs) = validate(&input, &Defaults::default(), mode) else {
            return Ok(());
        };
        prop_assert!(!errs.0.is_empty());
        // The password, unless the same text is in another field (then it may be quoted).
        let others = format!("{:?}", AgentInput { password: None, ..input.clone() });
        let password = (input.password.as_ref().map(|p| p.expose().to_string()))
            .filter(|p| p.len() >= 4 && !others.contains(p.as_str()));
        for e in &errs.0 {
            // A field, or an element of one: `tags["k"]`, `security_profiles[2]`.
            let base = e.field.split('[').next().unwrap_or_default();
            prop_assert!(FIELDS.contains(&base), "unknown field {:?}", e.field);
            prop_assert!(!e.rule.trim().is_empty(), "no rule: {e}");
            let shown = e.to_string();
            prop_assert!(shown.starts_with(&format!("invalid {} ", e.field)), "{shown}");
            if e.field == "password" {
                prop_assert_eq!(e.value.as_str(), "<redacted>");
            } else {
                prop_assert!(e.value.starts_with('"') && e.value.ends_with('"'), "{shown}");
            }
            if let Some(p) = password.as_deref() {
                prop_assert!(!shown.contains(p), "the password is echoed: {shown}");
            }
        }
    }

    /// Arbitrary bytes after any of the accepted headers, or alone: each error names the
    /// file and (for a row) its line, and a row's column problem names the column.
    #[test]
    fn every_reader_error_names_file_line_and_column(
        head in 0usize..4,
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let header: &[u8] = match head {
            0 => b"email,first_name,last_name,phone_type,acw_timeout,auto_accept,tags,password\n",
            1 => b"first name,last name,email address,phone type (soft/desk),ACW timeout (seconds),soft phone auto accept (yes/no),password\r\n",
            2 => b"",
            _ => b"{\"email\":\"a@b.example\",\"first_name\":\"A\",\"last_name\":\"B\"}\n",
        };
        let mut all = header.to_vec();
        all.extend_from_slice(&bytes);
        let lines = all.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let check = |e: &InputError, row: bool| -> Result<(), TestCaseError> {
            prop_assert_eq!(e.file.as_str(), "agents.csv");
            prop_assert!(!e.message.trim().is_empty(), "no message: {:?}", e);
            let shown = e.to_string();
            prop_assert!(shown.starts_with("agents.csv"), "{shown}");
            if row {
                prop_assert!((1..=lines).contains(&e.line), "line {} of {lines}: {shown}", e.line);
                prop_assert!(shown.starts_with(&format!("agents.csv:{}: ", e.line)), "{shown}");
            }
            if let Some(col) = &e.column {
                prop_assert!(shown.contains(col.as_str()) || shown.contains(&format!("{col:?}")), "column {col:?} not named: {shown}");
            }
            Ok(())
        };
        match Reader::from_reader("agents.csv", Cursor::new(all)) {
            Err(errs) => {
                prop_assert!(!errs.is_empty());
                for e in &errs {
                    check(e, false)?;
                }
            }
            Ok(reader) => {
                for r in reader.take(10_000) {
                    if let Err(errs) = r {
                        prop_assert!(!errs.is_empty());
                        for e in &errs {
                            check(e, true)?;
                        }
                    }
                }
            }
        }
    }
}
