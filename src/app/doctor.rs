//! `doctor EMAIL_OR_USERNAME`: why can this agent not sign in? Read-only checks of both
//! sides and of connect-onboard's own state, each ok / problem / unknown (could not check)
//! with its evidence and the fix in one line. The causes are those of AWS's SAML
//! troubleshooting page ("authenticated, but has not been onboarded to this application"):
//! the Connect username is not exactly the RoleSessionName (usernames are case-sensitive,
//! even with SAML), the Connect user does not exist, the person has two Identity Center
//! users, or no primary email for `${user:email}`.
//!
//! Zero write calls: only List/Describe/Get reads, and the state file is only read.

use serde::Serialize;

use crate::agent::IdentityMode;
use crate::aws::{AwsError, ConnectApi, ConnectUser, IdentityStoreApi, IdentityUser, Principal};
use crate::aws::{SsoAdminApi, SsoApplication};
use crate::config::{AssignmentMode, RoleSessionName};
use crate::engine::{AgentState, StepState};
use crate::target::{self, Catalog, Target};

use super::drift::Rules;
use super::{Context, Error};

/// What `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The email or username asked about.
    pub agent: String,
    /// Every check passed.
    pub ok: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable id (`connect_user`, `identity_user`, ...).
    pub id: &'static str,
    /// Outcome.
    pub status: CheckStatus,
    /// The evidence.
    pub detail: String,
    /// The fix, when not ok.
    pub fix: Option<String>,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Passed.
    Ok,
    /// A cause of a failed sign-in.
    Problem,
    /// Could not be checked (a read failed, or an earlier check left nothing to check).
    Unknown,
}

impl Check {
    fn ok(id: &'static str, detail: String) -> Check {
        Check {
            id,
            status: CheckStatus::Ok,
            detail,
            fix: None,
        }
    }
    fn problem(id: &'static str, detail: String, fix: String) -> Check {
        Check {
            id,
            status: CheckStatus::Problem,
            detail,
            fix: Some(fix),
        }
    }
    fn unknown(id: &'static str, detail: String, fix: String) -> Check {
        Check {
            id,
            status: CheckStatus::Unknown,
            detail,
            fix: Some(fix),
        }
    }
    fn read_failed(id: &'static str, what: &str, e: &AwsError) -> Check {
        Check::unknown(
            id,
            format!("could not read {what}: {e}"),
            "run doctor again; if it persists, check the IAM permissions (connect-onboard iam-policy --for doctor)".into(),
        )
    }
}

/// Runs `doctor` for `who` (an email or a Connect username, compared as the checks say).
pub async fn doctor(ctx: &Context, who: &str) -> Result<DoctorReport, Error> {
    let who = who.trim();
    if who.is_empty() {
        return Err(Error::Input(
            "EMAIL_OR_USERNAME: invalid value \"\": must name the agent (an email or a Connect username)".into(),
        ));
    }
    let config = ctx.config()?;
    let mut regions = ctx.new_run_regions();
    let clients = ctx.clients(&mut regions).await?;
    let (target, catalog) =
        target::discover_for_diagnosis(config, &clients.connect, &clients.sso_admin).await?;
    // connect-onboard's own record first: an unfinished run is finished by its own fix,
    // whatever it left missing.
    let (state, unfinished) = state_check(ctx, who).await;
    let d = Doctor {
        who,
        target: &target,
        catalog: &catalog,
        connect: &clients.connect,
        ids: &clients.identity_store,
        sso: &clients.sso_admin,
        session: config.identity_center.role_session_name,
        rules: Rules {
            session: config.identity_center.role_session_name,
            mode: target.identity_mode,
            defaults: &config.defaults,
        },
        unfinished,
    };
    let mut checks = Vec::new();
    d.run(&mut checks).await;
    checks.push(state);
    Ok(DoctorReport {
        agent: who.to_string(),
        ok: checks.iter().all(|c| c.status == CheckStatus::Ok),
        checks,
    })
}

