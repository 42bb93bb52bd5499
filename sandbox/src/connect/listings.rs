//! The listings: DescribeInstance, ListInstances, and the routing profile, security
//! profile and hierarchy group summaries of an instance.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{instance, invalid, page_size, with_token, SVC};
use crate::error::ApiError;
use crate::input::paginate;
use crate::world::{ConnectInstance, World};

fn instance_summary(inst: &ConnectInstance, account_id: &str) -> Value {
    json!({
        "Id": inst.id,
        "Arn": inst.arn,
        "IdentityManagementType": inst.identity_management_type,
        "InstanceAlias": inst.alias,
        "CreatedTime": inst.created_time,
        "ServiceRole": format!("arn:aws:iam::{account_id}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_sandbox"),
        "InstanceStatus": "ACTIVE",
        "InboundCallsEnabled": true,
        "OutboundCallsEnabled": true,
        "InstanceAccessUrl": format!("https://{}.my.connect.aws", inst.alias),
    })
}

pub(super) fn describe_instance(world: &World, raw: &str) -> Result<Value, ApiError> {
    let inst = instance(world, raw)?;
    Ok(json!({ "Instance": instance_summary(inst, &world.account_id) }))
}

pub(super) fn list_instances(
    world: &World,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let max = page_size(query, 10)
        .map_err(|e| ApiError::new(SVC, "InvalidRequestException", e.message))?;
    let items = world
        .connect_instances
        .values()
        .map(|i| (i.id.clone(), instance_summary(i, &world.account_id)))
        .collect();
    let (page, next) = paginate(SVC, items, query.get("nextToken").map(String::as_str), max)
        .map_err(|e| ApiError::new(SVC, "InvalidRequestException", e.message))?;
    Ok(with_token(json!({ "InstanceSummaryList": page }), next))
}

/// Which of an instance's named resources a listing returns.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Routing,
    Security,
    Hierarchy,
}

pub(super) fn list_resources(
    world: &World,
    raw_instance: &str,
    query: &HashMap<String, String>,
    kind: Kind,
) -> Result<Value, ApiError> {
    let inst = instance(world, raw_instance)?;
    let max = page_size(query, 1000)?;
    let (map, member) = match kind {
        Kind::Routing => (&inst.routing_profiles, "RoutingProfileSummaryList"),
        Kind::Security => (&inst.security_profiles, "SecurityProfileSummaryList"),
        Kind::Hierarchy => (&inst.hierarchy_groups, "UserHierarchyGroupSummaryList"),
    };
    let items = map
        .values()
        .map(|r| {
            let v = json!({
                "Id": r.id, "Arn": r.arn, "Name": r.name,
                "LastModifiedTime": inst.created_time, "LastModifiedRegion": world.region,
            });
            (format!("{}\u{0}{}", r.name, r.id), v)
        })
        .collect();
    let (page, next) = paginate(SVC, items, query.get("nextToken").map(String::as_str), max)
        .map_err(|e| invalid(e.message))?;
    Ok(with_token(json!({ member: page }), next))
}
