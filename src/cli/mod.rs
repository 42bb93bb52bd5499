//! The command line: clap definitions, the mapping of flags to `app` operations, and all
//! printing. Human progress goes to stderr, results to stdout; `--json` puts only JSON on
//! stdout. The parts: `args` (clap), this file (flags → `app` calls), `output`
//! (tables, progress lines, plans), `files` (reports, notices, fix plans, renamed into
//! place), `meter` (wait lines and the batch meter), `exit` (the one exit-code table), `dev` (`sandbox`, `demo`).

// The one layer that prints (Cargo.toml denies printing elsewhere).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod apply;
mod args;
mod dev;
pub mod exit;
mod files;
mod meter;
mod output;
mod sync;

use std::io::{IsTerminal, Read};

use crate::agent::{AgentInput, PhoneType, Secret};
use crate::app::{self, Context, Globals, OnboardReport, RunSettings};
use crate::config;
use crate::engine::{OnFailure, Secrets};

pub use args::Cli;
use args::{
    BulkReadsArg, Command, GlobalArgs, OffboardArgs, OnFailureArg, OnboardArgs, PhoneArg, RunArgs,
    StateAction,
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
                let mut out = serde_json::json!({ "error": e.to_string(), "exit_code": code });
                if let app::Error::Invalid { problems, summary } = &e {
                    out["error"] = summary.clone().into();
                    out["invalid"] = problems.clone().into();
                }
                println!("{out}");
            }
            for line in e.to_string().lines() {
                eprintln!("connect-onboard: error: {line}");
            }
            code
        }
    }
}

/// A command line that clap refused: help and version are printed as asked (exit 0);
/// a usage error is printed by clap on stderr and, when `--json` was among the arguments,
/// as `{"error": ..., "exit_code": 2}` on stdout like every other error.
pub fn usage_error(e: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.use_stderr() {
            exit::INPUT
        } else {
            exit::OK
        };
    }
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if json {
        // The message: the rendered text up to its first blank line (the usage and the
        // hint follow it), on one line.
        let text = e.render().to_string();
        let message: Vec<&str> = text
            .trim_start_matches("error: ")
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect();
        println!(
            "{}",
            serde_json::json!({ "error": message.join(" "), "usage": text.trim_end(), "exit_code": exit::INPUT })
        );
    }
    let _ = e.print();
    exit::INPUT
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
        config: g.config_path(),
        config_given: g.config.is_some(),
        state: g.state.clone(),
        workflow: g.workflow.clone(),
        profile: g.profile.clone(),
        region: g.region.clone(),
        on_wait: meter::wait_printer(g.json),
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
        s.insert(app::PASSWORD_SECRET, p);
    }
    Ok(s)
}

// Over 80 lines on purpose: one short arm per command, the table of what each runs.
async fn dispatch(cli: Cli) -> Result<u8, app::Error> {
    let g = &cli.global;
    let json = g.json;
    let settings = |on_failure, concurrency| RunSettings {
        progress: progress_printer(json),
        on_failure,
        concurrency,
        stop: None,
    };
    match cli.command {
        Command::Init { force } => init(g, force).await,
        Command::Onboard(a) => onboard(g, *a).await,
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
            finish_batch(report, json, "resume")
        }
        Command::Rollback {
            run_id,
            email,
            dry_run,
            yes,
        } => rollback(g, &run_id, email.as_deref(), dry_run, yes).await,
        Command::Batch {
            file,
            skip_invalid,
            run,
        } => {
            let opts = |run: &RunArgs| app::BatchOptions {
                file,
                skip_invalid,
                run: run_options(run),
            };
            with_outputs(g, &run, async |ctx, settings, outs| {
                app::batch(ctx, &opts(&run), settings, outs).await
            })
            .await
        }
        Command::Migrate {
            routing_profiles,
            security_profiles,
            hierarchy_group,
            usernames,
            run,
        } => {
            let opts = app::MigrateOptions {
                routing_profiles,
                security_profiles,
                hierarchy_group,
                usernames,
                run: run_options(&run),
            };
            with_outputs(g, &run, async |ctx, settings, outs| {
                app::migrate(ctx, &opts, settings, outs).await
            })
            .await
        }
        Command::Offboard(a) => offboard(g, *a).await,
        Command::Apply(a) => apply::apply(g, *a).await,
        Command::Sync(a) => sync::sync(g, *a).await,
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
            finish_batch(report, json, "retry")
        }
        Command::Release { run_id, email } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let status = app::release(&ctx, &run_id, &email).await?;
            print_runs(&[status], json);
            Ok(exit::OK)
        }
        Command::State {
            action: StateAction::Copy { from, to },
        } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let report = app::state_copy(&ctx, &from, &to).await?;
            for (run, agents) in &report.copied {
                eprintln!("copied run {run} ({agents} agents)");
            }
            for run in &report.present {
                eprintln!("run {run} is in {to} already: left as it is");
            }
            eprintln!(
                "{} runs copied, {} already there",
                report.copied.len(),
                report.present.len()
            );
            Ok(exit::OK)
        }
        Command::Status { run_id } => {
            let ctx = Context::load_for_state(&globals(g))?;
            let runs = app::status(&ctx, run_id.as_deref()).await?;
            if runs.is_empty() && !json {
                println!("no runs yet");
            }
            print_runs(&runs, json);
            Ok(exit::OK)
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
                files::write_fix_plan(dir, &report.plan()).map_err(app::Error::Input)?;
            }
            output::print_drift(&report, fix_plan.as_deref(), json);
            Ok(exit::for_drift(&report))
        }
        Command::IamPolicy { for_, queue } => {
            let ctx = Context::load(&globals(g))?;
            let policy = app::iam_policy(&ctx, for_, queue.as_deref())?;
            output::print_policy(&policy);
            Ok(exit::OK)
        }
    }
}

