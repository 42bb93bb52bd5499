//! Test harness: an in-process sandbox per test, a temp dir with a config and a fast copy of
//! the built-in workflow, and the real `connect-onboard` binary run against it through the
//! standard `AWS_ENDPOINT_URL*` variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use connect_onboard_sandbox::{FaultConfig, Sandbox, SandboxHandle, SandboxOptions, Seed};
use serde_json::Value;

pub const INSTANCE: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
pub const STORE: &str = "d-1234567890";
pub const BIN: &str = env!("CARGO_BIN_EXE_connect-onboard");

/// `onboard` for the sample agent most tests use.
pub const ONBOARD_ANA: [&str; 7] = [
    "onboard",
    "--email",
    "ana.silva@example.com",
    "--first-name",
    "Ana",
    "--last-name",
    "Silva",
];

/// `onboard` for an agent named Ana Silva whose email is `email`.
pub fn onboard_args(email: &str) -> Vec<&str> {
    vec![
        "onboard",
        "--email",
        email,
        "--first-name",
        "Ana",
        "--last-name",
        "Silva",
    ]
}

/// Polls `cond` every 20 ms for up to 30 s.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The built-in workflow with millisecond backoffs and a short settle window, so failure
/// tests finish quickly. Same steps, same actions.
pub fn fast_workflow() -> String {
    connect_onboard::app::BUILTIN_WORKFLOW
        .replace(
            "retry = { max_attempts = 6, initial_backoff_ms = 500, max_backoff_ms = 20000, multiplier = 2.0 }",
            "retry = { max_attempts = 4, initial_backoff_ms = 5, max_backoff_ms = 40, multiplier = 2.0 }",
        )
        .replace("settle_ms = 60000", "settle_ms = 300")
        .replace("settle_ms = 30000", "settle_ms = 300")
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub struct Env {
    pub sb: SandboxHandle,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state: PathBuf,
    pub workflow: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

impl Env {
    pub async fn new() -> Env {
        Env::with(Seed::default(), "").await
    }

    /// A sandbox with `seed`, and a config for its default instance plus `extra_toml`
    /// appended (e.g. an `[identity_center]` table).
    pub async fn with(seed: Seed, extra_toml: &str) -> Env {
        let sb = Sandbox::start(SandboxOptions {
            port: 0,
            seed,
            faults: FaultConfig::default(),
        })
        .await
        .expect("sandbox starts");
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state/state.db");
        let config = dir.path().join("connect-onboard.toml");
        std::fs::write(
            &config,
            format!(
                "[connect]\ninstance_id = \"{INSTANCE}\"\nregion = \"us-east-1\"\n{extra_toml}\n[state]\npath = \"{}\"\n",
                state.display()
            ),
        )
        .unwrap();
        let workflow = dir.path().join("workflow.toml");
        std::fs::write(&workflow, fast_workflow()).unwrap();
        Env {
            sb,
            dir,
            config,
            state,
            workflow,
            extra_env: Vec::new(),
        }
    }

    /// Each AWS call retries throttling (and 5xx on reads) for at most `secs` seconds, for
    /// tests that throttle an operation for good (the default budget is minutes).
    pub fn retry_budget(&mut self, secs: u64) {
        self.extra_env
            .push(("CONNECT_ONBOARD_RETRY_BUDGET_S".into(), secs.to_string()));
    }

    pub fn faults(&self, rules: Value) {
        let f: FaultConfig = serde_json::from_value(rules).expect("fault config");
        self.sb.set_faults(f);
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(BIN);
        // The config is `connect-onboard.toml` in the working directory, the default: it is
        // named only when it lives elsewhere (a named `--config` must exist).
        let default = self.dir.path().join("connect-onboard.toml");
        if !args.contains(&"--config") && self.config != default {
            c.args(["--config", self.config.to_str().unwrap()]);
        }
        c.args(["--workflow", self.workflow.to_str().unwrap()]);
        c.args(args);
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("CONNECT_ONBOARD_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        for (k, v) in self.sb.env_lines() {
            c.env(k, v);
        }
        let none = self.dir.path().join("empty-aws-config");
        let _ = std::fs::write(&none, "");
        c.env("HOME", self.dir.path())
            .env("AWS_CONFIG_FILE", &none)
            .env("AWS_SHARED_CREDENTIALS_FILE", &none)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.kill_on_drop(true);
        c
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[]).await
    }

    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.run_within(Duration::from_secs(60), args, env).await
    }

    /// Runs the binary, failing the test if it takes longer than `limit`.
    pub async fn run_within(&self, limit: Duration, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = tokio::time::timeout(limit, c.output())
            .await
            .unwrap_or_else(|_| panic!("connect-onboard {args:?} finished within {limit:?}"))
            .expect("connect-onboard runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub async fn onboard(&self, email: &str, extra: &[&str]) -> Out {
        let mut args = onboard_args(email);
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    pub async fn status_json(&self) -> Value {
        let out = self.run(&["status", "--json"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        out.json()
    }

    pub fn calls(&self, op: &str) -> u64 {
        self.sb.calls().get(op).map(|c| c.calls).unwrap_or(0)
    }

    pub fn applied(&self, op: &str) -> u64 {
        self.sb.calls().get(op).map(|c| c.applied).unwrap_or(0)
    }

    /// What exists in the sandbox, independently of connect-onboard's own view.
    pub fn world(&self) -> WorldView {
        self.sb.seed_world(|w| {
            let inst = &w.connect_instances[INSTANCE];
            let store = &w.identity_stores[STORE];
            WorldView {
                connect_users: inst.users.values().map(|u| u.username.clone()).collect(),
                identity_users: store
                    .users
                    .values()
                    .map(|u| {
                        (
                            u.user_name.clone(),
                            u.email_values().map(str::to_string).collect(),
                        )
                    })
                    .collect(),
                memberships: store
                    .memberships
                    .values()
                    .map(|m| {
                        let user = store
                            .users
                            .get(&m.user_id)
                            .map(|u| u.user_name.clone())
                            .unwrap_or_default();
                        let group = store
                            .groups
                            .get(&m.group_id)
                            .map(|g| g.display_name.clone())
                            .unwrap_or_default();
                        (group, user)
                    })
                    .collect(),
                groups: store
                    .groups
                    .values()
                    .map(|g| g.display_name.clone())
                    .collect(),
                assignments: w
                    .assignments
                    .iter()
                    .map(|a| {
                        let name = if a.principal_type == "USER" {
                            store
                                .users
                                .get(&a.principal_id)
                                .map(|u| u.user_name.clone())
                        } else {
                            store
                                .groups
                                .get(&a.principal_id)
                                .map(|g| g.display_name.clone())
                        };
                        (
                            a.principal_type.clone(),
                            name.unwrap_or_else(|| a.principal_id.clone()),
                        )
                    })
                    .collect(),
            }
        })
    }

    /// The first Connect user of the instance, as the sandbox holds it (for a test that
    /// made one).
    pub fn first_connect_user(&self) -> connect_onboard_sandbox::world::ConnectUser {
        self.sb.seed_world(|w| {
            (w.connect_instances[INSTANCE].users.values().next())
                .expect("a Connect user")
                .clone()
        })
    }

    pub fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", self.state.display()));
            if let Ok(b) = std::fs::read(&p) {
                all.extend(b);
            }
        }
        all
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct WorldView {
    pub connect_users: Vec<String>,
    pub identity_users: BTreeMap<String, Vec<String>>,
    pub memberships: Vec<(String, String)>,
    pub groups: Vec<String>,
    pub assignments: Vec<(String, String)>,
}

impl WorldView {
    /// Exactly one of each resource for `email`, in group mode.
    pub fn assert_onboarded_once(&self, email: &str) {
        assert_eq!(
            self.connect_users.iter().filter(|u| *u == email).count(),
            1,
            "one Connect user: {self:#?}"
        );
        assert_eq!(
            self.identity_users.get(email),
            Some(&vec![email.to_string()]),
            "one Identity Store user: {self:#?}"
        );
        assert_eq!(
            self.memberships
                .iter()
                .filter(|(g, u)| g == "ConnectAgents" && u == email)
                .count(),
            1,
            "one membership: {self:#?}"
        );
        assert_eq!(
            self.assignments
                .iter()
                .filter(|a| a.0 == "GROUP" && a.1 == "ConnectAgents")
                .count(),
            1,
            "group assigned once: {self:#?}"
        );
    }

    /// Nothing of `email` is left.
    pub fn assert_gone(&self, email: &str) {
        assert!(!self.connect_users.iter().any(|u| u == email), "{self:#?}");
        assert!(!self.identity_users.contains_key(email), "{self:#?}");
        assert!(
            !self.memberships.iter().any(|(_, u)| u == email),
            "{self:#?}"
        );
    }
}

/// Total write calls (Create*/Delete*/Update*) the sandbox received.
pub fn writes(env: &Env) -> u64 {
    env.sb.write_calls()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The state of the first agent of the first run in a status JSON.
pub fn agent_state(status: &Value) -> String {
    status["runs"][0]["agents"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The ids of the first run in a status JSON.
pub fn first_run_id(status: &Value) -> String {
    status["runs"][0]["run_id"]
        .as_str()
        .expect("a run")
        .to_string()
}

pub fn step<'a>(status: &'a Value, agent: usize, id: &str) -> &'a Value {
    find(&status["runs"][0]["agents"][agent], "steps", "id", id)
}

/// The first element of the array `j[list]` whose `key` is `value`.
pub fn find<'a>(j: &'a Value, list: &str, key: &str, value: &str) -> &'a Value {
    j[list]
        .as_array()
        .unwrap_or_else(|| panic!("no array {list} in {j:#}"))
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no {list} with {key} {value:?} in {j:#}"))
}

impl Env {
    /// Starts the binary without waiting; its output is discarded, so a long run never
    /// blocks on a full pipe (for tests that kill processes or race them).
    pub fn spawn_quiet(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c.spawn().expect("connect-onboard starts")
    }

    /// Every resource's id in the sandbox, keyed the way agents are.
    pub fn ids(&self) -> WorldIds {
        self.sb.seed_world(|w| {
            let inst = &w.connect_instances[INSTANCE];
            let store = &w.identity_stores[STORE];
            let mut ids = WorldIds {
                group_id: store
                    .groups
                    .values()
                    .find(|g| g.display_name == "ConnectAgents")
                    .map(|g| g.group_id.clone())
                    .unwrap_or_default(),
                ..WorldIds::default()
            };
            for u in inst.users.values() {
                ids.connect
                    .entry(u.username.to_lowercase())
                    .or_default()
                    .push(u.id.clone());
            }
            for u in store.users.values() {
                ids.identity
                    .entry(u.user_name.to_lowercase())
                    .or_default()
                    .push(u.user_id.clone());
            }
            for m in store.memberships.values() {
                ids.memberships.push((
                    m.group_id.clone(),
                    m.user_id.clone(),
                    m.membership_id.clone(),
                ));
            }
            for a in &w.assignments {
                ids.assignments
                    .push((a.principal_type.clone(), a.principal_id.clone()));
            }
            ids
        })
    }
}

/// Every resource's id in the sandbox: Connect users and Identity Store users by lower-cased
/// name (a name with two ids is a duplicate), memberships (group, user, membership id),
/// assignments (principal type, principal id) and the agents' group's id.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WorldIds {
    pub connect: BTreeMap<String, Vec<String>>,
    pub identity: BTreeMap<String, Vec<String>>,
    pub memberships: Vec<(String, String, String)>,
    pub assignments: Vec<(String, String)>,
    pub group_id: String,
}

/// Kills a child with SIGKILL and reaps it; false if it had already exited.
pub async fn sigkill(child: &mut tokio::process::Child) -> bool {
    let alive = matches!(child.try_wait(), Ok(None));
    if alive {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    let _ = child.wait().await;
    alive
}

/// A native agent file (`email,first_name,last_name`) in the test's directory.
pub fn agents_file(env: &Env, name: &str, emails: &[String]) -> String {
    let mut text = String::from("email,first_name,last_name\n");
    for (i, e) in emails.iter().enumerate() {
        text.push_str(&format!("{e},Agent,Number{i}\n"));
    }
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    path_str(&p).to_string()
}

/// Runs `connect-onboard args` on a terminal (a pty from util-linux `script`), typing
/// `typed`; returns the exit code and everything the terminal showed.
pub async fn on_a_terminal(env: &Env, args: &[&str], typed: &str) -> (i32, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let base = env.command(args);
    let base = base.as_std();
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_str().unwrap().replace('\'', "'\\''"));
    let mut line = quote(base.get_program());
    for a in base.get_args() {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut c = tokio::process::Command::new("script");
    c.args(["-qec", &line, "/dev/null"]);
    c.env_clear();
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.current_dir(env.dir.path());
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn().expect("script(1) runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    stdin.write_all(typed.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("finished within 60 s")
        .unwrap();
    drop(stdin);
    (status.code().unwrap_or(-1), reader.await.unwrap())
}
