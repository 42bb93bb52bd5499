//! `iam-policy`: the least-privilege IAM policy for the configured target, built from one
//! table of which AWS API operations each command calls ([`ACTIONS`]). A test runs each
//! command against the sandbox and checks that the operations it saw are exactly the
//! table's, so the policy cannot drift from the code.
//!
//! Resource ARN formats are those of the AWS Service Authorization Reference:
//! Connect `arn:${Partition}:connect:${Region}:${Account}:instance/${InstanceId}` and its
//! `agent/*`, `routing-profile/*`, `security-profile/*`, `agent-group/*` sub-resources;
//! Identity Store `arn:${Partition}:identitystore::${Account}:identitystore/${StoreId}`
//! with `arn:${Partition}:identitystore:::user/*`, `group/*`, `membership/*`; IAM Identity
//! Center `arn:${Partition}:sso:::instance/${InstanceId}` and
//! `arn:${Partition}:sso::${Account}:application/${InstanceId}/${ApplicationId}`;
//! `sso:ListInstances` supports no resource (`*`). Parts the config does not give (the
//! account, a discovered id) are wildcards. Nothing is read from AWS.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::config::Config;

use super::{Context, Error};

/// Which command's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFor {
    /// `onboard` (and `resume`, `retry`, `rollback`, `release`).
    Onboard,
    /// `batch`.
    Batch,
    /// `migrate`.
    Migrate,
    /// `offboard`.
    Offboard,
    /// `apply` (with `--prune`).
    Apply,
    /// `sync` (with `--prune`).
    Sync,
    /// `doctor`.
    Doctor,
    /// `drift`.
    Drift,
    /// Every command.
    All,
}

impl PolicyFor {
    /// Every value, in `iam-policy --for`'s order.
    pub const EVERY: [PolicyFor; 9] = [
        PolicyFor::Onboard,
        PolicyFor::Batch,
        PolicyFor::Migrate,
        PolicyFor::Offboard,
        PolicyFor::Apply,
        PolicyFor::Sync,
        PolicyFor::Doctor,
        PolicyFor::Drift,
        PolicyFor::All,
    ];

    /// The command's name (the value of `iam-policy --for`).
    pub fn name(self) -> &'static str {
        match self {
            PolicyFor::Onboard => "onboard",
            PolicyFor::Batch => "batch",
            PolicyFor::Migrate => "migrate",
            PolicyFor::Offboard => "offboard",
            PolicyFor::Apply => "apply",
            PolicyFor::Sync => "sync",
            PolicyFor::Doctor => "doctor",
            PolicyFor::Drift => "drift",
            PolicyFor::All => "all",
        }
    }
}

/// Preflight reads (every command that talks to AWS): the instance, Identity Center's
/// instance and application (listed when not configured, else described), the catalog.
const PREFLIGHT: &[&str] = &[
    "connect:DescribeInstance",
    "connect:ListRoutingProfiles",
    "connect:ListSecurityProfiles",
    "connect:ListUserHierarchyGroups",
    "sso:ListInstances",
    "sso:ListApplications",
    "sso:DescribeApplication",
];

/// Looking an agent's Connect user up: by username, then by id.
const CONNECT_LOOKUPS: &[&str] = &["connect:SearchUsers", "connect:DescribeUser"];

/// The onboarding workflow's Connect user, and its compensation.
const CONNECT_CREATE: &[&str] = &["connect:CreateUser", "connect:DeleteUser"];

/// The onboarding workflow's Identity Center calls for one agent: lookups, writes, and their
/// compensations.
const IDENTITY_CENTER: &[&str] = &[
    "identitystore:GetUserId",
    "identitystore:DescribeUser",
    "identitystore:CreateUser",
    "identitystore:DeleteUser",
    "identitystore:GetGroupId",
    "identitystore:CreateGroup",
    "identitystore:GetGroupMembershipId",
    "identitystore:CreateGroupMembership",
    "identitystore:DeleteGroupMembership",
    "sso:DescribeApplicationAssignment",
    "sso:CreateApplicationAssignment",
    "sso:DeleteApplicationAssignment",
];

