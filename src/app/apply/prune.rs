//! `--prune`: the managed agents with no row, removed as `offboard` removes them, behind
//! the guard against a truncated roster; and a saved plan's rows checked against what AWS
//! shows now (`stale`).

use std::collections::HashSet;

use serde_json::Value;

use crate::agent::fold::fold;
use crate::preflight::Target;
use crate::steps::snapshot::Snapshot;

use super::super::offboard::{offboard, OffboardOptions, Sides};
use super::super::phase::{BulkReads, RunOptions, Sink};
use super::super::{Context, Error, RunSettings};
use super::plan::Planned;
use super::saved::{Action, PlanRow};
use super::ApplyOptions;

/// Removals allowed without `--max-remove`: 10 % of the managed agents or 25, whichever is
/// larger.
pub(crate) fn guard(managed: usize) -> usize {
    (managed / 10).max(25)
}

/// The managed agents (Connect users whose Identity Center user is a member of the agents'
/// group) that the roster does not name, as `remove` rows, and those that cannot be
/// pruned, as `conflict` rows; refused past the guard.
/// `planned`: a saved plan's removals (only those, if still managed, are removed).
pub(super) fn removals(
    snapshot: &Snapshot,
    target: &Target,
    roster: &HashSet<String>,
    planned: Option<Vec<&PlanRow>>,
    max_remove: Option<usize>,
    sync: bool,
) -> Result<(Vec<PlanRow>, Vec<PlanRow>), Error> {
    let mut managed: Vec<(String, String)> = Vec::new();
    for u in snapshot.connect_users() {
        let Some(idu) = snapshot.identity_user(&u.username) else {
            continue;
        };
        if snapshot.membership(&idu.id).is_some() {
            managed.push((u.username.clone(), idu.user_name.clone()));
        }
    }
    managed.sort();
    let allowed: Option<HashSet<String>> =
        planned.map(|p| p.iter().map(|r| fold(&r.agent)).collect());
    let (mut out, mut odd) = (Vec::new(), Vec::new());
    let leaving = (managed.iter())
        .filter(|(username, _)| !roster.contains(&fold(username)))
        .filter(|(username, _)| allowed.as_ref().is_none_or(|a| a.contains(&fold(username))));
    for (username, idu) in leaving {
        // `sync`: the Connect user alone is deleted, found by its exact username (offboard
        // keeps the case typed); the Identity Center user belongs to the identity provider.
        if sync {
            out.push(PlanRow {
                agent: username.clone(),
                action: Action::Remove,
                changes: Vec::new(),
                detail: Some(format!(
                    "in no mapped group: Connect user {username:?} is deleted (offboard --connect-only); Identity Center user {idu:?} is not touched"
                )),
            });
            continue;
        }
        let agent = username.to_lowercase();
        // Offboarding finds a Connect user by the agent's email: a username in other case
        // is not found by it (and cannot sign in anyway): fixed by hand, not pruned.
        if *username != agent {
            odd.push(PlanRow {
                agent,
                action: Action::Conflict,
                changes: Vec::new(),
                detail: Some(format!(
                    "not in the roster, but its Connect username {username:?} is not its email in lower case, so it is not pruned: see `connect-onboard drift --fix-plan`"
                )),
            });
            continue;
        }
        out.push(PlanRow {
            agent,
            action: Action::Remove,
            changes: Vec::new(),
            detail: Some(format!(
                "not in the roster: Connect user {username:?} and Identity Center user {idu:?} (member of {:?}) are offboarded",
                target.group
            )),
        });
    }
    let limit = guard(managed.len());
    if out.len() > limit && max_remove.is_none_or(|m| out.len() > m) {
        return Err(Error::Input(format!(
            "--prune would remove {} of the {} managed agents (members of {:?}), more than the guard allows ({limit}: 10 % of them or 25, whichever is larger); a truncated or wrong roster is the commonest way to empty a contact center. Nothing was written. If these removals are meant, pass --max-remove {}",
            out.len(),
            managed.len(),
            target.group,
            out.len()
        )));
    }
    Ok((out, odd))
}

/// A saved plan's row against a fresh plan of the same agent: the change still holds
/// (`before` is what AWS shows, or AWS already shows `after`), or the agent is `stale`.
pub(super) fn against_saved(was: &PlanRow, now: Planned) -> Planned {
    let stale = |why: String| {
        Planned::Decided(PlanRow {
            agent: was.agent.clone(),
            action: was.action,
            changes: was.changes.clone(),
            detail: Some(format!("{why}; nothing was written for this agent")),
        })
    };
    match (&was.action, &now) {
        (Action::Create, Planned::Run(p, _)) if p.action == Action::Create => now,
        // Created already, as planned (the plan applied before): nothing left to do.
        (Action::Create, Planned::Decided(p)) if p.action == Action::Unchanged => now,
        (Action::Create, Planned::Run(..) | Planned::Decided(_)) => {
            stale("the plan creates this agent, but it exists now".into())
        }
        (Action::Update, Planned::Run(p, _)) if p.action == Action::Create => {
            stale("the plan updates this agent, but its Connect user no longer exists".into())
        }
        (Action::Update, Planned::Run(p, _)) => {
            for c in &was.changes {
                if let Some(n) = p.changes.iter().find(|n| n.field == c.field) {
                    if n.before != c.before {
                        return stale(format!(
                            "{} is {} now, the plan expected {}",
                            c.field,
                            shown(&n.before),
                            shown(&c.before)
                        ));
                    }
                }
            }
            now
        }
        // Everything the plan changes is already so: nothing left to write.
        (Action::Update, Planned::Decided(p)) if p.action == Action::Unchanged => now,
        (_, Planned::Decided(p)) if p.action == Action::Conflict => now,
        (_, Planned::Rejected(_)) => now,
        _ => stale("the agent no longer matches the plan".into()),
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        other => other.to_string(),
    }
}

/// Offboards the removals in their own run (the offboarding workflow); its id.
pub(super) async fn run(
    ctx: &Context,
    removals: &[PlanRow],
    opts: &ApplyOptions,
    settings: &RunSettings,
    sync: bool,
    sink: &mut dyn Sink,
) -> Result<Option<String>, Error> {
    let off = OffboardOptions {
        emails: removals.iter().map(|r| r.agent.clone()).collect(),
        file: None,
        // `sync`: the Connect user alone (the identity provider owns the Identity Center user).
        sides: match sync {
            true => Sides::ConnectOnly,
            false => Sides::Both,
        },
        keep_identity_user: false,
        run: RunOptions {
            bulk_reads: BulkReads::Auto,
            ..opts.run.clone()
        },
    };
    // Confirmed already, for the plan as a whole.
    let report = offboard(ctx, &off, settings, &mut |_, _| Ok(()), sink).await?;
    Ok(report.run_id)
}
