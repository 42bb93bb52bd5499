//! `batch`: the console's bulk-upload CSV as-is, every row validated before any write,
//! re-runs without writes, dry runs, reports and notices, and pacing at AWS's quotas —
//! the real binary and SDK clients against the sandbox.

use connect_onboard_sandbox::FaultConfig;

use crate::harness::{path_str, step, writes, Env};

/// The console template's header, every column (the newer generation).
const HEADER: &str = "first name,last name,email address,secondary email address,mobile,password,user login,agent hierarchy,routing profile name,security_profile_name_1|security_profile_name_2,user_hierarchy_1|user_hierarchy_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds),tags";

fn row(first: &str, email: &str, phone_type: &str, phone: &str) -> String {
    format!(
        "{first},Silva,{email},,,,{email},,Basic Routing Profile,Agent,,{phone_type},{phone},yes,30,team|support||site|lisbon"
    )
}

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    path_str(&p).to_string()
}

#[tokio::test]
async fn the_console_template_with_every_column_onboards_each_agent_once() {
    let env = Env::new().await;
    let csv = [
        HEADER.to_string(),
        row("Ana", "Ana.Silva@Example.com", "soft", ""),
        row("Ben", "ben@example.com", "desk", "+12145550198"),
        row("Cy", "cy@example.com", "SOFT_PHONE", ""),
    ]
    .join("\n");
    let file = write(&env, "agents.csv", &csv);
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["done"], 3, "{j}");
    for email in ["ana.silva@example.com", "ben@example.com", "cy@example.com"] {
        env.world().assert_onboarded_once(email);
    }
    assert_eq!(
        env.applied("connect:CreateUser"),
        3,
        "one CreateUser per new agent"
    );
}

