//! The pacer on virtual time: rates, priorities, adaptation, contended simulations, config.

use super::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

fn limits(rules: &[(&str, f64, u32)]) -> RateLimits {
    let mut l = RateLimits::none();
    for (k, r, b) in rules {
        l.insert(k, RateLimit::new(*r, *b)).unwrap();
    }
    l
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn assert_near(actual: f64, expected: f64, eps: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= eps,
        "{what}: {actual} not within {eps} of {expected}"
    );
}

async fn run_sequential(p: &Pacer, api: &str, n: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        p.acquire(api, Attempt::First).await.done(Outcome::Success);
    }
    t0.elapsed()
}

async fn run_concurrent(p: &Pacer, api: &str, n: usize) -> Duration {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let p = p.clone();
            let api = api.to_owned();
            tokio::spawn(async move {
                p.acquire(&api, Attempt::First).await.done(Outcome::Success);
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    t0.elapsed()
}

// ---- config ----------------------------------------------------------

#[derive(Deserialize)]
struct Cfg {
    rate_limits: RateLimits,
}

fn parse(toml_text: &str) -> Result<RateLimits, String> {
    toml::from_str::<Cfg>(toml_text)
        .map(|c| c.rate_limits)
        .map_err(|e| e.to_string())
}

#[test]
fn parses_the_documented_example() {
    let l = parse(
        r#"
        [rate_limits]
        "connect:*" = { rate = 2.0, burst = 5 }
        "connect:CreateUser" = { rate = 2.0, burst = 5 }
        "connect:ListUsers" = { rate = 10.0, burst = 10 }
        "identity_center" = { rate = 20, burst = 20 }
        "#,
    )
    .unwrap();
    assert_eq!(l.get("connect:ListUsers"), Some(RateLimit::new(10.0, 10)));
    assert_eq!(l.get("identity_center"), Some(RateLimit::new(20.0, 20)));
    let keys: Vec<&str> = l.rules().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "connect:*",
            "connect:CreateUser",
            "connect:ListUsers",
            "identity_center"
        ]
    );
}

#[test]
fn default_is_aws_quotas() {
    let d = RateLimits::default();
    let rate = |api: &str| d.resolve(api).map(|r| (r.limit.rate, r.limit.burst));
    assert_eq!(rate("connect:CreateUser"), Some((2.0, 5)));
    assert_eq!(rate("connect:SearchUsers"), Some((2.0, 5)));
    assert_eq!(rate("connect:ListUsers"), Some((10.0, 10)));
    assert_eq!(rate("connect:DescribeUser"), Some((10.0, 10)));
    assert_eq!(rate("identitystore:CreateUser"), Some((20.0, 20)));
    assert_eq!(rate("sso:CreateApplicationAssignment"), Some((20.0, 20)));
    assert_eq!(rate("s3:GetObject"), None);
    // Round-trips through TOML.
    #[derive(Serialize)]
    struct Out<'a> {
        rate_limits: &'a RateLimits,
    }
    let s = toml::to_string(&Out { rate_limits: &d }).unwrap();
    assert_eq!(parse(&s).unwrap(), d);
}

#[test]
fn resolution_precedence() {
    let l = limits(&[
        ("connect:*", 2.0, 5),
        ("connect:ListUsers", 10.0, 10),
        ("identity_center", 20.0, 20),
        ("sso:DescribeApplication", 1.0, 1),
    ]);
    let r = l.resolve("connect:ListUsers").unwrap();
    assert_eq!(
        (r.rule.as_str(), r.bucket.as_str()),
        ("connect:ListUsers", "connect:ListUsers")
    );
    let r = l.resolve("connect:CreateUser").unwrap();
    assert_eq!(
        (r.rule.as_str(), r.bucket.as_str()),
        ("connect:*", "connect:CreateUser")
    );
    let r = l.resolve("identitystore:CreateUser").unwrap();
    assert_eq!(
        (r.rule.as_str(), r.bucket.as_str()),
        ("identity_center", "identity_center")
    );
    let r = l.resolve("sso:DescribeApplication").unwrap();
    assert_eq!(r.bucket, "sso:DescribeApplication");
    assert!(l.resolve("s3:GetObject").is_none());
    assert!(l.resolve("not-an-api").is_none());
}

