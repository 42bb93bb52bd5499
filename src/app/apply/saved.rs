//! The saved plan: what `apply --dry-run --json` prints and `apply --plan FILE` applies.
//! Its `fingerprint` is the SHA-256 of the plan's own content (target, prune, rows), so a
//! plan edited by hand, cut short or meant for another instance is refused before anything
//! is read from AWS. It is a check of integrity, not a signature: change control keeps the
//! reviewed file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::Error;
use super::diff::FieldChange;

/// What `apply` plans for one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// No Connect user and no Identity Center user: onboarded as `batch` does.
    Create,
    /// The agent exists: these changes (and the missing parts of its onboarding).
    Update,
    /// Nothing differs.
    Unchanged,
    /// `--prune`: managed, not in the roster: offboarded.
    Remove,
    /// Cannot be made in place; nothing written for it.
    Conflict,
    /// `sync`: a member that cannot be an agent (no usable primary email), with why;
    /// nothing written for it, never guessed.
    Skip,
}

impl Action {
    /// The word printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Remove => "remove",
            Action::Conflict => "conflict",
            Action::Skip => "skip",
        }
    }
}

/// One agent of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    /// The agent's email (normalised).
    pub agent: String,
    /// What happens to it.
    pub action: Action,
    /// Each field that changes: for `create`, every field the row sets (`before` null).
    pub changes: Vec<FieldChange>,
    /// Why (a conflict, the Connect username of a removal, an adoption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where a plan applies: a plan made for one instance is refused on another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTarget {
    /// Connect instance id.
    pub instance_id: String,
    /// Identity store id.
    pub identity_store_id: String,
    /// The agents' group.
    pub group: String,
}

/// A saved plan (the JSON of `apply --dry-run --json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Always true: a plan writes nothing.
    pub dry_run: bool,
    /// Where it applies.
    pub target: PlanTarget,
    /// Whether removals were planned (`--prune`).
    pub prune: bool,
    /// `"sync"` for a plan of `sync --dry-run --json` (its agents are the members of the
    /// mapped groups, kept exactly; `apply --plan` applies it as sync runs); absent for a
    /// roster's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Per agent, in the file's order (removals last).
    pub plan: Vec<PlanRow>,
    /// Agents per action.
    pub counts: BTreeMap<Action, usize>,
    /// SHA-256 of `target`, `prune`, `source` (when present) and `plan`, hex.
    pub fingerprint: String,
}

/// `source` of a plan made by `sync`.
const SYNC: &str = "sync";

