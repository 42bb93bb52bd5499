//! What a new admin meets in the first hour (issue 15): the command line's own promises —
//! files a rejected command must not touch, usage errors in JSON, flag ranges, help
//! layout, wait lines, progress wording, the report's rows and the demo's temporary state.

use serde_json::json;

use crate::harness::{agents_file, path_str, writes, Env, ONBOARD_ANA};

fn bad_file(env: &Env) -> String {
    let p = env.dir.path().join("bad.csv");
    std::fs::write(
        &p,
        "email,first_name,last_name,phone_type,desk_phone_number\nok@example.com,Ok,Row,soft,\nbad@example.com,Bad,Row,desk,12345\n",
    )
    .unwrap();
    path_str(&p).to_string()
}

#[tokio::test]
async fn a_rejected_batch_touches_no_report_and_creates_no_notice_directory() {
    let env = Env::new().await;
    let report = env.dir.path().join("report.csv");
    std::fs::write(&report, "the last run's report\n").unwrap();
    let notices = env.dir.path().join("notices");
    let fresh = env.dir.path().join("fresh.csv");
    let bad = bad_file(&env);
    for target in [&report, &fresh] {
        let out = env
            .run(&[
                "batch",
                &bad,
                "--report",
                path_str(target),
                "--notices",
                path_str(&notices),
            ])
            .await;
        assert_eq!(out.code, 2, "{out:?}");
    }
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        "the last run's report\n",
        "a rejected batch left the previous report alone"
    );
    assert!(
        !fresh.exists(),
        "no report file is created for a rejected batch"
    );
    assert!(
        !notices.exists(),
        "no notice directory is created for a rejected batch"
    );
    assert_eq!(writes(&env), 0);
    // No temporary file is left behind either.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_batch_replaces_the_report_whole_and_lists_invalid_rows_with_skip_invalid() {
    let env = Env::new().await;
    let report = env.dir.path().join("report.csv");
    std::fs::write(&report, "the last run's report\n").unwrap();
    let bad = bad_file(&env);
    let out = env
        .run(&[
            "batch",
            &bad,
            "--skip-invalid",
            "--report",
            path_str(&report),
        ])
        .await;
    assert_eq!(
        out.code, 1,
        "an invalid row makes the batch incomplete: {out:?}"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "email,outcome,run_id,connect_user_id,identity_user_id,error"
    );
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows.iter().any(|r| r.starts_with("ok@example.com,done,")),
        "{text}"
    );
    let invalid = rows
        .iter()
        .find(|r| r.starts_with("bad@example.com,invalid,"))
        .unwrap_or_else(|| panic!("the invalid row is reported: {text}"));
    assert!(invalid.contains("bad.csv:3"), "{invalid}");
    assert!(invalid.contains("12345"), "{invalid}");
}

#[tokio::test]
async fn a_rolled_back_agent_s_report_row_names_no_deleted_user() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "identitystore:CreateUser", "action": "error", "code": "ValidationException", "status": 400}
    ]}));
    let file = agents_file(&env, "one.csv", &["rb@example.com".to_string()]);
    let report = env.dir.path().join("report.jsonl");
    let out = env
        .run(&["batch", &file, "--report", path_str(&report)])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(env.world().connect_users.is_empty(), "rolled back");
    let row: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&report).unwrap().trim()).unwrap();
    assert_eq!(row["outcome"], "rolled_back", "{row}");
    assert!(
        row["connect_user_id"].is_null(),
        "the Connect user was deleted by the rollback: {row}"
    );
}

#[tokio::test]
async fn concurrency_zero_or_absurd_is_a_usage_error_before_anything_runs() {
    let env = Env::new().await;
    let file = agents_file(&env, "a.csv", &["c0@example.com".to_string()]);
    for value in ["0", "-1", "1001", "many"] {
        let flag = format!("--concurrency={value}");
        let flag = flag.as_str();
        for args in [
            vec!["batch", file.as_str(), flag],
            vec!["migrate", flag],
            vec!["resume", flag],
            vec!["retry", flag],
            vec!["offboard", "x@example.com", flag],
        ] {
            let out = env.run(&args).await;
            assert_eq!(out.code, 2, "{args:?}: {out:?}");
            assert!(out.stderr.contains("--concurrency"), "{args:?}: {out:?}");
        }
    }
    assert_eq!(writes(&env), 0);
    assert!(!env.state.exists(), "no state file");
    let ok = env.run(&["batch", &file, "--concurrency", "1000"]).await;
    assert_eq!(ok.code, 0, "{ok:?}");
}

