//! The HTTP side: one hyper 1 HTTP/1.1 server for all three services.
//!
//! Each request is classified (`X-Amz-Target` → awsJson service, `/_sandbox/` →
//! control endpoint, anything else → Connect route table), counted, passed
//! through the fault engine, handled against the locked world, recorded in the
//! response log and serialized in its protocol. Returning `Err` from the hyper
//! service makes hyper close the connection without a response; the `drop`
//! fault actions use that.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::connect::{self, ConnectCall};
use crate::error::{ApiError, Service};
use crate::faults::{AfterApply, FaultConfig, FaultEngine, InjectedError, Outcome};
use crate::ops::{is_mutating, Ctx};
use crate::world::{epoch_now, Seed, World};
use crate::{identitystore, ssoadmin};

/// Per-operation counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct OpCounts {
    /// Requests received for the op (whatever their outcome).
    pub calls: u64,
    /// Writes that took effect.
    pub applied: u64,
}

/// One entry of the bounded response log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecordedResponse {
    /// `service:Operation`.
    pub op: String,
    /// HTTP status sent (0 when the connection was dropped or hung).
    pub status: u16,
    /// Error code, if the answer was an error.
    pub error_code: Option<String>,
    /// The JSON body produced by the handler (for errors: the error body).
    pub body: Value,
}

const LOG_CAPACITY: usize = 2000;

/// One API request as received (kept only while recording is on: see
/// `SandboxHandle::record_requests`), so a test can attribute every call to the resource
/// or agent it names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `service:Operation`.
    pub op: String,
    /// Path and query (Connect carries ids there).
    pub path: String,
    /// The request body as text.
    pub body: String,
    /// The handler's answer when it ran and succeeded (also under `apply_then_*`, whose
    /// client never sees it): the ids a create returned.
    pub response: Option<Value>,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub calls: BTreeMap<String, OpCounts>,
    pub write_calls: u64,
    /// Writes applied whose answer is held (`apply_then_hang`), counted as they are held.
    pub held_after_apply: u64,
    /// Every request since recording was turned on (unbounded, so off by default).
    pub requests: Option<Vec<RecordedRequest>>,
    pub log: VecDeque<RecordedResponse>,
}

/// State shared by the server tasks and the handle.
pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub seed: Seed,
    pub faults: Mutex<FaultEngine>,
    pub stats: Mutex<Stats>,
    pub shutdown: watch::Sender<bool>,
    pub addr: SocketAddr,
}

/// Locks a mutex, recovering the data if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn set_faults(&self, cfg: FaultConfig) {
        *lock(&self.faults) = FaultEngine::new(cfg);
    }

    pub(crate) fn faults(&self) -> FaultConfig {
        lock(&self.faults).config().clone()
    }

    pub(crate) async fn wait_shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Counts a call; returns its index in the request log when recording.
    fn count_call(
        &self,
        key: &str,
        mutating: bool,
        parts: &hyper::http::request::Parts,
        body: &[u8],
    ) -> Option<usize> {
        let mut stats = lock(&self.stats);
        stats.calls.entry(key.to_string()).or_default().calls += 1;
        if mutating {
            stats.write_calls += 1;
        }
        if let Some(log) = stats.requests.as_mut() {
            log.push(RecordedRequest {
                op: key.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default(),
                body: String::from_utf8_lossy(body).into_owned(),
                response: None,
            });
            return Some(log.len() - 1);
        }
        None
    }

    fn record_answer(&self, index: Option<usize>, result: &Result<Value, ApiError>) {
        let (Some(i), Ok(body)) = (index, result) else {
            return;
        };
        if let Some(r) = lock(&self.stats)
            .requests
            .as_mut()
            .and_then(|log| log.get_mut(i))
        {
            r.response = Some(body.clone());
        }
    }

    fn record(&self, key: &str, mutating: bool, result: &Result<Value, ApiError>) {
        let mut stats = lock(&self.stats);
        if mutating && result.is_ok() {
            stats.calls.entry(key.to_string()).or_default().applied += 1;
        }
        let entry = match result {
            Ok(body) => RecordedResponse {
                op: key.into(),
                status: 200,
                error_code: None,
                body: body.clone(),
            },
            Err(e) => RecordedResponse {
                op: key.into(),
                status: e.status,
                error_code: Some(e.code.clone()),
                body: e.body(),
            },
        };
        if stats.log.len() >= LOG_CAPACITY {
            stats.log.pop_front();
        }
        stats.log.push_back(entry);
    }
}

