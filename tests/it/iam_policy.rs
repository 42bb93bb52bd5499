//! `iam-policy` cannot drift from the code: for each command, the actions of its policy are
//! exactly the API operations the sandbox saw it call, over scenarios that take every
//! branch (discovery or configured ids, group or user mode, a missing group, adopt and
//! create paths, bulk reads on and off, CONNECT_MANAGED lookups, rollback's deletes,
//! offboarding's per-agent, file and one-side removals).

use std::collections::BTreeSet;

use connect_onboard_sandbox::world::DEFAULT_APPLICATION_ARN;
use connect_onboard_sandbox::Seed;
use serde_json::Value;

use crate::harness::*;
use crate::seeds;

/// Configured ids, user mode: SSO Admin DescribeApplication instead of ListApplications,
/// and per-user assignments (which rollback deletes).
fn user_mode() -> String {
    format!("[identity_center]\napplication_arn = \"{DEFAULT_APPLICATION_ARN}\"\nassignment = \"user\"\n")
}

/// No agents' group yet: the membership step creates it.
fn no_group() -> Seed {
    let mut s = Seed::default();
    s.identity_groups.clear();
    s
}

/// Ben already has his Identity Center user (the adopt path describes it).
fn ben_exists() -> Seed {
    let mut s = Seed::default();
    seeds::identity_user(
        &mut s,
        "ben@example.com",
        "Ben",
        "Silva",
        Some("ben@example.com"),
    );
    s
}

/// A CONNECT_MANAGED instance whose user "ana" exists: the lookup describes it to compare
/// its email.
fn managed() -> Seed {
    let mut s = Seed::default();
    s.connect_instances[0].identity_management_type = "CONNECT_MANAGED".into();
    seeds::connect_user(&mut s, "ana", "Ana", "Silva").email = Some("ana@example.com".into());
    s
}

/// Connect users to migrate.
fn to_migrate(seed: Seed) -> Seed {
    let mut s = seed;
    for u in ["ana@example.com", "ben@example.com"] {
        seeds::connect_user(&mut s, u, "Ana", "Silva");
    }
    s
}

fn healthy_agent() -> Seed {
    let mut s = to_migrate(Seed::default());
    seeds::identity_user(
        &mut s,
        "ana@example.com",
        "Ana",
        "Silva",
        Some("ana@example.com"),
    );
    seeds::member(&mut s, "ana@example.com");
    seeds::group_assigned(&mut s);
    s
}

fn called(env: &Env) -> BTreeSet<String> {
    env.sb
        .calls()
        .into_iter()
        .filter(|(_, c)| c.calls > 0)
        .map(|(op, _)| op)
        .collect()
}

async fn run_ok(env: &Env, args: &[&str], code: i32) -> Out {
    let out = env.run(args).await;
    assert_eq!(out.code, code, "{args:?}: {out:?}");
    out
}

/// Onboards (or batches) in an env, then rolls the run back: its deletes are the
/// compensations the command may make.
async fn and_rollback(env: &Env) {
    let run = first_run_id(&env.status_json().await);
    run_ok(env, &["rollback", &run, "--yes"], 0).await;
}

