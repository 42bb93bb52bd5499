//! `migrate`: existing Connect agents get their Identity Center half, with the Connect
//! username kept exactly (case included); the Connect users are adopted, never created or
//! deleted, so a rollback leaves them in place.

use connect_onboard_sandbox::world::{SeedConnectUser, SeedIdentityUser};
use connect_onboard_sandbox::Seed;

use crate::harness::*;

fn connect_user(username: &str, first: &str, routing: &str) -> SeedConnectUser {
    SeedConnectUser {
        username: username.into(),
        first_name: Some(first.into()),
        last_name: Some("Silva".into()),
        security_profiles: vec!["Agent".into()],
        routing_profile: Some(routing.into()),
        ..Default::default()
    }
}

pub fn seeded() -> Seed {
    let mut seed = Seed::default();
    let users = &mut seed.connect_instances[0].users;
    users.push(connect_user(
        "Ana.Silva@Example.com",
        "Ana",
        "Basic Routing Profile",
    ));
    users.push(connect_user(
        "ben@example.com",
        "Ben",
        "Basic Routing Profile",
    ));
    users.push(connect_user("cy.lee", "Cy", "Basic Routing Profile"));
    // Ben already has a matching Identity Center user: adopted.
    seed.identity_users.push(SeedIdentityUser {
        user_name: "ben@example.com".into(),
        display_name: Some("Ben Silva".into()),
        given_name: "Ben".into(),
        family_name: "Silva".into(),
        email: Some("ben@example.com".into()),
        ..Default::default()
    });
    seed
}

