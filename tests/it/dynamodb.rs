//! The DynamoDB state store end to end: the real binary with `--state dynamodb://TABLE`
//! (machine A) or `[state] url` (machine B: another working directory, no file shared),
//! AWS calls on the sandbox, the table on moto's DynamoDB (`AWS_ENDPOINT_URL_DYNAMODB`).
//! In CI a missing moto fails the test; elsewhere it is skipped loudly.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::moto::{start_moto, Moto};

const TABLE: &str = "dynamodb://team-state";

/// The sandbox for AWS, moto for the table.
async fn shared_env() -> Option<(Env, Moto)> {
    let moto = start_moto()?;
    let mut env = Env::new().await;
    env.extra_env
        .push(("AWS_ENDPOINT_URL_DYNAMODB".into(), moto.url.clone()));
    env.sb.record_requests(true);
    Some((env, moto))
}

/// Machine B: another directory whose config names the table (`[state] url`).
fn machine_b() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("connect-onboard.toml"),
        format!(
            "[connect]\ninstance_id = \"{INSTANCE}\"\nregion = \"us-east-1\"\n[state]\nurl = \"{TABLE}\"\n"
        ),
    )
    .unwrap();
    dir
}

async fn run_in(env: &Env, dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Out {
    let mut c = env.command(args);
    c.current_dir(dir);
    for (k, v) in extra {
        c.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("finished")
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn status_in(env: &Env, dir: &Path) -> Value {
    let out = run_in(env, dir, &["status", "--json"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    out.json()
}

/// Every agent of every run, as (email, state).
fn agent_states(st: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for run in st["runs"].as_array().unwrap() {
        for a in run["agents"].as_array().unwrap() {
            out.push((
                a["email"].as_str().unwrap_or_default().to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// Each agent exists once on each side, and each create was applied once.
fn exactly_once(env: &Env, emails: &[String]) {
    let ids = env.ids();
    for e in emails {
        assert_eq!(ids.connect.get(e).map(Vec::len), Some(1), "{e}: {ids:?}");
        assert_eq!(ids.identity.get(e).map(Vec::len), Some(1), "{e}: {ids:?}");
    }
    for op in [
        "connect:CreateUser",
        "identitystore:CreateUser",
        "identitystore:CreateGroupMembership",
    ] {
        assert_eq!(
            env.applied(op),
            emails.len() as u64,
            "{op} applied once each"
        );
    }
}

fn emails(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@example.com")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_table_is_exit_2_naming_init_before_any_write_and_init_is_idempotent() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    let file = agents_file(&env, "agents.csv", &emails("m", 2));
    for args in [
        [&ONBOARD_ANA[..], &["--state", TABLE]].concat(),
        vec!["batch", &file, "--state", TABLE],
        vec!["status", "--state", TABLE],
        vec!["resume", "--state", TABLE],
    ] {
        let out = env.run(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains("create it with `connect-onboard init --state dynamodb://team-state`"),
            "{args:?}: {out:?}"
        );
    }
    assert_eq!(writes(&env), 0, "nothing written to AWS");
    assert!(!env.state.exists(), "no state file either");
    let out = env.run(&["init", "--state", TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("created the state table"), "{out:?}");
    let out = env.run(&["init", "--state", TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("exists: nothing changed"), "{out:?}");
    assert!(
        std::fs::read_to_string(&env.config)
            .unwrap()
            .contains(INSTANCE),
        "init --state leaves the config file alone"
    );
    let out = env
        .run(&[&ONBOARD_ANA[..], &["--state", TABLE]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !env.state.exists(),
        "the run is in the table, not in a file"
    );
    let b = machine_b();
    let st = status_in(&env, b.path()).await;
    assert_eq!(
        agent_states(&st),
        [("ana.silva@example.com".to_string(), "done".to_string())]
    );
    // A malformed state URL is an input error naming where it came from.
    let out = env.run(&["status", "--state", "dynamodb://x"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--state"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn onboard_batch_resume_status_and_rollback_work_on_the_shared_table() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let state = ["--state", TABLE];
    let out = env.run(&[&ONBOARD_ANA[..], &state].concat()).await;
    assert_eq!(out.code, 0, "{out:?}");
    // A batch that dies after some checkpoints, then resumed.
    let batch = emails("b", 6);
    let file = agents_file(&env, "agents.csv", &batch);
    let out = env
        .run_with(
            &["batch", &file, "--state", TABLE],
            &[("CONNECT_ONBOARD_CRASH_AT", "after_checkpoint:identity_user")],
        )
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    let out = env.run(&["resume", "--state", TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = env.run(&["status", "--json", "--state", TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st = out.json();
    let runs = st["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{st:#}");
    let states = agent_states(&st);
    assert_eq!(states.len(), 7, "{st:#}");
    assert!(states.iter().all(|(_, s)| s == "done"), "{states:?}");
    let mut all = batch.clone();
    all.push("ana.silva@example.com".into());
    exactly_once(&env, &all);
    // The same batch again: every agent already done, nothing written.
    let before = writes(&env);
    let out = env.run(&["batch", &file, "--state", TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(writes(&env), before, "{out:?}");
    // Rollback of the batch's run removes exactly its agents.
    let batch_run = (runs.iter())
        .find(|r| r["agents"].as_array().unwrap().len() == 6)
        .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env
        .run(&["rollback", &batch_run, "--yes", "--state", TABLE])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    for e in &batch {
        w.assert_gone(e);
    }
    w.assert_onboarded_once("ana.silva@example.com");
    let st = status_in(&env, machine_b().path()).await;
    let rolled = agent_states(&st)
        .into_iter()
        .filter(|(_, s)| s == "rolled_back")
        .count();
    assert_eq!(rolled, 6, "{st:#}");
}

/// A roster of 50 rows or more is sorted by the table's key listing (one Scan of `by_key`)
/// instead of a Query per row: the rows with earlier runs must still be found there.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_roster_finds_its_earlier_runs_through_the_key_listing() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let done = emails("k", 20);
    let failed = emails("f", 10);
    let new = emails("n", 30);
    let out = env
        .run(&[
            "batch",
            &agents_file(&env, "a.csv", &done),
            "--state",
            TABLE,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    env.faults(serde_json::json!({"rules": [
        {"op": "identitystore:CreateUser", "action": "error", "code": "AccessDeniedException", "status": 400}
    ]}));
    let out = env
        .run(&[
            "batch",
            &agents_file(&env, "b.csv", &failed),
            "--state",
            TABLE,
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    env.faults(serde_json::json!({}));
    let all: Vec<String> = [&done[..], &failed[..], &new[..]].concat();
    let out = env
        .run(&[
            "batch",
            &agents_file(&env, "all.csv", &all),
            "--json",
            "--state",
            TABLE,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["already_done"], 20, "{j}");
    assert_eq!(j["counts"]["done"], 40, "{j}");
    // The failed ones were retried in their own run; only the new ones make a new run.
    let st = status_in(&env, machine_b().path()).await;
    let runs = st["runs"].as_array().unwrap();
    let sizes: Vec<usize> = (runs.iter())
        .map(|r| r["agents"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [20, 10, 30], "{st:#}");
    assert!(agent_states(&st).iter().all(|(_, s)| s == "done"), "{st:#}");
    let ids = env.ids();
    for e in &all {
        assert_eq!(ids.connect.get(e).map(Vec::len), Some(1), "{e}: {ids:?}");
        assert_eq!(ids.identity.get(e).map(Vec::len), Some(1), "{e}: {ids:?}");
    }
    // Nothing done again: the failed ten's Connect users, rolled back, made once more.
    assert_eq!(env.applied("connect:CreateUser"), 70);
    assert_eq!(env.applied("identitystore:CreateUser"), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_killed_on_machine_a_is_resumed_from_machine_b_without_a_duplicate() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let batch = emails("k", 20);
    let file = agents_file(&env, "agents.csv", &batch);
    env.faults(serde_json::json!({"rules": [{"op": "*", "action": "latency", "latency_ms": 30}]}));
    let mut a = env.spawn_quiet(
        &["batch", &file, "--concurrency", "4", "--state", TABLE],
        &[("CONNECT_ONBOARD_LEASE_TTL_MS", "3000")],
    );
    wait_for("machine A's first agents", || {
        env.applied("identitystore:CreateGroupMembership") >= 3
    })
    .await;
    assert!(sigkill(&mut a).await, "machine A was still running");
    env.faults(serde_json::json!({}));
    let b = machine_b();
    let out = run_in(&env, b.path(), &["resume"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st = status_in(&env, b.path()).await;
    let states = agent_states(&st);
    assert_eq!(states.len(), 20, "B sees A's run: {st:#}");
    assert!(states.iter().all(|(_, s)| s == "done"), "{states:?}");
    exactly_once(&env, &batch);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_machines_racing_on_one_roster_write_every_resource_once() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let roster = emails("r", 24);
    let file = agents_file(&env, "agents.csv", &roster);
    let b = machine_b();
    std::fs::copy(&file, b.path().join("agents.csv")).unwrap();
    env.faults(serde_json::json!({"rules": [{"op": "*", "action": "latency", "latency_ms": 20}]}));
    // A runs the roster; B, once A's run is in the table, resumes it and runs the same
    // roster: every agent goes to whichever holds its lease.
    let mut a = env.command(&["batch", &file, "--concurrency", "4", "--state", TABLE]);
    let a = a.spawn().unwrap();
    wait_for("A's first write", || env.applied("connect:CreateUser") >= 1).await;
    let mut resume = env.command(&["resume", "--concurrency", "4"]);
    resume.current_dir(b.path());
    let resume = resume.spawn().unwrap();
    let mut again = env.command(&["batch", "agents.csv", "--concurrency", "4"]);
    again.current_dir(b.path());
    let again = again.spawn().unwrap();
    let mut refused = 0;
    for child in [a, resume, again] {
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("racer finished")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code().unwrap_or(-1);
        assert!(matches!(code, 0 | 1), "exit {code}: {stderr}");
        refused += stderr.matches("is being worked on by").count();
    }
    env.faults(serde_json::json!({}));
    let out = run_in(&env, b.path(), &["resume"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st = status_in(&env, b.path()).await;
    let states = agent_states(&st);
    assert!(states.iter().all(|(_, s)| s == "done"), "{states:?}");
    exactly_once(&env, &roster);
    assert!(refused > 0, "the machines really contended for agents");
}

#[tokio::test(flavor = "multi_thread")]
async fn state_copy_moves_a_sqlite_history_to_the_table_and_back_refusing_other_content() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    // A history in the state file: one onboarding, one batch.
    assert_eq!(env.run(&ONBOARD_ANA).await.code, 0);
    let batch = emails("c", 3);
    let file = agents_file(&env, "agents.csv", &batch);
    assert_eq!(env.run(&["batch", &file]).await.code, 0);
    let from_file = env.status_json().await;
    let file_state = path_str(&env.state).to_string();
    let out = env.run(&["state", "copy", &file_state, TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("2 runs copied, 0 already there"),
        "{out:?}"
    );
    let out = env.run(&["state", "copy", &file_state, TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("0 runs copied, 2 already there"),
        "{out:?}"
    );
    // The table shows exactly what the file does, from another machine too.
    let on_table = status_in(&env, machine_b().path()).await;
    assert_eq!(on_table["runs"], from_file["runs"]);
    // `rollback` works on the copy.
    let batch_run = (from_file["runs"].as_array().unwrap().iter())
        .find(|r| r["agents"].as_array().unwrap().len() == 3)
        .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env
        .run(&["rollback", &batch_run, "--yes", "--state", TABLE])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    for e in &batch {
        env.world().assert_gone(e);
    }
    // The file's older view of that run is not copied over the table's.
    let out = env.run(&["state", "copy", &file_state, TABLE]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "run {batch_run} exists in {TABLE} with other content"
        )),
        "{out:?}"
    );
    // And back: the table into a new state file.
    let back = env.dir.path().join("back.db");
    let out = env.run(&["state", "copy", TABLE, path_str(&back)]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = env
        .run(&["status", "--json", "--state", path_str(&back)])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json()["runs"],
        status_in(&env, machine_b().path()).await["runs"]
    );
    let rolled = agent_states(&out.json())
        .into_iter()
        .filter(|(_, s)| s == "rolled_back")
        .count();
    assert_eq!(rolled, 3);
}

/// Two machines at once, each paced at the account's CreateUser quota, on disjoint rosters:
/// with the table's shared budget (the default) they stay at the quota together; with
/// `[rate_limits] shared = false` each paces alone and together they overrun it.
#[tokio::test(flavor = "multi_thread")]
async fn two_machines_share_one_rate_budget_and_stay_at_the_quota_together() {
    let Some(moto) = start_moto() else {
        return;
    };
    let limits = "[rate_limits]\n\"connect:*\" = { rate = 20.0, burst = 5 }\n\"identity_center\" = { rate = 200.0, burst = 200 }\n";
    let mut throttled_by = Vec::new();
    for shared in [true, false] {
        let toml = format!("{limits}shared = {shared}\n");
        let mut env = Env::with(Default::default(), &toml).await;
        env.extra_env
            .push(("AWS_ENDPOINT_URL_DYNAMODB".into(), moto.url.clone()));
        env.sb.record_requests(true);
        // The account's quotas: AWS's defaults ×10 (CreateUser 20/s).
        env.faults(serde_json::json!({"rate_limits": {"preset": "aws", "scale": 10}}));
        let table = format!("dynamodb://budget-{shared}");
        assert_eq!(env.run(&["init", "--state", &table]).await.code, 0);
        let b = tempfile::tempdir().unwrap();
        std::fs::write(
            b.path().join("connect-onboard.toml"),
            format!("[connect]\ninstance_id = \"{INSTANCE}\"\nregion = \"us-east-1\"\n{toml}[state]\nurl = \"{table}\"\n"),
        )
        .unwrap();
        let file_a = agents_file(&env, "a.csv", &emails(&format!("a{shared}"), 50));
        std::fs::write(
            b.path().join("b.csv"),
            std::fs::read_to_string(agents_file(
                &env,
                "b.csv",
                &emails(&format!("b{shared}"), 50),
            ))
            .unwrap(),
        )
        .unwrap();
        let a = env
            .command(&["batch", &file_a, "--state", &table])
            .spawn()
            .unwrap();
        let mut cb = env.command(&["batch", "b.csv"]);
        cb.current_dir(b.path());
        let b_child = cb.spawn().unwrap();
        for child in [a, b_child] {
            let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
                .await
                .expect("finished")
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let creates: Vec<_> = (env.sb.responses().into_iter())
            .filter(|r| r.op == "connect:CreateUser")
            .collect();
        let throttled = creates.iter().filter(|r| r.status == 429).count();
        assert_eq!(
            env.applied("connect:CreateUser"),
            100,
            "shared = {shared}: each agent once"
        );
        throttled_by.push((shared, throttled, creates.len()));
    }
    eprintln!("(shared, throttled CreateUser, CreateUser calls): {throttled_by:?}");
    let (_, shared_throttled, shared_calls) = throttled_by[0];
    let (_, alone_throttled, _) = throttled_by[1];
    // 1 % is the release figure (BENCHMARKS.md, issue 18 (b): 900 agents, 0–0.04 %). Here,
    // debug builds beside a parallel test suite: a scheduling delay can bunch a process's
    // first calls past the one token of headroom (`pacer::shared`), at the start where both
    // buckets are full; 0–2 of ~100 seen, against 13–35 without the shared budget.
    assert!(
        shared_throttled * 100 <= shared_calls * 3,
        "with the shared budget at most 3 % throttled: {throttled_by:?}"
    );
    assert!(
        alone_throttled > shared_throttled,
        "pacing alone, two machines overrun the quota: {throttled_by:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_paused_past_its_lease_cannot_overwrite_the_new_holders_checkpoints() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    // A's Identity Store user takes a while to answer: A is stopped while it waits.
    env.faults(serde_json::json!({"rules": [
        {"op": "identitystore:CreateUser", "action": "latency", "latency_ms": 1500}
    ]}));
    let mut a = env.command(&[&ONBOARD_ANA[..], &["--state", TABLE]].concat());
    a.env("CONNECT_ONBOARD_LEASE_TTL_MS", "1000");
    let a = a.spawn().unwrap();
    let pid = a.id().unwrap() as i32;
    wait_for("A's identity user request", || {
        env.calls("identitystore:CreateUser") >= 1
    })
    .await;
    // SAFETY: signals to a child we spawned and have not reaped.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    env.faults(serde_json::json!({}));
    // Past A's lease: machine B takes the agent over and finishes it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = machine_b();
    let out = run_in(&env, b.path(), &["resume"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let finished = status_in(&env, b.path()).await;
    assert_eq!(agent_state(&finished), "done", "{finished:#}");
    // A wakes up with its answer and its old checkpoints to write: all refused.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = tokio::time::timeout(Duration::from_secs(60), a.wait_with_output())
        .await
        .expect("A finished")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        status_in(&env, b.path()).await,
        finished,
        "A changed nothing of B's progress; A said: {stderr}"
    );
    env.world().assert_onboarded_once("ana.silva@example.com");
    for op in [
        "connect:CreateUser",
        "identitystore:CreateUser",
        "identitystore:CreateGroupMembership",
    ] {
        assert_eq!(env.applied(op), 1, "{op}; A said: {stderr}");
    }
}

/// The `StateTable` statement of `iam-policy ARGS`, if any.
async fn state_statement(env: &Env, args: &[&str]) -> Option<Value> {
    let out = env.run(&[&["iam-policy"], args].concat()).await;
    assert_eq!(out.code, 0, "{out:?}");
    let doc: Value = out.json();
    (doc["Statement"].as_array().unwrap().iter())
        .find(|s| s["Sid"] == "StateTable")
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_policy_with_a_state_table_grants_what_the_store_calls_scoped_to_the_table() {
    let env = Env::new().await;
    assert_eq!(state_statement(&env, &["--for", "all"]).await, None);
    let url = "dynamodb://team-state?region=eu-west-1";
    let st = state_statement(&env, &["--for", "batch", "--state", url])
        .await
        .expect("a statement for the table");
    assert_eq!(
        st["Resource"],
        serde_json::json!([
            "arn:aws:dynamodb:eu-west-1:*:table/team-state",
            "arn:aws:dynamodb:eu-west-1:*:table/team-state/index/*"
        ])
    );
    let granted: Vec<String> = (st["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    // Every operation the store's code sends (`init`'s aside) is granted.
    let call = regex::Regex::new(r"\.client\.([a-z_]+)\(\)").unwrap();
    let mut sent = std::collections::BTreeSet::new();
    for f in ["mod.rs", "journal.rs"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/store/dynamodb")
            .join(f);
        let text = std::fs::read_to_string(path).unwrap();
        for c in call.captures_iter(&text) {
            let pascal: String = (c[1].split('_'))
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            sent.insert(format!("dynamodb:{pascal}"));
        }
    }
    assert!(sent.contains("dynamodb:UpdateItem"), "{sent:?}");
    for op in &sent {
        let init_only = ["dynamodb:CreateTable", "dynamodb:DescribeTable"].contains(&op.as_str());
        assert!(
            init_only || granted.contains(op),
            "{op} is sent but not granted: {granted:?}"
        );
    }
    // `doctor` only reads the table; `drift` does not read it.
    let doctor = state_statement(&env, &["--for", "doctor", "--state", url])
        .await
        .unwrap();
    assert_eq!(
        doctor["Action"],
        serde_json::json!(["dynamodb:GetItem", "dynamodb:Query"])
    );
    assert_eq!(
        state_statement(&env, &["--for", "drift", "--state", url]).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_doctor_and_offboard_work_on_the_shared_table() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let batch = emails("d", 2);
    let file = agents_file(&env, "agents.csv", &batch);
    // Identity Center refuses every user: both agents fail (and are rolled back).
    env.faults(serde_json::json!({"rules": [
        {"op": "identitystore:CreateUser", "action": "error", "code": "AccessDeniedException", "status": 400}
    ]}));
    let out = env.run(&["batch", &file, "--state", TABLE]).await;
    assert_eq!(out.code, 1, "{out:?}");
    env.faults(serde_json::json!({}));
    // Retried from machine B, in the same run.
    let b = machine_b();
    let out = run_in(&env, b.path(), &["retry"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st = status_in(&env, b.path()).await;
    assert_eq!(st["runs"].as_array().unwrap().len(), 1, "{st:#}");
    assert!(agent_states(&st).iter().all(|(_, s)| s == "done"), "{st:#}");
    // doctor reads the table (its `state` check names the run), writes nothing.
    let before = writes(&env);
    let out = env
        .run(&["doctor", &batch[0], "--json", "--state", TABLE])
        .await;
    assert_eq!(writes(&env), before, "{out:?}");
    let check = find(&out.json(), "checks", "id", "state").clone();
    assert_eq!(check["status"], "ok", "{check:#}");
    let run = first_run_id(&st);
    assert!(
        check["detail"].as_str().unwrap_or_default().contains(&run),
        "{check:#}"
    );
    // offboard, recorded in the table; a second offboard has nothing left to do.
    let out = env
        .run(&["offboard", &batch[0], "--yes", "--state", TABLE])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone(&batch[0]);
    let st = status_in(&env, b.path()).await;
    assert_eq!(st["runs"].as_array().unwrap().len(), 2, "{st:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_table_is_exit_2_naming_the_permissions_before_any_write() {
    // moto with IAM enforced from the first call: the sandbox's keys are unknown to it.
    let Some(_moto) = start_moto() else {
        return; // (not installed: skipped, or failed in CI, by start_moto)
    };
    let mut denied = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", "0"])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let port = crate::moto::bound_port(&mut denied);
    let mut env = Env::new().await;
    env.extra_env.push((
        "AWS_ENDPOINT_URL_DYNAMODB".into(),
        format!("http://127.0.0.1:{port}"),
    ));
    for args in [
        [&ONBOARD_ANA[..], &["--state", TABLE]].concat(),
        vec!["status", "--state", TABLE],
    ] {
        let out = env.run(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("access denied") && out.stderr.contains("iam-policy --state"),
            "{args:?}: {out:?}"
        );
    }
    assert_eq!(writes(&env), 0);
    let _ = denied.kill();
    let _ = denied.wait();
}

/// A TCP relay to `to` that can be cut: every connection is dropped and new ones are
/// refused until it is mended (a store that becomes unreachable).
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    epoch: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(to: &str) -> Relay {
        let to = to.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let (c, e) = (cut.clone(), epoch.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let to = to.clone();
                let mut gone = e.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = gone.changed() => {}
                    }
                });
            }
        });
        Relay { port, cut, epoch }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        self.epoch.send_modify(|n| *n += 1);
    }

    fn mend(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_unreachable_mid_batch_stops_it_with_exit_1_and_resume_completes_it_once() {
    let Some((mut env, moto)) = shared_env().await else {
        return;
    };
    let relay = Relay::start(&moto.url).await;
    env.extra_env
        .retain(|(k, _)| k != "AWS_ENDPOINT_URL_DYNAMODB");
    env.extra_env
        .push(("AWS_ENDPOINT_URL_DYNAMODB".into(), relay.url()));
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let batch = emails("u", 16);
    let file = agents_file(&env, "agents.csv", &batch);
    env.faults(serde_json::json!({"rules": [{"op": "*", "action": "latency", "latency_ms": 40}]}));
    let a = env
        .command(&["batch", &file, "--concurrency", "4", "--state", TABLE])
        .spawn()
        .unwrap();
    wait_for("the batch's first agents", || {
        env.applied("identitystore:CreateGroupMembership") >= 2
    })
    .await;
    relay.cut();
    let out = tokio::time::timeout(Duration::from_secs(180), a.wait_with_output())
        .await
        .expect("the batch stops")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("state table dynamodb://team-state"),
        "{stderr}"
    );
    assert!(
        env.applied("connect:CreateUser") < 16,
        "the batch stopped starting agents: {stderr}"
    );
    relay.mend();
    env.faults(serde_json::json!({}));
    let out = env.run(&["resume", "--state", TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st = env
        .run(&["status", "--json", "--state", TABLE])
        .await
        .json();
    assert!(agent_states(&st).iter().all(|(_, s)| s == "done"), "{st:#}");
    exactly_once(&env, &batch);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_works_on_the_shared_table() {
    let Some((env, _moto)) = shared_env().await else {
        return;
    };
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let roster = emails("p", 3);
    let file = agents_file(&env, "roster.csv", &roster);
    let out = env.run(&["apply", &file, "--state", TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    exactly_once(&env, &roster);
    let st = status_in(&env, machine_b().path()).await;
    assert_eq!(agent_states(&st).len(), 3, "{st:#}");
    assert!(agent_states(&st).iter().all(|(_, s)| s == "done"), "{st:#}");
    // Converged: the same roster again writes nothing.
    let before = writes(&env);
    let out = env.run(&["apply", &file, "--state", TABLE]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(writes(&env), before, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_and_its_rollback_work_on_the_shared_table() {
    let Some(moto) = start_moto() else {
        return;
    };
    let mut env = Env::with(crate::migrate::seeded(), "").await;
    env.extra_env
        .push(("AWS_ENDPOINT_URL_DYNAMODB".into(), moto.url.clone()));
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let connect_before = env.world().connect_users.len();
    let out = env.run(&["migrate", "--json", "--state", TABLE]).await;
    assert_eq!(out.code, 1, "cy.lee cannot be migrated: {out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["done"], 2, "{j}");
    assert_eq!(env.applied("connect:CreateUser"), 0, "adopted");
    let run = j["run_id"].as_str().unwrap().to_string();
    let st = status_in(&env, machine_b().path()).await;
    assert_eq!(first_run_id(&st), run, "{st:#}");
    let out = env
        .run(&["rollback", &run, "--yes", "--state", TABLE])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    assert_eq!(w.connect_users.len(), connect_before, "{w:#?}");
    assert!(!w.identity_users.contains_key("Ana.Silva@Example.com"));
    assert!(
        w.identity_users.contains_key("ben@example.com"),
        "adopted: kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_reaches_any_item_of_the_table() {
    let Some(moto) = start_moto() else {
        return;
    };
    let mut seed = connect_onboard_sandbox::Seed::default();
    seed.connect_instances[0].identity_management_type = "CONNECT_MANAGED".into();
    let mut env = Env::with(seed, "").await;
    env.extra_env
        .push(("AWS_ENDPOINT_URL_DYNAMODB".into(), moto.url.clone()));
    assert_eq!(env.run(&["init", "--state", TABLE]).await.code, 0);
    let password = "Zq7Kx9Vw2PlmNn4R";
    let args = [
        "onboard",
        "--email",
        "ana.silva@example.com",
        "--username",
        "asilva",
        "--first-name",
        "Ana",
        "--last-name",
        "Silva",
        "--state",
        TABLE,
    ];
    let out = env
        .run_with(&args, &[("CONNECT_ONBOARD_PASSWORD", password)])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    // Every item of the table, as moto stores it.
    let c = crate::moto::dynamodb_client(&moto.url).await;
    let items = c
        .scan()
        .table_name("team-state")
        .send()
        .await
        .unwrap()
        .items()
        .to_vec();
    assert!(items.len() >= 3, "run, agent, schema: {items:?}");
    let text = format!("{items:?}");
    assert!(text.contains("ana.silva@example.com"), "the agent is there");
    assert!(!text.contains(password), "a password in an item: {text}");
}
