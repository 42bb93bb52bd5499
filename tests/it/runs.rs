//! Issue 15, items 3, 4, 7, 10, 11, 12: dry runs plan the shared assignment as the run finds
//! it; every call a command makes is counted; every problem of every row at once; a
//! rollback of done agents is confirmed; one advice per state; `status` before any run —
//! the real binary against the sandbox.

use connect_onboard_sandbox::Seed;
use serde_json::{json, Value};

use crate::harness::*;
use crate::seeds;

const ANA: &str = "ana@example.com";
const BEN: &str = "ben@example.com";

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    path_str(&p).to_string()
}

fn plan_action<'a>(plan: &'a Value, step: &str) -> &'a str {
    find(plan, "plan", "step", step)["action"]
        .as_str()
        .unwrap_or_default()
}

/// The run id of a done `onboard --json`.
fn run_of(out: &Out) -> String {
    assert_eq!(out.code, 0, "{out:?}");
    out.json()["runs"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Item 3: a dry run plans the group's application assignment as the run will find it.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_plan_to_adopt_the_groups_existing_application_assignment() {
    let mut seed = Seed::default();
    seeds::connect_agent(&mut seed, "Dee@example.com", "Dee", "Silva");
    let env = Env::with(seed, "").await;
    // The group exists and is assigned to the application once Ana is onboarded.
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    let before = writes(&env);

    let out = env.onboard(BEN, &["--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    assert_eq!(plan_action(&plan, "group_membership"), "create", "{plan}");
    assert_eq!(
        plan_action(&plan, "app_assignment"),
        "adopt",
        "the group is assigned already: the run adopts it: {plan}"
    );

    let file = agents_file(&env, "agents.csv", &[BEN.to_string()]);
    for bulk in ["never", "always"] {
        let out = env
            .run(&["batch", &file, "--dry-run", "--json", "--bulk-reads", bulk])
            .await;
        assert_eq!(out.code, 0, "{out:?}");
        let j = out.json();
        assert_eq!(j["plan"]["app_assignment"]["adopt"], 1, "{bulk}: {j}");
        assert!(
            j["plan"]["app_assignment"]["create"].is_null(),
            "{bulk}: {j}"
        );
    }

    let list = write(&env, "usernames.txt", "Dee@example.com\n");
    let out = env
        .run(&["migrate", "--usernames", &list, "--dry-run", "--json"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["plan"]["app_assignment"]["adopt"], 1, "{j}");
    assert_eq!(writes(&env), before, "dry runs write nothing");

    // What the dry run said is what the run does: no assignment is created.
    let assigned = env.applied("sso:CreateApplicationAssignment");
    assert_eq!(env.onboard(BEN, &[]).await.code, 0);
    assert_eq!(env.applied("sso:CreateApplicationAssignment"), assigned);
}

// ---------------------------------------------------------------------------------------
// Item 4: every AWS call the command makes is counted.
// ---------------------------------------------------------------------------------------

fn sandbox_calls(env: &Env) -> u64 {
    env.sb.calls().values().map(|c| c.calls).sum()
}

fn reported_calls(j: &Value) -> u64 {
    j["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["calls"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_counts_the_calls_of_agents_retried_in_their_earlier_run() {
    let env = Env::new().await;
    let file = agents_file(&env, "agents.csv", &[ANA.to_string(), BEN.to_string()]);
    env.faults(json!({"rules": [
        {"op": "connect:CreateUser", "action": "error", "code": "AccessDeniedException",
         "status": 403, "body_contains": ANA}
    ]}));
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["counts"]["failed"], 1, "{out:?}");

    // Fixed: the re-run retries Ana in her first run.
    env.faults(json!({"rules": []}));
    let before = sandbox_calls(&env);
    let creates = env.calls("connect:CreateUser");
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["done"], 1, "{j}");
    let create = find(&j, "calls", "api", "connect:CreateUser");
    assert_eq!(
        create["calls"].as_u64(),
        Some(env.calls("connect:CreateUser") - creates),
        "{j}"
    );
    assert_eq!(
        reported_calls(&j),
        sandbox_calls(&env) - before,
        "every call the sandbox saw is in the summary: {j}"
    );
}

// ---------------------------------------------------------------------------------------
// Item 7: every problem of every row.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_row_reports_every_problem_at_once() {
    let env = Env::new().await;
    let csv = write(
        &env,
        "agents.csv",
        "email,first_name,last_name,auto_accept,acw_timeout,phone_type\n\
         ana@example.com,Ana,Silva,maybe,-5,soft\n\
         ben@example.com,Ben,Okafor,yes,30,fax\n",
    );
    let out = env.run(&["batch", &csv]).await;
    assert_eq!(out.code, 2, "{out:?}");
    for needle in [
        "agents.csv:2: column \"auto_accept\": value \"maybe\"",
        "agents.csv:2: column \"acw_timeout\": invalid acw_timeout \"-5\"",
        "agents.csv:3: column \"phone_type\": value \"fax\"",
        "3 problem(s)",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {out:?}");
    }

    let jsonl = write(
        &env,
        "agents.jsonl",
        "{\"email\":\"ana@example.com\",\"first_name\":\"Ana\",\"last_name\":\"Silva\",\"auto_accept\":\"maybe\",\"acw_timeout\":-5}\n",
    );
    let out = env.run(&["batch", &jsonl]).await;
    assert_eq!(out.code, 2, "{out:?}");
    for needle in [
        "agents.jsonl:1: key \"auto_accept\": value \"maybe\"",
        "agents.jsonl:1: column \"acw_timeout\": invalid acw_timeout \"-5\"",
        "2 problem(s)",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {out:?}");
    }
    assert_eq!(writes(&env), 0);
    assert!(!env.state.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrected_row_for_retry_reports_every_problem_at_once() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "connect:CreateUser", "action": "error", "code": "AccessDeniedException",
         "status": 403}
    ]}));
    let out = env.onboard(ANA, &["--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let run = out.json()["runs"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    env.faults(json!({"rules": []}));
    let fixed = write(
        &env,
        "fixed.csv",
        "email,first_name,last_name,auto_accept,acw_timeout\nana@example.com,Ana,Silva,maybe,-5\n",
    );
    let before = writes(&env);
    let out = env.run(&["retry", &run, "--from", &fixed]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("fixed.csv:2: column \"auto_accept\""),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("line 2: invalid acw_timeout \"-5\""),
        "{out:?}"
    );
    assert_eq!(writes(&env), before);
}

// ---------------------------------------------------------------------------------------
// Item 10: rolling back done agents is confirmed; later adopting runs are marked.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rolling_back_a_done_agent_shows_the_plan_and_needs_yes_off_a_terminal() {
    let env = Env::new().await;
    let run = run_of(&env.onboard(ANA, &["--json"]).await);
    let before = writes(&env);

    let out = env.run(&["rollback", &run]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("connect_user: delete"), "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(writes(&env), before, "refused: nothing deleted");
    env.world().assert_onboarded_once(ANA);
    assert_eq!(agent_state(&env.status_json().await), "done");

    let out = env.run(&["rollback", &run, "--dry-run"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("dry run, nothing touched"), "{out:?}");
    for step in ["connect_user", "identity_user", "group_membership"] {
        assert!(out.stdout.contains(&format!("{step}: delete")), "{out:?}");
    }
    let out = env.run(&["rollback", &run, "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["dry_run"], true, "{j}");
    assert_eq!(j["agents"][0]["email"], ANA, "{j}");
    assert_eq!(j["agents"][0]["remove"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(writes(&env), before, "a dry run deletes nothing");

    let out = env.run(&["rollback", &run, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone(ANA);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_a_rollback_of_a_done_agent_is_confirmed_by_typing_yes() {
    let env = Env::new().await;
    let run = run_of(&env.onboard(ANA, &["--json"]).await);
    let before = writes(&env);
    let (code, shown) = on_a_terminal(&env, &["rollback", &run], "no\n").await;
    assert_eq!(code, 2, "{shown}");
    assert!(shown.contains("Type \"yes\" to go on"), "{shown}");
    assert!(shown.contains("rollback not confirmed"), "{shown}");
    assert_eq!(writes(&env), before, "declined: nothing deleted");
    env.world().assert_onboarded_once(ANA);

    let (code, shown) = on_a_terminal(&env, &["rollback", &run], "yes\n").await;
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("identity_user: delete"),
        "the plan came first: {shown}"
    );
    env.world().assert_gone(ANA);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_agent_is_rolled_back_without_asking() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "identitystore:CreateGroupMembership", "action": "error",
         "code": "AccessDeniedException", "status": 400}
    ]}));
    let out = env.onboard(ANA, &["--on-failure", "keep", "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let run = out.json()["runs"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    env.faults(json!({"rules": []}));
    let out = env.run(&["rollback", &run]).await;
    assert_eq!(out.code, 0, "no terminal, no --yes, and yet: {out:?}");
    env.world().assert_gone(ANA);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_run_that_adopted_what_a_rollback_deleted_is_no_longer_shown_done() {
    let env = Env::new().await;
    let first = run_of(&env.onboard(ANA, &["--json"]).await);
    let second = run_of(&env.onboard(ANA, &["--json"]).await);
    // The plan says so first.
    let out = env.run(&["rollback", &first, "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["agents"][0]["adopted_by"], json!([second]), "{j}");
    let out = env.run(&["rollback", &first, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone(ANA);

    let out = env.run(&["status", &second, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st = out.json();
    assert_eq!(agent_state(&st), "interrupted", "{st}");
    for id in ["connect_user", "identity_user", "group_membership"] {
        let s = step(&st, 0, id);
        assert_eq!(s["state"], "pending", "{id}: {st}");
        assert_eq!(s["adopted"], false, "{id}: {st}");
    }
    let why = st["runs"][0]["agents"][0]["last_error"].as_str().unwrap();
    assert!(why.contains(&format!("rollback {first}")), "{why}");
    assert!(why.contains(&format!("resume {second}")), "{why}");

    // The advice works: the agent is onboarded again, once.
    let out = env.run(&["resume", &second]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once(ANA);
}

// ---------------------------------------------------------------------------------------
// Item 11: one advice for one state.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_needing_attention_is_told_rollback_or_release_everywhere() {
    let env = Env::new().await;
    // The membership is refused, and so is the Connect user's deletion: needs attention.
    env.faults(json!({"rules": [
        {"op": "identitystore:CreateGroupMembership", "action": "error",
         "code": "AccessDeniedException", "status": 400},
        {"op": "connect:DeleteUser", "action": "error",
         "code": "AccessDeniedException", "status": 403}
    ]}));
    let out = env.onboard(ANA, &["--json"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    let run = out.json()["runs"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();

    let st = env.status_json().await;
    let next = st["runs"][0]["agents"][0]["next"]
        .as_str()
        .unwrap_or_default();
    assert!(
        next.contains(&format!("rollback {run} --email {ANA}")) && next.contains("release"),
        "status says what to run next: {st}"
    );
    let told = |out: &Out, what: &str| {
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains(&format!("rollback {run} --email {ANA}")) && text.contains("release"),
            "{what}: {out:?}"
        );
        assert!(
            !text.contains("`connect-onboard resume"),
            "{what}: never resume, which skips it: {out:?}"
        );
    };
    let out = env.onboard(ANA, &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    told(&out, "onboard again");
    let out = env.run(&["resume"]).await;
    told(&out, "resume");
    let file = agents_file(&env, "agents.csv", &[ANA.to_string()]);
    let out = env.run(&["batch", &file, "--json"]).await;
    told(&out, "batch");

    // Fixed: the rollback finishes, and the old compensation error goes with it.
    env.faults(json!({"rules": []}));
    let out = env.run(&["rollback", &run]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st = env.status_json().await;
    assert_eq!(agent_state(&st), "rolled_back", "{st}");
    let a = &st["runs"][0]["agents"][0];
    assert!(
        !a.to_string().contains("compensation of"),
        "no stale compensation error: {a}"
    );
    env.world().assert_gone(ANA);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_mistake_gets_the_same_exit_code_and_retry_says_when_nothing_is_left() {
    let env = Env::new().await;
    let run = run_of(&env.onboard(ANA, &["--json"]).await);
    let nobody = "nobody@example.com";
    let rollback = env.run(&["rollback", &run, "--email", nobody]).await;
    let release = env.run(&["release", &run, "--email", nobody]).await;
    assert_eq!(rollback.code, 2, "{rollback:?}");
    assert_eq!(release.code, 2, "{release:?}");
    for out in [&rollback, &release] {
        assert!(
            out.stderr
                .contains(&format!("run {run} has no agent {nobody}")),
            "{out:?}"
        );
    }

    for args in [vec!["retry"], vec!["retry", run.as_str()]] {
        let out = env.run(&args).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("nothing to retry"), "{args:?}: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 12: `status` before anything ran; a named config must exist.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn status_before_any_run_says_so_and_named_files_must_exist() {
    let env = Env::new().await;
    let out = env.run(&["status"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("no runs yet"), "{out:?}");
    let out = env.run(&["status", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json(), json!({"runs": []}));
    assert!(!env.state.exists(), "status creates no state file");

    // A directory with nothing in it: no config, no state.
    let empty = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(BIN)
        .arg("status")
        .current_dir(empty.path())
        .env("HOME", empty.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {:?}", out.stderr);
    assert!(stdout.contains("no runs yet"), "{stdout}");

    // A --state that was named and does not exist stays an error.
    let missing = env.dir.path().join("missing.db");
    let out = env.run(&["status", "--state", path_str(&missing)]).await;
    assert_eq!(out.code, 2, "{out:?}");

    // A --config that was named and does not exist is an error, even with --state.
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    let no_config = env.dir.path().join("nope.toml");
    let out = env
        .run(&[
            "--config",
            path_str(&no_config),
            "--state",
            path_str(&env.state),
            "status",
        ])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("nope.toml"), "{out:?}");
    // Without --config, --state alone needs no config file (as before).
    let out = tokio::process::Command::new(BIN)
        .args(["--state", path_str(&env.state), "status"])
        .current_dir(empty.path())
        .env("HOME", empty.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", out.stderr);
    assert!(String::from_utf8_lossy(&out.stdout).contains(ANA));
}
