//! AWS Identity Store (awsJson1_1, `AWSIdentityStore.<Op>`): users (UpdateUser of their
//! names and text attributes included), groups and memberships with IAM Identity Center's
//! rules (required names, unique UserName and email, reserved names, Conflict on duplicate
//! membership).
//!
//! Assumptions where AWS is silent (see README): uniqueness and `GetUserId`
//! lookups are case-insensitive; deleting a user removes its memberships and
//! direct application assignments.

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

fn create_user(world: &mut World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let store_id = store_id(world, req)?;
    let new = NewUser::from_request(req)?;
    let store = world
        .identity_stores
        .get_mut(&store_id)
        .ok_or_else(|| not_found("IDENTITY_STORE", None, "Identity store does not exist"))?;
    new.check_room(store)?;
    let mut attributes = Map::new();
    for key in USER_ATTRIBUTES {
        if let Some(v) = req.body.get(*key) {
            attributes.insert((*key).to_string(), v.clone());
        }
    }
    let prefix = store_id
        .strip_prefix("d-")
        .filter(|h| h.len() == 10)
        .map(String::from)
        .unwrap_or_else(|| crate::world::new_uuid().replace('-', "")[..10].to_string());
    let user_id = format!("{prefix}-{}", crate::world::new_uuid());
    let user = IdsUser {
        user_id: user_id.clone(),
        user_name: new.user_name.to_string(),
        display_name: new.display_name.to_string(),
        name: Value::Object(new.name.clone()),
        emails: new.emails,
        attributes,
        created_at: ctx.epoch,
        created_ms: Some(ctx.now_ms),
    };
    let store = store_mut(world, req)?;
    store.insert_user(user);
    Ok(json!({
        "IdentityStoreId": store_id, "UserId": user_id, "UserArn": user_arn(&user_id), "Revision": "1",
    }))
}

/// A CreateUser request's fields, validated as the service does.
struct NewUser<'r> {
    user_name: &'r str,
    display_name: &'r str,
    name: &'r Map<String, Value>,
    emails: Vec<Value>,
    /// The emails' values, lower-cased (uniqueness ignores case).
    lower_emails: Vec<String>,
}