#[tokio::test]
async fn an_excel_saved_file_bom_crlf_quoted_cells_and_trailing_rows_is_read() {
    let env = Env::new().await;
    let csv = format!(
        "\u{feff}{HEADER}\r\n{}\r\n\"Ben, Jr\",\"Okafor\r\nSmith\",ben@example.com,,,,ben@example.com,,Basic Routing Profile,\"Agent\",,soft,,no,0,\r\nCy,Lee,bad-email,,,,,,Basic Routing Profile,Agent,,soft,,no,0,\r\n,,,,,,,,,,,,,,,\r\n\r\n",
        row("Ana", "ana@example.com", "soft", "")
    );
    let file = write(&env, "excel.csv", &csv);
    // Cy's row starts on physical line 5: Ben's quoted last name spans lines 3 and 4.
    let out = env.run(&["batch", &file]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("excel.csv:5: column \"email address\""),
        "{out:?}"
    );
    let out = env.run(&["batch", &file, "--skip-invalid"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    env.world().assert_onboarded_once("ana@example.com");
    env.world().assert_onboarded_once("ben@example.com");
}

#[tokio::test]
async fn thirty_invalid_rows_are_reported_at_once_and_nothing_is_written() {
    let env = Env::new().await;
    let mut lines = vec![HEADER.to_string(), row("Ok", "ok@example.com", "soft", "")];
    for i in 0..30 {
        // A desk phone without a valid E.164 number.
        lines.push(row("Bad", &format!("bad{i}@example.com"), "desk", "12345"));
    }
    let file = write(&env, "bad.csv", &lines.join("\n"));
    let out = env.run(&["batch", &file]).await;
    assert_eq!(out.code, 2, "{out:?}");
    for i in 0..30 {
        let at = format!("bad.csv:{}: column \"phone number\"", i + 3);
        assert!(out.stderr.contains(&at), "missing {at}: {out:?}");
    }
    assert!(out.stderr.contains("30 problem(s)"), "{out:?}");
    assert_eq!(writes(&env), 0, "zero writes");
    assert!(!env.state.exists(), "no state file");

    // --skip-invalid onboards the valid row and reports the rest (exit 1).
    let out = env.run(&["batch", &file, "--skip-invalid", "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let j = out.json();
    assert_eq!(j["invalid"].as_array().unwrap().len(), 30);
    assert_eq!(j["counts"]["done"], 1);
    env.world().assert_onboarded_once("ok@example.com");
}

#[tokio::test]
async fn duplicate_agents_name_both_lines() {
    let env = Env::new().await;
    let csv = [
        HEADER.to_string(),
        row("Ana", "ana@example.com", "soft", ""),
        row("Ana", "ANA@example.com", "soft", ""),
    ]
    .join("\n");
    let file = write(&env, "dup.csv", &csv);
    let out = env.run(&["batch", &file]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("dup.csv:3: agent ana@example.com is already on line 2"),
        "{out:?}"
    );
    assert_eq!(writes(&env), 0);
}

#[tokio::test]
async fn a_rerun_of_the_same_file_makes_zero_writes_and_a_dry_run_none_at_all() {
    let env = Env::new().await;
    let csv = [
        HEADER.to_string(),
        row("Ana", "ana@example.com", "soft", ""),
        row("Ben", "ben@example.com", "soft", ""),
    ]
    .join("\n");
    let file = write(&env, "agents.csv", &csv);
    let out = env.run(&["batch", &file, "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["plan"]["connect_user"]["create"], 2, "{j}");
    // Per agent, per step, in --json.
    assert_eq!(j["agents"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["agents"][0]["plan"]["identity_user"], "create", "{j}");
    assert_eq!(writes(&env), 0);
    assert!(!env.state.exists(), "a dry run writes no state file");

    let report = env.dir.path().join("report.csv");
    let notices = env.dir.path().join("notices");
    let out = env
        .run(&[
            "batch",
            &file,
            "--report",
            path_str(&report),
            "--notices",
            path_str(&notices),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let before = writes(&env);
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["counts"]["already_done"], 2);
    assert_eq!(writes(&env), before, "a re-run writes nothing");

    let rep = std::fs::read_to_string(&report).unwrap();
    assert!(rep.starts_with("email,outcome,run_id,connect_user_id,identity_user_id,error"));
    assert_eq!(
        rep.lines().filter(|l| l.contains(",done,")).count(),
        2,
        "{rep}"
    );
    let merge = std::fs::read_to_string(notices.join("notices.csv")).unwrap();
    assert!(
        merge.contains("ana@example.com,ana@example.com,https://"),
        "{merge}"
    );
    let notice = std::fs::read_to_string(notices.join("ben@example.com.txt")).unwrap();
    assert!(notice.contains("Forgot password"), "{notice}");
}

#[tokio::test]
async fn agents_are_paced_under_the_quota_so_the_sandbox_throttles_nothing() {
    let env = Env::new().await;
    // The sandbox enforces AWS's default quotas: Connect 2 requests/s (burst 5) per API.
    env.sb.set_faults(FaultConfig::aws_rate_limits(1.0));
    let mut lines = vec![HEADER.to_string()];
    for i in 0..12 {
        lines.push(row("Agent", &format!("a{i}@example.com"), "soft", ""));
    }
    let file = write(&env, "paced.csv", &lines.join("\n"));
    let out = env
        .run(&["batch", &file, "--json", "--concurrency", "12"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    // Twelve agents, twelve CreateUser calls: not one was throttled and retried.
    assert_eq!(env.calls("connect:CreateUser"), 12, "{out:?}");
    assert_eq!(env.applied("connect:CreateUser"), 12);
    let j = out.json();
    let calls = j["calls"].as_array().unwrap();
    let sum = |k: &str| -> u64 { calls.iter().map(|c| c[k].as_u64().unwrap()).sum() };
    // The Connect APIs have their own buckets: never throttled. Identity Center's one shared
    // bucket is also drawn on by the (not yet paced) preflight reads, so allow 1 %.
    for c in calls
        .iter()
        .filter(|c| c["api"].as_str().unwrap().starts_with("connect:"))
    {
        assert_eq!(c["throttled"], 0, "{c}");
    }
    assert!(sum("throttled") * 100 <= sum("calls"), "{j}");
    // At 2/s with a burst of 5, 12 CreateUser calls need at least 3.5 s.
    assert!(j["elapsed_ms"].as_u64().unwrap() >= 3_000, "{j}");
}

#[tokio::test]
async fn a_file_of_100000_rows_is_streamed_and_checked_before_any_write() {
    let env = Env::new().await;
    let path = env.dir.path().join("big.csv");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(w, "first name,last name,email address,routing profile name,security_profile_name_1|security_profile_name_2").unwrap();
        for i in 0..100_000 {
            writeln!(
                w,
                "Agent,Number{i},agent{i}@example.com,Basic Routing Profile,Agent"
            )
            .unwrap();
        }
        // The last row is bad: the whole file is read before anything is written.
        writeln!(w, "Agent,Last,not-an-email,Basic Routing Profile,Agent").unwrap();
    }
    let out = env.run(&["batch", path_str(&path)]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("big.csv:100002: column \"email address\""),
        "{out:?}"
    );
    assert_eq!(writes(&env), 0);
    assert!(!env.state.exists());
}

fn agents_csv(env: &Env, name: &str, n: usize) -> String {
    let mut lines = vec![HEADER.to_string()];
    for i in 0..n {
        lines.push(row("Agent", &format!("a{i}@example.com"), "soft", ""));
    }
    write(env, name, &lines.join("\n"))
}

#[tokio::test]
async fn bulk_reads_make_a_new_agent_cost_one_write_per_step_and_no_lookup() {
    let env = Env::new().await;
    let file = agents_csv(&env, "bulk.csv", 25);
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for i in 0..25 {
        env.world()
            .assert_onboarded_once(&format!("a{i}@example.com"));
    }
    // One write per step per agent...
    assert_eq!(env.calls("connect:CreateUser"), 25);
    assert_eq!(env.calls("identitystore:CreateUser"), 25);
    assert_eq!(env.calls("identitystore:CreateGroupMembership"), 25);
    assert_eq!(
        env.applied("sso:CreateApplicationAssignment"),
        1,
        "the group, once"
    );
    // ...and no per-agent read: the directories were listed once.
    for op in [
        "connect:SearchUsers",
        "connect:DescribeUser",
        "identitystore:GetUserId",
        "identitystore:DescribeUser",
        "identitystore:GetGroupMembershipId",
    ] {
        assert_eq!(env.calls(op), 0, "{op}: {:?}", env.sb.calls());
    }
    assert_eq!(env.calls("connect:ListUsers"), 1);
    assert_eq!(env.calls("identitystore:ListUsers"), 1);
}

#[tokio::test]
async fn bulk_reads_adopt_what_exists_and_refuse_conflicts_like_lookups_do() {
    use connect_onboard_sandbox::world::{SeedConnectUser, SeedIdentityUser, SeedMembership};
    let mut seed = connect_onboard_sandbox::Seed::default();
    // a0: exists on both sides and in the group; a1: only its Connect user exists;
    // a2: its email belongs to another Identity Store user (a conflict).
    seed.connect_instances[0].users.push(SeedConnectUser {
        username: "a0@example.com".into(),
        first_name: Some("Agent".into()),
        last_name: Some("Silva".into()),
        security_profiles: vec!["Agent".into()],
        routing_profile: Some("Basic Routing Profile".into()),
        ..Default::default()
    });
    seed.connect_instances[0].users.push(SeedConnectUser {
        username: "a1@example.com".into(),
        first_name: Some("Agent".into()),
        last_name: Some("Silva".into()),
        security_profiles: vec!["Agent".into()],
        routing_profile: Some("Basic Routing Profile".into()),
        ..Default::default()
    });
    for (name, email) in [
        ("a0@example.com", "a0@example.com"),
        ("someone.else", "a2@example.com"),
    ] {
        seed.identity_users.push(SeedIdentityUser {
            user_name: name.into(),
            display_name: Some("X".into()),
            given_name: "X".into(),
            family_name: "Y".into(),
            email: Some(email.into()),
            ..Default::default()
        });
    }
    seed.memberships.push(SeedMembership {
        group: "ConnectAgents".into(),
        user: "a0@example.com".into(),
        ..Default::default()
    });
    let env = Env::with(seed, "").await;
    let file = agents_csv(&env, "mixed.csv", 22);
    let out = env
        .run(&["batch", &file, "--json", "--bulk-reads", "always"])
        .await;
    assert_eq!(out.code, 1, "a2 is in conflict: {out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["done"], 21, "{j}");
    assert_eq!(j["counts"]["failed"], 1, "{j}");
    let a2 = j["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["email"] == "a2@example.com")
        .unwrap();
    assert!(
        a2["error"].as_str().unwrap().contains("someone.else"),
        "{a2}"
    );
    // Adopted, not created again; nothing written for the conflict.
    assert_eq!(
        env.applied("connect:CreateUser"),
        19,
        "a0 and a1 adopted, a2 refused"
    );
    assert_eq!(
        env.applied("identitystore:CreateUser"),
        20,
        "a0 adopted, a2 refused"
    );
    assert_eq!(env.applied("identitystore:CreateGroupMembership"), 20);
    env.world().assert_onboarded_once("a0@example.com");
    env.world().assert_onboarded_once("a1@example.com");
    assert_eq!(env.calls("connect:SearchUsers"), 0);
}

#[tokio::test]
async fn retry_finishes_agents_after_the_cause_is_fixed() {
    let env = Env::new().await;
    let csv = [
        HEADER.to_string(),
        row("Ana", "ana@example.com", "soft", ""),
        row("Ben", "ben@example.com", "desk", "+12145550198"),
        row("Cy", "cy@example.com", "soft", ""),
    ]
    .join("\n");
    let file = write(&env, "agents.csv", &csv);
    // Ana's Connect user is refused (a permission missing); Ben's desk phone is refused.
    env.faults(serde_json::json!({"rules": [
        {"op": "connect:CreateUser", "action": "error", "code": "AccessDeniedException",
         "status": 403, "body_contains": "ana@example.com"},
        {"op": "connect:CreateUser", "action": "error", "code": "InvalidParameterException",
         "status": 400, "body_contains": "+12145550198"}
    ]}));
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["done"], 1, "{j}");
    assert_eq!(
        j["counts"]["failed"], 2,
        "the first step refused: nothing to roll back: {j}"
    );
    let run = j["run_id"].as_str().unwrap().to_string();

    // The permission is granted; Ben's row is corrected to a soft phone.
    env.faults(serde_json::json!({"rules": [
        {"op": "connect:CreateUser", "action": "error", "code": "InvalidParameterException",
         "status": 400, "body_contains": "+12145550198"}
    ]}));
    let fixed = write(
        &env,
        "fixed.csv",
        &[
            HEADER.to_string(),
            row("Ben", "ben@example.com", "soft", ""),
        ]
        .join("\n"),
    );
    let before = env.applied("connect:CreateUser");
    let out = env.run(&["retry", &run, "--from", &fixed, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let agents = out.json()["runs"][0]["agents"].clone();
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "done"),
        "{agents}"
    );
    assert_eq!(
        env.applied("connect:CreateUser"),
        before + 2,
        "Ana and Ben, once each"
    );
    for email in ["ana@example.com", "ben@example.com", "cy@example.com"] {
        env.world().assert_onboarded_once(email);
    }
    // Nothing left to retry: a second retry writes nothing.
    let before = writes(&env);
    let out = env.run(&["retry", &run]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(writes(&env), before);
}

#[tokio::test]
async fn a_throttled_call_is_retried_as_a_retry_and_is_not_an_agent_failure() {
    let env = Env::new().await;
    let file = write(
        &env,
        "one.csv",
        &[
            HEADER.to_string(),
            row("Ana", "ana@example.com", "soft", ""),
        ]
        .join("\n"),
    );
    env.faults(serde_json::json!({"rules": [
        {"op": "connect:CreateUser", "action": "throttle", "times": 1}
    ]}));
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    let create = j["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["api"] == "connect:CreateUser")
        .unwrap()
        .clone();
    assert_eq!(create["calls"], 2, "{create}");
    assert_eq!(
        create["retries"], 1,
        "the second call is paced as a retry: {create}"
    );
    assert_eq!(create["throttled"], 1, "{create}");
    env.world().assert_onboarded_once("ana@example.com");
}

#[tokio::test]
async fn a_rerun_of_a_done_file_lists_nothing_and_writes_nothing() {
    let env = Env::new().await;
    let file = agents_csv(&env, "bulk.csv", 21);
    let out = env.run(&["batch", &file]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        env.calls("identitystore:ListUsers"),
        1,
        "bulk reads for 21 new agents"
    );
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["counts"]["already_done"], 21);
    assert_eq!(
        env.calls("identitystore:ListUsers"),
        1,
        "no new agent: no listing"
    );
    assert_eq!(env.calls("connect:CreateUser"), 21);
}

#[tokio::test]
async fn a_contended_run_adapts_without_a_retry_storm() {
    let env = Env::new().await;
    // The tool is configured for 20 CreateUser/s; another client leaves it 10 (burst 5).
    std::fs::write(
        &env.config,
        std::fs::read_to_string(&env.config).unwrap()
            + "[rate_limits]\n\"connect:*\" = { rate = 20.0, burst = 5 }\n",
    )
    .unwrap();
    env.sb.set_faults(
        serde_json::from_value(serde_json::json!({"rate_limits": {"preset": "none",
            "ops": {"connect:CreateUser": {"rate": 10.0, "burst": 5.0}}}}))
        .unwrap(),
    );
    let file = agents_csv(&env, "contended.csv", 40);
    let out = env
        .run(&["batch", &file, "--json", "--concurrency", "40"])
        .await;
    assert_eq!(out.code, 0, "throttles are not agent failures: {out:?}");
    assert_eq!(env.applied("connect:CreateUser"), 40);
    // Unpaced, 35 of the 40 first attempts would be throttled at once, then retried in
    // waves. Adaptive pacing: a handful. (11 since the pacer tells throttles that follow
    // its rate from background ones: its first decrease, sized on a few answers, is held
    // until the share since it is measured, where each throttle used to cut again: 6.)
    let calls = env.calls("connect:CreateUser");
    assert!(
        calls <= 54,
        "{calls} CreateUser calls for 40 agents: {out:?}"
    );
}

#[tokio::test]
async fn a_rerun_retries_a_kept_failure_in_its_own_run_so_what_it_created_stays_owned() {
    let env = Env::new().await;
    let file = write(
        &env,
        "one.csv",
        &[
            HEADER.to_string(),
            row("Ana", "ana@example.com", "soft", ""),
        ]
        .join("\n"),
    );
    // The Identity Store refuses Ana's user: her Connect user is kept (--on-failure keep).
    env.faults(serde_json::json!({"rules": [
        {"op": "identitystore:CreateUser", "action": "error", "code": "AccessDeniedException",
         "status": 400}
    ]}));
    let out = env
        .run(&["batch", &file, "--on-failure", "keep", "--json"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    let first = out.json()["run_id"].as_str().unwrap().to_string();
    env.faults(serde_json::json!({"rules": []}));
    let out = env.run(&["batch", &file, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert!(
        j["run_id"].is_null(),
        "no new run: the agent was retried in {first}: {j}"
    );
    env.world().assert_onboarded_once("ana@example.com");
    assert_eq!(
        env.applied("connect:CreateUser"),
        1,
        "the kept Connect user is not re-created"
    );
    // Still owned by the first run: its rollback removes everything it created.
    let st = env.status_json().await;
    assert_eq!(st["runs"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(step(&st, 0, "connect_user")["owned"], true, "{st}");
    let out = env.run(&["rollback", &first, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone("ana@example.com");
}

#[tokio::test]
async fn a_dry_run_plans_from_the_same_bulk_reads_as_the_run() {
    let env = Env::new().await;
    let file = agents_csv(&env, "plan.csv", 21);
    let out = env.run(&["batch", &file, "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["counts"]["planned"], 21);
    assert_eq!(env.calls("identitystore:ListUsers"), 1, "listed once");
    assert_eq!(env.calls("connect:SearchUsers"), 0, "no per-agent lookup");
    assert_eq!(
        env.calls("identitystore:GetUserId"),
        0,
        "no per-agent lookup"
    );
    assert_eq!(writes(&env), 0);
}
