//! The configuration: `[rate_limits]` rules, validated, and which bucket an API draws from.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use super::*;

/// One quota: `rate` tokens per second, at most `burst` tokens saved up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rate: f64,
    pub burst: u32,
}

impl RateLimit {
    pub const fn new(rate: f64, burst: u32) -> Self {
        Self { rate, burst }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{ rate = {}, burst = {} }}", self.rate, self.burst)
    }
}

/// Invalid rate-limit rule; names the key and the rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub key: String,
    /// The offending rule, when the key had one.
    pub rule: Option<RateLimit>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate_limits.\"{}\"", self.key)?;
        if let Some(rule) = &self.rule {
            write!(f, " = {rule}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Validated, ordered (by key) set of rate-limit rules. Deserializes from the
/// `[rate_limits]` table: `"connect:*" = { rate = 2.0, burst = 5 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, RateLimit>",
    into = "BTreeMap<String, RateLimit>"
)]
pub struct RateLimits {
    rules: BTreeMap<String, RateLimit>,
}

/// Which rule applies to an API, and which bucket it draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Key of the matching rule (`connect:*`, `identity_center`, …).
    pub rule: String,
    /// Bucket name: the API itself, or `identity_center`.
    pub bucket: String,
    pub limit: RateLimit,
}

impl Default for RateLimits {
    /// AWS's default quotas: Connect 2/s burst 5 per API (ListUsers and
    /// DescribeUser 10/s), IAM Identity Center 20 TPS collective.
    fn default() -> Self {
        let mut rules = BTreeMap::new();
        rules.insert("connect:*".to_owned(), RateLimit::new(2.0, 5));
        rules.insert("connect:ListUsers".to_owned(), RateLimit::new(10.0, 10));
        rules.insert("connect:DescribeUser".to_owned(), RateLimit::new(10.0, 10));
        rules.insert(IDENTITY_CENTER.to_owned(), RateLimit::new(20.0, 20));
        Self { rules }
    }
}

impl TryFrom<BTreeMap<String, RateLimit>> for RateLimits {
    type Error = ConfigError;
    fn try_from(rules: BTreeMap<String, RateLimit>) -> Result<Self, ConfigError> {
        for (key, rule) in &rules {
            validate(key, rule)?;
        }
        Ok(Self { rules })
    }
}

impl From<RateLimits> for BTreeMap<String, RateLimit> {
    fn from(limits: RateLimits) -> Self {
        limits.rules
    }
}

impl RateLimits {
    /// No rules: every API is unlimited.
    pub fn none() -> Self {
        Self {
            rules: BTreeMap::new(),
        }
    }

    /// Adds or replaces one rule.
    pub fn insert(&mut self, key: &str, rule: RateLimit) -> Result<(), ConfigError> {
        validate(key, &rule)?;
        self.rules.insert(key.to_owned(), rule);
        Ok(())
    }

    /// `self` with every rule of `overrides` added or replaced (e.g. the
    /// defaults overlaid with a user's `[rate_limits]`).
    pub fn with_overrides(mut self, overrides: &RateLimits) -> Self {
        for (k, v) in &overrides.rules {
            self.rules.insert(k.clone(), *v);
        }
        self
    }

    /// Every rate and burst multiplied by `factor` (burst rounded, at least 1),
    /// e.g. `0.5` to leave half of each quota to other tools of the account.
    pub fn scale(&self, factor: f64) -> Result<Self, ConfigError> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(ConfigError {
                key: "*".to_owned(),
                rule: None,
                reason: format!("scale factor must be a finite number > 0 (got {factor})"),
            });
        }
        let mut rules = BTreeMap::new();
        for (key, rule) in &self.rules {
            let scaled = RateLimit {
                rate: rule.rate * factor,
                burst: ((f64::from(rule.burst) * factor).round() as u32).max(1),
            };
            validate(key, &scaled)?;
            rules.insert(key.clone(), scaled);
        }
        Ok(Self { rules })
    }

    /// The limits the pacer should hold to so that the *server's* bucket never runs dry:
    /// one token of each burst kept in reserve, and [`HEADROOM`] of each rate.
    ///
    /// Pacing at exactly the server's rate after spending its whole burst leaves its
    /// bucket at zero, so any request that the network delivers a little early (jitter) is
    /// throttled. Holding one token back lets a request arrive up to a whole interval early
    /// (500 ms at 2 requests/s) at no cost in steady-state throughput; the 1 % rate headroom
    /// refills that reserve against clock drift.
    pub fn with_headroom(&self) -> Self {
        let rules = (self.rules.iter())
            .map(|(key, rule)| {
                let kept = RateLimit {
                    rate: rule.rate * HEADROOM,
                    burst: rule.burst.saturating_sub(1).max(1),
                };
                (key.clone(), kept)
            })
            .collect();
        Self { rules }
    }

    /// The rule stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<RateLimit> {
        self.rules.get(key).copied()
    }

    /// Rules in key order.
    pub fn rules(&self) -> impl Iterator<Item = (&str, RateLimit)> {
        self.rules.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The rule and bucket for `api` (`service:Operation`); `None` = unlimited.
    pub fn resolve(&self, api: &str) -> Option<Resolved> {
        let (service, _op) = api.split_once(':')?;
        if let Some(limit) = self.get(api) {
            return Some(Resolved {
                rule: api.to_owned(),
                bucket: api.to_owned(),
                limit,
            });
        }
        let wildcard = format!("{service}:*");
        if let Some(limit) = self.get(&wildcard) {
            return Some(Resolved {
                rule: wildcard,
                bucket: api.to_owned(),
                limit,
            });
        }
        if IDENTITY_CENTER_SERVICES.contains(&service) {
            if let Some(limit) = self.get(IDENTITY_CENTER) {
                return Some(Resolved {
                    rule: IDENTITY_CENTER.to_owned(),
                    bucket: IDENTITY_CENTER.to_owned(),
                    limit,
                });
            }
        }
        None
    }
}

pub(super) fn validate(key: &str, rule: &RateLimit) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError {
        key: key.to_owned(),
        rule: Some(*rule),
        reason,
    };
    if !valid_key(key) {
        return Err(err(
            "invalid key: expected \"service:Operation\" (e.g. \"connect:CreateUser\"), \
             \"service:*\" or \"identity_center\""
                .to_owned(),
        ));
    }
    if !(rule.rate.is_finite() && rule.rate > 0.0) {
        return Err(err(format!(
            "rate must be a finite number > 0 (got {})",
            rule.rate
        )));
    }
    if rule.burst < 1 {
        return Err(err(format!("burst must be >= 1 (got {})", rule.burst)));
    }
    Ok(())
}

/// `identity_center` | `service:*` | `service:Operation`, where service is
/// `[a-z0-9][a-z0-9-]*` and Operation is `[A-Z][A-Za-z0-9]*`.
pub(super) fn valid_key(key: &str) -> bool {
    if key == IDENTITY_CENTER {
        return true;
    }
    let Some((service, op)) = key.split_once(':') else {
        return false;
    };
    let service_ok = service
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && service
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let op_ok = op == "*"
        || (op.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && op.chars().all(|c| c.is_ascii_alphanumeric()));
    service_ok && op_ok
}
