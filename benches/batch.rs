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
//! 6. **apply** (issue 17) — `N` existing, complete agents seeded straight into the world at
//!    the same ×`SCALE` quotas; `apply` of a roster moving every agent to another routing
//!    profile and every other one also to two security profiles, at each concurrency of
//!    `APPLY_CONCURRENCY` (default `16,64`), then the same roster again. Reports wall ÷ the
//!    bound, calls per API per agent, throttled calls, CPU per agent; for the re-run its
//!    writes and reads per 100 agents. `REPS` (default 1) repeats it and prints medians.
//! 7. **ddb-quota** (issue 18) — the quota batch (`N` agents at ×`SCALE`) on SQLite, then on
//!    a DynamoDB table (moto's server behind a counting proxy, see `Table`): wall ÷ bound,
//!    DynamoDB requests per agent by operation, throttled share, CPU per agent of each
//!    (`SHARED=false`: the table's runs with `[rate_limits] shared = false`).
//! 8. **ddb-shared** (issue 18) — `PROCS` processes (default 3) of `PER` agents (default 300)
//!    each, disjoint files, one table, started together at the ×`SCALE` quotas; with the
//!    shared rate budget, then with `[rate_limits] shared = false` (`SHARES=true` for the
//!    first only): wall ÷ the bound of all agents, throttled share, CreateUser the sandbox
//!    applied.
//! 9. **ddb-latency** (issue 18) — `OVERHEAD` agents (default 3000) unthrottled, the sandbox
//!    answering each call after `LATENCY` ms (default `5,50`), on SQLite and on the table:
//!    CPU per agent (`BACKENDS=sqlite` for SQLite alone). `PIN=true` runs the tool on CPU 0
//!    and this process (the sandbox) and moto on CPU 1 (`taskset`): AWS is not on the
//!    caller's cores, and on a 2-core VM a saturated moto beside the tool inflated its CPU
//!    time by a third (the same build 2.0–3.2 ms per agent, tracking moto's answer time).
//!
//! 10. **sync-first**, **sync-second**, **sync-events** (issue 19) — `sync` of an Identity
//!     Store group of `N` members at the same ×`SCALE` quotas: the first run, a second with
//!     nothing changed, and `sync --watch --queue` on moto's SQS (`EVENTS` additions, default
//!     50, each sent as its event: send → Connect user p50/p95). See `batch/sync.rs`.
//!
//! The three DynamoDB scenarios and `sync-events` need `moto_server` (`pip install
//! 'moto[server]'`); they and the sync ones run only when `ONLY` names them. `REPS` repeats
//! `apply`, them and the sync ones, and prints medians.
//!
//! Run: `cargo bench --bench batch` (`ONLY=quota,contended,storm,overhead,aws-cli,apply` to
//! choose; `ONLY=ddb-shared,ddb-quota,ddb-latency` for the table's;
//! `ONLY=sync-first,sync-second,sync-events` for sync's).

// Test and bench code: unwrap is how a check fails, and printing is its report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connect_onboard_sandbox::{FaultConfig, Sandbox, SandboxHandle, SandboxOptions, Seed};

#[path = "batch/sync.rs"]
mod sync;

/// The binary under test: `BIN=PATH` runs another build of it (to compare two builds in one
/// bench session), else the one cargo built with this bench.
fn bin() -> String {
    std::env::var("BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_connect-onboard").to_string())
}

/// `PIN=true`: the tool on CPU 0, the bench (the sandbox, moto) on CPU 1.
fn pinned() -> bool {
    std::env::var("PIN").is_ok_and(|v| v == "true")
}

/// A command running the binary under test (on CPU 0 when [`pinned`]; `taskset` execs it,
/// so the child's pid and its CPU time are the tool's).
fn tool_command() -> tokio::process::Command {
    if pinned() {
        let mut cmd = tokio::process::Command::new("taskset");
        cmd.args(["-c", "0", &bin()]);
        cmd
    } else {
        tokio::process::Command::new(bin())
    }
}
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
    let state = format!("path = \"{}\"", dir.join(format!("{tag}.db")).display());
    files_on(dir, &state, rate_limits, n, tag)
}