/// What the command's policy allows, less the authorization-only actions (tag-on-create).
async fn policy_actions(env: &Env, command: &str) -> BTreeSet<String> {
    let out = run_ok(env, &["iam-policy", "--for", command], 0).await;
    let p: Value = serde_json::from_str(&out.stdout).expect("policy JSON");
    assert_eq!(p["Version"], "2012-10-17");
    let mut actions: BTreeSet<String> = p["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    // Tag-on-create authorizes CreateUser with tags as TagResource too; `apply` and `sync`
    // also call TagResource themselves (their tag updates), so there it is observed.
    if actions.contains("connect:CreateUser") && command != "apply" && command != "sync" {
        assert!(actions.remove("connect:TagResource"), "tags on create");
    }
    actions
}

async fn observed(
    scenarios: Vec<(Seed, String, Vec<Vec<String>>)>,
    rollback: bool,
) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for (seed, toml, commands) in scenarios {
        // CONNECT_MANAGED needs a password; SAML refuses one.
        let password: &[(&str, &str)] =
            if seed.connect_instances[0].identity_management_type == "CONNECT_MANAGED" {
                &[("CONNECT_ONBOARD_PASSWORD", "Passw0rd!x")]
            } else {
                &[]
            };
        let env = Env::with(seed, &toml).await;
        for c in &commands {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            let out = env.run_with(&args, password).await;
            assert!(out.code <= 1, "{args:?}: {out:?}");
        }
        if rollback && env.state.exists() {
            and_rollback(&env).await;
        }
        all.extend(called(&env));
    }
    all
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

async fn assert_policy_matches(command: &str, observed: BTreeSet<String>) {
    let env = Env::new().await;
    let policy = policy_actions(&env, command).await;
    let missing: Vec<_> = observed.difference(&policy).collect();
    let unused: Vec<_> = policy.difference(&observed).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "{command}: called but not in the policy: {missing:?}; in the policy but never called: {unused:?}"
    );
}

#[tokio::test]
async fn onboard_policy_equals_the_calls_onboard_makes() {
    let onboard = |email: &str| cmd(&onboard_args(email));
    let seen = observed(
        vec![
            (
                Seed::default(),
                String::new(),
                vec![onboard("ana@example.com")],
            ),
            (no_group(), user_mode(), vec![onboard("ana@example.com")]),
            (
                ben_exists(),
                String::new(),
                vec![onboard("ben@example.com")],
            ),
            (
                managed(),
                String::new(),
                vec![[onboard("ana@example.com"), cmd(&["--username", "ana"])].concat()],
            ),
        ],
        true,
    )
    .await;
    assert_policy_matches("onboard", seen).await;
}

#[tokio::test]
async fn batch_policy_equals_the_calls_batch_makes() {
    let files = tempfile::tempdir().unwrap();
    let mut scenarios = Vec::new();
    for (i, (seed, toml, bulk)) in [
        (Seed::default(), String::new(), "always"),
        (no_group(), user_mode(), "never"),
        (ben_exists(), String::new(), "never"),
        (managed(), String::new(), "never"),
    ]
    .into_iter()
    .enumerate()
    {
        let rows = if seed.connect_instances[0].identity_management_type == "CONNECT_MANAGED" {
            "email,first_name,last_name,username,password\nana@example.com,Ana,Silva,ana,Passw0rd!x\n"
        } else {
            "email,first_name,last_name\nana@example.com,Ana,Silva\nben@example.com,Ben,Silva\n"
        };
        let file = files.path().join(format!("agents-{i}.csv"));
        std::fs::write(&file, rows).unwrap();
        scenarios.push((
            seed,
            toml,
            vec![cmd(&["batch", path_str(&file), "--bulk-reads", bulk])],
        ));
    }
    let seen = observed(scenarios, true).await;
    assert_policy_matches("batch", seen).await;
}

#[tokio::test]
async fn migrate_policy_equals_the_calls_migrate_makes() {
    let scenarios = [
        (to_migrate(Seed::default()), String::new(), "always"),
        (to_migrate(no_group()), user_mode(), "never"),
        (to_migrate(ben_exists()), String::new(), "never"),
    ];
    let seen = observed(
        (scenarios.into_iter())
            .map(|(seed, toml, bulk)| (seed, toml, vec![cmd(&["migrate", "--bulk-reads", bulk])]))
            .collect(),
        true,
    )
    .await;
    assert_policy_matches("migrate", seen).await;
}

#[tokio::test]
async fn doctor_policy_equals_the_calls_doctor_makes() {
    let seen = observed(
        vec![
            (
                healthy_agent(),
                String::new(),
                vec![cmd(&["doctor", "ana@example.com"])],
            ),
            (
                healthy_agent(),
                user_mode(),
                vec![cmd(&["doctor", "ana@example.com"])],
            ),
        ],
        false,
    )
    .await;
    assert_policy_matches("doctor", seen).await;
}

