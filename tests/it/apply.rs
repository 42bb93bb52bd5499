//! `apply`: a roster as desired state, through the real binary and SDK against the sandbox —
//! a mixed roster planned exactly and converged field by field, a second apply that writes
//! nothing, saved plans (stale, edited), a failed update restoring the earlier ones, kill -9
//! then resume, rollback restoring before values, and `--prune` with its guards.

use connect_onboard_sandbox::world::ConnectUser;
use serde_json::{json, Value};

use crate::harness::*;

const ANA: &str = "ana@example.com";
const BEN: &str = "ben@example.com";
const CY: &str = "cy@example.com";
const DEE: &str = "dee@example.com";
const EVE: &str = "eve@example.com";
const CARL: &str = "carl@example.com";
const TWIN: &str = "Twin@Example.com";

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    path_str(&p).to_string()
}

/// ana, ben, cy, eve onboarded by `batch` (Basic Routing Profile, Agent); carl a Connect user
/// with no Identity Center user; a Connect user whose username is an email in other case.
async fn team() -> Env {
    let env = Env::new().await;
    let file = write(
        &env,
        "team.csv",
        "email,first_name,last_name,routing_profile,security_profiles\n\
         ana@example.com,Ana,Silva,Basic Routing Profile,Agent\n\
         ben@example.com,Ben,Ng,Basic Routing Profile,Agent\n\
         cy@example.com,Cy,Lee,Basic Routing Profile,Agent\n\
         eve@example.com,Eve,Dunn,Basic Routing Profile,Agent\n",
    );
    let out = env.run(&["batch", &file]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.sb.seed_world(|w| {
        w.add_connect_user(INSTANCE, CARL, "Carl", "Jones").unwrap();
        w.add_connect_user(INSTANCE, TWIN, "Tw", "In").unwrap();
    });
    env
}

const ROSTER: &str = "email,first_name,last_name,routing_profile,security_profiles,hierarchy_group,phone_type,desk_phone_number,acw_timeout,tags\n\
ana@example.com,Ana,Silva,Sales Routing Profile,Agent|QualityAnalyst,Tier 1,,,,team=blue\n\
ben@example.com,Ben,Ng,,,,desk,+14255550100,30,\n\
cy@example.com,Cy,Lee-Park,,,,,,,\n\
carl@example.com,Carl,Jones,Basic Routing Profile,Agent,,,,,\n\
dee@example.com,Dee,Moss,Basic Routing Profile,Agent,,,,,\n\
eve@example.com,Eve,Dunn,Basic Routing Profile,Agent,,,,,\n\
twin@example.com,Tw,In,,,,,,,\n";

fn user(env: &Env, username: &str) -> ConnectUser {
    env.sb.seed_world(|w| {
        w.connect_instances[INSTANCE]
            .users
            .values()
            .find(|u| u.username == username)
            .cloned()
            .unwrap_or_else(|| panic!("no Connect user {username}"))
    })
}

fn ids_user(env: &Env, user_name: &str) -> Option<(String, Value)> {
    env.sb.seed_world(|w| {
        w.identity_stores[STORE]
            .users
            .values()
            .find(|u| u.user_name == user_name)
            .map(|u| (u.display_name.clone(), u.name.clone()))
    })
}

fn plan_row<'a>(plan: &'a Value, agent: &str) -> &'a Value {
    find(plan, "plan", "agent", agent)
}

fn changes(row: &Value) -> Vec<(String, Value, Value)> {
    row["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap().to_string(),
                c["before"].clone(),
                c["after"].clone(),
            )
        })
        .collect()
}

