//! Randomised faults and crashes, from fixed seeds: whatever the sequence of throttles,
//! 5xx that did or did not apply, dropped connections and process crashes, repeated
//! `resume` ends with exactly one of each resource, all owned, and `rollback` then leaves
//! nothing of the agent behind.

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
    for seed in std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|s| s..=s)
        .unwrap_or(1..=16u64)
    {
        let mut rng = StdRng::seed_from_u64(seed);
        let env = Env::new().await;
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
        let first = env.run_with(&ONBOARD_ANA, &env_vars).await;
        if std::env::var("CHAOS_DEBUG").is_ok() {
            eprintln!("SEED {seed} rules {rules:?} crash {crash:?}\nFIRST {first:?}");
        }
        let _ = first;
        // Resume until the agent is done (a crash hook fires only in the first process).
        let mut state = String::new();
        for _ in 0..5 {
            let st = env.status_json().await;
            state = st["runs"][0]["agents"][0]["state"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if state == "done" {
                break;
            }
            assert!(
                matches!(state.as_str(), "running" | "interrupted" | "pending"),
                "seed {seed} (faults {rules:?}, crash {crash:?}): agent ended {state}: {st:#}"
            );
            let out = env.run(&["resume"]).await;
            if std::env::var("CHAOS_DEBUG").is_ok() {
                eprintln!("RESUME {out:?}");
            }
        }
        assert_eq!(
            state, "done",
            "seed {seed} (faults {rules:?}, crash {crash:?}) did not converge"
        );
        env.world().assert_onboarded_once(EMAIL);
        for op in &WRITES[..3] {
            assert_eq!(env.applied(op), 1, "seed {seed}: {op} applied once");
        }
        let st = env.status_json().await;
        for id in STEPS {
            assert_eq!(step(&st, 0, id)["state"], "done", "seed {seed}: {id}");
            assert_eq!(step(&st, 0, id)["owned"], true, "seed {seed}: {id}");
        }
        env.faults(json!({}));
        let out = env.run(&["rollback", &first_run_id(&st)]).await;
        assert_eq!(out.code, 0, "seed {seed}: {out:?}");
        env.world().assert_gone(EMAIL);
    }
}