#[tokio::test]
async fn drift_policy_equals_the_calls_drift_makes() {
    let seen = observed(
        vec![
            (healthy_agent(), String::new(), vec![cmd(&["drift"])]),
            (healthy_agent(), user_mode(), vec![cmd(&["drift"])]),
        ],
        false,
    )
    .await;
    assert_policy_matches("drift", seen).await;
}

/// Agents to offboard: ana and ben complete (in the group; the group assigned, or in user
/// mode each user), co in Connect only, io in Identity Center only.
fn leavers(user_assignments: bool) -> Seed {
    let mut s = Seed::default();
    for u in ["ana@example.com", "ben@example.com", "co@example.com"] {
        seeds::connect_user(&mut s, u, "Ana", "Silva");
    }
    for u in ["ana@example.com", "ben@example.com", "io@example.com"] {
        seeds::identity_user(&mut s, u, "Ana", "Silva", Some(u));
        seeds::member(&mut s, u);
        if user_assignments {
            seeds::user_assigned(&mut s, u);
        }
    }
    if !user_assignments {
        seeds::group_assigned(&mut s);
    }
    s
}

#[tokio::test]
async fn offboard_policy_equals_the_calls_offboard_makes() {
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("leavers.csv");
    std::fs::write(&file, "email\nben@example.com\n").unwrap();
    // Per agent (a dry run, then the removal: lookups by name, then each step's lookup by id
    // and delete), a file with bulk reads (the listings), and each side alone.
    let commands = || {
        vec![
            cmd(&["offboard", "ana@example.com", "--dry-run"]),
            cmd(&["offboard", "ana@example.com", "--yes"]),
            cmd(&[
                "offboard",
                "--file",
                path_str(&file),
                "--yes",
                "--bulk-reads",
                "always",
            ]),
            cmd(&["offboard", "co@example.com", "--connect-only", "--yes"]),
            cmd(&["offboard", "io@example.com", "--identity-only", "--yes"]),
        ]
    };
    let seen = observed(
        vec![
            // Group mode: the group's assignment is shared and stays.
            (leavers(false), String::new(), commands()),
            // User mode: the user's own assignment is removed.
            (leavers(true), user_mode(), commands()),
        ],
        false,
    )
    .await;
    assert_policy_matches("offboard", seen).await;
}

#[tokio::test]
async fn the_policy_is_scoped_to_the_configured_target_and_the_readme_lists_it() {
    let env = Env::with(Seed::default(), &user_mode()).await;
    let out = run_ok(&env, &["iam-policy"], 0).await;
    let p: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(writes(&env), 0);
    assert_eq!(
        env.sb.calls().values().map(|c| c.calls).sum::<u64>(),
        0,
        "no AWS call"
    );
    for s in p["Statement"].as_array().unwrap() {
        let resources: Vec<String> = match &s["Resource"] {
            Value::String(r) => vec![r.clone()],
            v => v
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect(),
        };
        if resources == ["*"] {
            assert_eq!(
                s["Action"],
                serde_json::json!(["sso:ListInstances"]),
                "only ListInstances takes *"
            );
        }
        let text = resources.join(" ");
        match s["Sid"].as_str().unwrap() {
            "ConnectInstance" => {
                assert!(
                    text.contains(&format!(
                        "arn:aws:connect:us-east-1:*:instance/{INSTANCE}/agent/*"
                    )),
                    "{text}"
                );
                assert!(
                    text.contains("/agent-group/*")
                        && text.contains("/routing-profile/*")
                        && text.contains("/security-profile/*"),
                    "{text}"
                );
            }
            "IdentityStore" => assert!(
                text.contains("arn:aws:identitystore::123456789012:identitystore/*"),
                "{text}"
            ),
            "IdentityCenterApplication" => {
                assert!(text.contains(DEFAULT_APPLICATION_ARN), "{text}")
            }
            "IdentityCenterInstances" => {}
            other => panic!("unexpected statement {other}"),
        }
    }
    // The README's IAM section lists exactly the actions of `--for all`.
    let all = policy_actions(&env, "all").await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## IAM permissions")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has an IAM permissions section");
    let listed: BTreeSet<String> = section
        .split(|c: char| c.is_whitespace() || c == '`' || c == '"' || c == ',')
        .filter(|w| {
            ["connect:", "identitystore:", "sso:"]
                .iter()
                .any(|p| w.starts_with(p))
                && !w.ends_with('*')
        })
        .map(str::to_string)
        .collect();
    let mut expected = all.clone();
    expected.insert("connect:TagResource".into());
    assert_eq!(
        listed, expected,
        "README IAM section vs iam-policy --for all"
    );
}