#[tokio::test]
async fn usage_errors_print_json_with_json() {
    let env = Env::new().await;
    for args in [
        vec!["--json", "onboard", "--email", "a@example.com"],
        vec!["onboard", "--json", "--email", "a@example.com"],
        vec!["--json", "batch", "f.csv", "--concurrency", "0"],
        vec!["--json", "no-such-command"],
    ] {
        let out = env.run(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        let j = out.json();
        assert_eq!(j["exit_code"], 2, "{j}");
        assert!(
            !j["error"].as_str().unwrap_or_default().is_empty(),
            "{args:?}: {j}"
        );
    }
    let missing = env
        .run(&["--json", "onboard", "--email", "a@example.com"])
        .await
        .json();
    assert!(
        missing["error"].as_str().unwrap().contains("--first-name"),
        "{missing}"
    );
    // Without --json, stdout stays empty.
    let plain = env.run(&["onboard", "--email", "a@example.com"]).await;
    assert_eq!((plain.code, plain.stdout.as_str()), (2, ""), "{plain:?}");
    // Help is not an error.
    let help = env.run(&["--json", "--help"]).await;
    assert_eq!(help.code, 0, "{help:?}");
}

#[tokio::test]
async fn help_shows_the_command_s_own_flags_first_and_offboard_s_usage_says_one_of_two() {
    let env = Env::new().await;
    for cmd in ["onboard", "batch", "offboard", "status"] {
        let out = env.run(&[cmd, "--help"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let own = out.stdout.find("Options:").expect("own options");
        let global = out.stdout.find("Global options:").expect("global section");
        assert!(own < global, "{cmd}: {}", out.stdout);
        assert!(
            out.stdout[global..].contains("--state"),
            "{cmd}: global flags in their section"
        );
        assert!(
            !out.stdout[..global].contains("--state <STATE>"),
            "{cmd}: no global flag among the command's own"
        );
    }
    let onboard = env.run(&["onboard", "--help"]).await.stdout;
    let global = onboard.find("Global options:").unwrap();
    assert!(onboard[..global].contains("--email"), "{onboard}");
    let out = env.run(&["offboard"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("offboard (EMAIL... | --file FILE)"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_wait_line_names_its_agent() {
    let env = Env::new().await;
    env.faults(json!({"rules": [
        {"op": "connect:CreateUser", "action": "throttle", "times": 1}
    ]}));
    let out = env.run(&ONBOARD_ANA).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            "[ana.silva@example.com] connect:CreateUser: ThrottlingException, retrying in"
        ),
        "{}",
        out.stderr
    );
    // A start-up read's wait names the read.
    env.faults(json!({"rules": [
        {"op": "connect:DescribeInstance", "action": "throttle", "times": 1}
    ]}));
    let out = env.onboard("ben@example.com", &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("[start-up read] connect:DescribeInstance: ThrottlingException"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_dry_run_s_progress_says_planned_and_shows_no_early_eta() {
    let env = Env::new().await;
    let emails: Vec<String> = (0..3).map(|i| format!("p{i}@example.com")).collect();
    let file = agents_file(&env, "p.csv", &emails);
    let out = env.run(&["batch", &file, "--dry-run"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("progress: 3/3 agents (3 planned, 0 not planned"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("ETA"),
        "3 agents say nothing of a rate: {}",
        out.stderr
    );
    let run = env.run(&["batch", &file]).await;
    assert!(
        run.stderr
            .contains("progress: 3/3 agents (3 done, 0 not done"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn the_demo_removes_its_temporary_state_file_and_says_so() {
    let env = Env::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let out = env
        .run_with(&["demo"], &[("TMPDIR", path_str(tmp.path()))])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("removed"), "{}", out.stderr);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?} in TMPDIR");
}

#[tokio::test]
async fn a_rejected_file_s_problems_are_a_json_array_and_timestamps_have_fixed_width() {
    let env = Env::new().await;
    let bad = bad_file(&env);
    let out = env.run(&["--json", "batch", &bad]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let j = out.json();
    let invalid = j["invalid"].as_array().unwrap_or_else(|| panic!("{j}"));
    assert_eq!(invalid.len(), 1, "{j}");
    assert!(invalid[0].as_str().unwrap().contains("bad.csv:3"), "{j}");
    assert!(
        !j["error"].as_str().unwrap().contains('\n'),
        "the error is one line; the rows are the array: {j}"
    );
    // Every timestamp `status` shows has exactly three fractional digits.
    assert_eq!(env.run(&ONBOARD_ANA).await.code, 0);
    let status = env.status_json().await;
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    let run = &status["runs"][0];
    let agent = &run["agents"][0];
    for t in [
        &run["created_at"],
        &agent["created_at"],
        &agent["updated_at"],
        &agent["steps"][0]["updated_at"],
    ] {
        assert!(
            re.is_match(t.as_str().unwrap_or_default()),
            "{t} in {status}"
        );
    }
}
