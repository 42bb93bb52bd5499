//! `doctor`: a healthy agent passes every check; each cause of "authenticated, but has not
//! been onboarded to this application" is named by its own check, with zero write calls.

use connect_onboard_sandbox::Seed;
use serde_json::Value;

use crate::harness::*;
use crate::seeds;

const ANA: &str = "ana.silva@example.com";

/// Ana onboarded by hand, correctly: Connect user, Identity Center user with her email
/// as the one primary email, member of ConnectAgents, the group assigned to the app.
fn healthy() -> Seed {
    let mut seed = Seed::default();
    seeds::onboarded_by_hand(&mut seed, ANA, "Ana", "Silva");
    seeds::group_assigned(&mut seed);
    seed
}

/// Runs `doctor WHO --json`; asserts no write call reached the sandbox.
async fn doctor(env: &Env, who: &str) -> (Out, Value) {
    let before = writes(env);
    let out = env.run(&["doctor", who, "--json"]).await;
    assert_eq!(writes(env), before, "doctor wrote: {out:?}");
    let j = out.json();
    (out, j)
}

fn problems(j: &Value) -> Vec<String> {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| {
            format!(
                "{}={}",
                c["id"].as_str().unwrap(),
                c["status"].as_str().unwrap()
            )
        })
        .collect()
}

fn check<'a>(j: &'a Value, id: &str) -> &'a Value {
    find(j, "checks", "id", id)
}

/// The diagnosis names exactly `expected` as not ok, exit 1, and the first one's detail
/// carries `evidence`.
async fn diagnosed(seed: Seed, toml: &str, who: &str, expected: &[&str], evidence: &str) {
    let env = Env::with(seed, toml).await;
    let (out, j) = doctor(&env, who).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(j["ok"], false);
    assert_eq!(problems(&j), expected, "{j:#}");
    let first = expected[0].split('=').next().unwrap();
    let c = check(&j, first);
    assert!(
        c["detail"].as_str().unwrap().contains(evidence),
        "{first} should cite {evidence:?}: {c:#}"
    );
    assert!(
        c["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "a fix: {c:#}"
    );
}

#[tokio::test]
async fn a_healthy_agent_passes_every_check_with_zero_writes() {
    let env = Env::with(healthy(), "").await;
    let (out, j) = doctor(&env, ANA).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(j["ok"], true);
    assert_eq!(j["agent"], ANA);
    assert_eq!(problems(&j), Vec::<String>::new(), "{j:#}");
    let ids: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "instance_saml",
            "connect_user",
            "identity_user",
            "identity_user_unique",
            "primary_email",
            "role_session_name",
            "group_membership",
            "application",
            "assignment",
            "connect_profiles",
            "state"
        ]
    );
    assert!(
        check(&j, "connect_profiles")["detail"]
            .as_str()
            .unwrap()
            .contains("\"Basic Routing Profile\""),
        "{j:#}"
    );
    assert!(!env.state.exists(), "doctor creates no state file");
    // Human output: one line per check and a verdict.
    let human = env.run(&["doctor", ANA]).await;
    assert_eq!(human.code, 0, "{human:?}");
    assert!(human.stdout.contains("[ok] connect_user"), "{human:?}");
    assert!(human.stdout.contains("all 11 checks passed"), "{human:?}");
}

