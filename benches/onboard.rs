//! Benchmark: what the durable engine costs over the raw calls it makes.
//!
//! Against the in-process sandbox (real SDK clients over loopback HTTP), it measures
//! 1. one checkpoint transaction (SQLite, WAL, synchronous=FULL) on a file store;
//! 2. the engine onboarding one agent in group mode (7 lookups, 3 creates, 11 checkpoints;
//!    the group's application assignment is adopted after the first agent);
//! 3. the same 3 creates made raw through the SDK, plus one DescribeApplicationAssignment,
//!    with no other lookups and no checkpoints.
//!
//! It reports medians over `AGENTS` agents, for `ROUNDS` rounds, and the ratio 2/3.
//! Run: `cargo bench --bench onboard` (AGENTS=n ROUNDS=n to change the sizes).

// Test and bench code: unwrap is how a check fails, and printing is its report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use connect_onboard::engine::journal::EventKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_onboard::agent::{self, AgentInput, IdentityMode};
use connect_onboard::aws::{
    self, Clients, ConnectApi, IdentityStoreApi, NewConnectUser, NewIdentityUser, Principal,
    SsoAdminApi,
};
use connect_onboard::config;
use connect_onboard::engine::Journal;
use connect_onboard::engine::{Engine, EngineOptions, Secrets, Workflow};
use connect_onboard::preflight;
use connect_onboard::steps;
use connect_onboard::store::{self, RunRow, StepUpdate, Store};
use connect_onboard_sandbox::{FaultConfig, Sandbox, SandboxOptions, Seed};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let agents: usize = std::env::var("AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut seed = Seed::default();
    seed.connect_instances[0].max_users = 1_000_000;
    let sb = Sandbox::start(SandboxOptions {
        port: 0,
        seed,
        faults: FaultConfig::default(),
    })
    .await
    .unwrap();
    for (k, v) in sb.env_lines() {
        std::env::set_var(k, v);
    }
    let dir = tempfile::tempdir().unwrap();
    let sdk = aws::load_sdk_config(None, None, Duration::from_secs(30)).await;
    let clients = Clients::new(
        &sdk,
        None,
        Some("us-east-1"),
        Some("us-east-1"),
        connect_onboard::aws::pacer::Pacer::new(connect_onboard::aws::pacer::RateLimits::none()),
    );
    let cfg = config::sandbox();
    let (target, catalog) = preflight::discover(&cfg, &clients.connect, &clients.sso_admin)
        .await
        .unwrap();
    let env = connect_onboard::app::env_for(&clients, &target);
    println!("connect-onboard bench: {agents} agents x {rounds} rounds, sandbox on loopback");

    for round in 0..rounds {
        // 1. One checkpoint transaction.
        let store = Arc::new(Store::open(&dir.path().join(format!("tx-{round}.db"))).unwrap());
        let run = RunRow {
            id: "r".into(),
            created_at: store::now_rfc3339(),
            workflow_name: "b".into(),
            workflow: String::new(),
            meta: serde_json::json!({}),
        };
        store
            .create_run(
                &run,
                &[("a".into(), serde_json::json!({}))],
                &["s".into()],
                connect_onboard::engine::OnFailure::Rollback,
            )
            .unwrap();
        let (r, a) = ("r".into(), "a".into());
        Journal::acquire_lease(&*store, &r, &a, "t", 600_000)
            .await
            .unwrap();
        let mut tx = Vec::new();
        for i in 0..200 {
            let t = Instant::now();
            Journal::update_step(
                &*store,
                &r,
                &a,
                "t",
                &"s".into(),
                &StepUpdate {
                    state: Some(if i % 2 == 0 {
                        connect_onboard::engine::StepState::Running
                    } else {
                        connect_onboard::engine::StepState::Done
                    }),
                    bump_attempts: true,
                    ..Default::default()
                },
                EventKind::StepIntent,
            )
            .await
            .unwrap();
            tx.push(t.elapsed());
        }

        // 2. The engine, per agent.
        let store = Arc::new(Store::open(&dir.path().join(format!("engine-{round}.db"))).unwrap());
        let wf = Workflow::parse(
            connect_onboard::app::BUILTIN_WORKFLOW,
            "built-in",
            &steps::registry(&env),
        )
        .unwrap();
        let mut subjects = Vec::new();
        for i in 0..agents {
            let input = AgentInput {
                email: format!("bench{round}-{i}@example.com"),
                first_name: "Bench".into(),
                last_name: format!("Agent{i}"),
                ..Default::default()
            };
            let spec = agent::validate(&input, &cfg.defaults, IdentityMode::Saml).unwrap();
            let subject = preflight::resolve(spec, &catalog).unwrap();
            subjects.push((
                subject.agent.email.clone().into(),
                serde_json::to_value(&subject).unwrap(),
            ));
        }
        let run_id = format!("bench-{round}");
        store
            .create_run(
                &RunRow {
                    id: run_id.clone().into(),
                    created_at: store::now_rfc3339(),
                    workflow_name: wf.name.clone(),
                    workflow: wf.source.clone(),
                    meta: serde_json::json!({}),
                },
                &subjects,
                &wf.step_ids(),
                connect_onboard::engine::OnFailure::Rollback,
            )
            .unwrap();
        let engine = Engine::new(
            wf,
            steps::registry(&env),
            store.clone(),
            EngineOptions::default(),
        );
        sb.reset_calls();
        let mut eng = Vec::new();
        for (email, _) in &subjects {
            let t = Instant::now();
            let out = engine
                .run_agent(&run_id, email, &Secrets::default())
                .await
                .unwrap();
            eng.push(t.elapsed());
            assert_eq!(out.state, connect_onboard::engine::AgentState::Done);
        }
        let calls: u64 = sb.calls().values().map(|c| c.calls).sum();

        // 3. The same creates, raw.
        let group_id = env
            .identity_store
            .group_id(&env.identity_store_id, &env.group)
            .await
            .unwrap()
            .unwrap();
        let no_tags = Default::default();
        let rp = &catalog
            .routing_profiles
            .iter()
            .find(|p| p.name == "Basic Routing Profile")
            .unwrap()
            .id;
        let sp = catalog
            .security_profiles
            .iter()
            .find(|p| p.name == "Agent")
            .unwrap()
            .id
            .clone();
        let mut raw = Vec::new();
        for i in 0..agents {
            let email = format!("raw{round}-{i}@example.com");
            let t = Instant::now();
            clients
                .connect
                .create_user(
                    &env.instance_id,
                    &NewConnectUser {
                        username: &email,
                        first_name: "Raw",
                        last_name: "Agent",
                        email: None,
                        secondary_email: None,
                        mobile: None,
                        password: None,
                        directory_user_id: None,
                        phone_type: "SOFT_PHONE",
                        auto_accept: false,
                        acw_timeout: 0,
                        desk_phone_number: None,
                        routing_profile_id: rp,
                        security_profile_ids: vec![sp.clone()],
                        hierarchy_group_id: None,
                        tags: &no_tags,
                    },
                )
                .await
                .unwrap();
            let uid = clients
                .identity_store
                .create_user(
                    &env.identity_store_id,
                    &NewIdentityUser {
                        user_name: &email,
                        display_name: "Raw Agent",
                        given_name: "Raw",
                        family_name: "Agent",
                        email: &email,
                    },
                )
                .await
                .unwrap();
            clients
                .identity_store
                .create_membership(&env.identity_store_id, &group_id, &uid)
                .await
                .unwrap();
            let _ = clients
                .sso_admin
                .is_assigned(&env.application_arn, Principal::Group, &group_id)
                .await
                .unwrap();
            raw.push(t.elapsed());
        }
        let (tx, eng, raw) = (median(tx), median(eng), median(raw));
        println!(
            "round {}: checkpoint tx median {} | engine per agent median {} ({} AWS calls/agent) | raw creates per agent median {} | ratio {:.2}x",
            round + 1,
            ms(tx),
            ms(eng),
            calls / agents as u64,
            ms(raw),
            eng.as_secs_f64() / raw.as_secs_f64()
        );
    }
    sb.shutdown().await;
}
