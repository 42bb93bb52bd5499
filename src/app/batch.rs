//! `batch`: a file of agents (the console's bulk-upload CSV, native CSV or JSON Lines) as
//! one run. Every row is validated and resolved before the first write (all errors at
//! once); agents then run concurrently, each its own checkpointed saga, paced per AWS API
//! by the clients' shared pacer. Re-running the same file is safe: agents done in an
//! earlier run are reported done with zero writes, unfinished ones resume in their run,
//! failed or rolled-back ones are tried again in the new run.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::agent::reader::Reader;
use crate::agent::{self, FieldError};
use crate::preflight::{self, Target};

use super::phase::{run_rows, BatchReport, Phase, Rejected, RunOptions, Sink, Valid};
use super::{Context, Error, NewRun, RunSettings, WorkflowSource};

/// What `batch` was asked to do.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The agent file.
    pub file: PathBuf,
    /// Report invalid rows and go on with the valid ones (else: exit 2, nothing written).
    pub skip_invalid: bool,
    /// How to run the agents.
    pub run: RunOptions,
}

/// The file's rows, each validated and resolved: a valid agent or its problems, each naming
/// `file:line`, the column and the rule. Duplicates (same normalised email) name both lines.
/// Streams: only a 128-bit hash of each email seen so far is held (with its line), for the
/// duplicate check.
struct Checked<'a> {
    reader: Reader,
    file: String,
    seen: HashMap<u128, u64>,
    hashers: (std::hash::RandomState, std::hash::RandomState),
    defaults: &'a agent::Defaults,
    target: &'a Target,
    catalog: &'a preflight::Catalog,
}

impl<'a> Checked<'a> {
    fn open(
        path: &std::path::Path,
        defaults: &'a agent::Defaults,
        target: &'a Target,
        catalog: &'a preflight::Catalog,
    ) -> Result<Self, Error> {
        let reader = Reader::open(path).map_err(|errs| Error::unreadable(&errs))?;
        Ok(Checked {
            file: reader.file_name().to_string(),
            reader,
            seen: HashMap::new(),
            hashers: Default::default(),
            defaults,
            target,
            catalog,
        })
    }
}

impl Iterator for Checked<'_> {
    type Item = Result<Valid, Rejected>;

    fn next(&mut self) -> Option<Self::Item> {
        // Every problem of the row at once: its cells that cannot be read, then the rules
        // on the rest of it (a field whose cell failed is not judged again).
        let (row, mut problems, failed) = match self.reader.next()? {
            Ok(r) => (r, Vec::new(), Vec::new()),
            Err(errs) => {
                let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
                let Some(row) = self.reader.take_partial() else {
                    return Some(Err(Rejected {
                        who: None,
                        problems: shown,
                    }));
                };
                let failed: Vec<String> = errs.into_iter().filter_map(|e| e.column).collect();
                (row, shown, failed)
            }
        };
        let who = Some(row.input.email.trim().to_string()).filter(|e| !e.is_empty());
        let reject = |problems: Vec<String>| {
            Some(Err(Rejected {
                who: who.clone(),
                problems,
            }))
        };
        let file = &self.file;
        let at = |fe: &FieldError| match row.column_for(&fe.field) {
            Some(col) => format!("{file}:{}: column {col:?}: {fe}", row.line),
            None => format!("{file}:{}: {fe}", row.line),
        };
        let spec = match agent::validate(&row.input, self.defaults, self.target.identity_mode) {
            Ok(s) => s,
            Err(e) => {
                problems.extend(
                    (e.0.iter())
                        .filter(|fe| {
                            row.column_for(&fe.field)
                                .is_none_or(|c| !failed.iter().any(|f| f == c))
                        })
                        .map(at),
                );
                return reject(problems);
            }
        };
        use std::hash::BuildHasher;
        let key = (u128::from(self.hashers.0.hash_one(&spec.email)) << 64)
            | u128::from(self.hashers.1.hash_one(&spec.email));
        if let Some(first) = self.seen.get(&key) {
            problems.push(format!(
                "{file}:{}: agent {} is already on line {first}: one row per agent (emails compare without case)",
                row.line, spec.email
            ));
            return reject(problems);
        }
        self.seen.insert(key, row.line);
        let password = row.input.password.clone();
        if spec.needs_password
            && password.is_none()
            && !failed
                .iter()
                .any(|c| Some(c.as_str()) == row.column_for("password"))
        {
            problems.push(format!(
                "{file}:{}: invalid password <redacted>: instance {} stores users in Amazon Connect (CONNECT_MANAGED): each row needs a password",
                row.line, self.target.instance_id
            ));
        }
        if !problems.is_empty() {
            return reject(problems);
        }
        match preflight::resolve(spec, self.catalog) {
            Ok(subject) => Some(Ok(Valid { subject, password })),
            Err(errs) => reject(errs.iter().map(at).collect()),
        }
    }
}

/// Runs `batch`. `sink` receives every agent's result as it is known (the CLI streams them
/// to the report and the notices); the returned report keeps counts and the agents that
/// are not done, so memory stays bounded by the concurrency, not the file.
pub async fn batch(
    ctx: &Context,
    opts: &BatchOptions,
    settings: &RunSettings,
    sink: &mut dyn Sink,
) -> Result<BatchReport, Error> {
    let config = ctx.config()?;
    let NewRun {
        clients,
        wf,
        target,
        catalog,
    } = ctx.new_run(WorkflowSource::Onboard).await?;

    // Pass 1: every row checked, nothing kept but the problems.
    let mut rejected = Vec::new();
    let mut valid = 0usize;
    for row in Checked::open(&opts.file, &config.defaults, &target, &catalog)? {
        match row {
            Ok(_) => valid += 1,
            Err(r) => rejected.push(r),
        }
    }
    if valid == 0 && rejected.is_empty() {
        return Err(Error::Input(format!(
            "{}: no agent rows, only a header: nothing to onboard; nothing was written",
            opts.file.display()
        )));
    }
    if !rejected.is_empty() && !opts.skip_invalid {
        let problems: Vec<String> = rejected.into_iter().flat_map(|r| r.problems).collect();
        let summary = format!(
            "{} problem(s) in {}; nothing was written (fix them, or pass --skip-invalid to onboard the valid rows only)",
            problems.len(),
            opts.file.display()
        );
        return Err(Error::Invalid { problems, summary });
    }
    let rows = || -> Result<Box<dyn Iterator<Item = Valid> + '_>, Error> {
        Ok(Box::new(
            Checked::open(&opts.file, &config.defaults, &target, &catalog)?.filter_map(Result::ok),
        ))
    };
    let phase = Phase {
        clients: &clients,
        target: &target,
        wf,
        early: Vec::new(),
        valid,
        rejected,
        rows: &rows,
        opts: &opts.run,
        settings,
        listed: None,
        redo_done: false,
    };
    run_rows(ctx, phase, sink).await
}
