//! `migrate`: the instance's existing Connect agents get their IAM Identity Center half.
//! Each Connect user (all, or those the filters keep) becomes an agent of
//! `workflows/migrate-agent.toml`: the Connect user adopted (never created, never deleted),
//! the Identity Store user created with `UserName` = the Connect username exactly, case
//! kept, as its one primary email; then the group membership and the assignment. The run
//! itself is `batch`'s: bulk reads, pacing, re-runs, report, notices, status, retry.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use futures::stream::{self, StreamExt};

use crate::agent::fold::fold;
use crate::agent::{self, IdentityMode};
use crate::aws::{ConnectApi, ConnectUser};
use crate::preflight::{self, Catalog};
use crate::steps::Subject;

use super::phase::{run_rows, BatchReport, Phase, Rejected, RunOptions, Sink, Valid};
use super::{Context, Error, NewRun, RunSettings, WorkflowSource};

/// The built-in migration workflow, embedded.
pub const BUILTIN_MIGRATE_WORKFLOW: &str = include_str!("../../workflows/migrate-agent.toml");

/// What `migrate` was asked to do.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Only users with one of these routing profiles (names or ids).
    pub routing_profiles: Vec<String>,
    /// Only users with one of these security profiles (names or ids).
    pub security_profiles: Vec<String>,
    /// Only users in this hierarchy group (name or id).
    pub hierarchy_group: Option<String>,
    /// Only these usernames (a file, one per line, exact).
    pub usernames: Option<PathBuf>,
    /// How to run the agents.
    pub run: RunOptions,
}

/// The filters, resolved to ids.
struct Filters {
    routing: BTreeSet<String>,
    security: BTreeSet<String>,
    hierarchy: Option<String>,
    usernames: Option<BTreeSet<String>>,
}

impl Filters {
    fn resolve(opts: &MigrateOptions, catalog: &Catalog) -> Result<Filters, Error> {
        let mut errs = Vec::new();
        let mut ids = |field: &str, what: &str, values: &[String], items| -> BTreeSet<String> {
            values
                .iter()
                .filter_map(|v| {
                    preflight::resolve_name(field, what, v, items)
                        .map_err(|e| errs.push(e.to_string()))
                        .ok()
                })
                .collect()
        };
        let routing = ids(
            "--routing-profile",
            "routing profile",
            &opts.routing_profiles,
            &catalog.routing_profiles,
        );
        let security = ids(
            "--security-profile",
            "security profile",
            &opts.security_profiles,
            &catalog.security_profiles,
        );
        let hierarchy = ids(
            "--hierarchy-group",
            "hierarchy group",
            opts.hierarchy_group.as_slice(),
            &catalog.hierarchy_groups,
        )
        .into_iter()
        .next();
        let usernames = match &opts.usernames {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Error::Input(format!("cannot read {}: {e}", p.display())))?;
                Some(
                    text.lines()
                        .map(|l| l.trim().trim_start_matches('\u{feff}').to_string())
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .collect(),
                )
            }
        };
        if !errs.is_empty() {
            return Err(Error::Input(errs.join("\n")));
        }
        Ok(Filters {
            routing,
            security,
            hierarchy,
            usernames,
        })
    }

    fn keeps(&self, u: &ConnectUser) -> bool {
        let Some(d) = &u.detail else { return false };
        (self.routing.is_empty() || self.routing.contains(&d.routing_profile_id))
            && (self.security.is_empty()
                || d.security_profile_ids
                    .iter()
                    .any(|s| self.security.contains(s)))
            && (self.hierarchy.is_none() || self.hierarchy == d.hierarchy_group_id)
    }
}

