//! connect-onboard-sandbox: a local, wire-compatible emulator of the Amazon
//! Connect, Identity Store and SSO Admin operations connect-onboard uses, with
//! fault injection.
//!
//! This file holds the public API: [`SandboxOptions`], [`Sandbox::start`] and the
//! [`SandboxHandle`] (address, env lines for the AWS SDKs, call counters, state
//! dump, fault control, test seeding). The HTTP pipeline is in `server`, the
//! services in `connect`, `identitystore` and `ssoadmin`, the state and seed
//! format in `world`, fault injection in `faults`, the route table in `ops`.

pub mod connect;
mod control;
pub mod error;
pub mod faults;
pub mod identitystore;
pub mod input;
pub mod ops;
mod server;
pub mod ssoadmin;
pub mod validate;
pub mod world;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::{ApiError, Service};
pub use faults::{ConfigError, FaultAction, FaultConfig, FaultRule, RateLimits, RatePreset};
pub use ops::{operations, OpInfo};
pub use server::{OpCounts, RecordedRequest, RecordedResponse};
pub use world::{Seed, World, WorldError};

use faults::FaultEngine;
use server::{lock, Shared, Stats};

/// How to start a sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Port on 127.0.0.1 (0 = ephemeral).
    pub port: u16,
    /// The starting world.
    pub seed: Seed,
    /// Initial fault config.
    pub faults: FaultConfig,
}

/// The seeded ids a client needs (from the first instance/store/application).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeedIds {
    /// Region.
    pub region: String,
    /// Account.
    pub account_id: String,
    /// First Connect instance id.
    pub connect_instance_id: String,
    /// Its ARN.
    pub connect_instance_arn: String,
    /// First SSO instance's identity store.
    pub identity_store_id: String,
    /// First SSO instance.
    pub sso_instance_arn: String,
    /// First application named "Amazon Connect" (else the first application).
    pub application_arn: String,
    /// Routing profiles of the first Connect instance, name → id.
    pub routing_profiles: BTreeMap<String, String>,
    /// Security profiles of the first Connect instance, name → id.
    pub security_profiles: BTreeMap<String, String>,
    /// Hierarchy groups of the first Connect instance, name → id.
    pub hierarchy_groups: BTreeMap<String, String>,
    /// Groups of the first identity store, display name → id.
    pub groups: BTreeMap<String, String>,
}

