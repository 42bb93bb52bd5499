//! The files a command writes besides its output: reports, sign-in notices and drift's fix
//! plan. Each is written to a temporary file beside its destination and renamed into place
//! when complete, and only once the command is going to write (never for a rejected one).

use std::io::Write;

use crate::agent::reader::neutralize_csv_cell;
use crate::app;

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
    /// The `changes` column is written (`apply`).
    changes: bool,
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
    /// A report at `path`; `changes`: with a `changes` column after `outcome` (`apply`).
    pub(crate) fn create(path: &std::path::Path, changes: bool) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Display| report_error(path, e);
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json") || e.eq_ignore_ascii_case("jsonl"));
        let file = AtomicFile::create(path).map_err(|e| err(&e))?;
        let out = if json {
            ReportOut::Json(std::io::BufWriter::new(file))
        } else {
            let mut w = csv::Writer::from_writer(file);
            let mut header = vec!["email", "outcome"];
            if changes {
                header.push("changes");
            }
            header.extend(["run_id", "connect_user_id", "identity_user_id", "error"]);
            w.write_record(header).map_err(|e| err(&e))?;
            ReportOut::Csv(Box::new(w))
        };
        Ok(ReportWriter {
            path: path.to_path_buf(),
            out,
            error: None,
            changes,
        })
    }

    pub(crate) fn add(&mut self, a: &app::AgentResult) {
        let res = match &mut self.out {
            ReportOut::Json(w) => serde_json::to_string(a)
                .map_err(|e| e.to_string())
                .and_then(|line| writeln!(w, "{line}").map_err(|e| e.to_string())),
            ReportOut::Csv(w) => {
                let mut cells = vec![a.email.as_str(), a.outcome.as_str()];
                if self.changes {
                    cells.push(a.changes.as_deref().unwrap_or_default());
                }
                cells.extend([
                    a.run_id.as_deref().unwrap_or_default(),
                    a.connect_user_id.as_deref().unwrap_or_default(),
                    a.identity_user_id.as_deref().unwrap_or_default(),
                    a.error.as_deref().unwrap_or_default(),
                ]);
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
