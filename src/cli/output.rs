//! What a person sees: per-step progress lines on stderr, run tables, dry-run plans and
//! sign-in notices on stdout (or JSON only, with `--json`).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::agent::reader::neutralize_csv_cell;
use crate::app::{self, RunStatus};
use crate::engine::{AgentState, PlannedStep, Progress, StepState};

pub(crate) fn progress_printer(json: bool) -> Option<crate::engine::ProgressFn> {
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

fn step_cell(s: &app::StepStatus) -> String {
    match s.state {
        StepState::Done if s.owned => "created".into(),
        other => other.as_str().replace('_', " "),
    }
}

/// Runs with more agents than this print counts and the agents that are not done.
const LARGE_RUN: usize = 20;

/// Prints runs: JSON (`{"runs": [...]}`) or a table per run, then sign-in notices.
pub(crate) fn print_runs(runs: &[RunStatus], json: bool) {
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
        // A batch run: counts by state, then only the agents that are not done.
        let large = r.agents.len() > LARGE_RUN;
        if large {
            let counts: Vec<String> = r
                .counts
                .iter()
                .map(|(s, n)| format!("{} {n}", s.as_str()))
                .collect();
            let _ = writeln!(out, "  agents: {} ({})", r.agents.len(), counts.join(", "));
        }
        let mut header = format!("  {:<32} {:<16}", "AGENT", "STATE");
        for s in &first.steps {
            header.push_str(&format!(" {:<18}", s.id.to_uppercase()));
        }
        let _ = writeln!(out, "{}", header.trim_end());
        let shown = r
            .agents
            .iter()
            .filter(|a| !large || !matches!(a.state, AgentState::Done | AgentState::Released));
        for a in shown {
            let mut line = format!("  {:<32} {:<16}", a.email, a.state.as_str());
            for s in &a.steps {
                line.push_str(&format!(" {:<18}", step_cell(s)));
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if let Some(e) = &a.last_error {
                let _ = writeln!(out, "    last error: {e}");
            }
            if let Some(next) = &a.next {
                let _ = writeln!(out, "    next: {next}");
            }
        }
        for a in r
            .agents
            .iter()
            .filter(|a| !large && a.state == AgentState::Done)
        {
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

/// Prints a dry run's plan: JSON or one line per step.
pub(crate) fn print_plan(agent: &str, steps: &[PlannedStep], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": true, "agent": agent, "plan": steps })
        );
        return;
    }
    println!("plan for {agent} (dry run, nothing written):");
    for s in steps {
        let d = if s.detail.is_empty() {
            String::new()
        } else {
            format!("  {}", s.detail)
        };
        println!("  {:<18} {:<8}{d}", s.step, s.decision.as_str());
    }
}

/// Prints what `offboard` will delete, with ids, what it keeps, and the agents it skips
/// (stderr: the confirmation's question follows it). A dry run prints the same plan.
pub(crate) fn print_offboard_plan(
    plan: &[app::PlannedLeaver],
    skipped: &[app::AgentResult],
    dry_run: bool,
) {
    if dry_run {
        eprintln!(
            "offboarding {} agent(s) would do this (dry run, nothing written):",
            plan.len()
        );
    } else {
        eprintln!(
            "offboarding {} agent(s); these deletions cannot be undone:",
            plan.len()
        );
    }
    for p in plan {
        eprintln!("  {}", p.email);
        if let Some(run) = &p.resumes {
            eprintln!("    finishes the offboarding of run {run}");
        }
        if p.user_assignment {
            if let Some(id) = &p.identity_user_id {
                eprintln!("    application assignment of user {id}: delete");
            }
        }
        if let (Some(g), Some(id)) = (&p.group, &p.identity_user_id) {
            eprintln!("    membership of user {id} in group {g:?}: delete (the group stays)");
        }
        if let Some(id) = &p.identity_user_id {
            let name = p.identity_user_name.as_deref().unwrap_or(&p.email);
            let what = if p.keep_identity_user {
                "keep"
            } else {
                "delete"
            };
            eprintln!("    Identity Center user {id} ({name}): {what}");
        }
        if p.resumes.is_none() && p.sides == app::Sides::ConnectOnly {
            eprintln!(
                "    Identity Center user, its membership and assignment: keep (--connect-only)"
            );
        }
        if let Some(id) = &p.connect_user_id {
            match &p.connect_username {
                Some(name) => eprintln!("    Connect user {id} ({name}): delete"),
                None => eprintln!("    Connect user {id}: delete"),
            }
        }
        if p.resumes.is_none() && p.sides == app::Sides::IdentityOnly {
            eprintln!("    Connect user: keep (--identity-only)");
        }
    }
    for s in skipped
        .iter()
        .filter(|s| s.outcome == app::Outcome::Skipped)
    {
        eprintln!(
            "  skipped {}: {}",
            s.email,
            s.error.as_deref().unwrap_or_default()
        );
    }
}

/// Prints a batch's summary (stdout) or its JSON.
pub(crate) fn print_batch(r: &app::BatchReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    for e in &r.invalid {
        eprintln!("invalid: {e}");
    }
    let mut out = std::io::stdout().lock();
    let total: usize = r.counts.values().sum();
    if r.dry_run {
        let _ = writeln!(
            out,
            "plan ({} agents, dry run, nothing written):",
            r.agents.len()
        );
        for (step, counts) in &r.plan {
            let cells: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "  {step:<18} {}", cells.join(", "));
        }
    } else if let Some(run) = &r.run_id {
        let _ = writeln!(out, "run {run}");
    }
    let counts: Vec<String> = r.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "agents: {total} ({}); invalid rows: {}; {:.1} s",
        counts.join(", "),
        r.invalid.len(),
        r.elapsed_ms as f64 / 1000.0
    );
    for a in r.agents.iter().filter(|a| a.error.is_some()) {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            a.email,
            a.outcome,
            a.error.as_deref().unwrap_or_default()
        );
    }
    let calls: Vec<String> = r
        .calls
        .iter()
        .filter(|c| c.calls > 0)
        .map(|c| format!("{} {} ({} throttled)", c.api, c.calls, c.throttled))
        .collect();
    if !calls.is_empty() {
        let _ = writeln!(out, "calls: {}", calls.join(", "));
    }
}

