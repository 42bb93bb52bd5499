//! `state copy FROM TO`: every run of one state store into another (a SQLite file into a
//! shared table, and back), so a team moves its history in one command. A run already in
//! TO with the same content is left as it is; one with other content refuses the copy
//! before anything is written.

use super::{parse_state, Context, Error};
use crate::engine::journal::{AgentRow, JournalError, StepRow};
use crate::engine::RunId;
use crate::store::{self, RunRow, RunStore};

/// What `state copy` did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// Runs written to TO, with their number of agents.
    pub copied: Vec<(String, usize)>,
    /// Runs TO already held with the same content (left as they are).
    pub present: Vec<String>,
}

type Run = (RunRow, Vec<(AgentRow, Vec<StepRow>)>);

async fn read_run(s: &dyn RunStore, run: RunRow) -> Result<Run, Error> {
    let mut agents = Vec::new();
    for a in s.agents(&RunId::from(run.id.as_str())).await? {
        let steps = s.steps(&run.id, &a.agent_key).await?;
        agents.push((a, steps));
    }
    Ok((run, agents))
}

/// Copies every run of `from` into `to` (either a path or `dynamodb://TABLE`): all runs
/// are compared first, and a run TO holds with other content stops the copy (exit 2)
/// before anything is written. TO must exist if it is a table (`init --state`).
pub async fn state_copy(ctx: &Context, from: &str, to: &str) -> Result<CopyReport, Error> {
    let (from_loc, to_loc) = (parse_state(from, "FROM")?, parse_state(to, "TO")?);
    if from_loc == to_loc {
        return Err(Error::Input(format!(
            "FROM and TO are the same store ({from_loc})"
        )));
    }
    let access = ctx.store_access();
    let src = store::open_existing(&from_loc, &access).await?;
    let dst = store::open(&to_loc, &access).await?;
    let mut report = CopyReport::default();
    let mut todo = Vec::new();
    for row in src.runs().await? {
        let run = read_run(&*src, row).await?;
        match dst.run(&run.0.id).await {
            Ok(theirs) => {
                let theirs = read_run(&*dst, theirs).await?;
                if theirs != run {
                    return Err(Error::Input(format!(
                        "run {} exists in {to_loc} with other content: nothing copied (copy into another store, or remove that run there first)",
                        run.0.id
                    )));
                }
                report.present.push(run.0.id.to_string());
            }
            Err(store::Error::Journal(JournalError::NotFound(_))) => todo.push(run),
            Err(e) => return Err(e.into()),
        }
    }
    for (run, agents) in todo {
        dst.import_run(&run, &agents).await?;
        report.copied.push((run.id.to_string(), agents.len()));
    }
    Ok(report)
}
