//! `sync`: Identity Center groups as the source of truth for Connect agents, through the real
//! binary and SDK against the sandbox. The Identity Store's groups, users and memberships are
//! seeded directly (as the identity provider's SCIM would make them): two mapped groups with
//! precedence, a member added, moved, renamed and removed, `--prune` and its guards, a dry
//! run, mapping errors, a member without a primary email, and a mixed-case email kept exactly.

use connect_onboard_sandbox::world::ConnectUser;
use connect_onboard_sandbox::Seed;
use serde_json::{json, Value};

use crate::harness::*;

/// Tier1-Agents (Basic Routing Profile, Agent, Tier 1) before Supervisors (Sales Routing
/// Profile, Agent + CallCenterManager): the order is the precedence.
pub(crate) const MAPPING: &str = r#"
[[sync.groups]]
group = "Tier1-Agents"
routing_profile = "Basic Routing Profile"
security_profiles = ["Agent"]
hierarchy_group = "Tier 1"

[[sync.groups]]
group = "Supervisors"
routing_profile = "Sales Routing Profile"
security_profiles = ["Agent", "CallCenterManager"]
"#;

/// A mixed-case primary email (its UserName differs: the email is the Connect username).
const ANA: &str = "Ana.Silva@Example.com";
/// In both groups.
const BO: &str = "bo@example.com";
/// In Supervisors only.
const CY: &str = "cy@example.com";

pub(crate) struct World {
    pub(crate) env: Env,
    pub(crate) tier1: String,
    pub(crate) sups: String,
    /// Identity Center user ids by email.
    pub(crate) users: std::collections::BTreeMap<String, String>,
}

impl World {
    pub(crate) fn join(&self, group: &str, email: &str) {
        let user = self.users[email].clone();
        self.env.sb.seed_world(|w| {
            w.add_membership(group, &user).unwrap();
        });
    }

    pub(crate) fn leave(&self, group: &str, email: &str) {
        let user = self.users[email].clone();
        self.env.sb.seed_world(|w| {
            let store = w.identity_stores.get_mut(STORE).unwrap();
            let id = store
                .membership(group, &user)
                .unwrap()
                .membership_id
                .clone();
            store.remove_membership(&id);
        });
    }

    pub(crate) fn add_user(&mut self, user_name: &str, email: &str, given: &str, family: &str) {
        let id = self.env.sb.seed_world(|w| {
            w.add_identity_user(user_name, email, given, family)
                .unwrap()
        });
        self.users.insert(email.to_string(), id);
    }
}

/// The two mapped groups; ana (Tier1), bo (both), cy (Supervisors) as the IdP made them.
pub(crate) async fn idp() -> World {
    let env = Env::with(Seed::default(), MAPPING).await;
    let (tier1, sups) = env.sb.seed_world(|w| {
        (
            w.add_group("Tier1-Agents").unwrap(),
            w.add_group("Supervisors").unwrap(),
        )
    });
    let mut world = World {
        env,
        tier1,
        sups,
        users: Default::default(),
    };
    world.add_user("asilva", ANA, "Ana", "Silva");
    world.add_user(BO, BO, "Bo", "Ek");
    world.add_user(CY, CY, "Cy", "Lee");
    let (t, s) = (world.tier1.clone(), world.sups.clone());
    world.join(&t, ANA);
    world.join(&t, BO);
    world.join(&s, BO);
    world.join(&s, CY);
    world
}

pub(crate) fn connect_user(env: &Env, username: &str) -> Option<ConnectUser> {
    env.sb.seed_world(|w| {
        w.connect_instances[INSTANCE]
            .users
            .values()
            .find(|u| u.username == username)
            .cloned()
    })
}