/// The fingerprint of a plan's content.
pub(super) fn fingerprint(
    target: &PlanTarget,
    prune: bool,
    source: Option<&str>,
    plan: &[PlanRow],
) -> String {
    #[derive(Serialize)]
    struct Content<'a> {
        target: &'a PlanTarget,
        prune: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<&'a str>,
        plan: &'a [PlanRow],
    }
    let bytes = serde_json::to_vec(&Content {
        target,
        prune,
        source,
        plan,
    })
    .unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SavedPlan {
    /// A plan of these rows, counted and fingerprinted.
    pub(super) fn new(target: PlanTarget, prune: bool, plan: Vec<PlanRow>) -> SavedPlan {
        let mut counts = BTreeMap::new();
        for r in &plan {
            *counts.entry(r.action).or_default() += 1;
        }
        SavedPlan {
            dry_run: true,
            fingerprint: fingerprint(&target, prune, None, &plan),
            target,
            prune,
            source: None,
            plan,
            counts,
        }
    }

    /// The same plan, made by `sync` (and fingerprinted so).
    pub(super) fn of_sync(mut self) -> SavedPlan {
        self.source = Some(SYNC.to_string());
        self.fingerprint = fingerprint(&self.target, self.prune, Some(SYNC), &self.plan);
        self
    }

    /// Whether the plan at `path` was made by `sync` (read to choose the workflow before
    /// the plan is checked; `load` checks it).
    pub(super) fn made_by_sync(path: &Path) -> bool {
        #[derive(Deserialize)]
        struct Source {
            source: Option<String>,
        }
        (std::fs::read_to_string(path).ok())
            .and_then(|t| serde_json::from_str::<Source>(&t).ok())
            .is_some_and(|s| s.source.as_deref() == Some(SYNC))
    }

    /// Reads a saved plan; refuses one that does not parse, was edited, or is for
    /// another target.
    pub(super) fn load(path: &Path, here: &PlanTarget) -> Result<SavedPlan, Error> {
        let name = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Input(format!("{name}: cannot read the plan: {e}")))?;
        let plan: SavedPlan = serde_json::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "{name}: not a plan of `apply --dry-run --json`: {e}; nothing was written"
            ))
        })?;
        let expected = fingerprint(&plan.target, plan.prune, plan.source.as_deref(), &plan.plan);
        if plan.fingerprint != expected {
            return Err(Error::Input(format!(
                "{name}: the plan's fingerprint does not match its content: it was edited or cut after `apply --dry-run --json` made it; nothing was written (make a new plan)"
            )));
        }
        if &plan.target != here {
            return Err(Error::Input(format!(
                "{name}: the plan is for instance {} / identity store {} / group {:?}, not {} / {} / {:?}; nothing was written",
                plan.target.instance_id,
                plan.target.identity_store_id,
                plan.target.group,
                here.instance_id,
                here.identity_store_id,
                here.group
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = plan
            .plan
            .iter()
            .find(|r| !seen.insert(r.agent.to_lowercase()))
        {
            return Err(Error::Input(format!(
                "{name}: agent {} is planned twice; nothing was written",
                dup.agent
            )));
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> PlanTarget {
        PlanTarget {
            instance_id: "i-1".into(),
            identity_store_id: "d-1".into(),
            group: "ConnectAgents".into(),
        }
    }

    fn plan() -> SavedPlan {
        SavedPlan::new(
            target(),
            false,
            vec![PlanRow {
                agent: "ana@example.com".into(),
                action: Action::Update,
                changes: vec![FieldChange {
                    field: "routing_profile".into(),
                    before: json!("Basic"),
                    after: json!("Sales"),
                }],
                detail: None,
            }],
        )
    }

    fn saved(p: &SavedPlan) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), serde_json::to_string_pretty(p).unwrap()).unwrap();
        f
    }

    #[test]
    fn a_sync_plan_says_so_and_the_fingerprint_covers_it() {
        let p = plan().of_sync();
        let f = saved(&p);
        assert!(SavedPlan::made_by_sync(f.path()));
        assert!(!SavedPlan::made_by_sync(saved(&plan()).path()));
        let loaded = SavedPlan::load(f.path(), &target()).unwrap();
        assert_eq!(loaded.source.as_deref(), Some("sync"));
        // A sync plan passed off as a roster's (or the reverse) is an edit.
        let mut stripped = p.clone();
        stripped.source = None;
        let e = SavedPlan::load(saved(&stripped).path(), &target()).unwrap_err();
        assert!(e.to_string().contains("edited"), "{e}");
    }

    #[test]
    fn a_saved_plan_loads_as_made() {
        let p = plan();
        let loaded = SavedPlan::load(saved(&p).path(), &target()).unwrap();
        assert_eq!(loaded.plan, p.plan);
        assert_eq!(loaded.counts[&Action::Update], 1);
    }

    #[test]
    fn an_edited_plan_another_targets_plan_or_no_plan_is_refused() {
        let mut edited = plan();
        edited.plan[0].changes[0].after = json!("Premium");
        let e = SavedPlan::load(saved(&edited).path(), &target()).unwrap_err();
        assert!(e.to_string().contains("edited"), "{e}");
        let other = PlanTarget {
            instance_id: "i-2".into(),
            ..target()
        };
        let e = SavedPlan::load(saved(&plan()).path(), &other).unwrap_err();
        assert!(e.to_string().contains("not i-2"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "{\"plan\": [").unwrap();
        let e = SavedPlan::load(f.path(), &target()).unwrap_err();
        assert!(e.to_string().contains("not a plan"), "{e}");
    }
}
