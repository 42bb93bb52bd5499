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
