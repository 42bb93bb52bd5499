//! Planning one roster row against what AWS shows: `create`, `update` (with its changes),
//! `unchanged` or `conflict`, and the subject the run drives. Reads come from the bulk
//! listing (SearchUsers with every field, the Identity Store's users, the group's members);
//! the one per-agent read is DescribeUser for an agent whose identity info changes
//! (SearchUsers does not return the secondary email and mobile, and UpdateUserIdentityInfo
//! replaces them all).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::agent::fold::fold;
use crate::agent::{self, AgentInput, FieldError};
use crate::aws::ConnectUserDetail;
use crate::engine::{Engine, EngineOptions, PlanDecision, Secrets};
use crate::preflight::{self, Catalog, Target};
use crate::steps::snapshot::Snapshot;
use crate::steps::{self, Subject};
use crate::store::MemoryJournal;

use super::super::phase::{Rejected, Valid};
use super::super::Error;
use super::diff::{diff, FieldChange};
use super::roster::{RosterRow, Says, MANAGED};
use super::saved::{Action, PlanRow};

/// A row, planned.
pub(super) enum Planned {
    /// What the run drives (create or update), with its plan row.
    Run(PlanRow, Box<Valid>),
    /// Decided without a run (unchanged, conflict).
    Decided(PlanRow),
    /// The row breaks a rule (a new agent without names, ...).
    Rejected(Rejected),
}

/// Plans rows against one snapshot.
pub(super) struct Planner<'a> {
    pub target: &'a Target,
    pub catalog: &'a Catalog,
    pub defaults: &'a agent::Defaults,
    pub snapshot: Arc<Snapshot>,
    pub env: steps::Env,
    /// Connect usernames by their folded form (a case twin is a conflict).
    pub folded: HashMap<String, String>,
    pub engine: Engine<Subject>,
}

