//! The shared rate budget in the table: one item per quota bucket (`pk` = `#BUDGET`, `sk` =
//! the bucket) holding one number, `e`: the time (epoch µs) at which the bucket was, or will
//! be, empty (the generic cell rate algorithm's form of a token bucket). At `now` the bucket
//! holds `min(burst, (now - e) / T)` whole tokens, `T` = 1 s / rate. A draw of `k` tokens is
//! one conditional `UpdateItem`:
//! - the bucket is not full: `SET e = e + k·T` on the condition
//!   `e BETWEEN now - burst·T AND now - k·T` (not full, and at least `k` tokens);
//! - it is full: `SET e = now - (burst - k)·T` on the condition
//!   `attribute_not_exists(e) OR e < now - burst·T` (no `e`: an item an older build
//!   rewrote in its own form).
//!
//! Draws by different processes commute (each adds its `k·T` to whatever `e` is), so a
//! process does not lose a race because another drew since it last looked, and `e` only
//! moves forward: however many processes draw, the tokens granted never exceed the burst
//! plus the rate times the time elapsed. A process picks the case and the count from its
//! copy of `e` (what its last write or refusal returned; at first, what `SET e =
//! if_not_exists(e, a full bucket)` returned: the item is created apart from any draw,
//! granting nothing, so two first writes racing on a missing item cannot both grant a
//! burst — moto does not serialise them as DynamoDB does); a refusal returns
//! the item (`ReturnValuesOnConditionCheckFailure`) and the next try starts from it. A copy
//! that shows less than a token answers "empty" without a request (others' draws only
//! move `e` forward). Clocks: each machine reads `now` on its own clock; one that runs
//! ahead sees tokens as much earlier, one behind later (keep them in sync, NTP).
//! (Items written by the earlier format — `t`, `at`, `v` — have no `e` and count as full.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::{get_n, is_condition_failed, n, s, DynamoStore, Item};
use crate::store::run_store::RateBudget;
use crate::store::{Error, Result};

/// Draws refused (the copy of `e` was out of date), retried before giving up for now.
const RACES: usize = 20;

/// The budget items of one table.
pub(super) struct Budget {
    client: Client,
    table: String,
    url: String,
    /// Each bucket's `e` as this process last saw it (after its write, or in a refusal).
    last: Mutex<HashMap<String, i64>>,
}

impl DynamoStore {
    /// The table's rate budget.
    pub(super) fn budget(&self) -> Arc<dyn RateBudget> {
        Arc::new(Budget {
            client: self.client.clone(),
            table: self.table.clone(),
            url: self.url.clone(),
            last: Mutex::new(HashMap::new()),
        })
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A bucket refilled at `rate` tokens/s up to `burst`, in whole microseconds and tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    /// Microseconds per token (rounded up: never faster than the rate).
    interval: i64,
    /// Whole tokens it holds when full (at least one).
    cap: i64,
}

impl Shape {
    fn new(rate: f64, burst: f64) -> Shape {
        Shape {
            interval: (1e6 / rate.max(1e-3)).ceil().max(1.0) as i64,
            cap: (burst.floor() as i64).max(1),
        }
    }

    /// The bucket was full before this time (at `now`).
    fn full_before(&self, now: i64) -> i64 {
        now - self.cap * self.interval
    }

    /// Whole tokens at `now` in a bucket empty at `e`.
    fn tokens(&self, e: i64, now: i64) -> i64 {
        ((now - e).max(0) / self.interval).min(self.cap)
    }
}

/// One attempt's write.
#[derive(Debug, PartialEq)]
struct Attempt {
    /// The tokens it takes.
    take: i64,
    update: &'static str,
    condition: &'static str,
    /// The expression's values.
    values: Vec<(&'static str, i64)>,
}

/// The write that takes up to `want` tokens by this process's copy `e` at `now`; `None`
/// when the copy shows less than a token.
fn attempt(shape: Shape, e: i64, want: u32, now: i64) -> Option<Attempt> {
    let full = shape.full_before(now);
    if e < full {
        // Full: reset `e` to leave `cap - k` tokens.
        let k = i64::from(want).min(shape.cap);
        return Some(Attempt {
            take: k,
            update: "SET e = :e",
            condition: "attribute_not_exists(e) OR e < :full",
            values: vec![(":e", full + k * shape.interval), (":full", full)],
        });
    }
    let k = shape.tokens(e, now).min(i64::from(want));
    if k < 1 {
        return None;
    }
    Some(Attempt {
        take: k,
        update: "SET e = e + :k",
        condition: "e BETWEEN :full AND :limit",
        values: vec![
            (":k", k * shape.interval),
            (":full", full),
            (":limit", now - k * shape.interval),
        ],
    })
}

impl Budget {
    fn remote(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Remote {
            url: self.url.clone(),
            problem: format!("{what}: {e}"),
        }
    }

    /// The bucket's `e` as this process last saw it.
    fn remembered(&self, bucket: &str) -> Option<i64> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(bucket).copied()
    }

    fn remember(&self, bucket: &str, e: Option<i64>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Some(e) => last.insert(bucket.to_string(), e),
            None => last.remove(bucket),
        };
    }

