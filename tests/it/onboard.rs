//! The main job: onboarding, adoption of what exists, conflicts, dry runs, status output.

use connect_onboard_sandbox::world::SeedIdentityUser;
use connect_onboard_sandbox::Seed;

use crate::harness::*;
use crate::seeds;

const EMAIL: &str = "ana.silva@example.com";

#[tokio::test(flavor = "multi_thread")]
async fn onboards_one_agent_end_to_end() {
    let env = Env::new().await;
    // Mixed case and spaces: normalised once, used identically everywhere.
    let out = env
        .onboard(
            "  Ana.Silva@Example.com ",
            &["--security-profile", "Agent", "--tag", "team=blue"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    w.assert_onboarded_once(EMAIL);
    // Every step line and the summary.
    for step in [
        "connect_user: created",
        "identity_user: created",
        "group_membership: created",
        "app_assignment: created",
    ] {
        assert!(out.stderr.contains(step), "{step}: {out:?}");
    }
    assert!(
        out.stdout.contains(EMAIL) && out.stdout.contains("done"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("https://d-1234567890.awsapps.com/start"),
        "sign-in notice: {out:?}"
    );
    // The Connect user is a SAML user: username = email, no Email/Password sent.
    let u = env.first_connect_user();
    assert_eq!(u.identity_info.email, None, "Email is never sent on SAML");
    assert_eq!(u.tags.get("team").map(String::as_str), Some("blue"));
    assert_eq!(u.identity_info.first_name.as_deref(), Some("Ana"));
    // The Identity Store user has exactly one, primary, work email.
    let emails = env.sb.seed_world(|w| {
        let s = &w.identity_stores[STORE];
        s.users.values().next().unwrap().emails.clone()
    });
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["Primary"], true);
    assert_eq!(emails[0]["Type"], "work");
    assert_eq!(emails[0]["Value"], EMAIL);
    // One CreateUser per service, per agent.
    assert_eq!(env.calls("connect:CreateUser"), 1);
    assert_eq!(env.calls("identitystore:CreateUser"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_has_the_documented_shape() {
    let env = Env::new().await;
    let out = env.onboard(EMAIL, &["--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let onboard_json = out.json();
    let st = env.status_json().await;
    assert_eq!(onboard_json["runs"][0]["run_id"], st["runs"][0]["run_id"]);
    let run = &st["runs"][0];
    assert!(run["run_id"].as_str().unwrap().starts_with("r-"));
    assert_eq!(run["workflow"], "onboard-agent");
    assert_eq!(run["target"]["instance_id"], INSTANCE);
    assert_eq!(run["target"]["identity_store_id"], STORE);
    assert_eq!(run["target"]["assignment"], "group");
    let agent = &run["agents"][0];
    assert_eq!(agent["email"], EMAIL);
    assert_eq!(agent["state"], "done");
    assert_eq!(
        agent["portal_url"],
        "https://d-1234567890.awsapps.com/start"
    );
    let ids: Vec<&str> = agent["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "connect_user",
            "identity_user",
            "group_membership",
            "app_assignment"
        ]
    );
    for s in agent["steps"].as_array().unwrap() {
        for key in [
            "state",
            "owned",
            "adopted",
            "unresolved",
            "resources",
            "attempts",
            "last_error",
            "updated_at",
        ] {
            assert!(s.get(key).is_some(), "step field {key}: {s}");
        }
        assert_eq!(s["state"], "done");
        assert_eq!(s["owned"], true);
    }
    let cu = step(&st, 0, "connect_user");
    assert!(cu["resources"]["user_id"].as_str().unwrap().len() == 36);
    assert_eq!(
        step(&st, 0, "app_assignment")["resources"]["principal_type"],
        "GROUP"
    );
}

fn seed_existing() -> Seed {
    let mut seed = Seed::default();
    seeds::onboarded_by_hand(&mut seed, EMAIL, "Ana", "Silva");
    seeds::group_assigned(&mut seed);
    seed
}

#[tokio::test(flavor = "multi_thread")]
async fn adopts_everything_that_already_exists_and_writes_nothing() {
    let env = Env::with(seed_existing(), "").await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(writes(&env), 0, "all four adopted: {:?}", env.sb.calls());
    let st = env.status_json().await;
    for id in [
        "connect_user",
        "identity_user",
        "group_membership",
        "app_assignment",
    ] {
        assert_eq!(step(&st, 0, id)["state"], "adopted", "{id}");
        assert_eq!(step(&st, 0, id)["owned"], false, "{id}");
    }
    // A rollback of the run removes nothing that was adopted.
    let run = first_run_id(&st);
    let out = env.run(&["rollback", &run, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(writes(&env), 0);
    env.world().assert_onboarded_once(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_adoption_creates_only_what_is_missing_and_rollback_keeps_the_adopted() {
    let mut seed = seed_existing();
    seed.identity_users.clear();
    seed.memberships.clear();
    let env = Env::with(seed, "").await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st = env.status_json().await;
    assert_eq!(step(&st, 0, "connect_user")["state"], "adopted");
    assert_eq!(step(&st, 0, "identity_user")["owned"], true);
    assert_eq!(step(&st, 0, "group_membership")["owned"], true);
    assert_eq!(env.calls("connect:CreateUser"), 0);
    let out = env.run(&["rollback", &first_run_id(&st), "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    assert_eq!(
        w.connect_users,
        vec![EMAIL.to_string()],
        "adopted Connect user kept"
    );
    assert!(
        !w.identity_users.contains_key(EMAIL),
        "owned Identity Store user removed"
    );
    assert!(w.memberships.is_empty());
    assert!(
        w.groups.contains(&"ConnectAgents".to_string()),
        "the shared group is never deleted"
    );
    assert_eq!(w.assignments.len(), 1, "the shared group assignment stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_identity_store_user_stops_with_zero_writes() {
    let mut seed = Seed::default();
    seed.identity_users.push(SeedIdentityUser {
        user_name: EMAIL.into(),
        display_name: Some("Someone Else".into()),
        given_name: "Someone".into(),
        family_name: "Else".into(),
        email: Some("someone.else@example.com".into()),
        ..Default::default()
    });
    let env = Env::with(seed, "").await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("someone.else@example.com") && out.stdout.contains(EMAIL),
        "names both values: {out:?}"
    );
    assert_eq!(writes(&env), 0, "{:?}", env.sb.calls());
    let st = env.status_json().await;
    assert_eq!(st["runs"][0]["agents"][0]["state"], "failed");
    assert_eq!(step(&st, 0, "identity_user")["state"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn email_owned_by_another_user_name_is_a_conflict() {
    let mut seed = Seed::default();
    seed.identity_users.push(SeedIdentityUser {
        user_name: "asilva".into(),
        display_name: Some("Ana Silva".into()),
        given_name: "Ana".into(),
        family_name: "Silva".into(),
        email: Some(EMAIL.into()),
        ..Default::default()
    });
    let env = Env::with(seed, "").await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("asilva"), "{out:?}");
    assert_eq!(writes(&env), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_and_writes_nothing() {
    let mut seed = Seed::default();
    seeds::connect_agent(&mut seed, EMAIL, "Ana", "Silva");
    let env = Env::with(seed, "").await;
    let out = env.onboard(EMAIL, &["--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    let actions: Vec<(&str, &str)> = plan["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["step"].as_str().unwrap(), p["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("connect_user", "adopt"),
            ("identity_user", "create"),
            ("group_membership", "create"),
            ("app_assignment", "create")
        ]
    );
    assert_eq!(writes(&env), 0);
    assert!(!env.state.exists(), "a dry run creates no state file");
    let human = env.onboard(EMAIL, &["--dry-run"]).await;
    assert!(
        human.stdout.contains("dry run, nothing written"),
        "{human:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_assignment_mode_assigns_and_compensates_the_user() {
    let env = Env::with(
        Seed::default(),
        "[identity_center]\nassignment = \"user\"\n",
    )
    .await;
    // The membership step fails permanently once: the run rolls back; then a clean run.
    env.faults(serde_json::json!({"rules": [{"op": "sso:CreateApplicationAssignment", "action": "error", "code": "AccessDeniedException", "status": 400, "times": 1}]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    env.world().assert_gone(EMAIL);
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    assert_eq!(w.assignments, vec![("USER".to_string(), EMAIL.to_string())]);
    let st = env.status_json().await;
    let run = st["runs"][1]["run_id"].as_str().unwrap().to_string();
    let out = env.run(&["rollback", &run, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    assert!(
        w.assignments.is_empty(),
        "the user's own assignment is compensated: {w:#?}"
    );
    w.assert_gone(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn second_onboard_of_a_done_agent_adopts_and_of_an_unfinished_one_is_refused() {
    let mut env = Env::new().await;
    env.retry_budget(1);
    assert_eq!(env.onboard(EMAIL, &[]).await.code, 0);
    let before = writes(&env);
    let again = env.onboard(EMAIL, &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(writes(&env), before, "everything adopted the second time");

    let other = "ben.okafor@example.com";
    env.faults(
        serde_json::json!({"rules": [{"op": "identitystore:CreateUser", "action": "throttle"}]}),
    );
    let out = env.onboard(other, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    env.faults(serde_json::json!({}));
    let out = env.onboard(other, &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("resume"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_application_discovery_lists_the_candidates() {
    let mut seed = Seed::default();
    let mut app = seed.sso_instances[0].applications[0].clone();
    app.name = "Amazon Connect (test)".into();
    app.arn = app
        .arn
        .replace("apl-2222222222222222", "apl-3333333333333333");
    seed.sso_instances[0].applications.push(app);
    let env = Env::with(seed, "").await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("apl-2222222222222222") && out.stderr.contains("apl-3333333333333333"),
        "{out:?}"
    );
    assert_eq!(writes(&env), 0);
    // Configuring the ARN resolves it.
    let env2 = Env::with(
        {
            let mut s = Seed::default();
            let mut app = s.sso_instances[0].applications[0].clone();
            app.name = "Amazon Connect (test)".into();
            app.arn = app.arn.replace("apl-2222222222222222", "apl-3333333333333333");
            s.sso_instances[0].applications.push(app);
            s
        },
        "[identity_center]\napplication_arn = \"arn:aws:sso::123456789012:application/ssoins-1111111111111111/apl-2222222222222222\"\n",
    )
    .await;
    let out = env2.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_search_users_the_lookup_pages_through_list_users() {
    let env = Env::with(seed_existing(), "").await;
    env.faults(serde_json::json!({"rules": [
        {"op": "connect:SearchUsers", "action": "error", "code": "UnknownOperationException", "status": 400}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(env.calls("connect:ListUsers") >= 1);
    let st = env.status_json().await;
    assert_eq!(step(&st, 0, "connect_user")["state"], "adopted");
    assert_eq!(env.calls("connect:CreateUser"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_center_calls_use_their_own_profile_when_configured() {
    // Connect is reached through AWS_ENDPOINT_URL_CONNECT; the Identity Center clients only
    // through the `ic-admin` profile's endpoint_url. Were they built from the default
    // profile, they would have no endpoint but real AWS, which this machine cannot reach.
    let env = Env::with(
        Seed::default(),
        "[identity_center]\nprofile = \"ic-admin\"\n",
    )
    .await;
    let aws_config = env.dir.path().join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[default]\nregion = us-east-1\naws_access_key_id = a\naws_secret_access_key = b\n\
             [profile ic-admin]\nregion = us-east-1\naws_access_key_id = c\naws_secret_access_key = d\nendpoint_url = {}\n",
            env.sb.endpoint()
        ),
    )
    .unwrap();
    let mut c = env.command(&[
        "onboard",
        "--email",
        EMAIL,
        "--first-name",
        "Ana",
        "--last-name",
        "Silva",
        "--json",
    ]);
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_IDENTITYSTORE",
        "AWS_ENDPOINT_URL_SSO_ADMIN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        c.env_remove(k);
    }
    c.env("AWS_CONFIG_FILE", &aws_config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &aws_config)
        .env("AWS_MAX_ATTEMPTS", "1");
    c.env("CONNECT_ONBOARD_ATTEMPT_TIMEOUT_MS", "3000");
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), c.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.world().assert_onboarded_once(EMAIL);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["runs"][0]["target"]["identity_center_profile"], "ic-admin",
        "recorded for resume"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_application_is_refused_before_any_write() {
    let mut seed = Seed::default();
    seed.sso_instances[0].applications[0].status = "DISABLED".into();
    let env = Env::with(seed.clone(), "").await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 2, "discovery skips it, so none is left: {out:?}");
    assert_eq!(writes(&env), 0);
    let arn = seed.sso_instances[0].applications[0].arn.clone();
    let env = Env::with(
        seed,
        &format!("[identity_center]\napplication_arn = \"{arn}\"\n"),
    )
    .await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("disabled"), "{out:?}");
    assert_eq!(writes(&env), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_ids_are_trusted_where_the_account_cannot_list_or_describe() {
    let ids = "[identity_center]\ninstance_arn = \"arn:aws:sso:::instance/ssoins-1111111111111111\"\n\
               identity_store_id = \"d-1234567890\"\n\
               application_arn = \"arn:aws:sso::123456789012:application/ssoins-1111111111111111/apl-2222222222222222\"\n";
    let env = Env::with(Seed::default(), ids).await;
    env.faults(serde_json::json!({"rules": [
        {"op": "sso:ListInstances", "action": "error", "code": "AccessDeniedException", "status": 400},
        {"op": "sso:DescribeApplication", "action": "error", "code": "AccessDeniedException", "status": 400}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once(EMAIL);
    // Without the configured ids, the same refusal is an error before any write.
    let env = Env::new().await;
    env.faults(serde_json::json!({"rules": [
        {"op": "sso:ListInstances", "action": "error", "code": "AccessDeniedException", "status": 400}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("AccessDeniedException"), "{out:?}");
    assert_eq!(writes(&env), 0);
}
