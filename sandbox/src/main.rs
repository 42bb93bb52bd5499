//! `connect-onboard-sandbox` binary: runs the emulator until Ctrl-C.
//!
//! Usage: `connect-onboard-sandbox [--port N] [--seed FILE] [--faults FILE]`.
//! Prints the env lines (`KEY=value`) to stdout so a shell can `eval`/source them.

use std::path::PathBuf;
use std::process::ExitCode;

use connect_onboard_sandbox::{FaultConfig, Sandbox, SandboxOptions, Seed};

fn usage() -> ExitCode {
    eprintln!("usage: connect-onboard-sandbox [--port N] [--seed FILE.toml|.json] [--faults FILE.toml|.json]");
    ExitCode::from(2)
}

fn parse_args() -> Result<SandboxOptions, String> {
    let mut opts = SandboxOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => opts.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--seed" => {
                opts.seed = Seed::from_path(&PathBuf::from(value()?)).map_err(|e| e.to_string())?
            }
            "--faults" => {
                opts.faults =
                    FaultConfig::from_path(&PathBuf::from(value()?)).map_err(|e| e.to_string())?
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(opts)
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            return usage();
        }
    };
    let handle = match Sandbox::start(opts).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: cannot start the sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (k, v) in handle.env_lines() {
        println!("{k}={v}");
    }
    eprintln!(
        "sandbox listening on {} (Ctrl-C to stop)",
        handle.endpoint()
    );
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
    ExitCode::SUCCESS
}
