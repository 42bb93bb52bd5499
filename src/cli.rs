//! The command line: clap definitions, the mapping of flags to `app` operations, and all
//! printing. Human progress goes to stderr, results to stdout; `--json` puts only JSON on
//! stdout. Exit codes (the only place that knows them): 0 every agent done; 1 some agent
//! failed, was rolled back or is interrupted; 2 usage, config or validation error before
//! any write; 3 a compensation failed (needs attention).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::agent::{AgentInput, PhoneType, Secret};
use crate::app::{self, Context, Globals, OnboardReport, RunSettings, RunStatus};
use crate::config;
use crate::workflow::{OnFailure, Progress, Secrets};

/// Onboard Amazon Connect agents into Connect and IAM Identity Center, safely and resumably.
#[derive(Parser, Debug)]
#[command(name = "connect-onboard", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct GlobalArgs {
    /// Config file.
    #[arg(long, global = true, default_value = "connect-onboard.toml")]
    config: PathBuf,
    /// State file (overrides [state] path).
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// Use an edited workflow file instead of the built-in one.
    #[arg(long, global = true)]
    workflow: Option<PathBuf>,
    /// AWS profile (else the standard chain: AWS_PROFILE, ...).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// AWS region for every service (else the config, then the standard chain).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Read the password (CONNECT_MANAGED instances) from stdin instead of CONNECT_ONBOARD_PASSWORD.
    #[arg(long, global = true)]
    password_stdin: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Onboard one agent.
    Onboard(Box<OnboardArgs>),
    /// Finish every interrupted or unfinished agent (of one run, or of all runs).
    Resume {
        /// Run id (all runs when absent).
        run_id: Option<String>,
    },
    /// Remove what a run created, for the whole run or one agent.
    Rollback {
        /// Run id.
        run_id: String,
        /// Only this agent.
        #[arg(long)]
        email: Option<String>,
    },
    /// Close an agent that needs attention: keep its leftovers, stop managing them.
    Release {
        /// Run id.
        run_id: String,
        /// The agent.
        #[arg(long)]
        email: String,
    },
    /// Per run, agent and step: state, resource ids, owned or adopted, attempts, errors.
    Status {
        /// Run id (all runs when absent).
        run_id: Option<String>,
    },
    /// Write a commented example config file.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Serve the local AWS emulator (Connect, Identity Store, SSO Admin) until Ctrl-C.
    Sandbox {
        /// Port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 4566)]
        port: u16,
        /// Seed file (TOML or JSON) replacing the default world.
        #[arg(long)]
        seed: Option<PathBuf>,
        /// Fault rules file (TOML or JSON).
        #[arg(long)]
        faults: Option<PathBuf>,
    },
    /// Run the main job locally: start the sandbox in-process and onboard two sample agents.
    Demo,
}

#[derive(Args, Debug)]
struct OnboardArgs {
    /// The agent's email: Connect username (SAML), Identity Center user name and primary email.
    #[arg(long)]
    email: String,
    /// First name.
    #[arg(long)]
    first_name: String,
    /// Last name.
    #[arg(long)]
    last_name: String,
    /// Connect username when it is not the email (CONNECT_MANAGED / EXISTING_DIRECTORY only).
    #[arg(long)]
    username: Option<String>,
    /// Routing profile name or id.
    #[arg(long)]
    routing_profile: Option<String>,
    /// Security profile name or id (repeatable).
    #[arg(long = "security-profile")]
    security_profiles: Vec<String>,
    /// Hierarchy group name or id.
    #[arg(long)]
    hierarchy_group: Option<String>,
    /// Phone type.
    #[arg(long, value_enum)]
    phone_type: Option<PhoneArg>,
    /// Desk phone number (E.164), for --phone-type desk.
    #[arg(long)]
    desk_phone_number: Option<String>,
    /// Auto-accept contacts.
    #[arg(long)]
    auto_accept: bool,
    /// After-contact-work timeout in seconds (0 = no limit).
    #[arg(long)]
    acw_timeout: Option<i64>,
    /// Secondary email (notifications).
    #[arg(long)]
    secondary_email: Option<String>,
    /// Mobile number (E.164).
    #[arg(long)]
    mobile: Option<String>,
    /// Directory user id (EXISTING_DIRECTORY instances).
    #[arg(long)]
    directory_user_id: Option<String>,
    /// Tag KEY=VALUE (repeatable).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Print the plan (create / adopt / conflict per step) without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// On a permanent failure: remove what this run created, or keep it.
    #[arg(long, value_enum, default_value = "rollback")]
    on_failure: OnFailureArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PhoneArg {
    Soft,
    Desk,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OnFailureArg {
    Rollback,
    Keep,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("invalid tag {s:?}: expected KEY=VALUE"))
}

/// Runs the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    init_tracing(cli.global.verbose);
    let json = cli.global.json;
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            let code = if e.is_input() { 2 } else { 1 };
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": e.to_string(), "exit_code": code })
                );
            }
            for line in e.to_string().lines() {
                eprintln!("connect-onboard: error: {line}");
            }
            code
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::prelude::*;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Whatever -v or RUST_LOG say, no TRACE events from the SDK's HTTP layers: they print
    // whole requests, and a CreateUser body carries the password.
    let no_wire_trace = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() != tracing::Level::TRACE
            || !["aws_smithy", "hyper", "h2", "rustls"]
                .iter()
                .any(|p| meta.target().starts_with(p))
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(no_wire_trace);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
}