#[tokio::test]
async fn region_flag_and_instance_arn_scope_the_connect_resources() {
    let env = Env::new().await;
    let out = run_ok(
        &env,
        &["iam-policy", "--for", "doctor", "--region", "eu-west-2"],
        0,
    )
    .await;
    assert!(
        out.stdout.contains(&format!(
            "arn:aws:connect:eu-west-2:*:instance/{INSTANCE}/agent/*"
        )),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains("Create") && !out.stdout.contains("Delete"),
        "doctor is read-only: {out:?}"
    );
    std::fs::write(
        &env.config,
        format!("[connect]\ninstance_id = \"arn:aws:connect:us-west-2:111122223333:instance/{INSTANCE}\"\n"),
    )
    .unwrap();
    let out = run_ok(&env, &["iam-policy", "--for", "onboard"], 0).await;
    assert!(
        out.stdout.contains(&format!(
            "\"arn:aws:connect:us-west-2:111122223333:instance/{INSTANCE}\""
        )),
        "{out:?}"
    );
}

/// Agents for `apply`: ana onboarded (every field will change), ben a Connect user alone
/// (completed), and `leavers` managed agents that the roster does not name (pruned).
fn apply_world(leavers: usize) -> Seed {
    let mut s = healthy_agent();
    for i in 0..leavers {
        let email = format!("leaver{i}@example.com");
        seeds::connect_user(&mut s, &email, "Lea", "Ver");
        seeds::identity_user(&mut s, &email, "Lea", "Ver", Some(&email));
        seeds::member(&mut s, &email);
    }
    s
}

#[tokio::test]
async fn apply_policy_equals_the_calls_apply_makes() {
    let files = tempfile::tempdir().unwrap();
    let roster = files.path().join("roster.csv");
    std::fs::write(
        &roster,
        "email,first_name,last_name,routing_profile,security_profiles,hierarchy_group,phone_type,desk_phone_number,secondary_email,tags\n\
         ana@example.com,Ana,Souza,Sales Routing Profile,Agent|Admin,Tier 1,desk,+14255550100,ana.s@example.com,team=blue\n\
         ben@example.com,Ben,Silva,Basic Routing Profile,Agent,,,,,\n\
         dee@example.com,Dee,Moss,Basic Routing Profile,Agent,,,,,\n",
    )
    .unwrap();
    let r = path_str(&roster);
    // Creates, completions and every kind of update, then the plan again; rollback (in
    // `observed`) restores every field and deletes what was created.
    let commands = || vec![cmd(&["apply", r]), cmd(&["apply", r, "--dry-run"])];
    let fast = "[rate_limits]\n\"connect:*\" = { rate = 100.0, burst = 100 }\n\"identity_center\" = { rate = 400.0, burst = 400 }\n";
    let mut seen = observed(
        vec![
            (apply_world(0), String::new(), commands()),
            (no_group(), user_mode(), commands()),
        ],
        true,
    )
    .await;
    // --prune: a few removals (per-agent identification), then many (bulk reads).
    seen.extend(
        observed(
            vec![
                (
                    apply_world(2),
                    fast.to_string(),
                    vec![cmd(&["apply", r, "--prune", "--yes"])],
                ),
                (
                    apply_world(21),
                    fast.to_string(),
                    vec![cmd(&["apply", r, "--prune", "--yes", "--max-remove", "30"])],
                ),
                (
                    apply_world(2),
                    format!("{}{fast}", user_mode()),
                    vec![cmd(&["apply", r, "--prune", "--yes"])],
                ),
            ],
            false,
        )
        .await,
    );
    assert_policy_matches("apply", seen).await;
}

