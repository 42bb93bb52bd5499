//! `doctor EMAIL_OR_USERNAME`: why can this agent not sign in? Read-only checks of both
//! sides and of connect-onboard's own state, each ok / problem / unknown (could not check)
//! with its evidence and the fix in one line. The causes are those of AWS's SAML
//! troubleshooting page ("authenticated, but has not been onboarded to this application"):
//! the Connect username is not exactly the RoleSessionName (usernames are case-sensitive,
//! even with SAML), the Connect user does not exist, the person has two Identity Center
//! users, or no primary email for `${user:email}`.
//!
//! Zero write calls: only List/Describe/Get reads, and the state file is only read.

mod checks;
mod state;

use state::state_check;

use serde::Serialize;

use crate::agent::IdentityMode;
use crate::aws::SsoAdminApi;
use crate::aws::{AwsError, ConnectApi, ConnectUser, IdentityStoreApi, IdentityUser};
use crate::config::RoleSessionName;
use crate::preflight::{self, Catalog, Target};

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
        preflight::discover_for_diagnosis(config, &clients.connect, &clients.sso_admin).await?;
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
}
