//! `drift`: a world with an agent in every status is classified from one bulk read with
//! zero writes, and the fix plan's files hold exactly what the fixes need (and the
//! commands they are for accept them).

use connect_onboard_sandbox::Seed;
use serde_json::{json, Value};

use crate::harness::*;
use crate::seeds;

/// User mode, so that "assigned" is per agent and `complete` and `not_assigned` coexist.
const USER_MODE: &str = "[identity_center]\nassignment = \"user\"\n";

fn connect(seed: &mut Seed, username: &str) {
    seeds::connect_user(seed, username, "First", "Last");
}

fn identity(seed: &mut Seed, user_name: &str, email: Option<&str>, member: bool, assigned: bool) {
    seeds::identity_user(seed, user_name, "Given", "Family", email);
    if member {
        seeds::member(seed, user_name);
    }
    if assigned {
        seeds::user_assigned(seed, user_name);
    }
}

/// An agent whose Connect username, Identity Center user name and primary email are all
/// `email`.
fn agent(seed: &mut Seed, email: &str, member: bool, assigned: bool) {
    connect(seed, email);
    identity(seed, email, Some(email), member, assigned);
}

/// One agent per status.
fn world() -> Seed {
    let mut s = Seed::default();
    // complete
    agent(&mut s, "ana@example.com", true, true);
    // connect_only
    connect(&mut s, "carl@example.com");
    // identity_only
    identity(
        &mut s,
        "ida@example.com",
        Some("ida@example.com"),
        true,
        true,
    );
    // username_mismatch: the Connect username's case differs from the primary email
    connect(&mut s, "Mia@Example.com");
    identity(
        &mut s,
        "mia@example.com",
        Some("mia@example.com"),
        true,
        true,
    );
    // no_primary_email
    connect(&mut s, "nora@example.com");
    identity(&mut s, "nora@example.com", None, true, true);
    // not_in_group
    agent(&mut s, "ned@example.com", false, true);
    // not_assigned
    agent(&mut s, "nat@example.com", true, false);
    // duplicate_identity_user: two users whose emails differ only in case
    agent(&mut s, "dan@example.com", true, true);
    identity(&mut s, "dsmith", Some("Dan@Example.com"), false, false);
    // not an agent: an Identity Center user outside the group, with no Connect user
    identity(
        &mut s,
        "admin@example.com",
        Some("admin@example.com"),
        false,
        false,
    );
    s
}

fn status_of<'a>(j: &'a Value, connect_username: &str) -> &'a str {
    find(j, "agents", "connect_username", connect_username)["status"]
        .as_str()
        .unwrap()
}

#[tokio::test]
async fn every_status_is_found_from_one_bulk_read_with_zero_writes() {
    let env = Env::with(world(), USER_MODE).await;
    let out = env.run(&["drift", "--json"]).await;
    assert_eq!(out.code, 1, "drift found: {out:?}");
    assert_eq!(writes(&env), 0, "read-only");
    let j = out.json();
    assert_eq!(
        j["counts"],
        json!({"complete": 1, "connect_only": 1, "identity_only": 1, "username_mismatch": 1,
               "no_primary_email": 1, "not_in_group": 1, "not_assigned": 1,
               "duplicate_identity_user": 1}),
        "{j:#}"
    );
    for (user, status) in [
        ("ana@example.com", "complete"),
        ("carl@example.com", "connect_only"),
        ("Mia@Example.com", "username_mismatch"),
        ("nora@example.com", "no_primary_email"),
        ("ned@example.com", "not_in_group"),
        ("nat@example.com", "not_assigned"),
        ("dan@example.com", "duplicate_identity_user"),
    ] {
        assert_eq!(status_of(&j, user), status, "{user}: {j:#}");
    }
    let ida = find(&j, "agents", "status", "identity_only");
    assert_eq!(
        (
            &ida["connect_username"],
            &ida["identity_user_name"],
            &ida["email"]
        ),
        (
            &Value::Null,
            &json!("ida@example.com"),
            &json!("ida@example.com")
        )
    );
    let mia = find(&j, "agents", "status", "username_mismatch");
    assert_eq!(mia["email"], "mia@example.com");
    assert!(mia["fix"].as_str().unwrap().contains("offboard"), "{mia:#}");
    let dan = find(&j, "agents", "status", "duplicate_identity_user");
    assert!(
        dan["fix"].as_str().unwrap().contains("\"dsmith\""),
        "{dan:#}"
    );
    // One listing of each side, no per-agent lookup.
    assert_eq!(env.calls("connect:ListUsers"), 1);
    assert_eq!(env.calls("identitystore:ListUsers"), 1);
    assert_eq!(env.calls("identitystore:ListGroupMemberships"), 1);
    assert_eq!(env.calls("sso:ListApplicationAssignments"), 1);
    for per_agent in [
        "connect:SearchUsers",
        "connect:DescribeUser",
        "identitystore:GetUserId",
        "identitystore:GetGroupMembershipId",
    ] {
        assert_eq!(env.calls(per_agent), 0, "{per_agent}");
    }

    // Human output: counts, then a line per agent that is not complete, with its fix.
    let human = env.run(&["drift"]).await;
    assert_eq!(human.code, 1, "{human:?}");
    assert!(
        human
            .stderr
            .contains("read 7 Connect users, 9 Identity Center users, 6 group members"),
        "{human:?}"
    );
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(lines[0].starts_with("agents: 8 ("), "{human:?}");
    assert!(lines[0].contains("connect_only 1"), "{human:?}");
    assert_eq!(lines.len(), 1 + 7, "{human:?}");
    assert!(
        !human.stdout.contains("ana@example.com"),
        "complete agents are not listed"
    );
}