/// `init`: the example config, unless one is there (`--force` overwrites it); with
/// `--state dynamodb://TABLE`, the shared state table instead (idempotent).
async fn init(g: &GlobalArgs, force: bool) -> Result<u8, app::Error> {
    if let Some((url, done)) = Context::init_shared_state(&globals(g)).await? {
        match done {
            app::StateInitialised::Created => eprintln!("created the state table {url}"),
            app::StateInitialised::Existed => {
                eprintln!("the state table {url} exists: nothing changed")
            }
        }
        return Ok(exit::OK);
    }
    let path = g.config_path();
    if path.exists() && !force {
        return Err(app::Error::Input(format!(
            "{} exists; pass --force to overwrite it",
            path.display()
        )));
    }
    std::fs::write(&path, config::EXAMPLE)
        .map_err(|e| app::Error::Input(format!("writing {}: {e}", path.display())))?;
    eprintln!("wrote {}", path.display());
    Ok(exit::OK)
}

/// `onboard`: one agent, or its plan (`--dry-run`).
async fn onboard(g: &GlobalArgs, a: OnboardArgs) -> Result<u8, app::Error> {
    let json = g.json;
    let ctx = Context::load(&globals(g))?;
    let secrets = read_secrets(g)?;
    let settings = RunSettings {
        progress: progress_printer(json),
        on_failure: on_failure_of(a.on_failure),
        concurrency: 1,
        stop: None,
    };
    let dry_run = a.dry_run;
    match app::onboard(&ctx, onboard_input(a), secrets, dry_run, &settings).await? {
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

/// `rollback`: done agents lose working users, so their plan is shown and confirmed
/// first ("yes" on a terminal, or `--yes`); `--dry-run` prints the plan only.
async fn rollback(
    g: &GlobalArgs,
    run_id: &str,
    email: Option<&str>,
    dry_run: bool,
    yes: bool,
) -> Result<u8, app::Error> {
    let json = g.json;
    let ctx = Context::load_for_state(&globals(g))?;
    let secrets = read_secrets(g)?;
    let mut confirm = |run: &str, plan: &[app::PlannedRollback]| {
        if yes {
            return Ok(());
        }
        output::print_rollback_plan(run, plan, false, false);
        confirm_on_terminal("Roll back what is listed above?", "rollback")
    };
    let settings = RunSettings {
        progress: progress_printer(json),
        on_failure: OnFailure::Rollback,
        concurrency: 1,
        stop: None,
    };
    let report = match app::rollback(
        &ctx,
        run_id,
        email,
        secrets,
        &settings,
        dry_run,
        &mut confirm,
    )
    .await?
    {
        app::RollbackReport::Planned { run_id, agents } => {
            output::print_rollback_plan(&run_id, &agents, true, json);
            return Ok(exit::OK);
        }
        app::RollbackReport::Done(report) => report,
    };
    // A rollback that finished is a success.
    for s in &report.skipped {
        eprintln!("skipped: {s}");
    }
    print_runs(&report.runs, json);
    Ok(exit::for_rollback(&report.runs, report.skipped.len()))
}

/// `batch`, `migrate`: the context with waits counted for the meter, the outputs the run
/// asked for, then `op`; the files are put in place and the summary printed.
async fn with_outputs(
    g: &GlobalArgs,
    run: &RunArgs,
    op: impl AsyncFnOnce(&Context, &RunSettings, &mut Outputs) -> Result<app::BatchReport, app::Error>,
) -> Result<u8, app::Error> {
    let waits = Waits::default();
    let ctx = Context::load(&counted(g, &waits))?;
    let mut outs = Outputs::for_run(run, g.json, waits);
    let out = op(&ctx, &quiet(run.on_failure), &mut outs).await;
    outs.finish(out, g.json)
}

/// `resume`, `retry`: what was skipped, "nothing to VERB" when no agent was driven, then
/// the runs.
fn finish_batch(report: app::RunsReport, json: bool, verb: &str) -> Result<u8, app::Error> {
    for s in &report.skipped {
        eprintln!("skipped: {s}");
    }
    if report.driven == 0 && !json {
        println!("nothing to {verb}");
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
        stop: None,
    }
}

/// Where `batch` and `migrate` stream their results: `--report`, `--notices` and the
/// progress meter. The files are created only when the run phase starts (after every
/// check, before the first write), each as a temporary file renamed into place at the end.
struct Outputs {
    report_path: Option<std::path::PathBuf>,
    notices_path: Option<std::path::PathBuf>,
    report: Option<files::ReportWriter>,
    notices: Option<files::NoticeWriter>,
    meter: meter::Meter,
    /// Calls that waited to retry (throttling), shown by the meter.
    waits: Waits,
    /// The report has a `changes` column (`apply`).
    changes_column: bool,
}

/// How many calls have waited to retry so far (counted by the context, shown by the meter).
type Waits = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// The globals of a command with a progress meter: waits are counted for the meter
/// instead of printed one line each.
fn counted(g: &GlobalArgs, waits: &Waits) -> Globals {
    Globals {
        on_wait: Some(meter::wait_counter(waits)),
        ..globals(g)
    }
}

impl Outputs {
    /// The outputs `batch` and `migrate` were asked for.
    fn for_run(run: &RunArgs, json: bool, waits: Waits) -> Self {
        Outputs::new(
            run.report.as_deref(),
            run.notices.as_deref(),
            json,
            run.dry_run,
            waits,
        )
    }

    fn new(
        report: Option<&std::path::Path>,
        notices: Option<&std::path::Path>,
        json: bool,
        dry_run: bool,
        waits: Waits,
    ) -> Self {
        Outputs {
            report_path: report.map(Into::into),
            notices_path: notices.map(Into::into),
            report: None,
            notices: None,
            meter: meter::Meter::new(json, dry_run),
            waits,
            changes_column: false,
        }
    }

    /// Puts the files in place (also after a run that stopped with an error: what the
    /// report holds happened), then, for a run that returned, prints the summary and
    /// decides the exit code.
    fn finish(
        self,
        out: Result<app::BatchReport, app::Error>,
        json: bool,
    ) -> Result<u8, app::Error> {
        let closed = self.close();
        let out = out?;
        closed?;
        output::print_batch(&out, json);
        Ok(exit::for_batch(&out))
    }

    /// Ends the meter and puts the files in place.
    fn close(self) -> Result<(), app::Error> {
        self.meter.finish();
        let report = self.report.map(|r| r.finish()).transpose();
        let notices = self.notices.map(|n| n.finish()).transpose();
        report.map_err(app::Error::Input)?;
        notices.map_err(app::Error::Input)?;
        Ok(())
    }
}

impl app::Sink for Outputs {
    fn started(&mut self, total: usize) -> Result<(), String> {
        if let Some(p) = &self.report_path {
            self.report = Some(files::ReportWriter::create(p, self.changes_column)?);
        }
        if let Some(d) = &self.notices_path {
            self.notices = Some(files::NoticeWriter::create(d)?);
        }
        self.meter.start(total, self.waits.clone());
        Ok(())
    }

    fn rejected(&mut self, row: &app::AgentResult) {
        if let Some(r) = self.report.as_mut() {
            r.add(row);
        }
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
            confirm_on_terminal("Delete what is listed above?", "offboarding")?;
        }
        *slot.borrow_mut() = Some(Outputs::new(
            report.as_deref(),
            None,
            json,
            dry_run,
            waits.clone(),
        ));
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
    .await;
    match slot.take() {
        Some(outs) => outs.finish(out, json),
        // Refused before the confirmation: nothing was opened.
        None => out.map(|o| {
            output::print_batch(&o, json);
            exit::for_batch(&o)
        }),
    }
}

/// The confirmation of an irreversible command (`offboard`, `rollback` of done agents),
/// after its plan was printed: "yes" typed on a terminal goes on; anything else, or no
/// terminal to ask on (then `--yes` is the way), is a usage error with nothing written.
fn confirm_on_terminal(question: &str, what: &str) -> Result<(), app::Error> {
    if !std::io::stdin().is_terminal() {
        return Err(app::Error::Input(
            "refusing to delete without --yes: there is no terminal to confirm on; nothing was written (check the plan above, then run again with --yes)".into(),
        ));
    }
    eprint!("{question} This cannot be undone. Type \"yes\" to go on: ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if answer.trim() != "yes" {
        return Err(app::Error::Input(format!(
            "{what} not confirmed; nothing was written"
        )));
    }
    Ok(())
}

/// The outputs once they exist (after the confirmation).
struct Slot<'a>(&'a std::cell::RefCell<Option<Outputs>>);

impl app::Sink for Slot<'_> {
    fn started(&mut self, total: usize) -> Result<(), String> {
        match self.0.borrow_mut().as_mut() {
            Some(o) => o.started(total),
            None => Ok(()),
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