/// The connection is closed without a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the sandbox")]
pub(crate) struct Dropped;

type HttpResponse = Response<Full<Bytes>>;

/// A classified API request.
struct Call {
    service: Service,
    op: String,
    labels: Vec<String>,
    query: HashMap<String, String>,
    /// Every query pair in order (a repeated key, as UntagResource's `tagKeys`, appears
    /// once per value; `query` keeps its last value).
    pairs: Vec<(String, String)>,
}

impl Call {
    fn key(&self) -> String {
        format!("{}:{}", self.service.key(), self.op)
    }
}

fn known_json_op(service: Service, op: &str) -> bool {
    let ops = match service {
        Service::IdentityStore => identitystore::OPS,
        Service::SsoAdmin => ssoadmin::OPS,
        Service::Connect => connect::OPS,
    };
    ops.iter().any(|o| o.name == op)
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Classifies a request, or answers it right away (unknown operation).
fn classify(parts: &hyper::http::request::Parts) -> Result<Call, ApiError> {
    if let Some(target) = parts.headers.get("x-amz-target") {
        let target = target.to_str().unwrap_or_default();
        let (prefix, op) = target.split_once('.').unwrap_or((target, ""));
        let service = match prefix {
            "AWSIdentityStore" => Service::IdentityStore,
            "SWBExternalService" => Service::SsoAdmin,
            _ => {
                return Err(ApiError::new(
                    Service::IdentityStore,
                    "UnknownOperationException",
                    format!("Unknown target {target}"),
                ))
            }
        };
        if !known_json_op(service, op) {
            return Err(ApiError::new(
                service,
                "UnknownOperationException",
                format!("Unknown operation {target}"),
            ));
        }
        return Ok(Call {
            service,
            op: op.to_string(),
            labels: vec![],
            query: HashMap::new(),
            pairs: vec![],
        });
    }
    let path = parts.uri.path();
    match connect::route(parts.method.as_str(), path) {
        Some((op, labels)) => {
            let pairs = parse_query(parts.uri.query());
            Ok(Call {
                service: Service::Connect,
                op: op.to_string(),
                labels,
                query: pairs.iter().cloned().collect(),
                pairs,
            })
        }
        None => Err(ApiError::new(
            Service::Connect,
            "UnknownOperationException",
            format!("No route for {} {path}", parts.method),
        )),
    }
}

fn parse_body(service: Service, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(service.serialization("The request body must be a JSON object")),
        Err(e) => Err(service.serialization(format!("Malformed JSON request body: {e}"))),
    }
}

fn content_type(service: Service) -> &'static str {
    match service {
        Service::Connect => "application/json",
        _ => "application/x-amz-json-1.1",
    }
}