/// `sync`'s world: the mapped groups; ana an onboarded agent (other names in Identity Center,
/// so her Connect names change), ben and dee Identity Center users only (dee in both
/// groups); `leavers` agents in the agents' group and no mapped group. Without the agents'
/// group when `group` is false (its membership step creates it).
fn sync_world(leavers: usize, group: bool) -> Seed {
    use connect_onboard_sandbox::world::{SeedIdentityGroup, SeedMembership};
    let mut s = if group { Seed::default() } else { no_group() };
    for g in ["Tier1-Agents", "Supervisors"] {
        s.identity_groups.push(SeedIdentityGroup {
            display_name: g.into(),
            ..Default::default()
        });
    }
    let join = |s: &mut Seed, g: &str, u: &str| {
        s.memberships.push(SeedMembership {
            group: g.into(),
            user: u.into(),
            ..Default::default()
        })
    };
    seeds::connect_user(&mut s, "ana@example.com", "Ana", "Silva");
    seeds::identity_user(
        &mut s,
        "ana@example.com",
        "Ana",
        "Souza",
        Some("ana@example.com"),
    );
    if group {
        seeds::member(&mut s, "ana@example.com");
        seeds::group_assigned(&mut s);
    }
    seeds::identity_user(
        &mut s,
        "ben@example.com",
        "Ben",
        "Ng",
        Some("ben@example.com"),
    );
    seeds::identity_user(
        &mut s,
        "dee@example.com",
        "Dee",
        "Moss",
        Some("dee@example.com"),
    );
    join(&mut s, "Tier1-Agents", "ana@example.com");
    join(&mut s, "Tier1-Agents", "ben@example.com");
    join(&mut s, "Tier1-Agents", "dee@example.com");
    join(&mut s, "Supervisors", "dee@example.com");
    for i in 0..leavers {
        let email = format!("leaver{i}@example.com");
        seeds::connect_user(&mut s, &email, "Lea", "Ver");
        seeds::identity_user(&mut s, &email, "Lea", "Ver", Some(&email));
        seeds::member(&mut s, &email);
    }
    s
}

const SYNC_MAPPING: &str = r#"
[[sync.groups]]
group = "Tier1-Agents"
routing_profile = "Sales Routing Profile"
security_profiles = ["Agent", "QualityAnalyst"]
hierarchy_group = "Tier 1"
auto_accept = true
acw_timeout = 30
tags = { team = "blue" }

[[sync.groups]]
group = "Supervisors"
routing_profile = "Basic Routing Profile"
security_profiles = ["CallCenterManager"]
"#;

