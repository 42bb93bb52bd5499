//! The Identity Store steps against an independent implementation: moto's server
//! (`pip install 'moto[server]'`), with Connect and SSO Admin still on the sandbox.
//! In CI a missing moto fails the test; elsewhere it is skipped loudly.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_identitystore::types::{AlternateIdentifier, UniqueAttribute};

use crate::harness::*;

const EMAIL: &str = "ana.silva@example.com";

pub struct Moto {
    child: Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_moto() -> Option<Moto> {
    // Port 0: moto binds a free port itself and names it (a port picked here and bound
    // later could be taken by another test's moto meanwhile, and the two would share).
    let spawned = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok() {
                panic!("moto_server is required in CI (pip install 'moto[server]'): {e}");
            }
            eprintln!("\n*** SKIPPING moto cross-check: moto_server not found ({e}); pip install 'moto[server]' ***\n");
            return None;
        }
    };
    check_moto_version();
    let port = bound_port(&mut child);
    Some(Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

/// The port a `moto_server -p 0` bound, from its "Running on" line; its later log lines
/// (one per request) are read and dropped so it never blocks on a full pipe.
pub fn bound_port(child: &mut Child) -> u16 {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("moto's stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let port =
                (line.split("http://127.0.0.1:").nth(1)).and_then(|p| p.trim().parse::<u16>().ok());
            if let (Some(p), Some(t)) = (port, &tx) {
                let _ = t.send(p);
                tx = None;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("moto_server did not say which port it bound")
}

/// The oldest moto these cross-checks were written against (`.ci/run` pins it): older ones
/// lack IsMemberInGroups and GetGroupMembershipId and answer them 500, which the tool
/// retries (as it must for a real 500) for minutes per call instead of failing fast.
const MOTO_MIN: (u32, u32, u32) = (5, 2, 5);

fn check_moto_version() {
    let out = Command::new("python3")
        .args(["-c", "import moto; print(moto.__version__)"])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let v: Vec<u32> = (text.split('.'))
        .map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let found = (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
        v.get(2).copied().unwrap_or(0),
    );
    assert!(
        found >= MOTO_MIN,
        "moto {text:?} is older than {MOTO_MIN:?}: pip install 'moto[server]==5.2.5' (as .ci/run does)"
    );
}

pub async fn moto_client(url: &str) -> aws_sdk_identitystore::Client {
    let conf = aws_sdk_identitystore::Config::builder()
        .behavior_version(aws_sdk_identitystore::config::BehaviorVersion::latest())
        .region(aws_sdk_identitystore::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_identitystore::config::Credentials::new(
            "k", "s", None, None, "test",
        ))
        .build();
    aws_sdk_identitystore::Client::from_conf(conf)
}

async fn moto_user_id(c: &aws_sdk_identitystore::Client, user_name: &str) -> Option<String> {
    c.get_user_id()
        .identity_store_id(STORE)
        .alternate_identifier(AlternateIdentifier::UniqueAttribute(
            UniqueAttribute::builder()
                .attribute_path("userName")
                .attribute_value(aws_smithy_types::Document::String(user_name.into()))
                .build()
                .unwrap(),
        ))
        .send()
        .await
        .ok()
        .map(|o| o.user_id().to_string())
}

pub fn on_moto(env: &mut Env, moto: &Moto) {
    env.extra_env
        .push(("AWS_ENDPOINT_URL_IDENTITYSTORE".into(), moto.url.clone()));
}

/// SSO Admin (on the sandbox) checks that an assigned principal exists in its identity
/// store, so the agents' group is created in moto first and mirrored, same id, into the
/// sandbox's store: the two emulators then describe one identity store.
async fn env_mirroring_moto_group(moto: &Moto) -> Env {
    let c = moto_client(&moto.url).await;
    let g = c
        .create_group()
        .identity_store_id(STORE)
        .display_name("ConnectAgents")
        .send()
        .await
        .expect("group created in moto");
    let mut seed = connect_onboard_sandbox::Seed::default();
    seed.identity_groups[0].id = Some(g.group_id().to_string());
    let mut env = Env::with(seed, "").await;
    on_moto(&mut env, moto);
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_store_steps_against_moto_onboard_and_roll_back() {
    let Some(moto) = start_moto() else { return };
    let env = env_mirroring_moto_group(&moto).await;
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        env.calls("identitystore:CreateUser"),
        0,
        "Identity Store calls went to moto, not the sandbox"
    );
    let c = moto_client(&moto.url).await;
    let id = moto_user_id(&c, EMAIL).await.expect("user exists in moto");
    let u = c
        .describe_user()
        .identity_store_id(STORE)
        .user_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(u.emails().len(), 1);
    assert!(u.emails()[0].primary());
    assert_eq!(u.emails()[0].value(), Some(EMAIL));
    let groups = c
        .list_groups()
        .identity_store_id(STORE)
        .send()
        .await
        .unwrap();
    let g = groups
        .groups()
        .iter()
        .find(|g| g.display_name() == Some("ConnectAgents"))
        .expect("group in moto");
    let m = c
        .get_group_membership_id()
        .identity_store_id(STORE)
        .group_id(g.group_id())
        .member_id(aws_sdk_identitystore::types::MemberId::UserId(id.clone()))
        .send()
        .await
        .expect("membership in moto");
    assert!(!m.membership_id().is_empty());

    // Running again adopts from moto: no second user (moto itself would accept a second
    // membership, so only our lookup prevents one).
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let members = c
        .list_group_memberships()
        .identity_store_id(STORE)
        .group_id(g.group_id())
        .send()
        .await
        .unwrap();
    assert_eq!(members.group_memberships().len(), 1);

    let st = env.status_json().await;
    let out = env.run(&["rollback", &first_run_id(&st), "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(moto_user_id(&c, EMAIL).await, None, "rolled back in moto");
    let members = c
        .list_group_memberships()
        .identity_store_id(STORE)
        .group_id(g.group_id())
        .send()
        .await
        .unwrap();
    assert!(
        members.group_memberships().is_empty(),
        "membership deleted explicitly (moto keeps it otherwise)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_write_and_checkpoint_against_moto_then_resume() {
    let Some(moto) = start_moto() else { return };
    let env = env_mirroring_moto_group(&moto).await;
    let out = env
        .run_with(
            &ONBOARD_ANA,
            &[("CONNECT_ONBOARD_CRASH_AT", "after_write:identity_user")],
        )
        .await;
    assert_ne!(out.code, 0);
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let c = moto_client(&moto.url).await;
    let users = c
        .list_users()
        .identity_store_id(STORE)
        .send()
        .await
        .unwrap();
    assert_eq!(
        users
            .users()
            .iter()
            .filter(|u| u.user_name() == Some(EMAIL))
            .count(),
        1
    );
    let st = env.status_json().await;
    assert_eq!(step(&st, 0, "identity_user")["owned"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_user_in_moto_stops_with_zero_writes() {
    let Some(moto) = start_moto() else { return };
    let c = moto_client(&moto.url).await;
    c.create_user()
        .identity_store_id(STORE)
        .user_name(EMAIL)
        .display_name("Other")
        .name(
            aws_sdk_identitystore::types::Name::builder()
                .given_name("O")
                .family_name("T")
                .build(),
        )
        .emails(
            aws_sdk_identitystore::types::Email::builder()
                .value("other@example.com")
                .primary(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut env = Env::new().await;
    on_moto(&mut env, &moto);
    let out = env.onboard(EMAIL, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("other@example.com"), "{out:?}");
    assert_eq!(writes(&env), 0, "nothing written to the sandbox");
}

/// A DynamoDB client on moto (static test credentials).
pub async fn dynamodb_client(url: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "k", "s", None, None, "test",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}
