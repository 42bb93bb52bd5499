//! Fault injection: the [`FaultConfig`] format and the engine that applies it.
//!
//! A config has three parts: an eventual-consistency window for newly created
//! users, optional token-bucket rate limits (with an `aws` preset), and an ordered
//! list of [`FaultRule`]s that throttle, fail, delay, drop or hang matching calls
//! (optionally after applying the write), each on every matching call or on a seeded,
//! deterministic fraction of them (`probability` with the config's `seed`).
//! [`FaultEngine`] holds the per-rule hit counters and the buckets; it is reset whenever a
//! new config is installed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Service;

/// Errors reading a fault or seed file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax or schema error.
    #[error("invalid TOML in {path}: {source}")]
    Toml {
        /// The file.
        path: String,
        /// The cause.
        source: toml::de::Error,
    },
    /// JSON syntax or schema error.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A semantically invalid value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Reads a TOML (default) or JSON (`.json` extension) file into `T`.
pub(crate) fn read_config_file<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<T, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: shown.clone(),
        source,
    })?;
    let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
    if is_json {
        serde_json::from_str(&text).map_err(|source| ConfigError::Json {
            path: shown,
            source,
        })
    } else {
        toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: shown,
            source,
        })
    }
}

/// The complete fault configuration (see the README for the file format).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Newly created Connect and Identity Store users stay invisible to
    /// ListUsers/SearchUsers/GetUserId for this long (Describe* by id sees them).
    pub consistency_window_ms: u64,
    /// Optional token-bucket rate limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// Seed of the rules' `probability` draws: the same seed fires the same rule on the
    /// same matching calls (the n-th call matching rule i fires or not as a pure function
    /// of seed, i and n).
    pub seed: u64,
    /// Ordered fault rules.
    pub rules: Vec<FaultRule>,
}

impl FaultConfig {
    /// Reads a TOML or JSON (by extension) fault file.
    pub fn from_path(path: &Path) -> Result<FaultConfig, ConfigError> {
        let cfg: FaultConfig = read_config_file(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text.
    pub fn from_toml_str(text: &str) -> Result<FaultConfig, ConfigError> {
        let cfg: FaultConfig = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: "<string>".into(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses JSON text.
    pub fn from_json_str(text: &str) -> Result<FaultConfig, ConfigError> {
        let cfg: FaultConfig = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: "<string>".into(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config with the `aws` rate-limit preset at `scale`.
    pub fn aws_rate_limits(scale: f64) -> FaultConfig {
        FaultConfig {
            rate_limits: Some(RateLimits {
                preset: RatePreset::Aws,
                scale,
                ops: BTreeMap::new(),
            }),
            ..FaultConfig::default()
        }
    }

    /// Checks values serde cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(rl) = &self.rate_limits {
            if !(rl.scale.is_finite() && rl.scale > 0.0) {
                return Err(ConfigError::Invalid("rate_limits.scale must be > 0".into()));
            }
            for (op, b) in &rl.ops {
                if !(b.rate > 0.0 && b.burst >= 1.0) {
                    return Err(ConfigError::Invalid(format!(
                        "rate_limits.ops.{op}: rate must be > 0 and burst >= 1"
                    )));
                }
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.op.is_empty() {
                return Err(ConfigError::Invalid(format!("rules[{i}].op is empty")));
            }
            if r.probability.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                return Err(ConfigError::Invalid(format!(
                    "rules[{i}].probability must be between 0 and 1"
                )));
            }
            if r.action == FaultAction::Latency && r.latency_ms.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "rules[{i}]: action latency needs latency_ms"
                )));
            }
        }
        Ok(())
    }
}

/// Rate limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// `aws` (Connect 2 rps burst 5 per operation; Identity Store and SSO Admin
    /// 20 tps burst 20 per service) or `none` (only `ops`).
    pub preset: RatePreset,
    /// Multiplies every rate (not the burst).
    pub scale: f64,
    /// Per-operation buckets (`"connect:CreateUser" = { rate = 1.0, burst = 2 }`),
    /// overriding the preset for that operation.
    pub ops: BTreeMap<String, BucketSpec>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            preset: RatePreset::Aws,
            scale: 1.0,
            ops: BTreeMap::new(),
        }
    }
}

