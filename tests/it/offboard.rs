//! `offboard`: leavers removed through the real binary and SDK against the sandbox — agents
//! made by `onboard`, by `batch` and by someone else; kills between steps and `resume`;
//! shared resources and other agents untouched; refusals that write nothing.

use connect_onboard_sandbox::world::World;
use connect_onboard_sandbox::Seed;
use serde_json::{json, Value};

use crate::harness::*;

const ANA: &str = "ana.silva@example.com";
const BEN: &str = "ben.ng@example.com";
const BEN_OKAFOR: &str = "ben.okafor@example.com";
const DELETES: [&str; 4] = [
    "sso:DeleteApplicationAssignment",
    "identitystore:DeleteGroupMembership",
    "identitystore:DeleteUser",
    "connect:DeleteUser",
];
const USER_MODE: &str = "[identity_center]\nassignment = \"user\"\n";

fn deletes(env: &Env) -> Vec<u64> {
    DELETES.iter().map(|op| env.applied(op)).collect()
}

/// The shared group and the group's application assignment are still there.
fn assert_shared_intact(w: &WorldView) {
    assert!(w.groups.iter().any(|g| g == "ConnectAgents"), "{w:#?}");
    assert_eq!(
        w.assignments
            .iter()
            .filter(|a| a.0 == "GROUP" && a.1 == "ConnectAgents")
            .count(),
        1,
        "{w:#?}"
    );
}

/// The offboarding run in a status JSON (the one whose workflow is offboard-agent).
fn offboard_run(st: &Value) -> &Value {
    st["runs"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["workflow"] == "offboard-agent")
        .unwrap_or_else(|| panic!("an offboard run in {st:#}"))
}

fn seed_someone_elses(w: &mut World, email: &str) -> (String, String) {
    let c = w.add_connect_user(INSTANCE, email, "Cy", "Lee").unwrap();
    let i = w.add_identity_user(email, email, "Cy", "Lee").unwrap();
    let g = (w.identity_stores[STORE].groups.values())
        .find(|g| g.display_name == "ConnectAgents")
        .unwrap()
        .group_id
        .clone();
    w.add_membership(&g, &i).unwrap();
    (c, i)
}

