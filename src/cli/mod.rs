//! The command line: clap definitions, the mapping of flags to `app` operations, and all
//! printing. Human progress goes to stderr, results to stdout; `--json` puts only JSON on
//! stdout. The parts: `args` (clap), this file (flags → `app` calls), `output`
//! (tables, progress lines, plans), `exit` (the one exit-code table), `dev` (`sandbox`, `demo`).

mod args;
mod dev;
pub mod exit;
mod output;

use std::io::{IsTerminal, Read};

use crate::agent::{AgentInput, PhoneType, Secret};
use crate::app::{self, Context, Globals, OnboardReport, RunSettings};
use crate::config;
use crate::engine::{OnFailure, Secrets};

pub use args::Cli;
use args::{
    BulkReadsArg, Command, GlobalArgs, OffboardArgs, OnFailureArg, OnboardArgs, PhoneArg, RunArgs,
};
use output::{print_plan, print_runs, progress_printer};

/// Runs the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    init_tracing(cli.global.verbose);
    let json = cli.global.json;
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            let code = exit::for_error(&e);
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

pub(crate) fn globals(g: &GlobalArgs) -> Globals {
    Globals {
        config: g.config.clone(),
        state: g.state.clone(),
        workflow: g.workflow.clone(),
        profile: g.profile.clone(),
        region: g.region.clone(),
        on_wait: output::wait_printer(g.json),
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
        app::env::password()
    };
    if let Some(p) = pw.filter(|p| !p.is_empty()) {
        s.insert(crate::steps::PASSWORD, p);
    }
    Ok(s)
}

async fn dispatch(cli: Cli) -> Result<u8, app::Error> {
    let g = &cli.global;
    let json = g.json;
    let settings = |on_failure, concurrency| RunSettings {
        progress: progress_printer(json),
        on_failure,
        concurrency,
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
            let on_failure = on_failure_of(a.on_failure);
            let dry_run = a.dry_run;
            let input = onboard_input(*a);
            match app::onboard(&ctx, input, secrets, dry_run, &settings(on_failure, 1)).await? {
                OnboardReport::Plan { agent, steps } => {
                    print_plan(&agent, &steps, json);
                    Ok(exit::for_plan(&steps))
                }
                OnboardReport::Run(status) => {
                    let runs = vec![status];
                    print_runs(&runs, json);
                    Ok(exit::for_runs(&runs, 0))
                }
            }
        }
        Command::Resume {
            run_id,
            concurrency,
        } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let secrets = read_secrets(g)?;
            let report = app::resume(
                &ctx,
                run_id.as_deref(),
                secrets,
                &settings(OnFailure::Rollback, concurrency),
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
                &settings(OnFailure::Rollback, 1),
            )
            .await?;
            // A rollback that finished is a success.
            for s in &report.skipped {
                eprintln!("skipped: {s}");
            }
            print_runs(&report.runs, json);
            Ok(exit::for_rollback(&report.runs, report.skipped.len()))
        }
        Command::Batch {
            file,
            skip_invalid,
            run,
        } => {
            let waits = Waits::default();
            let ctx = Context::load(&counted(g, &waits))?;
            let opts = app::BatchOptions {
                file,
                skip_invalid,
                run: run_options(&run),
            };
            let mut outs =
                Outputs::open(run.report.as_deref(), run.notices.as_deref(), json, waits)?;
            let out = app::batch(&ctx, &opts, &quiet(run.on_failure), &mut outs).await?;
            outs.finish(&out, json)
        }
        Command::Migrate {
            routing_profiles,
            security_profiles,
            hierarchy_group,
            usernames,
            run,
        } => {
            let waits = Waits::default();
            let ctx = Context::load(&counted(g, &waits))?;
            let opts = app::MigrateOptions {
                routing_profiles,
                security_profiles,
                hierarchy_group,
                usernames,
                run: run_options(&run),
            };
            let mut outs =
                Outputs::open(run.report.as_deref(), run.notices.as_deref(), json, waits)?;
            let out = app::migrate(&ctx, &opts, &quiet(run.on_failure), &mut outs).await?;
            outs.finish(&out, json)
        }
        Command::Offboard(a) => offboard(g, *a).await,
        Command::Retry {
            run_id,
            from,
            concurrency,
        } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let secrets = read_secrets(g)?;
            let report = app::retry(
                &ctx,
                run_id.as_deref(),
                from.as_deref(),
                secrets,
                &settings(OnFailure::Rollback, concurrency),
            )
            .await?;
            finish_batch(report, json)
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
        Command::Sandbox { port, seed, faults } => dev::sandbox(port, seed, faults, json).await,
        Command::Demo => dev::demo(g).await,
        Command::Doctor { who } => {
            let ctx = Context::load(&globals(g))?;
            let report = app::doctor(&ctx, &who).await?;
            output::print_doctor(&report, json);
            Ok(exit::for_doctor(&report))
        }
        Command::Drift { fix_plan } => {
            let ctx = Context::load(&globals(g))?;
            let report = app::drift(&ctx).await?;
            if let Some(dir) = &fix_plan {
                output::write_fix_plan(dir, &report.plan()).map_err(app::Error::Input)?;
            }
            output::print_drift(&report, fix_plan.as_deref(), json);
            Ok(exit::for_drift(&report))
        }
        Command::IamPolicy { for_ } => {
            let ctx = Context::load(&globals(g))?;
            let policy = app::iam_policy(&ctx, for_)?;
            output::print_policy(&policy);
            Ok(exit::OK)
        }
    }
}