fn globals(g: &GlobalArgs) -> Globals {
    Globals {
        config: g.config.clone(),
        state: g.state.clone(),
        workflow: g.workflow.clone(),
        profile: g.profile.clone(),
        region: g.region.clone(),
    }
}

fn read_secrets(g: &GlobalArgs) -> Result<Secrets, app::Error> {
    let mut s = Secrets::default();
    let pw = if g.password_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .map_err(|e| app::Error::Input(format!("reading the password from stdin: {e}")))?;
        Some(buf.trim_end_matches(['\r', '\n']).to_string())
    } else {
        std::env::var(app::PASSWORD_ENV).ok()
    };
    if let Some(p) = pw.filter(|p| !p.is_empty()) {
        s.insert(crate::steps::PASSWORD, p);
    }
    Ok(s)
}

fn progress_printer(json: bool) -> Option<crate::workflow::ProgressFn> {
    if json {
        return None;
    }
    Some(Arc::new(|p: &Progress| {
        let mark = match p.event {
            "created" | "adopted" | "exists" | "rolled_back" | "nothing_to_undo"
            | "kept_shared" => "ok",
            "retrying" => "..",
            _ => "!!",
        };
        let detail = if p.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.detail)
        };
        eprintln!(
            "[{mark}] {} {}: {}{detail}",
            p.agent,
            p.step,
            p.event.replace('_', " ")
        );
    }))
}

async fn dispatch(cli: Cli) -> Result<u8, app::Error> {
    let g = &cli.global;
    let json = g.json;
    let settings = |on_failure| RunSettings {
        progress: progress_printer(json),
        on_failure,
    };
    match cli.command {
        Command::Init { force } => {
            if g.config.exists() && !force {
                return Err(app::Error::Input(format!(
                    "{} exists; pass --force to overwrite it",
                    g.config.display()
                )));
            }
            std::fs::write(&g.config, config::EXAMPLE)
                .map_err(|e| app::Error::Input(format!("writing {}: {e}", g.config.display())))?;
            eprintln!("wrote {}", g.config.display());
            Ok(0)
        }
        Command::Onboard(a) => {
            let ctx = Context::load(&globals(g))?;
            let secrets = read_secrets(g)?;
            let on_failure = match a.on_failure {
                OnFailureArg::Rollback => OnFailure::Rollback,
                OnFailureArg::Keep => OnFailure::Keep,
            };
            let dry_run = a.dry_run;
            let input = onboard_input(*a);
            match app::onboard(&ctx, input, secrets, dry_run, &settings(on_failure)).await? {
                OnboardReport::Plan { agent, steps } => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({ "dry_run": true, "agent": agent, "plan": steps })
                        );
                    } else {
                        println!("plan for {agent} (dry run, nothing written):");
                        for s in &steps {
                            let d = if s.detail.is_empty() {
                                String::new()
                            } else {
                                format!("  {}", s.detail)
                            };
                            println!("  {:<18} {:<8}{d}", s.step, s.action);
                        }
                    }
                    // A conflict, or a step whose lookup failed, is not a clean plan.
                    Ok(
                        if steps
                            .iter()
                            .any(|s| s.action != "create" && s.action != "adopt")
                        {
                            1
                        } else {
                            0
                        },
                    )
                }
                OnboardReport::Run(status) => {
                    let runs = vec![status];
                    print_runs(&runs, json);
                    Ok(app::exit_code(&runs))
                }
            }
        }
        Command::Resume { run_id } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let secrets = read_secrets(g)?;
            let report = app::resume(
                &ctx,
                run_id.as_deref(),
                secrets,
                &settings(OnFailure::Rollback),
            )
            .await?;
            finish_batch(report, json)
        }
        Command::Rollback { run_id, email } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let secrets = read_secrets(g)?;
            let report = app::rollback(
                &ctx,
                &run_id,
                email.as_deref(),
                secrets,
                &settings(OnFailure::Rollback),
            )
            .await?;
            // A rollback that finished is a success.
            for s in &report.skipped {
                eprintln!("skipped: {s}");
            }
            print_runs(&report.runs, json);
            let states: Vec<&str> = report
                .runs
                .iter()
                .flat_map(|r| r.agents.iter().map(|a| a.state.as_str()))
                .collect();
            Ok(if states.contains(&"needs_attention") {
                3
            } else if report.skipped.is_empty() {
                0
            } else {
                1
            })
        }
        Command::Release { run_id, email } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let status = app::release(&ctx, &run_id, &email).await?;
            print_runs(&[status], json);
            Ok(0)
        }
        Command::Status { run_id } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let runs = app::status(&ctx, run_id.as_deref())?;
            print_runs(&runs, json);
            Ok(0)
        }
        Command::Sandbox { port, seed, faults } => sandbox(port, seed, faults, json).await,
        Command::Demo => demo(g).await,
    }
}