struct Doctor<'a> {
    who: &'a str,
    target: &'a Target,
    catalog: &'a Catalog,
    connect: &'a dyn ConnectApi,
    ids: &'a dyn IdentityStoreApi,
    sso: &'a dyn SsoAdminApi,
    session: RoleSessionName,
    /// The rules the fixes are judged by (drift's: a fix offered is one that works).
    rules: Rules<'a>,
    /// The fix of the agent's unfinished run, if its latest run is unfinished.
    unfinished: Option<String>,
}

impl Doctor<'_> {
    async fn run(&self, checks: &mut Vec<Check>) {
        let t = self.target;
        checks.push(if t.identity_mode == IdentityMode::Saml {
            Check::ok(
                "instance_saml",
                format!("Connect instance {} uses SAML", t.instance_id),
            )
        } else {
            Check::problem(
                "instance_saml",
                format!(
                    "Connect instance {} uses {} identity management: its users sign in to Amazon Connect itself, never through IAM Identity Center",
                    t.instance_id, t.identity_mode
                ),
                "an instance's identity management is fixed when it is created: use a SAML instance for Identity Center sign-in".into(),
            )
        });

        // The Identity Center side is read first: what it sends as the RoleSessionName is the
        // username the Connect user must have, whatever the case of the name asked about.
        let mut identity_checks = Vec::new();
        let identity_user = self.identity_user(&mut identity_checks).await;
        let sent = identity_user.as_ref().and_then(|u| self.sent(u));
        let connect_user = self
            .connect_user(checks, sent.as_deref(), identity_user.as_ref())
            .await;
        // A missing Identity Center user's fix depends on the Connect user.
        for c in identity_checks.iter_mut() {
            if c.id == "identity_user" && c.status == CheckStatus::Problem {
                c.fix = Some(self.create_identity_fix(connect_user.as_ref()));
            }
        }
        checks.extend(identity_checks);
        self.session_name(checks, connect_user.as_ref(), identity_user.as_ref());
        let group = self
            .membership(checks, connect_user.as_ref(), identity_user.as_ref())
            .await;
        self.assignment(
            checks,
            connect_user.as_ref(),
            identity_user.as_ref(),
            group.as_deref(),
        )
        .await;
        self.profiles(checks, connect_user.as_ref()).await;
    }

    /// The Connect user named exactly `who`; one that differs only in case is the cause.
    /// What the identity provider sends as the RoleSessionName for `u`.
    fn sent(&self, u: &IdentityUser) -> Option<String> {
        match self.session {
            RoleSessionName::Email => u.primary_email.clone(),
            RoleSessionName::UserName => Some(u.user_name.clone()),
        }
    }

    /// How to create the missing Identity Center user: finish the unfinished run; migrate
    /// the Connect user when migrate will (else why not, and what to do by hand); onboard
    /// when there is no Connect user either.
    fn create_identity_fix(&self, cu: Option<&ConnectUser>) -> String {
        if let Some(fix) = &self.unfinished {
            return format!("finish the agent's run: {fix}");
        }
        let Some(cu) = cu else {
            return format!(
                "onboard the agent: connect-onboard onboard --email {} --first-name ... --last-name ...",
                self.who
            );
        };
        match self.rules.migrate_refusal(&cu.username, None) {
            None => format!(
                "create it: connect-onboard migrate --usernames FILE (a file with the line {:?})",
                cu.username
            ),
            Some(why) => format!(
                "not by migrate ({why}): give the person an Identity Center user that the identity provider sends as exactly {:?} (IAM Identity Center console), or onboard them by their email with connect-onboard and remove this Connect user in the Amazon Connect console",
                cu.username
            ),
        }
    }

    /// How to give the agent a Connect user named exactly as the identity provider sends
    /// for `iu`, removing `wrong` first if there is one: through `offboard --connect-only`
    /// and `batch`/`onboard` when they make exactly that name, else by hand.
    fn rename_fix(&self, wrong: Option<&str>, iu: Option<&IdentityUser>) -> String {
        if let Some(fix) = &self.unfinished {
            return format!("finish the agent's run: {fix}");
        }
        let remove = wrong
            .map(|w| {
                format!("connect-onboard offboard --connect-only {w} (Connect usernames cannot be renamed), then ")
            })
            .unwrap_or_default();
        let Some(u) = iu else {
            return format!(
                "{remove}onboard the agent: connect-onboard onboard --email {} --first-name ... --last-name ...",
                self.who
            );
        };
        match self.rules.batch_row(u) {
            Ok((email, first, last)) => format!(
                "{remove}connect-onboard onboard --email {email} --first-name {first:?} --last-name {last:?} (it adopts the Identity Center user; connect-onboard drift --fix-plan DIR writes the files)"
            ),
            Err(why) => format!(
                "not by connect-onboard ({why}): create the Connect user {} in the Amazon Connect console{}, or change Identity Center user {:?}'s primary email (and user name) to the Connect username",
                self.sent(u).map(|s| format!("{s:?}")).unwrap_or_else(|| "named as the identity provider sends".into()),
                wrong.map(|w| format!(" and remove {w:?}")).unwrap_or_default(),
                u.user_name
            ),
        }
    }

    /// How to add the missing membership or assignment: finish the unfinished run; migrate
    /// when it adopts both users as they are; else in the console.
    fn join_fix(
        &self,
        cu: Option<&ConnectUser>,
        iu: Option<&IdentityUser>,
        by_hand: &str,
    ) -> String {
        if let Some(fix) = &self.unfinished {
            return format!("finish the agent's run: {fix}");
        }
        let refusal = match cu {
            Some(cu) => self.rules.migrate_refusal(&cu.username, iu),
            None => Some("there is no Connect user to migrate".into()),
        };
        match (refusal, cu) {
            (None, Some(cu)) => format!(
                "connect-onboard migrate --usernames FILE (a file with the line {:?}), or {by_hand}",
                cu.username
            ),
            (why, _) => format!(
                "{by_hand} (not by migrate: {})",
                why.unwrap_or_default()
            ),
        }
    }

    /// The Connect user named exactly `who` (or exactly what the identity provider sends,
    /// when `who` was typed in another case); one that differs only in case is the cause.
    async fn connect_user(
        &self,
        checks: &mut Vec<Check>,
        sent: Option<&str>,
        iu: Option<&IdentityUser>,
    ) -> Option<ConnectUser> {
        const ID: &str = "connect_user";
        let users = match self.connect.list_users(&self.target.instance_id).await {
            Ok(u) => u,
            Err(e) => {
                checks.push(Check::read_failed(ID, "the Connect users", &e));
                return None;
            }
        };
        if let Some(u) = users.iter().find(|u| u.username == self.who) {
            checks.push(Check::ok(
                ID,
                format!("Connect user {:?} exists (id {})", u.username, u.id),
            ));
            return Some(u.clone());
        }
        let folded_who = self.who.to_lowercase();
        if let Some(u) = (users.iter())
            .find(|u| Some(u.username.as_str()) == sent && u.username.to_lowercase() == folded_who)
        {
            checks.push(Check::ok(
                ID,
                format!(
                    "Connect user {:?} exists (id {}): exactly what the identity provider sends (asked about {:?})",
                    u.username, u.id, self.who
                ),
            ));
            return Some(u.clone());
        }
        let folded = self.who.to_lowercase();
        let near: Vec<&ConnectUser> = users
            .iter()
            .filter(|u| u.username.to_lowercase() == folded)
            .collect();
        match near.as_slice() {
            [] => {
                checks.push(Check::problem(
                    ID,
                    format!(
                        "no Connect user is named {:?} (not even in another case)",
                        self.who
                    ),
                    self.rename_fix(None, iu),
                ));
                None
            }
            [u, ..] => {
                let names: Vec<String> = near.iter().map(|u| format!("{:?}", u.username)).collect();
                checks.push(Check::problem(
                    ID,
                    format!(
                        "the Connect user is {}, which differs from {:?} only in case: Amazon Connect usernames are case-sensitive, even with SAML",
                        names.join(" and "), self.who
                    ),
                    self.rename_fix(Some(&u.username), iu),
                ));
                Some((*u).clone())
            }
        }
    }

    /// The one Identity Center user for `who` (by user name or email, without case).
    async fn identity_user(&self, checks: &mut Vec<Check>) -> Option<IdentityUser> {
        const ID: &str = "identity_user";
        let users = match self.ids.list_users(&self.target.identity_store_id).await {
            Ok(u) => u,
            Err(e) => {
                checks.push(Check::read_failed(ID, "the Identity Center users", &e));
                for id in ["identity_user_unique", "primary_email"] {
                    checks.push(Check::unknown(
                        id,
                        "the Identity Center users could not be read".into(),
                        "run doctor again".into(),
                    ));
                }
                return None;
            }
        };
        let folded = self.who.to_lowercase();
        let mut found: Vec<IdentityUser> = users
            .into_iter()
            .filter(|u| {
                u.user_name.to_lowercase() == folded
                    || u.emails.iter().any(|e| e.to_lowercase() == folded)
            })
            .collect();
        // The one that matches exactly (primary email, then user name) is checked first.
        found.sort_by_key(|u| {
            (
                u.primary_email.as_deref() != Some(self.who),
                u.user_name != self.who,
                u.user_name.clone(),
            )
        });
        let Some(first) = found.first().cloned() else {
            checks.push(Check::problem(
                ID,
                format!(
                    "no Identity Center user has the user name or email {:?} (compared without case) in {}",
                    self.who, self.target.identity_store_id
                ),
                format!(
                    "create it: connect-onboard migrate --usernames FILE (a file with the line {:?}), or onboard the agent",
                    self.who
                ),
            ));
            for id in ["identity_user_unique", "primary_email"] {
                checks.push(Check::unknown(
                    id,
                    "no Identity Center user to check".into(),
                    "fix identity_user first".into(),
                ));
            }
            return None;
        };
        checks.push(Check::ok(
            ID,
            format!(
                "Identity Center user {:?} exists (id {})",
                first.user_name, first.id
            ),
        ));
        checks.push(if found.len() == 1 {
            Check::ok(
                "identity_user_unique",
                "one Identity Center user has this name or email".into(),
            )
        } else {
            Check::problem(
                "identity_user_unique",
                format!(
                    "{} Identity Center users match {:?} without case: {}; the identity provider may send either one",
                    found.len(),
                    self.who,
                    found
                        .iter()
                        .map(|u| format!("{:?} (email {}, id {})", u.user_name, u.primary_email.as_deref().unwrap_or("none"), u.id))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "keep one Identity Center user per person: delete or rename the others in the IAM Identity Center console".into(),
            )
        });
        checks.push(match (first.primary_emails, &first.primary_email) {
            (1, Some(e)) => Check::ok("primary_email", format!("one primary email: {e}")),
            (n, _) => Check::problem(
                "primary_email",
                format!(
                    "Identity Center user {:?} has {n} primary emails (emails: {}): the SAML mapping ${{user:email}} needs exactly one",
                    first.user_name,
                    if first.emails.is_empty() { "none".to_string() } else { first.emails.join(", ") }
                ),
                "in the IAM Identity Center console, give the user exactly one email and mark it primary".into(),
            ),
        });
        Some(first)
    }

    /// What the identity provider sends as RoleSessionName must be the Connect username.
    fn session_name(
        &self,
        checks: &mut Vec<Check>,
        cu: Option<&ConnectUser>,
        iu: Option<&IdentityUser>,
    ) {
        const ID: &str = "role_session_name";
        let Some(u) = iu else {
            checks.push(Check::unknown(
                ID,
                "no Identity Center user to compare".into(),
                "fix identity_user first".into(),
            ));
            return;
        };
        let attr = match self.session {
            RoleSessionName::Email => "primary email",
            RoleSessionName::UserName => "user name",
        };
        let sent = self.sent(u);
        let Some(sent) = sent else {
            checks.push(Check::problem(
                ID,
                format!("the RoleSessionName is the {attr}, and there is none"),
                "give the Identity Center user one primary email equal to the Connect username"
                    .into(),
            ));
            return;
        };
        let Some(cu) = cu else {
            checks.push(Check::unknown(
                ID,
                format!("the identity provider sends {sent:?} ({attr}); there is no Connect user to compare it with"),
                "fix connect_user first".into(),
            ));
            return;
        };
        checks.push(if sent == cu.username {
            Check::ok(
                ID,
                format!("the RoleSessionName ({attr}) {sent:?} equals the Connect username exactly"),
            )
        } else if sent.to_lowercase() == cu.username.to_lowercase() {
            Check::problem(
                ID,
                format!(
                    "the identity provider sends {sent:?} ({attr}) but the Connect username is {:?}: they differ only in case, and Connect compares case-sensitively",
                    cu.username
                ),
                self.rename_fix(Some(&cu.username), Some(u)),
            )
        } else {
            Check::problem(
                ID,
                format!(
                    "the identity provider sends {sent:?} ({attr}) but the Connect username is {:?}",
                    cu.username
                ),
                "make the Identity Center user's email (or the configured identity_center.role_session_name attribute) equal the Connect username".into(),
            )
        });
    }

    /// Membership of the agents' group; returns the group's id when it exists.
    async fn membership(
        &self,
        checks: &mut Vec<Check>,
        cu: Option<&ConnectUser>,
        iu: Option<&IdentityUser>,
    ) -> Option<String> {
        const ID: &str = "group_membership";
        let store = &self.target.identity_store_id;
        let group = match self.ids.group_id(store, &self.target.group).await {
            Ok(Some(g)) => g,
            Ok(None) => {
                checks.push(Check::problem(
                    ID,
                    format!("the agents' group {:?} does not exist", self.target.group),
                    "onboard or migrate an agent (it creates the group), or create it in the IAM Identity Center console".into(),
                ));
                return None;
            }
            Err(e) => {
                checks.push(Check::read_failed(ID, "the agents' group", &e));
                return None;
            }
        };
        let Some(u) = iu else {
            checks.push(Check::unknown(
                ID,
                "no Identity Center user to check".into(),
                "fix identity_user first".into(),
            ));
            return Some(group);
        };
        checks.push(match self.ids.membership_id(store, &group, &u.id).await {
            Ok(Some(m)) => Check::ok(
                ID,
                format!("member of {:?} (membership {m})", self.target.group),
            ),
            Ok(None) => Check::problem(
                ID,
                format!(
                    "{:?} is not a member of {:?}",
                    u.user_name, self.target.group
                ),
                self.join_fix(
                    cu,
                    iu,
                    &format!(
                        "add the user to {:?} in the IAM Identity Center console",
                        self.target.group
                    ),
                ),
            ),
            Err(e) => Check::read_failed(ID, "the group membership", &e),
        });
        Some(group)
    }

    /// The application is enabled, and assigned to the group (or the user, in user mode).
    async fn assignment(
        &self,
        checks: &mut Vec<Check>,
        cu: Option<&ConnectUser>,
        iu: Option<&IdentityUser>,
        group: Option<&str>,
    ) {
        let app = &self.target.application_arn;
        checks.push(match self.sso.describe_application(app).await {
            Ok(Some(SsoApplication { status, name, .. })) if status != "DISABLED" => {
                Check::ok("application", format!("application {name:?} ({app}) is enabled"))
            }
            Ok(Some(a)) => Check::problem(
                "application",
                format!("application {:?} ({app}) is disabled", a.name),
                "enable the Amazon Connect application in the IAM Identity Center console".into(),
            ),
            Ok(None) => Check::problem(
                "application",
                format!("application {app} does not exist"),
                "add the Amazon Connect application in the IAM Identity Center console and set identity_center.application_arn".into(),
            ),
            Err(e) => Check::read_failed("application", "the application", &e),
        });
        const ID: &str = "assignment";
        let (kind, principal, what) = match (self.target.assignment, group, iu) {
            (AssignmentMode::Group, Some(g), _) => (
                Principal::Group,
                g.to_string(),
                format!("group {:?}", self.target.group),
            ),
            (AssignmentMode::User, _, Some(u)) => (
                Principal::User,
                u.id.clone(),
                format!("user {:?}", u.user_name),
            ),
            _ => {
                checks.push(Check::unknown(
                    ID,
                    format!(
                        "no {} to check",
                        if self.target.assignment == AssignmentMode::Group {
                            "group"
                        } else {
                            "Identity Center user"
                        }
                    ),
                    "fix the checks above first".into(),
                ));
                return;
            }
        };
        checks.push(match self.sso.is_assigned(app, kind, &principal).await {
            Ok(true) => Check::ok(ID, format!("the {what} is assigned to the application")),
            Ok(false) => Check::problem(
                ID,
                format!("the {what} is not assigned to the application {app}"),
                self.join_fix(
                    cu,
                    iu,
                    &format!(
                        "assign the {what} to the application in the IAM Identity Center console"
                    ),
                ),
            ),
            Err(e) => Check::read_failed(ID, "the application assignment", &e),
        });
    }

    /// The Connect user has a routing profile and at least one security profile.
    async fn profiles(&self, checks: &mut Vec<Check>, cu: Option<&ConnectUser>) {
        const ID: &str = "connect_profiles";
        let Some(cu) = cu else {
            checks.push(Check::unknown(
                ID,
                "no Connect user to check".into(),
                "fix connect_user first".into(),
            ));
            return;
        };
        let d = match self
            .connect
            .describe_user(&self.target.instance_id, &cu.id)
            .await
        {
            Ok(Some(u)) => u.detail.unwrap_or_default(),
            Ok(None) => {
                checks.push(Check::unknown(
                    ID,
                    format!("Connect user {} was listed but cannot be described (just deleted, or not visible yet)", cu.id),
                    "run doctor again".into(),
                ));
                return;
            }
            Err(e) => {
                checks.push(Check::read_failed(ID, "the Connect user", &e));
                return;
            }
        };
        let name = |items: &[crate::aws::Named], id: &str| {
            items
                .iter()
                .find(|n| n.id == id)
                .map(|n| format!("{:?}", n.name))
                .unwrap_or_else(|| id.to_string())
        };
        let routing = (!d.routing_profile_id.is_empty())
            .then(|| name(&self.catalog.routing_profiles, &d.routing_profile_id));
        let security: Vec<String> = (d.security_profile_ids.iter())
            .map(|s| name(&self.catalog.security_profiles, s))
            .collect();
        checks.push(match (routing, security.is_empty()) {
            (Some(r), false) => Check::ok(
                ID,
                format!("routing profile {r}; security profiles {}", security.join(", ")),
            ),
            (r, _) => Check::problem(
                ID,
                format!(
                    "routing profile: {}; security profiles: {}",
                    r.unwrap_or_else(|| "none".into()),
                    if security.is_empty() { "none".into() } else { security.join(", ") }
                ),
                "set a routing profile and at least one security profile on the Connect user (Amazon Connect console, Users)".into(),
            ),
        });
    }
}

