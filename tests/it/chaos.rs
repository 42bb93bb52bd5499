//! Randomised faults and crashes, from fixed seeds: whatever the sequence of throttles,
//! 5xx that did or did not apply, dropped connections and process crashes, repeated
//! `resume` ends with exactly one of each resource, all owned, and `rollback` then leaves
//! nothing of the agent behind. `CHAOS_SEED=n` replays one seed; the failure message names
//! the faults and the crash point it drew.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::harness::*;

const EMAIL: &str = "ana.silva@example.com";
const WRITES: [&str; 4] = [
    "connect:CreateUser",
    "identitystore:CreateUser",
    "identitystore:CreateGroupMembership",
    "sso:CreateApplicationAssignment",
];
const FAULTS: [&str; 4] = ["throttle", "error", "apply_then_error", "apply_then_drop"];
const CRASHES: [&str; 3] = ["before_write", "after_write", "after_checkpoint"];
const STEPS: [&str; 4] = [
    "connect_user",
    "identity_user",
    "group_membership",
    "app_assignment",
];

#[tokio::test(flavor = "multi_thread")]
async fn random_faults_and_crashes_converge_to_exactly_one_of_each() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let user_mode = rng.random_bool(0.3);
        let extra = if user_mode {
            "[identity_center]\nassignment = \"user\"\n"
        } else {
            ""
        };
        let env = Env::with(connect_onboard_sandbox::Seed::default(), extra).await;
        let mut rules = Vec::new();
        for op in WRITES {
            if rng.random_bool(0.7) {
                let action = FAULTS[rng.random_range(0..FAULTS.len())];
                rules.push(json!({ "op": op, "action": action, "times": rng.random_range(1..=2) }));
            }
        }
        env.faults(json!({ "consistency_window_ms": rng.random_range(0..150), "rules": rules }));
        let crash = rng.random_bool(0.6).then(|| {
            format!(
                "{}:{}",
                CRASHES[rng.random_range(0..3)],
                STEPS[rng.random_range(0..4)]
            )
        });
        let env_vars: Vec<(&str, &str)> = crash
            .iter()
            .map(|c| ("CONNECT_ONBOARD_CRASH_AT", c.as_str()))
            .collect();
        // Its exit code depends on the draw; what must hold is the end state below.
        env.run_with(&ONBOARD_ANA, &env_vars).await;
        // Resume until the agent is done (a crash hook fires only in the first process).
        let mut state = String::new();
        for _ in 0..5 {
            let st = env.status_json().await;
            state = agent_state(&st);
            if state == "done" {
                break;
            }
            assert!(
                matches!(state.as_str(), "running" | "interrupted" | "pending"),
                "seed {seed} (faults {rules:?}, crash {crash:?}): agent ended {state}: {st:#}"
            );
            env.run(&["resume"]).await;
        }
        assert_eq!(
            state, "done",
            "seed {seed} (faults {rules:?}, crash {crash:?}) did not converge"
        );
        let w = env.world();
        if user_mode {
            assert_eq!(
                w.assignments,
                vec![("USER".to_string(), EMAIL.to_string())],
                "seed {seed}"
            );
            assert_eq!(w.connect_users, vec![EMAIL.to_string()], "seed {seed}");
            assert_eq!(
                w.memberships,
                vec![("ConnectAgents".to_string(), EMAIL.to_string())],
                "seed {seed}"
            );
        } else {
            w.assert_onboarded_once(EMAIL);
        }
        for op in WRITES {
            assert_eq!(env.applied(op), 1, "seed {seed}: {op} applied once");
        }
        let st = env.status_json().await;
        for id in STEPS {
            assert_eq!(step(&st, 0, id)["state"], "done", "seed {seed}: {id}");
            assert_eq!(step(&st, 0, id)["owned"], true, "seed {seed}: {id}");
        }
        env.faults(json!({}));
        let out = env.run(&["rollback", &first_run_id(&st), "--yes"]).await;
        assert_eq!(out.code, 0, "seed {seed}: {out:?}");
        let w = env.world();
        w.assert_gone(EMAIL);
        // The agent's own assignment goes; the shared group assignment stays.
        let left = if user_mode { 0 } else { 1 };
        assert_eq!(w.assignments.len(), left, "seed {seed}: {w:#?}");
    }
}

const READS: [&str; 5] = [
    "connect:SearchUsers",
    "identitystore:GetUserId",
    "identitystore:GetGroupId",
    "identitystore:GetGroupMembershipId",
    "sso:DescribeApplicationAssignment",
];
const DELETES: [&str; 3] = [
    "connect:DeleteUser",
    "identitystore:DeleteUser",
    "identitystore:DeleteGroupMembership",
];

