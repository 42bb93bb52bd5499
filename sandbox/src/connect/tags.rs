//! TagResource and UntagResource (`/tags/{resourceArn}`) on Connect users, by ARN: the
//! `TagMap` rules of the model (1..50 pairs; keys 1..128 characters, not `aws:`, from the
//! allowed set; values at most 256), at most 50 tags on a resource (AWS's tagging limit),
//! an unknown ARN → ResourceNotFoundException. Removing a key the user does not have is
//! not an error.

use serde_json::{json, Value};

use super::fields::tag_map;
use super::{invalid, not_found, SVC};
use crate::error::ApiError;
use crate::input::Req;
use crate::ops::Ctx;
use crate::validate;
use crate::world::{ConnectUser, World};

/// Most tags a resource can carry.
const MAX_TAGS: usize = 50;

/// The user whose ARN this is, in whichever instance holds it.
fn user_by_arn<'w>(world: &'w mut World, arn: &str) -> Result<&'w mut ConnectUser, ApiError> {
    // The user's ARN is `<instance ARN>/agent/<user id>`: find its instance by prefix.
    let (instance_arn, user_id) = arn
        .rsplit_once("/agent/")
        .ok_or_else(|| not_found(format!("Resource not found: {arn}")))?;
    world
        .connect_instances
        .values_mut()
        .find(|i| i.arn == instance_arn)
        .and_then(|i| i.users.get_mut(user_id))
        .filter(|u| u.arn == arn)
        .ok_or_else(|| not_found(format!("Resource not found: {arn}")))
}

pub(super) fn tag_resource(
    world: &mut World,
    ctx: &Ctx,
    arn: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    // The body first: a request without tags is invalid whatever it names.
    let tags = tag_map(req.obj("tags")?)?;
    let user = user_by_arn(world, arn)?;
    let mut next = user.tags.clone();
    next.extend(tags);
    if next.len() > MAX_TAGS {
        return Err(invalid(format!(
            "A resource can have at most {MAX_TAGS} tags; this request would leave {}",
            next.len()
        )));
    }
    user.tags = next;
    user.last_modified_time = ctx.epoch;
    Ok(json!({}))
}

pub(super) fn untag_resource(
    world: &mut World,
    ctx: &Ctx,
    arn: &str,
    query: &[(String, String)],
) -> Result<Value, ApiError> {
    let keys: Vec<&str> = (query.iter())
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v.as_str())
        .collect();
    if keys.is_empty() {
        return Err(SVC.missing("tagKeys"));
    }
    if keys.len() > MAX_TAGS {
        return Err(invalid(format!(
            "tagKeys must contain between 1 and {MAX_TAGS} keys"
        )));
    }
    for k in &keys {
        validate::tag(k, "").map_err(invalid)?;
    }
    let user = user_by_arn(world, arn)?;
    for k in keys {
        user.tags.remove(k);
    }
    user.last_modified_time = ctx.epoch;
    Ok(json!({}))
}
