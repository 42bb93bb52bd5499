//! The run driver: how every command that drives agents (`batch`, `migrate`, `offboard`,
//! `resume`, `retry`) drives them — each agent with the engine of its run, `--concurrency`
//! at a time, one agent's failure never stopping another, and the first failure of the
//! state file itself stopping the start of any further agent (each one left resumable
//! where its last checkpoint stands). Also the one place that says which direction a
//! stored run goes (onboarding or offboarding).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use futures::stream::{Stream, StreamExt};

use crate::engine::{self, AgentKey, AgentOutcome, Engine, JournalError, RunId, Secrets, Workflow};
use crate::steps::Subject;
use crate::store::{RunRow, RunStore};

use super::Error;

/// How to drive one agent.
#[derive(Debug, Clone)]
pub(super) enum Drive {
    /// Go on from its checkpoints: a new agent, or an unfinished one.
    Resume,
    /// Start its failed or rolled-back steps over, with this subject (a corrected row).
    RetryWith(serde_json::Value),
    /// Start its failed or rolled-back steps over, with the subject it has.
    Retry,
}

/// One agent to drive: its run, its key, and how.
#[derive(Debug, Clone)]
pub(super) struct Work {
    /// The run that holds it.
    pub run: RunId,
    /// Its key.
    pub key: AgentKey,
    /// How.
    pub how: Drive,
}

/// What became of one agent of [`drive`].
pub(super) struct Driven {
    /// The agent.
    pub work: Work,
    /// The engine's answer; `None` when the agent was not started because the state file
    /// had failed.
    pub result: Option<Result<AgentOutcome, engine::Error>>,
}

/// What [`drive`] needs besides the work.
pub(super) struct Drivers<'a> {
    /// The engine of each run, by run id.
    pub engines: &'a BTreeMap<RunId, Engine<Subject>>,
    /// The in-memory secrets of an agent (its password), by key.
    pub secrets: &'a (dyn Fn(&AgentKey) -> Secrets + Sync),
    /// Agents in flight at once.
    pub concurrency: usize,
    /// Told each agent's key once it was driven (a batch's bulk reads forget it).
    pub after: Option<&'a (dyn Fn(&AgentKey) + Sync)>,
    /// Once set, no further agent is started (a stop was asked for).
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Drives `work`, `concurrency` agents at a time; `done` hears of each agent as it
/// finishes (in the order they finish), and an error from it stops the drive. Returns the
/// state file's failure if one stopped it: no agent started after it, so none was sent a
/// write whose intent could not be recorded.
pub(super) async fn drive(
    d: &Drivers<'_>,
    work: impl Stream<Item = Result<Work, Error>>,
    mut done: impl AsyncFnMut(Driven) -> Result<(), Error>,
) -> Result<Option<String>, Error> {
    let stopped: Mutex<Option<String>> = Mutex::new(None);
    let mut results = Box::pin(
        work.map(|item| {
            let stopped = &stopped;
            async move {
                let work = item?;
                let asked = d
                    .stop
                    .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst));
                if asked || stopped.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                    return Ok(Driven { work, result: None });
                }
                let engine = d.engines.get(&work.run).ok_or_else(|| {
                    Error::Input(format!("no engine for run {} (a bug)", work.run))
                })?;
                let secrets = (d.secrets)(&work.key);
                let r = match &work.how {
                    Drive::Resume => engine.run_agent(&work.run, &work.key, &secrets).await,
                    Drive::Retry => {
                        engine
                            .retry_agent(&work.run, &work.key, &secrets, None)
                            .await
                    }
                    Drive::RetryWith(subject) => {
                        engine
                            .retry_agent(&work.run, &work.key, &secrets, Some(subject))
                            .await
                    }
                };
                if let Some(after) = d.after {
                    after(&work.key);
                }
                if let Err(engine::Error::Journal(JournalError::Storage(why))) = &r {
                    stopped
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| why.clone());
                }
                Ok::<_, Error>(Driven {
                    work,
                    result: Some(r),
                })
            }
        })
        .buffer_unordered(d.concurrency.max(1)),
    );
    while let Some(driven) = results.next().await {
        done(driven?).await?;
    }
    drop(results);
    Ok(stopped.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Which way a stored run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// It creates agents (onboard, migrate).
    Onboards,
    /// It removes them (offboard: its workflow has irreversible steps).
    Offboards,
}

impl Direction {
    /// The direction of a workflow.
    pub fn of(wf: &Workflow) -> Direction {
        if wf.irreversible_steps().is_empty() {
            Direction::Onboards
        } else {
            Direction::Offboards
        }
    }
}

/// The direction of stored runs, each worked out once from its workflow snapshot.
#[derive(Default)]
pub(super) struct Directions(HashMap<RunId, Direction>);

impl Directions {
    /// The direction of run `run`.
    pub async fn of(&mut self, store: &dyn RunStore, run: &RunId) -> Result<Direction, Error> {
        if let Some(d) = self.0.get(run) {
            return Ok(*d);
        }
        let d = direction_of_row(&store.run(run).await?);
        self.0.insert(run.clone(), d);
        Ok(d)
    }
}

/// The direction of a stored run, from its workflow snapshot.
pub(super) fn direction_of_row(run: &RunRow) -> Direction {
    if Workflow::declares_irreversible(&run.workflow) {
        Direction::Offboards
    } else {
        Direction::Onboards
    }
}