fn seeds() -> std::ops::RangeInclusive<u64> {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|s| s..=s)
        .unwrap_or(1..=12)
}

#[tokio::test(flavor = "multi_thread")]
async fn random_read_faults_and_rollback_faults_still_remove_exactly_what_was_created() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let env = Env::new().await;
        // Lookups fail now and then: the plan and the re-lookups retry them.
        let mut rules = Vec::new();
        for op in READS {
            if rng.random_bool(0.5) {
                let action = ["throttle", "error"][rng.random_range(0..2)];
                rules.push(json!({ "op": op, "action": action, "times": rng.random_range(1..=2) }));
            }
        }
        env.faults(json!({ "rules": rules }));
        // Past the step's budget the agent is interrupted; resume finishes it.
        let mut out = env.run(&ONBOARD_ANA).await;
        for _ in 0..4 {
            if out.code == 0 {
                break;
            }
            out = env.run(&["resume"]).await;
        }
        assert_eq!(out.code, 0, "seed {seed} (faults {rules:?}): {out:?}");
        env.world().assert_onboarded_once(EMAIL);
        let run = first_run_id(&env.status_json().await);

        // Deletes fail, some after applying, and the process may crash after one.
        let mut rules = Vec::new();
        for op in DELETES {
            if rng.random_bool(0.7) {
                let action = ["throttle", "error", "apply_then_error", "apply_then_drop"]
                    [rng.random_range(0..4)];
                rules.push(json!({ "op": op, "action": action, "times": rng.random_range(1..=2) }));
            }
        }
        env.faults(json!({ "rules": rules }));
        let crash = rng.random_bool(0.5).then(|| {
            format!(
                "after_delete:{}",
                ["connect_user", "identity_user", "group_membership"][rng.random_range(0..3)]
            )
        });
        let vars: Vec<(&str, &str)> = crash
            .iter()
            .map(|c| ("CONNECT_ONBOARD_CRASH_AT", c.as_str()))
            .collect();
        let _ = env.run_with(&["rollback", &run, "--yes"], &vars).await;
        let mut state = String::new();
        for _ in 0..5 {
            let st = env.status_json().await;
            state = agent_state(&st);
            if state == "rolled_back" {
                break;
            }
            let _ = env.run(&["rollback", &run, "--yes"]).await;
        }
        assert_eq!(
            state, "rolled_back",
            "seed {seed} (faults {rules:?}, crash {crash:?})"
        );
        let w = env.world();
        w.assert_gone(EMAIL);
        assert!(
            w.groups.contains(&"ConnectAgents".to_string()),
            "seed {seed}: shared group kept"
        );
        assert_eq!(
            w.assignments.len(),
            1,
            "seed {seed}: shared assignment kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_resumes_never_write_twice() {
    let mut refused_total = 0;
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(2000 + seed);
        let env = Env::new().await;
        // Interrupt the first run at a random step, then slow every call down and let
        // three processes resume at once: the lease lets one of them work.
        let at = STEPS[rng.random_range(0..4)];
        let hook = format!("{}:{at}", CRASHES[rng.random_range(0..3)]);
        env.run_with(&ONBOARD_ANA, &[("CONNECT_ONBOARD_CRASH_AT", &hook)])
            .await;
        let latency = rng.random_range(20..80);
        env.faults(json!({ "rules": [{ "op": "*", "action": "latency", "latency_ms": latency }] }));
        let racers: Vec<_> = (0..3)
            .map(|_| {
                let mut c = env.command(&["resume"]);
                tokio::spawn(async move { c.output().await.expect("resume runs") })
            })
            .collect();
        let mut refused = 0;
        for r in racers {
            let out = r.await.unwrap();
            refused +=
                String::from_utf8_lossy(&out.stderr).contains("is being worked on by") as usize;
        }
        refused_total += refused;
        env.faults(json!({}));
        env.run(&["resume"]).await;
        let st = env.status_json().await;
        assert_eq!(
            st["runs"][0]["agents"][0]["state"], "done",
            "seed {seed} ({hook}): {st:#}"
        );
        env.world().assert_onboarded_once(EMAIL);
        for op in &WRITES[..3] {
            assert_eq!(
                env.applied(op),
                1,
                "seed {seed} ({hook}, {refused} refused): {op} applied once"
            );
        }
        for id in STEPS {
            assert_eq!(
                step(&st, 0, id)["owned"],
                true,
                "seed {seed} ({hook}): {id}"
            );
        }
    }
    assert!(
        refused_total > 0,
        "the racers really raced: some were refused by the lease"
    );
}