    /// The bucket's `e`, creating the item as a full bucket (granting nothing) when there
    /// is none. Creating it by a draw's own write would rely on two first writes to a
    /// missing item being serialised, which DynamoDB does and moto does not.
    async fn open(&self, bucket: &str, shape: Shape) -> Result<i64> {
        let out = (self.client.update_item())
            .table_name(&self.table)
            .set_key(Some(Self::key(bucket)))
            .update_expression("SET e = if_not_exists(e, :full)")
            .expression_attribute_values(":full", n(shape.full_before(now_us())))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| {
                self.remote(
                    "UpdateItem budget",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                )
            })?;
        (out.attributes().and_then(|a| get_n(a, "e")))
            .ok_or_else(|| self.remote("UpdateItem budget", "no `e` in the answer"))
    }

    fn key(bucket: &str) -> Item {
        Item::from([
            ("pk".to_string(), s("#BUDGET")),
            ("sk".to_string(), s(bucket)),
        ])
    }

    /// One attempt: `Some(granted)` (0: empty, by this process's copy), or `None` when
    /// the copy was out of date (the refusal brought the item as it is now).
    async fn try_draw(&self, bucket: &str, want: u32, shape: Shape) -> Result<Option<u32>> {
        let e = match self.remembered(bucket) {
            Some(e) => e,
            None => {
                let e = self.open(bucket, shape).await?;
                self.remember(bucket, Some(e));
                e
            }
        };
        let Some(Attempt {
            take,
            update,
            condition,
            values,
        }) = attempt(shape, e, want, now_us())
        else {
            return Ok(Some(0));
        };
        let mut u = (self.client.update_item())
            .table_name(&self.table)
            .set_key(Some(Self::key(bucket)))
            .update_expression(update)
            .condition_expression(condition)
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, v) in values {
            u = u.expression_attribute_values(name, n(v));
        }
        match u.send().await {
            Ok(out) => {
                self.remember(bucket, out.attributes().and_then(|a| get_n(a, "e")));
                Ok(Some(take as u32))
            }
            Err(e) if e.as_service_error().is_some_and(is_condition_failed) => {
                use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
                let now_is = match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item(),
                    _ => None,
                };
                self.remember(bucket, now_is.and_then(|it| get_n(it, "e")));
                Ok(None)
            }
            Err(e) => {
                // It may have landed: the next draw reads `e` again (`open`).
                self.remember(bucket, None);
                Err(self.remote(
                    "UpdateItem budget",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                ))
            }
        }
    }
}

#[async_trait::async_trait]
impl RateBudget for Budget {
    async fn draw(&self, bucket: &str, want: u32, rate: f64, burst: f64) -> Result<u32> {
        let shape = Shape::new(rate, burst);
        for _ in 0..RACES {
            if let Some(granted) = self.try_draw(bucket, want, shape).await? {
                return Ok(granted);
            }
        }
        // Many processes at once: none for this one now (the caller waits and draws again).
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::{attempt, Attempt, Shape};

    #[test]
    fn a_bucket_holds_the_time_since_it_was_empty_in_tokens_up_to_its_burst() {
        let b = Shape::new(20.0, 5.0);
        assert_eq!(
            b,
            Shape {
                interval: 50_000,
                cap: 5
            }
        );
        assert_eq!(b.tokens(1_000_000, 1_100_000), 2, "0.1 s at 20/s");
        assert_eq!(b.tokens(0, 1_000_000), 5, "capped at the burst");
        assert_eq!(b.tokens(2_000_000, 1_000_000), 0, "empty until e");
        assert_eq!(
            Shape::new(19.8, 4.0).interval,
            50_506,
            "rounded up: never faster"
        );
        assert_eq!(Shape::new(20.0, 0.5).cap, 1, "at least one token");
    }

    #[test]
    fn a_draw_adds_to_e_when_the_bucket_is_not_full_and_resets_it_when_it_is() {
        let b = Shape::new(20.0, 5.0);
        let now = 10_000_000;
        // Not full: 3 tokens (e 0.15 s ago); asks 2, takes 2 by adding 0.1 s to e.
        assert_eq!(
            attempt(b, now - 150_000, 2, now),
            Some(Attempt {
                take: 2,
                update: "SET e = e + :k",
                condition: "e BETWEEN :full AND :limit",
                values: vec![
                    (":k", 100_000),
                    (":full", now - 250_000),
                    (":limit", now - 100_000)
                ],
            })
        );
        // One token: asks 2, takes 1.
        assert_eq!(attempt(b, now - 60_000, 2, now).unwrap().take, 1);
        // Less than a token: empty, no write.
        assert!(attempt(b, now - 40_000, 2, now).is_none());
        assert!(attempt(b, now + 500_000, 2, now).is_none());
        // Full (e long past, or at the epoch): e set to leave burst - k tokens.
        for copy in [now - 900_000, 0] {
            assert_eq!(
                attempt(b, copy, 2, now),
                Some(Attempt {
                    take: 2,
                    update: "SET e = :e",
                    condition: "attribute_not_exists(e) OR e < :full",
                    values: vec![(":e", now - 150_000), (":full", now - 250_000)],
                })
            );
            assert_eq!(b.tokens(now - 150_000, now), 3, "5 - 2 left");
        }
    }
}
