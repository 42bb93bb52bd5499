//! The `sync` scenarios (issue 19 §4), run only when `ONLY` names them. Each repetition
//! builds one world and runs them in order on it:
//!
//! - **sync-first** (a): the sandbox at AWS's default quotas ×`SCALE`; an Identity Store
//!   group `Tier1-Agents` of `N` members (users with a primary email, seeded straight into the
//!   world as the identity provider's SCIM would make them), mapped in `[[sync.groups]]`, no
//!   Connect users; `connect-onboard sync` once. Wall ÷ the bound, throttled share, the
//!   CreateUser calls the sandbox applied (each member's Connect user once).
//! - **sync-second** (b): `sync` again, nothing changed: writes (0) and reads by API, reads
//!   per 100 agents.
//! - **sync-events** (c): moto's SQS; `sync --watch --interval 1h --queue URL --json` on that
//!   world; after its first `reconcile` line, `EVENTS` times (default 50) one after another: a
//!   new user joins the mapped group (straight into the world) and its CloudTrail
//!   CreateGroupMembership event (EventBridge's shape) is sent to the queue; the time from the
//!   send until the sandbox holds its Connect user (polled every 2 ms), and the watch's own
//!   `ms_since_received` of that event. SIGTERM at the end: exit 0.
//!
//! (a) runs whenever one of the three is named ((b) and (c) need its world); its figures are
//! printed each time. `REPS` repeats the whole and prints medians.

use std::process::Stdio;

use aws_sdk_sqs::config::{Credentials, Region};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::*;

/// The scenarios' names.
pub(super) const SCENARIOS: [&str; 3] = ["sync-first", "sync-second", "sync-events"];

/// The mapped group.
const GROUP: &str = "Tier1-Agents";

const MAPPING: &str = "\n[[sync.groups]]\ngroup = \"Tier1-Agents\"\nrouting_profile = \"Basic Routing Profile\"\nsecurity_profiles = [\"Agent\"]\n";

/// One repetition's figures.
#[derive(Default)]
struct Figures {
    ratio: f64,
    wall: f64,
    throttled: f64,
    created: u64,
    second_writes: u64,
    second_reads_per_100: f64,
    p50: f64,
    p95: f64,
    max: f64,
    own_p50: f64,
    own_p95: f64,
}

/// Runs the named sync scenarios `REPS` times.
pub(super) async fn scenarios(dir: &Path, limits: &str, n: usize, scale: f64) {
    let events = wanted("sync-events");
    let moto = if events { Moto::start() } else { None };
    let reps: usize = var("REPS", 1);
    let mut all = vec![];
    for rep in 0..reps {
        all.push(one(dir, limits, n, scale, rep, moto.as_ref()).await);
    }
    if reps > 1 {
        let m = |f: fn(&Figures) -> f64| median(all.iter().map(f).collect());
        println!(
            "sync-first medians of {reps}: wall/bound {:.3} (wall {:.2} s), throttled {:.2} %, CreateUser applied {} (min) / {} (max)",
            m(|f| f.ratio),
            m(|f| f.wall),
            m(|f| f.throttled),
            all.iter().map(|f| f.created).min().unwrap_or(0),
            all.iter().map(|f| f.created).max().unwrap_or(0),
        );
        if wanted("sync-second") {
            println!(
                "sync-second medians of {reps}: writes {} (max), reads {:.2} per 100 agents",
                all.iter().map(|f| f.second_writes).max().unwrap_or(0),
                m(|f| f.second_reads_per_100),
            );
        }
        if moto.is_some() {
            println!(
                "sync-events medians of {reps}: send → Connect user p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; the watch's own ms_since_received p50 {:.0} ms, p95 {:.0} ms",
                m(|f| f.p50),
                m(|f| f.p95),
                m(|f| f.max),
                m(|f| f.own_p50),
                m(|f| f.own_p95),
            );
        }
    }
    if let Some(m) = moto {
        m.stop();
    }
}