#[tokio::test]
async fn an_agent_onboarded_by_connect_onboard_is_healthy_and_its_runs_are_reported() {
    let env = Env::new().await;
    let out = env.onboard(ANA, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let run = first_run_id(&env.status_json().await);
    let (out, j) = doctor(&env, ANA).await;
    assert_eq!(out.code, 0, "{out:?}");
    let state = check(&j, "state")["detail"].as_str().unwrap().to_string();
    assert!(state.contains(&format!("{run} done")), "{state}");
    assert!(state.contains("connect_user"), "owned resources: {state}");
}

#[tokio::test]
async fn an_unfinished_run_is_reported_with_its_fix() {
    let env = Env::new().await;
    let out = env
        .run_with(
            &ONBOARD_ANA,
            &[("CONNECT_ONBOARD_CRASH_AT", "after_write:identity_user")],
        )
        .await;
    assert_ne!(out.code, 0, "crashed: {out:?}");
    let (out, j) = doctor(&env, ANA).await;
    assert_eq!(out.code, 1, "{out:?}");
    let c = check(&j, "state");
    assert_eq!(c["status"], "problem", "{j:#}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .starts_with("connect-onboard resume r-"),
        "{c:#}"
    );
}

#[tokio::test]
async fn a_connect_username_that_differs_only_in_case_is_named_as_the_cause() {
    let mut seed = healthy();
    seed.connect_instances[0].users[0].username = "Ana.Silva@Example.com".into();
    diagnosed(
        seed,
        "",
        ANA,
        &["connect_user=problem", "role_session_name=problem"],
        "\"Ana.Silva@Example.com\"",
    )
    .await;
}

#[tokio::test]
async fn a_missing_connect_user_is_named() {
    let mut seed = healthy();
    seed.connect_instances[0].users.clear();
    diagnosed(
        seed,
        "",
        ANA,
        &[
            "connect_user=problem",
            "role_session_name=unknown",
            "connect_profiles=unknown",
        ],
        "no Connect user is named",
    )
    .await;
}

#[tokio::test]
async fn a_missing_identity_center_user_is_named() {
    let mut seed = healthy();
    seed.identity_users.clear();
    seed.memberships.clear();
    diagnosed(
        seed,
        "",
        ANA,
        &[
            "identity_user=problem",
            "identity_user_unique=unknown",
            "primary_email=unknown",
            "role_session_name=unknown",
            "group_membership=unknown",
        ],
        "no Identity Center user",
    )
    .await;
}

#[tokio::test]
async fn two_identity_center_users_whose_emails_differ_only_in_case_are_named() {
    let mut seed = healthy();
    seeds::identity_user(
        &mut seed,
        "asilva",
        "Ana",
        "Silva",
        Some("Ana.Silva@Example.com"),
    );
    diagnosed(
        seed,
        "",
        ANA,
        &["identity_user_unique=problem"],
        "\"asilva\"",
    )
    .await;
}

#[tokio::test]
async fn a_user_without_a_primary_email_is_named() {
    let mut seed = healthy();
    seed.identity_users[0].email = None;
    diagnosed(
        seed,
        "",
        ANA,
        &["primary_email=problem", "role_session_name=problem"],
        "0 primary emails",
    )
    .await;
}

#[tokio::test]
async fn an_email_not_flagged_primary_is_named() {
    let env = Env::with(healthy(), "").await;
    env.sb.seed_world(|w| {
        for u in w.identity_stores.get_mut(STORE).unwrap().users.values_mut() {
            for e in &mut u.emails {
                e["Primary"] = Value::Bool(false);
            }
        }
    });
    let (out, j) = doctor(&env, ANA).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        problems(&j),
        ["primary_email=problem", "role_session_name=problem"],
        "{j:#}"
    );
    assert!(check(&j, "primary_email")["detail"]
        .as_str()
        .unwrap()
        .contains(ANA));
}

#[tokio::test]
async fn a_role_session_name_from_another_attribute_is_compared_exactly() {
    // The SAML mapping sends the user name, which is not the Connect username.
    let mut seed = healthy();
    seed.identity_users[0].user_name = "asilva".into();
    seed.memberships[0].user = "asilva".into();
    diagnosed(
        seed,
        "[identity_center]\nrole_session_name = \"user_name\"\n",
        ANA,
        &["role_session_name=problem"],
        "\"asilva\" (user name)",
    )
    .await;
}

#[tokio::test]
async fn not_a_member_of_the_agents_group_is_named() {
    let mut seed = healthy();
    seed.memberships.clear();
    diagnosed(
        seed,
        "",
        ANA,
        &["group_membership=problem"],
        "is not a member of \"ConnectAgents\"",
    )
    .await;
}

#[tokio::test]
async fn a_group_not_assigned_to_the_application_is_named() {
    let mut seed = healthy();
    seed.assignments.clear();
    diagnosed(
        seed,
        "",
        ANA,
        &["assignment=problem"],
        "group \"ConnectAgents\" is not assigned",
    )
    .await;
}