#[tokio::test]
async fn migrate_keeps_usernames_exactly_adopts_connect_users_and_rollback_leaves_them() {
    let env = Env::with(seeded(), "").await;
    let connect_before = env.world().connect_users.len();
    let out = env.run(&["migrate", "--json"]).await;
    assert_eq!(out.code, 1, "cy.lee cannot be migrated: {out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["done"], 2, "{j}");
    let invalid = j["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 1, "{j}");
    assert!(
        invalid[0].as_str().unwrap().contains("\"cy.lee\"")
            && invalid[0]
                .as_str()
                .unwrap()
                .contains("is not an email address"),
        "{j}"
    );
    let w = env.world();
    // The Identity Store user is named exactly as the Connect user, case kept.
    assert_eq!(
        w.identity_users.get("Ana.Silva@Example.com"),
        Some(&vec!["Ana.Silva@Example.com".to_string()]),
        "{w:#?}"
    );
    assert_eq!(
        env.applied("connect:CreateUser"),
        0,
        "Connect users are adopted"
    );
    assert_eq!(
        env.applied("identitystore:CreateUser"),
        1,
        "Ben's user is adopted"
    );
    assert!(w
        .memberships
        .contains(&("ConnectAgents".into(), "Ana.Silva@Example.com".into())));

    // Rollback: what the run created goes; the Connect users and Ben's user stay.
    let run = j["run_id"].as_str().unwrap().to_string();
    let out = env.run(&["rollback", &run, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let w = env.world();
    assert_eq!(w.connect_users.len(), connect_before, "{w:#?}");
    assert!(w
        .connect_users
        .contains(&"Ana.Silva@Example.com".to_string()));
    assert!(
        !w.identity_users.contains_key("Ana.Silva@Example.com"),
        "{w:#?}"
    );
    assert!(
        w.identity_users.contains_key("ben@example.com"),
        "adopted: kept"
    );
    assert_eq!(env.applied("connect:DeleteUser"), 0);
}

#[tokio::test]
async fn migrate_filters_by_usernames_and_a_dry_run_writes_nothing() {
    let env = Env::with(seeded(), "").await;
    let list = env.dir.path().join("usernames.txt");
    std::fs::write(&list, "Ana.Silva@Example.com\nana.silva@example.com\n").unwrap();
    let out = env
        .run(&[
            "migrate",
            "--usernames",
            path_str(&list),
            "--dry-run",
            "--json",
        ])
        .await;
    assert_eq!(out.code, 1, "the lower-case name does not exist: {out:?}");
    let j = out.json();
    assert_eq!(j["counts"]["planned"], 1, "{j}");
    assert_eq!(j["plan"]["connect_user"]["adopt"], 1, "{j}");
    assert_eq!(j["plan"]["identity_user"]["create"], 1, "{j}");
    assert!(
        j["invalid"][0]
            .as_str()
            .unwrap()
            .contains("no Connect user is named exactly \"ana.silva@example.com\""),
        "{j}"
    );
    assert_eq!(writes(&env), 0);
    assert!(!env.state.exists());
}

#[tokio::test]
async fn a_same_email_user_with_another_user_name_is_a_conflict_naming_both() {
    let mut seed = seeded();
    seed.identity_users.push(SeedIdentityUser {
        user_name: "asilva".into(),
        display_name: Some("Ana Silva".into()),
        given_name: "Ana".into(),
        family_name: "Silva".into(),
        email: Some("Ana.Silva@Example.com".into()),
        ..Default::default()
    });
    let env = Env::with(seed, "").await;
    let list = env.dir.path().join("usernames.txt");
    std::fs::write(&list, "Ana.Silva@Example.com\n").unwrap();
    let out = env
        .run(&["migrate", "--usernames", path_str(&list), "--json"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    let j = out.json();
    let err = j["agents"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("\"asilva\"") && err.contains("Ana.Silva@Example.com"),
        "{err}"
    );
    assert_eq!(env.applied("identitystore:CreateUser"), 0);
}

#[tokio::test]
async fn migrate_refuses_an_instance_that_is_not_saml_before_any_write() {
    let mut seed = seeded();
    seed.connect_instances[0].identity_management_type = "CONNECT_MANAGED".into();
    let env = Env::with(seed, "").await;
    let out = env.run(&["migrate"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("CONNECT_MANAGED identity management"),
        "{out:?}"
    );
    assert!(out.stderr.contains("fixed when it is created"), "{out:?}");
    assert_eq!(writes(&env), 0);
}

/// Item 9 of issue 15: two Connect users whose names differ only in case. Identity Center
/// user names are unique without case, so only one can be migrated, and migrate does not
/// pick one: both are skipped, each with the reason naming both, unless `--usernames`
/// names exactly one of them, which is then migrated with a note saying which and why.
#[tokio::test]
async fn connect_users_differing_only_in_case_are_both_skipped_unless_usernames_names_one() {
    let mut seed = Seed::default();
    let users = &mut seed.connect_instances[0].users;
    for name in ["Pat@example.com", "pat@example.com", "ben@example.com"] {
        users.push(connect_user(name, "Pat", "Basic Routing Profile"));
    }
    let env = Env::with(seed, "").await;
    let pat_ic = |env: &Env| -> Vec<String> {
        (env.world().identity_users.keys())
            .filter(|k| k.eq_ignore_ascii_case("pat@example.com"))
            .cloned()
            .collect()
    };

    let out = env.run(&["migrate", "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let j = out.json();
    assert_eq!(
        j["counts"],
        serde_json::json!({"done": 1}),
        "ben only: {j:#}"
    );
    let invalid: Vec<&str> = (j["invalid"].as_array().unwrap().iter())
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(invalid.len(), 2, "{j:#}");
    for (line, name) in invalid.iter().zip(["Pat@example.com", "pat@example.com"]) {
        assert!(
            line.starts_with(&format!("Connect user {name:?} not migrated"))
                && line.contains("\"Pat@example.com\" and \"pat@example.com\" differ only in case")
                && line.contains("--usernames")
                && line.contains("drift"),
            "{line}"
        );
    }
    assert_eq!(pat_ic(&env), Vec::<String>::new(), "neither is migrated");

    // Naming both is no choice either.
    let list = env.dir.path().join("both.txt");
    std::fs::write(&list, "Pat@example.com\npat@example.com\n").unwrap();
    let out = env
        .run(&["migrate", "--usernames", path_str(&list), "--json"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.json()["invalid"].as_array().unwrap().len(),
        2,
        "{out:?}"
    );
    assert_eq!(pat_ic(&env), Vec::<String>::new());

    // Naming one exactly migrates that one, and says so.
    let list = env.dir.path().join("one.txt");
    std::fs::write(&list, "Pat@example.com\n").unwrap();
    let out = env.run(&["migrate", "--usernames", path_str(&list)]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("migrating \"Pat@example.com\", the one --usernames names exactly")
            && out
                .stderr
                .contains("\"pat@example.com\" keeps no Identity Center user"),
        "{out:?}"
    );
    assert_eq!(pat_ic(&env), ["Pat@example.com"]);
}

#[tokio::test]
async fn retry_of_a_failed_migration_keeps_the_connect_username_exactly() {
    let mut seed = Seed::default();
    seed.connect_instances[0].users.push(connect_user(
        "Mia.Lopez@Example.com",
        "Mia",
        "Basic Routing Profile",
    ));
    let env = Env::with(seed, "").await;
    env.faults(serde_json::json!({"rules": [
        {"op": "identitystore:CreateGroupMembership", "action": "error", "code": "AccessDeniedException", "status": 403}
    ]}));
    let out = env.run(&["migrate"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        env.world().identity_users.is_empty(),
        "rolled back: {:?}",
        env.world()
    );
    // The permission is granted; `retry` runs the stored subject again.
    env.faults(serde_json::json!({"rules": []}));
    let out = env.run(&["retry"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("skipped"), "{out:?}");
    let w = env.world();
    assert_eq!(
        w.identity_users.keys().collect::<Vec<_>>(),
        vec!["Mia.Lopez@Example.com"],
        "the Identity Center UserName is the Connect username, case kept: {w:?}"
    );
    assert_eq!(w.connect_users, vec!["Mia.Lopez@Example.com".to_string()]);
}