fn ch(field: &str, before: Value, after: Value) -> (String, Value, Value) {
    (field.to_string(), before, after)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_roster_dry_run_shows_exactly_the_changes_and_writes_nothing() {
    let env = team().await;
    let roster = write(&env, "roster.csv", ROSTER);
    let runs_before = env.status_json().await["runs"].as_array().unwrap().len();
    let writes_before = writes(&env);
    let out = env.run(&["apply", &roster, "--dry-run", "--json"]).await;
    assert_eq!(out.code, 1, "a conflict is planned: {out:?}");
    let plan = out.json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan_row(&plan, ANA)["action"], "update");
    assert_eq!(
        changes(plan_row(&plan, ANA)),
        vec![
            ch(
                "routing_profile",
                json!("Basic Routing Profile"),
                json!("Sales Routing Profile")
            ),
            ch(
                "security_profiles",
                json!(["Agent"]),
                json!(["Agent", "QualityAnalyst"])
            ),
            ch("hierarchy_group", Value::Null, json!("Tier 1")),
            ch("tags.team", Value::Null, json!("blue")),
        ]
    );
    assert_eq!(
        changes(plan_row(&plan, BEN)),
        vec![
            ch("phone_type", json!("soft"), json!("desk")),
            ch("acw_timeout", json!(0), json!(30)),
            ch("desk_phone_number", Value::Null, json!("+14255550100")),
        ],
        "empty cells keep the field"
    );
    assert_eq!(
        changes(plan_row(&plan, CY)),
        vec![
            ch("last_name", json!("Lee"), json!("Lee-Park")),
            ch(
                "identity_center.family_name",
                json!("Lee"),
                json!("Lee-Park")
            ),
            ch(
                "identity_center.display_name",
                json!("Cy Lee"),
                json!("Cy Lee-Park")
            ),
        ]
    );
    let carl = changes(plan_row(&plan, CARL));
    assert!(
        carl.contains(&ch("identity_center_user", Value::Null, json!(CARL)))
            && carl.contains(&ch("group_membership", Value::Null, json!("ConnectAgents"))),
        "the missing parts of the onboarding: {carl:?}"
    );
    assert_eq!(plan_row(&plan, DEE)["action"], "create");
    assert_eq!(plan_row(&plan, EVE)["action"], "unchanged");
    let twin = plan_row(&plan, "twin@example.com");
    assert_eq!(twin["action"], "conflict");
    assert!(
        twin["detail"]
            .as_str()
            .unwrap()
            .contains("drift --fix-plan"),
        "{twin}"
    );
    assert_eq!(
        plan["counts"],
        json!({"create": 1, "update": 4, "unchanged": 1, "conflict": 1})
    );
    assert!(plan["fingerprint"].as_str().unwrap().len() == 64, "{plan}");
    assert_eq!(writes(&env), writes_before, "a dry run writes nothing");
    assert_eq!(
        env.status_json().await["runs"].as_array().unwrap().len(),
        runs_before,
        "and makes no run"
    );
    // The human plan says the same, field by field.
    let out = env.run(&["apply", &roster, "--dry-run"]).await;
    assert!(
        out.stdout
            .contains("routing_profile: \"Basic Routing Profile\" → \"Sales Routing Profile\""),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_converges_every_field_on_both_sides_and_a_second_apply_writes_nothing() {
    let env = team().await;
    let roster = write(&env, "roster.csv", ROSTER);
    let report = env.dir.path().join("apply.csv");
    let notices = env.dir.path().join("notices");
    let out = env
        .run(&[
            "apply",
            &roster,
            "--report",
            path_str(&report),
            "--notices",
            path_str(&notices),
        ])
        .await;
    assert_eq!(out.code, 1, "the conflict is not converged: {out:?}");
    let mut noticed: Vec<String> = std::fs::read_dir(&notices)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    noticed.sort();
    assert_eq!(
        noticed,
        [format!("{CARL}.txt"), format!("{DEE}.txt")],
        "a notice for whom can sign in only now: created, or given an Identity Center user"
    );
    let ids = env.sb.ids();
    let ana = user(&env, ANA);
    assert_eq!(
        ana.routing_profile_id,
        ids.routing_profiles["Sales Routing Profile"]
    );
    let mut sps = ana.security_profile_ids.clone();
    sps.sort();
    let mut want = vec![
        ids.security_profiles["Agent"].clone(),
        ids.security_profiles["QualityAnalyst"].clone(),
    ];
    want.sort();
    assert_eq!(sps, want);
    assert_eq!(
        ana.hierarchy_group_id.as_deref(),
        Some(ids.hierarchy_groups["Tier 1"].as_str())
    );
    assert_eq!(ana.tags.get("team").map(String::as_str), Some("blue"));
    let ben = user(&env, BEN);
    assert_eq!(ben.phone_config.phone_type, "DESK_PHONE");
    assert_eq!(
        ben.phone_config.desk_phone_number.as_deref(),
        Some("+14255550100")
    );
    assert_eq!(ben.phone_config.after_contact_work_time_limit, 30);
    assert_eq!(
        ben.routing_profile_id, ids.routing_profiles["Basic Routing Profile"],
        "kept"
    );
    let cy = user(&env, CY);
    assert_eq!(cy.identity_info.last_name.as_deref(), Some("Lee-Park"));
    let (display, name) = ids_user(&env, CY).unwrap();
    assert_eq!(display, "Cy Lee-Park");
    assert_eq!(name["FamilyName"], "Lee-Park");
    assert!(
        ids_user(&env, CARL).is_some(),
        "carl's Identity Center half was made"
    );
    env.world().assert_onboarded_once(DEE);
    env.world().assert_onboarded_once(CARL);
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.starts_with("email,outcome,changes,run_id"), "{text}");
    assert!(
        text.contains("ana@example.com,updated,routing_profile: Basic Routing Profile -> Sales Routing Profile; security_profiles: Agent -> Agent|QualityAnalyst;"),
        "{text}"
    );
    assert!(text.contains("dee@example.com,created,"), "{text}");
    assert!(text.contains("eve@example.com,unchanged,"), "{text}");
    assert!(text.contains("twin@example.com,conflict,"), "{text}");
    for op in [
        "connect:UpdateUserRoutingProfile",
        "connect:UpdateUserHierarchy",
        "connect:TagResource",
        "connect:UpdateUserPhoneConfig",
        "connect:UpdateUserIdentityInfo",
        "identitystore:UpdateUser",
    ] {
        assert_eq!(
            env.applied(op),
            1,
            "{op}: one call for the one agent it changes"
        );
    }
    assert_eq!(
        env.applied("connect:UpdateUserSecurityProfiles"),
        2,
        "ana and carl"
    );

    // The same roster again: every agent converged, nothing written.
    env.sb.reset_calls();
    let out = env.run(&["apply", &roster, "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.matches("\"dry_run\"").count(),
        1,
        "each key once: {out:?}"
    );
    let j = out.json();
    assert_eq!(
        j["outcomes"],
        json!({"conflict": 1, "unchanged": 6}),
        "{j:#}"
    );
    assert_eq!(writes(&env), 0, "a second apply writes nothing");
    assert_eq!(
        env.calls("connect:DescribeUser"),
        0,
        "and reads no agent one by one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_present_columns_are_managed_and_clear_empty_clears_only_what_may_be_empty() {
    let env = team().await;
    let ids = env.sb.ids();
    env.sb.seed_world(|w| {
        let inst = w.connect_instances.get_mut(INSTANCE).unwrap();
        for u in inst
            .users
            .values_mut()
            .filter(|u| u.username == ANA || u.username == BEN)
        {
            u.hierarchy_group_id = Some(ids.hierarchy_groups["Tier 2"].clone());
            u.identity_info.secondary_email = Some("backup@example.com".into());
        }
    });
    // A file with only email and routing profile moves agents and touches nothing else.
    let moves = write(
        &env,
        "moves.csv",
        "email,routing_profile\nana@example.com,Sales Routing Profile\n",
    );
    let out = env.run(&["apply", &moves]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let ana = user(&env, ANA);
    assert_eq!(
        ana.routing_profile_id,
        ids.routing_profiles["Sales Routing Profile"]
    );
    assert_eq!(
        ana.hierarchy_group_id.as_deref(),
        Some(ids.hierarchy_groups["Tier 2"].as_str())
    );
    assert_eq!(
        ana.identity_info.secondary_email.as_deref(),
        Some("backup@example.com")
    );
    // The console-style export with empty cells: kept by default, cleared with --clear-empty.
    let export = write(
        &env,
        "export.csv",
        "email,first_name,last_name,hierarchy_group,secondary_email\nben@example.com,Ben,Ng,,\n",
    );
    let out = env.run(&["apply", &export, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["outcomes"], json!({"unchanged": 1}));
    let out = env.run(&["apply", &export, "--clear-empty"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let ben = user(&env, BEN);
    assert_eq!(ben.hierarchy_group_id, None);
    assert_eq!(ben.identity_info.secondary_email, None);
    assert_eq!(ben.identity_info.first_name.as_deref(), Some("Ben"));
    // A required field can never be emptied: exit 2, every problem with file:line, no write.
    let bad = write(
        &env,
        "bad.csv",
        "email,first_name,last_name,routing_profile\nana@example.com,,Silva,\nben@example.com,Ben,Ng,Nope Profile\n",
    );
    let before = writes(&env);
    let out = env.run(&["apply", &bad, "--clear-empty"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("bad.csv:2: column \"first_name\""),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("bad.csv:2: column \"routing_profile\""),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("bad.csv:3:") && out.stderr.contains("Nope Profile"),
        "{out:?}"
    );
    assert_eq!(writes(&env), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_applies_exactly_refuses_edits_and_reports_an_agent_changed_since_as_stale() {
    let env = team().await;
    let roster = write(&env, "roster.csv", ROSTER);
    let out = env.run(&["apply", &roster, "--dry-run", "--json"]).await;
    let plan = write(&env, "plan.json", &out.stdout);
    // Edited by hand: refused, nothing written.
    let edited = write(
        &env,
        "edited.json",
        &out.stdout
            .replace("Sales Routing Profile", "Basic Routing Profile"),
    );
    let before = writes(&env);
    let out = env.run(&["apply", "--plan", &edited]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("fingerprint"), "{out:?}");
    let cut = write(&env, "cut.json", "{\"dry_run\": true, \"plan\": [");
    assert_eq!(env.run(&["apply", "--plan", &cut]).await.code, 2);
    assert_eq!(writes(&env), before);
    // Someone changes ana's security profiles after the plan was made.
    let ids = env.sb.ids();
    let admin = ids.security_profiles["Admin"].clone();
    env.sb.seed_world(|w| {
        let inst = w.connect_instances.get_mut(INSTANCE).unwrap();
        let u = inst.users.values_mut().find(|u| u.username == ANA).unwrap();
        u.security_profile_ids = vec![admin.clone()];
    });
    // And a roster row changed since the plan is not read: the plan is applied, not the file.
    std::fs::write(
        env.dir.path().join("roster.csv"),
        "email,routing_profile\nben@example.com,Sales Routing Profile\n",
    )
    .unwrap();
    let out = env.run(&["apply", "--plan", &plan, "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let j = out.json();
    let ana = find(&j, "agents", "email", ANA);
    assert_eq!(ana["outcome"], "stale", "{j:#}");
    let why = ana["error"].as_str().unwrap();
    assert!(
        why.contains("security_profiles") && why.contains("Admin") && why.contains("Agent"),
        "{why}"
    );
    let now = user(&env, ANA);
    assert_eq!(now.security_profile_ids, vec![admin], "left alone");
    assert_eq!(
        now.routing_profile_id, ids.routing_profiles["Basic Routing Profile"],
        "nothing of a stale agent is written"
    );
    assert_eq!(
        user(&env, BEN).phone_config.phone_type,
        "DESK_PHONE",
        "the plan's other agents are applied"
    );
    assert_eq!(
        user(&env, BEN).routing_profile_id,
        ids.routing_profiles["Basic Routing Profile"]
    );
    env.world().assert_onboarded_once(DEE);
    // The same plan again: what it did is done (unchanged, not stale); ana is still stale.
    let out = env.run(&["apply", "--plan", &plan, "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let j = out.json();
    assert_eq!(j["outcomes"]["stale"], 1, "{j:#}");
    assert_eq!(
        j["outcomes"]["unchanged"], 5,
        "dee, ben, cy, carl, eve: {j:#}"
    );
    env.world().assert_onboarded_once(DEE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_on_an_agents_second_update_restores_its_first() {
    let env = team().await;
    let roster = write(
        &env,
        "roster.csv",
        "email,routing_profile,security_profiles\nana@example.com,Sales Routing Profile,Agent|Admin\nben@example.com,Sales Routing Profile,\n",
    );
    env.faults(json!({"rules": [
        {"op": "connect:UpdateUserSecurityProfiles", "action": "error", "code": "AccessDeniedException", "status": 403}
    ]}));
    let out = env.run(&["apply", &roster, "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let j = out.json();
    assert_eq!(
        find(&j, "agents", "email", ANA)["outcome"],
        "rolled_back",
        "{j:#}"
    );
    let ids = env.sb.ids();
    assert_eq!(
        user(&env, ANA).routing_profile_id,
        ids.routing_profiles["Basic Routing Profile"],
        "its routing profile got back the value it replaced"
    );
    assert_eq!(
        env.applied("connect:UpdateUserRoutingProfile"),
        3,
        "ana's set and restore, ben's set"
    );
    assert_eq!(
        user(&env, BEN).routing_profile_id,
        ids.routing_profiles["Sales Routing Profile"],
        "other agents are not affected"
    );
    // --on-failure keep keeps what was changed.
    let out = env
        .run(&["apply", &roster, "--on-failure", "keep", "--json"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        find(&out.json(), "agents", "email", ANA)["outcome"],
        "failed"
    );
    assert_eq!(
        user(&env, ANA).routing_profile_id,
        ids.routing_profiles["Sales Routing Profile"]
    );
    // The cause fixed, `retry` of the apply run finishes the agent in its run.
    env.faults(json!({}));
    let failed_run = find(&out.json(), "agents", "email", ANA)["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.run(&["retry", &failed_run]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let ana = user(&env, ANA);
    assert_eq!(
        ana.security_profile_ids.len(),
        2,
        "the change made on retry: {out:?}"
    );
    assert_eq!(
        ana.routing_profile_id,
        ids.routing_profiles["Sales Routing Profile"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_apply_then_resume_converges_with_no_duplicate_write() {
    let env = team().await;
    let roster = write(
        &env,
        "roster.csv",
        "email,routing_profile,security_profiles\n\
         ana@example.com,Sales Routing Profile,Agent|Admin\n\
         ben@example.com,Sales Routing Profile,Agent|Admin\n\
         cy@example.com,Sales Routing Profile,Agent|Admin\n",
    );
    for point in ["after_write", "before_write", "after_checkpoint"] {
        let out = env
            .run_with(
                &["apply", &roster, "--concurrency", "1"],
                &[(
                    "CONNECT_ONBOARD_CRASH_AT",
                    &format!("{point}:security_profiles"),
                )],
            )
            .await;
        assert_ne!(out.code, 0, "{point}: the process died: {out:?}");
        let out = env.run(&["resume"]).await;
        assert_eq!(out.code, 0, "{point}: {out:?}");
        for a in [ANA, BEN, CY] {
            assert_eq!(user(&env, a).security_profile_ids.len(), 2, "{point}: {a}");
        }
        assert_eq!(
            env.applied("connect:UpdateUserSecurityProfiles"),
            3,
            "{point}: each change sent once"
        );
        assert_eq!(
            env.applied("connect:UpdateUserRoutingProfile"),
            3,
            "{point}"
        );
        // Back to the start for the next crash point.
        let st = env.status_json().await;
        let run = st["runs"].as_array().unwrap().last().unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        let out = env.run(&["rollback", &run, "--yes"]).await;
        assert_eq!(out.code, 0, "{point}: {out:?}");
        env.sb.reset_calls();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_of_an_apply_run_restores_the_values_it_replaced_and_removes_what_it_created() {
    let env = team().await;
    let roster = write(&env, "roster.csv", ROSTER);
    let before: Vec<ConnectUser> = [ANA, BEN, CY, CARL].iter().map(|u| user(&env, u)).collect();
    let cy_names = ids_user(&env, CY);
    assert_eq!(env.run(&["apply", &roster]).await.code, 1);
    let st = env.status_json().await;
    let run = st["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["workflow"] == "apply-agent")
        .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.run(&["rollback", &run, "--dry-run"]).await;
    assert!(
        out.stdout
            .contains("routing_profile: restore the value it replaced"),
        "{out:?}"
    );
    let out = env.run(&["rollback", &run, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for (was, name) in before.iter().zip([ANA, BEN, CY, CARL]) {
        let now = user(&env, name);
        assert_eq!(now.routing_profile_id, was.routing_profile_id, "{name}");
        assert_eq!(now.security_profile_ids, was.security_profile_ids, "{name}");
        assert_eq!(now.hierarchy_group_id, was.hierarchy_group_id, "{name}");
        assert_eq!(now.phone_config, was.phone_config, "{name}");
        assert_eq!(now.identity_info, was.identity_info, "{name}");
        assert!(
            !now.tags.contains_key("team"),
            "{name}: the tag it added is gone"
        );
    }
    assert_eq!(
        ids_user(&env, CY),
        cy_names,
        "the Identity Center names too"
    );
    assert!(
        ids_user(&env, CARL).is_none(),
        "carl's Identity Center user, which it created, is gone"
    );
    env.world().assert_gone(DEE);
}

/// `n` managed agents (`agentN@example.com`), onboarded by batch.
async fn managed(n: usize) -> Env {
    let fast = "[rate_limits]\n\"connect:*\" = { rate = 100.0, burst = 100 }\n\"identity_center\" = { rate = 400.0, burst = 400 }\n";
    let env = Env::with(Default::default(), fast).await;
    let emails: Vec<String> = (0..n).map(|i| format!("agent{i}@example.com")).collect();
    let file = agents_file(&env, "all.csv", &emails);
    let out = env.run(&["batch", &file]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_managed_agents_not_in_the_roster_only_when_confirmed_and_within_the_guard() {
    let env = managed(40).await;
    // Someone outside the managed population: never pruned.
    env.sb.seed_world(|w| {
        w.add_connect_user(INSTANCE, "admin@example.com", "Ad", "Min")
            .unwrap();
    });
    let three: Vec<String> = (0..3).map(|i| format!("agent{i}@example.com")).collect();
    let roster = agents_file(&env, "three.csv", &three);
    let before = writes(&env);
    let out = env.run(&["apply", &roster, "--prune", "--yes"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("would remove 37 of the 40 managed agents")
            && out.stderr.contains("--max-remove 37"),
        "{out:?}"
    );
    assert_eq!(writes(&env), before, "refused: nothing written");
    // A roster missing two agents: planned, but off a terminal without --yes, nothing written.
    let most: Vec<String> = (0..38).map(|i| format!("agent{i}@example.com")).collect();
    let roster = agents_file(&env, "most.csv", &most);
    let out = env
        .run(&["apply", &roster, "--prune", "--dry-run", "--json"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    assert_eq!(plan["counts"]["remove"], 2, "{plan:#}");
    assert!(plan["plan"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["agent"] != "admin@example.com"));
    let out = env.run(&["apply", &roster, "--prune"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(writes(&env), before);
    let out = env
        .run(&["apply", &roster, "--prune", "--yes", "--json"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json()["outcomes"],
        json!({"removed": 2, "unchanged": 38})
    );
    env.world().assert_gone("agent38@example.com");
    env.world().assert_gone("agent39@example.com");
    assert!(env
        .world()
        .connect_users
        .contains(&"admin@example.com".to_string()));
    // --max-remove lets a large removal through.
    let out = env
        .run(&[
            "apply",
            &agents_file(&env, "three.csv", &three),
            "--prune",
            "--yes",
            "--max-remove",
            "35",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        env.world().connect_users.len(),
        4,
        "three agents and the admin"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn first_name_auto_accept_secondary_email_and_mobile_are_planned_set_and_then_unchanged() {
    let env = team().await;
    let roster = write(
        &env,
        "more.csv",
        "email,first_name,auto_accept,secondary_email,mobile\nana@example.com,Anna,yes,ana.s@example.org,+14255550123\n",
    );
    let out = env.run(&["apply", &roster, "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    assert_eq!(
        changes(plan_row(&plan, ANA)),
        vec![
            ch("auto_accept", json!(false), json!(true)),
            ch("first_name", json!("Ana"), json!("Anna")),
            ch("secondary_email", Value::Null, json!("ana.s@example.org")),
            ch("mobile", Value::Null, json!("+14255550123")),
            ch("identity_center.given_name", json!("Ana"), json!("Anna")),
            ch(
                "identity_center.display_name",
                json!("Ana Silva"),
                json!("Anna Silva")
            ),
        ]
    );
    let out = env.run(&["apply", &roster]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let ana = user(&env, ANA);
    assert_eq!(ana.identity_info.first_name.as_deref(), Some("Anna"));
    assert_eq!(
        ana.identity_info.last_name.as_deref(),
        Some("Silva"),
        "kept"
    );
    assert_eq!(
        ana.identity_info.secondary_email.as_deref(),
        Some("ana.s@example.org")
    );
    assert_eq!(ana.identity_info.mobile.as_deref(), Some("+14255550123"));
    assert!(ana.phone_config.auto_accept);
    assert_eq!(ids_user(&env, ANA).unwrap().0, "Anna Silva");
    env.sb.reset_calls();
    let out = env.run(&["apply", &roster, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["outcomes"], json!({"unchanged": 1}));
    assert_eq!(writes(&env), 0);
}