#[tokio::test]
async fn the_fix_plan_holds_what_each_command_needs_and_the_commands_accept_it() {
    let env = Env::with(world(), USER_MODE).await;
    let dir = env.dir.path().join("plan");
    let out = env.run(&["drift", "--fix-plan", path_str(&dir)]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(writes(&env), 0);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let usernames: Vec<String> = read("migrate-usernames.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        usernames,
        ["carl@example.com", "ned@example.com", "nat@example.com"]
    );
    assert_eq!(
        read("batch.csv"),
        "email,first_name,last_name\nida@example.com,Given,Family\nmia@example.com,Given,Family\n"
    );
    assert_eq!(read("offboard.csv"), "email\nMia@Example.com\n");

    // The files are what the commands read: offboard removes Mia's wrongly named Connect
    // user alone (her Identity Center user stays); migrate fixes connect_only, not_in_group
    // and not_assigned; batch gives ida and mia their Connect users.
    let mia_ic = env.world().identity_users["mia@example.com"].clone();
    let o = env
        .run(&[
            "offboard",
            "--connect-only",
            "--file",
            path_str(&dir.join("offboard.csv")),
            "--yes",
        ])
        .await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!env
        .world()
        .connect_users
        .contains(&"Mia@Example.com".to_string()));
    let m = env
        .run(&[
            "migrate",
            "--usernames",
            path_str(&dir.join("migrate-usernames.txt")),
            "--json",
        ])
        .await;
    assert_eq!(m.code, 0, "{m:?}");
    let b = env
        .run(&["batch", path_str(&dir.join("batch.csv")), "--json"])
        .await;
    assert_eq!(b.code, 0, "{b:?}");
    let j = env.run(&["drift", "--json"]).await.json();
    for user in [
        "carl@example.com",
        "ned@example.com",
        "nat@example.com",
        "ida@example.com",
        "mia@example.com",
    ] {
        assert_eq!(status_of(&j, user), "complete", "{user}: {j:#}");
    }
    assert_eq!(
        env.world().identity_users["mia@example.com"],
        mia_ic,
        "Mia's Identity Center user is the one she had"
    );
    assert_eq!(j["counts"]["identity_only"], 0, "{j:#}");
}

