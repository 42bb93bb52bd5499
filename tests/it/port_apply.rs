//! The AWS port's reads and writes for `apply`, through the real SDK clients against the
//! sandbox: SearchUsers without criteria (every page, the details, ACW converted from
//! milliseconds), DescribeUser's full details, each UpdateUser* call, Tag/UntagResource on a
//! user's ARN, Identity Store UpdateUser of the names; each paced under its API's name and
//! failing with the service's error code.

use std::collections::BTreeMap;
use std::time::Duration;

use connect_onboard::aws::pacer::{Pacer, RateLimits};
use connect_onboard::aws::{
    Clients, ConnectApi, ConnectUser, IdentityInfo, IdentityNames, IdentityStoreApi, PhoneConfig,
};
use connect_onboard_sandbox::world::{SeedConnectUser, SeedPhoneConfig};
use connect_onboard_sandbox::{
    FaultAction, FaultConfig, FaultRule, Sandbox, SandboxHandle, SandboxOptions, Seed, SeedIds,
};

use crate::harness::{INSTANCE, STORE};
use crate::seeds;

const UNKNOWN_USER: &str = "00000000-0000-4000-8000-000000000000";

struct Port {
    sb: SandboxHandle,
    clients: Clients,
    pacer: Pacer,
    ids: SeedIds,
}

/// A sandbox with `seed` and the port's SDK clients pointed at it (the AWS quotas' pacer).
async fn port(seed: Seed) -> Port {
    let sb = Sandbox::start(SandboxOptions {
        port: 0,
        seed,
        faults: FaultConfig::default(),
    })
    .await
    .expect("sandbox starts");
    // Pointed at this sandbox explicitly (no process-wide env vars: tests may share a
    // process).
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(sb.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_connect::config::Credentials::new(
            "sandbox", "sandbox", None, None, "sandbox",
        ))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await;
    let pacer = Pacer::new(RateLimits::default());
    let clients = Clients::new(&sdk, None, None, None, pacer.clone());
    let ids = sb.ids();
    Port {
        sb,
        clients,
        pacer,
        ids,
    }
}

/// The default world plus `ana` (every detail set) and `bo` (defaults, no hierarchy).
fn seed_with_agents() -> Seed {
    let mut seed = Seed::default();
    let ana = seeds::connect_user(&mut seed, "ana@example.com", "Ana", "Silva");
    *ana = SeedConnectUser {
        secondary_email: Some("ana.s@example.com".into()),
        mobile: Some("+12145550100".into()),
        security_profiles: vec!["Agent".into(), "QualityAnalyst".into()],
        routing_profile: Some("Sales Routing Profile".into()),
        hierarchy_group: Some("Tier 2".into()),
        tags: BTreeMap::from([("team".into(), "blue".into())]),
        phone: Some(SeedPhoneConfig {
            phone_type: "DESK_PHONE".into(),
            auto_accept: true,
            acw_timeout: 45,
            desk_phone_number: Some("+12145550198".into()),
        }),
        ..ana.clone()
    };
    seeds::connect_user(&mut seed, "bo@example.com", "Bo", "Berg");
    seed
}

fn by_name<'a>(users: &'a [ConnectUser], name: &str) -> &'a ConnectUser {
    users
        .iter()
        .find(|u| u.username == name)
        .unwrap_or_else(|| panic!("{name} in {users:?}"))
}

impl Port {
    fn connect(&self) -> &dyn ConnectApi {
        &self.clients.connect
    }

    async fn search(&self) -> Vec<ConnectUser> {
        self.connect().search_users(INSTANCE).await.expect("search")
    }

    async fn describe(&self, id: &str) -> ConnectUser {
        (self.connect().describe_user(INSTANCE, id).await)
            .expect("describe")
            .expect("the user exists")
    }

    async fn user(&self, name: &str) -> ConnectUser {
        by_name(&self.search().await, name).clone()
    }

    /// Whether the pacer saw a first attempt of `api` (the call went through its bucket).
    fn paced(&self, api: &str) -> bool {
        (self.pacer.snapshot().iter()).any(|s| s.api == api && s.first_attempts > 0)
    }
}