#[test]
fn validation_errors_name_key_and_rule() {
    let cases = [
        (
            r#""connect:*" = { rate = 0.0, burst = 5 }"#,
            "connect:*",
            "rate must be",
        ),
        (
            r#""connect:*" = { rate = -1.0, burst = 5 }"#,
            "connect:*",
            "rate must be",
        ),
        (
            r#""connect:*" = { rate = nan, burst = 5 }"#,
            "connect:*",
            "rate must be",
        ),
        (
            r#""connect:*" = { rate = inf, burst = 5 }"#,
            "connect:*",
            "rate must be",
        ),
        (
            r#""connect:CreateUser" = { rate = 2.0, burst = 0 }"#,
            "connect:CreateUser",
            "burst must be >= 1",
        ),
        (
            r#""connect" = { rate = 2.0, burst = 5 }"#,
            "connect",
            "invalid key",
        ),
        (
            r#""connect:createUser" = { rate = 2.0, burst = 5 }"#,
            "connect:createUser",
            "invalid key",
        ),
        (
            r#""Connect:*" = { rate = 2.0, burst = 5 }"#,
            "Connect:*",
            "invalid key",
        ),
        (r#""*" = { rate = 2.0, burst = 5 }"#, "*", "invalid key"),
        (
            r#""identity-center" = { rate = 2.0, burst = 5 }"#,
            "identity-center",
            "invalid key",
        ),
    ];
    for (line, key, reason) in cases {
        let err = parse(&format!("[rate_limits]\n{line}\n")).unwrap_err();
        println!("config error: {}", err.lines().last().unwrap_or_default());
        assert!(
            err.contains(&format!("rate_limits.\"{key}\" = {{ rate =")) && err.contains(reason),
            "{line} -> {err}"
        );
    }
    // Structural errors come from serde/toml and point at the line.
    let err = parse("[rate_limits]\n\"connect:*\" = { rate = 2.0 }\n").unwrap_err();
    assert!(err.contains("burst"), "{err}");
    let err =
        parse("[rate_limits]\n\"connect:*\" = { rate = 2.0, burst = 5, brust = 1 }\n").unwrap_err();
    assert!(err.contains("brust"), "{err}");
    let err = parse("[rate_limits]\n\"connect:*\" = { rate = 2.0, burst = -1 }\n").unwrap_err();
    assert!(err.contains("connect:*") || err.contains("-1"), "{err}");
    // Programmatic insert validates too.
    let e = RateLimits::none()
        .insert("connect:*", RateLimit::new(2.0, 0))
        .unwrap_err();
    assert_eq!(e.key, "connect:*");
    assert_eq!(e.rule, Some(RateLimit::new(2.0, 0)));
}

#[test]
fn scale_and_overrides() {
    let d = RateLimits::default();
    let half = d.scale(0.5).unwrap();
    assert_eq!(half.get("connect:*"), Some(RateLimit::new(1.0, 3))); // 2.5 rounds to 3
    assert_eq!(half.get("identity_center"), Some(RateLimit::new(10.0, 10)));
    let tiny = d.scale(0.01).unwrap();
    assert_eq!(tiny.get("connect:*").unwrap().burst, 1);
    assert!(d.scale(0.0).is_err());
    assert!(d.scale(f64::NAN).is_err());
    assert!(d.scale(-1.0).is_err());
    let user = limits(&[("connect:CreateUser", 1.0, 1)]);
    let merged = d.clone().with_overrides(&user);
    assert_eq!(
        merged.get("connect:CreateUser"),
        Some(RateLimit::new(1.0, 1))
    );
    assert_eq!(merged.get("identity_center"), d.get("identity_center"));
}

// ---- pacing ----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn hundred_calls_take_burst_then_rate() {
    let p = Pacer::new(limits(&[("connect:*", 2.0, 5)]));
    let el = run_sequential(&p, "connect:CreateUser", 100).await;
    assert_near(
        secs(el),
        (100.0 - 5.0) / 2.0,
        0.01,
        "100 calls at 2/s burst 5",
    );
    let s = &p.snapshot()[0];
    assert_eq!((s.first_attempts, s.succeeded, s.throttled), (100, 100, 0));
    assert_eq!(s.current_rate, Some(2.0));
    // Clean run sits on the quota: wall time ≤ 1.02 × calls / rate (after the burst).
    assert!(secs(el) <= 1.02 * 95.0 / 2.0);
}

