//! Step 3: membership of the agents' group (the group itself is shared).

use crate::engine::{Action, ErrorKind, Found, Outputs, StepContext, StepError};

use super::classify::{classify, outputs, read, recorded, Call};
use super::snapshot::Lookup;
use super::{Env, Subject};

/// Step 3: membership of the agents' group (the group itself is shared: created if
/// missing, never deleted).
pub struct AddGroupMembership(pub(super) Env);

impl AddGroupMembership {
    /// The group's id: remembered by the batch's snapshot once known, else looked up.
    async fn group_id(&self) -> Result<Option<String>, StepError> {
        if let Some(g) = self.0.snapshot.as_ref().and_then(|s| s.group_id()) {
            return Ok(Some(g));
        }
        let g = (self.0.identity_store)
            .group_id(&self.0.identity_store_id, &self.0.group)
            .await
            .map_err(read)?;
        if let (Some(s), Some(g)) = (&self.0.snapshot, &g) {
            s.learn_group_id(g);
        }
        Ok(g)
    }

    async fn ensure_group(&self) -> Result<String, StepError> {
        let ids = &self.0.identity_store;
        let store = &self.0.identity_store_id;
        if let Some(g) = self.group_id().await? {
            return Ok(g);
        }
        match ids
            .create_group(
                store,
                &self.0.group,
                "Amazon Connect agents (managed by connect-onboard)",
            )
            .await
        {
            Ok(g) => {
                if let Some(s) = &self.0.snapshot {
                    s.learn_group_id(&g);
                }
                Ok(g)
            }
            Err(e) => {
                let se = classify(e, Call::Create);
                if se.kind != ErrorKind::AlreadyExists && se.kind != ErrorKind::Ambiguous {
                    return Err(se);
                }
                // Created concurrently (or by our own unanswered call): look it up.
                self.group_id().await?.ok_or_else(|| {
                    StepError::new(
                        ErrorKind::NotVisibleYet,
                        "NotVisibleYet",
                        format!("group {:?} exists but is not visible yet", self.0.group),
                    )
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl Action<Subject> for AddGroupMembership {
    fn inputs(&self) -> &'static [&'static str] {
        &["user_id"]
    }

    fn outputs(&self) -> &'static [&'static str] {
        &["group_id", "membership_id"]
    }

    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        let ids = &self.0.identity_store;
        let store = &self.0.identity_store_id;
        let user = cx.input("user_id")?;
        let Some(group) = self.group_id().await? else {
            return Ok(Found::Absent);
        };
        if let Some(s) = (self.0.snapshot.as_ref())
            .filter(|s| s.first(Lookup::Membership, &cx.subject.agent.email))
        {
            return Ok(match s.membership(user) {
                Some(m) => Found::Match(outputs([("group_id", &group), ("membership_id", m)])),
                None => Found::Absent,
            });
        }
        Ok(
            match ids.membership_id(store, &group, user).await.map_err(read)? {
                Some(m) => Found::Match(outputs([("group_id", &group), ("membership_id", &m)])),
                None => Found::Absent,
            },
        )
    }

    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        let user = cx.input("user_id")?;
        let group = self.ensure_group().await?;
        let m = self
            .0
            .identity_store
            .create_membership(&self.0.identity_store_id, &group, user)
            .await
            .map_err(|e| classify(e, Call::CreateReferencing))?;
        Ok(outputs([("group_id", &group), ("membership_id", &m)]))
    }

    async fn delete(&self, _cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        let m = recorded(out, "membership_id")?;
        self.0
            .identity_store
            .delete_membership(&self.0.identity_store_id, m)
            .await
            .map_err(|e| classify(e, Call::Delete))
    }
}