#[tokio::test]
async fn search_users_reads_every_user_with_its_details() {
    let p = port(seed_with_agents()).await;
    let users = p.search().await;
    assert_eq!(users.len(), 2);
    let ana = by_name(&users, "ana@example.com");
    let d = ana.detail.clone().expect("SearchUsers fills the detail");
    assert_eq!(
        (d.first_name.as_str(), d.last_name.as_str()),
        ("Ana", "Silva")
    );
    assert_eq!(
        d.routing_profile_id,
        p.ids.routing_profiles["Sales Routing Profile"]
    );
    let mut profiles = d.security_profile_ids.clone();
    profiles.sort();
    let mut want = vec![
        p.ids.security_profiles["Agent"].clone(),
        p.ids.security_profiles["QualityAnalyst"].clone(),
    ];
    want.sort();
    assert_eq!(profiles, want);
    assert_eq!(
        d.hierarchy_group_id.as_deref(),
        Some(p.ids.hierarchy_groups["Tier 2"].as_str())
    );
    // SearchUsers answers 45,000 (ms): the port holds seconds.
    assert_eq!(
        d.phone,
        PhoneConfig {
            phone_type: "DESK_PHONE".into(),
            auto_accept: true,
            acw_timeout: 45,
            desk_phone_number: Some("+12145550198".into()),
        }
    );
    assert_eq!(d.tags, BTreeMap::from([("team".into(), "blue".into())]));
    // What SearchUsers does not return is not claimed read.
    assert!(!d.full_identity_info);
    assert_eq!((d.secondary_email, d.mobile), (None, None));
    assert!(!ana.id.is_empty() && ana.arn.ends_with(&ana.id));
    let bo = by_name(&users, "bo@example.com")
        .detail
        .clone()
        .expect("detail");
    assert_eq!(
        bo.hierarchy_group_id, None,
        "no group: None, not Some(\"\")"
    );
    assert!(bo.tags.is_empty());
    assert_eq!(bo.phone.phone_type, "SOFT_PHONE");
    assert!(p.paced("connect:SearchUsers"));
}

#[tokio::test]
async fn search_users_reads_every_page() {
    let p = port(Seed::default()).await;
    // More users than one page of 500 holds.
    p.sb.seed_world(|w| {
        let inst = w.connect_instances.get_mut(INSTANCE).expect("instance");
        inst.max_users = 1_000;
        for i in 0..520 {
            w.add_connect_user(INSTANCE, &format!("agent{i:03}@example.com"), "A", "B")
                .expect("added");
        }
    });
    let users = p.search().await;
    assert_eq!(users.len(), 520);
    let mut names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 520, "no user twice");
    assert!(users.iter().all(|u| u.detail.is_some()));
    let pages = p.sb.calls()["connect:SearchUsers"].calls;
    assert_eq!(pages, 2, "500 a page");
}

#[tokio::test]
async fn describe_user_reads_phone_secondary_email_mobile_and_tags() {
    let p = port(seed_with_agents()).await;
    let id = p.user("ana@example.com").await.id;
    let ana = p.describe(&id).await;
    let d = ana.detail.expect("detail");
    assert!(d.full_identity_info);
    assert_eq!(d.phone.acw_timeout, 45, "DescribeUser answers in seconds");
    assert_eq!(d.phone.desk_phone_number.as_deref(), Some("+12145550198"));
    assert_eq!(d.secondary_email.as_deref(), Some("ana.s@example.com"));
    assert_eq!(d.mobile.as_deref(), Some("+12145550100"));
    assert_eq!(d.tags, BTreeMap::from([("team".into(), "blue".into())]));
    let bo = p.describe(&p.user("bo@example.com").await.id).await;
    let d = bo.detail.expect("detail");
    assert_eq!((d.secondary_email, d.mobile), (None, None));
    assert_eq!(d.hierarchy_group_id, None);
}