/// One repetition: the world, (a), then (b) and (c) if named.
async fn one(
    dir: &Path,
    limits: &str,
    n: usize,
    scale: f64,
    rep: usize,
    moto: Option<&Moto>,
) -> Figures {
    let mut f = Figures::default();
    let sb = sandbox(serde_json::json!({"rate_limits": {"preset": "aws", "scale": scale}})).await;
    let tag = format!("sync{rep}x");
    let group = sb.seed_world(|w| {
        let group = w.add_group(GROUP).unwrap();
        for i in 0..n {
            let email = format!("{tag}{i}@example.com");
            let uid = w
                .add_identity_user(&email, &email, "Agent", &format!("Number{i}"))
                .unwrap();
            w.add_membership(&group, &uid).unwrap();
        }
        group
    });
    let (config, _) = files(dir, limits, 0, &tag);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(MAPPING);
    std::fs::write(&config, text).unwrap();

    // (a) The first sync: every member a new agent. A watcher notes when the sandbox
    // applied the first and the last CreateUser (the bound's API), to split the wall time.
    let start = Instant::now();
    let watcher = {
        let sb = sb.clone();
        tokio::spawn(async move {
            let mut first = None;
            loop {
                let now = start.elapsed();
                let count = sb
                    .calls()
                    .get("connect:CreateUser")
                    .map_or(0, |c| c.applied);
                if count > 0 && first.is_none() {
                    first = Some(now);
                }
                if count as usize >= n {
                    return (first.unwrap_or(now), now);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let run = sync_run(&sb, &config, &[]).await;
    watcher.abort();
    let (first, last) = watcher.await.unwrap_or_default();
    let calls = calls(&run.json);
    let (bound, api, share) = bound_of(&calls, scale);
    let total: u64 = calls.values().map(|c| c.0).sum();
    let throttled: u64 = calls.values().map(|c| c.1).sum();
    let served = sb.calls();
    let created = served.get("connect:CreateUser").map_or(0, |c| c.applied);
    let agents = agents_in_connect(&sb, &tag, n);
    f.wall = run.wall.as_secs_f64();
    f.ratio = f.wall / bound;
    f.throttled = share;
    f.created = created;
    println!(
        "sync-first (rep {rep}): {n} members, exit {:?}, wall {:.2} s, bound {bound:.2} s ({api}), ratio {:.3}; throttled {throttled}/{total} calls ({share:.2} %); CreateUser applied {created} for {n} members (received {}), Connect users of the members {agents}/{n}; CPU {:.3} ms per agent; outcomes {}",
        run.code,
        f.wall,
        f.ratio,
        served.get("connect:CreateUser").map_or(0, |c| c.calls),
        (run.user + run.system).as_secs_f64() * 1000.0 / n as f64,
        run.json["outcomes"]
    );
    let per_agent: Vec<String> = calls
        .iter()
        .map(|(api, (c, t))| format!("{api} {:.3} ({t} throttled)", *c as f64 / n as f64))
        .collect();
    println!("  calls per agent: {}", per_agent.join(", "));
    println!(
        "  timeline (2 ms polls): first CreateUser at {:.3} s, last at {:.3} s (span {:.3} s; the tool's pacing (n - 4) / (0.99 rate) = {:.3} s), exit {:.3} s after it",
        first.as_secs_f64(),
        last.as_secs_f64(),
        (last - first).as_secs_f64(),
        (n as f64 - 4.0) / (0.99 * 2.0 * scale),
        f.wall - last.as_secs_f64()
    );

    // (b) Again, nothing changed.
    if wanted("sync-second") {
        let writes_before = sb.write_calls();
        let again = sync_run(&sb, &config, &[]).await;
        let served_writes = sb.write_calls() - writes_before;
        let calls2 = super::calls(&again.json);
        let writes: u64 = (calls2.iter())
            .filter(|(api, _)| is_write(api))
            .map(|(_, c)| c.0)
            .sum();
        let reads: u64 = (calls2.iter())
            .filter(|(api, _)| !is_write(api))
            .map(|(_, c)| c.0)
            .sum();
        f.second_writes = writes.max(served_writes);
        f.second_reads_per_100 = reads as f64 * 100.0 / n as f64;
        println!(
            "sync-second (rep {rep}): exit {:?}, wall {:.2} s, writes {writes} (sandbox received {served_writes}), reads {reads} ({:.2} per 100 agents), CPU {:.3} ms per agent; outcomes {}",
            again.code,
            again.wall.as_secs_f64(),
            f.second_reads_per_100,
            (again.user + again.system).as_secs_f64() * 1000.0 / n as f64,
            again.json["outcomes"]
        );
        let by_api: Vec<String> = (calls2.iter())
            .map(|(api, (c, _))| format!("{api} {c}"))
            .collect();
        println!("  calls: {}", by_api.join(", "));
    }

    // (c) Events through the queue.
    if let Some(moto) = moto.filter(|_| wanted("sync-events")) {
        let (p50, p95, max, own50, own95) = events(&sb, &config, moto, &group, &tag, rep, n).await;
        (f.p50, f.p95, f.max, f.own_p50, f.own_p95) = (p50, p95, max, own50, own95);
    }
    sb.shutdown().await;
    f
}

/// How many of the members `{tag}{i}@example.com` have their Connect user.
fn agents_in_connect(sb: &SandboxHandle, tag: &str, n: usize) -> usize {
    sb.seed_world(|w| {
        let inst = &w.connect_instances[INSTANCE];
        (0..n)
            .filter(|i| inst.user_named(&format!("{tag}{i}@example.com")).is_some())
            .count()
    })
}

/// `connect-onboard --config CONFIG sync --json --concurrency 16 ARGS`, with the sandbox's
/// environment and `AWS_ENDPOINT_URL_SQS` when given.
fn sync_command(
    sb: &SandboxHandle,
    config: &Path,
    args: &[&str],
    sqs: Option<&str>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(["--config", config.to_str().unwrap(), "sync"])
        .args(["--json", "--concurrency", "16"])
        .args(args)
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    for (k, v) in sb.env_lines() {
        cmd.env(k, v);
    }
    if let Some(url) = sqs {
        cmd.env("AWS_ENDPOINT_URL_SQS", url);
    }
    cmd
}

/// One `sync`, timed.
async fn sync_run(sb: &SandboxHandle, config: &Path, args: &[&str]) -> Run {
    let (user0, sys0, _) = children_usage();
    let start = Instant::now();
    let out = sync_command(sb, config, args, None)
        .output()
        .await
        .expect("connect-onboard runs");
    let wall = start.elapsed();
    let (user1, sys1, peak_rss) = children_usage();
    run_of(out, wall, user1 - user0, sys1 - sys0, peak_rss)
}

/// (c): the watch on the queue; `EVENTS` additions one after another. p50, p95, max of the
/// time from the send until the Connect user exists, and p50, p95 of the watch's own
/// `ms_since_received` (ms).
async fn events(
    sb: &SandboxHandle,
    config: &Path,
    moto: &Moto,
    group: &str,
    tag: &str,
    rep: usize,
    n: usize,
) -> (f64, f64, f64, f64, f64) {
    let count: usize = var("EVENTS", 50);
    let store = sb.ids().identity_store_id;
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version_latest()
            .endpoint_url(&moto.url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
            .build(),
    );
    let url = (sqs.create_queue())
        .queue_name(format!("connect-sync-{rep}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let created_before = sb
        .calls()
        .get("connect:CreateUser")
        .map_or(0, |c| c.applied);
    let mut child = sync_command(
        sb,
        config,
        &["--watch", "--interval", "1h", "--queue", &url],
        Some(&moto.url),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async |kind: &str| -> serde_json::Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("a {kind} line within 120 s"))
                .unwrap()
                .unwrap_or_else(|| panic!("the watch ended before a {kind} line"));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["event"] == kind {
                return v;
            }
        }
    };
    let start = Instant::now();
    let first = next("reconcile").await;
    println!(
        "sync-events (rep {rep}): the watch's start reconcile after {:.2} s: agents {}, planned {}, applied {}, outcomes {}, elapsed_ms {}",
        start.elapsed().as_secs_f64(),
        first["agents"],
        first["planned"],
        first["applied"],
        first["outcomes"],
        first["elapsed_ms"]
    );
    let (mut latencies, mut own, mut agents) = (vec![], vec![], vec![]);
    let calls_before = sb.calls();
    for i in 0..count {
        let email = format!("{tag}ev{i}@example.com");
        let user = sb.seed_world(|w| {
            let uid = w
                .add_identity_user(&email, &email, "New", &format!("Joiner{i}"))
                .unwrap();
            w.add_membership(group, &uid).unwrap();
            uid
        });
        let body = joined(&store, group, &user);
        let sent = Instant::now();
        let id = (sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await)
            .unwrap()
            .message_id
            .unwrap();
        loop {
            let exists =
                sb.seed_world(|w| w.connect_instances[INSTANCE].user_named(&email).is_some());
            if exists {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(120),
                "{email}'s Connect user within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        // The watch's own lines for it: its reconcile, then the event handled.
        let r = next("reconcile").await;
        agents.push(r["agents"].as_u64().unwrap_or(0));
        let e = next("queue_event").await;
        assert_eq!(
            (e["message_id"].as_str(), e["status"].as_str()),
            (Some(id.as_str()), Some("handled")),
            "{e}"
        );
        own.push(e["ms_since_received"].as_f64().unwrap_or(f64::NAN));
    }
    // What the event reconciles called, by API (the sandbox's count), per event.
    let per_event: Vec<String> = (sb.calls().into_iter())
        .filter_map(|(api, c)| {
            let d = c.calls - calls_before.get(&api).map_or(0, |b| b.calls);
            (d > 0).then(|| format!("{api} {:.2}", d as f64 / count as f64))
        })
        .collect();
    // SIGTERM: exit 0.
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the watch stops on SIGTERM")
        .unwrap();
    let created = sb
        .calls()
        .get("connect:CreateUser")
        .map_or(0, |c| c.applied)
        - created_before;
    let q = |v: &[f64], p: f64| quantile(v, p);
    let (p50, p95, max) = (q(&latencies, 0.5), q(&latencies, 0.95), q(&latencies, 1.0));
    let (own50, own95) = (q(&own, 0.5), q(&own, 0.95));
    println!(
        "sync-events (rep {rep}): {count} events one after another on {n} members, send → Connect user exists (2 ms polls): p50 {p50:.0} ms, p95 {p95:.0} ms, max {max:.0} ms, min {:.0} ms; the watch's ms_since_received: p50 {own50:.0} ms, p95 {own95:.0} ms, max {:.0} ms; agents planned per event reconcile {:?}; CreateUser applied {created} for {count}; SIGTERM: exit {:?}",
        q(&latencies, 0.0),
        q(&own, 1.0),
        agents.iter().collect::<std::collections::BTreeSet<_>>(),
        status.code()
    );
    let shown: Vec<String> = latencies.iter().map(|l| format!("{l:.0}")).collect();
    println!("  latencies (ms, in order): {}", shown.join(" "));
    println!("  calls per event (sandbox): {}", per_event.join(", "));
    (p50, p95, max, own50, own95)
}

/// The `p` quantile (nearest rank) of `v`.
fn quantile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = (p * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// EventBridge's event of a CloudTrail-recorded CreateGroupMembership (as
/// `tests/it/sync_queue.rs` sends it).
fn joined(store: &str, group: &str, user: &str) -> String {
    let id = || uuid::Uuid::new_v4().to_string();
    serde_json::json!({
        "version": "0",
        "id": id(),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.identitystore",
        "account": "123456789012",
        "region": "us-east-1",
        "detail": {
            "eventSource": "identitystore.amazonaws.com",
            "eventName": "CreateGroupMembership",
            "requestParameters": {"identityStoreId": store, "groupId": group, "memberId": {"userId": user}},
            "responseElements": {"identityStoreId": store, "membershipId": id()},
        }
    })
    .to_string()
}

/// moto's server for the queue (no proxy: the queue's calls are not counted).
pub(super) struct Moto {
    child: std::process::Child,
    url: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                println!("sync-events: skipped (moto_server: {e}; pip install 'moto[server]')");
                return None;
            }
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Moto {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not start on port {port}");
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