impl<'r> NewUser<'r> {
    fn from_request(req: &'r Req) -> Result<NewUser<'r>, ApiError> {
        let user_name = req
            .opt_str("UserName")?
            .ok_or_else(|| invalid("userName is a required attribute"))?;
        validate::ids_user_name(user_name).map_err(invalid)?;
        let display_name = req
            .opt_str("DisplayName")?
            .ok_or_else(|| invalid("displayName is a required attribute"))?;
        validate::ids_text("displayName", display_name).map_err(invalid)?;
        let name = req
            .opt_obj("Name")?
            .ok_or_else(|| invalid("name is a required attribute"))?;
        for (key, path) in [
            ("GivenName", "name.givenName"),
            ("FamilyName", "name.familyName"),
        ] {
            if req.sub(name).opt_str(key)?.is_none() {
                return Err(invalid(format!("{path} is a required attribute")));
            }
        }
        for key in [
            "Formatted",
            "GivenName",
            "FamilyName",
            "MiddleName",
            "HonorificPrefix",
            "HonorificSuffix",
        ] {
            check_text(req, name, key, &format!("name.{key}"))?;
        }
        check_list_len(req, "Emails", 1, 1)?;
        for key in ["PhoneNumbers", "Addresses", "Roles"] {
            check_list_len(req, key, 1, 1)?;
        }
        check_list_len(req, "Photos", 1, 3)?;
        let emails: Vec<Value> = req.opt_list("Emails")?.cloned().unwrap_or_default();
        let mut lower_emails = Vec::new();
        for e in &emails {
            let e = e
                .as_object()
                .ok_or_else(|| SVC.serialization("Emails entries must be objects"))?;
            let value = req.sub(e).opt_str("Value")?;
            check_text(req, e, "Value", "emails.value")?;
            check_text(req, e, "Type", "emails.type")?;
            if let Some(v) = value {
                lower_emails.push(v.to_lowercase());
            }
        }
        Ok(NewUser {
            user_name,
            display_name,
            name,
            emails,
            lower_emails,
        })
    }

    /// The store can take the user: its name and emails are free, and the quota not reached.
    fn check_room(&self, store: &IdentityStore) -> Result<(), ApiError> {
        let user_name = self.user_name;
        if store.holds('n', user_name) {
            return Err(conflict(format!(
                "Duplicate UserName: a user named {user_name} already exists"
            )));
        }
        if self.lower_emails.iter().any(|e| store.holds('e', e)) {
            return Err(conflict(
                "Duplicate Emails.Value: the email address is already used by another user",
            ));
        }
        if store.users.len() >= store.max_users {
            return Err(ApiError::new(
                SVC,
                "ServiceQuotaExceededException",
                "The number of users exceeds the maximum allowed",
            ));
        }
        Ok(())
    }
}

fn user_json(store_id: &str, u: &IdsUser) -> Value {
    let mut o = Map::new();
    o.insert("IdentityStoreId".into(), json!(store_id));
    o.insert("UserId".into(), json!(u.user_id));
    o.insert("UserArn".into(), json!(user_arn(&u.user_id)));
    o.insert("Revision".into(), json!("1"));
    o.insert("UserName".into(), json!(u.user_name));
    o.insert("DisplayName".into(), json!(u.display_name));
    o.insert("Name".into(), u.name.clone());
    if !u.emails.is_empty() {
        o.insert("Emails".into(), json!(u.emails));
    }
    for (k, v) in &u.attributes {
        o.insert(k.clone(), v.clone());
    }
    o.insert("UserStatus".into(), json!("ENABLED"));
    o.insert("CreatedAt".into(), json!(u.created_at));
    o.insert("UpdatedAt".into(), json!(u.created_at));
    Value::Object(o)
}

fn describe_user(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let id = resource_id(req, "UserId")?;
    let user = store
        .users
        .get(id)
        .ok_or_else(|| not_found("USER", Some(id), format!("USER with id {id} not found")))?;
    Ok(user_json(&store.id, user))
}

fn delete_user(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let id = resource_id(req, "UserId")?.to_string();
    let store = store_mut(world, req)?;
    if store.remove_user(&id).is_none() {
        return Err(not_found(
            "USER",
            Some(&id),
            format!("USER with id {id} not found"),
        ));
    }
    store.retain_memberships(|m| m.user_id != id);
    let store_id = store.id.clone();
    let apps: Vec<String> = world
        .applications
        .keys()
        .filter(|arn| world.store_of_application(arn).is_ok_and(|s| s == store_id))
        .cloned()
        .collect();
    world.assignments.retain(|a| {
        !(a.principal_type == "USER" && a.principal_id == id && apps.contains(&a.application_arn))
    });
    Ok(json!({}))
}

/// Where an UpdateUser attribute path lands: a member of `Name`, a top-level member, or one
/// of the other attributes, and whether IAM Identity Center requires it (no removal).
enum Slot {
    Name(&'static str, bool),
    DisplayName,
    Attribute(&'static str),
}

/// The attribute paths UpdateUser accepts here (compared without case, as GetUserId's):
/// the names, the display name and the plain text attributes. Others (userName, emails,
/// addresses, ...) are refused with a ValidationException.
fn update_slot(path: &str) -> Option<Slot> {
    Some(match path.to_lowercase().as_str() {
        "name.givenname" => Slot::Name("GivenName", true),
        "name.familyname" => Slot::Name("FamilyName", true),
        "name.formatted" => Slot::Name("Formatted", false),
        "name.middlename" => Slot::Name("MiddleName", false),
        "name.honorificprefix" => Slot::Name("HonorificPrefix", false),
        "name.honorificsuffix" => Slot::Name("HonorificSuffix", false),
        "displayname" => Slot::DisplayName,
        "nickname" => Slot::Attribute("NickName"),
        "title" => Slot::Attribute("Title"),
        "usertype" => Slot::Attribute("UserType"),
        "preferredlanguage" => Slot::Attribute("PreferredLanguage"),
        "locale" => Slot::Attribute("Locale"),
        "timezone" => Slot::Attribute("Timezone"),
        _ => return None,
    })
}

/// UpdateUser: 1..100 operations, each replacing (a string `AttributeValue`) or removing
/// (no value) one attribute, all checked before any is applied; a value breaks the
/// CreateUser rules (empty, too long, not allowed characters) → ValidationException, and so
/// does removing a name Identity Center requires.
fn update_user(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let id = resource_id(req, "UserId")?;
    let ops = req
        .opt_list("Operations")?
        .ok_or_else(|| SVC.missing("Operations"))?;
    check_list_len(req, "Operations", 1, 100)?;
    let mut user = store
        .users
        .get(id)
        .ok_or_else(|| not_found("USER", Some(id), format!("USER with id {id} not found")))?
        .clone();
    for op in ops {
        let op = op
            .as_object()
            .ok_or_else(|| SVC.serialization("Operations entries must be objects"))?;
        let path = req.sub(op).str("AttributePath")?;
        let slot = update_slot(path).ok_or_else(|| {
            invalid(format!(
                "AttributePath {path} is not supported by UpdateUser here"
            ))
        })?;
        let value = match op.get("AttributeValue") {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) => {
                validate::ids_text(path, v).map_err(invalid)?;
                Some(v.clone())
            }
            Some(_) => {
                return Err(invalid(format!(
                    "AttributeValue for {path} must be a string"
                )))
            }
        };
        match (slot, value) {
            (Slot::Name(_, true) | Slot::DisplayName, None) => {
                return Err(invalid(format!(
                    "{path} is a required attribute and cannot be removed"
                )))
            }
            (Slot::DisplayName, Some(v)) => user.display_name = v,
            (Slot::Name(key, _), v) => {
                if !user.name.is_object() {
                    user.name = json!({});
                }
                if let Some(name) = user.name.as_object_mut() {
                    match v {
                        Some(v) => name.insert(key.to_string(), json!(v)),
                        None => name.remove(key),
                    };
                }
            }
            (Slot::Attribute(key), Some(v)) => {
                user.attributes.insert(key.to_string(), json!(v));
            }
            (Slot::Attribute(key), None) => {
                user.attributes.remove(key);
            }
        }
    }
    store_mut(world, req)?.insert_user(user);
    Ok(json!({}))
}

/// Parses `AlternateIdentifier.UniqueAttribute` into (lower-cased path, value).
fn unique_attribute(req: &Req, resource_type: &str) -> Result<(String, String), ApiError> {
    let alt = req.obj("AlternateIdentifier")?;
    let alt_req = req.sub(alt);
    if alt_req.opt_obj("ExternalId")?.is_some() {
        return Err(not_found(
            resource_type,
            None,
            format!("{resource_type} not found for the given ExternalId"),
        ));
    }
    let ua = alt_req
        .opt_obj("UniqueAttribute")?
        .ok_or_else(|| invalid("AlternateIdentifier must have UniqueAttribute or ExternalId"))?;
    let ua_req = req.sub(ua);
    let path = ua_req.str("AttributePath")?;
    let value = match ua.get("AttributeValue") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(SVC.missing("AttributeValue")),
        Some(_) => {
            return Err(invalid(
                "AttributeValue must be a string for this attribute path",
            ))
        }
    };
    Ok((path.to_lowercase(), value))
}

fn get_user_id(world: &World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let (path, value) = unique_attribute(req, "USER")?;
    let kind = match path.as_str() {
        "username" => 'n',
        "emails.value" => 'e',
        _ => {
            return Err(invalid(format!(
                "{path} is not a valid unique attribute path; use userName or emails.value"
            )))
        }
    };
    // The first visible holder in id order, as a scan of the users would find it.
    (store.users_holding(kind, &value))
        .filter(|u| ctx.visible(u.created_ms))
        .min_by(|a, b| a.user_id.cmp(&b.user_id))
        .map(|u| json!({ "IdentityStoreId": store.id, "UserId": u.user_id, "UserArn": user_arn(&u.user_id) }))
        .ok_or_else(|| not_found("USER", None, "USER not found"))
}

fn list_users(world: &World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let max = req.max_results("MaxResults", 100, 100)?;
    let filter = match req.opt_list("Filters")? {
        Some(f) if f.len() > 1 => return Err(invalid("Filters may contain at most one filter")),
        Some(f) => f.first().and_then(Value::as_object),
        None => None,
    };
    let filter_value = match filter {
        Some(f) => {
            let r = req.sub(f);
            let path = r.str("AttributePath")?;
            if !path.eq_ignore_ascii_case("userName") {
                return Err(invalid("Only the UserName attribute path can be filtered"));
            }
            Some(r.str("AttributeValue")?.to_lowercase())
        }
        None => None,
    };
    let items = store
        .users
        .values()
        .filter(|u| ctx.visible(u.created_ms))
        .filter(|u| {
            filter_value
                .as_ref()
                .is_none_or(|v| &u.user_name.to_lowercase() == v)
        })
        .map(|u| (u.user_id.clone(), user_json(&store.id, u)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "Users": page }), next))
}

fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let (Some(t), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("NextToken".into(), Value::String(t));
    }
    out
}

// -- groups ----------------------------------------------------------------------------

fn group_json(store_id: &str, g: &IdsGroup) -> Value {
    let mut o = Map::new();
    o.insert("IdentityStoreId".into(), json!(store_id));
    o.insert("GroupId".into(), json!(g.group_id));
    o.insert("GroupArn".into(), json!(group_arn(&g.group_id)));
    o.insert("Revision".into(), json!("1"));
    o.insert("DisplayName".into(), json!(g.display_name));
    if let Some(d) = &g.description {
        o.insert("Description".into(), json!(d));
    }
    o.insert("CreatedAt".into(), json!(g.created_at));
    o.insert("UpdatedAt".into(), json!(g.created_at));
    Value::Object(o)
}

fn create_group(world: &mut World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let store = store_mut(world, req)?;
    let display_name = req
        .opt_str("DisplayName")?
        .ok_or_else(|| invalid("displayName is a required attribute"))?;
    validate::ids_text("displayName", display_name).map_err(invalid)?;
    validate::reserved(display_name).map_err(invalid)?;
    let description = req.opt_str("Description")?;
    if let Some(d) = description {
        validate::ids_text("description", d).map_err(invalid)?;
    }
    let lower = display_name.to_lowercase();
    if store
        .groups
        .values()
        .any(|g| g.display_name.to_lowercase() == lower)
    {
        return Err(conflict(format!(
            "Duplicate GroupDisplayName: a group named {display_name} already exists"
        )));
    }
    let prefix = store
        .id
        .strip_prefix("d-")
        .filter(|h| h.len() == 10)
        .map(String::from)
        .unwrap_or_else(|| crate::world::new_uuid().replace('-', "")[..10].to_string());
    let id = format!("{prefix}-{}", crate::world::new_uuid());
    store.groups.insert(
        id.clone(),
        IdsGroup {
            group_id: id.clone(),
            display_name: display_name.into(),
            description: description.map(String::from),
            created_at: ctx.epoch,
        },
    );
    Ok(
        json!({ "IdentityStoreId": store.id, "GroupId": id, "GroupArn": group_arn(&id), "Revision": "1" }),
    )
}

