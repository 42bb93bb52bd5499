//! Benchmark of `batch` against the sandbox, the real binary as a child process:
//!
//! 1. **quota** — `N` agents (default 500) with the sandbox enforcing AWS's default quotas
//!    scaled by `SCALE` (default 10: Connect 20 requests/s per API, burst 5), and the tool
//!    configured with the same limits. Reports wall time ÷ the bound (the largest, over
//!    APIs, of calls ÷ rate), calls per API per agent and throttled calls.
//! 2. **contended** — the same, with the sandbox granting CreateUser only 70 % of the
//!    configured rate (another client draining the bucket): wall ÷ the real bound, and
//!    throttled CreateUser calls per agent.
//! 3. **storm** — `STORM` agents (default 300) at the same ×`SCALE` quotas under a fault
//!    storm on every call: 30 % throttled (each service's own ThrottlingException; Identity
//!    Store's with `RetryAfterSeconds`), 5 % answered 5xx, 15 ms latency, 2 % of writes
//!    applied and then answered 5xx, a 3 s eventual-consistency window; no kills. Reports
//!    wall ÷ the clean bound (one CreateUser per agent at Connect's per-API rate: what the
//!    quota scenario's bound is) and the share of calls throttled.
//! 4. **overhead** — an unthrottled sandbox: the tool's CPU time per agent (user + system,
//!    checkpoints included) and peak RSS, at `OVERHEAD` agents (default 3000; set
//!    `OVERHEAD=3000,100000` for both sizes).
//! 5. **aws-cli** — `CLI` agents (default 200) through a sequential `aws` CLI loop
//!    (`connect create-user`, `identitystore create-user`, `create-group-membership`)
//!    against the same unthrottled sandbox, versus `batch` for the same number; skipped
//!    when `aws` is not installed.
//!
//! Run: `cargo bench --bench batch` (`ONLY=quota,contended,storm,overhead,aws-cli` to choose).

// Test and bench code: unwrap is how a check fails, and printing is its report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use connect_onboard_sandbox::{FaultConfig, Sandbox, SandboxHandle, SandboxOptions, Seed};

const BIN: &str = env!("CARGO_BIN_EXE_connect-onboard");
const INSTANCE: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wanted(scenario: &str) -> bool {
    std::env::var("ONLY").map_or(true, |v| v.split(',').any(|s| s == scenario))
}

async fn sandbox(faults: serde_json::Value) -> SandboxHandle {
    let mut seed = Seed::default();
    seed.connect_instances[0].max_users = 10_000_000;
    Sandbox::start(SandboxOptions {
        port: 0,
        seed,
        faults: serde_json::from_value::<FaultConfig>(faults).expect("faults"),
    })
    .await
    .expect("sandbox")
}

/// A config for the sandbox's instance with `[rate_limits]`, and a CSV of `n` agents.
fn files(dir: &Path, rate_limits: &str, n: usize, tag: &str) -> (PathBuf, PathBuf) {
    let config = dir.join(format!("{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            "[connect]\ninstance_id = \"{INSTANCE}\"\nregion = \"us-east-1\"\n[state]\npath = \"{}\"\n[rate_limits]\n{rate_limits}\n",
            dir.join(format!("{tag}.db")).display()
        ),
    )
    .unwrap();
    let csv = dir.join(format!("{tag}.csv"));
    let mut text = String::from("first name,last name,email address,routing profile name,security_profile_name_1|security_profile_name_2\n");
    for i in 0..n {
        text.push_str(&format!(
            "Agent,Number{i},{tag}{i}@example.com,Basic Routing Profile,Agent\n"
        ));
    }
    std::fs::write(&csv, text).unwrap();
    (config, csv)
}

/// CPU time (user + system) and peak RSS of the children reaped so far.
fn children_usage() -> (Duration, Duration, u64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_maxrss as u64 * 1024)
}

struct Run {
    wall: Duration,
    user: Duration,
    system: Duration,
    peak_rss: u64,
    json: serde_json::Value,
}

