//! How an AWS call fails, as data: [`AwsError`] (the service's error *code*, never its
//! message text, and whether the request may have been applied), built from any SDK error;
//! and `send_once!`, the one way a workflow call is sent (SDK retries off: the engine is the
//! only retry layer of the workflow).

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A failed AWS call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// The service error code (`ThrottlingException`, ...) or a local one (`Timeout`,
    /// `DispatchFailure`, `ResponseError`).
    pub code: String,
    /// The message.
    pub message: String,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// True when the request may have been applied although it failed (5xx, timeout,
    /// connection dropped, unreadable response).
    pub maybe_applied: bool,
    /// Extra error member `Reason` (Identity Store Conflict: UNIQUENESS_CONSTRAINT_VIOLATION
    /// or CONCURRENT_MODIFICATION).
    pub reason: Option<String>,
    /// How long the service asked us to wait (`RetryAfterSeconds` in the error body, or a
    /// `Retry-After` header): the pacer holds that API's tokens until then.
    pub retry_after: Option<std::time::Duration>,
    /// Set when the call retried this error for its whole time budget ([`super::retry`]):
    /// the engine must not retry it again.
    pub budget_spent: bool,
}

impl AwsError {
    /// A call this implementation of the port does not make (test doubles).
    pub fn unsupported(api: &str, on: &str) -> AwsError {
        AwsError {
            code: "Unsupported".into(),
            message: format!("{api} is not implemented here ({on})"),
            status: None,
            maybe_applied: false,
            reason: None,
            retry_after: None,
            budget_spent: false,
        }
    }
    /// Whether the code is `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
    /// Throttling, by code (all three services).
    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ThrottlingException"
                | "TooManyRequestsException"
                | "Throttling"
                | "RequestLimitExceeded"
        )
    }
    /// A server-side failure (5xx) or a transport failure (the request may or may not
    /// have been sent: see `maybe_applied`).
    pub fn is_server_or_transport(&self) -> bool {
        self.maybe_applied
            || self.status.is_some_and(|s| s >= 500)
            || matches!(
                self.code.as_str(),
                "DispatchFailure" | "Timeout" | "ResponseError"
            )
    }
}

pub(crate) fn from_sdk<E, R>(
    err: aws_sdk_connect::error::SdkError<E, R>,
    reason: impl Fn(&E) -> Option<String>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    use aws_sdk_connect::error::SdkError;
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status_code();
            let retry_after = ctx.raw().retry_after();
            let e = ctx.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            AwsError {
                message: e.message().unwrap_or("").to_string(),
                maybe_applied: status >= 500,
                status: Some(status),
                reason: reason(e),
                retry_after,
                budget_spent: false,
                code,
            }
        }
        SdkError::TimeoutError(_) => AwsError {
            code: "Timeout".into(),
            message: "the request timed out".into(),
            status: None,
            maybe_applied: true,
            reason: None,
            retry_after: None,
            budget_spent: false,
        },
        SdkError::DispatchFailure(d) => {
            // A refused connection never carried the request; anything else (reset, closed
            // mid-response, timeout) may have.
            let never_sent = d.as_connector_error().is_some_and(|c| refused(c));
            AwsError {
                code: "DispatchFailure".into(),
                message: format!("{:?}", d.as_connector_error()),
                status: None,
                maybe_applied: !never_sent,
                reason: None,
                retry_after: None,
                budget_spent: false,
            }
        }
        SdkError::ResponseError(r) => AwsError {
            code: "ResponseError".into(),
            message: format!("unreadable response: {:?}", r.raw()),
            status: r.raw().status_code_opt(),
            maybe_applied: true,
            reason: None,
            retry_after: None,
            budget_spent: false,
        },
        SdkError::ConstructionFailure(c) => AwsError {
            code: "ConstructionFailure".into(),
            message: format!("{c:?}"),
            status: None,
            maybe_applied: false,
            reason: None,
            retry_after: None,
            budget_spent: false,
        },
        other => AwsError {
            code: "Unknown".into(),
            message: other.to_string(),
            status: None,
            maybe_applied: true,
            reason: None,
            retry_after: None,
            budget_spent: false,
        },
    }
}