#[tokio::test]
async fn sync_policy_equals_the_calls_sync_makes() {
    // Creates (the Identity Center user adopted), every kind of update, then the plan
    // again; rollback (in `observed`) restores every field and deletes what was created.
    let commands = || vec![cmd(&["sync"]), cmd(&["sync", "--dry-run"])];
    let fast = "[rate_limits]\n\"connect:*\" = { rate = 100.0, burst = 100 }\n\"identity_center\" = { rate = 400.0, burst = 400 }\n";
    let mut seen = observed(
        vec![
            (sync_world(0, true), SYNC_MAPPING.to_string(), commands()),
            (
                sync_world(0, false),
                format!("{}{SYNC_MAPPING}", user_mode()),
                commands(),
            ),
        ],
        true,
    )
    .await;
    // --prune: a few removals, then many (the Connect user alone, never the Identity
    // Center user).
    seen.extend(
        observed(
            vec![
                (
                    sync_world(2, true),
                    format!("{SYNC_MAPPING}{fast}"),
                    vec![cmd(&["sync", "--prune", "--yes"])],
                ),
                (
                    sync_world(21, true),
                    format!("{SYNC_MAPPING}{fast}"),
                    vec![cmd(&["sync", "--prune", "--yes", "--max-remove", "30"])],
                ),
            ],
            false,
        )
        .await,
    );
    // A killed sync, resumed: the lookups the listing answered once are asked of AWS.
    let env = Env::with(sync_world(0, true), SYNC_MAPPING).await;
    let out = env
        .run_with(
            &["sync", "--concurrency", "1"],
            &[("CONNECT_ONBOARD_CRASH_AT", "after_write:connect_user")],
        )
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    run_ok(&env, &["resume"], 0).await;
    // A group mapped by its id (GetGroupId looks names up): every group is listed.
    let tier1 = env.sb.seed_world(|w| {
        (w.identity_stores[STORE].groups.values())
            .find(|g| g.display_name == "Tier1-Agents")
            .map(|g| g.group_id.clone())
            .unwrap()
    });
    let by_id = (std::fs::read_to_string(&env.config).unwrap()).replacen(
        "group = \"Tier1-Agents\"",
        &format!("group = \"{tier1}\""),
        1,
    );
    let config = env.dir.path().join("by-id.toml");
    std::fs::write(&config, by_id).unwrap();
    let args = ["--config", config.to_str().unwrap(), "sync", "--dry-run"];
    run_ok(&env, &args, 0).await;
    seen.extend(called(&env));
    for never in [
        "identitystore:CreateUser",
        "identitystore:DeleteUser",
        "identitystore:UpdateUser",
    ] {
        assert!(!seen.contains(never), "sync called {never}");
    }
    assert_policy_matches("sync", seen).await;
}

/// `iam-policy --for sync --queue URL`: the queue's statement grants exactly the SQS calls
/// the queue's port makes (read from its source: a batch call needs the single call's
/// permission), on that queue's ARN; a queue for another command, or a URL that names no
/// queue ARN, is exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn sync_queue_policy_grants_the_calls_the_queue_port_makes_on_that_queue_only() {
    let env = Env::new().await;
    let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/connect-sync";
    let out = run_ok(&env, &["iam-policy", "--for", "sync", "--queue", url], 0).await;
    let doc: Value = out.json();
    let q = (doc["Statement"].as_array().unwrap().iter())
        .find(|s| s["Sid"] == "EventQueue")
        .expect("a statement for the queue");
    assert_eq!(
        q["Resource"],
        "arn:aws:sqs:eu-west-1:123456789012:connect-sync"
    );
    let granted: BTreeSet<String> = (q["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/aws/queue.rs")).unwrap();
    let call = regex::Regex::new(r"\.client\s*\.([a-z_]+)\(").unwrap();
    let called: BTreeSet<String> = (call.captures_iter(&src))
        .map(|c| {
            let camel: String = (c[1].trim_end_matches("_batch").split('_'))
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            format!("sqs:{camel}")
        })
        .collect();
    assert_eq!(
        granted, called,
        "the policy grants what src/aws/queue.rs calls"
    );
    assert_eq!(called.len(), 3, "{called:?}");
    // Without --queue, no queue statement.
    let doc: Value = run_ok(&env, &["iam-policy", "--for", "sync"], 0)
        .await
        .json();
    assert!(!doc.to_string().contains("sqs:"), "{doc}");
    let out = env
        .run(&["iam-policy", "--for", "batch", "--queue", url])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("only `sync --watch` reads an event queue"),
        "{out:?}"
    );
    let out = env
        .run(&["iam-policy", "--for", "sync", "--queue", "connect-sync"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("not an SQS queue URL"), "{out:?}");
}