fn respond(service: Service, result: &Result<Value, ApiError>) -> HttpResponse {
    let (status, body) = match result {
        Ok(v) => (200, v.to_string()),
        Err(e) => (e.status, e.body().to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(content_type(service)),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Err(e) = result {
        if let Ok(code) = HeaderValue::from_str(&e.code) {
            headers.insert("x-amzn-errortype", code);
        }
    }
    resp
}

fn injected_error(service: Service, inj: &InjectedError) -> ApiError {
    let code = inj
        .code
        .clone()
        .unwrap_or_else(|| service.internal_code().to_string());
    let mut err = ApiError::new(
        service,
        &code,
        inj.message
            .clone()
            .unwrap_or_else(|| "Injected by the sandbox".into()),
    );
    if let Some(s) = inj.status {
        err.status = s;
    }
    for (k, v) in &inj.members {
        err.extra.insert(k.clone(), v.clone());
    }
    err.with_service_members()
}

fn run_handler(
    shared: &Shared,
    call: &Call,
    body: &Map<String, Value>,
    window_ms: u64,
) -> Result<Value, ApiError> {
    let mut world = lock(&shared.world);
    let ctx = Ctx {
        now_ms: world.now_ms(),
        window_ms,
        epoch: epoch_now(),
    };
    match call.service {
        Service::Connect => {
            let c = ConnectCall {
                op: &call.op,
                labels: &call.labels,
                query: &call.query,
                pairs: &call.pairs,
                body,
            };
            connect::dispatch(&mut world, &ctx, &c)
        }
        Service::IdentityStore => identitystore::dispatch(&mut world, &ctx, &call.op, body),
        Service::SsoAdmin => ssoadmin::dispatch(&mut world, &ctx, &call.op, body),
    }
}

/// Serves one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<HttpResponse, Dropped> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let path = parts.uri.path();
    if path == "/_sandbox" || path.starts_with("/_sandbox/") {
        return Ok(crate::control::handle(
            &shared,
            parts.method.as_str(),
            path,
            &bytes,
        ));
    }
    let call = match classify(&parts) {
        Ok(c) => c,
        Err(e) => return Ok(respond(e.service, &Err(e))),
    };
    let key = call.key();
    let mutating = is_mutating(&call.op);
    let logged = shared.count_call(&key, mutating, &parts, &bytes);
    let (decision, window_ms) = {
        let mut faults = lock(&shared.faults);
        let body_text = String::from_utf8_lossy(&bytes);
        let d = faults.decide(&key, &body_text, Instant::now());
        (d, faults.config().consistency_window_ms)
    };
    if decision.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.delay_ms)).await;
    }
    let after = match decision.outcome {
        Outcome::Proceed => None,
        Outcome::Throttle => {
            return Ok(finish(
                &shared,
                &call,
                &key,
                false,
                Err(call.service.throttled()),
            ))
        }
        Outcome::Error(inj) => {
            return Ok(finish(
                &shared,
                &call,
                &key,
                false,
                Err(injected_error(call.service, &inj)),
            ))
        }
        Outcome::Drop => return Err(Dropped),
        Outcome::Hang => {
            shared.wait_shutdown().await;
            return Err(Dropped);
        }
        Outcome::ApplyThen(a) => Some(a),
    };
    let result = parse_body(call.service, &bytes)
        .and_then(|body| run_handler(&shared, &call, &body, window_ms));
    shared.record_answer(logged, &result);
    let response = finish(&shared, &call, &key, mutating, result);
    match after {
        None => Ok(response),
        Some(AfterApply::Error(inj)) => Ok(respond(
            call.service,
            &Err(injected_error(call.service, &inj)),
        )),
        Some(AfterApply::Drop) => Err(Dropped),
        Some(AfterApply::Hang) => {
            lock(&shared.stats).held_after_apply += 1;
            shared.wait_shutdown().await;
            Err(Dropped)
        }
    }
}

fn finish(
    shared: &Shared,
    call: &Call,
    key: &str,
    mutating: bool,
    result: Result<Value, ApiError>,
) -> HttpResponse {
    shared.record(key, mutating, &result);
    respond(call.service, &result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let pairs = parse_query(Some("maxResults=5&nextToken=a%2Fb"));
        let q: HashMap<String, String> = pairs.into_iter().collect();
        assert_eq!(q.get("maxResults").map(String::as_str), Some("5"));
        assert_eq!(q.get("nextToken").map(String::as_str), Some("a/b"));
        // A repeated key keeps every value, in order.
        let keys = parse_query(Some("tagKeys=a&tagKeys=b%20c"));
        assert_eq!(
            keys,
            [
                ("tagKeys".into(), "a".into()),
                ("tagKeys".into(), "b c".into())
            ]
        );
    }

    #[test]
    fn bodies() {
        assert!(parse_body(Service::IdentityStore, b"").is_ok());
        let e = parse_body(Service::IdentityStore, b"{nope").expect_err("bad json");
        assert_eq!((e.code.as_str(), e.status), ("SerializationException", 400));
        assert!(parse_body(Service::Connect, b"[1]").is_err());
    }
}
