//! One writer per agent: a second process is refused and told who holds the agent.

use serde_json::json;

use crate::harness::*;

const EMAIL: &str = "ana.silva@example.com";

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_is_refused_while_the_first_works() {
    let env = Env::new().await;
    // The first process blocks inside its Identity Store write.
    env.faults(
        json!({"rules": [{"op": "identitystore:CreateUser", "action": "hang", "times": 1}]}),
    );
    let mut first = env.command(&ONBOARD_ANA).spawn().unwrap();
    wait_for("the first process's write", || {
        env.calls("identitystore:CreateUser") == 1
    })
    .await;
    let pid = first.id().unwrap();
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("pid {pid}")),
        "names the holder: {out:?}"
    );
    assert_eq!(
        env.calls("identitystore:CreateUser"),
        1,
        "the second process wrote nothing"
    );
    first.kill().await.unwrap();
    let _ = first.wait().await;
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once(EMAIL);
}