/// What connect-onboard's own state says about the agent: its runs, unfinished steps and
/// owned resources, and the fix of its latest run when that is unfinished. Read only; no
/// state file is created.
async fn state_check(ctx: &Context, who: &str) -> (Check, Option<String>) {
    let check = state_check_inner(ctx, who).await;
    let fix = (check.status == CheckStatus::Problem)
        .then(|| check.fix.clone())
        .flatten();
    (check, fix)
}

/// A step's resources as they are best named: the ARN when the step has one (it holds the
/// id), else the ids, labelled.
fn resources(step: &str, outputs: &std::collections::BTreeMap<String, String>) -> String {
    if let Some((_, arn)) = outputs.iter().find(|(k, _)| k.ends_with("_arn")) {
        return format!("{step} {arn}");
    }
    let ids: Vec<String> = outputs.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{step} ({})", ids.join(", "))
}

async fn state_check_inner(ctx: &Context, who: &str) -> Check {
    const ID: &str = "state";
    if !ctx.state_path.exists() {
        return Check::ok(
            ID,
            format!(
                "no state file at {}: connect-onboard has no record of this agent",
                ctx.state_path.display()
            ),
        );
    }
    let store = match ctx.open_store() {
        Ok(s) => s,
        Err(e) => {
            return Check::unknown(
                ID,
                format!("cannot read the state file: {e}"),
                "check --state / [state] path".into(),
            )
        }
    };
    let keys = [who.to_string(), who.to_lowercase()];
    let runs = match store.runs().await {
        Ok(r) => r,
        Err(e) => {
            return Check::unknown(
                ID,
                format!("cannot read the state file: {e}"),
                "check --state / [state] path".into(),
            )
        }
    };
    let mut seen = Vec::new();
    let mut unfinished = Vec::new();
    let mut owned = Vec::new();
    let mut latest: Option<(String, AgentState)> = None;
    for run in &runs {
        let mut found = None;
        for k in &keys {
            if let Ok(a) = store.agent(&run.id, k).await {
                found = Some(a);
                break;
            }
        }
        let Some(agent) = found else {
            continue;
        };
        seen.push(format!("{} {}", run.id, agent.state.as_str()));
        for s in store
            .steps(&run.id, &agent.agent_key)
            .await
            .unwrap_or_default()
        {
            if s.owned
                && matches!(
                    s.state,
                    StepState::Done | StepState::Running | StepState::NeedsAttention
                )
            {
                owned.push(resources(&s.step_id, &s.outputs));
            }
            if !matches!(
                s.state,
                StepState::Done | StepState::Adopted | StepState::RolledBack | StepState::Pending
            ) {
                unfinished.push(format!("{}:{} {}", run.id, s.step_id, s.state.as_str()));
            }
        }
        latest = Some((run.id.clone(), agent.state));
    }
    let detail = if seen.is_empty() {
        format!("no run in {} has this agent", ctx.state_path.display())
    } else {
        format!(
            "runs: {}; unfinished steps: {}; owned resources: {}",
            seen.join(", "),
            if unfinished.is_empty() {
                "none".into()
            } else {
                unfinished.join(", ")
            },
            if owned.is_empty() {
                "none".into()
            } else {
                owned.join(", ")
            }
        )
    };
    match latest {
        Some((run, state))
            if !matches!(
                state,
                AgentState::Done | AgentState::Released | AgentState::RolledBack
            ) =>
        {
            let fix = match state {
                AgentState::NeedsAttention => {
                    format!("connect-onboard rollback {run} --email {who}, or release it")
                }
                AgentState::Failed => format!("connect-onboard retry {run}"),
                _ => format!("connect-onboard resume {run}"),
            };
            Check::problem(
                ID,
                format!("the latest run left the agent {}: {detail}", state.as_str()),
                fix,
            )
        }
        _ => Check::ok(ID, detail),
    }
}