#[tokio::test]
async fn each_update_changes_what_describe_and_search_show() {
    let p = port(seed_with_agents()).await;
    let c = p.connect();
    let bo = p.user("bo@example.com").await.id;

    let sales = p.ids.routing_profiles["Sales Routing Profile"].clone();
    c.update_routing_profile(INSTANCE, &bo, &sales)
        .await
        .expect("routing profile");
    let profiles = vec![
        p.ids.security_profiles["Admin"].clone(),
        p.ids.security_profiles["CallCenterManager"].clone(),
    ];
    c.update_security_profiles(INSTANCE, &bo, &profiles)
        .await
        .expect("security profiles");
    let tier = p.ids.hierarchy_groups["Tier 1"].clone();
    c.update_hierarchy(INSTANCE, &bo, Some(&tier))
        .await
        .expect("hierarchy");
    let phone = PhoneConfig {
        phone_type: "DESK_PHONE".into(),
        auto_accept: true,
        acw_timeout: 120,
        desk_phone_number: Some("+12145550111".into()),
    };
    c.update_phone_config(INSTANCE, &bo, &phone)
        .await
        .expect("phone config");
    let info = IdentityInfo {
        first_name: "Bodil".into(),
        last_name: "Berg-Lund".into(),
        email: None,
        secondary_email: Some("bodil@example.com".into()),
        mobile: Some("+12145550122".into()),
    };
    c.update_identity_info(INSTANCE, &bo, &info)
        .await
        .expect("identity info");

    let described = p.describe(&bo).await.detail.expect("detail");
    let searched = p.user("bo@example.com").await.detail.expect("detail");
    for d in [&described, &searched] {
        assert_eq!(d.routing_profile_id, sales);
        let mut got = d.security_profile_ids.clone();
        got.sort();
        let mut want = profiles.clone();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(d.hierarchy_group_id.as_deref(), Some(tier.as_str()));
        assert_eq!(d.phone, phone, "ACW 120 s whichever call read it");
        assert_eq!(
            (d.first_name.as_str(), d.last_name.as_str()),
            ("Bodil", "Berg-Lund")
        );
    }
    assert_eq!(
        described.secondary_email.as_deref(),
        Some("bodil@example.com")
    );
    assert_eq!(described.mobile.as_deref(), Some("+12145550122"));

    // None: the user leaves its hierarchy group.
    c.update_hierarchy(INSTANCE, &bo, None)
        .await
        .expect("leave the group");
    assert_eq!(
        p.describe(&bo).await.detail.expect("d").hierarchy_group_id,
        None
    );
    assert_eq!(
        p.user("bo@example.com")
            .await
            .detail
            .expect("d")
            .hierarchy_group_id,
        None
    );
    for api in [
        "connect:UpdateUserRoutingProfile",
        "connect:UpdateUserSecurityProfiles",
        "connect:UpdateUserHierarchy",
        "connect:UpdateUserPhoneConfig",
        "connect:UpdateUserIdentityInfo",
    ] {
        assert!(p.paced(api), "{api} goes through its bucket");
        assert!(p.sb.calls()[api].applied >= 1, "{api} reached the sandbox");
    }
}

#[tokio::test]
async fn tag_and_untag_a_user_by_its_arn() {
    let p = port(seed_with_agents()).await;
    let ana = p.user("ana@example.com").await;
    let c = p.connect();
    let tags = BTreeMap::from([
        ("site".to_string(), "lisbon".to_string()),
        ("team".to_string(), "red".to_string()),
    ]);
    c.tag_user(&ana.arn, &tags).await.expect("tagged");
    let shown = p.describe(&ana.id).await.detail.expect("detail").tags;
    assert_eq!(shown, tags, "team changed, site added");
    c.untag_user(&ana.arn, &["site".to_string(), "absent".to_string()])
        .await
        .expect("untagged");
    let searched = p.user("ana@example.com").await.detail.expect("detail").tags;
    assert_eq!(searched, BTreeMap::from([("team".into(), "red".into())]));
    assert!(p.paced("connect:TagResource") && p.paced("connect:UntagResource"));
    // The TagMap rules are the service's: a refused tag is its error code.
    let bad = BTreeMap::from([("aws:owner".to_string(), "x".to_string())]);
    let e = c.tag_user(&ana.arn, &bad).await.expect_err("aws: prefix");
    assert_eq!(e.code, "InvalidParameterException");
}