impl<'a> Planner<'a> {
    pub fn new(
        target: &'a Target,
        catalog: &'a Catalog,
        defaults: &'a agent::Defaults,
        env: steps::Env,
        snapshot: Arc<Snapshot>,
        wf: crate::engine::Workflow,
    ) -> Planner<'a> {
        let folded = (snapshot.connect_users())
            .map(|u| (fold(&u.username), u.username.clone()))
            .collect();
        let engine = Engine::new(
            wf,
            steps::registry(&env),
            Arc::new(MemoryJournal::default()),
            EngineOptions::default(),
        );
        Planner {
            target,
            catalog,
            defaults,
            snapshot,
            env,
            folded,
            engine,
        }
    }

    /// Plans one row; a row with problems of its own is planned for more (every problem of
    /// the file at once), then rejected.
    pub async fn plan(&self, row: &RosterRow) -> Result<Planned, Error> {
        let planned = self.plan_row(row).await?;
        if row.problems.is_empty() {
            return Ok(planned);
        }
        let mut problems = row.problems.clone();
        if let Planned::Rejected(r) = planned {
            problems.extend(r.problems);
        }
        Ok(Planned::Rejected(Rejected {
            who: Some(row.email.clone()),
            problems,
        }))
    }

    async fn plan_row(&self, row: &RosterRow) -> Result<Planned, Error> {
        // A roster's email is normalised; `sync`'s names are kept exactly.
        let (email, username) = match &row.exact {
            Some(x) => (x.email.clone(), x.username.clone()),
            None => {
                let email = row.email.to_lowercase();
                let username = (row.input.username.clone())
                    .map(|u| u.trim().to_string())
                    .unwrap_or_else(|| email.clone());
                (email, username)
            }
        };
        let Some(user) = self.snapshot.connect_user(&username).cloned() else {
            if let Some(twin) = self.folded.get(&fold(&username)) {
                return Ok(Planned::Decided(conflict(
                    &email,
                    format!(
                        "the Connect user {twin:?} differs from {username:?} only in case, and a Connect username cannot be renamed: see `connect-onboard drift --fix-plan`"
                    ),
                )));
            }
            return self.plan_create(row, &email).await;
        };
        self.plan_update(row, &email, &user).await
    }

    /// An agent whose Connect user exists: its row made whole with what AWS shows, judged
    /// by the agent rules, compared field by field; the onboarding parts it lacks added.
    async fn plan_update(
        &self,
        row: &RosterRow,
        email: &str,
        user: &crate::aws::ConnectUser,
    ) -> Result<Planned, Error> {
        let detail = self.detail(row, user).await?;
        let mut subject = match self.valid(row, &row.merged(&detail)) {
            Ok(s) => s,
            Err(r) => return Ok(Planned::Rejected(r)),
        };
        let identity = self.snapshot.identity_user(subject.identity_user_name());
        let (changes, mut shown) = diff(row, &subject, &detail, identity, self.catalog);
        subject.changes = changes;
        let steps = match self.steps(&subject, &Secrets::default(), email).await {
            Ok(steps) => steps,
            Err(blocked) => return Ok(blocked),
        };
        // The onboarding parts that are missing: completed as `migrate` completes them.
        for p in steps.iter().filter(|p| p.decision == PlanDecision::Create) {
            let (field, after) = match p.step.as_str() {
                "identity_user" => ("identity_center_user", json!(subject.identity_user_name())),
                "group_membership" => ("group_membership", json!(self.target.group)),
                "app_assignment" => ("application_assignment", json!(self.target.assignment)),
                _ => continue,
            };
            shown.push(FieldChange {
                field: field.into(),
                before: Value::Null,
                after,
            });
        }
        let action = match shown.is_empty() {
            true => Action::Unchanged,
            false => Action::Update,
        };
        let planned = PlanRow {
            agent: email.to_string(),
            action,
            changes: shown,
            detail: row.exact.as_ref().and_then(|x| x.detail.clone()),
        };
        if action == Action::Unchanged {
            return Ok(Planned::Decided(planned));
        }
        let password = row.password.clone();
        Ok(Planned::Run(planned, Box::new(Valid { subject, password })))
    }

    /// The user as listed; read whole (DescribeUser) when the row touches what SearchUsers
    /// does not return.
    async fn detail(
        &self,
        row: &RosterRow,
        user: &crate::aws::ConnectUser,
    ) -> Result<ConnectUserDetail, Error> {
        let listed = user.detail.clone().unwrap_or_default();
        if !needs_full_info(row, &listed) {
            return Ok(listed);
        }
        let described = (self.env.connect)
            .describe_user(&self.target.instance_id, &user.id)
            .await
            .map_err(|source| preflight::Error::Aws {
                context: format!("reading the Connect user {:?}", user.username),
                source,
            })?;
        Ok(match described.and_then(|u| u.detail) {
            Some(d) => ConnectUserDetail {
                tags: listed.tags,
                ..d
            },
            None => listed,
        })
    }

    /// A new agent: validated as `batch` validates it (names required, the config's
    /// defaults), and every step looked up for conflicts.
    async fn plan_create(&self, row: &RosterRow, email: &str) -> Result<Planned, Error> {
        let subject = match self.valid(row, &row.input) {
            Ok(s) => s,
            Err(r) => return Ok(Planned::Rejected(r)),
        };
        let password = row.password.clone();
        if subject.agent.needs_password && password.is_none() {
            return Ok(Planned::Rejected(Rejected {
                who: Some(row.email.clone()),
                problems: vec![format!(
                    "{}: invalid password <redacted>: a new agent on instance {} (CONNECT_MANAGED) needs a password",
                    row.at, self.target.instance_id
                )],
            }));
        }
        let mut secrets = Secrets::default();
        if let Some(p) = &password {
            secrets.insert(steps::PASSWORD, p.expose().to_string());
        }
        let steps = match self.steps(&subject, &secrets, email).await {
            Ok(steps) => steps,
            Err(blocked) => return Ok(blocked),
        };
        let adopted = steps
            .iter()
            .any(|p| p.step == "identity_user" && p.decision == PlanDecision::Adopt);
        let planned = PlanRow {
            agent: email.to_string(),
            action: Action::Create,
            changes: created_fields(&subject),
            detail: joined(
                adopted.then(|| "adopts the existing Identity Center user".to_string()),
                row.exact.as_ref().and_then(|x| x.detail.clone()),
            ),
        };
        Ok(Planned::Run(planned, Box::new(Valid { subject, password })))
    }

    /// Every step of the apply workflow looked up for the agent, as the run will start (the
    /// bulk read's answers are then forgotten, for the run to use); a step in conflict (or
    /// whose lookup failed) blocks the agent: `Err`, its `conflict` row.
    async fn steps(
        &self,
        subject: &Subject,
        secrets: &Secrets,
        email: &str,
    ) -> Result<Vec<crate::engine::PlannedStep>, Planned> {
        let steps = self.engine.plan(subject, secrets).await;
        self.snapshot.forget(email);
        match steps.iter().find(|p| !p.decision.is_clean()) {
            Some(b) => Err(Planned::Decided(conflict(
                email,
                format!("{}: {}: {}", b.step, b.decision.as_str(), b.detail),
            ))),
            None => Ok(steps),
        }
    }

    /// The agent rules on a whole row: validated, then its names resolved to ids.
    fn valid(&self, row: &RosterRow, input: &AgentInput) -> Result<Subject, Rejected> {
        let at = |fe: &FieldError| format!("{}: {fe}", row.at);
        let reject = |problems: Vec<String>| Rejected {
            who: Some(row.email.clone()),
            problems,
        };
        let spec = agent::validate(input, self.defaults, self.target.identity_mode)
            .map_err(|e| reject(e.0.iter().map(at).collect()))?;
        let mut subject = preflight::resolve(spec, self.catalog)
            .map_err(|errs| reject(errs.iter().map(at).collect()))?;
        // `sync`: the identity provider's names, exactly (the rules judged the normalised
        // email; SAML needs the case kept).
        if let Some(x) = &row.exact {
            subject.agent.email.clone_from(&x.email);
            subject.agent.username.clone_from(&x.username);
            subject.identity_user_name = Some(x.identity_user_name.clone());
        }
        Ok(subject)
    }
}

