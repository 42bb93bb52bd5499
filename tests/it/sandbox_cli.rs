//! `connect-onboard sandbox`: prints the env lines, serves the AWS CLI and connect-onboard
//! itself, and stops cleanly on Ctrl-C (SIGINT).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn standalone_sandbox_serves_the_cli_and_the_tool_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["sandbox", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut env_lines = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(kv) = line.strip_prefix("export ") {
                let (k, v) = kv.split_once('=').unwrap();
                env_lines.push((k.to_string(), v.to_string()));
            }
            if line.contains("Ctrl-C") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("sandbox prints its env lines");
    let endpoint = env_lines
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL line")
        .1
        .clone();
    assert!(endpoint.starts_with("http://127.0.0.1:"));
    assert!(env_lines.iter().any(|(k, _)| k == "AWS_ACCESS_KEY_ID"));

    // The tool itself, pointed at the standalone sandbox by those lines only.
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[connect]\ninstance_id = \"{INSTANCE}\"\n[state]\npath = \"{}\"\n",
            dir.path().join("s.db").display()
        ),
    )
    .unwrap();
    let mut c = tokio::process::Command::new(BIN);
    c.args([
        "--config",
        config.to_str().unwrap(),
        "onboard",
        "--email",
        "cli@example.com",
        "--first-name",
        "C",
        "--last-name",
        "L",
    ]);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.envs(env_lines.iter().cloned())
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("none"));
    let out = c.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The AWS CLI sees the user.
    match std::process::Command::new("aws")
        .args([
            "connect",
            "list-users",
            "--instance-id",
            INSTANCE,
            "--output",
            "json",
        ])
        .envs(env_lines.iter().cloned())
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .output()
    {
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let names: Vec<&str> = v["UserSummaryList"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["Username"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["cli@example.com"]);
        }
        Err(e) if std::env::var("CI").is_err() => {
            eprintln!("\n*** SKIPPING the AWS CLI part: aws not found ({e}) ***\n")
        }
        Err(e) => panic!("the AWS CLI is required in CI (pip install awscli): {e}"),
    }

    // Ctrl-C: a clean stop.
    let pid = child.id().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops on SIGINT")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_the_main_job_with_no_aws_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tokio::process::Command::new(BIN);
    c.args([
        "--state",
        dir.path().join("demo.db").to_str().unwrap(),
        "demo",
    ]);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", dir.path()).current_dir(dir.path());
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for agent in ["ana.silva@example.com", "ben.okafor@example.com"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(agent) && l.contains("done")),
            "{stdout}"
        );
    }
    assert!(
        stderr.contains("connect:CreateUser: ThrottlingException, retrying in"),
        "the demo shows a retry: {stderr}"
    );
    // The state it wrote is readable by `status`, with no config file at all (a named
    // `--config` must exist, so none is named).
    let mut s = tokio::process::Command::new(BIN);
    s.current_dir(dir.path());
    s.args([
        "--state",
        dir.path().join("demo.db").to_str().unwrap(),
        "status",
        "--json",
    ]);
    let st = s.output().await.unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["runs"][0]["target"]["connect_region"], "us-east-1",
        "the run records its regions"
    );
}