/// A file written beside its destination and renamed into place when complete: a command
/// that fails (or a crash) never leaves half a file, nor touches the one that was there.
pub(crate) struct AtomicFile {
    path: std::path::PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// A temporary file in `path`'s directory (which must exist).
    pub(crate) fn create(path: &std::path::Path) -> std::io::Result<AtomicFile> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
        })
    }

    /// The temporary file, to write to.
    pub(crate) fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Flushes to disk and renames over the destination.
    pub(crate) fn commit(self) -> std::io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp
            .persist(&self.path)
            .map(|_| ())
            .map_err(|e| e.error)
    }
}

/// Writes `contents` to `path` through an [`AtomicFile`].
pub(crate) fn write_atomic(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.file().write_all(contents)?;
    f.commit()
}

/// Writes one row per agent, as results arrive: JSON Lines when the file ends in `.json`
/// or `.jsonl` (one object per agent), else CSV with cells that a spreadsheet would run as
/// formulas neutralised. Rows go to a temporary file beside FILE, renamed over it by
/// [`ReportWriter::finish`].
pub(crate) struct ReportWriter {
    path: std::path::PathBuf,
    out: ReportOut,
    error: Option<String>,
}

enum ReportOut {
    Csv(Box<csv::Writer<AtomicFile>>),
    Json(std::io::BufWriter<AtomicFile>),
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

fn report_error(path: &std::path::Path, e: &dyn std::fmt::Display) -> String {
    format!("writing the report {}: {e}", path.display())
}

impl ReportWriter {
    pub(crate) fn create(path: &std::path::Path) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Display| report_error(path, e);
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json") || e.eq_ignore_ascii_case("jsonl"));
        let file = AtomicFile::create(path).map_err(|e| err(&e))?;
        let out = if json {
            ReportOut::Json(std::io::BufWriter::new(file))
        } else {
            let mut w = csv::Writer::from_writer(file);
            w.write_record([
                "email",
                "outcome",
                "run_id",
                "connect_user_id",
                "identity_user_id",
                "error",
            ])
            .map_err(|e| err(&e))?;
            ReportOut::Csv(Box::new(w))
        };
        Ok(ReportWriter {
            path: path.to_path_buf(),
            out,
            error: None,
        })
    }