#[tokio::test]
async fn a_world_without_drift_exits_0() {
    let mut s = Seed::default();
    agent(&mut s, "ana@example.com", true, false);
    seeds::group_assigned(&mut s);
    let env = Env::with(s, "").await;
    let out = env.run(&["drift", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["counts"]["complete"], 1);
    // Group mode: the group's assignment, read once, decides.
    assert_eq!(env.calls("sso:DescribeApplicationAssignment"), 1);
    assert_eq!(env.calls("sso:ListApplicationAssignments"), 0);
}

#[tokio::test]
async fn a_failed_listing_is_an_error_not_a_classification() {
    let env = Env::with(world(), USER_MODE).await;
    env.faults(json!({"rules": [
        {"op": "connect:ListUsers", "action": "error", "status": 403, "code": "AccessDeniedException"}
    ]}));
    let out = env.run(&["drift", "--json"]).await;
    assert_eq!(out.code, 2, "a refused read is setup: {out:?}");
    assert!(out.json()["error"]
        .as_str()
        .unwrap()
        .contains("AccessDeniedException"));
}

#[tokio::test]
async fn an_agent_that_fits_several_statuses_gets_the_first_that_applies() {
    let mut s = Seed::default();
    // Duplicate, and also not in the group and not assigned.
    agent(&mut s, "dan@example.com", false, false);
    identity(&mut s, "dsmith", Some("DAN@example.com"), false, false);
    // No primary email, and not in the group, not assigned.
    connect(&mut s, "ola@example.com");
    identity(&mut s, "ola@example.com", None, false, false);
    // Username mismatch, and not in the group, not assigned.
    connect(&mut s, "Pia@Example.com");
    identity(
        &mut s,
        "pia@example.com",
        Some("pia@example.com"),
        false,
        false,
    );
    // Not in the group, and not assigned.
    agent(&mut s, "quinn@example.com", false, false);
    let env = Env::with(s, USER_MODE).await;
    let j = env.run(&["drift", "--json"]).await.json();
    for (user, status) in [
        ("dan@example.com", "duplicate_identity_user"),
        ("ola@example.com", "no_primary_email"),
        ("Pia@Example.com", "username_mismatch"),
        ("quinn@example.com", "not_in_group"),
    ] {
        assert_eq!(status_of(&j, user), status, "{user}: {j:#}");
    }
    assert_eq!(j["agents"].as_array().unwrap().len(), 4, "{j:#}");
}

#[tokio::test]
async fn a_fix_plan_dir_that_cannot_be_written_is_a_clear_error() {
    let env = Env::with(world(), USER_MODE).await;
    let file = env.dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = env
        .run(&["drift", "--fix-plan", path_str(&file), "--json"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    let err = out.json()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("writing the fix plan in") && err.contains("not-a-dir"),
        "{err}"
    );
    assert_eq!(writes(&env), 0);
}

// ---------------------------------------------------------------------------------------
// Issue 15 item 2: the fix plan converges. For every status, a world with agents in that
// status (some the plan can fix, some it cannot); `drift --fix-plan .` is written, its
// commands are run exactly as drift prints them, and drift then finds every agent
// complete, except those the first drift left out of the plan with the reason why.

use connect_onboard::app::DriftStatus;
use std::collections::BTreeSet;

/// The worlds that put agents in `status` (the match has no wildcard: a new status needs
/// its worlds), each with its config.
fn worlds(status: DriftStatus) -> Vec<(&'static str, Seed, &'static str)> {
    let mut s = Seed::default();
    match status {
        DriftStatus::Complete => {
            agent(&mut s, "ana@example.com", true, true);
            // Case kept on both sides, exactly: complete too.
            agent(&mut s, "Ana.B@Example.com", true, true);
            vec![("complete", s, USER_MODE)]
        }
        DriftStatus::DuplicateIdentityUser => {
            agent(&mut s, "dan@example.com", true, true);
            identity(&mut s, "dsmith", Some("Dan@Example.com"), false, false);
            // Two group members, no Connect user.
            identity(
                &mut s,
                "dora@example.com",
                Some("dora@example.com"),
                true,
                true,
            );
            identity(&mut s, "dbrown", Some("DORA@example.com"), true, true);
            vec![("duplicate_identity_user", s, USER_MODE)]
        }
        DriftStatus::ConnectOnly => {
            connect(&mut s, "carl@example.com");
            // migrate keeps the case: the Identity Center user is named exactly so.
            connect(&mut s, "Zoe.Q@Example.com");
            // Not an email: migrate refuses it (by hand).
            connect(&mut s, "cy.lee");
            // Two Connect users differing only in case: migrate would skip both (by hand).
            connect(&mut s, "Pat@example.com");
            connect(&mut s, "pat@example.com");
            vec![("connect_only", s, USER_MODE)]
        }
        DriftStatus::IdentityOnly => {
            identity(
                &mut s,
                "ida@example.com",
                Some("ida@example.com"),
                true,
                true,
            );
            // Mixed case: batch would make "ivy@example.com", not what is sent (by hand).
            identity(
                &mut s,
                "Ivy@Example.com",
                Some("Ivy@Example.com"),
                true,
                true,
            );
            // A user name that is not the email: batch would not adopt it (by hand).
            identity(&mut s, "ina", Some("ina@example.com"), true, true);
            // No primary email at all (by hand).
            identity(&mut s, "inez@example.com", None, true, true);
            vec![("identity_only", s, USER_MODE)]
        }
        DriftStatus::NoPrimaryEmail => {
            connect(&mut s, "nora@example.com");
            identity(&mut s, "nora@example.com", None, true, true);
            vec![("no_primary_email", s, USER_MODE)]
        }
        DriftStatus::UsernameMismatch => {
            // The Connect username's case differs from the primary email: offboard + batch.
            connect(&mut s, "Mia@Example.com");
            identity(
                &mut s,
                "mia@example.com",
                Some("mia@example.com"),
                true,
                true,
            );
            // The scenario: Pat@ is exactly what is sent; pat@ is surplus.
            agent(&mut s, "Pat@example.com", true, true);
            connect(&mut s, "pat@example.com");
            // What is sent has capitals: connect-onboard makes no such username (by hand).
            connect(&mut s, "ben.okafor@example.com");
            identity(
                &mut s,
                "Ben.Okafor@Example.com",
                Some("Ben.Okafor@Example.com"),
                true,
                true,
            );
            // A Connect username that is not an email: offboard cannot name it (by hand).
            connect(&mut s, "cy.lee");
            identity(&mut s, "cy.lee", Some("cy.lee@example.com"), true, true);
            // Two wrongly named Connect users of one person: offboard takes one per email.
            connect(&mut s, "MAX@example.com");
            connect(&mut s, "Max@example.com");
            identity(
                &mut s,
                "max@example.com",
                Some("max@example.com"),
                true,
                true,
            );
            vec![("username_mismatch", s, USER_MODE)]
        }
        DriftStatus::NotInGroup => {
            agent(&mut s, "ned@example.com", false, true);
            agent(&mut s, "Ned.B@Example.com", false, true);
            // The Identity Center user name is not the email: migrate would not adopt it.
            connect(&mut s, "nel@example.com");
            identity(&mut s, "nel", Some("nel@example.com"), false, true);
            vec![("not_in_group", s, USER_MODE)]
        }
        DriftStatus::NotAssigned => {
            agent(&mut s, "nat@example.com", true, false);
            connect(&mut s, "nia@example.com");
            identity(&mut s, "nia", Some("nia@example.com"), true, false);
            let mut g = Seed::default();
            // Group mode: the group is not assigned, so every agent is not_assigned.
            agent(&mut g, "gus@example.com", true, false);
            agent(&mut g, "Gia@Example.com", true, false);
            vec![
                ("not_assigned (user mode)", s, USER_MODE),
                ("not_assigned (group mode)", g, ""),
            ]
        }
    }
}

/// An agent's key in a drift report: its Connect username, else its Identity Center user
/// name.
fn key(a: &Value) -> String {
    a["connect_username"]
        .as_str()
        .or(a["identity_user_name"].as_str())
        .unwrap()
        .to_string()
}

/// `drift --fix-plan .` in the test's directory, then the printed commands, run exactly as
/// printed (offboard with --yes: the confirmation), each exiting 0. Returns the first
/// drift's JSON and the plan's files' rows.
async fn write_and_run_the_plan(env: &Env, what: &str) -> (Value, BTreeSet<String>) {
    let before = env.run(&["drift", "--json"]).await.json();
    let out = env.run(&["drift", "--fix-plan", "."]).await;
    let clean = before["counts"]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, n)| k == "complete" || n == 0);
    assert_eq!(out.code, if clean { 0 } else { 1 }, "{what}: {out:?}");
    let last = out.stdout.lines().last().unwrap().to_string();
    let commands: Vec<String> = match last.split_once(": review, then run ") {
        Some((_, cmds)) => cmds.split(", ").map(str::to_string).collect(),
        None => {
            assert!(last.contains("nothing to run"), "{what}: {out:?}");
            Vec::new()
        }
    };
    let dir = env.dir.path();
    // Each file's first column, as written ("file:name").
    let mut rows = BTreeSet::new();
    for (file, skip) in [
        ("offboard.csv", 1),
        ("batch.csv", 1),
        ("migrate-usernames.txt", 0),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for l in text.lines().skip(skip).filter(|l| !l.starts_with('#')) {
            rows.insert(format!("{file}:{}", l.split(',').next().unwrap()));
        }
    }
    for c in &commands {
        let mut args: Vec<&str> = c.split(' ').collect();
        if args[0] == "offboard" {
            args.push("--yes");
        }
        let r = env.run(&args).await;
        assert_eq!(r.code, 0, "{what}: `{c}` as printed: {r:?}");
    }
    (before, rows)
}