/// Whether the plan must read the user's whole identity info: the row sets a field that
/// SearchUsers does not return, or changes a name (UpdateUserIdentityInfo replaces all).
fn needs_full_info(row: &RosterRow, listed: &ConnectUserDetail) -> bool {
    if listed.full_identity_info {
        return false;
    }
    let touches = |f: &str| row.says(f) != Says::Keep;
    touches("secondary_email")
        || touches("mobile")
        || (row.says("first_name") == Says::Set && row.input.first_name.trim() != listed.first_name)
        || (row.says("last_name") == Says::Set && row.input.last_name.trim() != listed.last_name)
}

/// Two details as one (either may be absent).
fn joined(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

fn conflict(email: &str, why: String) -> PlanRow {
    PlanRow {
        agent: email.to_string(),
        action: Action::Conflict,
        changes: Vec::new(),
        detail: Some(why),
    }
}

/// A new agent's fields, as the plan lists them (`before` null).
fn created_fields(s: &Subject) -> Vec<FieldChange> {
    let a = &s.agent;
    let mut out = Vec::new();
    let mut add = |field: &str, after: Value| {
        if after != Value::Null {
            out.push(FieldChange {
                field: field.into(),
                before: Value::Null,
                after,
            });
        }
    };
    add("first_name", json!(a.first_name));
    add("last_name", json!(a.last_name));
    add("routing_profile", json!(a.routing_profile));
    let mut sps = a.security_profiles.clone();
    sps.sort();
    add("security_profiles", json!(sps));
    add("hierarchy_group", json!(a.hierarchy_group));
    add("phone_type", json!(a.phone_type.to_string()));
    add("auto_accept", json!(a.auto_accept));
    add("acw_timeout", json!(a.acw_timeout));
    add("desk_phone_number", json!(a.desk_phone_number));
    add("secondary_email", json!(a.secondary_email));
    add("mobile", json!(a.mobile));
    for (k, v) in &a.tags {
        add(&format!("tags.{k}"), json!(v));
    }
    out
}

/// A saved plan's row as a roster row: the fields it changes are set (`null` clears),
/// every other field is kept.
pub(super) fn row_of_plan(file: &str, index: usize, p: &PlanRow) -> RosterRow {
    let mut input = AgentInput {
        email: p.agent.clone(),
        ..Default::default()
    };
    let mut says = std::collections::BTreeMap::new();
    for c in &p.changes {
        if let Some(field) = set_from_plan(&mut input, &c.field, &c.after) {
            let said = if c.after == Value::Null {
                Says::Clear
            } else {
                Says::Set
            };
            says.insert(field, said);
        }
    }
    for f in MANAGED {
        says.entry(f).or_insert(Says::Keep);
    }
    RosterRow {
        at: format!("{file}: plan row {}", index + 1),
        email: p.agent.clone(),
        input,
        says,
        password: None,
        problems: Vec::new(),
        exact: None,
    }
}

/// Sets the roster field a plan's change names to its `after`; the field, or `None` for
/// what the workflow completes by itself (the onboarding parts).
fn set_from_plan(input: &mut AgentInput, field: &str, after: &Value) -> Option<&'static str> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    Some(match field {
        "first_name" | "identity_center.given_name" => {
            input.first_name = text(after).unwrap_or_default();
            "first_name"
        }
        "last_name" | "identity_center.family_name" => {
            input.last_name = text(after).unwrap_or_default();
            "last_name"
        }
        "routing_profile" => {
            input.routing_profile = text(after);
            "routing_profile"
        }
        "security_profiles" => {
            input.security_profiles = (after.as_array().into_iter().flatten())
                .filter_map(&text)
                .collect();
            "security_profiles"
        }
        "hierarchy_group" => {
            input.hierarchy_group = text(after);
            "hierarchy_group"
        }
        "phone_type" => {
            input.phone_type = text(after).and_then(|t| t.parse().ok());
            "phone_type"
        }
        "auto_accept" => {
            input.auto_accept = after.as_bool();
            "auto_accept"
        }
        "acw_timeout" => {
            input.acw_timeout = after.as_i64();
            "acw_timeout"
        }
        "desk_phone_number" => {
            input.desk_phone_number = text(after);
            "desk_phone_number"
        }
        "secondary_email" => {
            input.secondary_email = text(after);
            "secondary_email"
        }
        "mobile" => {
            input.mobile = text(after);
            "mobile"
        }
        f if f.starts_with("tags.") => {
            if let Some(v) = text(after) {
                input.tags.push((f["tags.".len()..].to_string(), v));
            }
            "tags"
        }
        _ => return None,
    })
}
