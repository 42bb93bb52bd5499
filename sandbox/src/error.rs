//! Service errors as they go on the wire.
//!
//! [`Service`] names the three emulated services and knows each one's error
//! conventions (which code means "validation failed", which HTTP status a code
//! carries). [`ApiError`] is one error response: code, status, message and the
//! extra members the model defines for that error (`Reason`, `ResourceType`, ...).

use serde_json::{Map, Value};

/// One of the emulated services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Amazon Connect (rest-json).
    Connect,
    /// AWS Identity Store (awsJson1_1, target prefix `AWSIdentityStore`).
    IdentityStore,
    /// IAM Identity Center admin API (awsJson1_1, target prefix `SWBExternalService`).
    SsoAdmin,
}

impl Service {
    /// The prefix used in call-counter keys and fault rules: `connect`, `identitystore`, `sso`.
    pub fn key(self) -> &'static str {
        match self {
            Service::Connect => "connect",
            Service::IdentityStore => "identitystore",
            Service::SsoAdmin => "sso",
        }
    }

    /// Parses a counter/fault key prefix.
    pub fn from_key(key: &str) -> Option<Service> {
        match key {
            "connect" => Some(Service::Connect),
            "identitystore" => Some(Service::IdentityStore),
            "sso" | "sso-admin" | "ssoadmin" => Some(Service::SsoAdmin),
            _ => None,
        }
    }

    /// The botocore data directory name of this service.
    pub fn model_name(self) -> &'static str {
        match self {
            Service::Connect => "connect",
            Service::IdentityStore => "identitystore",
            Service::SsoAdmin => "sso-admin",
        }
    }

    /// The `X-Amz-Target` prefix of the awsJson services (None for Connect).
    pub fn target_prefix(self) -> Option<&'static str> {
        match self {
            Service::Connect => None,
            Service::IdentityStore => Some("AWSIdentityStore"),
            Service::SsoAdmin => Some("SWBExternalService"),
        }
    }

    /// The code this service uses for a rejected parameter.
    pub fn validation_code(self) -> &'static str {
        match self {
            Service::Connect => "InvalidParameterException",
            _ => "ValidationException",
        }
    }

    /// The code of this service's throttling error.
    pub fn throttling_code(self) -> &'static str {
        "ThrottlingException"
    }

    /// The code of this service's generic 500 error.
    pub fn internal_code(self) -> &'static str {
        match self {
            Service::Connect => "InternalServiceException",
            _ => "InternalServerException",
        }
    }

    /// The HTTP status AWS sends with `code` for this service.
    pub fn status_for(self, code: &str) -> u16 {
        match self {
            Service::Connect => match code {
                "ResourceNotFoundException" => 404,
                "DuplicateResourceException" | "ResourceInUseException" | "ConflictException" => {
                    409
                }
                "LimitExceededException" | "ThrottlingException" | "TooManyRequestsException" => {
                    429
                }
                "ServiceQuotaExceededException" => 402,
                "AccessDeniedException" => 403,
                "InternalServiceException" => 500,
                "UnknownOperationException" => 404,
                _ => 400,
            },
            Service::IdentityStore => match code {
                "ResourceNotFoundException" => 404,
                "ConflictException" => 409,
                "ThrottlingException" => 429,
                "AccessDeniedException" => 403,
                "ServiceQuotaExceededException" => 402,
                "InternalServerException" => 500,
                _ => 400,
            },
            Service::SsoAdmin => match code {
                "InternalServerException" => 500,
                _ => 400,
            },
        }
    }

    /// A validation error with AWS's usual message.
    pub fn validation(self, message: impl Into<String>) -> ApiError {
        ApiError::new(self, self.validation_code(), message)
    }

    /// "Member must not be null" for a missing required member.
    pub fn missing(self, member: &str) -> ApiError {
        self.validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    }

    /// A body that is not the JSON the operation expects.
    pub fn serialization(self, message: impl Into<String>) -> ApiError {
        ApiError::new(self, "SerializationException", message)
    }

    /// The service's throttling error.
    pub fn throttled(self) -> ApiError {
        ApiError::new(self, self.throttling_code(), "Rate exceeded").with_service_members()
    }

    /// The service's generic internal error.
    pub fn internal(self) -> ApiError {
        ApiError::new(
            self,
            self.internal_code(),
            "An internal error occurred (injected by the sandbox)",
        )
        .with_service_members()
    }
}

/// One error response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct ApiError {
    /// The service that answers.
    pub service: Service,
    /// The error code (`x-amzn-ErrorType` / `__type`).
    pub code: String,
    /// The HTTP status.
    pub status: u16,
    /// The `Message` member.
    pub message: String,
    /// Further members of the error shape (`Reason`, `ResourceType`, `ResourceId`, ...).
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// An error with the status AWS uses for `code` on `service`.
    pub fn new(service: Service, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            service,
            code: code.to_string(),
            status: service.status_for(code),
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// Adds the members the service always fills in for this code, unless already set:
    /// Identity Store's ThrottlingException and InternalServerException carry
    /// `RetryAfterSeconds` (botocore's `identitystore` model; aws-domain.md §1.3).
    pub fn with_service_members(mut self) -> ApiError {
        if self.service == Service::IdentityStore
            && matches!(
                self.code.as_str(),
                "ThrottlingException" | "InternalServerException"
            )
        {
            self.extra
                .entry("RetryAfterSeconds")
                .or_insert(Value::from(1));
        }
        self
    }

    /// Adds a member to the error body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The JSON body of this error, in the service's protocol.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        if self.service != Service::Connect {
            body.insert("__type".into(), Value::String(self.code.clone()));
        }
        body.insert("Message".into(), Value::String(self.message.clone()));
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_each_service() {
        assert_eq!(
            Service::Connect.status_for("DuplicateResourceException"),
            409
        );
        assert_eq!(Service::Connect.status_for("LimitExceededException"), 429);
        assert_eq!(Service::IdentityStore.status_for("ConflictException"), 409);
        assert_eq!(
            Service::IdentityStore.status_for("ServiceQuotaExceededException"),
            402
        );
        assert_eq!(Service::SsoAdmin.status_for("ConflictException"), 400);
        assert_eq!(Service::SsoAdmin.status_for("ThrottlingException"), 400);
        assert_eq!(Service::SsoAdmin.status_for("InternalServerException"), 500);
    }

    #[test]
    fn json_errors_carry_type() {
        let e = Service::IdentityStore.missing("UserName");
        assert_eq!(e.body()["__type"], "ValidationException");
        let c = Service::Connect.missing("Username");
        assert!(c.body().get("__type").is_none());
        assert_eq!(c.code, "InvalidParameterException");
    }
}