#[tokio::test]
async fn identity_store_update_names_shows_in_describe_and_list() {
    let mut seed = Seed::default();
    seeds::identity_user(
        &mut seed,
        "ana@example.com",
        "Ana",
        "Silva",
        Some("ana@example.com"),
    );
    let p = port(seed).await;
    let ids = &p.clients.identity_store as &dyn IdentityStoreApi;
    let id = (ids.user_id_by_name(STORE, "ana@example.com").await)
        .expect("lookup")
        .expect("seeded");
    let names = IdentityNames {
        given_name: "Anna".into(),
        family_name: "Silva Costa".into(),
        display_name: "Anna Silva Costa".into(),
    };
    ids.update_names(STORE, &id, &names).await.expect("updated");
    let described = ids
        .describe_user(STORE, &id)
        .await
        .expect("describe")
        .expect("user");
    let listed = ids.list_users(STORE).await.expect("list");
    let listed = listed.iter().find(|u| u.id == id).expect("listed");
    for u in [&described, listed] {
        assert_eq!(
            (
                u.given_name.as_str(),
                u.family_name.as_str(),
                u.display_name.as_str()
            ),
            ("Anna", "Silva Costa", "Anna Silva Costa")
        );
        assert_eq!(u.user_name, "ana@example.com", "the rest unchanged");
        assert_eq!(u.primary_email.as_deref(), Some("ana@example.com"));
    }
    assert!(p.paced("identitystore:UpdateUser"));
    // An empty name breaks CreateUser's rules: refused, nothing changed.
    let empty = IdentityNames {
        given_name: String::new(),
        ..names.clone()
    };
    let e = ids
        .update_names(STORE, &id, &empty)
        .await
        .expect_err("empty");
    assert_eq!(e.code, "ValidationException");
    let after = ids
        .describe_user(STORE, &id)
        .await
        .expect("describe")
        .expect("user");
    assert_eq!(after.given_name, "Anna");
}

#[tokio::test]
async fn unknown_users_fail_with_resource_not_found() {
    let p = port(seed_with_agents()).await;
    let c = p.connect();
    let rp = p.ids.routing_profiles["Basic Routing Profile"].clone();
    let sp = vec![p.ids.security_profiles["Agent"].clone()];
    let codes = vec![
        c.update_routing_profile(INSTANCE, UNKNOWN_USER, &rp).await,
        c.update_security_profiles(INSTANCE, UNKNOWN_USER, &sp)
            .await,
        c.update_hierarchy(INSTANCE, UNKNOWN_USER, None).await,
        c.update_phone_config(
            INSTANCE,
            UNKNOWN_USER,
            &PhoneConfig {
                phone_type: "SOFT_PHONE".into(),
                ..PhoneConfig::default()
            },
        )
        .await,
        c.update_identity_info(
            INSTANCE,
            UNKNOWN_USER,
            &IdentityInfo {
                first_name: "A".into(),
                last_name: "B".into(),
                ..IdentityInfo::default()
            },
        )
        .await,
        c.tag_user(
            &format!("{}/agent/{UNKNOWN_USER}", p.ids.connect_instance_arn),
            &BTreeMap::from([("a".to_string(), "b".to_string())]),
        )
        .await,
        c.untag_user(
            &format!("{}/agent/{UNKNOWN_USER}", p.ids.connect_instance_arn),
            &["a".to_string()],
        )
        .await,
        (p.clients.identity_store)
            .update_names(
                STORE,
                "1234567890-00000000-0000-4000-8000-000000000000",
                &IdentityNames {
                    given_name: "A".into(),
                    family_name: "B".into(),
                    display_name: "A B".into(),
                },
            )
            .await,
    ];
    for (i, r) in codes.into_iter().enumerate() {
        let e = r.expect_err("unknown user");
        assert_eq!(e.code, "ResourceNotFoundException", "call {i}: {e:?}");
        assert!(!e.maybe_applied, "a 404 was not applied");
    }
    // An unknown profile id is the service's not-found too.
    let bo = p.user("bo@example.com").await.id;
    let e = (c.update_routing_profile(INSTANCE, &bo, UNKNOWN_USER).await).expect_err("unknown rp");
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[tokio::test]
async fn a_write_that_may_have_landed_is_not_sent_twice() {
    let p = port(seed_with_agents()).await;
    let ana = p.user("ana@example.com").await;
    // The tag lands, the answer is a 500: the port reports it, flagged "may have applied",
    // and does not resend (only the engine retries a write, after a lookup).
    let mut rule = FaultRule::new("connect:TagResource", FaultAction::ApplyThenError);
    rule.times = Some(1);
    p.sb.set_faults(FaultConfig {
        rules: vec![rule],
        ..Default::default()
    });
    let tags = BTreeMap::from([("site".to_string(), "porto".to_string())]);
    let e = (p.connect().tag_user(&ana.arn, &tags).await).expect_err("injected 500");
    assert_eq!(e.code, "InternalServiceException");
    assert!(e.maybe_applied);
    let counts = &p.sb.calls()["connect:TagResource"];
    assert_eq!((counts.calls, counts.applied), (1, 1));
    let shown = p.describe(&ana.id).await.detail.expect("detail").tags;
    assert_eq!(shown.get("site").map(String::as_str), Some("porto"));
}