#[tokio::test]
async fn in_user_mode_the_user_must_be_assigned() {
    // The group is assigned, but user mode assigns each agent: Ana is not.
    diagnosed(
        healthy(),
        "[identity_center]\nassignment = \"user\"\n",
        ANA,
        &["assignment=problem"],
        "user \"ana.silva@example.com\" is not assigned",
    )
    .await;
}

#[tokio::test]
async fn a_disabled_application_is_named() {
    let mut seed = healthy();
    seed.sso_instances[0].applications[0].status = "DISABLED".into();
    diagnosed(seed, "", ANA, &["application=problem"], "is disabled").await;
}

#[tokio::test]
async fn a_connect_user_without_security_profiles_is_named() {
    let env = Env::with(healthy(), "").await;
    env.sb.seed_world(|w| {
        for u in w
            .connect_instances
            .get_mut(INSTANCE)
            .unwrap()
            .users
            .values_mut()
        {
            u.security_profile_ids.clear();
        }
    });
    let (out, j) = doctor(&env, ANA).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(problems(&j), ["connect_profiles=problem"], "{j:#}");
    assert!(check(&j, "connect_profiles")["detail"]
        .as_str()
        .unwrap()
        .contains("security profiles: none"));
}

#[tokio::test]
async fn a_non_saml_instance_is_named() {
    let mut seed = healthy();
    seed.connect_instances[0].identity_management_type = "CONNECT_MANAGED".into();
    diagnosed(seed, "", ANA, &["instance_saml=problem"], "CONNECT_MANAGED").await;
}