    pub(crate) fn add(&mut self, a: &app::AgentResult) {
        let res = match &mut self.out {
            ReportOut::Json(w) => serde_json::to_string(a)
                .map_err(|e| e.to_string())
                .and_then(|line| writeln!(w, "{line}").map_err(|e| e.to_string())),
            ReportOut::Csv(w) => {
                let cells = [
                    a.email.as_str(),
                    a.outcome.as_str(),
                    a.run_id.as_deref().unwrap_or_default(),
                    a.connect_user_id.as_deref().unwrap_or_default(),
                    a.identity_user_id.as_deref().unwrap_or_default(),
                    a.error.as_deref().unwrap_or_default(),
                ];
                w.write_record(cells.iter().map(|c| neutralize_csv_cell(c)))
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = res {
            self.error.get_or_insert(e);
        }
    }

    /// Renames the complete report into place (unless a row failed to be written).
    pub(crate) fn finish(self) -> Result<(), String> {
        let file = match self.out {
            ReportOut::Json(w) => w.into_inner().map_err(|e| e.error().to_string()),
            ReportOut::Csv(w) => w.into_inner().map_err(|e| e.error().to_string()),
        };
        let done = match (self.error, file) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(f)) => f.commit().map_err(|e| e.to_string()),
        };
        done.map_err(|e| report_error(&self.path, &e))
    }
}

/// Writes a sign-in notice per agent that is done, and `notices.csv` (email, username,
/// portal URL) for a mail merge, as results arrive. Each file is renamed into place whole.
pub(crate) struct NoticeWriter {
    dir: std::path::PathBuf,
    merge: csv::Writer<AtomicFile>,
    error: Option<String>,
}

impl NoticeWriter {
    pub(crate) fn create(dir: &std::path::Path) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Display| format!("writing notices in {}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        let file = AtomicFile::create(&dir.join("notices.csv")).map_err(|e| err(&e))?;
        let mut merge = csv::Writer::from_writer(file);
        merge
            .write_record(["email", "username", "portal_url"])
            .map_err(|e| err(&e))?;
        Ok(NoticeWriter {
            dir: dir.to_path_buf(),
            merge,
            error: None,
        })
    }