fn describe_group(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let id = resource_id(req, "GroupId")?;
    let g = store
        .groups
        .get(id)
        .ok_or_else(|| not_found("GROUP", Some(id), format!("GROUP with id {id} not found")))?;
    Ok(group_json(&store.id, g))
}

fn get_group_id(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let (path, value) = unique_attribute(req, "GROUP")?;
    if path != "displayname" {
        return Err(invalid(format!(
            "{path} is not a valid unique attribute path; use displayName"
        )));
    }
    let lower = value.to_lowercase();
    store
        .groups
        .values()
        .find(|g| g.display_name.to_lowercase() == lower)
        .map(|g| json!({ "IdentityStoreId": store.id, "GroupId": g.group_id, "GroupArn": group_arn(&g.group_id) }))
        .ok_or_else(|| not_found("GROUP", None, "GROUP not found"))
}

fn list_groups(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let max = req.max_results("MaxResults", 100, 100)?;
    let items = store
        .groups
        .values()
        .map(|g| (g.group_id.clone(), group_json(&store.id, g)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "Groups": page }), next))
}

fn delete_group(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let id = resource_id(req, "GroupId")?.to_string();
    let store = store_mut(world, req)?;
    if store.groups.remove(&id).is_none() {
        return Err(not_found(
            "GROUP",
            Some(&id),
            format!("GROUP with id {id} not found"),
        ));
    }
    store.retain_memberships(|m| m.group_id != id);
    world
        .assignments
        .retain(|a| !(a.principal_type == "GROUP" && a.principal_id == id));
    Ok(json!({}))
}

// -- memberships -------------------------------------------------------------------------

