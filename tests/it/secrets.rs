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
    let u = env.first_connect_user();
    let (username, email) = (u.username, u.identity_info.email);
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
    let mut env = Env::with(managed_seed(), "").await;
    env.retry_budget(1);
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
    let mut env = Env::with(managed_seed(), "").await;
    env.retry_budget(1);
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

/// Every place a password could end up after a run: stdout, stderr, the state file with its
/// WAL and shared-memory files, the status output, and any extra files (reports, notices).
fn assert_nowhere(what: &str, places: &[(String, Vec<u8>)], passwords: &[&str]) {
    for (place, bytes) in places {
        for pw in passwords {
            assert!(
                !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
                "{what}: {place} holds a password"
            );
        }
    }
}

/// Runs the binary with `stdin` written to its standard input.
async fn run_stdin(env: &Env, args: &[&str], stdin: &str, vars: &[(&str, &str)]) -> Out {
    use tokio::io::AsyncWriteExt;
    let mut c = env.command(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn().expect("connect-onboard runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("finished within 60 s")
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The verbosities: none, -v, -vv, -vvv, and RUST_LOG=trace (which overrides -v).
const VERBOSITIES: [(&str, Option<&str>); 5] = [
    ("", None),
    ("-v", None),
    ("-vv", None),
    ("-vvv", None),
    ("", Some("trace")),
];

/// Where a password can come from for `onboard` and `resume` (there is deliberately no
/// `--password` flag: argv is visible to every user of the host).
#[derive(Clone, Copy, Debug)]
enum Source {
    Env,
    Stdin,
}

async fn with_password(env: &Env, args: &[&str], source: Source, rust_log: Option<&str>) -> Out {
    let mut vars = Vec::new();
    if let Some(l) = rust_log {
        vars.push(("RUST_LOG", l));
    }
    match source {
        Source::Env => {
            vars.push(("CONNECT_ONBOARD_PASSWORD", PASSWORD));
            env.run_with(args, &vars).await
        }
        Source::Stdin => {
            let mut a = args.to_vec();
            a.push("--password-stdin");
            run_stdin(env, &a, &format!("{PASSWORD}\n"), &vars).await
        }
    }
}

fn state_places(env: &Env) -> Vec<(String, Vec<u8>)> {
    let mut places = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", env.state.display());
        if let Ok(b) = std::fs::read(&p) {
            places.push((format!("state file {p}"), b));
        }
    }
    assert!(!places.is_empty(), "a state file exists");
    places
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_from_the_environment_or_stdin_leaks_nowhere_at_any_verbosity() {
    let mut env = Env::with(managed_seed(), "").await;
    env.retry_budget(1);
    let mut i = 0;
    for source in [Source::Env, Source::Stdin] {
        for (flag, rust_log) in VERBOSITIES {
            for json in [false, true] {
                i += 1;
                let (email, user) = (format!("agent{i}@example.com"), format!("agent{i}"));
                let mut args = vec![
                    "onboard",
                    "--email",
                    &email,
                    "--username",
                    &user,
                    "--first-name",
                    "Ana",
                    "--last-name",
                    "Silva",
                ];
                if !flag.is_empty() {
                    args.push(flag);
                }
                if json {
                    args.push("--json");
                }
                let out = with_password(&env, &args, source, rust_log).await;
                let what = format!("{source:?} {flag} RUST_LOG={rust_log:?} json={json}");
                assert_eq!(out.code, 0, "{what}: {out:?}");
                if flag == "-vvv" || rust_log.is_some() {
                    assert!(out.stderr.len() > 1000, "{what}: trace logs present");
                }
                assert_nowhere(
                    &what,
                    &[
                        ("stdout".into(), out.stdout.into_bytes()),
                        ("stderr".into(), out.stderr.into_bytes()),
                    ],
                    &[PASSWORD],
                );
            }
        }
    }
    assert_eq!(
        env.applied("connect:CreateUser"),
        i,
        "each agent created: the password reached Connect every time"
    );

    // The failure paths: a run rolled back after its Connect user was created (errors are
    // journaled and printed), and an interrupted one resumed with the password on stdin.
    env.faults(json!({"rules": [{"op": "identitystore:CreateUser", "action": "error", "code": "AccessDeniedException"}]}));
    let mut fail = args();
    fail[2] = "failed@example.com";
    fail[4] = "failed";
    fail.extend(["-vvv", "--json"]);
    let out = with_password(&env, &fail, Source::Env, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(env.applied("connect:DeleteUser"), 1, "rolled back: {out:?}");
    let mut places = vec![
        ("stdout (failed)".to_string(), out.stdout.into_bytes()),
        ("stderr (failed)".to_string(), out.stderr.into_bytes()),
    ];
    env.faults(json!({"rules": [{"op": "connect:CreateUser", "action": "throttle"}]}));
    let out = with_password(&env, &args(), Source::Stdin, Some("trace")).await;
    assert_eq!(out.code, 1, "interrupted: {out:?}");
    places.push(("stderr (interrupted)".into(), out.stderr.into_bytes()));
    env.faults(json!({}));
    let out = with_password(&env, &["resume", "-vvv"], Source::Stdin, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    places.push(("stdout (resume)".into(), out.stdout.into_bytes()));
    places.push(("stderr (resume)".into(), out.stderr.into_bytes()));
    for args in [vec!["status", "--json"], vec!["status", "-vvv"]] {
        let out = env.run(&args).await;
        assert_eq!(out.code, 0, "{out:?}");
        places.push((format!("{args:?}"), out.stdout.into_bytes()));
        places.push((format!("{args:?} stderr"), out.stderr.into_bytes()));
    }
    places.extend(state_places(&env));
    assert_nowhere("after every run", &places, &[PASSWORD]);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_passwords_leak_into_no_report_notice_log_or_state_at_any_verbosity() {
    let env = Env::with(managed_seed(), "").await;
    let mut passwords: Vec<String> = Vec::new();
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (flag, rust_log)) in VERBOSITIES.iter().enumerate() {
        // Two new agents per run, and one that fails (its Connect user exists with another
        // email: a conflict, reported with its error).
        let pw = |k: usize| format!("Pw{i}x{k}QmLz7TbK4vN");
        let (a, b, c) = (pw(0), pw(1), pw(2));
        passwords.extend([a.clone(), b.clone(), c.clone()]);
        let csv = format!(
            "{MANAGED_HEADER}\n\
             Ana,Silva,ana{i}@example.com,{a},ana{i},Basic Routing Profile,Agent,soft,,no,0\n\
             Ben,Okafor,ben{i}@example.com,{b},ben{i},Basic Routing Profile,Agent,soft,,no,0\n\
             Cy,Lee,cy{i}@example.com,{c},ana{i},Basic Routing Profile,Agent,soft,,no,0\n"
        );
        let file = env.dir.path().join(format!("managed{i}.csv"));
        std::fs::write(&file, csv).unwrap();
        let ext = if i % 2 == 0 { "csv" } else { "json" };
        let report = env.dir.path().join(format!("report{i}.{ext}"));
        let notices = env.dir.path().join(format!("notices{i}"));
        let mut args = vec![
            "batch",
            path_str(&file),
            "--report",
            path_str(&report),
            "--notices",
            path_str(&notices),
        ];
        if !flag.is_empty() {
            args.push(flag);
        }
        if i % 2 == 1 {
            args.push("--json");
        }
        let vars: Vec<(&str, &str)> = rust_log.iter().map(|l| ("RUST_LOG", *l)).collect();
        let out = env.run_with(&args, &vars).await;
        assert_eq!(out.code, 1, "cy is a conflict: {out:?}");
        let report_bytes = std::fs::read(&report).unwrap();
        let text = String::from_utf8_lossy(&report_bytes);
        assert!(
            text.contains(&format!("ana{i}@example.com"))
                && text.contains(&format!("cy{i}@example.com")),
            "the report lists every agent: {text}"
        );
        places.push((format!("report {}", report.display()), report_bytes));
        places.push((
            format!("stdout {flag} {rust_log:?}"),
            out.stdout.into_bytes(),
        ));
        places.push((
            format!("stderr {flag} {rust_log:?}"),
            out.stderr.into_bytes(),
        ));
        for entry in std::fs::read_dir(&notices).unwrap() {
            let p = entry.unwrap().path();
            places.push((
                format!("notice {}", p.display()),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    assert_eq!(
        env.applied("connect:CreateUser") as usize,
        2 * VERBOSITIES.len(),
        "the passwords reached Connect"
    );
    let status = env.run(&["status", "--json"]).await;
    places.push(("status --json".into(), status.stdout.into_bytes()));
    places.extend(state_places(&env));
    let pws: Vec<&str> = passwords.iter().map(String::as_str).collect();
    assert_nowhere("batch", &places, &pws);
}

/// `apply` of a roster with a password column (a new agent on a CONNECT_MANAGED instance):
/// the password reaches Connect, and not the plan, the saved plan, the report, the output or
/// the state file.
#[tokio::test(flavor = "multi_thread")]
async fn apply_sends_a_rows_password_to_connect_and_nowhere_else() {
    let env = Env::with(managed_seed(), "").await;
    let roster = env.dir.path().join("roster.csv");
    std::fs::write(
        &roster,
        format!("email,username,first_name,last_name,password\nana.silva@example.com,asilva,Ana,Silva,{PASSWORD}\n"),
    )
    .unwrap();
    let roster = path_str(&roster);
    let plan = env.run(&["apply", roster, "--dry-run", "--json"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let report = env.dir.path().join("apply.csv");
    let out = env
        .run(&[
            "apply",
            roster,
            "--json",
            "-vvv",
            "--report",
            path_str(&report),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        env.first_connect_user().username,
        "asilva",
        "created with it"
    );
    for (what, text) in [
        ("dry-run plan", format!("{}{}", plan.stdout, plan.stderr)),
        (
            "run output and logs",
            format!("{}{}", out.stdout, out.stderr),
        ),
        ("report", std::fs::read_to_string(&report).unwrap()),
    ] {
        assert!(!text.contains(PASSWORD), "the password in the {what}");
    }
    assert!(
        !String::from_utf8_lossy(&env.db_bytes()).contains(PASSWORD),
        "the password in the state file"
    );
}
