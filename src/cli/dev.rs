//! Developer commands: `sandbox` (the emulator on a port) and `demo` (the main job end to
//! end against the in-process sandbox, no AWS account).

use std::io::Write;
use std::path::PathBuf;

use crate::agent::AgentInput;
use crate::app::{self, Context, OnboardReport, RunSettings};
use crate::config;
use crate::engine::{OnFailure, Secrets};

use super::args::GlobalArgs;
use super::exit;
use super::globals;
use super::output::{print_runs, progress_printer};

pub(super) async fn sandbox(
    port: u16,
    seed: Option<PathBuf>,
    faults: Option<PathBuf>,
    json: bool,
) -> Result<u8, app::Error> {
    use connect_onboard_sandbox as sb;
    let seed = match seed {
        Some(p) => sb::Seed::from_path(&p)
            .map_err(|e| app::Error::Input(format!("seed {}: {e}", p.display())))?,
        None => sb::Seed::default(),
    };
    let faults = match faults {
        Some(p) => sb::FaultConfig::from_path(&p)
            .map_err(|e| app::Error::Input(format!("faults {}: {e}", p.display())))?,
        None => sb::FaultConfig::default(),
    };
    let handle = sb::Sandbox::start(sb::SandboxOptions { port, seed, faults })
        .await
        .map_err(|e| {
            app::Error::Input(format!("cannot start the sandbox on 127.0.0.1:{port}: {e}"))
        })?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "endpoint": handle.endpoint(), "env": handle.env_lines().into_iter().collect::<std::collections::BTreeMap<_, _>>(), "ids": handle.ids() })
        );
    } else {
        println!(
            "# connect-onboard sandbox listening on {}",
            handle.endpoint()
        );
        println!("# paste these lines into a shell to point the AWS CLI or connect-onboard at it:");
        for (k, v) in handle.env_lines() {
            println!("export {k}={v}");
        }
        let ids = serde_json::to_value(handle.ids()).unwrap_or_default();
        if let Some(m) = ids.as_object() {
            for (k, v) in m {
                println!(
                    "# {k}: {}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                );
            }
        }
        println!(
            "# control endpoint: {}/_sandbox/state | /_sandbox/calls | /_sandbox/faults",
            handle.endpoint()
        );
        println!("# Ctrl-C stops it.");
    }
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
    eprintln!("sandbox stopped");
    Ok(exit::OK)
}

/// `demo`: the main job end to end with no AWS account.
pub(super) async fn demo(g: &GlobalArgs) -> Result<u8, app::Error> {
    use connect_onboard_sandbox as sb;
    // One throttled CreateUser shows the engine's retry.
    let faults: sb::FaultConfig = serde_json::from_value(serde_json::json!({
        "rules": [{ "op": "connect:CreateUser", "action": "throttle", "times": 1 }]
    }))
    .map_err(|e| app::Error::Input(e.to_string()))?;
    let handle = sb::Sandbox::start(sb::SandboxOptions {
        port: 0,
        seed: sb::Seed::default(),
        faults,
    })
    .await
    .map_err(|e| app::Error::Input(format!("cannot start the sandbox: {e}")))?;
    // The standard variables: the SDK clients find the sandbox as they would find AWS.
    for (k, v) in handle.env_lines() {
        std::env::set_var(k, v);
    }
    // Without --state the checkpoints go to a temporary directory, removed at the end (the
    // sandbox they describe is gone then too); --state FILE keeps them.
    let (state, scratch) = match &g.state {
        Some(p) => (p.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("connect-onboard-demo-")
                .tempdir()
                .map_err(|e| {
                    app::Error::Input(format!("creating the demo's state directory: {e}"))
                })?;
            (dir.path().join("state.db"), Some(dir))
        }
    };
    let mut globals = globals(g);
    globals.state = Some(state.clone());
    let ctx = Context::from_config(config::sandbox(), &globals)?;
    eprintln!(
        "demo: sandbox at {} (Connect, Identity Store, SSO Admin); state in {}",
        handle.endpoint(),
        state.display()
    );
    let agents = [
        ("ana.silva@example.com", "Ana", "Silva"),
        ("ben.okafor@example.com", "Ben", "Okafor"),
    ];
    let mut runs = Vec::new();
    for (email, first, last) in agents {
        eprintln!("demo: onboarding {email}");
        let input = AgentInput {
            email: email.into(),
            first_name: first.into(),
            last_name: last.into(),
            ..Default::default()
        };
        let settings = RunSettings {
            progress: progress_printer(g.json),
            on_failure: OnFailure::Rollback,
            concurrency: 1,
            stop: None,
        };
        match app::onboard(&ctx, input, Secrets::default(), false, &settings).await? {
            OnboardReport::Run(s) => runs.push(s),
            OnboardReport::Plan { .. } => {}
        }
    }
    print_runs(&runs, g.json);
    let calls = handle.calls();
    let total: u64 = calls.values().map(|c| c.calls).sum();
    drop(ctx);
    match scratch {
        Some(dir) => {
            eprintln!("demo: {total} AWS calls served by the sandbox; its state file was temporary and is removed (pass --state FILE to keep the checkpoints, then `connect-onboard --state FILE status`)");
            let _ = dir.close();
        }
        None => eprintln!("demo: {total} AWS calls served by the sandbox; `connect-onboard --state {} status` shows the checkpoints", state.display()),
    }
    handle.shutdown().await;
    Ok(exit::for_runs(&runs, 0))
}
