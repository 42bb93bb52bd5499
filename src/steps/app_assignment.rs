//! Step 4: the Amazon Connect application assignment.

use crate::aws::Principal;
use crate::engine::{Action, Found, Outputs, StepContext, StepError};

use super::classify::{classify, outputs, read, recorded, Call};
use super::snapshot::Lookup;
use super::{Env, Subject};
use crate::config::AssignmentMode;

/// Step 4: access to the Amazon Connect application: the group once (shared) or the
/// user directly (owned), per `identity_center.assignment`.
pub struct AssignApplication(pub(super) Env);

impl AssignApplication {
    fn principal<'a>(
        &self,
        cx: &'a StepContext<'_, Subject>,
    ) -> Result<(Principal, &'a str), StepError> {
        Ok(match self.0.assignment {
            AssignmentMode::Group => (Principal::Group, cx.input("group_id")?),
            AssignmentMode::User => (Principal::User, cx.input("user_id")?),
        })
    }
}

fn principal_name(p: Principal) -> &'static str {
    match p {
        Principal::User => "USER",
        Principal::Group => "GROUP",
    }
}

#[async_trait::async_trait]
impl Action<Subject> for AssignApplication {
    fn inputs(&self) -> &'static [&'static str] {
        &["user_id", "group_id"]
    }

    fn outputs(&self) -> &'static [&'static str] {
        &["principal_type", "principal_id"]
    }

    fn shared(&self) -> bool {
        self.0.assignment == AssignmentMode::Group
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let (kind, id) = self.principal(cx)?;
        // Group mode: the group's assignment is one shared fact; once the batch knows it
        // exists, no agent asks again, and the listing answers each agent's plan once.
        let known = (self.0.snapshot.as_ref())
            .filter(|_| kind == Principal::Group)
            .and_then(|s| match s.group_assigned() {
                Some(true) => Some(true),
                Some(false) if s.first(Lookup::Assignment, &cx.subject.agent.email) => Some(false),
                _ => None,
            });
        let assigned = match known {
            Some(a) => a,
            None => self
                .0
                .sso_admin
                .is_assigned(&self.0.application_arn, kind, id)
                .await
                .map_err(read)?,
        };
        if let (true, Principal::Group, Some(s)) = (assigned, kind, &self.0.snapshot) {
            s.learn_group_assigned();
        }
        Ok(if assigned {
            Found::Match(outputs([
                ("principal_type", principal_name(kind)),
                ("principal_id", id),
            ]))
        } else {
            Found::Absent
        })
    }

    /// A dry run of a new agent: in group mode the assignment is the group's, which does not
    /// depend on the agent, so it is looked up (the group by name, then its assignment; the
    /// batch's snapshot answers both when it holds them) and planned as the run will find it.
    async fn lookup_unbound(
        &self,
        cx: &StepContext<'_, Subject>,
    ) -> Option<Result<Found, StepError>> {
        if self.0.assignment != AssignmentMode::Group {
            return None;
        }
        let snapshot = self.0.snapshot.as_ref();
        let group = match (cx.inputs.get("group_id").cloned()).or_else(|| snapshot?.group_id()) {
            Some(g) => g,
            None => match (self.0.identity_store)
                .group_id(&self.0.identity_store_id, &self.0.group)
                .await
            {
                // The run creates the group, then assigns it.
                Ok(None) => return Some(Ok(Found::Absent)),
                Ok(Some(g)) => g,
                Err(e) => return Some(Err(read(e))),
            },
        };
        let assigned = match snapshot.and_then(|s| s.group_assigned()) {
            Some(a) => a,
            None => match (self.0.sso_admin)
                .is_assigned(&self.0.application_arn, Principal::Group, &group)
                .await
            {
                Ok(a) => a,
                Err(e) => return Some(Err(read(e))),
            },
        };
        Some(Ok(if assigned {
            Found::Match(outputs([
                ("principal_type", principal_name(Principal::Group)),
                ("principal_id", &group),
            ]))
        } else {
            Found::Absent
        }))
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        let (kind, id) = self.principal(cx)?;
        self.0
            .sso_admin
            .assign(&self.0.application_arn, kind, id)
            .await
            .map_err(|e| classify(e, Call::CreateReferencing))?;
        if let (Principal::Group, Some(s)) = (kind, &self.0.snapshot) {
            s.learn_group_assigned();
        }
        Ok(outputs([
            ("principal_type", principal_name(kind)),
            ("principal_id", id),
        ]))
    }

    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let kind = if out.get("principal_type").map(String::as_str) == Some("GROUP") {
            Principal::Group
        } else {
            Principal::User
        };
        let id = recorded(out, "principal_id")?;
        self.0
            .sso_admin
            .unassign(&self.0.application_arn, kind, id)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}
