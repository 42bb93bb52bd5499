//! AWS Identity Store (awsJson1_1, `AWSIdentityStore.<Op>`): users (UpdateUser of their
//! names and text attributes included), groups and memberships with IAM Identity Center's
//! rules (required names, unique UserName and email, reserved names, Conflict on duplicate
//! membership).
//!
//! Assumptions where AWS is silent (see README): uniqueness and `GetUserId`
//! lookups are case-insensitive; deleting a user removes its memberships and
//! direct application assignments.
//!
//! The parts: this file (the operations' specs, dispatch and shared checks), `users`,
//! `groups` (groups and memberships).

use serde_json::{json, Map, Value};

use crate::error::{ApiError, Service};
use crate::input::{paginate, Req};
use crate::ops::{Ctx, OpSpec};
use crate::validate;
use crate::world::{IdentityStore, IdsGroup, IdsUser, Membership, World};

const SVC: Service = Service::IdentityStore;

const READ: &[&str] = &["ResourceNotFoundException", "ValidationException"];
const WRITE: &[&str] = &[
    "ResourceNotFoundException",
    "ValidationException",
    "ConflictException",
];
const CREATE: &[&str] = &[
    "ResourceNotFoundException",
    "ValidationException",
    "ConflictException",
    "ServiceQuotaExceededException",
];

/// The Identity Store operations.
pub(crate) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "CreateUser",
        method: "POST",
        uri: "/",
        errors: CREATE,
    },
    OpSpec {
        name: "DescribeUser",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "DeleteUser",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "UpdateUser",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "GetUserId",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "ListUsers",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "CreateGroup",
        method: "POST",
        uri: "/",
        errors: WRITE,
    },
    OpSpec {
        name: "DescribeGroup",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "GetGroupId",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "ListGroups",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "DeleteGroup",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "CreateGroupMembership",
        method: "POST",
        uri: "/",
        errors: WRITE,
    },
    OpSpec {
        name: "GetGroupMembershipId",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "DeleteGroupMembership",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "ListGroupMemberships",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "ListGroupMembershipsForMember",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "IsMemberInGroups",
        method: "POST",
        uri: "/",
        errors: READ,
    },
];

/// User attributes accepted by CreateUser and echoed by DescribeUser/ListUsers.
const USER_ATTRIBUTES: &[&str] = &[
    "NickName",
    "ProfileUrl",
    "Addresses",
    "PhoneNumbers",
    "UserType",
    "Title",
    "PreferredLanguage",
    "Locale",
    "Timezone",
    "Photos",
    "Website",
    "Birthdate",
    "Roles",
    "Extensions",
];

/// Runs an Identity Store operation.
pub(crate) fn dispatch(
    world: &mut World,
    ctx: &Ctx,
    op: &str,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let req = Req::new(SVC, body);
    match op {
        "CreateUser" => create_user(world, ctx, &req),
        "DescribeUser" => describe_user(world, &req),
        "DeleteUser" => delete_user(world, &req),
        "UpdateUser" => update_user(world, &req),
        "GetUserId" => get_user_id(world, ctx, &req),
        "ListUsers" => list_users(world, ctx, &req),
        "CreateGroup" => create_group(world, ctx, &req),
        "DescribeGroup" => describe_group(world, &req),
        "GetGroupId" => get_group_id(world, &req),
        "ListGroups" => list_groups(world, &req),
        "DeleteGroup" => delete_group(world, &req),
        "CreateGroupMembership" => create_membership(world, ctx, &req),
        "GetGroupMembershipId" => get_membership_id(world, &req),
        "DeleteGroupMembership" => delete_membership(world, &req),
        "ListGroupMemberships" => list_memberships(world, &req),
        "ListGroupMembershipsForMember" => list_memberships_for_member(world, &req),
        "IsMemberInGroups" => is_member_in_groups(world, &req),
        other => Err(ApiError::new(
            SVC,
            "UnknownOperationException",
            format!("Unknown operation {other}"),
        )),
    }
}

fn not_found(resource_type: &str, id: Option<&str>, message: impl Into<String>) -> ApiError {
    let e = ApiError::new(SVC, "ResourceNotFoundException", message)
        .with("ResourceType", resource_type);
    match id {
        Some(id) if validate::resource_id("ResourceId", id).is_ok() => e.with("ResourceId", id),
        _ => e,
    }
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(SVC, "ConflictException", message)
        .with("Reason", "UNIQUENESS_CONSTRAINT_VIOLATION")
}

fn invalid(message: impl Into<String>) -> ApiError {
    SVC.validation(message)
}

/// Resolves `IdentityStoreId` (bare id or ARN): format → Validation, unknown → ResourceNotFound.
fn store_id(world: &World, req: &Req) -> Result<String, ApiError> {
    let raw = req.str("IdentityStoreId")?;
    let id = raw
        .rsplit_once(":identitystore/")
        .map(|(_, id)| id)
        .unwrap_or(raw);
    validate::identity_store_id(id).map_err(invalid)?;
    if world.identity_stores.contains_key(id) {
        Ok(id.to_string())
    } else {
        Err(not_found(
            "IDENTITY_STORE",
            None,
            format!("Identity store {id} does not exist"),
        ))
    }
}

fn store<'w>(world: &'w World, req: &Req) -> Result<&'w IdentityStore, ApiError> {
    let id = store_id(world, req)?;
    world
        .identity_stores
        .get(&id)
        .ok_or_else(|| not_found("IDENTITY_STORE", None, "Identity store does not exist"))
}

fn store_mut<'w>(world: &'w mut World, req: &Req) -> Result<&'w mut IdentityStore, ApiError> {
    let id = store_id(world, req)?;
    world
        .identity_stores
        .get_mut(&id)
        .ok_or_else(|| not_found("IDENTITY_STORE", None, "Identity store does not exist"))
}

fn resource_id<'a>(req: &Req<'a>, key: &str) -> Result<&'a str, ApiError> {
    let id = req.str(key)?;
    validate::resource_id(key, id).map_err(invalid)?;
    Ok(id)
}

fn member_user_id<'a>(req: &Req<'a>) -> Result<&'a str, ApiError> {
    let member = req.obj("MemberId")?;
    let id = req.sub(member).str("UserId")?;
    validate::resource_id("MemberId.UserId", id).map_err(invalid)?;
    Ok(id)
}

fn user_arn(id: &str) -> String {
    format!("arn:aws:identitystore:::user/{id}")
}
fn group_arn(id: &str) -> String {
    format!("arn:aws:identitystore:::group/{id}")
}
fn membership_arn(id: &str) -> String {
    format!("arn:aws:identitystore:::membership/{id}")
}

// -- users ---------------------------------------------------------------------------

fn check_text(req: &Req, obj: &Map<String, Value>, key: &str, path: &str) -> Result<(), ApiError> {
    if let Some(v) = req.sub(obj).opt_str(key)? {
        validate::ids_text(path, v).map_err(invalid)?;
    }
    Ok(())
}

fn check_list_len(req: &Req, key: &str, min: usize, max: usize) -> Result<(), ApiError> {
    match req.opt_list(key)? {
        Some(l) if l.len() < min || l.len() > max => Err(invalid(format!(
            "1 validation error detected: Value at '{key}' failed to satisfy constraint: Member must have length between {min} and {max}"
        ))),
        _ => Ok(()),
    }
}

fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let (Some(t), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("NextToken".into(), Value::String(t));
    }
    out
}

mod groups;
#[cfg(test)]
mod tests;
mod users;

use groups::*;
use users::*;