pub(crate) fn seed_ids(w: &World) -> SeedIds {
    let inst = w.connect_instances.values().next();
    let names = |m: Option<&BTreeMap<String, world::ConnectResource>>| {
        m.map(|m| m.values().map(|r| (r.name.clone(), r.id.clone())).collect())
            .unwrap_or_default()
    };
    let sso = w.sso_instances.values().next();
    let store_id = sso.map(|s| s.identity_store_id.clone()).unwrap_or_default();
    let app = w
        .applications
        .values()
        .find(|a| a.name == "Amazon Connect")
        .or_else(|| w.applications.values().next());
    SeedIds {
        region: w.region.clone(),
        account_id: w.account_id.clone(),
        connect_instance_id: inst.map(|i| i.id.clone()).unwrap_or_default(),
        connect_instance_arn: inst.map(|i| i.arn.clone()).unwrap_or_default(),
        identity_store_id: store_id.clone(),
        sso_instance_arn: sso.map(|s| s.instance_arn.clone()).unwrap_or_default(),
        application_arn: app.map(|a| a.arn.clone()).unwrap_or_default(),
        routing_profiles: names(inst.map(|i| &i.routing_profiles)),
        security_profiles: names(inst.map(|i| &i.security_profiles)),
        hierarchy_groups: names(inst.map(|i| &i.hierarchy_groups)),
        groups: w
            .identity_stores
            .get(&store_id)
            .map(|s| {
                s.groups
                    .values()
                    .map(|g| (g.display_name.clone(), g.group_id.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Starts sandboxes.
pub struct Sandbox;

impl Sandbox {
    /// Binds 127.0.0.1:`opts.port` and serves on a tokio task of the current runtime.
    pub async fn start(opts: SandboxOptions) -> std::io::Result<SandboxHandle> {
        let world = World::from_seed(&opts.seed)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        opts.faults
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let listener =
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port))).await?;
        let addr = listener.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            seed: opts.seed,
            faults: Mutex::new(FaultEngine::new(opts.faults)),
            stats: Mutex::new(Stats::default()),
            shutdown,
            addr,
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(SandboxHandle {
            shared,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        let mut conn_stop = shared.shutdown.subscribe();
        tokio::spawn(async move {
            let svc = service_fn(move |req| server::handle(conn_shared.clone(), req));
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = conn_stop.wait_for(|s| *s) => {}
            }
        });
    }
}

/// A running sandbox. Clones share the same server.
#[derive(Clone)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl SandboxHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The seeded ids.
    pub fn ids(&self) -> SeedIds {
        seed_ids(&lock(&self.shared.world))
    }

    /// Environment for the AWS SDKs and CLI: endpoint (global and per service),
    /// dummy credentials and region.
    pub fn env_lines(&self) -> Vec<(String, String)> {
        let url = self.endpoint();
        let region = lock(&self.shared.world).region.clone();
        [
            ("AWS_ENDPOINT_URL", url.as_str()),
            ("AWS_ENDPOINT_URL_CONNECT", url.as_str()),
            ("AWS_ENDPOINT_URL_IDENTITYSTORE", url.as_str()),
            ("AWS_ENDPOINT_URL_SSO_ADMIN", url.as_str()),
            ("AWS_ACCESS_KEY_ID", "sandbox"),
            ("AWS_SECRET_ACCESS_KEY", "sandbox"),
            ("AWS_REGION", region.as_str()),
            ("AWS_DEFAULT_REGION", region.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Counters per `service:Operation`.
    pub fn calls(&self) -> BTreeMap<String, OpCounts> {
        lock(&self.shared.stats).calls.clone()
    }

    /// Total calls to mutating operations, whatever their outcome.
    pub fn write_calls(&self) -> u64 {
        lock(&self.shared.stats).write_calls
    }

    /// How many applied writes have had their answer held (`apply_then_hang`) so far: the
    /// client is then between a write that landed and the answer it waits for (the hook
    /// the crash tests kill the client at).
    pub fn held_after_apply(&self) -> u64 {
        lock(&self.shared.stats).held_after_apply
    }

    /// Zeroes the counters and clears the response log (and the request log, which stays
    /// on if it was).
    pub fn reset_calls(&self) {
        let mut stats = lock(&self.shared.stats);
        let recording = stats.requests.is_some();
        *stats = Stats::default();
        if recording {
            stats.requests = Some(Vec::new());
        }
    }

    /// Starts (or stops and clears) recording every API request: `requests` then returns
    /// them all, in arrival order. Off by default (the log is unbounded).
    pub fn record_requests(&self, on: bool) {
        lock(&self.shared.stats).requests = on.then(Vec::new);
    }

    /// The requests recorded since `record_requests(true)`.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.stats)
            .requests
            .clone()
            .unwrap_or_default()
    }

    /// The bounded log of recent responses (oldest first).
    pub fn responses(&self) -> Vec<RecordedResponse> {
        lock(&self.shared.stats).log.iter().cloned().collect()
    }

    /// The most recent successful response body of `op` (`service:Operation`).
    pub fn last_response(&self, op: &str) -> Option<serde_json::Value> {
        lock(&self.shared.stats)
            .log
            .iter()
            .rev()
            .find(|r| r.op == op && r.error_code.is_none())
            .map(|r| r.body.clone())
    }

    /// The full world (same as `GET /_sandbox/state`).
    pub fn state_json(&self) -> serde_json::Value {
        lock(&self.shared.world).to_json()
    }

    /// Replaces the fault config (resets rule counters and buckets).
    pub fn set_faults(&self, f: FaultConfig) {
        self.shared.set_faults(f);
    }

    /// The current fault config.
    pub fn faults(&self) -> FaultConfig {
        self.shared.faults()
    }

    /// Runs `f` on the world (e.g. `w.add_connect_user(..)`), returning its result.
    pub fn seed_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut lock(&self.shared.world))
    }

    /// Rebuilds the world from the seed it started with.
    pub fn reset_world(&self) -> Result<(), WorldError> {
        let w = World::from_seed(&self.shared.seed)?;
        *lock(&self.shared.world) = w;
        Ok(())
    }

    /// Stops the server (hung requests are released by closing their connections).
    pub async fn shutdown(self) {
        let _ = self.shared.shutdown.send(true);
        let task = lock(&self.task).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}
