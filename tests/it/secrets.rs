//! Passwords (CONNECT_MANAGED instances) never reach the state store, the logs or the JSON
//! output; a resume that needs one asks for it again.

use serde_json::json;

use connect_onboard_sandbox::Seed;

use crate::harness::*;

const PASSWORD: &str = "Zq7Kx9Vw2PlmNn4R";

fn managed_seed() -> Seed {
    let mut seed = Seed::default();
    seed.connect_instances[0].identity_management_type = "CONNECT_MANAGED".into();
    seed
}

fn args() -> Vec<&'static str> {
    vec![
        "onboard",
        "--email",
        "ana.silva@example.com",
        "--username",
        "asilva",
        "--first-name",
        "Ana",
        "--last-name",
        "Silva",
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn password_is_sent_to_connect_and_nowhere_else() {
    let env = Env::with(managed_seed(), "").await;
    let mut a = args();
    a.extend(["--json", "-vvv"]);
    let out = env
        .run_with(&a, &[("CONNECT_ONBOARD_PASSWORD", PASSWORD)])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    // It reached Connect (the sandbox enforces the password rules on CONNECT_MANAGED).
    let (username, email) = env.sb.seed_world(|w| {
        let u = w.connect_instances[INSTANCE]
            .users
            .values()
            .next()
            .unwrap()
            .clone();
        (u.username, u.identity_info.email)
    });
    assert_eq!(username, "asilva");
    assert_eq!(
        email.as_deref(),
        Some("ana.silva@example.com"),
        "CONNECT_MANAGED users get IdentityInfo.Email"
    );
    // Trace logging was on (and went to stderr only: stdout parses as one JSON document).
    assert!(out.stderr.len() > 1000, "trace logs present");
    let _ = out.json();
    assert!(!out.stdout.contains(PASSWORD), "JSON output");
    assert!(!out.stderr.contains(PASSWORD), "logs");
    let db = env.db_bytes();
    assert!(!db.is_empty());
    assert!(
        !db.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()),
        "state store"
    );
    let status = env.run(&["status", "--json"]).await;
    assert!(!status.stdout.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_invalid_password_is_an_input_error() {
    let env = Env::with(managed_seed(), "").await;
    let out = env.run(&args()).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("password") && out.stderr.contains("CONNECT_ONBOARD_PASSWORD"),
        "{out:?}"
    );
    let out = env
        .run_with(&args(), &[("CONNECT_ONBOARD_PASSWORD", "alllowercase1")])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("invalid password <redacted>"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("alllowercase1"));
    assert_eq!(writes(&env), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_asks_for_the_password_again() {
    let env = Env::with(managed_seed(), "").await;
    env.faults(json!({"rules": [{"op": "connect:CreateUser", "action": "throttle"}]}));
    let out = env
        .run_with(&args(), &[("CONNECT_ONBOARD_PASSWORD", PASSWORD)])
        .await;
    assert_eq!(out.code, 1, "interrupted: {out:?}");
    env.faults(json!({}));
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("needs its password again"), "{out:?}");
    assert_eq!(env.applied("connect:CreateUser"), 0);
    let out = env
        .run_with(&["resume"], &[("CONNECT_ONBOARD_PASSWORD", PASSWORD)])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env.applied("connect:CreateUser"), 1);
    assert!(!env
        .db_bytes()
        .windows(PASSWORD.len())
        .any(|w| w == PASSWORD.as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_checks_a_new_password_before_sending_it() {
    let env = Env::with(managed_seed(), "").await;
    env.faults(json!({"rules": [{"op": "connect:CreateUser", "action": "throttle"}]}));
    assert_eq!(
        env.run_with(&args(), &[("CONNECT_ONBOARD_PASSWORD", PASSWORD)])
            .await
            .code,
        1
    );
    env.faults(json!({}));
    let before = env.calls("connect:CreateUser");
    let out = env
        .run_with(&["resume"], &[("CONNECT_ONBOARD_PASSWORD", "short")])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("password"), "{out:?}");
    assert_eq!(
        env.calls("connect:CreateUser"),
        before,
        "an invalid password is not sent"
    );
    let st = env.status_json().await;
    assert_eq!(
        st["runs"][0]["agents"][0]["state"], "interrupted",
        "still resumable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_user_with_another_email_is_a_conflict() {
    let mut seed = managed_seed();
    seed.connect_instances[0]
        .users
        .push(connect_onboard_sandbox::world::SeedConnectUser {
            username: "asilva".into(),
            first_name: Some("Alan".into()),
            last_name: Some("Silva".into()),
            email: Some("alan.silva@example.com".into()),
            security_profiles: vec!["Agent".into()],
            routing_profile: Some("Basic Routing Profile".into()),
            ..Default::default()
        });
    let env = Env::with(seed, "").await;
    let out = env
        .run_with(&args(), &[("CONNECT_ONBOARD_PASSWORD", PASSWORD)])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("alan.silva@example.com")
            && out.stdout.contains("ana.silva@example.com"),
        "{out:?}"
    );
    assert_eq!(writes(&env), 0);
}

/// The console template's CONNECT_MANAGED generation: a password per row.
const MANAGED_HEADER: &str = "first name,last name,email address,password,user login,routing profile name,security_profile_name_1|security_profile_name_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds)";

#[tokio::test(flavor = "multi_thread")]
async fn batch_passwords_from_the_csv_reach_connect_and_nothing_else() {
    let env = Env::with(managed_seed(), "").await;
    let second = "Pw9xQ2mLz7TbK4vN";
    let csv = format!(
        "{MANAGED_HEADER}\nAna,Silva,ana@example.com,{PASSWORD},asilva,Basic Routing Profile,Agent,soft,,no,0\nBen,Okafor,ben@example.com,{second},bokafor,Basic Routing Profile,Agent,soft,,no,0\n"
    );
    let file = env.dir.path().join("managed.csv");
    std::fs::write(&file, csv).unwrap();
    let report = env.dir.path().join("report.json");
    let notices = env.dir.path().join("notices");
    let out = env
        .run(&[
            "batch",
            path_str(&file),
            "--json",
            "-vvv",
            "--report",
            path_str(&report),
            "--notices",
            path_str(&notices),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let users = env.sb.seed_world(|w| {
        w.connect_instances[INSTANCE]
            .users
            .values()
            .map(|u| u.username.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(
        users.len(),
        2,
        "both created: the passwords reached Connect"
    );
    let mut places = vec![
        ("stdout", out.stdout.into_bytes()),
        ("stderr (-vvv)", out.stderr.into_bytes()),
        ("state file, WAL included", env.db_bytes()),
        ("report", std::fs::read(&report).unwrap()),
    ];
    for entry in std::fs::read_dir(&notices).unwrap() {
        let p = entry.unwrap().path();
        places.push(("notice", std::fs::read(&p).unwrap()));
    }
    for (what, bytes) in places {
        for pw in [PASSWORD, second] {
            assert!(
                !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
                "{what} holds a password"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_batch_password_is_reported_redacted_with_its_line() {
    let env = Env::with(managed_seed(), "").await;
    let csv = format!(
        "{MANAGED_HEADER}\nAna,Silva,ana@example.com,weakpass,asilva,Basic Routing Profile,Agent,soft,,no,0\n"
    );
    let file = env.dir.path().join("weak.csv");
    std::fs::write(&file, csv).unwrap();
    let out = env.run(&["batch", path_str(&file)]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("weak.csv:2: column \"password\""),
        "{out:?}"
    );
    assert!(out.stderr.contains("<redacted>"), "{out:?}");
    assert!(!out.stderr.contains("weakpass"), "{out:?}");
    assert_eq!(writes(&env), 0);
}
