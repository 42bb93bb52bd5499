//! Row mapping: a `runs`, `agents` or `steps` row as the journal's [`RunRow`],
//! [`AgentRow`] or [`StepRow`]. A stored value that does not parse is an error naming it
//! (`Ok(Err(..))`), distinct from SQLite's own errors.

use std::collections::BTreeMap;

use crate::engine::journal::{AgentRow, StepRow};
use crate::engine::{AgentKey, AgentState, OnFailure, RunId, StepId, StepState};
use crate::store::{Error, Result, RunRow};

pub(super) fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RunRow>> {
    let meta: String = r.get(4)?;
    Ok(Ok(RunRow {
        id: RunId::from(r.get::<_, String>(0)?),
        created_at: r.get(1)?,
        workflow_name: r.get(2)?,
        workflow: r.get(3)?,
        meta: match serde_json::from_str(&meta) {
            Ok(m) => m,
            Err(source) => {
                return Ok(Err(Error::Corrupt {
                    what: "run meta",
                    source,
                }))
            }
        },
    }))
}

pub(super) fn agent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AgentRow>> {
    let subject: String = r.get(2)?;
    Ok(Ok(AgentRow {
        run_id: RunId::from(r.get::<_, String>(0)?),
        agent_key: AgentKey::from(r.get::<_, String>(1)?),
        subject: match serde_json::from_str(&subject) {
            Ok(s) => s,
            Err(source) => {
                return Ok(Err(Error::Corrupt {
                    what: "agent subject",
                    source,
                }))
            }
        },
        state: match AgentState::parse(&r.get::<_, String>(3)?) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.into())),
        },
        on_failure: match OnFailure::parse(&r.get::<_, String>(4)?) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.into())),
        },
        last_error: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    }))
}

/// A `steps` row (the columns of [`Store::steps`]'s query) as a [`StepRow`].
pub(super) fn step_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StepRow>> {
    let outputs: Option<String> = r.get(5)?;
    let mut row = StepRow {
        step_id: StepId::from(r.get::<_, String>(0)?),
        seq: r.get(1)?,
        state: StepState::Pending,
        owned: r.get(3)?,
        unresolved: r.get(4)?,
        outputs: BTreeMap::new(),
        attempts: r.get(6)?,
        first_write_ms: r.get(7)?,
        last_write_ms: r.get(10)?,
        last_error: r.get(8)?,
        updated_at: r.get(9)?,
    };
    let state = r.get::<_, String>(2)?;
    row.state = match StepState::parse(&state) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.into())),
    };
    if let Some(o) = outputs {
        row.outputs = match serde_json::from_str(&o) {
            Ok(o) => o,
            Err(source) => {
                return Ok(Err(Error::Corrupt {
                    what: "step outputs",
                    source,
                }))
            }
        };
    }
    Ok(Ok(row))
}