/// Named rate-limit presets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RatePreset {
    /// AWS's documented defaults.
    #[default]
    Aws,
    /// No preset buckets.
    None,
}

/// One token bucket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Tokens per second.
    pub rate: f64,
    /// Bucket size.
    pub burst: f64,
}

/// What a rule does to a matching call.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with the service's ThrottlingException.
    Throttle,
    /// Answer with `code` (default: the service's 500 error) without applying.
    Error,
    /// Delay by `latency_ms`, then proceed (later rules still apply).
    Latency,
    /// Apply the write, then answer with the error.
    ApplyThenError,
    /// Apply the write, then close the connection without answering.
    ApplyThenDrop,
    /// Close the connection without applying or answering.
    Drop,
    /// Never answer (until shutdown).
    Hang,
    /// Apply the write, then never answer.
    ApplyThenHang,
}

/// One fault rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `service:Operation`, `service:*`, `*:Operation` or `*`.
    pub op: String,
    /// What to do.
    pub action: FaultAction,
    /// Error code for `error` / `apply_then_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// HTTP status override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Error message override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Extra members of the injected error body (e.g. `{"Reason": "CONCURRENT_MODIFICATION"}`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub members: serde_json::Map<String, serde_json::Value>,
    /// Delay for `latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Let the first N matching calls through.
    #[serde(default)]
    pub after: u64,
    /// Fire for this many matching calls (absent = forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Only match requests whose body contains this substring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Fire on this fraction of the matching calls (absent = all), drawn from the config's
    /// `seed`: deterministic per seed and per matching call's rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

impl FaultRule {
    /// A rule with the given op pattern and action and no other settings.
    pub fn new(op: &str, action: FaultAction) -> FaultRule {
        FaultRule {
            op: op.to_string(),
            action,
            code: None,
            status: None,
            message: None,
            members: serde_json::Map::new(),
            latency_ms: None,
            after: 0,
            times: None,
            body_contains: None,
            probability: None,
        }
    }

    fn matches(&self, op_key: &str, body: &str) -> bool {
        op_matches(&self.op, op_key)
            && self
                .body_contains
                .as_deref()
                .is_none_or(|s| body.contains(s))
    }
}

/// Matches `service:Operation` against a rule pattern.
pub fn op_matches(pattern: &str, op_key: &str) -> bool {
    if pattern == "*" || pattern == op_key {
        return true;
    }
    let (Some((ps, po)), Some((ks, ko))) = (pattern.split_once(':'), op_key.split_once(':')) else {
        return false;
    };
    let svc_ok = ps == "*" || Service::from_key(ps).is_some_and(|s| s.key() == ks);
    svc_ok && (po == "*" || po == ko)
}

/// An error a rule answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedError {
    /// Code, or None for the service's 500 error.
    pub code: Option<String>,
    /// Status override.
    pub status: Option<u16>,
    /// Message override.
    pub message: Option<String>,
    /// Extra error members.
    pub members: serde_json::Map<String, serde_json::Value>,
}

/// What happens after the handler ran (for `apply_then_*`).
#[derive(Debug, Clone, PartialEq)]
pub enum AfterApply {
    /// Answer with an error.
    Error(InjectedError),
    /// Close the connection.
    Drop,
    /// Never answer.
    Hang,
}

/// The engine's verdict for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Handle normally.
    Proceed,
    /// Throttled (by a rule or the rate limiter).
    Throttle,
    /// Answer with an error without applying.
    Error(InjectedError),
    /// Close the connection before applying.
    Drop,
    /// Never answer.
    Hang,
    /// Apply, then do this.
    ApplyThen(AfterApply),
}

/// The verdict plus any injected delay.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Sleep this long before acting.
    pub delay_ms: u64,
    /// What to do.
    pub outcome: Outcome,
}

