//! State-file faults: a state file that is corrupt, truncated, from a newer build,
//! unwritable or on a full disk is refused with an error naming the file and the problem,
//! exit 2, before any AWS write; a disk that fills up mid-batch stops the batch with every
//! agent resumable (and `resume` completes each exactly once); a state file from an older
//! schema is migrated and then resumed.

use std::path::Path;
use std::time::Duration;

use connect_onboard_sandbox::Seed;
use serde_json::json;

use crate::harness::*;

/// Fast enough pacing that a batch of 60 takes well under a second.
const FAST: &str = "[rate_limits]\n\"connect:*\" = { rate = 500.0, burst = 100 }\n\"identity_center\" = { rate = 500.0, burst = 100 }\n";

fn agents_csv(env: &Env, n: usize) -> String {
    let mut text = String::from("email,first_name,last_name\n");
    for i in 0..n {
        text.push_str(&format!("agent{i}@example.com,Agent,Number{i}\n"));
    }
    let p = env.dir.path().join("agents.csv");
    std::fs::write(&p, text).unwrap();
    path_str(&p).to_string()
}

/// A state file with one agent done in it, all in the main file (no WAL).
async fn state_with_one_done(env: &Env) {
    let out = env.onboard("first@example.com", &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // Everything into the main file, and no WAL: a rollback-journal file (the binary turns
    // WAL back on when it opens it).
    let c = rusqlite::Connection::open(&env.state).unwrap();
    c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(c);
    assert!(
        !Path::new(&format!("{}-wal", env.state.display())).exists(),
        "the WAL was checkpointed on close"
    );
}

/// `onboard` and `batch` on a bad state file: exit 2, the file and `problem` named on
/// stderr, and not one write call at the sandbox.
async fn refused(env: &Env, problem: &str) {
    let before = writes(env);
    let file = agents_csv(env, 3);
    for args in [
        vec![
            "onboard",
            "--email",
            "new@example.com",
            "--first-name",
            "N",
            "--last-name",
            "W",
        ],
        vec!["batch", file.as_str()],
    ] {
        let out = env.run(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("state file {}", env.state.display())),
            "{args:?}: the state file is named: {out:?}"
        );
        assert!(
            out.stderr.contains(problem),
            "{args:?}: {problem:?} in {out:?}"
        );
        assert_eq!(
            writes(env),
            before,
            "{args:?}: no AWS write: {:?}",
            env.sb.calls()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_or_truncated_state_file_is_refused_before_any_write() {
    // Garbage where SQLite's header is.
    let env = Env::new().await;
    state_with_one_done(&env).await;
    let mut bytes = std::fs::read(&env.state).unwrap();
    let len = bytes.len();
    bytes[..100].copy_from_slice(&[0x5a; 100]);
    std::fs::write(&env.state, &bytes).unwrap();
    refused(&env, "not a connect-onboard state file, or corrupt").await;
    assert_eq!(
        std::fs::metadata(&env.state).unwrap().len() as usize,
        len,
        "the file is left as it was"
    );

    // Cut short: a copy interrupted halfway.
    let env = Env::new().await;
    state_with_one_done(&env).await;
    let half = std::fs::metadata(&env.state).unwrap().len() / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&env.state)
        .unwrap()
        .set_len(half)
        .unwrap();
    refused(&env, "corrupt").await;

    // Not a database at all.
    let env = Env::new().await;
    std::fs::create_dir_all(env.state.parent().unwrap()).unwrap();
    std::fs::write(&env.state, "email,first_name\nana@example.com,Ana\n").unwrap();
    refused(&env, "not a connect-onboard state file").await;
    let status = env.run(&["status"]).await;
    assert_eq!(status.code, 2, "status too: {status:?}");
    assert!(status.stderr.contains("not a connect-onboard state file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_from_a_newer_build_is_refused_and_left_untouched() {
    let env = Env::new().await;
    state_with_one_done(&env).await;
    {
        let c = rusqlite::Connection::open(&env.state).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&env.state).unwrap();
    refused(
        &env,
        "written by a newer connect-onboard (schema version 99",
    )
    .await;
    for args in [vec!["status"], vec!["resume"]] {
        let out = env.run(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains("schema version 99"), "{out:?}");
    }
    assert!(
        std::fs::read(&env.state).unwrap() == before,
        "the file was written to (not even its journal mode may change)"
    );
}

/// Makes a path unwritable even for root, and undoes it on drop: `chattr +i` as root
/// (chmod does not stop root), else chmod. `None` (said loudly) where root runs on a
/// filesystem without attributes (overlayfs, tmpfs): that case is then not exercised.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn new(p: &Path) -> Option<ReadOnly> {
        if unsafe { libc::geteuid() } == 0 {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(p)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "SKIPPED: chattr +i {} failed (no file attributes here); as root nothing else makes it unwritable",
                    p.display()
                );
                return None;
            }
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = if p.is_dir() { 0o500 } else { 0o400 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Some(ReadOnly(p.to_path_buf()))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if unsafe { libc::geteuid() } == 0 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_state_file_is_refused_before_any_write() {
    // An existing state file that cannot be written.
    let env = Env::new().await;
    state_with_one_done(&env).await;
    if let Some(_ro) = ReadOnly::new(&env.state) {
        refused(&env, "cannot be written").await;
    }

    // A new state file in a directory that cannot be written.
    let env = Env::new().await;
    let dir = env.state.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    if let Some(_ro) = ReadOnly::new(dir) {
        refused(&env, "cannot be created").await;
        assert!(!env.state.exists());
    }

    // A state path under a regular file.
    let env = Env::new().await;
    std::fs::write(env.state.parent().unwrap(), "a file, not a directory").unwrap();
    refused(&env, "cannot create its directory").await;
}

/// Runs the binary with a file-size limit (`ulimit -f`, in bytes) set in the child.
async fn run_with_fsize(env: &Env, args: &[&str], limit: u64) -> Out {
    let mut c = env.command(args);
    // SAFETY: only an async-signal-safe call between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("finished within 60 s")
        .expect("runs");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        None,
        "not killed by a signal (SIGXFSZ is ignored, the write fails with EFBIG)"
    );
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_at_the_start_is_refused_before_any_write() {
    let env = Env::new().await;
    let out = run_with_fsize(
        &env,
        &[
            "onboard",
            "--email",
            "a@example.com",
            "--first-name",
            "A",
            "--last-name",
            "B",
        ],
        1024,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("state file {}", env.state.display()))
            && out.stderr.contains("disk full"),
        "{out:?}"
    );
    assert_eq!(writes(&env), 0, "{:?}", env.sb.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_that_fills_up_mid_batch_stops_it_and_resume_completes_every_agent_once() {
    const N: usize = 60;
    let env = Env::with(Seed::default(), FAST).await;
    let file = agents_csv(&env, N);
    // 1.5 MB: enough for the run and its first agents' checkpoints, not for all of them.
    let report = env.dir.path().join("report.json");
    let out = run_with_fsize(
        &env,
        &[
            "batch",
            &file,
            "--concurrency",
            "8",
            "--report",
            path_str(&report),
        ],
        1_500_000,
    )
    .await;
    assert_eq!(out.code, 1, "stopped, incomplete: {out:?}");
    assert!(
        out.stderr
            .contains(&format!("state file {}", env.state.display()))
            && out.stderr.contains("disk full")
            && out.stderr.contains("the run stopped")
            && out.stderr.contains("connect-onboard resume"),
        "{out:?}"
    );
    // The limit bit mid-batch: some agents finished, and the batch stopped: the agents
    // after the failure were never started (no call of theirs reached the sandbox).
    let status = env.status_json().await;
    let agents = status["runs"][0]["agents"].as_array().unwrap();
    assert_eq!(agents.len(), N, "every row was inserted before the run");
    let done = agents.iter().filter(|a| a["state"] == "done").count();
    assert!((1..N).contains(&done), "{done} done: {status:#}");
    let sent = env.calls("connect:CreateUser") as usize;
    assert!(
        sent < N,
        "the batch stopped: {sent} CreateUser sent for {N} agents"
    );
    let pending = agents.iter().filter(|a| a["state"] == "pending").count();
    assert!(pending > 0, "agents never started: {status:#}");
    // Only the agents in flight when the state file failed met the failure; the others
    // were not started (a report row per agent, streamed as each one ended).
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), N, "every agent reported");
    let failed = rows.iter().filter(|r| !r["error"].is_null()).count();
    assert!(
        (1..=8).contains(&failed),
        "{failed} agents met the failure; at most the 8 in flight: {rows:#?}"
    );

    // The limit lifted: resume finishes every agent, each resource exactly once.
    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let status = env.status_json().await;
    assert!(
        status["runs"][0]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "done"),
        "{status:#}"
    );
    let world = env.world();
    for i in 0..N {
        world.assert_onboarded_once(&format!("agent{i}@example.com"));
    }
    assert_eq!(world.connect_users.len(), N, "nothing else: {world:#?}");
    assert_eq!(world.identity_users.len(), N);
    assert_eq!(env.applied("connect:CreateUser") as usize, N);
    assert_eq!(env.applied("identitystore:CreateUser") as usize, N);
    assert_eq!(
        env.applied("identitystore:CreateGroupMembership") as usize,
        N
    );
}

/// The schema of the first release (migration 1 only): the latest one without
/// `steps.last_write_ms` and the `roles` table.
fn downgrade_to_v1(state: &Path) {
    let c = rusqlite::Connection::open(state).unwrap();
    c.execute_batch(
        "ALTER TABLE steps DROP COLUMN last_write_ms; DROP TABLE roles; PRAGMA user_version = 1;",
    )
    .unwrap();
}

fn user_version(state: &Path) -> i64 {
    let c = rusqlite::Connection::open(state).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_from_an_older_schema_is_migrated_and_resumed() {
    let mut env = Env::new().await;
    env.retry_budget(1);
    let current = {
        state_with_one_done(&env).await;
        user_version(&env.state)
    };
    assert!(current >= 2);
    // An agent left interrupted after its Connect user (Identity Store throttled).
    env.faults(json!({"rules": [{"op": "identitystore:CreateUser", "action": "throttle"}]}));
    let out = env.onboard("ana.silva@example.com", &[]).await;
    assert_eq!(out.code, 1, "interrupted: {out:?}");
    env.faults(json!({}));
    downgrade_to_v1(&env.state);
    assert_eq!(user_version(&env.state), 1);

    let out = env.run(&["resume"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(user_version(&env.state), current, "migrated");
    let world = env.world();
    world.assert_onboarded_once("ana.silva@example.com");
    world.assert_onboarded_once("first@example.com");
    assert_eq!(env.applied("connect:CreateUser"), 2, "not created again");
    let st = env.status_json().await;
    assert!(
        st["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["agents"][0]["state"] == "done"),
        "{st:#}"
    );
}
