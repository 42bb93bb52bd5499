//! Scenario 8 of issue 8: the Identity Store half of the reliability scenarios against an
//! independent implementation, moto's server (`AWS_ENDPOINT_URL_IDENTITYSTORE`), with
//! Connect and SSO Admin still on the sandbox: SIGKILLs at random instants under a fault
//! storm on the sandbox's services, and rollback next to pre-existing moto users. moto
//! accepts a second user with the same email and a second identical membership, so only
//! our own lookups keep them unique there. Every check reads moto itself.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use crate::harness::*;
use crate::moto::{moto_client, on_moto, start_moto, Moto};
use crate::reliability::*;

type Ids = aws_sdk_identitystore::Client;

/// An environment whose Identity Store is moto, with the agents' group created there and
/// mirrored (same id) into the sandbox, which SSO Admin checks principals against.
async fn moto_env(moto: &Moto, extra_toml: &str) -> (Env, Ids, String) {
    let c = moto_client(&moto.url).await;
    let g = c
        .create_group()
        .identity_store_id(STORE)
        .display_name("ConnectAgents")
        .send()
        .await
        .expect("group created in moto");
    let group = g.group_id().to_string();
    let mut seed = connect_onboard_sandbox::Seed::default();
    seed.identity_groups[0].id = Some(group.clone());
    let mut env = many_agents_env(seed, extra_toml).await;
    on_moto(&mut env, moto);
    (env, c, group)
}