async fn batch(sb: &SandboxHandle, config: &Path, csv: &Path, concurrency: usize) -> Run {
    let (user0, sys0, _) = children_usage();
    let start = Instant::now();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args([
        "--config",
        config.to_str().unwrap(),
        "batch",
        csv.to_str().unwrap(),
    ])
    .args(["--json", "--concurrency", &concurrency.to_string()])
    .env_remove("AWS_PROFILE")
    .env("AWS_CONFIG_FILE", "/nonexistent")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    for (k, v) in sb.env_lines() {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("connect-onboard runs");
    let wall = start.elapsed();
    let (user1, sys1, peak_rss) = children_usage();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Run {
        wall,
        user: user1 - user0,
        system: sys1 - sys0,
        peak_rss,
        json,
    }
}

fn calls(json: &serde_json::Value) -> BTreeMap<String, (u64, u64)> {
    json["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["api"].as_str().unwrap().to_string(),
                (
                    c["calls"].as_u64().unwrap(),
                    c["throttled"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The rate (requests/s) the sandbox grants an API under the `aws` preset at `scale`.
fn granted(api: &str, scale: f64, create_user_share: f64) -> f64 {
    match api {
        "connect:CreateUser" => 2.0 * scale * create_user_share,
        a if a.starts_with("connect:") => 2.0 * scale,
        _ => 20.0 * scale,
    }
}

fn quota_run_report(name: &str, run: &Run, n: usize, scale: f64, share: f64) {
    let calls = calls(&run.json);
    let (bound_api, bound) = calls
        .iter()
        .map(|(api, (c, _))| (api.clone(), *c as f64 / granted(api, scale, share)))
        .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let total: u64 = calls.values().map(|c| c.0).sum();
    let throttled: u64 = calls.values().map(|c| c.1).sum();
    let cu = calls.get("connect:CreateUser").copied().unwrap_or((0, 0));
    println!(
        "{name}: {n} agents, wall {:.2} s, bound {:.2} s ({bound_api}), ratio {:.3}; throttled {throttled}/{total} calls ({:.2} %); CreateUser {:.3} per agent, throttled CreateUser {:.2} % of agents; done {}",
        run.wall.as_secs_f64(),
        bound,
        run.wall.as_secs_f64() / bound,
        100.0 * throttled as f64 / total.max(1) as f64,
        cu.0 as f64 / n as f64,
        100.0 * cu.1 as f64 / n as f64,
        run.json["counts"]["done"]
    );
    let per_agent: Vec<String> = calls
        .iter()
        .map(|(api, (c, _))| format!("{api} {:.2}", *c as f64 / n as f64))
        .collect();
    println!("  calls per agent: {}", per_agent.join(", "));
}

/// The write operations of the onboarding workflow and of its compensation.
const WRITES: [&str; 7] = [
    "connect:CreateUser",
    "identitystore:CreateUser",
    "identitystore:CreateGroupMembership",
    "sso:CreateApplicationAssignment",
    "connect:DeleteUser",
    "identitystore:DeleteUser",
    "identitystore:DeleteGroupMembership",
];

/// The storm of item 21 (as `tests/it/reliability.rs` writes one): 15 ms on every call;
/// then, of every call, 30 % throttled with the service's own error, 5 % answered 5xx, and of
/// the writes 2 % applied and then answered 5xx (exact marginals: the rules are tried in
/// order, each probability conditional on the earlier ones not firing); a 3 s
/// eventual-consistency window.
fn storm_faults(seed: u64) -> serde_json::Value {
    let mut rules = vec![serde_json::json!({"op": "*", "action": "latency", "latency_ms": 15})];
    for (svc, status) in [("connect", 429), ("identitystore", 429), ("sso", 400)] {
        rules.push(
            serde_json::json!({"op": format!("{svc}:*"), "action": "error",
            "code": "ThrottlingException", "status": status, "message": "Rate exceeded",
            "probability": 0.30}),
        );
    }
    rules.push(serde_json::json!({"op": "*", "action": "error", "probability": 0.05 / 0.70}));
    for op in WRITES {
        rules.push(
            serde_json::json!({"op": op, "action": "apply_then_error", "probability": 0.02 / 0.65}),
        );
    }
    serde_json::json!({"seed": seed, "consistency_window_ms": 3000, "rules": rules})
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let n: usize = var("N", 500);
    let scale: f64 = var("SCALE", 10.0);
    let limits = format!(
        "\"connect:*\" = {{ rate = {c}, burst = 5 }}\n\"identity_center\" = {{ rate = {i}, burst = 20 }}",
        c = 2.0 * scale,
        i = 20.0 * scale
    );
    let unlimited = "\"connect:*\" = { rate = 1000000.0, burst = 1000000 }\n\"identity_center\" = { rate = 1000000.0, burst = 1000000 }";

    if wanted("quota") {
        let sb =
            sandbox(serde_json::json!({"rate_limits": {"preset": "aws", "scale": scale}})).await;
        let (config, csv) = files(dir.path(), &limits, n, "quota");
        let run = batch(&sb, &config, &csv, 64).await;
        quota_run_report("quota", &run, n, scale, 1.0);
        sb.shutdown().await;
    }
    if wanted("contended") {
        let create = 2.0 * scale * 0.7;
        let sb = sandbox(
            serde_json::json!({"rate_limits": {"preset": "aws", "scale": scale,
            "ops": {"connect:CreateUser": {"rate": create, "burst": 5.0}}}}),
        )
        .await;
        let (config, csv) = files(dir.path(), &limits, n, "contended");
        let run = batch(&sb, &config, &csv, 64).await;
        quota_run_report("contended (CreateUser at 70 %)", &run, n, scale, 0.7);
        sb.shutdown().await;
    }
    if wanted("storm") {
        let storm_n: usize = var("STORM", 300);
        let mut faults = storm_faults(var("STORM_SEED", 1));
        faults["rate_limits"] = serde_json::json!({"preset": "aws", "scale": scale});
        let sb = sandbox(faults).await;
        let (config, csv) = files(dir.path(), &limits, storm_n, "storm");
        let run = batch(&sb, &config, &csv, 64).await;
        let calls = calls(&run.json);
        let total: u64 = calls.values().map(|c| c.0).sum();
        let throttled: u64 = calls.values().map(|c| c.1).sum();
        // A clean run's bound: one Connect CreateUser per agent at its per-API rate.
        let clean = storm_n as f64 / (2.0 * scale);
        println!(
            "storm: {storm_n} agents, wall {:.2} s, clean bound {clean:.2} s, ratio {:.2}; throttled {throttled}/{total} calls ({:.1} %); counts {}",
            run.wall.as_secs_f64(),
            run.wall.as_secs_f64() / clean,
            100.0 * throttled as f64 / total.max(1) as f64,
            run.json["counts"]
        );
        let per_agent: Vec<String> = calls
            .iter()
            .map(|(api, (c, t))| format!("{api} {:.2} ({t} throttled)", *c as f64 / storm_n as f64))
            .collect();
        println!("  calls per agent: {}", per_agent.join(", "));
        sb.shutdown().await;
    }
    if wanted("overhead") {
        let sizes: Vec<usize> = std::env::var("OVERHEAD")
            .unwrap_or_else(|_| "3000".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        for size in sizes {
            let sb = sandbox(serde_json::json!({"rate_limits": {"preset": "none"}})).await;
            let (config, csv) = files(dir.path(), unlimited, size, &format!("overhead{size}x"));
            let run = batch(&sb, &config, &csv, 64).await;
            println!(
                "overhead: {size} agents, wall {:.1} s, CPU {:.3} ms per agent ({:.3} user + {:.3} system), peak RSS {:.1} MiB (largest child so far), done {}",
                run.wall.as_secs_f64(),
                (run.user + run.system).as_secs_f64() * 1000.0 / size as f64,
                run.user.as_secs_f64() * 1000.0 / size as f64,
                run.system.as_secs_f64() * 1000.0 / size as f64,
                run.peak_rss as f64 / 1_048_576.0,
                run.json["counts"]["done"]
            );
            sb.shutdown().await;
        }
    }
    if wanted("aws-cli") {
        let cli_n: usize = var("CLI", 200);
        if std::process::Command::new("aws")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("aws-cli: skipped (no `aws` on PATH; pip install awscli)");
            return;
        }
        let sb = sandbox(serde_json::json!({"rate_limits": {"preset": "none"}})).await;
        let ids = sb.ids();
        let env: Vec<(String, String)> = sb.env_lines();
        let aws = |args: Vec<String>| {
            let mut c = std::process::Command::new("aws");
            c.args(&args).args(["--output", "json"]);
            for (k, v) in &env {
                c.env(k, v);
            }
            let out = c.output().expect("aws runs");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
        };
        let store = ids.identity_store_id.clone();
        let group = aws([
            "identitystore",
            "create-group",
            "--identity-store-id",
            &store,
            "--display-name",
            "CliAgents",
        ]
        .map(String::from)
        .to_vec())["GroupId"]
            .as_str()
            .unwrap()
            .to_string();
        let start = Instant::now();
        for i in 0..cli_n {
            let email = format!("cli{i}@example.com");
            aws(vec![
                "connect".into(),
                "create-user".into(),
                "--instance-id".into(),
                INSTANCE.into(),
                "--username".into(),
                email.clone(),
                "--identity-info".into(),
                format!("FirstName=Agent,LastName=Number{i}"),
                "--phone-config".into(),
                "PhoneType=SOFT_PHONE".into(),
                "--routing-profile-id".into(),
                ids.routing_profiles["Basic Routing Profile"].clone(),
                "--security-profile-ids".into(),
                ids.security_profiles["Agent"].clone(),
            ]);
            let user = aws(vec![
                "identitystore".into(),
                "create-user".into(),
                "--identity-store-id".into(),
                store.clone(),
                "--user-name".into(),
                email.clone(),
                "--display-name".into(),
                format!("Agent Number{i}"),
                "--name".into(),
                format!("GivenName=Agent,FamilyName=Number{i}"),
                "--emails".into(),
                format!("Value={email},Type=work,Primary=true"),
            ])["UserId"]
                .as_str()
                .unwrap()
                .to_string();
            aws(vec![
                "identitystore".into(),
                "create-group-membership".into(),
                "--identity-store-id".into(),
                store.clone(),
                "--group-id".into(),
                group.clone(),
                "--member-id".into(),
                format!("UserId={user}"),
            ]);
        }
        let cli = start.elapsed();
        let (config, csv) = files(dir.path(), unlimited, cli_n, "viatool");
        let run = batch(&sb, &config, &csv, 64).await;
        println!(
            "aws-cli: {cli_n} agents, sequential aws CLI loop {:.1} s, connect-onboard batch {:.2} s (with lookups, checkpoints and the assignment), ratio {:.1}x",
            cli.as_secs_f64(),
            run.wall.as_secs_f64(),
            cli.as_secs_f64() / run.wall.as_secs_f64()
        );
        sb.shutdown().await;
    }
}