/// `files` with the `[state]` line given (`url = "dynamodb://TABLE"` for the table).
fn files_on(dir: &Path, state: &str, rate_limits: &str, n: usize, tag: &str) -> (PathBuf, PathBuf) {
    let config = dir.join(format!("{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            "[connect]\ninstance_id = \"{INSTANCE}\"\nregion = \"us-east-1\"\n[state]\n{state}\n[rate_limits]\n{rate_limits}\n"
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
    code: Option<i32>,
}

async fn batch(sb: &SandboxHandle, config: &Path, csv: &Path, concurrency: usize) -> Run {
    tool(sb, config, "batch", csv, concurrency).await
}

/// `connect-onboard --config CONFIG COMMAND FILE --json --concurrency N`, timed.
async fn tool(
    sb: &SandboxHandle,
    config: &Path,
    command: &str,
    file: &Path,
    concurrency: usize,
) -> Run {
    tool_with(sb, &[], config, command, file, concurrency).await
}

/// `tool` with more environment (`extra`: the DynamoDB endpoint).
async fn tool_with(
    sb: &SandboxHandle,
    extra: &[(String, String)],
    config: &Path,
    command: &str,
    file: &Path,
    concurrency: usize,
) -> Run {
    let (user0, sys0, _) = children_usage();
    let start = Instant::now();
    let out = command_for(sb, extra, config, command, file, concurrency)
        .output()
        .await
        .expect("connect-onboard runs");
    let wall = start.elapsed();
    let (user1, sys1, peak_rss) = children_usage();
    run_of(out, wall, user1 - user0, sys1 - sys0, peak_rss)
}

fn run_of(
    out: std::process::Output,
    wall: Duration,
    user: Duration,
    system: Duration,
    peak_rss: u64,
) -> Run {
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Run {
        wall,
        user,
        system,
        peak_rss,
        json,
        code: out.status.code(),
    }
}

/// The child's command line and environment (the sandbox's, then `extra`).
fn command_for(
    sb: &SandboxHandle,
    extra: &[(String, String)],
    config: &Path,
    command: &str,
    file: &Path,
    concurrency: usize,
) -> tokio::process::Command {
    let mut cmd = tool_command();
    cmd.args([
        "--config",
        config.to_str().unwrap(),
        command,
        file.to_str().unwrap(),
    ])
    .args(["--json", "--concurrency", &concurrency.to_string()])
    .env_remove("AWS_PROFILE")
    .env("AWS_CONFIG_FILE", "/nonexistent")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    for (k, v) in sb.env_lines().into_iter().chain(extra.iter().cloned()) {
        cmd.env(k, v);
    }
    cmd
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

/// Seeds `n` complete agents `{tag}{i}@example.com` straight into the world (no batch run):
/// a Connect user on "Basic Routing Profile" and "Agent", its Identity Store user (UserName =
/// email, primary work email), its membership of the agents' group, and the group assigned
/// to the application (once). Visible at once, as if made long ago.
fn seed_agents(sb: &SandboxHandle, n: usize, tag: &str) {
    let ids = sb.ids();
    let basic = ids.routing_profiles["Basic Routing Profile"].clone();
    let agent = ids.security_profiles["Agent"].clone();
    let group = ids.groups["ConnectAgents"].clone();
    sb.seed_world(|w| {
        w.add_assignment(&ids.application_arn, "GROUP", &group)
            .unwrap();
        for i in 0..n {
            let email = format!("{tag}{i}@example.com");
            let last = format!("Number{i}");
            let id = w
                .add_connect_user(INSTANCE, &email, "Agent", &last)
                .unwrap();
            let user = w
                .connect_instances
                .get_mut(INSTANCE)
                .unwrap()
                .users
                .get_mut(&id)
                .unwrap();
            user.routing_profile_id = basic.clone();
            user.security_profile_ids = vec![agent.clone()];
            let uid = w.add_identity_user(&email, &email, "Agent", &last).unwrap();
            w.add_membership(&group, &uid).unwrap();
        }
    });
}

/// The roster of the apply scenario (native CSV): every agent moves to "Sales Routing
/// Profile"; every other one (even `i`) also gets `Agent|QualityAnalyst`.
fn roster(dir: &Path, n: usize, tag: &str) -> PathBuf {
    let path = dir.join(format!("{tag}-roster.csv"));
    let mut text = String::from("email,routing_profile,security_profiles\n");
    for i in 0..n {
        let profiles = if i % 2 == 0 {
            "Agent|QualityAnalyst"
        } else {
            "Agent"
        };
        text.push_str(&format!(
            "{tag}{i}@example.com,Sales Routing Profile,{profiles}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// How many of the seeded agents the world shows as the roster wants them: on "Sales
/// Routing Profile", with `Agent` and `QualityAnalyst` for even `i`, `Agent` alone for odd.
fn converged_agents(sb: &SandboxHandle, n: usize, tag: &str) -> usize {
    let ids = sb.ids();
    let sales = ids.routing_profiles["Sales Routing Profile"].clone();
    let mut both = vec![
        ids.security_profiles["Agent"].clone(),
        ids.security_profiles["QualityAnalyst"].clone(),
    ];
    both.sort();
    let agent = vec![ids.security_profiles["Agent"].clone()];
    sb.seed_world(|w| {
        let inst = &w.connect_instances[INSTANCE];
        (0..n)
            .filter(|i| {
                let Some(u) = inst.user_named(&format!("{tag}{i}@example.com")) else {
                    return false;
                };
                let mut profiles = u.security_profile_ids.clone();
                profiles.sort();
                u.routing_profile_id == sales
                    && profiles
                        == if i % 2 == 0 {
                            both.clone()
                        } else {
                            agent.clone()
                        }
            })
            .count()
    })
}

/// Is `api` (`service:Operation`) a write?
fn is_write(api: &str) -> bool {
    let op = api.split(':').nth(1).unwrap_or(api);
    [
        "Create",
        "Update",
        "Delete",
        "Tag",
        "Untag",
        "Put",
        "Associate",
        "Disassociate",
    ]
    .iter()
    .any(|p| op.starts_with(p))
}

/// One apply scenario's figures: the first apply, then the same roster again.
struct ApplyFigures {
    ratio: f64,
    wall: f64,
    throttled_share: f64,
    cpu_ms_per_agent: f64,
    rerun_wall: f64,
    rerun_writes: u64,
    rerun_reads_per_100: f64,
}

async fn apply_scenario(
    dir: &Path,
    limits: &str,
    n: usize,
    scale: f64,
    concurrency: usize,
    tag: &str,
) -> ApplyFigures {
    let sb = sandbox(serde_json::json!({"rate_limits": {"preset": "aws", "scale": scale}})).await;
    seed_agents(&sb, n, tag);
    let (config, _) = files(dir, limits, 0, tag);
    let roster = roster(dir, n, tag);

    // 1. Every agent changes; a watcher notes when the sandbox saw the first and the last
    // UpdateUserRoutingProfile (the bound's API), to split the wall time.
    let start = Instant::now();
    let watcher = timeline(&sb, "connect:UpdateUserRoutingProfile", n, start);
    let run = tool(&sb, &config, "apply", &roster, concurrency).await;
    watcher.abort();
    let (first, last) = watcher.await.unwrap_or_default();
    let calls = calls(&run.json);
    let (bound_api, bound) = calls
        .iter()
        .map(|(api, (c, _))| (api.clone(), *c as f64 / granted(api, scale, 1.0)))
        .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let total: u64 = calls.values().map(|c| c.0).sum();
    let throttled: u64 = calls.values().map(|c| c.1).sum();
    let wall = run.wall.as_secs_f64();
    let cpu = (run.user + run.system).as_secs_f64() * 1000.0 / n as f64;
    let changed_sp = n.div_ceil(2);
    let rp = calls
        .get("connect:UpdateUserRoutingProfile")
        .map_or(0, |c| c.0);
    let sp = calls
        .get("connect:UpdateUserSecurityProfiles")
        .map_or(0, |c| c.0);
    println!(
        "apply c={concurrency}: {n} agents, exit {:?}, wall {wall:.2} s, bound {bound:.2} s ({bound_api}), ratio {:.3}; throttled {throttled}/{total} calls ({:.2} %); UpdateUserRoutingProfile {rp} for {n} changed, UpdateUserSecurityProfiles {sp} for {changed_sp} changed; CPU {cpu:.3} ms per agent ({:.3} user + {:.3} system); outcomes {}",
        run.code,
        wall / bound,
        100.0 * throttled as f64 / total.max(1) as f64,
        run.user.as_secs_f64() * 1000.0 / n as f64,
        run.system.as_secs_f64() * 1000.0 / n as f64,
        run.json["outcomes"]
    );
    let per_agent: Vec<String> = calls
        .iter()
        .map(|(api, (c, t))| format!("{api} {:.3} ({t} throttled)", *c as f64 / n as f64))
        .collect();
    println!("  calls per agent: {}", per_agent.join(", "));
    println!(
        "  timeline (2 ms polls): first UpdateUserRoutingProfile at {:.3} s, last at {:.3} s (span {:.3} s; the server's (n - burst 5) / rate = {:.3} s, the tool's pacing (n - 4) / (0.99 rate) = {:.3} s), exit {:.3} s after it",
        first.as_secs_f64(),
        last.as_secs_f64(),
        (last - first).as_secs_f64(),
        (n as f64 - 5.0) / (2.0 * scale),
        (n as f64 - 4.0) / (0.99 * 2.0 * scale),
        wall - last.as_secs_f64()
    );
    // The sandbox's own view: the writes it received, and every agent converged.
    let served = sb.calls();
    let applied = |op: &str| served.get(op).map_or(0, |c| c.applied);
    let converged = converged_agents(&sb, n, tag);
    println!(
        "  sandbox: UpdateUserRoutingProfile applied {}, UpdateUserSecurityProfiles applied {}, writes received {}; agents converged {converged}/{n}",
        applied("connect:UpdateUserRoutingProfile"),
        applied("connect:UpdateUserSecurityProfiles"),
        sb.write_calls()
    );

    // 2. The same roster again: every agent unchanged.
    let writes_before = sb.write_calls();
    let again = tool(&sb, &config, "apply", &roster, concurrency).await;
    let served_writes = sb.write_calls() - writes_before;
    let calls2 = self::calls(&again.json);
    let writes: u64 = calls2
        .iter()
        .filter(|(api, _)| is_write(api))
        .map(|(_, c)| c.0)
        .sum();
    let reads: u64 = calls2
        .iter()
        .filter(|(api, _)| !is_write(api))
        .map(|(_, c)| c.0)
        .sum();
    let hundreds = n as f64 / 100.0;
    let rerun_wall = again.wall.as_secs_f64();
    println!(
        "  re-run: exit {:?}, wall {rerun_wall:.2} s, writes {writes} (sandbox received {served_writes}), reads {reads} ({:.2} per 100 agents), CPU {:.3} ms per agent; outcomes {}",
        again.code,
        reads as f64 / hundreds,
        (again.user + again.system).as_secs_f64() * 1000.0 / n as f64,
        again.json["outcomes"]
    );
    let reads_by_api: Vec<String> = calls2
        .iter()
        .map(|(api, (c, _))| format!("{api} {c}"))
        .collect();
    println!("  re-run calls: {}", reads_by_api.join(", "));
    sb.shutdown().await;
    ApplyFigures {
        ratio: wall / bound,
        wall,
        throttled_share: 100.0 * throttled as f64 / total.max(1) as f64,
        cpu_ms_per_agent: cpu,
        rerun_wall,
        rerun_writes: writes,
        rerun_reads_per_100: reads as f64 / hundreds,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn apply_medians(concurrency: usize, runs: &[ApplyFigures]) {
    let m = |f: fn(&ApplyFigures) -> f64| median(runs.iter().map(f).collect());
    println!(
        "apply c={concurrency} medians of {}: ratio {:.3}, wall {:.2} s, throttled {:.2} %, CPU {:.3} ms per agent; re-run wall {:.2} s, writes {} (max), reads {:.2} per 100 agents",
        runs.len(),
        m(|f| f.ratio),
        m(|f| f.wall),
        m(|f| f.throttled_share),
        m(|f| f.cpu_ms_per_agent),
        m(|f| f.rerun_wall),
        runs.iter().map(|f| f.rerun_writes).max().unwrap_or(0),
        m(|f| f.rerun_reads_per_100),
    );
}

/// moto's server (`pip install 'moto[server]'`, as `tests/it/moto.rs` starts it) behind a
/// counting proxy: every request the child sends to the table passes through the proxy,
/// which reads its head (`X-Amz-Target: DynamoDB_20120810.OPERATION`) and body
/// (`Content-Length` bytes), counts it by operation (`OPERATION (budget)` when its body
/// names the shared budget's item, `#BUDGET`), and forwards it as received (see `relay`
/// for the connections and the answers).
struct Table {
    moto: std::process::Child,
    url: String,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Table {
    fn start() -> Option<Table> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let moto = match std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                println!(
                    "DynamoDB scenarios: skipped (moto_server: {e}; pip install 'moto[server]')"
                );
                return None;
            }
        };
        let mut up = false;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(up, "moto_server did not start on port {port}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let shared = Arc::clone(&counts);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let counts = Arc::clone(&shared);
                *counts
                    .lock()
                    .unwrap()
                    .entry("(connections)".into())
                    .or_default() += 1;
                std::thread::spawn(move || relay(client, port, &counts));
            }
        });
        Some(Table { moto, url, counts })
    }

    /// `AWS_ENDPOINT_URL_DYNAMODB` for the child: the proxy.
    fn env(&self) -> Vec<(String, String)> {
        vec![("AWS_ENDPOINT_URL_DYNAMODB".into(), self.url.clone())]
    }

    /// moto's CPU time so far (user + system, from `/proc/PID/stat`): is the emulator
    /// the bottleneck?
    fn moto_cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.moto.id())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<u64> = after
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command's `)`.
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// The requests counted since the last call, by operation.
    fn take_counts(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap())
    }

    /// `connect-onboard --config CONFIG init --state dynamodb://NAME`.
    async fn init(&self, sb: &SandboxHandle, config: &Path, name: &str) {
        let mut cmd = tool_command();
        cmd.args(["--config", config.to_str().unwrap(), "init", "--state"])
            .arg(format!("dynamodb://{name}"))
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
        for (k, v) in sb.env_lines().into_iter().chain(self.env()) {
            cmd.env(k, v);
        }
        let out = cmd.output().await.expect("init runs");
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.take_counts();
    }

    fn stop(mut self) {
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

/// One client connection, kept alive as DynamoDB keeps its own (moto's server answers
/// `Connection: close`, which would make the client open a connection per request): each
/// request is counted, sent upstream on a connection of its own, and its answer (the
/// `Connection` header dropped) copied back; moto's time to answer is summed under
/// `(moto µs)`.
fn relay(client: std::net::TcpStream, port: u16, counts: &Mutex<BTreeMap<String, u64>>) {
    use std::io::Write;
    let _ = client.set_nodelay(true);
    let Ok(mut client_write) = client.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::new(client);
    loop {
        let Some((head, body)) = read_message(&mut reader, false) else {
            return;
        };
        let op = header(&head, "x-amz-target")
            .and_then(|t| t.rsplit('.').next().map(str::to_string))
            .unwrap_or_else(|| "other".into());
        let budget = body.windows(7).any(|w| w == b"#BUDGET");
        let key = if budget { format!("{op} (budget)") } else { op };
        let sent = Instant::now();
        let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        let _ = up.set_nodelay(true);
        if up.write_all(&head).is_err() || up.write_all(&body).is_err() {
            return;
        }
        let mut up_reader = std::io::BufReader::new(up);
        let Some((answer, answer_body)) = read_message(&mut up_reader, true) else {
            return;
        };
        let took = sent.elapsed();
        {
            let mut c = counts.lock().unwrap();
            *c.entry(key).or_default() += 1;
            *c.entry("(moto µs)".into()).or_default() += took.as_micros() as u64;
        }
        let text = String::from_utf8_lossy(&answer);
        let mut out = String::new();
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("connection")
                || name.eq_ignore_ascii_case("content-length")
            {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", answer_body.len()));
        if client_write.write_all(out.as_bytes()).is_err()
            || client_write.write_all(&answer_body).is_err()
        {
            return;
        }
    }
}

/// One HTTP/1.1 message: its head and its body (`Content-Length` bytes; an answer without
/// one, `to_eof`, is read to the end of the connection).
fn read_message(reader: &mut impl std::io::BufRead, to_eof: bool) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let mut body = Vec::new();
    match header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => {
            body.resize(len, 0);
            reader.read_exact(&mut body).ok()?;
        }
        None if to_eof => {
            reader.read_to_end(&mut body).ok()?;
        }
        None => {}
    }
    Some((head, body))
}

fn header(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The calls' throttled share (%) and the bound (s) with its API, from a run's `calls`.
fn bound_of(calls: &BTreeMap<String, (u64, u64)>, scale: f64) -> (f64, String, f64) {
    let (api, bound) = calls
        .iter()
        .map(|(api, (c, _))| (api.clone(), *c as f64 / granted(api, scale, 1.0)))
        .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let total: u64 = calls.values().map(|c| c.0).sum();
    let throttled: u64 = calls.values().map(|c| c.1).sum();
    (bound, api, 100.0 * throttled as f64 / total.max(1) as f64)
}

fn per_agent(counts: &BTreeMap<String, u64>, n: usize) -> String {
    let total: u64 = (counts.iter())
        .filter(|(op, _)| !op.starts_with('('))
        .map(|(_, c)| c)
        .sum();
    let parts: Vec<String> = counts
        .iter()
        .filter(|(op, _)| !op.starts_with('('))
        .map(|(op, c)| format!("{op} {:.2}", *c as f64 / n as f64))
        .collect();
    format!(
        "{:.2} in all: {}; connections {}; moto answered in {:.2} ms on average",
        total as f64 / n as f64,
        parts.join(", "),
        counts.get("(connections)").copied().unwrap_or(0),
        counts.get("(moto µs)").copied().unwrap_or(0) as f64 / 1000.0 / total.max(1) as f64
    )
}

/// Notes (polling every 2 ms) when the sandbox applied the first and the `n`-th call of
/// `api`, counted from `start`: splits a run's wall into start-up, the paced span and the tail.
fn timeline(
    sb: &SandboxHandle,
    api: &'static str,
    n: usize,
    start: Instant,
) -> tokio::task::JoinHandle<(Duration, Duration)> {
    let sb = sb.clone();
    tokio::spawn(async move {
        let seen = |sb: &SandboxHandle| sb.calls().get(api).map_or(0, |c| c.applied);
        let mut first = None;
        loop {
            let now = start.elapsed();
            let count = seen(&sb);
            if count > 0 && first.is_none() {
                first = Some(now);
            }
            if count as usize >= n {
                return (first.unwrap_or(now), now);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// (a) and (c): the quota batch on SQLite, then on the table; `REPS` times, alternated.
async fn ddb_quota(table: &Table, dir: &Path, limits: &str, n: usize, scale: f64) {
    let reps: usize = var("REPS", 1);
    // `SHARED=false`: the table's runs without the shared budget (to see what it costs).
    let ddb_limits = match std::env::var("SHARED") {
        Ok(v) => format!("{limits}\nshared = {v}"),
        Err(_) => limits.to_string(),
    };
    let (mut ratios, mut sqlite_cpu, mut ddb_cpu, mut throttled) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        for backend in ["sqlite", "dynamodb"] {
            let sb = sandbox(serde_json::json!({"rate_limits": {"preset": "aws", "scale": scale}}))
                .await;
            let tag = format!("dq{backend}{rep}x");
            let run = if backend == "sqlite" {
                let (config, csv) = files(dir, limits, n, &tag);
                batch(&sb, &config, &csv, 64).await
            } else {
                let name = format!("quota{rep}");
                let state = format!("url = \"dynamodb://{name}\"");
                let (config, csv) = files_on(dir, &state, &ddb_limits, n, &tag);
                table.init(&sb, &config, &name).await;
                let m0 = table.moto_cpu();
                let start = Instant::now();
                let watcher = timeline(&sb, "connect:CreateUser", n, start);
                let run = tool_with(&sb, &table.env(), &config, "batch", &csv, 64).await;
                watcher.abort();
                let (first, last) = watcher.await.unwrap_or_default();
                println!(
                    "  moto CPU {:.1} s during the run; timeline: first CreateUser at {:.3} s, last at {:.3} s, exit {:.3} s",
                    (table.moto_cpu() - m0).as_secs_f64(),
                    first.as_secs_f64(),
                    last.as_secs_f64(),
                    run.wall.as_secs_f64()
                );
                run
            };
            let counts = table.take_counts();
            let calls = calls(&run.json);
            let (bound, api, share) = bound_of(&calls, scale);
            let cpu = (run.user + run.system).as_secs_f64() * 1000.0 / n as f64;
            let ratio = run.wall.as_secs_f64() / bound;
            println!(
                "ddb-quota {backend} (rep {rep}): {n} agents, exit {:?}, wall {:.2} s, bound {bound:.2} s ({api}), ratio {ratio:.3}; throttled {share:.2} % of calls; CPU {cpu:.3} ms per agent ({:.3} user + {:.3} system); CreateUser applied {}; done {}",
                run.code,
                run.wall.as_secs_f64(),
                run.user.as_secs_f64() * 1000.0 / n as f64,
                run.system.as_secs_f64() * 1000.0 / n as f64,
                sb.calls().get("connect:CreateUser").map_or(0, |c| c.applied),
                run.json["counts"]["done"]
            );
            if backend == "sqlite" {
                sqlite_cpu.push(cpu);
            } else {
                println!("  DynamoDB requests per agent: {}", per_agent(&counts, n));
                ratios.push(ratio);
                ddb_cpu.push(cpu);
                throttled.push(share);
            }
            sb.shutdown().await;
        }
    }
    let (s, d) = (median(sqlite_cpu), median(ddb_cpu));
    println!(
        "ddb-quota medians of {reps}: DynamoDB wall/bound {:.3}, throttled {:.2} %; CPU per agent SQLite {s:.3} ms, DynamoDB {d:.3} ms (ratio {:.2})",
        median(ratios),
        median(throttled),
        d / s
    );
}

/// (b): `PROCS` processes (default 3) of `PER` agents (default 300) each, disjoint files, one
/// table, started together; with the shared budget, then with `shared = false` (`SHARES`,
/// default `true,false`).
async fn ddb_shared(table: &Table, dir: &Path, limits: &str, scale: f64) -> Vec<(bool, f64, f64)> {
    let procs: usize = var("PROCS", 3);
    let per: usize = var("PER", 300);
    let rep = REP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut out = vec![];
    for shared in shares() {
        let sb =
            sandbox(serde_json::json!({"rate_limits": {"preset": "aws", "scale": scale}})).await;
        let name = format!("shared{shared}{rep}");
        let state = format!("url = \"dynamodb://{name}\"");
        let limits = format!("{limits}\nshared = {shared}");
        let mut jobs = vec![];
        for p in 0..procs {
            let tag = format!("ds{shared}{rep}p{p}x");
            jobs.push(files_on(dir, &state, &limits, per, &tag));
        }
        table.init(&sb, &jobs[0].0, &name).await;
        let (user0, sys0, _) = children_usage();
        let m0 = table.moto_cpu();
        let start = Instant::now();
        let watcher = timeline(&sb, "connect:CreateUser", procs * per, start);
        let children: Vec<_> = jobs
            .iter()
            .map(|(config, csv)| {
                let mut c = command_for(&sb, &table.env(), config, "batch", csv, 64);
                c.stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        // Each child's own end, waited for together.
        let runs = futures::future::join_all(children.into_iter().map(|child| async move {
            let o = child.wait_with_output().await.unwrap();
            (o, start.elapsed())
        }))
        .await;
        let wall = start.elapsed();
        watcher.abort();
        let (first, last) = watcher.await.unwrap_or_default();
        let (user1, sys1, _) = children_usage();
        let counts = table.take_counts();
        let mut all: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut walls = vec![];
        for (o, w) in runs {
            let run = run_of(o, w, Duration::ZERO, Duration::ZERO, 0);
            walls.push(format!(
                "{:.2} s (exit {:?}, done {})",
                w.as_secs_f64(),
                run.code,
                run.json["counts"]["done"]
            ));
            for (api, (c, t)) in calls(&run.json) {
                let e = all.entry(api).or_default();
                e.0 += c;
                e.1 += t;
            }
        }
        let n = procs * per;
        let (bound, api, share) = bound_of(&all, scale);
        let served = sb.calls();
        let cu = served.get("connect:CreateUser");
        let ratio = wall.as_secs_f64() / bound;
        println!(
            "ddb-shared shared={shared} (rep {rep}): {procs} processes x {per} agents, wall {:.2} s (each: {}), bound of all {n} {bound:.2} s ({api}), ratio {ratio:.3}; throttled {share:.2} % of calls ({} of {}); sandbox CreateUser applied {} for {n} agents, received {}; CPU {:.3} ms per agent",
            wall.as_secs_f64(),
            walls.join(", "),
            all.values().map(|c| c.1).sum::<u64>(),
            all.values().map(|c| c.0).sum::<u64>(),
            cu.map_or(0, |c| c.applied),
            cu.map_or(0, |c| c.calls),
            ((user1 - user0) + (sys1 - sys0)).as_secs_f64() * 1000.0 / n as f64,
        );
        println!(
            "  DynamoDB requests per agent: {}; moto CPU {:.1} s; timeline: first CreateUser applied at {:.3} s, the {n}th at {:.3} s",
            per_agent(&counts, n),
            (table.moto_cpu() - m0).as_secs_f64(),
            first.as_secs_f64(),
            last.as_secs_f64()
        );
        out.push((shared, ratio, share));
        sb.shutdown().await;
    }
    out
}

/// `ddb-shared`'s cases: `SHARES` (default `true,false`).
fn shares() -> Vec<bool> {
    (std::env::var("SHARES").unwrap_or_else(|_| "true,false".into()))
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

static REP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// (d): `OVERHEAD` agents (default 3000) unthrottled, the sandbox answering every call after
/// `LATENCY` ms (default `5,50`), on SQLite and on the table (`BACKENDS`, default
/// `sqlite,dynamodb`): CPU per agent.
async fn ddb_latency(table: &Table, dir: &Path, unlimited: &str) {
    let size: usize = var("OVERHEAD", 3000);
    let reps: usize = var("REPS", 1);
    let latencies: Vec<u64> = std::env::var("LATENCY")
        .unwrap_or_else(|_| "5,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "sqlite,dynamodb".into());
    let mut cpu: BTreeMap<(u64, &str), Vec<f64>> = BTreeMap::new();
    for rep in 0..reps {
        for &ms in &latencies {
            for backend in ["sqlite", "dynamodb"] {
                if !backends.split(',').any(|b| b == backend) {
                    continue;
                }
                let sb = sandbox(serde_json::json!({"rate_limits": {"preset": "none"},
                    "rules": [{"op": "*", "action": "latency", "latency_ms": ms}]}))
                .await;
                let tag = format!("dl{backend}{ms}r{rep}x");
                let run = if backend == "sqlite" {
                    let (config, csv) = files(dir, unlimited, size, &tag);
                    batch(&sb, &config, &csv, 64).await
                } else {
                    let name = format!("latency{ms}r{rep}");
                    let state = format!("url = \"dynamodb://{name}\"");
                    let (config, csv) = files_on(dir, &state, unlimited, size, &tag);
                    table.init(&sb, &config, &name).await;
                    let m0 = table.moto_cpu();
                    let run = tool_with(&sb, &table.env(), &config, "batch", &csv, 64).await;
                    println!(
                        "  moto CPU {:.1} s during the run",
                        (table.moto_cpu() - m0).as_secs_f64()
                    );
                    run
                };
                let counts = table.take_counts();
                let c = (run.user + run.system).as_secs_f64() * 1000.0 / size as f64;
                println!(
                    "ddb-latency {ms} ms {backend} (rep {rep}): {size} agents, exit {:?}, wall {:.1} s, CPU {c:.3} ms per agent ({:.3} user + {:.3} system), peak RSS {:.1} MiB (largest child so far), done {}",
                    run.code,
                    run.wall.as_secs_f64(),
                    run.user.as_secs_f64() * 1000.0 / size as f64,
                    run.system.as_secs_f64() * 1000.0 / size as f64,
                    run.peak_rss as f64 / 1_048_576.0,
                    run.json["counts"]["done"]
                );
                if backend == "dynamodb" {
                    println!(
                        "  DynamoDB requests per agent: {}",
                        per_agent(&counts, size)
                    );
                }
                cpu.entry((ms, backend)).or_default().push(c);
                sb.shutdown().await;
            }
        }
    }
    for ((ms, backend), v) in cpu {
        println!(
            "ddb-latency {ms} ms {backend}: CPU per agent median of {} {:.3} ms",
            v.len(),
            median(v)
        );
    }
}

#[tokio::main]
async fn main() {
    if pinned() {
        // Every thread of this process (and so moto, started later) to CPU 1.
        let pid = std::process::id().to_string();
        let ok = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &pid])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "PIN=true needs taskset (util-linux) and two CPUs");
    }
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
    if wanted("apply") {
        let reps: usize = var("REPS", 1);
        let levels: Vec<usize> = std::env::var("APPLY_CONCURRENCY")
            .unwrap_or_else(|_| "16,64".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let mut results: BTreeMap<usize, Vec<ApplyFigures>> = BTreeMap::new();
        for rep in 0..reps {
            for &concurrency in &levels {
                let tag = format!("apply{concurrency}r{rep}x");
                let f = apply_scenario(dir.path(), &limits, n, scale, concurrency, &tag).await;
                results.entry(concurrency).or_default().push(f);
            }
        }
        if reps > 1 {
            for (concurrency, runs) in &results {
                apply_medians(*concurrency, runs);
            }
        }
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
    if ["ddb-quota", "ddb-shared", "ddb-latency"]
        .iter()
        .any(|s| std::env::var("ONLY").is_ok_and(|v| v.split(',').any(|o| o == *s)))
    {
        if let Some(table) = Table::start() {
            if wanted("ddb-shared") {
                let mut runs = vec![];
                for _ in 0..var("REPS", 1) {
                    runs.extend(ddb_shared(&table, dir.path(), &limits, scale).await);
                }
                for shared in shares() {
                    let of = |f: fn(&(bool, f64, f64)) -> f64| {
                        median(runs.iter().filter(|r| r.0 == shared).map(f).collect())
                    };
                    println!(
                        "ddb-shared shared={shared} medians: wall/bound {:.3}, throttled {:.2} %",
                        of(|r| r.1),
                        of(|r| r.2)
                    );
                }
            }
            if wanted("ddb-quota") {
                ddb_quota(&table, dir.path(), &limits, n, scale).await;
            }
            if wanted("ddb-latency") {
                ddb_latency(&table, dir.path(), unlimited).await;
            }
            table.stop();
        }
    }
    if (sync::SCENARIOS.iter())
        .any(|s| std::env::var("ONLY").is_ok_and(|v| v.split(',').any(|o| o == *s)))
    {
        sync::scenarios(dir.path(), &limits, n, scale).await;
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
