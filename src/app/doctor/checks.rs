//! Doctor's checks of AWS, one method each: the Connect user, the Identity Center user
//! and its primary email, what the identity provider sends, the group membership, the
//! application assignment, the Connect profiles.

use crate::agent::fold;
use crate::aws::SsoApplication;
use crate::aws::{ConnectUser, IdentityUser, Principal};
use crate::config::{AssignmentMode, RoleSessionName};

use super::{Check, Doctor};

impl Doctor<'_> {
    /// The Connect user named exactly `who` (or exactly what the identity provider sends,
    /// when `who` was typed in another case); one that differs only in case is the cause.
    pub(super) async fn connect_user(
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
        if let Some(u) = (users.iter())
            .find(|u| Some(u.username.as_str()) == sent && fold::same(&u.username, self.who))
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
        let near: Vec<&ConnectUser> = users
            .iter()
            .filter(|u| fold::same(&u.username, self.who))
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
    pub(super) async fn identity_user(&self, checks: &mut Vec<Check>) -> Option<IdentityUser> {
        const ID: &str = "identity_user";
        let users = match self.ids.list_users(&self.target.identity_store_id).await {
            Ok(u) => u,
            Err(e) => {
                checks.push(Check::read_failed(ID, "the Identity Center users", &e));
                identity_user_dependents_unknown(
                    checks,
                    "the Identity Center users could not be read",
                    "run doctor again",
                );
                return None;
            }
        };
        let mut found: Vec<IdentityUser> = users
            .into_iter()
            .filter(|u| fold::answers_to(&u.user_name, &u.emails, self.who))
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
            identity_user_dependents_unknown(
                checks,
                "no Identity Center user to check",
                "fix identity_user first",
            );
            return None;
        };
        checks.push(Check::ok(
            ID,
            format!(
                "Identity Center user {:?} exists (id {})",
                first.user_name, first.id
            ),
        ));
        checks.push(self.identity_user_unique(&found));
        checks.push(primary_email(&first));
        Some(first)
    }

    /// One Identity Center user answers to `who` (`found`: all that do).
    fn identity_user_unique(&self, found: &[IdentityUser]) -> Check {
        if found.len() == 1 {
            return Check::ok(
                "identity_user_unique",
                "one Identity Center user has this name or email".into(),
            );
        }
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
    }

    /// What the identity provider sends as RoleSessionName must be the Connect username.
    pub(super) fn session_name(
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
        } else if fold::same(&sent, &cu.username) {
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
    pub(super) async fn membership(
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
    pub(super) async fn assignment(
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
    pub(super) async fn profiles(&self, checks: &mut Vec<Check>, cu: Option<&ConnectUser>) {
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

/// The checks that depend on finding the Identity Center user, when it was not found.
fn identity_user_dependents_unknown(checks: &mut Vec<Check>, detail: &str, fix: &str) {
    for id in ["identity_user_unique", "primary_email"] {
        checks.push(Check::unknown(id, detail.into(), fix.into()));
    }
}

/// The user has exactly one primary email: the SAML mapping `${user:email}` needs it.
fn primary_email(user: &IdentityUser) -> Check {
    match (user.primary_emails, &user.primary_email) {
        (1, Some(e)) => Check::ok("primary_email", format!("one primary email: {e}")),
        (n, _) => Check::problem(
            "primary_email",
            format!(
                "Identity Center user {:?} has {n} primary emails (emails: {}): the SAML mapping ${{user:email}} needs exactly one",
                user.user_name,
                if user.emails.is_empty() { "none".to_string() } else { user.emails.join(", ") }
            ),
            "in the IAM Identity Center console, give the user exactly one email and mark it primary".into(),
        ),
    }
}
