//! The four onboarding actions (Connect user, Identity Center user, group membership,
//! application assignment) and the four offboarding removals (`offboard`), written against
//! the AWS port (`crate::aws`), and the mapping of each service's error codes to the
//! engine's error classes.
//!
//! Each action is idempotent in the engine's sense: `lookup` is read-only and says whether
//! the resource exists and fits the agent; `create` reports `AlreadyExists` instead of
//! failing on a duplicate; `delete` reports `NotFound` for a resource already gone.
//! Classification is by error code only (the services' documented errors, AWS SDK
//! "Retry behavior"): Connect
//! `LimitExceededException` is the users-per-instance quota (permanent), not throttling;
//! SSO Admin `ConflictException` and a not-found principal right after its creation are
//! propagation races (transient).
//!
//! One file per action; `classify` maps error codes to classes. Action types are named for
//! what they do (`CreateConnectUser`), never like the AWS types they handle.

mod app_assignment;
mod classify;
mod connect_user;
mod existing_identity_user;
mod existing_user;
mod group_membership;
mod identity_user;
mod offboard;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod update;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::AgentSpec;
use crate::aws::pacer::with_attempt;
use crate::aws::retry::for_caller;
use crate::aws::{ConnectApi, IdentityStoreApi, SsoAdminApi};
use crate::config::AssignmentMode;
use crate::engine::{Action, Found, Outputs, Registry, StepContext, StepError};

pub use app_assignment::AssignApplication;
pub use connect_user::CreateConnectUser;
pub use existing_identity_user::AdoptIdentityUser;
pub use existing_user::AdoptConnectUser;
pub use group_membership::AddGroupMembership;
pub use identity_user::CreateIdentityUser;
pub use offboard::{
    DeleteConnectUser, DeleteIdentityUser, RemoveGroupMembership, RemoveUserAssignment,
};
pub use update::{Change, Changes, Field, UpdateField};

/// What the engine stores per agent: the validated agent plus the ids its profile names
/// resolved to at preflight. Contains no secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subject {
    /// The validated agent.
    pub agent: AgentSpec,
    /// Routing profile id.
    pub routing_profile_id: String,
    /// Security profile ids.
    pub security_profile_ids: Vec<String>,
    /// Hierarchy group id.
    pub hierarchy_group_id: Option<String>,
    /// The Identity Store `UserName` when it is not the normalised email: a migrated
    /// agent's Connect username, case kept (SAML matches it case-sensitively).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_user_name: Option<String>,
    /// An agent being offboarded: what planning identified to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaver: Option<Leaver>,
    /// `apply`: the fields to change, each with the value it replaces.
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub changes: Changes,
}

/// What `offboard` identified at planning time for one agent, by the onboarding rules
/// (Connect username = the email; the Identity Store user whose UserName or email is it).
/// A side left `None` is not touched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Leaver {
    /// The Connect user to delete.
    pub connect_user_id: Option<String>,
    /// The Identity Store user whose assignment and membership are removed (and which is
    /// deleted unless `keep_identity_user`).
    pub identity_user_id: Option<String>,
    /// The agents' group, when it exists (never deleted itself).
    pub group_id: Option<String>,
    /// `--keep-identity-user`: the Identity Store user stays (its access to Connect goes).
    pub keep_identity_user: bool,
}

impl Subject {
    /// The Identity Store UserName: the migrated username, else the email.
    pub fn identity_user_name(&self) -> &str {
        self.identity_user_name
            .as_deref()
            .unwrap_or(&self.agent.email)
    }
}

/// Where the actions act: clients and resolved target ids.
#[derive(Clone)]
pub struct Env {
    /// Amazon Connect.
    pub connect: Arc<dyn ConnectApi>,
    /// Identity Store.
    pub identity_store: Arc<dyn IdentityStoreApi>,
    /// SSO Admin.
    pub sso_admin: Arc<dyn SsoAdminApi>,
    /// Connect instance id.
    pub instance_id: String,
    /// Identity store id.
    pub identity_store_id: String,
    /// Amazon Connect application ARN in Identity Center.
    pub application_arn: String,
    /// Group name.
    pub group: String,
    /// Group or per-user assignment.
    pub assignment: AssignmentMode,
    /// Bulk reads of a batch: the plan's lookups are answered from them.
    pub snapshot: Option<Arc<snapshot::Snapshot>>,
}

/// The secret name the Connect action reads the password from.
pub const PASSWORD: &str = "password";

