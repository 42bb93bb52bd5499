//! Error classification: an AWS error's *code* (never its message) and the kind of call that
//! failed decide the engine's class (the documented error codes of each operation and the
//! AWS SDKs' "Retry behavior" page).

use crate::aws::AwsError;
use crate::engine::{ErrorKind, Outputs, StepError};

/// Which call failed, for classification.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Read,
    Create,
    CreateReferencing,
    Delete,
}

/// Maps an AWS error to the engine's class, by code.
pub(super) fn classify(e: AwsError, call: Call) -> StepError {
    let kind = if e.budget_spent {
        // Retried per call for its whole time budget already.
        ErrorKind::Spent
    } else if e.is_throttling() {
        ErrorKind::Transient
    } else if e.is_server_or_transport() {
        if matches!(call, Call::Read) || !e.maybe_applied {
            ErrorKind::Transient
        } else {
            ErrorKind::Ambiguous
        }
    } else {
        match (e.code.as_str(), call) {
            // Connect: username taken. Identity Store: UserName/email/membership unique.
            ("DuplicateResourceException", Call::Create | Call::CreateReferencing) => {
                ErrorKind::AlreadyExists
            }
            ("ConflictException", _) if e.reason.as_deref() == Some("CONCURRENT_MODIFICATION") => {
                ErrorKind::Transient
            }
            ("ConflictException", Call::Create) => ErrorKind::AlreadyExists,
            // SSO Admin: "the previous write did not have time to propagate"; Identity Store
            // CreateGroupMembership: a duplicate membership or a concurrent modification
            // (the reason is not always sent). Retry: the lookup before the next write
            // adopts a membership that really exists.
            ("ConflictException", Call::CreateReferencing | Call::Delete) => ErrorKind::Transient,
            // A principal or user created a moment ago may not be visible yet: wait within
            // the settle window of the step that created it (Identity Center takes seconds
            // before a new user can be a principal).
            ("ResourceNotFoundException", Call::CreateReferencing) => ErrorKind::InputNotVisibleYet,
            ("ResourceNotFoundException", Call::Delete) => ErrorKind::NotFound,
            // Connect users-per-instance quota: the SDK would retry it as throttling.
            ("LimitExceededException", _) => ErrorKind::Permanent,
            // Identity Store's opaque, passing "UnknownOperationException: UnknownError" on
            // GetUserId / GetGroupId (terraform-provider-aws #27830, #31624).
            ("UnknownOperationException", Call::Read) => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    };
    StepError::new(kind, e.code, e.message)
}

pub(super) fn read(e: AwsError) -> StepError {
    classify(e, Call::Read)
}

/// An id recorded in a step's outputs; a missing or empty one is never sent as an id.
pub(super) fn recorded<'a>(out: &'a Outputs, key: &str) -> Result<&'a str, StepError> {
    out.get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            StepError::new(
                ErrorKind::Permanent,
                "MissingId",
                format!("the checkpoint has no {key} to delete by"),
            )
        })
}

pub(super) fn outputs<const N: usize>(pairs: [(&str, &str); N]) -> Outputs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