struct Bucket {
    spec: BucketSpec,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(spec: BucketSpec, now: Instant) -> Bucket {
        Bucket {
            spec,
            tokens: spec.burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.spec.rate).min(self.spec.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Applies a [`FaultConfig`]: rule counters and token buckets.
pub struct FaultEngine {
    config: FaultConfig,
    seen: Vec<u64>,
    fired: Vec<u64>,
    buckets: HashMap<String, Bucket>,
}

impl FaultEngine {
    /// A fresh engine for `config`.
    pub fn new(config: FaultConfig) -> FaultEngine {
        let n = config.rules.len();
        FaultEngine {
            config,
            seen: vec![0; n],
            fired: vec![0; n],
            buckets: HashMap::new(),
        }
    }

    /// The installed config.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Decides what to do with a call to `op_key` (`service:Operation`).
    pub fn decide(&mut self, op_key: &str, body: &str, now: Instant) -> Decision {
        if self.rate_limited(op_key, now) {
            return Decision {
                delay_ms: 0,
                outcome: Outcome::Throttle,
            };
        }
        let mut delay_ms = 0;
        for i in 0..self.config.rules.len() {
            let rule = &self.config.rules[i];
            if !rule.matches(op_key, body) {
                continue;
            }
            self.seen[i] += 1;
            if self.seen[i] <= rule.after || rule.times.is_some_and(|t| self.fired[i] >= t) {
                continue;
            }
            if rule
                .probability
                .is_some_and(|p| draw(self.config.seed, i, self.seen[i]) >= p)
            {
                continue;
            }
            self.fired[i] += 1;
            let injected = || InjectedError {
                code: rule.code.clone(),
                status: rule.status,
                message: rule.message.clone(),
                members: rule.members.clone(),
            };
            let outcome = match rule.action {
                FaultAction::Latency => {
                    delay_ms += rule.latency_ms.unwrap_or(0);
                    continue;
                }
                FaultAction::Throttle => Outcome::Throttle,
                FaultAction::Error => Outcome::Error(injected()),
                FaultAction::Drop => Outcome::Drop,
                FaultAction::Hang => Outcome::Hang,
                FaultAction::ApplyThenError => Outcome::ApplyThen(AfterApply::Error(injected())),
                FaultAction::ApplyThenDrop => Outcome::ApplyThen(AfterApply::Drop),
                FaultAction::ApplyThenHang => Outcome::ApplyThen(AfterApply::Hang),
            };
            return Decision { delay_ms, outcome };
        }
        Decision {
            delay_ms,
            outcome: Outcome::Proceed,
        }
    }

    fn rate_limited(&mut self, op_key: &str, now: Instant) -> bool {
        let Some(rl) = &self.config.rate_limits else {
            return false;
        };
        let (bucket_key, spec) = if let Some(spec) = rl.ops.get(op_key) {
            (op_key.to_string(), *spec)
        } else if rl.preset == RatePreset::Aws {
            let service = op_key.split(':').next().unwrap_or_default();
            if service == "connect" {
                let spec = BucketSpec {
                    rate: 2.0 * rl.scale,
                    burst: 5.0,
                };
                (op_key.to_string(), spec)
            } else {
                let spec = BucketSpec {
                    rate: 20.0 * rl.scale,
                    burst: 20.0,
                };
                (service.to_string(), spec)
            }
        } else {
            return false;
        };
        let bucket = self
            .buckets
            .entry(bucket_key)
            .or_insert_with(|| Bucket::new(spec, now));
        !bucket.take(now)
    }
}

/// A uniform draw in [0, 1) for the `nth` call matching rule `rule` under `seed`
/// (splitmix64 of the three): reproducible whatever the order calls arrive in.
fn draw(seed: u64, rule: usize, nth: u64) -> f64 {
    let mut x = seed
        ^ (rule as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ nth.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn patterns() {
        assert!(op_matches("*", "connect:CreateUser"));
        assert!(op_matches("connect:*", "connect:CreateUser"));
        assert!(op_matches("*:CreateUser", "identitystore:CreateUser"));
        assert!(op_matches("sso-admin:*", "sso:ListInstances"));
        assert!(!op_matches("connect:*", "identitystore:CreateUser"));
        assert!(!op_matches("connect:CreateUser", "connect:DeleteUser"));
    }

    #[test]
    fn after_and_times() {
        let mut rule = FaultRule::new("connect:CreateUser", FaultAction::Error);
        rule.after = 1;
        rule.times = Some(2);
        let mut e = FaultEngine::new(FaultConfig {
            rules: vec![rule],
            ..Default::default()
        });
        let now = Instant::now();
        let outcomes: Vec<bool> = (0..5)
            .map(|_| e.decide("connect:CreateUser", "", now).outcome != Outcome::Proceed)
            .collect();
        assert_eq!(outcomes, vec![false, true, true, false, false]);
        assert_eq!(
            e.decide("connect:DeleteUser", "", now).outcome,
            Outcome::Proceed
        );
    }

    #[test]
    fn body_filter_and_latency_accumulates() {
        let mut lat = FaultRule::new("*", FaultAction::Latency);
        lat.latency_ms = Some(50);
        let mut drop = FaultRule::new("identitystore:CreateUser", FaultAction::ApplyThenDrop);
        drop.body_contains = Some("alice@".into());
        let mut e = FaultEngine::new(FaultConfig {
            rules: vec![lat, drop],
            ..Default::default()
        });
        let now = Instant::now();
        let d = e.decide(
            "identitystore:CreateUser",
            r#"{"UserName":"alice@x.com"}"#,
            now,
        );
        assert_eq!(d.delay_ms, 50);
        assert_eq!(d.outcome, Outcome::ApplyThen(AfterApply::Drop));
        let d = e.decide(
            "identitystore:CreateUser",
            r#"{"UserName":"bob@x.com"}"#,
            now,
        );
        assert_eq!(d.outcome, Outcome::Proceed);
    }

    #[test]
    fn aws_preset_connect_burst_then_refill() {
        let mut e = FaultEngine::new(FaultConfig::aws_rate_limits(1.0));
        let t0 = Instant::now();
        let ok = (0..7)
            .filter(|_| e.decide("connect:CreateUser", "", t0).outcome == Outcome::Proceed)
            .count();
        assert_eq!(ok, 5);
        // Another op has its own bucket.
        assert_eq!(
            e.decide("connect:DescribeUser", "", t0).outcome,
            Outcome::Proceed
        );
        // After 1 s, 2 more tokens.
        let t1 = t0 + Duration::from_secs(1);
        let ok = (0..5)
            .filter(|_| e.decide("connect:CreateUser", "", t1).outcome == Outcome::Proceed)
            .count();
        assert_eq!(ok, 2);
    }

    #[test]
    fn aws_preset_identity_services_share_a_bucket() {
        let mut e = FaultEngine::new(FaultConfig::aws_rate_limits(1.0));
        let t0 = Instant::now();
        for i in 0..20 {
            let op = if i % 2 == 0 {
                "identitystore:CreateUser"
            } else {
                "identitystore:GetUserId"
            };
            assert_eq!(e.decide(op, "", t0).outcome, Outcome::Proceed);
        }
        assert_eq!(
            e.decide("identitystore:ListUsers", "", t0).outcome,
            Outcome::Throttle
        );
        assert_eq!(
            e.decide("sso:ListInstances", "", t0).outcome,
            Outcome::Proceed
        );
    }

    #[test]
    fn probability_fires_on_a_seeded_fraction_the_same_way_every_time() {
        let mut rule = FaultRule::new("*", FaultAction::Throttle);
        rule.probability = Some(0.3);
        let config = |seed| FaultConfig {
            seed,
            rules: vec![rule.clone()],
            ..Default::default()
        };
        let now = Instant::now();
        let run = |seed| {
            let mut e = FaultEngine::new(config(seed));
            (0..2000)
                .map(|_| e.decide("connect:CreateUser", "", now).outcome == Outcome::Throttle)
                .collect::<Vec<bool>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same calls fire");
        assert_ne!(a, run(8), "another seed, another draw");
        let fired = a.iter().filter(|f| **f).count();
        assert!((540..=660).contains(&fired), "about 30 % of 2000: {fired}");
        let mut bad = rule.clone();
        bad.probability = Some(1.5);
        assert!(FaultConfig {
            rules: vec![bad],
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn parses_toml() {
        let cfg = FaultConfig::from_toml_str(
            r#"
consistency_window_ms = 250
[rate_limits]
preset = "aws"
scale = 10.0
[[rules]]
op = "connect:CreateUser"
action = "apply_then_error"
code = "InternalServiceException"
times = 1
"#,
        )
        .expect("valid");
        assert_eq!(cfg.consistency_window_ms, 250);
        assert_eq!(cfg.rules[0].action, FaultAction::ApplyThenError);
        assert_eq!(cfg.rate_limits.as_ref().map(|r| r.scale), Some(10.0));
        assert!(FaultConfig::from_toml_str("[[rules]]\nop='*'\naction='latency'\n").is_err());
        assert!(FaultConfig::from_toml_str("bogus = 1\n").is_err());
    }
}