/// `sync`'s Identity Center calls for one agent: the user adopted (never created, deleted
/// or updated: the identity provider owns it), its membership of the agents' group and the
/// application assignment, with their compensations.
const SYNC_IDENTITY_CENTER: &[&str] = &[
    "identitystore:GetUserId",
    "identitystore:DescribeUser",
    "identitystore:GetGroupId",
    "identitystore:CreateGroup",
    "identitystore:GetGroupMembershipId",
    "identitystore:CreateGroupMembership",
    "identitystore:DeleteGroupMembership",
    "sso:DescribeApplicationAssignment",
    "sso:CreateApplicationAssignment",
    "sso:DeleteApplicationAssignment",
];

/// A batch's bulk reads.
const BULK: &[&str] = &[
    "connect:ListUsers",
    "identitystore:ListUsers",
    "identitystore:ListGroupMemberships",
];

/// The API operations (`service:Operation`, as the sandbox counts them) each command
/// calls.
pub const ACTIONS: &[(PolicyFor, &[&[&str]])] = &[
    (
        PolicyFor::Onboard,
        &[PREFLIGHT, CONNECT_LOOKUPS, CONNECT_CREATE, IDENTITY_CENTER],
    ),
    (
        PolicyFor::Batch,
        &[
            PREFLIGHT,
            CONNECT_LOOKUPS,
            CONNECT_CREATE,
            IDENTITY_CENTER,
            BULK,
        ],
    ),
    // Adopts the Connect user: never creates or deletes it.
    (
        PolicyFor::Migrate,
        &[PREFLIGHT, BULK, CONNECT_LOOKUPS, IDENTITY_CENTER],
    ),
    (
        PolicyFor::Offboard,
        &[
            PREFLIGHT,
            BULK,
            CONNECT_LOOKUPS,
            &[
                "connect:DeleteUser",
                "identitystore:GetUserId",
                "identitystore:DescribeUser",
                "identitystore:DeleteUser",
                "identitystore:GetGroupId",
                "identitystore:GetGroupMembershipId",
                "identitystore:DeleteGroupMembership",
                "sso:DescribeApplicationAssignment",
                "sso:DeleteApplicationAssignment",
            ],
        ],
    ),
    // Creates and completes agents as batch does, updates their fields (restoring them on
    // rollback: UntagResource removes a tag it added), and with --prune offboards.
    (
        PolicyFor::Apply,
        &[
            PREFLIGHT,
            CONNECT_LOOKUPS,
            CONNECT_CREATE,
            IDENTITY_CENTER,
            BULK,
            &[
                "connect:UpdateUserRoutingProfile",
                "connect:UpdateUserSecurityProfiles",
                "connect:UpdateUserHierarchy",
                "connect:UpdateUserPhoneConfig",
                "connect:UpdateUserIdentityInfo",
                "connect:TagResource",
                "connect:UntagResource",
                "identitystore:UpdateUser",
            ],
        ],
    ),
    // apply's, with the mapped groups read (ListGroups, ListGroupMemberships) and the
    // Identity Center user adopted only; --prune deletes the Connect user alone.
    (
        PolicyFor::Sync,
        &[
            PREFLIGHT,
            CONNECT_LOOKUPS,
            CONNECT_CREATE,
            SYNC_IDENTITY_CENTER,
            BULK,
            &[
                "identitystore:ListGroups",
                "connect:UpdateUserRoutingProfile",
                "connect:UpdateUserSecurityProfiles",
                "connect:UpdateUserHierarchy",
                "connect:UpdateUserPhoneConfig",
                "connect:UpdateUserIdentityInfo",
                "connect:TagResource",
                "connect:UntagResource",
            ],
        ],
    ),
    (
        PolicyFor::Doctor,
        &[
            PREFLIGHT,
            &[
                "connect:ListUsers",
                "connect:DescribeUser",
                "identitystore:ListUsers",
                "identitystore:GetGroupId",
                "identitystore:GetGroupMembershipId",
                "sso:DescribeApplicationAssignment",
            ],
        ],
    ),
    (
        PolicyFor::Drift,
        &[
            PREFLIGHT,
            BULK,
            &[
                "identitystore:GetGroupId",
                "sso:DescribeApplicationAssignment",
                "sso:ListApplicationAssignments",
            ],
        ],
    ),
];

/// Authorization-only actions an operation needs besides its own (Service Authorization
/// Reference, "Dependent actions" / tag-on-create): CreateUser with `Tags` is also
/// authorized as `connect:TagResource`.
const ALSO_NEEDS: &[(&str, &str)] = &[("connect:CreateUser", "connect:TagResource")];

