//! `sync --watch --queue`: Identity Center events from an SQS queue (moto's SQS, through the
//! real SDK) reconcile the users they name within seconds; a duplicate changes nothing; a
//! malformed event asks for a full reconcile; a kill -9 mid-event redelivers the event and
//! completes the agent without a duplicate; and one watcher per state store leads while a
//! second stands by (the store: moto's DynamoDB) and takes over when the first stops.
//! In CI a missing moto fails the test; elsewhere it is skipped loudly.

use std::time::Duration;

use aws_sdk_sqs::config::{Credentials, Region};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::harness::*;
use crate::moto::{start_moto, Moto};
use crate::sync::{connect_user, idp, World, MAPPING};

const BO: &str = "bo@example.com";
const CY: &str = "cy@example.com";
const ANA: &str = "Ana.Silva@Example.com";

/// An SQS client on moto, and a new queue's URL.
async fn queue(moto: &Moto, name: &str) -> (aws_sdk_sqs::Client, String) {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version_latest()
        .endpoint_url(&moto.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(conf);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (sqs, url)
}

/// Sends a body; its message id.
async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str) -> String {
    (sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await)
        .unwrap()
        .message_id
        .unwrap()
}

/// Messages in the queue, visible or in flight.
async fn in_queue(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes.unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| {
        attrs
            .get(a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

/// EventBridge's event of a CloudTrail-recorded CreateGroupMembership.
fn joined(group: &str, user: &str) -> String {
    json!({
        "version": "0",
        "id": uuid(),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.identitystore",
        "account": "123456789012",
        "region": "us-east-1",
        "detail": {
            "eventSource": "identitystore.amazonaws.com",
            "eventName": "CreateGroupMembership",
            "requestParameters": {"identityStoreId": STORE, "groupId": group, "memberId": {"userId": user}},
            "responseElements": {"identityStoreId": STORE, "membershipId": uuid()},
        }
    })
    .to_string()
}

/// A SCIM PatchGroup (the identity provider changed a group's members; CloudTrail hides
/// who): names the group only.
fn patched(group: &str) -> String {
    json!({
        "version": "0",
        "id": uuid(),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.identitystore-scim",
        "detail": {
            "eventSource": "identitystore-scim.amazonaws.com",
            "eventName": "PatchGroup",
            "requestParameters": {"groupId": group, "httpBody": {"operations": "HIDDEN_DUE_TO_SECURITY_REASONS"}, "tenantId": "t-1"},
            "responseElements": null,
        }
    })
    .to_string()
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The watch's JSON lines.
struct Watch {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Watch {
    fn start(env: &Env, args: &[&str]) -> Watch {
        Watch::start_in(env, None, args)
    }

    fn start_in(env: &Env, dir: Option<&std::path::Path>, args: &[&str]) -> Watch {
        let mut c = env.command(&[&["sync", "--watch", "--json"], args].concat());
        if let Some(d) = dir {
            c.current_dir(d);
        }
        let mut child = c.spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Watch { child, lines }
    }

    /// The next line whose `event` is `kind` (others are skipped).
    async fn next(&mut self, kind: &str) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("a {kind} line within 60 s"))
                .unwrap()
                .unwrap_or_else(|| panic!("the watch ended before a {kind} line"));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if v["event"] == kind {
                return v;
            }
        }
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.id().unwrap();
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe { libc::kill(pid as i32, sig) };
    }

    async fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the watch stops on SIGTERM")
            .unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

/// The sandbox, moto for the queue (and the table), a queue.
async fn with_queue() -> Option<(World, Moto, aws_sdk_sqs::Client, String)> {
    let moto = start_moto()?;
    let mut world = idp().await;
    (world.env.extra_env).push(("AWS_ENDPOINT_URL_SQS".into(), moto.url.clone()));
    (world.env.extra_env).push(("CONNECT_ONBOARD_QUEUE_VISIBILITY_S".into(), "3".into()));
    let (sqs, url) = queue(&moto, "connect-sync").await;
    Some((world, moto, sqs, url))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_reconciles_only_the_user_it_names_a_duplicate_changes_nothing_and_a_malformed_one_reconciles_all(
) {
    let Some((mut world, _moto, sqs, url)) = with_queue().await else {
        return;
    };
    // A queue that does not exist: exit 2 before the first reconcile writes anything.
    let missing = url.replace("connect-sync", "no-such-queue");
    let out = world
        .env
        .run(&["sync", "--watch", "--queue", &missing])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("NonExistentQueue"), "{out:?}");
    assert_eq!(writes(&world.env), 0);

    let mut watch = Watch::start(&world.env, &["--interval", "1h", "--queue", &url]);
    let first = watch.next("reconcile").await;
    assert_eq!(
        (first["why"].as_str(), first["outcomes"]["created"].as_u64()),
        (Some("start"), Some(3)),
        "{first}"
    );

    // Dee joins with an event; Eve joins too, but her event is lost.
    let t = world.tier1.clone();
    world.add_user("dee", "dee@example.com", "Dee", "Moss");
    world.add_user("eve", "eve@example.com", "Eve", "Ng");
    world.join(&t, "dee@example.com");
    world.join(&t, "eve@example.com");
    let event = joined(&t, &world.users["dee@example.com"]);
    let listings = |env: &Env| {
        [
            "identitystore:ListUsers",
            "identitystore:ListGroupMemberships",
            "identitystore:ListGroups",
        ]
        .map(|op| env.calls(op))
    };
    let before = listings(&world.env);
    let id = send(&sqs, &url, &event).await;
    let r = watch.next("reconcile").await;
    assert_eq!(
        listings(&world.env),
        before,
        "an event naming a user reads that user, not the directory"
    );
    assert_eq!(r["why"], "events", "{r}");
    assert_eq!(
        r["outcomes"]["created"], 1,
        "only the user the event names: {r}"
    );
    assert_eq!(r["agents"], 1, "{r}");
    let e = watch.next("queue_event").await;
    assert_eq!(
        (e["message_id"].as_str(), e["status"].as_str()),
        (Some(id.as_str()), Some("handled")),
        "{e}"
    );
    assert_eq!(
        e["hints"][0],
        format!("user {}", world.users["dee@example.com"]),
        "{e}"
    );
    assert!(connect_user(&world.env, "dee@example.com").is_some());
    assert!(
        connect_user(&world.env, "eve@example.com").is_none(),
        "not named by an event"
    );

    // The same event again (a duplicate delivery, or a replay): read again, nothing to do.
    send(&sqs, &url, &event).await;
    let r = watch.next("reconcile").await;
    assert_eq!(
        (r["applied"].as_u64(), r["planned"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(watch.next("queue_event").await["status"], "handled");
    assert_eq!(world.env.applied("connect:CreateUser"), 4, "no duplicate");

    // An event that cannot be read: a full reconcile, which finds Eve.
    send(&sqs, &url, "{\"this is\": \"not an event\"").await;
    let r = watch.next("reconcile").await;
    assert_eq!(
        (r["why"].as_str(), r["agents"].as_u64()),
        (Some("events"), Some(5)),
        "{r}"
    );
    assert_eq!(r["outcomes"]["created"], 1, "{r}");
    let e = watch.next("queue_event").await;
    assert!(
        e["hints"][0]
            .as_str()
            .unwrap()
            .starts_with("full reconcile: the message is not JSON"),
        "{e}"
    );
    assert!(connect_user(&world.env, "eve@example.com").is_some());

    // An event that changes nothing (a read) is deleted without a reconcile.
    let read = joined(&t, "x").replace("CreateGroupMembership", "ListGroupMemberships");
    send(&sqs, &url, &read).await;
    let e = watch.next("queue_event").await;
    assert_eq!(e["status"], "ignored", "{e}");

    // Idle, the watch long-polls rather than spins: over 3 s it uses a small part of a
    // second of CPU (a receive loop without the long poll used 1.4 s here).
    let cpu = || {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", watch.child.id().unwrap())).unwrap();
        let f: Vec<u64> = (stat[stat.rfind(')').unwrap() + 2..].split_whitespace())
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        f[0] + f[1]
    };
    let (before, ticks) = (cpu(), unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = (cpu() - before) as f64 / ticks as f64;
    assert!(used < 0.5, "{used:.2} s of CPU in 3 s idle");
    // Every event was deleted once handled; SIGTERM during a long poll exits 0.
    wait_for_async("the queue to be empty", || async {
        in_queue(&sqs, &url).await == 0
    })
    .await;
    watch.stop().await;
}

/// Polls an async condition every 200 ms for up to 30 s.
async fn wait_for_async<F: std::future::Future<Output = bool>>(what: &str, cond: impl Fn() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_killed_mid_event_gets_it_again_and_completes_the_agent_without_a_duplicate() {
    let Some((mut world, _moto, sqs, url)) = with_queue().await else {
        return;
    };
    let (mut a, id) = dee_in_flight(&mut world, &sqs, &url, 20000).await;
    a.signal(libc::SIGKILL);
    a.child.wait().await.unwrap();
    assert_eq!(
        in_queue(&sqs, &url).await,
        1,
        "not deleted: its agent was not done"
    );
    world.env.faults(json!({}));

    let mut b = Watch::start(&world.env, &["--interval", "1h", "--queue", &url]);
    // B's first reconcile finishes dee (its run resumed); then the event comes back.
    let first = b.next("reconcile").await;
    assert_eq!(first["why"], "start", "{first}");
    handles_dees_event_once(&mut b, &world, &id).await;
    let st = world.env.status_json().await;
    let dee: Vec<&Value> = (st["runs"].as_array().unwrap().iter())
        .flat_map(|r| r["agents"].as_array().unwrap().iter())
        .filter(|a| a["email"] == "dee@example.com")
        .collect();
    assert!(dee.iter().all(|a| a["state"] == "done"), "{dee:?}");
    wait_for_async("the queue to be empty", || async {
        in_queue(&sqs, &url).await == 0
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_watch_leads_a_shared_store_a_second_stands_by_and_takes_over_when_it_stops() {
    let Some((world, moto, _sqs, url)) = with_queue().await else {
        return;
    };
    let mut env = world.env;
    (env.extra_env).push(("AWS_ENDPOINT_URL_DYNAMODB".into(), moto.url.clone()));
    let table = "dynamodb://team-state";
    assert_eq!(env.run(&["init", "--state", table]).await.code, 0);
    // Machine B: another directory, the same table.
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        b_dir.path().join("connect-onboard.toml"),
        format!("[connect]\ninstance_id = \"{INSTANCE}\"\nregion = \"us-east-1\"\n{MAPPING}\n[state]\nurl = \"{table}\"\n"),
    )
    .unwrap();
    let args = ["--interval", "1h", "--queue", &url, "--lease", "3s"];
    let mut a = Watch::start(&env, &[&args[..], &["--state", table]].concat());
    assert_eq!(a.next("reconcile").await["why"], "start");
    let mut b = Watch::start_in(&env, Some(b_dir.path()), &args);
    let s = b.next("standby").await;
    assert!(
        s["leader"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", a.child.id().unwrap())),
        "{s}"
    );

    // A paused past its lease (alive, not renewing): B takes over within about a lease
    // (3 s, looked at every second; bounded at 5 leases for a loaded machine); A, woken,
    // stands by.
    a.signal(libc::SIGSTOP);
    let paused = std::time::Instant::now();
    let r = b.next("reconcile").await;
    assert_eq!(r["why"], "start", "{r}");
    assert!(
        paused.elapsed() < Duration::from_secs(15),
        "taken over after {:?}",
        paused.elapsed()
    );
    a.signal(libc::SIGCONT);
    let s = a.next("standby").await;
    assert!(
        s["leader"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", b.child.id().unwrap())),
        "{s}"
    );

    // B dies: A takes over.
    b.signal(libc::SIGKILL);
    b.child.wait().await.unwrap();
    let r = a.next("reconcile").await;
    assert_eq!(r["why"], "start", "{r}");
    assert_eq!(
        env.applied("connect:CreateUser"),
        3,
        "each agent once across the three leads"
    );
    a.stop().await;
}

/// A group's event reconciles that group's members (a move out of it is an update; a member
/// who left every mapped group, with --prune, a removal of the Connect user alone) and no
/// one outside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_event_reconciles_its_members_and_its_leavers_and_no_one_else() {
    let Some((w, _moto, sqs, url)) = with_queue().await else {
        return;
    };
    let mut watch = bo_and_cy_leave_supervisors(&w, &url).await;
    // A group that is not mapped: nothing to do, and no listing read for it.
    let unmapped = w
        .env
        .sb
        .seed_world(|world| world.add_group("Sales-Floor").unwrap());
    let listed = w.env.calls("identitystore:ListGroupMemberships");
    send(&sqs, &url, &patched(&unmapped)).await;
    let e = watch.next("queue_event").await;
    assert_eq!(e["status"], "ignored", "{e}");
    assert_eq!(w.env.calls("identitystore:ListGroupMemberships"), listed);
    let identity_users = w.env.world().identity_users.len();
    // Ana, in Tier1 only, is renamed without an event.
    let s = w.sups.clone();
    let ana = w.users[ANA].clone();
    w.env.sb.seed_world(|world| {
        let u = (world
            .identity_stores
            .get_mut(STORE)
            .unwrap()
            .users
            .get_mut(&ana))
        .unwrap();
        u.name = json!({"GivenName": "Anna", "FamilyName": "Silva"});
    });
    send(&sqs, &url, &patched(&s)).await;
    let r = watch.next("reconcile").await;
    assert_eq!(r["why"], "events", "{r}");
    assert_eq!(
        r["counts"],
        json!({"remove": 1, "update": 1}),
        "Bo updated, Cy removed, Ana not planned: {r}"
    );
    assert_eq!(r["outcomes"], json!({"removed": 1, "updated": 1}), "{r}");
    assert_eq!(watch.next("queue_event").await["status"], "handled");
    cy_pruned_and_bo_moved(&w);
    assert_eq!(
        w.env.world().identity_users.len(),
        identity_users,
        "no Identity Center user touched"
    );
    assert_eq!(
        connect_user(&w.env, ANA)
            .unwrap()
            .identity_info
            .first_name
            .as_deref(),
        Some("Ana"),
        "outside the event's group: left for the next full reconcile"
    );
    watch.stop().await;
}

/// Events naming users who moved or left (read by their ids, not the directory): one who
/// moved to another mapped group is updated, one who left every mapped group loses the
/// Connect user (--prune), and nothing else is touched.
#[tokio::test(flavor = "multi_thread")]
async fn user_events_update_a_mover_and_prune_a_leaver_reading_only_them() {
    let Some((w, _moto, sqs, url)) = with_queue().await else {
        return;
    };
    let mut watch = bo_and_cy_leave_supervisors(&w, &url).await;
    let listed = w.env.calls("identitystore:ListUsers");
    let patched_user = |user: &str| {
        json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.identitystore-scim", "detail": {
            "eventSource": "identitystore-scim.amazonaws.com", "eventName": "PatchUser",
            "requestParameters": {"userId": user, "httpBody": {}, "tenantId": "t-1"}}})
        .to_string()
    };
    send(&sqs, &url, &patched_user(&w.users[BO])).await;
    send(&sqs, &url, &patched_user(&w.users[CY])).await;
    let mut outcomes = std::collections::BTreeMap::new();
    while outcomes.values().sum::<u64>() < 2 {
        let r = watch.next("reconcile").await;
        assert_eq!(r["why"], "events", "{r}");
        for (k, v) in r["outcomes"].as_object().unwrap() {
            *outcomes.entry(k.clone()).or_insert(0) += v.as_u64().unwrap();
        }
    }
    assert_eq!(
        outcomes,
        [("removed".to_string(), 1), ("updated".to_string(), 1)].into()
    );
    cy_pruned_and_bo_moved(&w);
    assert!(connect_user(&w.env, ANA).is_some());
    assert_eq!(
        w.env.calls("identitystore:ListUsers"),
        listed,
        "the users were read by id"
    );
    watch.stop().await;
}

/// A watch with --prune over the three agents, created; then Bo (still in Tier1) and Cy (in
/// no mapped group now) leave Supervisors, with no event yet.
async fn bo_and_cy_leave_supervisors(w: &World, url: &str) -> Watch {
    let mut watch = Watch::start(
        &w.env,
        &["--interval", "1h", "--queue", url, "--prune", "--yes"],
    );
    assert_eq!(watch.next("reconcile").await["outcomes"]["created"], 3);
    let s = w.sups.clone();
    w.leave(&s, BO);
    w.leave(&s, CY);
    watch
}

/// Cy's Connect user is deleted; Bo has Tier1's security profile only.
fn cy_pruned_and_bo_moved(w: &World) {
    assert!(
        connect_user(&w.env, CY).is_none(),
        "Cy's Connect user is deleted"
    );
    let ids = w.env.sb.ids();
    assert_eq!(
        connect_user(&w.env, BO).unwrap().security_profile_ids,
        vec![ids.security_profiles["Agent"].clone()]
    );
}

/// SIGTERM while an event's reconcile runs: the agent in flight finishes, the watch exits
/// 0, and the event is not deleted (its reconcile was cut short): the next watch gets it.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_mid_event_exits_0_and_leaves_the_event_for_the_next_watch() {
    let Some((mut world, _moto, sqs, url)) = with_queue().await else {
        return;
    };
    let (mut a, id) = dee_in_flight(&mut world, &sqs, &url, 1500).await;
    let e = {
        a.signal(libc::SIGTERM);
        a.next("queue_event").await
    };
    assert_eq!(
        (e["message_id"].as_str(), e["status"].as_str()),
        (Some(id.as_str()), Some("kept")),
        "{e}"
    );
    a.stop().await;
    assert_eq!(in_queue(&sqs, &url).await, 1, "the event stays");
    world.env.faults(json!({}));
    let mut b = Watch::start(&world.env, &["--interval", "1h", "--queue", &url]);
    handles_dees_event_once(&mut b, &world, &id).await;
    b.stop().await;
}

/// An event for a user whose Connect username has a twin in other case (made by hand
/// before the watch started): the narrow read, which finds no user by the exact name, sees
/// the twin among the usernames of the last full read and plans a conflict, as a full
/// reconcile does; it neither creates the user nor lists every Connect user again.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_for_a_user_with_a_twin_in_other_case_is_a_conflict_without_a_full_listing() {
    let Some((mut world, _moto, sqs, url)) = with_queue().await else {
        return;
    };
    world.env.sb.seed_world(|w| {
        w.add_connect_user(INSTANCE, "dee@example.com", "Dee", "Moss")
            .unwrap();
    });
    let mut watch = Watch::start(&world.env, &["--interval", "1h", "--queue", &url]);
    assert_eq!(watch.next("reconcile").await["outcomes"]["created"], 3);
    let t = world.tier1.clone();
    world.add_user("dee", "Dee@Example.com", "Dee", "Moss");
    world.join(&t, "Dee@Example.com");
    let (created, searched) = (
        world.env.applied("connect:CreateUser"),
        world.env.calls("connect:SearchUsers"),
    );
    send(&sqs, &url, &joined(&t, &world.users["Dee@Example.com"])).await;
    let r = watch.next("reconcile").await;
    assert_eq!(r["counts"], json!({"conflict": 1}), "{r}");
    assert_eq!(
        world.env.applied("connect:CreateUser"),
        created,
        "no twin created"
    );
    assert_eq!(
        world.env.calls("connect:SearchUsers"),
        searched + 1,
        "one SearchUsers by the exact name, no listing"
    );
    watch.stop().await;
}

/// The next watch handles the event left in the queue (`id`), and dee's Connect user exists
/// once (three seeded users and hers).
async fn handles_dees_event_once(b: &mut Watch, world: &World, id: &str) {
    let e = b.next("queue_event").await;
    assert_eq!(
        (e["message_id"].as_str(), e["status"].as_str()),
        (Some(id), Some("handled")),
        "{e}"
    );
    assert_eq!(
        world.env.applied("connect:CreateUser"),
        4,
        "dee's Connect user once"
    );
}

/// A watch past its start reconcile; then Dee joins Tier1 with an event, and the membership
/// step answers after `slow_ms`: returned once Dee's Connect user exists (the agent in
/// flight), with the event's message id.
async fn dee_in_flight(
    world: &mut World,
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    slow_ms: u64,
) -> (Watch, String) {
    let mut a = Watch::start(&world.env, &["--interval", "1h", "--queue", url]);
    a.next("reconcile").await;
    world.env.faults(json!({"rules": [
        {"op": "identitystore:CreateGroupMembership", "action": "latency", "latency_ms": slow_ms}
    ]}));
    let t = world.tier1.clone();
    world.add_user("dee", "dee@example.com", "Dee", "Moss");
    world.join(&t, "dee@example.com");
    let id = send(sqs, url, &joined(&t, &world.users["dee@example.com"])).await;
    let env = &world.env;
    wait_for("dee's Connect user", || {
        env.applied("connect:CreateUser") == 4
    })
    .await;
    (a, id)
}