fn membership_json(store_id: &str, m: &Membership) -> Value {
    json!({
        "IdentityStoreId": store_id, "MembershipId": m.membership_id, "MembershipArn": membership_arn(&m.membership_id),
        "GroupId": m.group_id, "MemberId": { "UserId": m.user_id },
        "CreatedAt": m.created_at, "UpdatedAt": m.created_at,
    })
}

fn check_group_and_user(
    store: &IdentityStore,
    group_id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    if !store.groups.contains_key(group_id) {
        return Err(not_found(
            "GROUP",
            Some(group_id),
            format!("GROUP with id {group_id} not found"),
        ));
    }
    if !store.users.contains_key(user_id) {
        return Err(not_found(
            "USER",
            Some(user_id),
            format!("USER with id {user_id} not found"),
        ));
    }
    Ok(())
}

fn create_membership(world: &mut World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let group_id = resource_id(req, "GroupId")?;
    let user_id = member_user_id(req)?;
    let store = store_mut(world, req)?;
    check_group_and_user(store, group_id, user_id)?;
    if store.membership(group_id, user_id).is_some() {
        return Err(conflict(format!(
            "Member {user_id} is already in group {group_id}"
        )));
    }
    let id = crate::world::new_uuid();
    store.insert_membership(Membership {
        membership_id: id.clone(),
        group_id: group_id.into(),
        user_id: user_id.into(),
        created_at: ctx.epoch,
    });
    Ok(
        json!({ "IdentityStoreId": store.id, "MembershipId": id, "MembershipArn": membership_arn(&id) }),
    )
}

fn get_membership_id(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let group_id = resource_id(req, "GroupId")?;
    let user_id = member_user_id(req)?;
    check_group_and_user(store, group_id, user_id)?;
    store
        .membership(group_id, user_id)
        .map(|m| json!({ "IdentityStoreId": store.id, "MembershipId": m.membership_id, "MembershipArn": membership_arn(&m.membership_id) }))
        .ok_or_else(|| not_found("GROUP_MEMBERSHIP", None, "GROUP_MEMBERSHIP not found"))
}

fn delete_membership(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let id = resource_id(req, "MembershipId")?.to_string();
    let store = store_mut(world, req)?;
    store
        .remove_membership(&id)
        .map(|_| json!({}))
        .ok_or_else(|| {
            not_found(
                "GROUP_MEMBERSHIP",
                Some(&id),
                format!("GROUP_MEMBERSHIP with id {id} not found"),
            )
        })
}

fn list_memberships(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let group_id = resource_id(req, "GroupId")?;
    if !store.groups.contains_key(group_id) {
        return Err(not_found(
            "GROUP",
            Some(group_id),
            format!("GROUP with id {group_id} not found"),
        ));
    }
    let max = req.max_results("MaxResults", 100, 100)?;
    let items = store
        .memberships
        .values()
        .filter(|m| m.group_id == group_id)
        .map(|m| (m.membership_id.clone(), membership_json(&store.id, m)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "GroupMemberships": page }), next))
}

fn list_memberships_for_member(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let user_id = member_user_id(req)?;
    if !store.users.contains_key(user_id) {
        return Err(not_found(
            "USER",
            Some(user_id),
            format!("USER with id {user_id} not found"),
        ));
    }
    let max = req.max_results("MaxResults", 100, 100)?;
    let items = store
        .memberships
        .values()
        .filter(|m| m.user_id == user_id)
        .map(|m| (m.membership_id.clone(), membership_json(&store.id, m)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "GroupMemberships": page }), next))
}