    pub(crate) fn add(&mut self, a: &app::AgentResult) {
        let Some(url) = &a.portal_url else { return };
        let text = format!(
            "Hello,\n\nyour Amazon Connect agent account is ready.\n\nUsername: {email}\nSign in at: {url}\n\nThe first time, choose \"Forgot password\" on that page to set your password (IAM Identity Center sends no invitation email); then open \"Amazon Connect\".\n",
            email = a.email
        );
        let file = self
            .dir
            .join(format!("{}.txt", a.email.replace(['/', '\\'], "_")));
        let res = write_atomic(&file, text.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|_| {
                self.merge
                    .write_record([&a.email, &a.email, url].map(|c| neutralize_csv_cell(c)))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = res {
            self.error.get_or_insert(e);
        }
    }

    pub(crate) fn finish(self) -> Result<(), String> {
        let done = match (self.error, self.merge.into_inner()) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(e.error().to_string()),
            (None, Ok(f)) => f.commit().map_err(|e| e.to_string()),
        };
        done.map_err(|e| format!("writing notices in {}: {e}", self.dir.display()))
    }
}

/// Single-agent commands: one progress line per wait between two tries of an AWS call.
pub(crate) fn wait_printer(json: bool) -> Option<app::WaitFn> {
    if json {
        return None;
    }
    Some(app::WaitFn(Arc::new(|w: &app::Wait| {
        eprintln!(
            "[{}] {}: {}, retrying in {:.2} s (try {}; gives up in {} s)",
            w.who.as_deref().unwrap_or("start-up read"),
            w.api,
            w.code,
            w.wait.as_secs_f64(),
            w.tries + 1,
            w.left.as_secs()
        );
    })))
}

/// Batches: waits between tries are counted, and the meter shows the count.
pub(crate) fn wait_counter(waits: &Arc<AtomicU64>) -> app::WaitFn {
    let waits = waits.clone();
    app::WaitFn(Arc::new(move |_: &app::Wait| {
        waits.fetch_add(1, Ordering::Relaxed);
    }))
}

/// Progress of a batch on stderr: a bar on a terminal (finished well / not / remaining,
/// rate, ETA), a line every few seconds otherwise, nothing with `--json`. A dry run counts
/// agents `planned`. The rate and the ETA are shown only once [`Pace::meaningful`]: the
/// first agents finish on the buckets' bursts, faster than the quota lets the rest go.
pub(crate) enum Meter {
    /// `--json`: stdout carries the JSON only, stderr stays quiet.
    Off,
    /// Waiting for the number of agents.
    Ready { dry_run: bool },
    /// A terminal.
    Bar {
        bar: indicatif::ProgressBar,
        pace: Pace,
        waits: Arc<AtomicU64>,
    },
    /// A pipe or a log file.
    Lines {
        pace: Pace,
        last: std::time::Instant,
        waits: Arc<AtomicU64>,
    },
}

/// How often a non-terminal progress line is printed.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Counts and timing of a batch's finished agents.
pub(crate) struct Pace {
    total: usize,
    ok: usize,
    not_ok: usize,
    /// What a good outcome is called (`done`, or `planned` in a dry run).
    good: &'static str,
    started: std::time::Instant,
}

/// Finished agents before a rate is shown.
const RATE_AFTER_AGENTS: usize = 10;
/// Seconds of running before a rate is shown.
const RATE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl Pace {
    fn new(total: usize, dry_run: bool) -> Pace {
        Pace {
            total,
            ok: 0,
            not_ok: 0,
            good: if dry_run { "planned" } else { "done" },
            started: std::time::Instant::now(),
        }
    }

    fn add(&mut self, a: &app::AgentResult) {
        if a.outcome.finished_well() {
            self.ok += 1
        } else {
            self.not_ok += 1
        }
    }

    fn finished(&self) -> usize {
        self.ok + self.not_ok
    }

    /// Enough agents have finished, over long enough, for a rate to mean something.
    fn meaningful(finished: usize, elapsed: std::time::Duration) -> bool {
        finished >= RATE_AFTER_AGENTS && elapsed >= RATE_AFTER
    }

    /// `N done, M not done`, then the rate and ETA once they mean something.
    fn summary(&self, waits: u64) -> String {
        let n = self.finished();
        let elapsed = self.started.elapsed();
        let mut s = format!(
            "{} {}, {} not {}",
            self.ok, self.good, self.not_ok, self.good
        );
        if Pace::meaningful(n, elapsed) && n < self.total {
            let rate = n as f64 / elapsed.as_secs_f64();
            let eta = (self.total - n) as f64 / rate;
            s.push_str(&format!(", {rate:.2} agents/s, ETA {eta:.0} s"));
        }
        s.push_str(&format!(", {waits} calls waited to retry"));
        s
    }
}

impl Meter {
    pub(crate) fn new(json: bool, dry_run: bool) -> Meter {
        if json {
            Meter::Off
        } else {
            Meter::Ready { dry_run }
        }
    }