/// The API operations `command` calls (every command's for `all`).
pub fn operations(command: PolicyFor) -> BTreeSet<&'static str> {
    ACTIONS
        .iter()
        .filter(|(c, _)| command == PolicyFor::All || *c == command)
        .flat_map(|(_, groups)| groups.iter().flat_map(|g| g.iter().copied()))
        .collect()
}

/// The IAM action authorizing an API operation: the operation's service prefix is the
/// IAM prefix for all three (SSO Admin signs as, and is authorized as, `sso`).
fn iam_actions(ops: &BTreeSet<&'static str>) -> BTreeSet<&'static str> {
    let mut out = ops.clone();
    for (op, extra) in ALSO_NEEDS {
        if ops.contains(op) {
            out.insert(extra);
        }
    }
    out
}

/// The policy document for `command` and the configured target (`--region` over the
/// config's Connect region).
/// With a shared state store (`--state dynamodb://TABLE`), a statement for it too, scoped
/// to the table and its indexes (what the store says it needs). With the event queue of
/// `sync --watch --queue`, a statement for it, scoped to the queue.
pub fn iam_policy(ctx: &Context, command: PolicyFor, queue: Option<&str>) -> Result<Value, Error> {
    let region = ctx.new_run_regions().connect;
    let queue = match (queue, command) {
        (None, _) => None,
        (Some(url), PolicyFor::Sync | PolicyFor::All) => Some(queue_statement(url)?),
        (Some(_), other) => {
            return Err(Error::Input(format!(
                "--queue: only `sync --watch` reads an event queue, not {}; use --for sync",
                other.name()
            )))
        }
    };
    let mut doc = policy(ctx.config()?, region.as_deref(), command);
    // `drift` reads no state; `doctor` only reads it.
    let state = match command {
        PolicyFor::Drift => None,
        c => {
            let partition = partition(ctx.config()?);
            (ctx.state).permissions(&partition, region.as_deref(), c != PolicyFor::Doctor)
        }
    };
    if let (Some(p), Some(list)) = (state, doc["Statement"].as_array_mut()) {
        list.push(json!({
            "Sid": "StateTable",
            "Effect": "Allow",
            "Action": p.actions,
            "Resource": p.resources,
        }));
    }
    if let (Some(q), Some(list)) = (queue, doc["Statement"].as_array_mut()) {
        list.push(q);
    }
    Ok(doc)
}

/// What `sync --watch --queue` calls on its queue (a batch delete or extension needs the
/// single call's permission), on that queue.
fn queue_statement(url: &str) -> Result<Value, Error> {
    let arn = crate::aws::queue::queue_arn(url).ok_or_else(|| {
        Error::Input(format!(
            "--queue {url:?}: not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME): the policy names the queue's ARN"
        ))
    })?;
    Ok(json!({
        "Sid": "EventQueue",
        "Effect": "Allow",
        "Action": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"],
        "Resource": arn,
    }))
}

/// The partition an ARN in the config names, else `aws`.
fn partition(config: &Config) -> String {
    let ic = &config.identity_center;
    [
        Some(config.connect.instance_id.trim()),
        ic.application_arn.as_deref(),
        ic.instance_arn.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|a| a.starts_with("arn:"))
    .find_map(|a| a.split(':').nth(1).filter(|p| !p.is_empty()))
    .unwrap_or("aws")
    .to_string()
}

/// The resource ARNs of the configured target (wildcards where the config does not say).
struct Arns {
    partition: String,
    instance: String,
    store: String,
    sso_instance: String,
    application: String,
}

impl Arns {
    fn of(config: &Config, region: Option<&str>) -> Arns {
        let ic = &config.identity_center;
        let raw_instance = config.connect.instance_id.trim();
        // What an ARN in the config tells: partition and account.
        let parts = |arn: &str, i: usize| {
            arn.split(':')
                .nth(i)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
        };
        let partition = [
            Some(raw_instance),
            ic.application_arn.as_deref(),
            ic.instance_arn.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|a| a.starts_with("arn:"))
        .find_map(|a| parts(a, 1))
        .unwrap_or_else(|| "aws".into());
        let connect_account = raw_instance
            .starts_with("arn:")
            .then(|| parts(raw_instance, 4))
            .flatten()
            .unwrap_or_else(|| "*".into());
        let ic_account = ic
            .application_arn
            .as_deref()
            .and_then(|a| parts(a, 4))
            .unwrap_or_else(|| "*".into());
        let region = region.unwrap_or("*");
        let instance = format!(
            "arn:{partition}:connect:{region}:{connect_account}:instance/{}",
            config.connect.instance_id()
        );
        let store = format!(
            "arn:{partition}:identitystore::{ic_account}:identitystore/{}",
            ic.identity_store_id
                .as_deref()
                .map(|s| s.rsplit('/').next().unwrap_or(s))
                .unwrap_or("*")
        );
        let sso_instance = ic
            .instance_arn
            .clone()
            .unwrap_or_else(|| format!("arn:{partition}:sso:::instance/*"));
        let application = ic.application_arn.clone().unwrap_or_else(|| {
            let id = sso_instance.rsplit('/').next().unwrap_or("*");
            format!("arn:{partition}:sso::{ic_account}:application/{id}/*")
        });

        Arns {
            partition,
            instance,
            store,
            sso_instance,
            application,
        }
    }
}

fn policy(config: &Config, region: Option<&str>, command: PolicyFor) -> Value {
    let actions = iam_actions(&operations(command));
    let Arns {
        partition,
        instance,
        store,
        sso_instance,
        application,
    } = Arns::of(config, region);

    // One statement a resource family, with the actions that act on it (none: no statement).
    let mut statements = Vec::new();
    let mut allow = |sid: &str, on: &dyn Fn(&str) -> bool, resource: Value| {
        let action: Vec<&str> = actions.iter().copied().filter(|a| on(a)).collect();
        if !action.is_empty() {
            statements.push(json!({
                "Sid": sid,
                "Effect": "Allow",
                "Action": action,
                "Resource": resource,
            }));
        }
    };
    allow(
        "ConnectInstance",
        &|a| a.starts_with("connect:"),
        json!([
            instance.clone(),
            format!("{instance}/agent/*"),
            format!("{instance}/routing-profile/*"),
            format!("{instance}/security-profile/*"),
            format!("{instance}/agent-group/*"),
        ]),
    );
    allow(
        "IdentityStore",
        &|a| a.starts_with("identitystore:"),
        json!([
            store,
            format!("arn:{partition}:identitystore:::user/*"),
            format!("arn:{partition}:identitystore:::group/*"),
            format!("arn:{partition}:identitystore:::membership/*"),
        ]),
    );
    allow(
        "IdentityCenterApplication",
        &|a| a.starts_with("sso:") && a != "sso:ListInstances",
        json!([sso_instance, application]),
    );
    allow(
        "IdentityCenterInstances",
        &|a| a == "sso:ListInstances",
        json!("*"),
    );
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_scoped_except_list_instances_and_all_is_the_union() {
        let cfg = Config::from_toml_str(
            "[connect]\ninstance_id = \"arn:aws:connect:eu-west-2:111122223333:instance/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee\"\n[identity_center]\napplication_arn = \"arn:aws:sso::444455556666:application/ssoins-1234567890abcdef/apl-1234567890abcdef\"\ninstance_arn = \"arn:aws:sso:::instance/ssoins-1234567890abcdef\"\nidentity_store_id = \"d-1234567890\"\n",
            std::path::Path::new("t.toml"),
        )
        .expect("config");
        let p = policy(&cfg, cfg.connect.region(), PolicyFor::All);
        let text = p.to_string();
        assert!(text.contains("arn:aws:connect:eu-west-2:111122223333:instance/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee/agent/*"), "{text}");
        assert!(
            text.contains("arn:aws:identitystore::444455556666:identitystore/d-1234567890"),
            "{text}"
        );
        for s in p["Statement"].as_array().unwrap() {
            if s["Resource"] == "*" {
                assert_eq!(s["Action"], json!(["sso:ListInstances"]));
            }
        }
        let all = operations(PolicyFor::All);
        for c in PolicyFor::EVERY {
            assert_eq!(
                ACTIONS.iter().filter(|(a, _)| *a == c).count(),
                usize::from(c != PolicyFor::All),
                "one row per command: {c:?}"
            );
            assert!(operations(c).is_subset(&all));
            assert!(!operations(c).is_empty());
        }
        assert!(iam_actions(&operations(PolicyFor::Onboard)).contains("connect:TagResource"));
        assert!(
            !iam_actions(&operations(PolicyFor::Doctor))
                .iter()
                .any(|a| a.contains("Create") || a.contains("Delete")),
            "doctor is read-only"
        );
    }
}