fn finish_batch(report: app::BatchReport, json: bool) -> Result<u8, app::Error> {
    for s in &report.skipped {
        eprintln!("skipped: {s}");
    }
    if report.runs.is_empty() && !json {
        println!("nothing to resume");
    }
    print_runs(&report.runs, json);
    let code = app::exit_code(&report.runs);
    Ok(if code == 0 && !report.skipped.is_empty() {
        1
    } else {
        code
    })
}

fn onboard_input(a: OnboardArgs) -> AgentInput {
    AgentInput {
        email: a.email,
        first_name: a.first_name,
        last_name: a.last_name,
        username: a.username,
        routing_profile: a.routing_profile,
        security_profiles: a.security_profiles,
        hierarchy_group: a.hierarchy_group,
        phone_type: a.phone_type.map(|p| match p {
            PhoneArg::Soft => PhoneType::Soft,
            PhoneArg::Desk => PhoneType::Desk,
        }),
        desk_phone_number: a.desk_phone_number,
        auto_accept: a.auto_accept.then_some(true),
        acw_timeout: a.acw_timeout,
        secondary_email: a.secondary_email,
        mobile: a.mobile,
        directory_user_id: a.directory_user_id,
        tags: a.tags,
        password: None::<Secret>,
    }
}

fn step_cell(s: &app::StepStatus) -> String {
    match s.state.as_str() {
        "done" if s.owned => "created".into(),
        "done" => "done".into(),
        other => other.replace('_', " "),
    }
}

/// Prints runs: JSON (`{"runs": [...]}`) or a table per run, then sign-in notices.
fn print_runs(runs: &[RunStatus], json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::json!({ "runs": runs }));
        return;
    }
    for r in runs {
        let _ = writeln!(out, "run {} ({}, {})", r.run_id, r.workflow, r.created_at);
        let Some(first) = r.agents.first() else {
            continue;
        };
        let mut header = format!("  {:<32} {:<16}", "AGENT", "STATE");
        for s in &first.steps {
            header.push_str(&format!(" {:<18}", s.id.to_uppercase()));
        }
        let _ = writeln!(out, "{}", header.trim_end());
        for a in &r.agents {
            let mut line = format!("  {:<32} {:<16}", a.email, a.state);
            for s in &a.steps {
                line.push_str(&format!(" {:<18}", step_cell(s)));
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if let Some(e) = &a.last_error {
                let _ = writeln!(out, "    last error: {e}");
            }
        }
        for a in r.agents.iter().filter(|a| a.state == "done") {
            if let Some(url) = &a.portal_url {
                let _ = writeln!(
                    out,
                    "  sign-in: {} signs in at {url} -- first time, choose \"Forgot password\" there (IAM Identity Center sends no invitation for API-created users), then open \"Amazon Connect\"",
                    a.email
                );
            }
        }
    }
}

async fn sandbox(
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
    Ok(0)
}

/// `demo`: the main job end to end with no AWS account.
async fn demo(g: &GlobalArgs) -> Result<u8, app::Error> {
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
    let state = g.state.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("connect-onboard-demo-{}.db", std::process::id()))
    });
    let mut globals = globals(g);
    globals.state = Some(state.clone());
    let ctx = Context::from_config(config::sandbox(), &globals);
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
        };
        match app::onboard(&ctx, input, Secrets::default(), false, &settings).await? {
            OnboardReport::Run(s) => runs.push(s),
            OnboardReport::Plan { .. } => {}
        }
    }
    print_runs(&runs, g.json);
    let calls = handle.calls();
    let total: u64 = calls.values().map(|c| c.calls).sum();
    eprintln!("demo: {total} AWS calls served by the sandbox; `connect-onboard --state {} status` shows the checkpoints", state.display());
    handle.shutdown().await;
    Ok(app::exit_code(&runs))
}