    /// Starts showing `total` agents; `waits` counts the calls retried after throttling.
    pub(crate) fn start(&mut self, total: usize, waits: Arc<AtomicU64>) {
        use std::io::IsTerminal;
        let Meter::Ready { dry_run } = *self else {
            return;
        };
        let pace = Pace::new(total, dry_run);
        *self = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} agents · {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Meter::Bar { bar, pace, waits }
        } else {
            Meter::Lines {
                pace,
                last: std::time::Instant::now(),
                waits,
            }
        };
    }

    pub(crate) fn tick(&mut self, a: &app::AgentResult) {
        match self {
            Meter::Off | Meter::Ready { .. } => {}
            Meter::Bar { bar, pace, waits } => {
                pace.add(a);
                bar.inc(1);
                bar.set_message(pace.summary(waits.load(Ordering::Relaxed)));
            }
            Meter::Lines { pace, last, waits } => {
                pace.add(a);
                let n = pace.finished();
                if last.elapsed() >= PROGRESS_EVERY || n == pace.total {
                    *last = std::time::Instant::now();
                    eprintln!(
                        "progress: {n}/{} agents ({})",
                        pace.total,
                        pace.summary(waits.load(Ordering::Relaxed))
                    );
                }
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Meter::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

/// `doctor`: one line per check (status, id, evidence, fix), or the report as JSON.
pub(crate) fn print_doctor(r: &app::DoctorReport, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::json!(r));
        return;
    }
    let _ = writeln!(out, "doctor {}", r.agent);
    for c in &r.checks {
        let mark = match c.status {
            app::CheckStatus::Ok => "ok",
            app::CheckStatus::Problem => "PROBLEM",
            app::CheckStatus::Unknown => "unknown",
        };
        let _ = writeln!(out, "  [{mark}] {}: {}", c.id, c.detail);
        if let Some(f) = &c.fix {
            let _ = writeln!(out, "      fix: {f}");
        }
    }
    let problems = (r.checks.iter())
        .filter(|c| c.status != app::CheckStatus::Ok)
        .count();
    let _ = if problems == 0 {
        writeln!(out, "all {} checks passed", r.checks.len())
    } else {
        writeln!(out, "{problems} of {} checks did not pass", r.checks.len())
    };
}

/// `drift`: counts, then one line per agent that is not complete, with its fix; or JSON.
pub(crate) fn print_drift(r: &app::DriftReport, plan: Option<&std::path::Path>, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::json!(r));
        return;
    }
    eprintln!(
        "read {} Connect users, {} Identity Center users, {} group members in {:.1} s",
        r.read.connect_users,
        r.read.identity_users,
        r.read.members,
        r.read.elapsed.as_secs_f64()
    );
    let counts: Vec<String> = (r.counts.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "agents: {} ({})",
        r.agents.len(),
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    );
    for a in r
        .agents
        .iter()
        .filter(|a| a.status != app::DriftStatus::Complete)
    {
        let who = match (&a.connect_username, &a.identity_user_name) {
            (Some(c), _) => c.clone(),
            (None, Some(i)) => format!("{i} (Identity Center)"),
            (None, None) => "?".into(),
        };
        let _ = writeln!(
            out,
            "  {:<24} {who}: {}",
            a.status.as_str(),
            a.fix.as_deref().unwrap_or_default()
        );
    }
    if let Some(dir) = plan {
        // The commands whose files have rows, in the order that converges: a wrongly named
        // Connect user goes before batch makes the right one.
        let fp = r.plan();
        let commands: Vec<&str> = [
            (!fp.offboard.is_empty()).then_some("offboard --connect-only --file offboard.csv"),
            (!fp.batch.is_empty()).then_some("batch batch.csv"),
            (!fp.migrate_usernames.is_empty())
                .then_some("migrate --usernames migrate-usernames.txt"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = if commands.is_empty() {
            writeln!(
                out,
                "fix plan in {}: nothing to run (what is left is fixed by hand: see each fix above)",
                dir.display()
            )
        } else {
            writeln!(
                out,
                "fix plan in {}: review, then run {}",
                dir.display(),
                commands.join(", ")
            )
        };
    }
}

/// Writes the fix plan's files into `dir`: `migrate-usernames.txt` (one Connect username
/// per line, exact, as `migrate --usernames` reads it), `batch.csv` (native CSV:
/// email,first_name,last_name) and `offboard.csv` (email: the Connect username to remove, with
/// `offboard --connect-only`).
pub(crate) fn write_fix_plan(dir: &std::path::Path, plan: &app::FixPlan) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("writing the fix plan in {}: {e}", dir.display());
    let mut usernames = String::from(
        "# Connect usernames for: connect-onboard migrate --usernames migrate-usernames.txt\n",
    );
    for u in &plan.migrate_usernames {
        usernames.push_str(u);
        usernames.push('\n');
    }
    let csv_of = |header: &[&str], rows: &mut dyn Iterator<Item = Vec<&str>>| {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(header).map_err(|e| err(&e))?;
        for r in rows {
            w.write_record(r).map_err(|e| err(&e))?;
        }
        w.into_inner().map_err(|e| err(e.error()))
    };
    let batch = csv_of(
        &["email", "first_name", "last_name"],
        &mut plan
            .batch
            .iter()
            .map(|(e, f, l)| vec![e.as_str(), f.as_str(), l.as_str()]),
    )?;
    let offboard = csv_of(
        &["email"],
        &mut plan.offboard.iter().map(|l| vec![l.as_str()]),
    )?;
    // Every file is whole or not there: each is renamed into place once written.
    std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    for (name, bytes) in [
        ("migrate-usernames.txt", usernames.into_bytes()),
        ("batch.csv", batch),
        ("offboard.csv", offboard),
    ] {
        write_atomic(&dir.join(name), &bytes).map_err(|e| err(&e))?;
    }
    Ok(())
}

/// `iam-policy`: the policy document, pretty-printed (it is JSON with or without `--json`).
pub(crate) fn print_policy(policy: &serde_json::Value) {
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(policy).unwrap_or_default()
    );
}