/// Runs `migrate`.
pub async fn migrate(
    ctx: &Context,
    opts: &MigrateOptions,
    settings: &RunSettings,
    sink: &mut dyn Sink,
) -> Result<BatchReport, Error> {
    let NewRun {
        clients,
        wf,
        target,
        catalog,
    } = ctx.new_run(WorkflowSource::Migrate).await?;
    if target.identity_mode != IdentityMode::Saml {
        return Err(Error::Input(format!(
            "instance {} stores its users with {} identity management: they sign in to Amazon Connect itself, not through IAM Identity Center, and an instance's identity management is fixed when it is created; migrate needs a SAML instance (nothing was written)",
            target.instance_id, target.identity_mode
        )));
    }
    let filters = Filters::resolve(opts, &catalog)?;

    let (described, by_folded) = described_users(&clients, &target, &filters, opts).await?;
    let mut invalid = Vec::new();
    let mut valid: Vec<Valid> = Vec::new();
    for u in described.iter().filter(|u| filters.keeps(u)) {
        let d = u.detail.clone().unwrap_or_default();
        let clash = &by_folded[&fold(&u.username)];
        if clash.len() > 1 {
            match case_clash(&u.username, clash, filters.usernames.as_ref()) {
                Err(why) => {
                    invalid.push(why);
                    continue;
                }
                Ok(note) => tracing::warn!("{note}"),
            }
        }
        match agent::migrated(&u.username, &d.first_name, &d.last_name) {
            Err(e) => invalid.extend(
                e.0.iter()
                    .map(|fe| format!("Connect user {:?}: {fe}", u.username)),
            ),
            Ok(spec) => valid.push(Valid {
                subject: Subject {
                    agent: spec,
                    routing_profile_id: d.routing_profile_id,
                    security_profile_ids: d.security_profile_ids,
                    hierarchy_group_id: d.hierarchy_group_id,
                    identity_user_name: Some(u.username.clone()),
                    leaver: None,
                    changes: Default::default(),
                },
                password: None,
            }),
        }
    }
    if let Some(set) = &filters.usernames {
        let found: BTreeSet<&str> = described.iter().map(|u| u.username.as_str()).collect();
        for missing in set.iter().filter(|n| !found.contains(n.as_str())) {
            invalid.push(format!(
                "no Connect user is named exactly {missing:?} (usernames are case-sensitive)"
            ));
        }
    }
    let count = valid.len();
    let rows = || -> Result<Box<dyn Iterator<Item = Valid> + '_>, Error> {
        Ok(Box::new(valid.iter().cloned()))
    };
    let phase = Phase {
        clients: &clients,
        target: &target,
        wf,
        early: Vec::new(),
        valid: count,
        rejected: invalid.into_iter().map(Rejected::from).collect(),
        rows: &rows,
        opts: &opts.run,
        settings,
        listed: None,
        redo_done: false,
    };
    run_rows(ctx, phase, sink).await
}

/// The instance's Connect users that `--usernames` keeps, described (names and profiles)
/// at DescribeUser's own quota; and every Connect username of the instance by its folded
/// form (Identity Center user names are unique without case, so of two Connect users
/// differing only in case at most one can be migrated).
async fn described_users(
    clients: &crate::aws::Clients,
    target: &preflight::Target,
    filters: &Filters,
    opts: &MigrateOptions,
) -> Result<(Vec<ConnectUser>, HashMap<String, Vec<String>>), Error> {
    let listed = clients
        .connect
        .list_users(&target.instance_id)
        .await
        .map_err(|source| preflight::Error::Aws {
            context: format!(
                "listing the users of Connect instance {}",
                target.instance_id
            ),
            source,
        })?;
    let mut by_folded: HashMap<String, Vec<String>> = HashMap::new();
    for u in &listed {
        (by_folded.entry(fold(&u.username)).or_default()).push(u.username.clone());
    }
    let wanted: Vec<ConnectUser> = (listed.into_iter())
        .filter(|u| (filters.usernames.as_ref()).is_none_or(|set| set.contains(&u.username)))
        .collect();
    let (connect, instance) = (&clients.connect, &target.instance_id);
    let described: Vec<ConnectUser> = stream::iter(wanted)
        .map(|u| async move {
            connect
                .describe_user(instance, &u.id)
                .await
                .map_err(|source| preflight::Error::Aws {
                    context: format!("describing Connect user {:?}", u.username),
                    source,
                })
        })
        .buffered(opts.run.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(|r| r.transpose())
        .collect::<Result<_, _>>()?;
    Ok((described, by_folded))
}

/// `username` shares its folded form with the other Connect users of `clash` (all of
/// them, `username` included), so at most one of them can get an Identity Center user.
/// It is migrated only when `--usernames` names it exactly and names none of the others
/// (`Ok`: the note saying which and why); else it is skipped with the reason (`Err`).
fn case_clash(
    username: &str,
    clash: &[String],
    named: Option<&BTreeSet<String>>,
) -> Result<String, String> {
    let mut all: Vec<&str> = clash.iter().map(String::as_str).collect();
    all.sort_unstable();
    let names = all
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(" and ");
    let others: Vec<&str> = all.iter().copied().filter(|n| *n != username).collect();
    let why = format!(
        "Connect users {names} differ only in case, and Identity Center user names are unique without case, so only one of them can have an Identity Center user"
    );
    match named {
        Some(set) if set.contains(username) && !others.iter().any(|o| set.contains(*o)) => {
            Ok(format!(
                "{why}: migrating {username:?}, the one --usernames names exactly; {} keeps no Identity Center user (remove it: connect-onboard drift --fix-plan DIR, or doctor {username})",
                others.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
            ))
        }
        _ => Err(format!(
            "Connect user {username:?} not migrated: {why}; migrate does not guess which: name that one exactly in migrate --usernames FILE, and remove the other with offboard --connect-only (connect-onboard drift lists both, doctor {username} shows which one the identity provider signs in as)"
        )),
    }
}