#[tokio::test(start_paused = true)]
async fn wildcard_gives_each_api_its_own_bucket() {
    let p = Pacer::new(limits(&[("connect:*", 2.0, 5)]));
    let t0 = Instant::now();
    let (a, b) = tokio::join!(
        run_sequential(&p, "connect:CreateUser", 25),
        run_sequential(&p, "connect:SearchUsers", 25)
    );
    // Each: (25-5)/2 = 10 s; shared would be (50-5)/2 = 22.5 s.
    assert_near(secs(a), 10.0, 0.01, "CreateUser");
    assert_near(secs(b), 10.0, 0.01, "SearchUsers");
    assert_near(secs(t0.elapsed()), 10.0, 0.01, "both");
}

#[tokio::test(start_paused = true)]
async fn identity_center_apis_share_one_bucket() {
    let p = Pacer::new(RateLimits::default());
    let t0 = Instant::now();
    tokio::join!(
        run_sequential(&p, "identitystore:CreateUser", 40),
        run_sequential(&p, "sso:CreateApplicationAssignment", 40)
    );
    // 80 calls on one 20/s burst-20 bucket: (80-20)/20 = 3 s (not 1 s).
    assert_near(secs(t0.elapsed()), 3.0, 0.01, "shared identity_center");
    let snap = p.snapshot();
    assert!(snap
        .iter()
        .all(|s| s.bucket.as_deref() == Some("identity_center")));
}

#[tokio::test(start_paused = true)]
async fn exact_rule_beats_wildcard() {
    let p = Pacer::new(limits(&[
        ("connect:*", 2.0, 5),
        ("connect:ListUsers", 10.0, 10),
    ]));
    let el = run_sequential(&p, "connect:ListUsers", 60).await;
    assert_near(secs(el), (60.0 - 10.0) / 10.0, 0.01, "ListUsers at 10/s");
    let el = run_sequential(&p, "connect:DeleteUser", 15).await;
    assert_near(secs(el), (15.0 - 5.0) / 2.0, 0.01, "DeleteUser at 2/s");
}

