//! Every failure class, through the real SDK: throttling, 5xx that did or did not apply,
//! dropped connections, the Connect users-per-instance quota, permanent errors (rollback
//! or keep), transient errors past the budget (interrupted, then resume), and compensation
//! that keeps failing (needs attention, exit 3, then rollback).

use serde_json::json;

use connect_onboard_sandbox::Seed;

use crate::harness::*;

const EMAIL: &str = "ana.silva@example.com";

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_within_the_budget() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "connect:CreateUser", "action": "throttle", "times": 2},
        {"op": "identitystore:CreateUser", "action": "throttle", "times": 1},
        {"op": "sso:CreateApplicationAssignment", "action": "throttle", "times": 1}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once(EMAIL);
    assert_eq!(env.calls("connect:CreateUser"), 3);
    assert!(
        out.stderr
            .contains("connect:CreateUser: ThrottlingException, retrying in"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_that_applied_then_failed_is_owned_not_repeated() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "connect:CreateUser", "action": "apply_then_error", "times": 1},
        {"op": "identitystore:CreateUser", "action": "apply_then_drop", "times": 1},
        {"op": "identitystore:CreateGroupMembership", "action": "apply_then_error", "times": 1}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once(EMAIL);
    assert_eq!(env.applied("connect:CreateUser"), 1);
    assert_eq!(env.applied("identitystore:CreateUser"), 1);
    let st = env.status_json().await;
    for id in ["connect_user", "identity_user", "group_membership"] {
        assert_eq!(
            step(&st, 0, id)["owned"],
            true,
            "{id}: found after an unknown outcome is ours"
        );
    }
    // And so a rollback removes them.
    let out = env.run(&["rollback", &first_run_id(&st), "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_landed_write_invisible_to_searches_is_still_owned() {
    let env = Env::new().await;
    // The create lands but answers 500, and for 200 ms SearchUsers cannot see the user.
    env.faults(json!({
        "consistency_window_ms": 200,
        "rules": [{"op": "connect:CreateUser", "action": "apply_then_error", "times": 1}]
    }));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env.applied("connect:CreateUser"), 1, "never created twice");
    let st = env.status_json().await;
    assert_eq!(step(&st, 0, "connect_user")["owned"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_per_instance_quota_is_permanent_and_sent_once() {
    let mut seed = Seed::default();
    seed.connect_instances[0].max_users = 0;
    let env = Env::with(seed, "").await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        env.calls("connect:CreateUser"),
        1,
        "LimitExceededException is not retried"
    );
    assert!(out.stdout.contains("LimitExceededException"), "{out:?}");
    assert_eq!(writes(&env), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_failure_rolls_back_exactly_what_was_created() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "identitystore:CreateGroupMembership", "action": "error", "code": "AccessDeniedException", "status": 403}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    env.world().assert_gone(EMAIL);
    let st = env.status_json().await;
    assert_eq!(st["runs"][0]["agents"][0]["state"], "rolled_back");
    assert_eq!(step(&st, 0, "connect_user")["state"], "rolled_back");
    assert_eq!(step(&st, 0, "identity_user")["state"], "rolled_back");
    assert!(step(&st, 0, "group_membership")["last_error"]
        .as_str()
        .unwrap()
        .contains("AccessDenied"));
    // Reverse order: Identity Store user deleted before the Connect user.
    let order: Vec<String> = env
        .sb
        .responses()
        .iter()
        .filter(|r| r.op.ends_with("DeleteUser"))
        .map(|r| r.op.clone())
        .collect();
    assert_eq!(order, ["identitystore:DeleteUser", "connect:DeleteUser"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_on_failure_keeps_then_rollback_removes() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "identitystore:CreateUser", "action": "error", "code": "ValidationException", "status": 400}
    ]}));
    let out = env.onboard(EMAIL, &["--on-failure", "keep"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(env.world().connect_users, vec![EMAIL.to_string()], "kept");
    let st = env.status_json().await;
    assert_eq!(st["runs"][0]["agents"][0]["state"], "failed");
    let out = env
        .run(&["rollback", &first_run_id(&st), "--email", EMAIL, "--yes"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_errors_past_the_budget_interrupt_and_resume_finishes() {
    let env = Env::new().await;
    env.faults(
        json!({"rules": [{"op": "identitystore:CreateGroupMembership", "action": "error"}]}),
    );
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let st = env.status_json().await;
    assert_eq!(st["runs"][0]["agents"][0]["state"], "interrupted");
    assert_eq!(
        step(&st, 0, "group_membership")["attempts"],
        4,
        "the workflow's budget"
    );
    assert!(
        env.world().connect_users.contains(&EMAIL.to_string()),
        "interrupted agents keep their progress"
    );
    env.faults(json!({}));
    // Days later, from another directory: the run's own record (target, regions, workflow)
    // is enough; no config file is needed, and a changed one would not matter.
    std::fs::remove_file(&env.config).unwrap();
    let out = env.run(&["--state", path_str(&env.state), "resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once(EMAIL);
    assert_eq!(env.calls("connect:CreateUser"), 1);
    assert_eq!(env.calls("identitystore:CreateUser"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_conflict_propagation_race_is_retried() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "sso:CreateApplicationAssignment", "action": "error", "code": "ConflictException", "status": 400, "times": 2}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_compensation_needs_attention_exit_3_and_rollback_finishes_it() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "identitystore:CreateGroupMembership", "action": "error", "code": "AccessDeniedException", "status": 403},
        {"op": "identitystore:DeleteUser", "action": "error", "code": "AccessDeniedException", "status": 403}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 3, "{out:?}");
    let st = env.status_json().await;
    assert_eq!(st["runs"][0]["agents"][0]["state"], "needs_attention");
    assert_eq!(step(&st, 0, "identity_user")["state"], "needs_attention");
    // resume leaves it alone; rollback once the cause is fixed finishes it.
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    env.faults(json!({}));
    let out = env.run(&["rollback", &first_run_id(&st), "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn release_closes_an_agent_and_keeps_its_leftovers() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "identitystore:CreateGroupMembership", "action": "error", "code": "AccessDeniedException", "status": 403},
        {"op": "connect:DeleteUser", "action": "error", "code": "AccessDeniedException", "status": 403}
    ]}));
    assert_eq!(env.onboard(EMAIL, &[]).await.code, 3);
    let run = first_run_id(&env.status_json().await);
    let out = env.run(&["release", &run, "--email", EMAIL]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.faults(json!({}));
    let out = env.run(&["rollback", &run, "--yes"]).await;
    assert_eq!(out.code, 1, "a released agent is skipped: {out:?}");
    assert_eq!(
        env.world().connect_users,
        vec![EMAIL.to_string()],
        "leftover kept"
    );
    // The agent can be onboarded again (its leftover Connect user is adopted).
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_store_concurrent_modification_is_transient_by_its_typed_reason() {
    let env = Env::new().await;
    env.faults(json!({"rules": [{
        "op": "identitystore:CreateUser", "action": "error", "code": "ConflictException", "status": 409,
        "members": {"Reason": "CONCURRENT_MODIFICATION"}, "times": 1
    }]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("retrying (ConflictException"),
        "{out:?}"
    );
    assert_eq!(env.calls("identitystore:CreateUser"), 2);
    env.world().assert_onboarded_once(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_call_times_out_and_the_engine_recovers() {
    let mut env = Env::new().await;
    env.extra_env
        .push(("CONNECT_ONBOARD_ATTEMPT_TIMEOUT_MS".into(), "500".into()));
    // One write never answered and not applied; one applied and never answered.
    env.faults(json!({"rules": [
        {"op": "identitystore:CreateUser", "action": "hang", "times": 1},
        {"op": "identitystore:CreateGroupMembership", "action": "apply_then_hang", "times": 1}
    ]}));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("retrying (Timeout"), "{out:?}");
    env.world().assert_onboarded_once(EMAIL);
    assert_eq!(env.applied("identitystore:CreateUser"), 1);
    assert_eq!(env.applied("identitystore:CreateGroupMembership"), 1);
    let st = env.status_json().await;
    assert_eq!(
        step(&st, 0, "group_membership")["owned"],
        true,
        "the unanswered write was ours"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_deletes_by_recorded_ids_without_searching() {
    let env = Env::new().await;
    assert_eq!(env.onboard(EMAIL, &[]).await.code, 0);
    let run = first_run_id(&env.status_json().await);
    env.sb.reset_calls();
    let out = env.run(&["rollback", &run, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone(EMAIL);
    for op in [
        "connect:SearchUsers",
        "identitystore:GetUserId",
        "identitystore:GetGroupMembershipId",
    ] {
        assert_eq!(env.calls(op), 0, "{op}: deletes use the checkpointed ids");
    }
    assert_eq!(env.calls("connect:DeleteUser"), 1);
    assert_eq!(env.calls("identitystore:DeleteUser"), 1);
    assert_eq!(env.calls("identitystore:DeleteGroupMembership"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_fails_preflight_with_exit_1_and_no_writes() {
    let mut env = Env::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.extra_env.push((
        "AWS_ENDPOINT_URL_CONNECT".into(),
        format!("http://127.0.0.1:{port}"),
    ));
    env.extra_env.push(("AWS_MAX_ATTEMPTS".into(), "1".into()));
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(
        out.code, 1,
        "a transport failure is not an input error: {out:?}"
    );
    assert!(
        out.stderr.contains("describing Connect instance"),
        "{out:?}"
    );
    assert_eq!(writes(&env), 0);
    assert!(!env.state.exists());
}