/// Whether an error's source chain holds an I/O "connection refused".
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Access to the HTTP status and the wait a raw response asks for.
pub(crate) trait HasStatus {
    fn status_code(&self) -> u16;
    fn status_code_opt(&self) -> Option<u16> {
        Some(self.status_code())
    }
    /// `RetryAfterSeconds` in a JSON error body (Identity Store, SSO Admin), else a
    /// `Retry-After` header in seconds.
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        let from_body = self
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v.get("RetryAfterSeconds").cloned())
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()));
        let from_header = || {
            self.headers()
                .get("retry-after")?
                .trim()
                .parse::<f64>()
                .ok()
        };
        from_body
            .or_else(from_header)
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
            .map(std::time::Duration::from_secs_f64)
    }
}

pub(crate) fn no_reason<E>(_: &E) -> Option<String> {
    None
}

/// Result alias of the AWS layer.
pub type Result<T> = std::result::Result<T, AwsError>;

/// A lookup's "does not exist" as `None`.
pub(super) fn not_found_to_none<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends one request through the pacer, with the per-call retries of errors that heal
/// ([`super::retry`]; SDK retries are off on every client) and maps its error:
/// `send_once!(pacer, "service:Operation", request, reason_fn)`. "Once" as the engine sees
/// it: a write that may have been applied is never sent again here (only the engine, which
/// knows what landed, retries it, after a lookup); the pacer hears every try, so a throttle
/// slows that API's bucket down.
macro_rules! send_once {
    ($pacer:expr, $api:expr, $req:expr, $reason:expr) => {{
        let req = $req;
        $pacer
            .call($api, || {
                let req = req.clone();
                async move {
                    req.send()
                        .await
                        .map_err(|e| $crate::aws::error::from_sdk(e, $reason))
                }
            })
            .await
    }};
}
pub(crate) use send_once;

/// Every page of a paginated read, mapped item by item, as one paced call with the per-call
/// retries (a retry reads the listing again from its first page):
/// `paged!(pacer, "service:Operation", request, list_accessor, |item| map)`.
macro_rules! paged {
    ($pacer:expr, $api:expr, $req:expr, $list:ident, |$item:ident| $map:expr) => {{
        let req = $req;
        $pacer
            .call($api, || {
                let req = req.clone();
                async move {
                    let mut out = Vec::new();
                    let mut pages = req.into_paginator().send();
                    while let Some(page) = pages.next().await {
                        let page = page.map_err(|e| {
                            $crate::aws::error::from_sdk(e, $crate::aws::error::no_reason)
                        })?;
                        for $item in page.$list() {
                            out.push($map);
                        }
                    }
                    Ok(out)
                }
            })
            .await?
    }};
}
pub(crate) use paged;

/// What the pacer learns from a call's result: a throttle slows the API's bucket down.
pub(crate) fn pacing_outcome<T>(r: &Result<T>) -> crate::aws::pacer::Outcome {
    use crate::aws::pacer::Outcome;
    match r {
        Ok(_) => Outcome::Success,
        Err(e) if e.is_throttling() => Outcome::Throttled {
            retry_after: e.retry_after,
        },
        Err(_) => Outcome::OtherError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    fn response(body: &str, header: Option<&str>) -> Response {
        let mut r = Response::new(StatusCode::try_from(400u16).unwrap(), SdkBody::from(body));
        if let Some(h) = header {
            r.headers_mut().insert("Retry-After", h.to_string());
        }
        r
    }

    #[test]
    fn the_wait_a_throttle_asks_for_is_read_from_the_body_or_the_header() {
        let secs = |r: Response| r.retry_after().map(|d| d.as_secs_f64());
        let body =
            r#"{"__type":"ThrottlingException","Message":"slow down","RetryAfterSeconds":3}"#;
        assert_eq!(secs(response(body, None)), Some(3.0));
        assert_eq!(
            secs(response(r#"{"RetryAfterSeconds":"2"}"#, None)),
            Some(2.0)
        );
        assert_eq!(secs(response("{}", Some("5"))), Some(5.0));
        assert_eq!(secs(response("not json", None)), None);
        assert_eq!(
            secs(response(r#"{"RetryAfterSeconds":-1}"#, None)),
            None,
            "nonsense ignored"
        );
    }

    #[test]
    fn a_throttle_tells_the_pacer_how_long_to_wait() {
        let mut e = AwsError::unsupported("x", "y");
        e.code = "ThrottlingException".into();
        e.retry_after = Some(std::time::Duration::from_secs(2));
        let r: Result<()> = Err(e);
        assert_eq!(
            pacing_outcome(&r),
            crate::aws::pacer::Outcome::Throttled {
                retry_after: Some(std::time::Duration::from_secs(2))
            }
        );
    }
}