fn is_member_in_groups(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let user_id = member_user_id(req)?;
    let groups = req.str_list("GroupIds")?;
    if !(1..=100).contains(&groups.len()) {
        return Err(invalid("GroupIds must contain between 1 and 100 ids"));
    }
    if !store.users.contains_key(user_id) {
        return Err(not_found(
            "USER",
            Some(user_id),
            format!("USER with id {user_id} not found"),
        ));
    }
    let results: Vec<Value> = groups
        .iter()
        .map(|g| {
            let exists = store.membership(g, user_id).is_some();
            json!({ "GroupId": g, "MemberId": { "UserId": user_id }, "MembershipExists": exists })
        })
        .collect();
    Ok(json!({ "Results": results }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Seed, DEFAULT_IDENTITY_STORE_ID};

    fn ctx() -> Ctx {
        Ctx {
            now_ms: 0,
            window_ms: 0,
            epoch: 1.0,
        }
    }

    fn call(w: &mut World, op: &str, body: Value) -> Result<Value, ApiError> {
        let obj = body.as_object().cloned().unwrap_or_default();
        dispatch(w, &ctx(), op, &obj)
    }

    fn user_body(name: &str, email: &str) -> Value {
        json!({
            "IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserName": name, "DisplayName": "Alice Smith",
            "Name": {"GivenName": "Alice", "FamilyName": "Smith"},
            "Emails": [{"Value": email, "Type": "work", "Primary": true}],
        })
    }

    #[test]
    fn update_user_replaces_names_and_checks_each_operation() {
        let mut w = World::from_seed(&Seed::default()).expect("world");
        let out = call(
            &mut w,
            "CreateUser",
            user_body("ana@example.com", "ana@example.com"),
        )
        .expect("create");
        let id = out["UserId"].as_str().unwrap_or_default().to_string();
        let update = |w: &mut World, ops: Value| {
            call(
                w,
                "UpdateUser",
                json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": id, "Operations": ops}),
            )
        };
        let set = |path: &str, v: &str| json!({"AttributePath": path, "AttributeValue": v});
        let code = |r: Result<Value, ApiError>| r.map_err(|e| e.code);
        assert_eq!(
            update(
                &mut w,
                json!([
                    set("name.givenName", "Ana"),
                    set("name.familyName", "Silva"),
                    set("displayName", "Ana Silva"),
                    set("nickName", "A")
                ])
            ),
            Ok(json!({}))
        );
        let described = call(
            &mut w,
            "DescribeUser",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": id}),
        )
        .expect("described");
        assert_eq!(described["Name"]["GivenName"], "Ana");
        assert_eq!(described["Name"]["FamilyName"], "Silva");
        assert_eq!(described["DisplayName"], "Ana Silva");
        assert_eq!(described["NickName"], "A");
        let invalid = Err("ValidationException".to_string());
        // Empty, too long, unsupported path, a required name removed, no operations, 101.
        assert_eq!(
            code(update(&mut w, json!([set("name.givenName", "")]))),
            invalid
        );
        let long = "x".repeat(1025);
        assert_eq!(
            code(update(&mut w, json!([set("displayName", &long)]))),
            invalid
        );
        assert_eq!(
            code(update(&mut w, json!([set("userName", "b@example.com")]))),
            invalid
        );
        assert_eq!(
            code(update(
                &mut w,
                json!([{"AttributePath": "name.familyName"}])
            )),
            invalid
        );
        assert_eq!(code(update(&mut w, json!([]))), invalid);
        let many: Vec<Value> = (0..101).map(|_| set("nickName", "n")).collect();
        assert_eq!(code(update(&mut w, json!(many))), invalid);
        // A refused request changes nothing, even its valid operations.
        assert_eq!(
            code(update(
                &mut w,
                json!([set("displayName", "Changed"), set("name.givenName", "")])
            )),
            invalid
        );
        let described = call(
            &mut w,
            "DescribeUser",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": id}),
        )
        .expect("described");
        assert_eq!(described["DisplayName"], "Ana Silva");
        // An optional attribute can be removed.
        assert!(update(&mut w, json!([{"AttributePath": "nickName"}])).is_ok());
        // Unknown user.
        let unknown = call(
            &mut w,
            "UpdateUser",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
                   "UserId": "1234567890-00000000-0000-4000-8000-000000000000",
                   "Operations": [set("displayName", "X")]}),
        );
        assert_eq!(code(unknown), Err("ResourceNotFoundException".to_string()));
    }

    #[test]
    fn user_rules() {
        let mut w = World::from_seed(&Seed::default()).expect("world");
        let out = call(
            &mut w,
            "CreateUser",
            user_body("alice@example.com", "alice@example.com"),
        )
        .expect("create");
        assert!(out["UserId"]
            .as_str()
            .is_some_and(|id| id.starts_with("1234567890-")));
        let dup = call(
            &mut w,
            "CreateUser",
            user_body("ALICE@example.com", "other@example.com"),
        )
        .expect_err("dup name");
        assert_eq!(
            (dup.status, dup.extra.get("Reason")),
            (409, Some(&json!("UNIQUENESS_CONSTRAINT_VIOLATION")))
        );
        let dup = call(
            &mut w,
            "CreateUser",
            user_body("alice2", "Alice@Example.com"),
        )
        .expect_err("dup email");
        assert_eq!(dup.code, "ConflictException");
        assert_eq!(
            call(
                &mut w,
                "CreateUser",
                user_body("Administrator", "x@example.com")
            )
            .map_err(|e| e.code),
            Err("ValidationException".into())
        );
        assert!(call(
            &mut w,
            "CreateUser",
            user_body("has space", "y@example.com")
        )
        .is_err());
        let mut no_name = user_body("bob", "bob@example.com");
        no_name.as_object_mut().map(|o| o.remove("Name"));
        assert!(call(&mut w, "CreateUser", no_name).is_err());
        let mut two = user_body("carol", "carol@example.com");
        two["Emails"] = json!([{"Value": "a@x.com"}, {"Value": "b@x.com"}]);
        assert!(call(&mut w, "CreateUser", two).is_err());
        let mut bad_store = user_body("dave", "dave@example.com");
        bad_store["IdentityStoreId"] = json!("d-0000000000");
        let e = call(&mut w, "CreateUser", bad_store).expect_err("store");
        assert_eq!(
            (e.status, e.extra.get("ResourceType")),
            (404, Some(&json!("IDENTITY_STORE")))
        );
    }

    #[test]
    fn memberships_and_delete() {
        let mut w = World::from_seed(&Seed::default()).expect("world");
        let uid = call(&mut w, "CreateUser", user_body("eve", "eve@example.com")).expect("user")
            ["UserId"]
            .clone();
        let gid = call(&mut w, "GetGroupId", json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
            "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": "ConnectAgents"}}}))
            .expect("group")["GroupId"].clone();
        let body = json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "GroupId": gid, "MemberId": {"UserId": uid}});
        call(&mut w, "CreateGroupMembership", body.clone()).expect("membership");
        assert_eq!(
            call(&mut w, "CreateGroupMembership", body).map_err(|e| e.status),
            Err(409)
        );
        call(
            &mut w,
            "DeleteUser",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": uid}),
        )
        .expect("delete");
        assert!(w.identity_stores[DEFAULT_IDENTITY_STORE_ID]
            .memberships
            .is_empty());
        let e = call(
            &mut w,
            "DeleteUser",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": uid}),
        )
        .expect_err("gone");
        assert_eq!(e.code, "ResourceNotFoundException");
    }

    fn group_id(w: &mut World, name: &str) -> Value {
        call(w, "GetGroupId", json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
            "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": name}}}))
            .expect("group")["GroupId"].clone()
    }

    fn user_id_by(w: &mut World, ctx: &Ctx, path: &str, value: &str) -> Result<Value, ApiError> {
        let body = json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
            "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": path, "AttributeValue": value}}});
        dispatch(w, ctx, "GetUserId", body.as_object().expect("object"))
            .map(|o| o["UserId"].clone())
    }

    #[test]
    fn user_names_and_emails_are_freed_by_delete() {
        let mut w = World::from_seed(&Seed::default()).expect("world");
        let first = call(&mut w, "CreateUser", user_body("fay", "fay@example.com")).expect("user")
            ["UserId"]
            .clone();
        assert_eq!(
            user_id_by(&mut w, &ctx(), "userName", "FAY").ok(),
            Some(first.clone())
        );
        assert_eq!(
            user_id_by(&mut w, &ctx(), "emails.value", "Fay@Example.com").ok(),
            Some(first.clone())
        );
        assert_eq!(
            user_id_by(&mut w, &ctx(), "displayName", "fay").map_err(|e| e.code),
            Err("ValidationException".into())
        );
        call(
            &mut w,
            "DeleteUser",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": first}),
        )
        .expect("delete");
        assert_eq!(
            user_id_by(&mut w, &ctx(), "userName", "fay").map_err(|e| e.code),
            Err("ResourceNotFoundException".into())
        );
        let second = call(&mut w, "CreateUser", user_body("Fay", "FAY@example.com"))
            .expect("name and email are free again")["UserId"]
            .clone();
        assert_ne!(first, second);
        assert_eq!(
            user_id_by(&mut w, &ctx(), "userName", "fay").ok(),
            Some(second)
        );
        assert_eq!(
            call(&mut w, "CreateUser", user_body("fay", "other@example.com")).map_err(|e| e.code),
            Err("ConflictException".into())
        );
        // Inside the consistency window GetUserId does not see the new user, the
        // uniqueness check does.
        let soon = Ctx {
            now_ms: 0,
            window_ms: 1_000,
            epoch: 1.0,
        };
        assert_eq!(
            user_id_by(&mut w, &soon, "userName", "fay").map_err(|e| e.code),
            Err("ResourceNotFoundException".into())
        );
        // A seeded user is in the index from the start.
        let seeded = w
            .add_identity_user("gil", "gil@example.com", "Gil", "G")
            .expect("seeded");
        assert_eq!(
            user_id_by(&mut w, &soon, "userName", "GIL").ok(),
            Some(json!(seeded))
        );
        assert!(call(&mut w, "CreateUser", user_body("x", "gil@example.com")).is_err());
    }

    #[test]
    fn a_membership_is_unique_per_group_and_member() {
        let mut w = World::from_seed(&Seed::default()).expect("world");
        let agents = group_id(&mut w, "ConnectAgents");
        let leads = call(
            &mut w,
            "CreateGroup",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "DisplayName": "Leads"}),
        )
        .expect("group")["GroupId"]
            .clone();
        let hal = call(&mut w, "CreateUser", user_body("hal", "hal@example.com")).expect("user")
            ["UserId"]
            .clone();
        let ivy = call(&mut w, "CreateUser", user_body("ivy", "ivy@example.com")).expect("user")
            ["UserId"]
            .clone();
        let body = |g: &Value, u: &Value| json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "GroupId": g, "MemberId": {"UserId": u}});
        let m = call(&mut w, "CreateGroupMembership", body(&agents, &hal)).expect("hal in agents")
            ["MembershipId"]
            .clone();
        call(&mut w, "CreateGroupMembership", body(&agents, &ivy)).expect("ivy in agents");
        call(&mut w, "CreateGroupMembership", body(&leads, &hal)).expect("hal in leads");
        let dup = call(&mut w, "CreateGroupMembership", body(&agents, &hal)).expect_err("dup");
        assert_eq!((dup.code.as_str(), dup.status), ("ConflictException", 409));
        assert_eq!(
            call(&mut w, "GetGroupMembershipId", body(&agents, &hal)).expect("found")
                ["MembershipId"],
            m
        );
        let is_member = |w: &mut World, u: &Value| {
            let out = call(
                w,
                "IsMemberInGroups",
                json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
                "MemberId": {"UserId": u}, "GroupIds": [agents, leads]}),
            )
            .expect("is member");
            out["Results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| r["MembershipExists"] == json!(true))
                .collect::<Vec<_>>()
        };
        assert_eq!(is_member(&mut w, &hal), [true, true]);
        assert_eq!(is_member(&mut w, &ivy), [true, false]);
        // Deleting the membership frees the pair.
        call(
            &mut w,
            "DeleteGroupMembership",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "MembershipId": m}),
        )
        .expect("delete");
        assert_eq!(
            call(&mut w, "GetGroupMembershipId", body(&agents, &hal)).map_err(|e| e.code),
            Err("ResourceNotFoundException".into())
        );
        assert_eq!(is_member(&mut w, &hal), [false, true]);
        let again = call(&mut w, "CreateGroupMembership", body(&agents, &hal)).expect("again")
            ["MembershipId"]
            .clone();
        assert_ne!(again, m);
        // Deleting a group drops its memberships from the index.
        call(
            &mut w,
            "DeleteGroup",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "GroupId": leads}),
        )
        .expect("delete group");
        assert_eq!(
            w.identity_stores[DEFAULT_IDENTITY_STORE_ID]
                .memberships
                .len(),
            2
        );
        assert!(w.identity_stores[DEFAULT_IDENTITY_STORE_ID]
            .membership(
                leads.as_str().unwrap_or_default(),
                hal.as_str().unwrap_or_default()
            )
            .is_none());
        // A seeded membership is in the index from the start.
        let gid = w.add_group("Seeded").expect("group");
        let uid = w
            .add_identity_user("jo", "jo@example.com", "Jo", "J")
            .expect("user");
        w.add_membership(&gid, &uid).expect("membership");
        assert!(w.add_membership(&gid, &uid).is_err());
        assert_eq!(
            call(
                &mut w,
                "CreateGroupMembership",
                body(&json!(gid), &json!(uid))
            )
            .map_err(|e| e.code),
            Err("ConflictException".into())
        );
    }
}