/// What `rollback` would delete, per agent, with ids. `--dry-run` prints it on stdout (or
/// `{"dry_run": true, "run_id", "agents": [{"email", "state", "remove": [{"step",
/// "resources"}], "adopted_by": [run]}]}`); before a confirmation it goes to stderr, the question following it.
pub(crate) fn print_rollback_plan(
    run: &str,
    plan: &[app::PlannedRollback],
    dry_run: bool,
    json: bool,
) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": dry_run, "run_id": run, "agents": plan })
        );
        return;
    }
    let mut lines = vec![format!(
        "rollback of run {run}: {} agent(s); these deletions cannot be undone{}:",
        plan.len(),
        if dry_run {
            " (dry run, nothing touched)"
        } else {
            ""
        }
    )];
    for p in plan {
        lines.push(format!("  {} ({})", p.email, p.state.as_str()));
        if p.remove.is_empty() {
            lines.push("    nothing this run created is left".into());
        }
        for r in &p.remove {
            let ids: Vec<String> = r
                .resources
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            lines.push(format!("    {}: delete ({})", r.step, ids.join(" ")));
        }
        for run in &p.adopted_by {
            lines.push(format!(
                "    run {run} adopted some of it: it will show the agent interrupted, to resume"
            ));
        }
    }
    lines.push("  (adopted and shared resources are kept)".into());
    for l in lines {
        if dry_run {
            println!("{l}");
        } else {
            eprintln!("{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Pace;

    #[test]
    fn a_rate_is_shown_only_after_enough_agents_and_time() {
        assert!(
            !Pace::meaningful(3, Duration::from_secs(60)),
            "too few agents"
        );
        assert!(
            !Pace::meaningful(50, Duration::from_secs(2)),
            "too early: the burst"
        );
        assert!(Pace::meaningful(10, Duration::from_secs(10)));
    }
}