#[tokio::test(start_paused = true)]
async fn unknown_api_is_unlimited() {
    let p = Pacer::new(RateLimits::default());
    let el = run_sequential(&p, "s3:GetObject", 1000).await;
    assert_eq!(el, Duration::ZERO);
    let s = &p.snapshot()[0];
    assert_eq!(
        (s.first_attempts, s.current_rate, s.bucket.clone()),
        (1000, None, None)
    );
    // No identity_center rule → identitystore is unlimited too.
    let p = Pacer::new(limits(&[("connect:*", 2.0, 5)]));
    assert_eq!(
        run_sequential(&p, "identitystore:CreateUser", 100).await,
        Duration::ZERO
    );
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_tasks_get_the_configured_rate() {
    let p = Pacer::new(RateLimits::default());
    let el = run_concurrent(&p, "connect:CreateUser", 50).await;
    assert_near(secs(el), (50.0 - 5.0) / 2.0, 0.01, "50 tasks at 2/s");
    let el = run_concurrent(&p, "identitystore:GetUserId", 500).await;
    // The identity_center bucket starts full (20).
    assert_near(secs(el), (500.0 - 20.0) / 20.0, 0.01, "500 tasks at 20/s");
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_leaves_the_queue() {
    let p = Pacer::new(limits(&[("connect:*", 1.0, 1)]));
    p.acquire("connect:CreateUser", Attempt::First)
        .await
        .done(Outcome::Success);
    // Head waiter gives up before its token arrives.
    let r = tokio::time::timeout(
        Duration::from_millis(500),
        p.acquire("connect:CreateUser", Attempt::First),
    )
    .await;
    assert!(r.is_err());
    let t0 = Instant::now();
    p.acquire("connect:CreateUser", Attempt::First)
        .await
        .done(Outcome::Success);
    assert_near(
        secs(t0.elapsed()),
        0.5,
        0.01,
        "next waiter gets the token at t=1s",
    );
}

// ---- priority --------------------------------------------------------

/// Spawns a task that acquires and logs (label, grant time since t0).
fn spawn_logged(
    p: &Pacer,
    api: &'static str,
    attempt: Attempt,
    label: String,
    log: Arc<Mutex<Vec<(String, f64)>>>,
    t0: Instant,
) -> tokio::task::JoinHandle<()> {
    let p = p.clone();
    tokio::spawn(async move {
        let permit = p.acquire(api, attempt).await;
        log.lock().unwrap().push((label, secs(t0.elapsed())));
        permit.done(Outcome::Success);
    })
}

#[tokio::test(start_paused = true)]
async fn first_attempts_overtake_waiting_retries() {
    let p = Pacer::new(limits(&[("connect:*", 1.0, 1)]));
    let api = "connect:CreateUser";
    let log = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    p.acquire(api, Attempt::First).await.done(Outcome::Success); // drain the burst
    let mut hs = Vec::new();
    for i in 0..3 {
        hs.push(spawn_logged(
            &p,
            api,
            Attempt::Retry,
            format!("R{i}"),
            log.clone(),
            t0,
        ));
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // retries are queued
    for i in 0..3 {
        hs.push(spawn_logged(
            &p,
            api,
            Attempt::First,
            format!("F{i}"),
            log.clone(),
            t0,
        ));
    }
    for h in hs {
        h.await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    let order: Vec<&str> = log.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(order, ["F0", "F1", "F2", "R0", "R1", "R2"]);
    for (i, (_, t)) in log.iter().enumerate() {
        assert_near(*t, (i + 1) as f64, 0.01, "one token per second");
    }
}

#[tokio::test(start_paused = true)]
async fn lone_retry_is_served() {
    let p = Pacer::new(limits(&[("connect:*", 1.0, 1)]));
    let api = "connect:CreateUser";
    // Token available: immediate.
    let t0 = Instant::now();
    p.acquire(api, Attempt::Retry).await.done(Outcome::Success);
    assert_eq!(t0.elapsed(), Duration::ZERO);
    // Bucket empty, no first attempt waiting: served at the next token.
    p.acquire(api, Attempt::Retry).await.done(Outcome::Success);
    assert_near(secs(t0.elapsed()), 1.0, 0.01, "retry at next token");
    let s = &p.snapshot()[0];
    assert_eq!((s.first_attempts, s.retries), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn retry_is_not_starved_by_endless_first_attempts() {
    let p = Pacer::new(limits(&[("connect:*", 10.0, 1)]));
    let api = "connect:CreateUser";
    let log = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    p.acquire(api, Attempt::First).await.done(Outcome::Success);
    let mut hs = vec![spawn_logged(
        &p,
        api,
        Attempt::Retry,
        "R".into(),
        log.clone(),
        t0,
    )];
    tokio::time::sleep(Duration::from_millis(10)).await;
    for i in 0..40 {
        hs.push(spawn_logged(
            &p,
            api,
            Attempt::First,
            format!("F{i}"),
            log.clone(),
            t0,
        ));
    }
    for h in hs {
        h.await.unwrap();
    }
    let log = log.lock().unwrap();
    let pos = log.iter().position(|(l, _)| l == "R").unwrap();
    assert_eq!(
        pos, RETRY_STARVATION_LIMIT as usize,
        "retry goes after the limit"
    );
    // FIFO within the first-attempt class.
    let firsts: Vec<&str> = log
        .iter()
        .filter(|(l, _)| l != "R")
        .map(|(l, _)| l.as_str())
        .collect();
    let expected: Vec<String> = (0..40).map(|i| format!("F{i}")).collect();
    assert_eq!(firsts, expected);
}

// ---- adaptive --------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn throttle_drops_rate_and_recovers() {
    let p = Pacer::new(limits(&[("connect:*", 2.0, 5)]));
    let api = "connect:CreateUser";
    p.acquire(api, Attempt::First)
        .await
        .done(Outcome::Throttled {
            retry_after: Some(Duration::from_secs(3)),
        });
    assert_near(
        p.current_rate(api).unwrap(),
        2.0 * BETA,
        1e-9,
        "rate after throttle",
    );
    // The bucket was emptied (the server's is): the next token comes at the new rate.
    let t0 = Instant::now();
    let permit = p.acquire(api, Attempt::Retry).await;
    assert_near(
        secs(t0.elapsed()),
        1.0 / (2.0 * BETA),
        0.01,
        "first token after the decrease",
    );
    permit.done(Outcome::Success);
    // Stream of successes: the rate climbs monotonically back to 2.0, never above.
    let mut last = p.current_rate(api).unwrap();
    let mut reached = None;
    for _ in 0..200 {
        p.acquire(api, Attempt::First).await.done(Outcome::Success);
        let r = p.current_rate(api).unwrap();
        assert!(r >= last - 1e-12 && r <= 2.0, "rate {r} after {last}");
        if r == 2.0 && reached.is_none() {
            reached = Some(secs(t0.elapsed()));
        }
        last = r;
    }
    assert_eq!(last, 2.0);
    let reached = reached.expect("rate returned to the configured value");
    // W = 2.0, so the cubic is back at 2.0 after RECOVERY, which starts once the cut's
    // probe (PROBE_OUTCOMES answers at 2·β per s) has held the lower rate.
    let hold = PROBE_OUTCOMES / (2.0 * BETA);
    assert!(
        reached <= hold + secs(RECOVERY) + 1.0,
        "reached 2.0 at {reached}s"
    );
    let s = &p.snapshot()[0];
    assert_eq!((s.throttled, s.retries, s.succeeded), (1, 1, 201));
}

/// Item 21 (c): Identity Store's RetryAfterSeconds delays the retry of the call that got it
/// (`aws::retry`), not the other calls of the bucket: under a storm, each such throttle
/// used to stop every Identity Center call for a second.
#[tokio::test(start_paused = true)]
async fn one_calls_retry_after_does_not_stall_the_others() {
    let p = Pacer::new(limits(&[("identity_center", 20.0, 20)]));
    let api = "identitystore:CreateUser";
    // Nothing is known of the background yet: this throttle decreases the rate, and still
    // the other calls go on at once, at the new rate.
    p.acquire(api, Attempt::First)
        .await
        .done(Outcome::Throttled {
            retry_after: Some(Duration::from_secs(5)),
        });
    let t0 = Instant::now();
    for _ in 0..10 {
        p.acquire("sso:CreateApplicationAssignment", Attempt::First)
            .await
            .done(Outcome::Success);
    }
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "other calls waited {:?} for one call's retry_after",
        t0.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_throttles_decrease_once_and_a_cut_that_does_not_help_is_undone() {
    let p = Pacer::new(limits(&[("identity_center", 20.0, 20)]));
    let api = "identitystore:CreateUser";
    let permits: Vec<Permit> = futures_join(&p, api, 5).await;
    for permit in permits {
        permit.done(Outcome::Throttled { retry_after: None });
    }
    assert_near(
        p.current_rate(api).unwrap(),
        20.0 * BETA,
        1e-9,
        "one decrease",
    );
    // While the decrease is on trial, throttles do not decrease again.
    for _ in 0..(PROBE_OUTCOMES as usize - 1) {
        p.acquire(api, Attempt::Retry)
            .await
            .done(Outcome::Throttled { retry_after: None });
        assert_near(
            p.current_rate(api).unwrap(),
            20.0 * BETA,
            1e-9,
            "no second decrease",
        );
    }
    // Half the calls throttled at every rate (another client, an outage): the next cut is
    // judged by its probe, found not to help, and undone; the share becomes background,
    // and the rate climbs back to the configured one.
    let mut lowest = f64::MAX;
    for i in 0..600 {
        let outcome = if i % 2 == 0 {
            Outcome::Throttled { retry_after: None }
        } else {
            Outcome::Success
        };
        p.acquire(api, Attempt::First).await.done(outcome);
        lowest = lowest.min(p.current_rate(api).unwrap());
    }
    println!(
        "lowest rate {lowest:.2}, final {:.2}",
        p.current_rate(api).unwrap()
    );
    assert!(
        p.current_rate(api).unwrap() >= 0.9 * 20.0,
        "climbing back to the configured rate"
    );
}

async fn futures_join(p: &Pacer, api: &str, n: usize) -> Vec<Permit> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(p.acquire(api, Attempt::First).await);
    }
    v
}

#[tokio::test(start_paused = true)]
async fn unreported_and_other_errors_leave_rate_alone() {
    let p = Pacer::new(limits(&[("connect:*", 2.0, 5)]));
    let api = "connect:CreateUser";
    drop(p.acquire(api, Attempt::First).await);
    p.acquire(api, Attempt::First)
        .await
        .done(Outcome::OtherError);
    assert_eq!(p.current_rate(api), Some(2.0));
    let s = &p.snapshot()[0];
    assert_eq!((s.unreported, s.other_errors, s.first_attempts), (1, 1, 2));
}

// ---- contended server simulation -------------------------------------

/// Server-side token bucket (what is left of the account's quota).
struct Server {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
    /// Retry-after the server sends with a throttle.
    retry_after: Option<Duration>,
    /// Share of the calls the bucket let through that are throttled anyway, whatever our
    /// rate (another client of the account, a noisy neighbour: the sandbox's storm rules),
    /// drawn from a seeded xorshift.
    background: f64,
    rng: Mutex<u64>,
}

impl Server {
    fn new(rate: f64, burst: f64, retry_after: Option<Duration>) -> Self {
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
            retry_after,
            background: 0.0,
            rng: Mutex::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    fn with_background(mut self, share: f64) -> Self {
        self.background = share;
        self
    }

    fn draw(&self) -> f64 {
        let mut x = self.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn call(&self) -> Outcome {
        let mut st = self.state.lock().unwrap();
        let now = Instant::now();
        st.0 = (st.0 + (now - st.1).as_secs_f64() * self.rate).min(self.burst);
        st.1 = now;
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            if self.background > 0.0 && self.draw() < self.background {
                return Outcome::Throttled {
                    retry_after: self.retry_after,
                };
            }
            Outcome::Success
        } else {
            Outcome::Throttled {
                retry_after: self.retry_after,
            }
        }
    }
}

struct SimResult {
    elapsed: f64,
    throttles: u64,
    /// n ÷ what the server lets through (its rate, less the background share).
    ideal: f64,
    /// Calls sent (first attempts and retries) per second.
    send_rate: f64,
    /// First attempts per second.
    first_rate: f64,
}

/// `n` calls by `workers` concurrent workers through the pacer (configured
/// 2/s burst 5) against a server with `fraction` of that rate left.
/// One simulated run: `n` calls by `workers` concurrent workers, each
/// retrying its call until it succeeds, through a pacer with one rule.
struct Sim {
    rule: (&'static str, f64, u32),
    api: &'static str,
    /// Server rate as a fraction of the configured rate.
    fraction: f64,
    server_burst: f64,
    retry_after: Option<Duration>,
    latency: Duration,
    workers: usize,
    n: u64,
    /// Share of calls throttled whatever the rate.
    background: f64,
}

/// Connect CreateUser (2/s burst 5) against a server with `fraction` left.
fn connect_sim(n: u64, workers: usize, fraction: f64, retry_after: Option<Duration>) -> Sim {
    Sim {
        rule: ("connect:*", 2.0, 5),
        api: "connect:CreateUser",
        fraction,
        server_burst: 5.0,
        retry_after,
        latency: Duration::from_millis(80),
        workers,
        n,
        background: 0.0,
    }
}

async fn simulate(sim: Sim) -> SimResult {
    let (key, rate, burst) = sim.rule;
    let p = Pacer::new(limits(&[(key, rate, burst)]));
    let server = Arc::new(
        Server::new(rate * sim.fraction, sim.server_burst, sim.retry_after)
            .with_background(sim.background),
    );
    let next = Arc::new(AtomicU64::new(0));
    let (n, api, latency) = (sim.n, sim.api, sim.latency);
    let t0 = Instant::now();
    let hs: Vec<_> = (0..sim.workers)
        .map(|_| {
            let (p, server, next) = (p.clone(), server.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < n {
                    let mut attempt = Attempt::First;
                    loop {
                        let permit = p.acquire(api, attempt).await;
                        tokio::time::sleep(latency / 2).await;
                        let outcome = server.call();
                        tokio::time::sleep(latency / 2).await;
                        permit.done(outcome);
                        if outcome == Outcome::Success {
                            break;
                        }
                        attempt = Attempt::Retry;
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.await.unwrap();
    }
    let s = &p.snapshot()[0];
    assert_eq!(s.succeeded, n);
    assert_eq!(s.first_attempts, n);
    assert_eq!(s.retries, s.throttled);
    let elapsed = secs(t0.elapsed());
    SimResult {
        elapsed,
        throttles: s.throttled,
        ideal: n as f64 / (server.rate * (1.0 - sim.background)),
        send_rate: (s.first_attempts + s.retries) as f64 / elapsed,
        first_rate: s.first_attempts as f64 / elapsed,
    }
}

#[tokio::test(start_paused = true)]
async fn contended_server_no_retry_storm() {
    for (workers, retry_after) in [
        (1, None),
        (10, None),
        (50, None),
        (10, Some(Duration::from_secs(1))),
    ] {
        let n = 200;
        let r = simulate(connect_sim(n, workers, 0.7, retry_after)).await;
        println!(
            "contended: workers={workers} retry_after={retry_after:?}: {n} calls in {:.1}s \
             (N/server rate = {:.1}s, ratio {:.3}), throttled {} ({:.1}%)",
            r.elapsed,
            r.ideal,
            r.elapsed / r.ideal,
            r.throttles,
            100.0 * r.throttles as f64 / n as f64
        );
        assert!(
            r.elapsed <= 1.1 * r.ideal,
            "too slow: {:.1}s vs {:.1}s",
            r.elapsed,
            r.ideal
        );
        assert!(
            r.throttles <= n / 10,
            "retry storm: {} throttles",
            r.throttles
        );
    }
}

/// Other contention levels. With the server's burst of 5 (Connect's), unused
/// capacity is banked and the pacer gets all of it back; with a burst of 1
/// the β = 0.7 sawtooth loses ~20 % of the capacity (no storm either way).
#[tokio::test(start_paused = true)]
async fn contention_sweep() {
    for fraction in [0.9, 0.5, 0.3] {
        for server_burst in [5.0, 1.0] {
            let n = 200;
            let r = simulate(Sim {
                server_burst,
                ..connect_sim(n, 10, fraction, None)
            })
            .await;
            let ratio = r.elapsed / r.ideal;
            println!(
                "sweep: server at {:.0}% burst {server_burst}: time ratio {ratio:.3}, \
                 throttled {} ({:.1}%)",
                fraction * 100.0,
                r.throttles,
                100.0 * r.throttles as f64 / n as f64
            );
            // Burst 1 (nothing banked): looser bounds, still no storm.
            let (max_ratio, max_throttles) = if server_burst >= 5.0 {
                (1.1, n / 10)
            } else {
                // Each decrease holds its rate for a probe (at least MEASURED_OUTCOMES
                // answers before another): 34 of 200 at 30 % (25 with one cut per
                // throttle, before the probes), still no storm.
                (1.3, n * 20 / 100)
            };
            assert!(
                ratio <= max_ratio,
                "f={fraction} b={server_burst}: ratio {ratio}"
            );
            assert!(
                r.throttles <= max_throttles,
                "f={fraction} b={server_burst}: {}",
                r.throttles
            );
        }
    }
}

/// The other tool stops: the server gives the full quota back and the
/// pacer climbs back to the configured rate.
#[tokio::test(start_paused = true)]
async fn contention_ends_rate_recovers() {
    let p = Pacer::new(limits(&[("connect:*", 2.0, 5)]));
    let api = "connect:CreateUser";
    let contended = Server::new(1.0, 5.0, None);
    let free = Server::new(2.0, 5.0, None);
    let t0 = Instant::now();
    let mut throttles = 0;
    let mut calls_after_switch = 0;
    let mut attempt = Attempt::First;
    while t0.elapsed() < Duration::from_secs(150) {
        let permit = p.acquire(api, attempt).await;
        let contended_phase = t0.elapsed() < Duration::from_secs(60);
        let outcome = if contended_phase {
            contended.call()
        } else {
            free.call()
        };
        if !contended_phase {
            calls_after_switch += 1;
        }
        permit.done(outcome);
        attempt = if outcome == Outcome::Success {
            Attempt::First
        } else {
            throttles += 1;
            Attempt::Retry
        };
    }
    assert_eq!(p.current_rate(api), Some(2.0));
    // 90 s at up to 2/s = 180 calls; the climb (~2·RECOVERY) costs ~10 s' worth, and a
    // probe under way when the contention ends holds the rate for up to PROBE_OUTCOMES
    // answers (~20 s at 2/s) before it (143 calls; 153 before the probes).
    assert!(calls_after_switch >= 125, "{calls_after_switch}");
    // 10 with the probes (6 before them): each cut holds its rate for a few answers.
    assert!(throttles <= 12, "{throttles}");
    println!("recovery: {calls_after_switch} calls in the 90 s after contention ended, {throttles} throttles");
}

/// identity_center (20/s) with 50 workers and 250 ms latency: ~5 calls in
/// flight, so one throttle arrives with several others (one decrease only).
#[tokio::test(start_paused = true)]
async fn contended_identity_center_many_in_flight() {
    let n = 2000;
    let r = simulate(Sim {
        rule: ("identity_center", 20.0, 20),
        api: "identitystore:CreateUser",
        fraction: 0.7,
        server_burst: 20.0,
        retry_after: None,
        latency: Duration::from_millis(250),
        workers: 50,
        n,
        background: 0.0,
    })
    .await;
    let ratio = r.elapsed / r.ideal;
    println!(
        "identity_center: {n} calls in {:.1}s (N/server rate = {:.1}s, ratio {ratio:.3}), \
         throttled {} ({:.1}%)",
        r.elapsed,
        r.ideal,
        r.throttles,
        100.0 * r.throttles as f64 / n as f64
    );
    assert!(ratio <= 1.1, "ratio {ratio}");
    assert!(r.throttles <= n / 10, "{}", r.throttles);
}

/// Item 21 (a): 30 % of the calls throttled whatever our rate (the storm of the reliability
/// tests and of the `storm` bench): the pacer keeps sending at ~the configured rate, so first
/// attempts get ~what the throttles leave of it (they used to hold the rate near its floor).
#[tokio::test(start_paused = true)]
async fn background_throttles_keep_the_configured_rate() {
    for (rule, api, latency, workers, n) in [
        (("connect:*", 2.0, 5), "connect:CreateUser", 80, 20, 400),
        (
            ("identity_center", 20.0, 20),
            "identitystore:CreateUser",
            15,
            64,
            3000,
        ),
    ] {
        let r = simulate(Sim {
            rule,
            api,
            fraction: 10.0,
            server_burst: 100.0,
            retry_after: Some(Duration::from_secs(1)),
            latency: Duration::from_millis(latency),
            workers,
            n,
            background: 0.3,
        })
        .await;
        let configured = rule.1;
        println!(
            "background 30 %: {api}: {n} calls in {:.1}s, sent {:.2}/s and first attempts              {:.2}/s of {configured}/s configured, throttled {} ({:.1}% of calls sent)",
            r.elapsed,
            r.send_rate,
            r.first_rate,
            r.throttles,
            100.0 * r.throttles as f64 / (n + r.throttles) as f64
        );
        assert!(
            r.send_rate >= 0.9 * configured,
            "{api}: sent {:.2}/s of {configured}/s",
            r.send_rate
        );
        // Retries take tokens too: first attempts can have at most 70 % of the rate.
        assert!(
            r.first_rate >= 0.85 * 0.7 * configured,
            "{api}: first attempts {:.2}/s of {configured}/s",
            r.first_rate
        );
    }
}

/// Item 21 (b): throttles that follow our rate (a server bucket at 50 % of the configured
/// rate) still bring the rate down to the server's, under a 30 % background share too.
#[tokio::test(start_paused = true)]
async fn throttles_that_follow_our_rate_bring_it_to_the_servers_under_background_ones() {
    for background in [0.0, 0.3] {
        let n = 600;
        let r = simulate(Sim {
            background,
            ..connect_sim(n, 20, 0.5, None)
        })
        .await;
        let server = 2.0 * 0.5;
        println!(
            "server at 50 %, background {:.0} %: {n} calls in {:.1}s (ideal {:.1}s, ratio              {:.3}), sent {:.2}/s against the server's {server}/s, throttled {}",
            background * 100.0,
            r.elapsed,
            r.ideal,
            r.elapsed / r.ideal,
            r.send_rate,
            r.throttles
        );
        assert!(r.elapsed <= 1.1 * r.ideal, "ratio {}", r.elapsed / r.ideal);
        // Over a background share the two kinds of throttles are told apart less surely
        // (the probes are noisier): the rate comes down, not always all the way.
        let max_send = if background > 0.0 { 1.6 } else { 1.15 };
        assert!(
            r.send_rate <= max_send * server,
            "sent {:.2}/s against a server at {server}/s",
            r.send_rate
        );
    }
}

#[tokio::test(start_paused = true)]
async fn uncontended_server_sees_no_throttles() {
    let r = simulate(connect_sim(200, 20, 1.0, None)).await;
    assert_eq!(r.throttles, 0);
    // (200 - 5)/2 s plus one latency.
    assert!(r.elapsed <= 1.02 * 200.0 / 2.0, "{}", r.elapsed);
}

#[tokio::test]
async fn the_attempt_class_follows_the_scope() {
    assert_eq!(current_attempt(), Attempt::First, "outside any scope");
    assert_eq!(
        with_attempt(1, async { current_attempt() }).await,
        Attempt::First
    );
    assert_eq!(
        with_attempt(3, async { current_attempt() }).await,
        Attempt::Retry
    );
}

#[test]
fn headroom_keeps_one_token_of_each_burst_and_a_hundredth_of_each_rate() {
    let limits = RateLimits::default().with_headroom();
    let create = limits.resolve("connect:CreateUser").unwrap().limit;
    assert_eq!(create.burst, 4);
    assert!((create.rate - 1.98).abs() < 1e-9);
    let mut one = RateLimits::none();
    one.insert(
        "connect:X",
        RateLimit {
            rate: 1.0,
            burst: 1,
        },
    )
    .unwrap();
    assert_eq!(
        one.with_headroom().get("connect:X").unwrap().burst,
        1,
        "never 0"
    );
}