/// The world: Connect users and assignments from the sandbox, Identity Store users and
/// memberships from moto.
async fn world(env: &Env, c: &Ids, group: &str) -> WorldIds {
    let mut w = env.ids();
    w.group_id = group.to_string();
    w.identity.clear();
    w.memberships.clear();
    let users: Vec<_> = c
        .list_users()
        .identity_store_id(STORE)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    for u in users {
        let u = u.expect("moto lists users");
        w.identity
            .entry(u.user_name().unwrap_or_default().to_lowercase())
            .or_default()
            .push(u.user_id().to_string());
    }
    let members: Vec<_> = c
        .list_group_memberships()
        .identity_store_id(STORE)
        .group_id(group)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    for m in members {
        let m = m.expect("moto lists memberships");
        let user = match m.member_id() {
            Some(aws_sdk_identitystore::types::MemberId::UserId(u)) => u.clone(),
            other => panic!("unexpected member {other:?}"),
        };
        w.memberships
            .push((group.to_string(), user, m.membership_id().to_string()));
    }
    w
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_identity_store_under_kills_and_a_storm_on_the_other_services_has_exactly_one_of_each()
{
    let Some(moto) = start_moto() else { return };
    let seed = seed();
    let n = knob("RELIABILITY_MOTO_AGENTS", 40) as usize;
    let mut rng = StdRng::seed_from_u64(seed + 400);
    let (env, c, group) = moto_env(&moto, "").await;
    let emails = emails("t", n);
    let file = agents_file(&env, "agents.csv", &emails);
    let before = world(&env, &c, &group).await;
    // The storm hits what the sandbox serves (Connect, SSO Admin); moto answers the
    // Identity Store calls, slowly enough that kills land between its writes and their
    // checkpoints too.
    env.faults(storm(seed, 80, 0.01));
    let k = kill_repeatedly(&env, &["batch", &file], 8, 100..900, 4, &mut rng).await;
    env.faults(json!({}));
    resume_to_the_end(&env).await;
    eprintln!("seed {seed} (moto): {k:?}");
    let w = world(&env, &c, &group).await;
    let states = audit_world(&env, w, &before, &emails, &BTreeMap::new(), false).await;
    assert!(states.values().all(|s| s == "done"), "{states:?}");
    assert_eq!(
        env.calls("identitystore:CreateUser"),
        0,
        "the Identity Store calls went to moto"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_rollback_leaves_pre_existing_identity_store_users_and_memberships() {
    let Some(moto) = start_moto() else { return };
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed + 500);
    let (env, c, group) = moto_env(&moto, "").await;
    let emails = emails("u", 16);
    // Half pre-exist: by i % 4, 0 the Connect user (sandbox), 1 the Identity Store user
    // (moto), 2 the Identity Store user and its membership (moto); 3 nothing.
    let mut pre = BTreeMap::new();
    let mut kept = BTreeMap::new();
    for (i, e) in emails.iter().enumerate() {
        let mut p = Pre::default();
        if i % 4 == 0 {
            env.sb
                .seed_world(|w| w.add_connect_user(INSTANCE, e, "Agent", "Pre"))
                .unwrap();
            p.connect = true;
        }
        if i % 4 == 1 || i % 4 == 2 {
            let u = c
                .create_user()
                .identity_store_id(STORE)
                .user_name(e)
                .display_name("Agent Pre")
                .name(
                    aws_sdk_identitystore::types::Name::builder()
                        .given_name("Agent")
                        .family_name("Pre")
                        .build(),
                )
                .emails(
                    aws_sdk_identitystore::types::Email::builder()
                        .value(e)
                        .primary(true)
                        .r#type("work")
                        .build(),
                )
                .send()
                .await
                .unwrap();
            p.identity = true;
            let described = c
                .describe_user()
                .identity_store_id(STORE)
                .user_id(u.user_id())
                .send()
                .await
                .unwrap();
            kept.insert(u.user_id().to_string(), fields(&described));
            if i % 4 == 2 {
                c.create_group_membership()
                    .identity_store_id(STORE)
                    .group_id(&group)
                    .member_id(aws_sdk_identitystore::types::MemberId::UserId(
                        u.user_id().to_string(),
                    ))
                    .send()
                    .await
                    .unwrap();
                p.membership = true;
            }
        }
        if p.connect || p.identity {
            pre.insert(e.clone(), p);
        }
    }
    let before = world(&env, &c, &group).await;
    // The group's assignment is refused: every agent fails at its last step and rolls
    // back, killed now and then.
    let mut rules = latency_and_held_writes(60, 0.0);
    rules.push(
        json!({"op": "sso:CreateApplicationAssignment", "action": "error",
        "code": "AccessDeniedException", "status": 400}),
    );
    env.faults(json!({"seed": seed, "rules": rules}));
    let k = kill_repeatedly(
        &env,
        &["batch", &file_of(&env, &emails)],
        3,
        100..600,
        0,
        &mut rng,
    )
    .await;
    resume_to_the_end(&env).await;
    eprintln!("seed {seed} (moto rollback): {k:?}");
    let w = world(&env, &c, &group).await;
    let states = audit_world(&env, w.clone(), &before, &emails, &pre, false).await;
    // Every agent created something (its Connect or its Identity Store user at least).
    assert!(states.values().all(|s| s == "rolled_back"), "{states:?}");
    assert_eq!(
        w.identity, before.identity,
        "moto's users are exactly those that existed"
    );
    assert_eq!(
        w.memberships, before.memberships,
        "and so are its memberships"
    );
    for (id, was) in &kept {
        let now = c
            .describe_user()
            .identity_store_id(STORE)
            .user_id(id)
            .send()
            .await
            .expect("a pre-existing moto user is still there");
        assert_eq!(&fields(&now), was, "unchanged");
    }
}

fn file_of(env: &Env, emails: &[String]) -> String {
    agents_file(env, "agents.csv", emails)
}

/// A moto user's fields (the SDK's Debug redacts them).
fn fields(u: &aws_sdk_identitystore::operation::describe_user::DescribeUserOutput) -> Vec<String> {
    let mut f = vec![
        u.user_id().to_string(),
        u.user_name().unwrap_or_default().to_string(),
        u.display_name().unwrap_or_default().to_string(),
    ];
    if let Some(n) = u.name() {
        f.push(n.given_name().unwrap_or_default().to_string());
        f.push(n.family_name().unwrap_or_default().to_string());
    }
    for e in u.emails() {
        f.push(format!(
            "{:?} {:?} {:?}",
            e.value(),
            e.r#type(),
            e.primary()
        ));
    }
    f
}
