//! Crash and resume: the process dies at every step boundary, between every write and its
//! checkpoint, between an intent and its write, and between a compensating delete and its
//! checkpoint; `resume` (or `rollback`) then finishes with exactly one of each resource.

use serde_json::json;

use crate::harness::*;

const EMAIL: &str = "ana.silva@example.com";
const STEPS: [&str; 4] = [
    "connect_user",
    "identity_user",
    "group_membership",
    "app_assignment",
];

async fn crash_then_resume(point: &str, step_id: &str) {
    let env = Env::new().await;
    let hook = format!("{point}:{step_id}");
    let out = env
        .run_with(&ONBOARD_ANA, &[("CONNECT_ONBOARD_CRASH_AT", &hook)])
        .await;
    assert_ne!(out.code, 0, "{hook}: the process must have died: {out:?}");
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{hook}: {out:?}");
    env.world().assert_onboarded_once(EMAIL);
    for op in [
        "connect:CreateUser",
        "identitystore:CreateUser",
        "identitystore:CreateGroupMembership",
    ] {
        assert_eq!(env.applied(op), 1, "{hook}: {op} applied once");
    }
    let st = env.status_json().await;
    for id in STEPS {
        assert_eq!(step(&st, 0, id)["state"], "done", "{hook}: {id}");
        assert_eq!(
            step(&st, 0, id)["owned"],
            true,
            "{hook}: {id} is ours, so rollback may remove it"
        );
    }
    // And rollback removes exactly what the interrupted run created.
    let out = env.run(&["rollback", &first_run_id(&st), "--yes"]).await;
    assert_eq!(out.code, 0, "{hook}: {out:?}");
    env.world().assert_gone(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_at_every_step_boundary_then_resume() {
    for s in STEPS {
        crash_then_resume("after_checkpoint", s).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_every_write_and_its_checkpoint_then_resume() {
    for s in STEPS {
        crash_then_resume("after_write", s).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_every_intent_and_its_write_then_resume() {
    for s in STEPS {
        crash_then_resume("before_write", s).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_a_delete_and_its_checkpoint_then_rollback_finishes() {
    for s in ["connect_user", "identity_user", "group_membership"] {
        let env = Env::new().await;
        assert_eq!(env.onboard(EMAIL, &[]).await.code, 0);
        let run = first_run_id(&env.status_json().await);
        let hook = format!("after_delete:{s}");
        let out = env
            .run_with(
                &["rollback", &run, "--yes"],
                &[("CONNECT_ONBOARD_CRASH_AT", &hook)],
            )
            .await;
        assert_ne!(out.code, 0, "{hook}: {out:?}");
        let out = env.run(&["rollback", &run, "--yes"]).await;
        assert_eq!(out.code, 0, "{hook}: {out:?}");
        env.world().assert_gone(EMAIL);
        let st = env.status_json().await;
        assert_eq!(st["runs"][0]["agents"][0]["state"], "rolled_back", "{hook}");
    }
    // User assignment mode: the assignment is the agent's own, compensated first.
    let env = Env::with(
        connect_onboard_sandbox::Seed::default(),
        "[identity_center]\nassignment = \"user\"\n",
    )
    .await;
    assert_eq!(env.onboard(EMAIL, &[]).await.code, 0);
    let run = first_run_id(&env.status_json().await);
    let out = env
        .run_with(
            &["rollback", &run, "--yes"],
            &[("CONNECT_ONBOARD_CRASH_AT", "after_delete:app_assignment")],
        )
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    let out = env.run(&["rollback", &run, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    assert!(w.assignments.is_empty(), "{w:#?}");
    w.assert_gone(EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_a_landed_write_is_unanswered_then_resume() {
    let env = Env::new().await;
    // The Identity Store user is created but the answer never comes; we kill -9 the process.
    env.faults(json!({"rules": [{"op": "identitystore:CreateUser", "action": "apply_then_hang", "times": 1}]}));
    let mut child = env.command(&ONBOARD_ANA).spawn().unwrap();
    wait_for("the write to land", || {
        env.applied("identitystore:CreateUser") == 1
    })
    .await;
    let pid = child.id().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    // The dead holder's lease is taken over at once (same host, pid gone).
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once(EMAIL);
    assert_eq!(env.applied("identitystore:CreateUser"), 1);
    let st = env.status_json().await;
    assert_eq!(step(&st, 0, "identity_user")["owned"], true);
}