fn identity_user_count(env: &Env) -> usize {
    env.sb.seed_world(|w| w.identity_stores[STORE].users.len())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn row<'a>(plan: &'a Value, agent: &str) -> &'a Value {
    find(plan, "plan", "agent", agent)
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_two_groups_union_of_security_profiles_and_the_first_groups_routing() {
    let w = idp().await;
    let env = &w.env;
    let idu_before = identity_user_count(env);
    // Dry run: the plan, zero writes, no run.
    let before = writes(env);
    let out = env.run(&["sync", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(writes(env), before, "a dry run writes nothing");
    assert!(env.status_json().await["runs"]
        .as_array()
        .is_none_or(|r| r.is_empty()));
    let plan = out.json();
    assert_eq!(plan["counts"], json!({"create": 3}), "{plan:#}");
    let bo = row(&plan, BO);
    let detail = bo["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"Tier1-Agents\", \"Supervisors\"") && detail.contains("listed first"),
        "{detail}"
    );
    // The run: each member a Connect user with its groups' fields; Identity Center users
    // adopted, none created.
    let out = env.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let ids = env.sb.ids();
    let bo = connect_user(env, BO).expect("bo created");
    assert_eq!(
        bo.routing_profile_id, ids.routing_profiles["Basic Routing Profile"],
        "the first group's routing profile"
    );
    assert_eq!(
        bo.hierarchy_group_id.as_deref(),
        Some(ids.hierarchy_groups["Tier 1"].as_str())
    );
    assert_eq!(
        sorted(bo.security_profile_ids.clone()),
        sorted(vec![
            ids.security_profiles["Agent"].clone(),
            ids.security_profiles["CallCenterManager"].clone()
        ]),
        "the union of both groups' security profiles"
    );
    let cy = connect_user(env, CY).expect("cy created");
    assert_eq!(
        cy.routing_profile_id,
        ids.routing_profiles["Sales Routing Profile"]
    );
    assert_eq!(cy.hierarchy_group_id, None);
    assert_eq!(
        identity_user_count(env),
        idu_before,
        "no Identity Center user created"
    );
    // Access: each member joins the agents' group, assigned to the application.
    let world = env.world();
    for who in ["asilva", BO, CY] {
        assert!(
            world
                .memberships
                .iter()
                .any(|(g, u)| g == "ConnectAgents" && u == who),
            "{who} in ConnectAgents: {world:#?}"
        );
    }
    // doctor and drift see synced agents as any onboarded agent: complete.
    let out = env.run(&["drift", "--json"]).await;
    assert_eq!(out.code, 0, "every agent complete: {out:?}");
    let out = env.run(&["doctor", ANA]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // A second sync: everything unchanged, zero writes.
    let before = writes(env);
    let out = env.run(&["sync", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["outcomes"], json!({"unchanged": 3}));
    assert_eq!(writes(env), before, "nothing changed: nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_keeps_a_mixed_case_email_exactly_as_the_connect_username() {
    let w = idp().await;
    let env = &w.env;
    let out = env.run(&["sync", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(row(&out.json(), ANA)["action"], "create");
    let out = env.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let ana = connect_user(env, ANA).expect("the Connect username is the email, case kept");
    assert_eq!(ana.identity_info.first_name.as_deref(), Some("Ana"));
    assert!(connect_user(env, &ANA.to_lowercase()).is_none());
    // A Connect user whose username differs only in case is a conflict, never a second user.
    let env2 = idp().await;
    env2.env.sb.seed_world(|w| {
        w.add_connect_user(INSTANCE, &ANA.to_lowercase(), "Ana", "Silva")
            .unwrap();
    });
    let out = env2.env.run(&["sync", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let plan = out.json();
    assert_eq!(row(&plan, ANA)["action"], "conflict", "{plan:#}");
    assert!(row(&plan, ANA)["detail"]
        .as_str()
        .unwrap()
        .contains("only in case"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_follows_a_member_added_moved_and_renamed_in_the_identity_provider() {
    let mut w = idp().await;
    let out = w.env.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // Added: dee joins Tier1. Moved: cy from Supervisors to Tier1. Renamed: Bo → Bob.
    w.add_user("dee@example.com", "dee@example.com", "Dee", "Moss");
    let (t, s) = (w.tier1.clone(), w.sups.clone());
    w.join(&t, "dee@example.com");
    w.leave(&s, CY);
    w.join(&t, CY);
    let bo_id = w.users[BO].clone();
    w.env.sb.seed_world(|world| {
        let u = world
            .identity_stores
            .get_mut(STORE)
            .unwrap()
            .users
            .get_mut(&bo_id)
            .unwrap();
        u.name = json!({"GivenName": "Bob", "FamilyName": "Ek"});
        u.display_name = "Bob Ek".into();
    });
    let env = &w.env;
    let out = env.run(&["sync", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    assert_eq!(row(&plan, "dee@example.com")["action"], "create");
    let cy = row(&plan, CY);
    assert_eq!(cy["action"], "update", "{plan:#}");
    let fields: Vec<&str> = (cy["changes"].as_array().unwrap().iter())
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"routing_profile")
            && fields.contains(&"security_profiles")
            && fields.contains(&"hierarchy_group"),
        "{cy:#}"
    );
    let bo = row(&plan, BO);
    assert_eq!(bo["action"], "update", "{plan:#}");
    assert_eq!(
        bo["changes"],
        json!([{"field": "first_name", "before": "Bo", "after": "Bob"}]),
        "the Connect name follows; the Identity Center user is the source, never written"
    );
    assert_eq!(row(&plan, ANA)["action"], "unchanged");
    let out = env.run(&["sync", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json()["outcomes"],
        json!({"created": 1, "updated": 2, "unchanged": 1})
    );
    let ids = env.sb.ids();
    let cy = connect_user(env, CY).unwrap();
    assert_eq!(
        cy.routing_profile_id,
        ids.routing_profiles["Basic Routing Profile"]
    );
    assert_eq!(
        cy.security_profile_ids,
        vec![ids.security_profiles["Agent"].clone()]
    );
    assert_eq!(
        connect_user(env, BO)
            .unwrap()
            .identity_info
            .first_name
            .as_deref(),
        Some("Bob")
    );
    assert!(connect_user(env, "dee@example.com").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_prune_deletes_only_the_connect_users_of_members_who_left() {
    let w = idp().await;
    let env = &w.env;
    // Outside the managed population: a Connect user with no Identity Center user, and an
    // administrator whose Identity Center user is not in the agents' group.
    env.sb.seed_world(|world| {
        world
            .add_connect_user(INSTANCE, "carl@example.com", "Carl", "Jones")
            .unwrap();
        world
            .add_connect_user(INSTANCE, "admin@example.com", "Ad", "Min")
            .unwrap();
        world
            .add_identity_user("admin@example.com", "admin@example.com", "Ad", "Min")
            .unwrap();
    });
    let out = env.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let idu_before = identity_user_count(env);
    // Ana leaves every mapped group; bo leaves one (still an agent).
    w.leave(&w.tier1, ANA);
    w.leave(&w.sups, BO);
    let out = env.run(&["sync", "--prune", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    assert_eq!(row(&plan, ANA)["action"], "remove", "{plan:#}");
    assert_eq!(plan["counts"]["remove"], 1, "{plan:#}");
    // Off a terminal without --yes: refused, nothing written.
    let before = writes(env);
    let out = env.run(&["sync", "--prune"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(writes(env), before);
    let out = env.run(&["sync", "--prune", "--yes", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json()["outcomes"],
        json!({"removed": 1, "updated": 1, "unchanged": 1})
    );
    assert!(
        connect_user(env, ANA).is_none(),
        "ana's Connect user deleted"
    );
    assert_eq!(
        identity_user_count(env),
        idu_before,
        "no Identity Center user touched"
    );
    assert!(env.world().identity_users.contains_key("asilva"));
    assert!(connect_user(env, "carl@example.com").is_some());
    assert!(connect_user(env, "admin@example.com").is_some());
    assert!(connect_user(env, BO).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_prune_refuses_a_mass_removal() {
    let mut w = idp().await;
    let t = w.tier1.clone();
    for i in 0..27 {
        let e = format!("agent{i}@example.com");
        w.add_user(&e, &e, "Agent", &format!("N{i}"));
        w.join(&t, &e);
    }
    let env = &w.env;
    let out = env.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // The group emptied by mistake (a broken SCIM push): 28 of 30 would go.
    for i in 0..27 {
        w.leave(&t, &format!("agent{i}@example.com"));
    }
    w.leave(&t, ANA);
    let before = writes(env);
    let out = env.run(&["sync", "--prune", "--yes"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("would remove 28 of the 30 managed agents")
            && out.stderr.contains("--max-remove 28"),
        "{out:?}"
    );
    assert_eq!(writes(env), before, "refused: nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_mapping_errors_exit_2_naming_what_exists_before_any_write() {
    let mapping = r#"
[[sync.groups]]
group = "Tier9-Agents"
routing_profile = "Gold Routing"
security_profiles = ["Agent"]
"#;
    let env = Env::with(Seed::default(), mapping).await;
    env.sb.seed_world(|w| {
        w.add_group("Tier1-Agents").unwrap();
        w.add_group("Supervisors").unwrap();
    });
    let before = writes(&env);
    let out = env.run(&["sync"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("sync.groups[0].group \"Tier9-Agents\"")
            && out.stderr.contains("Supervisors")
            && out.stderr.contains("Tier1-Agents"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("sync.groups[0].routing_profile")
            && out.stderr.contains("Basic Routing Profile"),
        "{out:?}"
    );
    assert_eq!(writes(&env), before, "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_skips_a_member_without_a_primary_email_and_says_why() {
    let mut w = idp().await;
    w.add_user("nomail", "nomail@example.com", "No", "Mail");
    let id = w.users["nomail@example.com"].clone();
    w.env.sb.seed_world(|world| {
        let u = (world.identity_stores.get_mut(STORE).unwrap().users)
            .get_mut(&id)
            .unwrap();
        u.emails = vec![json!({"Value": "nomail@example.com", "Type": "work", "Primary": false})];
    });
    let t = w.tier1.clone();
    w.join(&t, "nomail@example.com");
    let env = &w.env;
    let out = env.run(&["sync", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 1, "a skipped member is not converged: {out:?}");
    let plan = out.json();
    let skipped = row(&plan, "nomail");
    assert_eq!(skipped["action"], "skip", "{plan:#}");
    assert!(
        skipped["detail"]
            .as_str()
            .unwrap()
            .contains("no primary email"),
        "{skipped:#}"
    );
    let report = env.dir.path().join("report.csv");
    let out = env.run(&["sync", "--report", path_str(&report)]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        connect_user(env, "nomail@example.com").is_none(),
        "never guessed"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("nomail,skipped") && l.contains("no primary email")),
        "{text}"
    );
    assert!(connect_user(env, BO).is_some(), "the others synced");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_plan_is_applied_exactly_by_apply_plan_and_a_leaver_since_is_stale() {
    let w = idp().await;
    let env = &w.env;
    let idu_before = identity_user_count(env);
    let out = env.run(&["sync", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["source"], "sync");
    let plan = env.dir.path().join("plan.json");
    std::fs::write(&plan, &out.stdout).unwrap();
    // Since the plan: cy left every mapped group; a new member joined (not in the plan).
    w.leave(&w.sups, CY);
    let mut w = w;
    w.add_user("dee@example.com", "dee@example.com", "Dee", "Moss");
    let t = w.tier1.clone();
    w.join(&t, "dee@example.com");
    let env = &w.env;
    let out = env
        .run(&["apply", "--plan", path_str(&plan), "--json"])
        .await;
    assert_eq!(out.code, 1, "a stale agent: {out:?}");
    assert_eq!(
        out.json()["outcomes"],
        json!({"created": 2, "stale": 1}),
        "{out:?}"
    );
    assert!(
        connect_user(env, ANA).is_some(),
        "created with its exact username"
    );
    assert!(connect_user(env, BO).is_some());
    assert!(connect_user(env, CY).is_none(), "stale: nothing written");
    assert!(
        connect_user(env, "dee@example.com").is_none(),
        "exactly the plan"
    );
    assert_eq!(identity_user_count(env), idu_before + 1, "only dee, seeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_sync_resumes_and_its_rollback_never_deletes_an_identity_center_user() {
    let w = idp().await;
    let env = &w.env;
    let idu_before = identity_user_count(env);
    let out = env
        .run_with(
            &["sync", "--concurrency", "1"],
            &[("CONNECT_ONBOARD_CRASH_AT", "after_write:connect_user")],
        )
        .await;
    assert_ne!(out.code, 0, "the process died: {out:?}");
    let st = env.status_json().await;
    let run = &st["runs"].as_array().unwrap()[0];
    assert_eq!(run["workflow"], "sync-agent", "{st:#}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for who in [ANA, BO, CY] {
        assert!(connect_user(env, who).is_some(), "{who}");
    }
    assert_eq!(env.applied("connect:CreateUser"), 3, "each created once");
    // The run's rollback removes the Connect users it created; the Identity Center users
    // were adopted (the identity provider's), so they stay.
    let out = env.run(&["rollback", &run_id, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for who in [ANA, BO, CY] {
        assert!(connect_user(env, who).is_none(), "{who}");
    }
    assert_eq!(identity_user_count(env), idu_before);
    assert_eq!(env.applied("identitystore:DeleteUser"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_role_session_name_user_name_the_connect_username_is_the_user_name_exactly() {
    let env = Env::with(
        Seed::default(),
        &format!("[identity_center]\nrole_session_name = \"user_name\"\n{MAPPING}"),
    )
    .await;
    env.sb.seed_world(|w| {
        let g = w.add_group("Tier1-Agents").unwrap();
        w.add_group("Supervisors").unwrap();
        let u = w.add_identity_user("ASilva", ANA, "Ana", "Silva").unwrap();
        w.add_membership(&g, &u).unwrap();
    });
    let out = env.run(&["sync", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        connect_user(&env, "ASilva").is_some(),
        "the UserName, case kept"
    );
    assert!(connect_user(&env, ANA).is_none());
    let out = env.run(&["sync", "--json"]).await;
    assert_eq!(out.json()["outcomes"], json!({"unchanged": 1}), "{out:?}");
}

/// `sync --watch`: a reconcile at start and every interval (one JSON line each); a member
/// added meanwhile is onboarded by the next one; SIGTERM ends it with exit 0; and a
/// `--watch --prune` without `--yes` is refused before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn sync_watch_reconciles_every_interval_and_exits_0_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut world = idp().await;
    let out = world.env.run(&["sync", "--watch", "--prune"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(writes(&world.env), 0);

    let mut child = world
        .env
        .command(&["sync", "--watch", "--interval", "1s", "--json"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let next =
        async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| -> Value {
            let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
                .await
                .expect("a reconcile line")
                .unwrap()
                .expect("not the end");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
        };
    let first = next(&mut lines).await;
    assert_eq!(first["event"], "reconcile", "{first}");
    assert_eq!(first["outcomes"]["created"], 3, "{first}");
    assert!(connect_user(&world.env, CY).is_some());
    // A member the identity provider adds meanwhile: onboarded by a later reconcile.
    world.add_user("dee", "dee@example.com", "Dee", "Moss");
    let t = world.tier1.clone();
    world.join(&t, "dee@example.com");
    let mut created = false;
    for _ in 0..5 {
        let line = next(&mut lines).await;
        assert_eq!(line["event"], "reconcile", "{line}");
        if line["outcomes"]["created"] == 1 {
            created = true;
            break;
        }
    }
    assert!(created, "the new member was onboarded by a later reconcile");
    assert!(connect_user(&world.env, "dee@example.com").is_some());
    // SIGTERM: the watch ends, exit 0.
    let pid = child.id().unwrap();
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("the watch stops")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A stop during a reconcile: the agents in flight finish and are checkpointed, no further
/// agent starts (left pending, every one resumable), and the watch exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_mid_reconcile_finishes_the_agents_in_flight_and_starts_no_more() {
    let mut world = idp().await;
    let t = world.tier1.clone();
    for i in 0..12 {
        let e = format!("m{i}@example.com");
        world.add_user(&e, &e, "Mem", "Ber");
        world.join(&t, &e);
    }
    world.env.faults(json!({"rules": [
        {"op": "connect:CreateUser", "action": "latency", "latency_ms": 300}
    ]}));
    let mut child = world
        .env
        .command(&["sync", "--watch", "--interval", "1h", "--concurrency", "2"])
        .spawn()
        .unwrap();
    wait_for("the first Connect user", || {
        world.env.applied("connect:CreateUser") >= 1
    })
    .await;
    let pid = child.id().unwrap();
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("the watch stops")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let made = world.env.applied("connect:CreateUser");
    assert!(
        made < 15,
        "no agent started after the stop: {made} of 15 created"
    );
    let st = world.env.status_json().await;
    let states: Vec<String> = (st["runs"].as_array().unwrap().iter())
        .flat_map(|r| r["agents"].as_array().unwrap().iter())
        .map(|a| a["state"].as_str().unwrap().to_string())
        .collect();
    assert!(
        states.iter().all(|s| s == "done" || s == "pending"),
        "in flight finished, the rest pending: {states:?}"
    );
    world.env.faults(json!({}));
    let out = world.env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(world.env.applied("connect:CreateUser"), 15, "each once");
}