/// The action that sends the password (CONNECT_MANAGED): an agent whose step of this action
/// is not done yet needs its password again on resume.
pub const PASSWORD_ACTION: &str = "connect.user";

/// The actions whose step makes (or adopts) the agent's Connect user.
pub const CONNECT_USER_ACTIONS: [&str; 2] = [PASSWORD_ACTION, "connect.existing_user"];

/// The action whose step makes the agent's Identity Store user.
pub const IDENTITY_USER_ACTION: &str = "identitystore.user";

/// The action whose step adopts the agent's Identity Store user, never creating or deleting
/// it (`sync`: the identity provider owns it).
pub const IDENTITY_USER_ADOPTION: &str = "identitystore.existing_user";

/// The built-in actions, by the names workflow files use.
pub fn registry(env: &Env) -> Registry<Subject> {
    let mut r: Registry<Subject> = BTreeMap::new();
    r.insert(
        PASSWORD_ACTION.into(),
        Arc::new(Paced(CreateConnectUser(env.clone()))),
    );
    r.insert(
        CONNECT_USER_ACTIONS[1].into(),
        Arc::new(Paced(AdoptConnectUser(env.clone()))),
    );
    r.insert(
        IDENTITY_USER_ACTION.into(),
        Arc::new(Paced(CreateIdentityUser(env.clone()))),
    );
    r.insert(
        IDENTITY_USER_ADOPTION.into(),
        Arc::new(Paced(AdoptIdentityUser(env.clone()))),
    );
    r.insert(
        "identitystore.group_membership".into(),
        Arc::new(Paced(AddGroupMembership(env.clone()))),
    );
    r.insert(
        "ssoadmin.application_assignment".into(),
        Arc::new(Paced(AssignApplication(env.clone()))),
    );
    r.insert(
        "ssoadmin.remove_user_assignment".into(),
        Arc::new(Paced(RemoveUserAssignment(env.clone()))),
    );
    r.insert(
        "identitystore.remove_group_membership".into(),
        Arc::new(Paced(RemoveGroupMembership(env.clone()))),
    );
    r.insert(
        IDENTITY_USER_REMOVAL.into(),
        Arc::new(Paced(DeleteIdentityUser(env.clone()))),
    );
    r.insert(
        CONNECT_USER_REMOVAL.into(),
        Arc::new(Paced(DeleteConnectUser(env.clone()))),
    );
    for field in Field::ALL {
        r.insert(
            field.action().into(),
            Arc::new(Paced(UpdateField(env.clone(), field))),
        );
    }
    r
}

/// The removal of the agent's Connect user (offboarding).
pub const CONNECT_USER_REMOVAL: &str = "connect.delete_user";

/// The removal of the agent's Identity Store user (offboarding).
pub const IDENTITY_USER_REMOVAL: &str = "identitystore.delete_user";

/// Who an action's calls are for, as wait lines name it: the agent.
fn caller(cx: &StepContext<'_, Subject>) -> std::sync::Arc<str> {
    std::sync::Arc::from(cx.subject.agent.email.as_str())
}

/// An action whose AWS calls carry the engine's attempt number to the pacer, so retries
/// never crowd out first attempts, and name their agent to the wait lines.
struct Paced<A>(A);

#[async_trait::async_trait]
impl<A: Action<Subject>> Action<Subject> for Paced<A> {
    fn inputs(&self) -> &'static [&'static str] {
        self.0.inputs()
    }
    fn outputs(&self) -> &'static [&'static str] {
        self.0.outputs()
    }
    fn shared(&self) -> bool {
        self.0.shared()
    }
    fn removes(&self) -> bool {
        self.0.removes()
    }
    async fn lookup(&self, cx: &StepContext<'_, Subject>) -> Result<Found, StepError> {
        with_attempt(cx.attempt, for_caller(caller(cx), self.0.lookup(cx))).await
    }
    async fn lookup_unbound(
        &self,
        cx: &StepContext<'_, Subject>,
    ) -> Option<Result<Found, StepError>> {
        with_attempt(cx.attempt, self.0.lookup_unbound(cx)).await
    }
    async fn create(&self, cx: &StepContext<'_, Subject>) -> Result<Outputs, StepError> {
        with_attempt(cx.attempt, for_caller(caller(cx), self.0.create(cx))).await
    }
    async fn delete(&self, cx: &StepContext<'_, Subject>, out: &Outputs) -> Result<(), StepError> {
        with_attempt(cx.attempt, for_caller(caller(cx), self.0.delete(cx, out))).await
    }
}