#[tokio::test(flavor = "multi_thread")]
async fn offboard_removes_an_onboarded_agent_and_leaves_shared_resources_and_others() {
    let env = Env::new().await;
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    assert_eq!(env.onboard(BEN, &[]).await.code, 0);
    let out = env.run(&["offboard", ANA, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("done 1"), "{out:?}");
    let w = env.world();
    w.assert_gone(ANA);
    w.assert_onboarded_once(BEN);
    assert_shared_intact(&w);
    assert_eq!(
        deletes(&env),
        [0, 1, 1, 1],
        "group mode: no user assignment"
    );
    // status shows the offboarding: every step done, the ids it deleted.
    let st = env.status_json().await;
    let run = offboard_run(&st);
    let agent = &run["agents"][0];
    assert_eq!(agent["email"], ANA);
    assert_eq!(agent["state"], "done");
    assert!(
        agent["portal_url"].is_null(),
        "an offboarded agent signs in nowhere"
    );
    let steps = agent["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert!(steps
        .iter()
        .all(|s| s["state"] == "done" && s["owned"] == false));
    let connect = steps.iter().find(|s| s["id"] == "connect_user").unwrap();
    assert!(connect["resources"]["user_id"].is_string(), "{connect}");
    // Again: already done, zero writes.
    let before = writes(&env);
    let out = env.run(&["offboard", ANA, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("already_done 1"), "{out:?}");
    assert_eq!(writes(&env), before);
    // A rollback of an offboarding is refused: deletes are never undone.
    let out = env
        .run(&["rollback", run["run_id"].as_str().unwrap(), "--yes"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("never undone"), "{out:?}");
    assert_eq!(writes(&env), before);
    // And the agent can be onboarded again afterwards (a new run, not "already done").
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    env.world().assert_onboarded_once(ANA);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_mode_removes_the_users_own_assignment_and_keep_identity_user_keeps_the_user() {
    let env = Env::with(Seed::default(), USER_MODE).await;
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    assert_eq!(env.onboard(BEN, &[]).await.code, 0);
    let out = env.run(&["offboard", ANA, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    w.assert_gone(ANA);
    assert!(!w.assignments.iter().any(|a| a.1 == ANA), "{w:#?}");
    assert!(
        w.assignments.contains(&("USER".into(), BEN.into())),
        "{w:#?}"
    );
    assert_eq!(deletes(&env), [1, 1, 1, 1]);

    let out = env
        .run(&["offboard", BEN, "--yes", "--keep-identity-user"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    assert!(w.identity_users.contains_key(BEN), "kept: {w:#?}");
    assert!(!w.connect_users.iter().any(|u| u == BEN), "{w:#?}");
    assert!(!w.memberships.iter().any(|(_, u)| u == BEN), "{w:#?}");
    assert!(!w.assignments.iter().any(|a| a.1 == BEN), "{w:#?}");
    assert_eq!(env.applied("identitystore:DeleteUser"), 1, "only ana's");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_yes_off_a_terminal_it_shows_the_plan_and_refuses_and_a_dry_run_writes_nothing() {
    let env = Env::new().await;
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    let before = writes(&env);
    let status = env.status_json().await;
    let report = env.dir.path().join("report.csv");
    let out = env
        .run(&["offboard", ANA, "--report", path_str(&report)])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("refusing to delete without --yes"),
        "{out:?}"
    );
    // The plan names what would be deleted, with ids.
    let connect_id = env.sb.seed_world(|w| {
        w.connect_instances[INSTANCE]
            .users
            .values()
            .find(|u| u.username == ANA)
            .unwrap()
            .id
            .clone()
    });
    assert!(
        out.stderr
            .contains(&format!("Connect user {connect_id} ({ANA}): delete")),
        "{out:?}"
    );
    assert!(out.stderr.contains("the group stays"), "{out:?}");
    assert_eq!(writes(&env), before, "zero writes");
    assert_eq!(env.status_json().await, status, "nothing recorded");
    assert!(!report.exists(), "no report before the confirmation");

    let out = env.run(&["offboard", ANA, "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["plan"]["connect_user"]["delete"], 1, "{j}");
    assert_eq!(j["plan"]["group_membership"]["delete"], 1, "{j}");
    assert_eq!(j["plan"]["app_assignment"]["gone"], 1, "group mode: {j}");
    assert_eq!(writes(&env), before, "zero writes");
    env.world().assert_onboarded_once(ANA);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_side_only_or_ambiguous_agents_are_skipped_unless_the_side_is_asked_for() {
    let env = Env::new().await;
    let (connect_only, identity_only) = ("co@example.com", "io@example.com");
    env.sb.seed_world(|w| {
        w.add_connect_user(INSTANCE, connect_only, "Co", "Nnect")
            .unwrap();
        w.add_identity_user(identity_only, identity_only, "Io", "Dent")
            .unwrap();
        // Two Identity Center users answer to am@example.com: one by UserName, one by email.
        w.add_connect_user(INSTANCE, "am@example.com", "Am", "Big")
            .unwrap();
        w.add_identity_user("am@example.com", "other@example.com", "Am", "Big")
            .unwrap();
        w.add_identity_user("am.big", "am@example.com", "Am", "Big")
            .unwrap();
    });
    let before = writes(&env);
    let out = env
        .run(&[
            "offboard",
            connect_only,
            identity_only,
            "am@example.com",
            "nobody@example.com",
            "--yes",
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("skipped 4"), "{out:?}");
    assert!(
        out.stdout.contains("found in Amazon Connect only"),
        "{out:?}"
    );
    assert!(out.stdout.contains("pass --connect-only"), "{out:?}");
    assert!(
        out.stdout.contains("found in IAM Identity Center only"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("matches 2 IAM Identity Center users"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("nobody@example.com skipped: not found"),
        "{out:?}"
    );
    assert_eq!(writes(&env), before, "skipped agents: zero writes");

    let out = env
        .run(&["offboard", connect_only, "--connect-only", "--yes"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = env
        .run(&["offboard", identity_only, "--identity-only", "--yes"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    // Both sides exist, only Connect is removed; the Identity Center side is then what is
    // left: a plain offboard reports it, --identity-only removes it.
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    let out = env.run(&["offboard", ANA, "--connect-only", "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = env.run(&["offboard", ANA, "--yes"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("found in IAM Identity Center only"),
        "{out:?}"
    );
    let out = env
        .run(&["offboard", ANA, "--identity-only", "--yes"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = env.run(&["offboard", ANA, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("already_done 1"), "{out:?}");
    env.world().assert_gone(ANA);
    let w = env.world();
    assert!(!w.connect_users.iter().any(|u| u == connect_only), "{w:#?}");
    assert!(!w.identity_users.contains_key(identity_only), "{w:#?}");
    assert!(w.identity_users.contains_key("am.big"), "{w:#?}");
    assert!(w.groups.iter().any(|g| g == "ConnectAgents"), "{w:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn someone_elses_agent_is_offboarded_and_a_resource_deleted_meanwhile_counts_as_done() {
    let env = Env::new().await;
    let (c, i) = env
        .sb
        .seed_world(|w| seed_someone_elses(w, "cy.lee@example.com"));
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    // The process dies with the Identity Store user's delete intended but not sent; an
    // admin deletes that user and the Connect user in the console before the resume.
    let out = env
        .run_with(
            &["offboard", "cy.lee@example.com", "--yes"],
            &[("CONNECT_ONBOARD_CRASH_AT", "before_write:identity_user")],
        )
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    let st = env.status_json().await;
    let step = offboard_run(&st)["agents"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "identity_user")
        .unwrap()
        .clone();
    assert_eq!(step["state"], "running", "the intent is durable: {step}");
    assert_eq!(step["resources"]["user_id"], i.as_str());
    env.sb.seed_world(|w| {
        w.identity_stores.get_mut(STORE).unwrap().remove_user(&i);
        assert!(w.remove_connect_user(INSTANCE, &c));
    });
    // Running offboard again finishes its run.
    let out = env.run(&["offboard", "cy.lee@example.com", "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env.applied("identitystore:DeleteUser"), 0, "gone already");
    assert_eq!(env.applied("connect:DeleteUser"), 0, "gone already");
    let st = env.status_json().await;
    let run = offboard_run(&st);
    assert_eq!(run["agents"][0]["state"], "done", "{run:#}");
    assert_eq!(
        run["agents"].as_array().unwrap().len(),
        1,
        "one run, resumed"
    );
    let w = env.world();
    w.assert_gone("cy.lee@example.com");
    w.assert_onboarded_once(ANA);
    assert_shared_intact(&w);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_between_any_two_steps_or_a_delete_and_its_checkpoint_resume_finishes() {
    for point in ["before_write", "after_write", "after_checkpoint"] {
        for step_id in [
            "app_assignment",
            "group_membership",
            "identity_user",
            "connect_user",
        ] {
            let hook = format!("{point}:{step_id}");
            let env = Env::with(Seed::default(), USER_MODE).await;
            assert_eq!(env.onboard(ANA, &[]).await.code, 0);
            assert_eq!(env.onboard(BEN, &[]).await.code, 0);
            let out = env
                .run_with(
                    &["offboard", ANA, "--yes"],
                    &[("CONNECT_ONBOARD_CRASH_AT", &hook)],
                )
                .await;
            assert_ne!(out.code, 0, "{hook}: the process must have died: {out:?}");
            let out = env.run(&["resume"]).await;
            assert_eq!(out.code, 0, "{hook}: {out:?}");
            let w = env.world();
            w.assert_gone(ANA);
            assert!(!w.assignments.iter().any(|a| a.1 == ANA), "{hook}: {w:#?}");
            assert!(w.connect_users.iter().any(|u| u == BEN), "{hook}: {w:#?}");
            assert!(w.identity_users.contains_key(BEN), "{hook}: {w:#?}");
            assert!(w
                .memberships
                .contains(&("ConnectAgents".into(), BEN.into())));
            assert!(
                w.assignments.contains(&("USER".into(), BEN.into())),
                "{hook}"
            );
            assert_eq!(
                deletes(&env),
                [1, 1, 1, 1],
                "{hook}: each delete applied once"
            );
            let st = env.status_json().await;
            assert_eq!(offboard_run(&st)["agents"][0]["state"], "done", "{hook}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_a_landed_delete_is_unanswered_then_resume() {
    let env = Env::new().await;
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    env.faults(
        json!({"rules": [{"op": "connect:DeleteUser", "action": "apply_then_hang", "times": 1}]}),
    );
    let mut child = env.command(&["offboard", ANA, "--yes"]).spawn().unwrap();
    wait_for("the delete to land", || {
        env.applied("connect:DeleteUser") == 1
    })
    .await;
    let pid = child.id().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(!child.wait().await.unwrap().success());
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_gone(ANA);
    assert_shared_intact(&env.world());
    let st = env.status_json().await;
    assert_eq!(offboard_run(&st)["agents"][0]["state"], "done");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_of_batch_agents_is_offboarded_with_bulk_reads_and_a_report() {
    let env = Env::new().await;
    let agents = env.dir.path().join("agents.csv");
    let mut csv = String::from("email,first_name,last_name\n");
    for n in 0..4 {
        csv.push_str(&format!("a{n}@example.com,Agent,N{n}\n"));
    }
    std::fs::write(&agents, csv).unwrap();
    assert_eq!(env.run(&["batch", path_str(&agents)]).await.code, 0);
    // Only the email column is needed; a bad row is an error naming its line, nothing written.
    let leavers = env.dir.path().join("leavers.csv");
    std::fs::write(&leavers, "email\na0@example.com\nnot-an-email\n").unwrap();
    let before = writes(&env);
    let out = env
        .run(&["offboard", "--file", path_str(&leavers), "--yes"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("leavers.csv:3: column \"email\""),
        "{out:?}"
    );
    assert_eq!(writes(&env), before);

    std::fs::write(&leavers, "email\na0@example.com\nA1@Example.com\n").unwrap();
    let report = env.dir.path().join("offboarded.csv");
    let searches = env.calls("connect:SearchUsers");
    let out = env
        .run(&[
            "offboard",
            "--file",
            path_str(&leavers),
            "--yes",
            "--bulk-reads",
            "always",
            "--report",
            path_str(&report),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        env.calls("connect:ListUsers"),
        1,
        "one listing identifies the file"
    );
    assert_eq!(
        env.calls("connect:SearchUsers"),
        searches,
        "no per-agent search"
    );
    let w = env.world();
    w.assert_gone("a0@example.com");
    w.assert_gone("a1@example.com");
    w.assert_onboarded_once("a2@example.com");
    w.assert_onboarded_once("a3@example.com");
    assert_shared_intact(&w);
    let text = std::fs::read_to_string(&report).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("a1@example.com,done,")),
        "{text}"
    );
    // The batch again re-creates the leavers (an offboarded agent is not "already done").
    let out = env.run(&["batch", path_str(&agents), "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["done"], 2, "{j}");
    assert_eq!(j["counts"]["already_done"], 2, "{j}");
    env.world().assert_onboarded_once("a0@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_deletes_are_retried_and_an_unfinished_onboarding_is_left_alone() {
    let env = Env::new().await;
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    env.faults(json!({"rules": [{"op": "connect:DeleteUser", "action": "throttle", "times": 2}]}));
    let out = env.run(&["offboard", ANA, "--yes", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        env.calls("connect:DeleteUser"),
        3,
        "two throttled, then applied"
    );
    assert_eq!(env.applied("connect:DeleteUser"), 1);
    let j = out.json();
    let api = (j["calls"].as_array().unwrap().iter())
        .find(|c| c["api"] == "connect:DeleteUser")
        .unwrap();
    assert_eq!(api["throttled"], 2, "the pacer heard the throttles: {j}");
    env.faults(json!({"rules": []}));

    // Ben's onboarding dies half-way: offboarding him waits until it is finished or rolled back.
    let out = env
        .run_with(
            &[
                "onboard",
                "--email",
                BEN,
                "--first-name",
                "Ben",
                "--last-name",
                "Ng",
            ],
            &[("CONNECT_ONBOARD_CRASH_AT", "after_checkpoint:identity_user")],
        )
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    let before = writes(&env);
    let out = env.run(&["offboard", BEN, "--yes"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("its onboarding in run")
            && out.stdout.contains("`connect-onboard resume ")
            && out.stdout.contains("first"),
        "{out:?}"
    );
    assert_eq!(writes(&env), before, "zero writes");
    // Resumed, it can be offboarded.
    assert_eq!(env.run(&["resume"]).await.code, 0);
    assert_eq!(env.run(&["offboard", BEN, "--yes"]).await.code, 0);
    env.world().assert_gone(BEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_the_plan_is_confirmed_by_typing_yes() {
    let env = Env::new().await;
    assert_eq!(env.onboard(ANA, &[]).await.code, 0);
    let before = writes(&env);
    let (code, shown) = on_a_terminal(&env, &["offboard", ANA], "no\n").await;
    assert_eq!(code, 2, "{shown}");
    assert!(shown.contains("Type \"yes\" to go on"), "{shown}");
    assert!(
        shown.contains("not confirmed; nothing was written"),
        "{shown}"
    );
    assert_eq!(writes(&env), before, "declined: zero writes");
    env.world().assert_onboarded_once(ANA);

    let (code, shown) = on_a_terminal(&env, &["offboard", ANA], "yes\n").await;
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("Connect user"),
        "the plan came first: {shown}"
    );
    env.world().assert_gone(ANA);
    assert_shared_intact(&env.world());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migrated_agent_with_a_mixed_case_username_is_found_on_both_sides() {
    use connect_onboard_sandbox::world::SeedConnectUser;
    let mut seed = Seed::default();
    for name in ["Ana.Silva@Example.com", "Ben.Ng@Example.com"] {
        seed.connect_instances[0].users.push(SeedConnectUser {
            username: name.into(),
            first_name: Some("A".into()),
            last_name: Some("B".into()),
            security_profiles: vec!["Agent".into()],
            routing_profile: Some("Basic Routing Profile".into()),
            ..Default::default()
        });
    }
    let env = Env::with(seed, "").await;
    let out = env.run(&["migrate"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // Typed in lower case, one per agent: the Connect user is found through the Identity
    // Center user's UserName (the RoleSessionName migrate kept), not skipped as "Identity
    // Center only".
    let out = env.run(&["offboard", ANA, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // From a file (the fix-plan's offboard.csv shape), with the bulk reads.
    let file = env.dir.path().join("leavers.csv");
    std::fs::write(&file, "email\nben.ng@example.com\n").unwrap();
    let out = env
        .run(&[
            "offboard",
            "--file",
            file.to_str().unwrap(),
            "--bulk-reads",
            "always",
            "--yes",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    for name in ["Ana.Silva@Example.com", "Ben.Ng@Example.com"] {
        assert!(!w.connect_users.contains(&name.to_string()), "{w:#?}");
        assert!(!w.identity_users.contains_key(name), "{w:#?}");
    }
    assert_shared_intact(&w);
    assert_eq!(deletes(&env), [0, 2, 2, 2]);
}

/// Item 8 of issue 15: a `--connect-only` dry run says `keep` for the Identity Center side it
/// leaves (not `gone`: the user and its membership exist), and names the Connect user by
/// its real username, not the lower-cased email.
#[tokio::test(flavor = "multi_thread")]
async fn a_connect_only_dry_run_says_keep_for_the_kept_side_and_names_the_real_username() {
    let mut seed = Seed::default();
    crate::seeds::connect_agent(&mut seed, "Ben.Okafor@Example.com", "Ben", "Okafor");
    crate::seeds::identity_user(&mut seed, BEN_OKAFOR, "Ben", "Okafor", Some(BEN_OKAFOR));
    crate::seeds::member(&mut seed, BEN_OKAFOR);
    crate::seeds::user_assigned(&mut seed, BEN_OKAFOR);
    let env = Env::with(seed, USER_MODE).await;
    let typed = "Ben.Okafor@Example.com";
    let connect_id = env.first_connect_user().id;

    let out = env
        .run(&["offboard", "--connect-only", "--dry-run", typed])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(writes(&env), 0);
    let table: Vec<&str> = out.stdout.lines().collect();
    for (step, label) in [
        ("app_assignment", "keep 1"),
        ("group_membership", "keep 1"),
        ("identity_user", "keep 1"),
        ("connect_user", "delete 1"),
    ] {
        assert!(
            table
                .iter()
                .any(|l| l.trim_start().starts_with(step) && l.ends_with(label)),
            "{step}: {label}: {out:?}"
        );
    }
    assert!(!out.stdout.contains("gone"), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "Connect user {connect_id} (Ben.Okafor@Example.com): delete"
        )),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("Identity Center user, its membership and assignment: keep"),
        "{out:?}"
    );
    assert!(!out.stderr.contains(&format!("({BEN_OKAFOR})")), "{out:?}");
    let j = env
        .run(&["offboard", "--connect-only", "--dry-run", "--json", typed])
        .await
        .json();
    assert_eq!(
        j["plan"],
        json!({"app_assignment": {"keep": 1}, "group_membership": {"keep": 1},
               "identity_user": {"keep": 1}, "connect_user": {"delete": 1}}),
        "{j:#}"
    );
    assert_eq!(j["agents"][0]["plan"]["identity_user"], "keep", "{j:#}");

    // The confirmation shows the same names; --keep-identity-user says keep, too.
    let out = env.run(&["offboard", "--connect-only", typed]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "Connect user {connect_id} (Ben.Okafor@Example.com): delete"
        )),
        "{out:?}"
    );
    let mut seed = Seed::default();
    crate::seeds::onboarded_by_hand(&mut seed, ANA, "Ana", "Silva");
    crate::seeds::group_assigned(&mut seed);
    let env = Env::with(seed, "").await;
    let j = env
        .run(&[
            "offboard",
            "--keep-identity-user",
            "--dry-run",
            "--json",
            ANA,
        ])
        .await
        .json();
    assert_eq!(j["plan"]["identity_user"], json!({"keep": 1}), "{j:#}");
    assert_eq!(j["plan"]["group_membership"], json!({"delete": 1}), "{j:#}");
    assert_eq!(writes(&env), 0);
}