fn finish_batch(report: app::RunsReport, json: bool) -> Result<u8, app::Error> {
    for s in &report.skipped {
        eprintln!("skipped: {s}");
    }
    if report.runs.is_empty() && !json {
        println!("nothing to resume");
    }
    print_runs(&report.runs, json);
    Ok(exit::for_runs(&report.runs, report.skipped.len()))
}

fn run_options(a: &RunArgs) -> app::RunOptions {
    app::RunOptions {
        dry_run: a.dry_run,
        concurrency: a.concurrency,
        bulk_reads: bulk_reads_of(a.bulk_reads),
    }
}

/// Many agents: no line per step (the meter shows progress; `-v` logs step events).
fn quiet(on_failure: OnFailureArg) -> RunSettings {
    RunSettings {
        progress: None,
        on_failure: on_failure_of(on_failure),
        concurrency: 1,
    }
}

/// Where `batch` and `migrate` stream their results: `--report`, `--notices` and the
/// progress meter.
struct Outputs {
    report: Option<output::ReportWriter>,
    notices: Option<output::NoticeWriter>,
    meter: output::Meter,
    /// Calls that waited to retry (throttling), shown by the meter.
    waits: Waits,
}

/// How many calls have waited to retry so far (counted by the context, shown by the meter).
type Waits = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// The globals of a command with a progress meter: waits are counted for the meter
/// instead of printed one line each.
fn counted(g: &GlobalArgs, waits: &Waits) -> Globals {
    Globals {
        on_wait: Some(output::wait_counter(waits)),
        ..globals(g)
    }
}

impl Outputs {
    fn open(
        report: Option<&std::path::Path>,
        notices: Option<&std::path::Path>,
        json: bool,
        waits: Waits,
    ) -> Result<Self, app::Error> {
        Ok(Outputs {
            report: report
                .map(output::ReportWriter::create)
                .transpose()
                .map_err(app::Error::Input)?,
            notices: notices
                .map(output::NoticeWriter::create)
                .transpose()
                .map_err(app::Error::Input)?,
            meter: output::Meter::new(json),
            waits,
        })
    }

    /// Closes the files, prints the summary, and decides the exit code.
    fn finish(self, out: &app::BatchReport, json: bool) -> Result<u8, app::Error> {
        self.meter.finish();
        if let Some(r) = self.report {
            r.finish().map_err(app::Error::Input)?;
        }
        if let Some(n) = self.notices {
            n.finish().map_err(app::Error::Input)?;
        }
        output::print_batch(out, json);
        Ok(exit::for_batch(out))
    }
}