#[tokio::test]
async fn a_read_that_fails_is_could_not_check_and_exits_1() {
    let env = Env::with(healthy(), "").await;
    env.faults(serde_json::json!({"rules": [
        {"op": "identitystore:ListUsers", "action": "error", "status": 403, "code": "AccessDeniedException"}
    ]}));
    let (out, j) = doctor(&env, ANA).await;
    assert_eq!(out.code, 1, "{out:?}");
    let c = check(&j, "identity_user");
    assert_eq!(c["status"], "unknown", "{j:#}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{c:#}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let env = Env::with(healthy(), "").await;
    let out = env.run(&["doctor", "  ", "--json"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.json()["error"]
        .as_str()
        .unwrap()
        .contains("EMAIL_OR_USERNAME"));
    let out = env.run(&["doctor"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("[connect]\ninstance_id = \"{INSTANCE}\"\n[identity_center]\nrole_session_name = \"upn\"\n"),
    )
    .unwrap();
    let out = env.run(&["--config", path_str(&bad), "doctor", ANA]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("role_session_name = \"upn\"")
            && out.stderr.contains("expected `email` or `user_name`"),
        "{out:?}"
    );
    assert_eq!(writes(&env), 0);
    std::fs::remove_file(&env.config).unwrap();
    let out = env.run(&["doctor", ANA]).await;
    assert_eq!(out.code, 2, "no config: {out:?}");
}

#[tokio::test]
async fn an_email_typed_in_another_case_finds_the_user_the_identity_provider_names() {
    // The admin types the email as the ticket spelled it; the setup itself is right.
    let env = Env::with(healthy(), "").await;
    let (out, j) = doctor(&env, "Ana.Silva@Example.COM").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        check(&j, "connect_user")["detail"]
            .as_str()
            .unwrap()
            .contains("exactly what the identity provider sends"),
        "{j:#}"
    );
}

/// Issue 15 item 16: an interrupted agent's missing membership is fixed by `resume` (its
/// run creates it), not by `migrate --usernames`; and its owned resources are printed as
/// clean ids or ARNs, not an ARN with the id appended again.
#[tokio::test]
async fn an_interrupted_agents_missing_membership_is_fixed_by_resume_and_resources_are_clean() {
    let env = Env::new().await;
    let out = env
        .run_with(
            &ONBOARD_ANA,
            &[("CONNECT_ONBOARD_CRASH_AT", "before_write:group_membership")],
        )
        .await;
    assert_ne!(out.code, 0, "crashed: {out:?}");
    let st = env.status_json().await;
    let run = first_run_id(&st);
    let connect = &step(&st, 0, "connect_user")["resources"];
    let (arn, id) = (
        connect["user_arn"].as_str().unwrap(),
        connect["user_id"].as_str().unwrap(),
    );
    let ic = step(&st, 0, "identity_user")["resources"]["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (out, j) = doctor(&env, ANA).await;
    assert_eq!(out.code, 1, "{out:?}");
    let m = check(&j, "group_membership");
    assert_eq!(m["status"], "problem", "{j:#}");
    let fix = m["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("connect-onboard resume {run}")),
        "{m:#}"
    );
    assert!(!fix.contains("migrate"), "{m:#}");
    let state = check(&j, "state")["detail"].as_str().unwrap();
    assert!(!state.contains(&format!("{arn}/{id}")), "{state}");
    assert!(!state.contains(&format!("{id}/{arn}")), "{state}");
    assert!(state.contains(&format!("connect_user {arn}")), "{state}");
    assert!(
        state.contains(&format!("identity_user (user_id {ic})")),
        "{state}"
    );
}

/// Issue 15 item 2: doctor never offers a fix that the command it names refuses or that
/// leaves the agent as it was: a Connect username that is not an email is not sent to
/// migrate; a RoleSessionName with capitals is not "offboard and onboard again" (onboard
/// makes lower-case usernames); a user migrate would not adopt is joined by hand.
#[tokio::test]
async fn doctor_offers_no_dead_end_fix() {
    // cy.lee: a Connect user whose username is not an email, and nothing else.
    let mut s = Seed::default();
    seeds::connect_agent(&mut s, "cy.lee", "Cy", "Lee");
    let env = Env::with(s, "").await;
    let (_, j) = doctor(&env, "cy.lee").await;
    let c = check(&j, "identity_user");
    assert_eq!(c["status"], "problem", "{j:#}");
    let fix = c["fix"].as_str().unwrap();
    assert!(!fix.contains("migrate --usernames"), "{c:#}");
    assert!(fix.contains("not an email"), "{c:#}");

    // The identity provider sends "Ben.Okafor@Example.com"; the Connect user is lower case.
    let mut s = Seed::default();
    seeds::connect_agent(&mut s, "ben.okafor@example.com", "Ben", "Okafor");
    let big = "Ben.Okafor@Example.com";
    seeds::identity_user(&mut s, big, "Ben", "Okafor", Some(big));
    seeds::member(&mut s, big);
    seeds::group_assigned(&mut s);
    let env = Env::with(s, "").await;
    let (_, j) = doctor(&env, "ben.okafor@example.com").await;
    assert_eq!(problems(&j), ["role_session_name=problem"], "{j:#}");
    let c = check(&j, "role_session_name");
    let fix = c["fix"].as_str().unwrap();
    assert!(
        !fix.contains("offboard") && !fix.contains("onboard --email"),
        "{c:#}"
    );
    assert!(
        fix.contains(&format!("create the Connect user {big:?}")),
        "{c:#}"
    );

    // The reverse (the README's case) is fixed by connect-onboard: named exactly.
    let mut s = Seed::default();
    seeds::connect_agent(&mut s, big, "Ben", "Okafor");
    let small = "ben.okafor@example.com";
    seeds::identity_user(&mut s, small, "Ben", "Okafor", Some(small));
    seeds::member(&mut s, small);
    seeds::group_assigned(&mut s);
    let env = Env::with(s, "").await;
    let (_, j) = doctor(&env, small).await;
    let fix = check(&j, "role_session_name")["fix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        fix.contains(&format!("offboard --connect-only {big}"))
            && fix.contains(&format!("onboard --email {small}")),
        "{fix}"
    );

    // Not in the group, with an Identity Center user name migrate would not adopt.
    let mut s = Seed::default();
    seeds::connect_agent(&mut s, "nel@example.com", "Nel", "Ng");
    seeds::identity_user(&mut s, "nel", "Nel", "Ng", Some("nel@example.com"));
    seeds::group_assigned(&mut s);
    let env = Env::with(s, "").await;
    let (_, j) = doctor(&env, "nel@example.com").await;
    let c = check(&j, "group_membership");
    assert_eq!(c["status"], "problem", "{j:#}");
    let fix = c["fix"].as_str().unwrap();
    assert!(
        !fix.contains("migrate --usernames") && fix.contains("IAM Identity Center console"),
        "{c:#}"
    );
}
