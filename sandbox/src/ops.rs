//! The route table as data ([`operations`]) and the per-call context handlers get.
//!
//! Every operation the sandbox serves is listed once, with its wire binding
//! (Connect method + URI template, awsJson target) and the error codes the sandbox
//! itself can answer it with, so the fidelity tests can check all of it against
//! botocore's service models.

use serde::Serialize;

use crate::error::Service;

/// One served operation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpInfo {
    /// `connect`, `identitystore` or `sso` (the counter/fault key prefix).
    pub service: &'static str,
    /// The botocore data directory (`connect`, `identitystore`, `sso-admin`).
    pub model_service: &'static str,
    /// Operation name, as in the model.
    pub name: &'static str,
    /// HTTP method (`POST` for the awsJson services).
    pub method: &'static str,
    /// URI template (`/` for the awsJson services).
    pub uri: &'static str,
    /// `X-Amz-Target` value (awsJson services only).
    pub target: Option<String>,
    /// Error codes the sandbox can return for this op (validation, not-found, ...,
    /// plus the throttling and internal errors that faults inject).
    pub errors: Vec<&'static str>,
    /// True for Create*/Delete*/Update* operations.
    pub mutating: bool,
}

impl OpInfo {
    /// `service:Name`, the key of counters and fault rules.
    pub fn key(&self) -> String {
        format!("{}:{}", self.service, self.name)
    }
}

/// A static row of a service's route table.
pub(crate) struct OpSpec {
    pub name: &'static str,
    pub method: &'static str,
    pub uri: &'static str,
    pub errors: &'static [&'static str],
}

/// True for operations that change state.
pub fn is_mutating(op: &str) -> bool {
    ["Create", "Delete", "Update", "Put", "Tag", "Untag"]
        .iter()
        .any(|p| op.starts_with(p))
}

/// Every operation the sandbox serves.
pub fn operations() -> Vec<OpInfo> {
    let mut out = Vec::new();
    for (service, specs) in [
        (Service::Connect, crate::connect::OPS),
        (Service::IdentityStore, crate::identitystore::OPS),
        (Service::SsoAdmin, crate::ssoadmin::OPS),
    ] {
        for s in specs {
            let mut errors: Vec<&'static str> = s.errors.to_vec();
            for extra in [service.throttling_code(), service.internal_code()] {
                if !errors.contains(&extra) {
                    errors.push(extra);
                }
            }
            if service != Service::Connect || s.method != "GET" {
                errors.push("SerializationException");
            }
            out.push(OpInfo {
                service: service.key(),
                model_service: service.model_name(),
                name: s.name,
                method: s.method,
                uri: s.uri,
                target: service.target_prefix().map(|p| format!("{p}.{}", s.name)),
                errors,
                mutating: is_mutating(s.name),
            });
        }
    }
    out
}

/// What a handler knows about the moment of the call.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Sandbox clock, ms.
    pub now_ms: u64,
    /// Consistency window, ms.
    pub window_ms: u64,
    /// Wall clock, epoch seconds.
    pub epoch: f64,
}

impl Ctx {
    /// Whether a resource created at `created_ms` is visible to list/search calls.
    pub fn visible(&self, created_ms: Option<u64>) -> bool {
        created_ms.is_none_or(|c| self.now_ms >= c.saturating_add(self.window_ms))
    }
}