impl app::Sink for Outputs {
    fn started(&mut self, total: usize) {
        self.meter.start(total, self.waits.clone());
    }

    fn finished(&mut self, a: &app::AgentResult) {
        if let Some(r) = self.report.as_mut() {
            r.add(a);
        }
        if let Some(n) = self.notices.as_mut() {
            n.add(a);
        }
        self.meter.tick(a);
    }
}

/// `offboard`: the plan is confirmed (on a terminal) or `--yes` given before any write;
/// the report file is only created once it is.
async fn offboard(g: &GlobalArgs, a: OffboardArgs) -> Result<u8, app::Error> {
    let json = g.json;
    let waits = Waits::default();
    let ctx = Context::load(&counted(g, &waits))?;
    let opts = app::OffboardOptions {
        emails: a.emails,
        file: a.file,
        sides: match (a.connect_only, a.identity_only) {
            (true, _) => app::Sides::ConnectOnly,
            (_, true) => app::Sides::IdentityOnly,
            _ => app::Sides::Both,
        },
        keep_identity_user: a.keep_identity_user,
        run: app::RunOptions {
            dry_run: a.dry_run,
            concurrency: a.concurrency,
            bulk_reads: bulk_reads_of(a.bulk_reads),
        },
    };
    let slot: std::cell::RefCell<Option<Outputs>> = std::cell::RefCell::new(None);
    let (yes, dry_run, report) = (a.yes, a.dry_run, a.report);
    let mut confirm = |plan: &[app::PlannedLeaver], skipped: &[app::AgentResult]| {
        if dry_run && !json && !plan.is_empty() {
            output::print_offboard_plan(plan, &[], true);
        }
        if !(yes || dry_run || plan.is_empty()) {
            output::print_offboard_plan(plan, skipped, false);
            if !std::io::stdin().is_terminal() {
                return Err(app::Error::Input(
                    "refusing to delete without --yes: there is no terminal to confirm on; nothing was written (check the plan above, then run again with --yes)".into(),
                ));
            }
            eprint!("Delete what is listed above? This cannot be undone. Type \"yes\" to go on: ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            if answer.trim() != "yes" {
                return Err(app::Error::Input(
                    "offboarding not confirmed; nothing was written".into(),
                ));
            }
        }
        *slot.borrow_mut() = Some(Outputs::open(report.as_deref(), None, json, waits.clone())?);
        Ok(())
    };
    let mut sink = Slot(&slot);
    let out = app::offboard(
        &ctx,
        &opts,
        &quiet(OnFailureArg::Keep),
        &mut confirm,
        &mut sink,
    )
    .await?;
    let outs = slot.take().expect("confirmed before the run phase");
    outs.finish(&out, json)
}

/// The outputs once they exist (after the confirmation).
struct Slot<'a>(&'a std::cell::RefCell<Option<Outputs>>);

impl app::Sink for Slot<'_> {
    fn started(&mut self, total: usize) {
        if let Some(o) = self.0.borrow_mut().as_mut() {
            o.started(total);
        }
    }

    fn finished(&mut self, a: &app::AgentResult) {
        if let Some(o) = self.0.borrow_mut().as_mut() {
            o.finished(a);
        }
    }
}

fn bulk_reads_of(a: BulkReadsArg) -> app::BulkReads {
    match a {
        BulkReadsArg::Auto => app::BulkReads::Auto,
        BulkReadsArg::Always => app::BulkReads::Always,
        BulkReadsArg::Never => app::BulkReads::Never,
    }
}

fn on_failure_of(a: OnFailureArg) -> OnFailure {
    match a {
        OnFailureArg::Rollback => OnFailure::Rollback,
        OnFailureArg::Keep => OnFailure::Keep,
    }
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