/// The property: after the plan, every agent is complete, or the first drift left it out
/// of the plan, said why, and it is in no file; every agent the plan fixed keeps its
/// Identity Center user.
async fn converges(what: &str, seed: Seed, toml: &str, status: Option<DriftStatus>) {
    let env = Env::with(seed, toml).await;
    let (before, rows) = write_and_run_the_plan(&env, what).await;
    if let Some(status) = status {
        assert!(
            before["counts"][status.as_str()].as_u64().unwrap() > 0,
            "{what}: the world has agents in {status:?}: {before:#}"
        );
    }
    let agents = before["agents"].as_array().unwrap();
    let by_hand: BTreeSet<String> = agents
        .iter()
        .filter(|a| a["status"] != "complete" && a["fix_plan"].as_array().unwrap().is_empty())
        .map(key)
        .collect();
    for a in agents.iter().filter(|a| by_hand.contains(&key(a))) {
        let fix = a["fix"].as_str().unwrap();
        assert!(
            fix.starts_with("not in the fix plan ("),
            "{what}: says why: {a:#}"
        );
        // Its Connect user is named in no file; one without a Connect user has no batch row.
        let named = match (a["connect_username"].as_str(), a["email"].as_str()) {
            (Some(c), _) => vec![
                format!("offboard.csv:{c}"),
                format!("migrate-usernames.txt:{c}"),
            ],
            (None, Some(e)) => vec![
                format!("batch.csv:{e}"),
                format!("batch.csv:{}", e.to_lowercase()),
            ],
            (None, None) => vec![],
        };
        for n in named {
            assert!(!rows.contains(&n), "{what}: {n} is in the plan: {a:#}");
        }
    }
    let after = env.run(&["drift", "--json"]).await.json();
    let left: BTreeSet<String> = (after["agents"].as_array().unwrap().iter())
        .filter(|a| a["status"] != "complete")
        .map(key)
        .collect();
    assert!(
        left.is_subset(&by_hand),
        "{what}: not complete after the plan, though planned: {:?}\nbefore: {before:#}\nafter: {after:#}",
        left.difference(&by_hand).collect::<Vec<_>>()
    );
    let complete: BTreeSet<&str> = (after["agents"].as_array().unwrap().iter())
        .filter(|a| a["status"] == "complete")
        .filter_map(|a| a["identity_user_name"].as_str())
        .collect();
    let connect_after: BTreeSet<&str> = (after["agents"].as_array().unwrap().iter())
        .filter_map(|a| a["connect_username"].as_str())
        .collect();
    for a in agents
        .iter()
        .filter(|a| !a["fix_plan"].as_array().unwrap().is_empty())
    {
        if a["fix_plan"] == json!(["offboard.csv"]) {
            // A surplus Connect user: removed; the agent it doubled keeps its own status.
            let c = a["connect_username"].as_str().unwrap();
            assert!(
                !connect_after.contains(c),
                "{what}: {c} is removed: {after:#}"
            );
        } else if let Some(u) = a["identity_user_name"].as_str() {
            assert!(complete.contains(u), "{what}: {u} is complete: {after:#}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fix_plan_run_as_printed_leaves_every_status_complete_or_says_why_not() {
    for status in DriftStatus::ALL {
        for (what, seed, toml) in worlds(status) {
            converges(what, seed, toml, Some(status)).await;
        }
    }
}

/// The scenario: migrate made the Identity Center user "Pat@example.com" for the
/// Connect user "Pat@example.com", and a second Connect user "pat@example.com" exists.
/// The plan removes the surplus one only; it does not make it again in lower case.
#[tokio::test(flavor = "multi_thread")]
async fn pat_and_pat_the_surplus_connect_user_is_removed_and_not_made_again() {
    let mut s = Seed::default();
    connect(&mut s, "Pat@example.com");
    connect(&mut s, "pat@example.com");
    let env = Env::with(s, "").await;
    let list = env.dir.path().join("pat.txt");
    std::fs::write(&list, "Pat@example.com\n").unwrap();
    let out = env.run(&["migrate", "--usernames", path_str(&list)]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let ic = env.world().identity_users.clone();
    let j = env.run(&["drift", "--json"]).await.json();
    assert_eq!(status_of(&j, "Pat@example.com"), "complete", "{j:#}");
    let pat = find(&j, "agents", "connect_username", "pat@example.com");
    assert_eq!(pat["status"], "username_mismatch", "{j:#}");
    assert_eq!(pat["fix_plan"], json!(["offboard.csv"]), "{j:#}");
    let (_, rows) = write_and_run_the_plan(&env, "Pat@ / pat@").await;
    assert_eq!(
        rows,
        BTreeSet::from(["offboard.csv:pat@example.com".to_string()])
    );
    assert_eq!(
        std::fs::read_to_string(env.dir.path().join("batch.csv")).unwrap(),
        "email,first_name,last_name\n"
    );
    let j = env.run(&["drift", "--json"]).await;
    assert_eq!(j.code, 0, "{j:?}");
    assert_eq!(env.world().connect_users, ["Pat@example.com"]);
    assert_eq!(
        env.world().identity_users,
        ic,
        "the Identity Center user is kept"
    );
}

/// One person of a random world: how their Connect and Identity Center sides look.
#[derive(Debug, Clone)]
struct Person {
    /// Connect usernames: (case variant of the email, or not an email).
    connect: Vec<u8>,
    /// The Identity Center user: (user name variant, email variant, member, assigned).
    identity: Option<(u8, Option<u8>, bool, bool)>,
    /// A second Identity Center user whose email differs only in case.
    duplicate: bool,
}

/// Person `i`'s name in variant `v`: 0 lower-case email, 1 capitalised, 2 upper-case local
/// part, 3 not an email.
fn variant(i: usize, v: u8) -> String {
    match v {
        0 => format!("p{i}.agent@example.com"),
        1 => format!("P{i}.Agent@Example.com"),
        2 => format!("P{i}.AGENT@example.com"),
        _ => format!("p{i}.agent"),
    }
}

fn person() -> impl proptest::strategy::Strategy<Value = Person> {
    use proptest::prelude::*;
    (
        proptest::collection::btree_set(0u8..4, 0..3),
        proptest::option::of((
            0u8..4,
            proptest::option::of(0u8..3),
            any::<bool>(),
            any::<bool>(),
        )),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(connect, identity, duplicate)| Person {
            connect: connect.into_iter().collect(),
            identity,
            duplicate,
        })
}

fn random_world(people: &[Person], group_assigned: bool) -> Seed {
    let mut s = Seed::default();
    for (i, p) in people.iter().enumerate() {
        for v in &p.connect {
            connect(&mut s, &variant(i, *v));
        }
        if let Some((name, email, member, assigned)) = p.identity {
            let email = email.map(|e| variant(i, e));
            identity(
                &mut s,
                &variant(i, name),
                email.as_deref(),
                member,
                assigned,
            );
        }
        if p.duplicate {
            identity(
                &mut s,
                &format!("dup{i}"),
                Some(&variant(i, 2)),
                true,
                false,
            );
        }
    }
    if group_assigned {
        seeds::group_assigned(&mut s);
    }
    s
}

/// The same property over random worlds: three people, each with zero to three Connect
/// users (case variants, or a username that is not an email), maybe an Identity Center user
/// (its user name and email in any variant, or no email; in the group or not; assigned or
/// not), maybe a duplicate; user or group mode; the identity provider sending the email or
/// the user name. Each case runs five commands, so 12 cases
/// unless `PROPTEST_CASES` says otherwise.
#[test]
fn the_fix_plan_converges_on_random_worlds() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let worlds = (
        proptest::collection::vec(person(), 1..4),
        any::<bool>(),
        any::<bool>(),
        proptest::bool::weighted(0.25),
    );
    runner
        .run(&worlds, |(people, user_mode, group_assigned, user_name)| {
            let seed = random_world(&people, group_assigned && !user_mode);
            let toml = format!(
                "[identity_center]\n{}{}",
                if user_mode {
                    "assignment = \"user\"\n"
                } else {
                    ""
                },
                if user_name {
                    "role_session_name = \"user_name\"\n"
                } else {
                    ""
                }
            );
            let what = format!("{people:?} user_mode={user_mode} user_name={user_name}");
            rt.block_on(converges(&what, seed, &toml, None));
            Ok(())
        })
        .unwrap();
}
