//! Bad input: a clear error naming the field, the value and the rule; exit 2; zero write
//! calls at the emulator; no state file.

use connect_onboard_sandbox::Seed;

use crate::harness::*;

async fn rejected(env: &Env, args: &[&str], needles: &[&str]) {
    let out = env.run(args).await;
    assert_eq!(out.code, 2, "{args:?}: {out:?}");
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{args:?}: expected {n:?} in: {out:?}"
        );
    }
    assert_eq!(writes(env), 0, "{args:?}: {:?}", env.sb.calls());
    assert!(!env.state.exists(), "{args:?}: no state file for bad input");
}

fn onboard<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["onboard", "--first-name", "Ana", "--last-name", "Silva"];
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_agent_fields_are_named_with_value_and_rule() {
    let env = Env::new().await;
    rejected(
        &env,
        &onboard(&["--email", "not-an-email"]),
        &["invalid email \"not-an-email\""],
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a+b@example.com"]),
        &["email", "+"],
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com", "--phone-type", "desk"]),
        &["desk_phone_number"],
    )
    .await;
    rejected(
        &env,
        &onboard(&[
            "--email",
            "a@example.com",
            "--phone-type",
            "desk",
            "--desk-phone-number",
            "555-1234",
        ]),
        &["invalid desk_phone_number \"555-1234\"", "E.164"],
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com", "--acw-timeout", "2000001"]),
        &["acw_timeout", "2000000"],
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com", "--tag", "aws:x=1"]),
        &["aws:"],
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com", "--secondary-email", "nope@"]),
        &["secondary_email"],
    )
    .await;
    // Not NFC: "e" + combining acute accent.
    let out = env
        .run(&[
            "onboard",
            "--email",
            "a@example.com",
            "--first-name",
            "Rene\u{301}",
            "--last-name",
            "Silva",
        ])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("first_name") && out.stderr.contains("NFC"),
        "{out:?}"
    );
    // A password on a SAML instance.
    let out = env
        .run_with(
            &onboard(&["--email", "a@example.com"]),
            &[("CONNECT_ONBOARD_PASSWORD", "Secr3tPassw0rd")],
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("password") && !out.stderr.contains("Secr3tPassw0rd"),
        "{out:?}"
    );
    assert_eq!(writes(&env), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_profile_names_list_the_existing_ones() {
    let env = Env::new().await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com", "--security-profile", "Agnet"]),
        &[
            "security_profiles",
            "\"Agnet\"",
            "Agent",
            "CallCenterManager",
        ],
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com", "--routing-profile", "Nope"]),
        &["routing_profile", "Basic Routing Profile"],
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com", "--hierarchy-group", "Tier 9"]),
        &["hierarchy_group", "Tier 1"],
    )
    .await;
    let many: Vec<String> = (0..11)
        .flat_map(|_| ["--security-profile".to_string(), "Agent".to_string()])
        .collect();
    let mut args = onboard(&["--email", "a@example.com"]);
    args.extend(many.iter().map(String::as_str));
    rejected(&env, &args, &["security_profiles", "10"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_and_wrong_ids_are_input_errors() {
    let env = Env::with(Seed::default(), "[identity_center]\ngroupp = \"x\"\n").await;
    rejected(&env, &onboard(&["--email", "a@example.com"]), &["groupp"]).await;

    let env = Env::with(
        Seed::default(),
        "[identity_center]\nidentity_store_id = \"d-9999999999\"\n",
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com"]),
        &["identity_store_id", "d-9999999999"],
    )
    .await;

    let env = Env::with(
        Seed::default(),
        "[identity_center]\napplication_arn = \"arn:aws:sso::123456789012:application/ssoins-1111111111111111/apl-9999999999999999\"\n",
    )
    .await;
    rejected(
        &env,
        &onboard(&["--email", "a@example.com"]),
        &["application_arn", "no such application"],
    )
    .await;

    let env = Env::new().await;
    std::fs::write(
        &env.config,
        format!("[connect]\ninstance_id = \"bbbbbbbb-bbbb-4ccc-8ddd-eeeeeeeeeeee\"\n[state]\npath = \"{}\"\n", path_str(&env.state)),
    )
    .unwrap();
    rejected(
        &env,
        &onboard(&["--email", "a@example.com"]),
        &["connect.instance_id", "bbbbbbbb"],
    )
    .await;

    let env = Env::new().await;
    let out = env
        .run(&["--config", "/nonexistent/x.toml", "status"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("connect-onboard init"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_workflow_files_are_rejected_before_any_call() {
    let env = Env::new().await;
    let cases = [
        (
            crate::harness::fast_workflow().replace("identitystore.user", "identitystore.usr"),
            "unknown action",
        ),
        (
            crate::harness::fast_workflow()
                .replace("id = \"identity_user\"", "id = \"connect_user\""),
            "duplicate step id",
        ),
        (
            crate::harness::fast_workflow().replace(
                "user_id = \"identity_user.user_id\", group_id",
                "user_id = \"nobody.user_id\", group_id",
            ),
            "not an earlier step",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&env.workflow, text).unwrap();
        let out = env.onboard("a@example.com", &[]).await;
        assert_eq!(out.code, 2, "{needle}: {out:?}");
        assert!(out.stderr.contains(needle), "{needle}: {out:?}");
        assert_eq!(
            env.sb.calls().values().map(|c| c.calls).sum::<u64>(),
            0,
            "not even a read"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_built_in_workflow_and_every_file_in_workflows_are_valid() {
    let env = Env::new().await;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/workflows")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("migrate") {
            // `migrate` runs the embedded copy of this file: the same text, and it loads.
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                text,
                connect_onboard::app::BUILTIN_MIGRATE_WORKFLOW,
                "{name}"
            );
            let out = env.run(&["migrate", "--dry-run"]).await;
            assert_eq!(out.code, 0, "{name}: {out:?}");
            continue;
        }
        if name.starts_with("offboard") {
            // `offboard` runs the embedded copy; as an onboarding workflow it is refused.
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                text,
                connect_onboard::app::BUILTIN_OFFBOARD_WORKFLOW,
                "{name}"
            );
            let out = env
                .run(&["offboard", "nobody@example.com", "--dry-run"])
                .await;
            assert_eq!(out.code, 1, "{name}: {out:?}");
            assert!(out.stdout.contains("skipped: not found"), "{name}: {out:?}");
            std::fs::copy(&path, &env.workflow).unwrap();
            let out = env.onboard("a@example.com", &["--dry-run"]).await;
            assert_eq!(out.code, 2, "{name}: {out:?}");
            assert!(out.stderr.contains("run it with `offboard`"), "{out:?}");
            continue;
        }
        if name.starts_with("sync") {
            // `sync` runs the embedded copy (with no [[sync.groups]]: a config error); as an
            // onboarding workflow, its Identity Center step adopts only: a new agent's
            // missing user is a conflict, never a create.
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text, connect_onboard::app::BUILTIN_SYNC_WORKFLOW, "{name}");
            let out = env.run(&["sync", "--dry-run"]).await;
            assert_eq!(out.code, 2, "{name}: {out:?}");
            assert!(out.stderr.contains("maps no group"), "{name}: {out:?}");
            std::fs::copy(&path, &env.workflow).unwrap();
            let out = env.onboard("a@example.com", &["--dry-run"]).await;
            assert_eq!(out.code, 1, "{name}: {out:?}");
            assert!(out.stdout.contains("never creates one"), "{name}: {out:?}");
            continue;
        }
        std::fs::copy(&path, &env.workflow).unwrap();
        let out = env.onboard("a@example.com", &["--dry-run"]).await;
        assert_eq!(out.code, 0, "{}: {out:?}", path.display());
    }
    let init = env.dir.path().join("init.toml");
    let out = env.run(&["--config", path_str(&init), "init"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let text = std::fs::read_to_string(&init).unwrap();
    assert!(text.contains("instance_id") && text.contains("ConnectAgents"));
    let again = env.run(&["--config", path_str(&init), "init"]).await;
    assert_eq!(again.code, 2, "no silent overwrite: {again:?}");
}
