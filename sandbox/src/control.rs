//! The `/_sandbox/` control endpoint: inspect state, counters and the response
//! log; read or replace the fault config; reset counters or the world.
//!
//! | Method | Path | Effect |
//! |---|---|---|
//! | GET | `/_sandbox/state` | full world JSON |
//! | GET | `/_sandbox/calls` | `{"calls": {op: {calls, applied}}, "write_calls": n, "held_after_apply": n}` |
//! | POST | `/_sandbox/calls/reset` | zero the counters and clear the response log |
//! | GET / PUT | `/_sandbox/faults` | current fault config / replace it (JSON body) |
//! | GET | `/_sandbox/ids` | the seeded ids |
//! | GET | `/_sandbox/responses` | the bounded response log |
//! | POST | `/_sandbox/reset` | rebuild the world from the seed |

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::faults::FaultConfig;
use crate::server::{lock, Shared, Stats};
use crate::world::World;

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The `/_sandbox/calls` document.
pub(crate) fn calls_json(shared: &Shared) -> Value {
    let stats = lock(&shared.stats);
    json!({ "calls": stats.calls, "write_calls": stats.write_calls, "held_after_apply": stats.held_after_apply })
}

/// Answers one control request.
pub(crate) fn handle(
    shared: &Shared,
    method: &str,
    path: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    match (method, path.trim_end_matches('/')) {
        ("GET", "/_sandbox/state") => reply(200, lock(&shared.world).to_json()),
        ("GET", "/_sandbox/calls") => reply(200, calls_json(shared)),
        ("POST", "/_sandbox/calls/reset") => {
            *lock(&shared.stats) = Stats::default();
            reply(200, json!({ "ok": true }))
        }
        ("GET", "/_sandbox/faults") => reply(200, json!(shared.faults())),
        ("PUT", "/_sandbox/faults") => {
            match FaultConfig::from_json_str(&String::from_utf8_lossy(body)) {
                Ok(cfg) => {
                    shared.set_faults(cfg);
                    reply(200, json!({ "ok": true }))
                }
                Err(e) => reply(400, json!({ "error": e.to_string() })),
            }
        }
        ("GET", "/_sandbox/ids") => reply(200, json!(crate::seed_ids(&lock(&shared.world)))),
        ("GET", "/_sandbox/responses") => reply(200, json!(lock(&shared.stats).log)),
        ("POST", "/_sandbox/reset") => match World::from_seed(&shared.seed) {
            Ok(w) => {
                *lock(&shared.world) = w;
                reply(200, json!({ "ok": true }))
            }
            Err(e) => reply(500, json!({ "error": e.to_string() })),
        },
        _ => reply(
            404,
            json!({ "error": format!("no control route {method} {path}") }),
        ),
    }
}
