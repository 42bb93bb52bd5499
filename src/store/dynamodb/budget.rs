//! The shared rate budget in the table: one item per quota bucket (`pk` = `#BUDGET`, `sk` =
//! the bucket), holding its tokens (`t`, in thousandths), when they were counted (`at`,
//! epoch ms) and a version (`v`). A draw reads the item (strongly consistent), refills it
//! for the time since (`rate` per second, up to `burst`), takes up to what was asked and
//! writes it back on the condition that the version is still the one read; a draw that
//! lost the race reads again. So however many processes draw, the tokens granted never
//! exceed the burst plus the rate times the time elapsed. Clocks: a machine whose clock is
//! behind the item's never counts negative time (it refills nothing).
//!
//! Each process remembers the item as it last wrote it: its next draw starts from that copy
//! and is one conditional write (its first, from a full bucket on the condition that there
//! is no item). When another process wrote in between, the refused write returns the item
//! as it is now (`ReturnValuesOnConditionCheckFailure`), the next try starts from that, and
//! the item is read only when the refusal does not carry it. A process drawing alone
//! costs one request per draw; a lost race, one more write. A copy that holds less than a
//! token (others' draws since only lower it) answers "empty" without a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;

use super::{get_n, is_condition_failed, n, s, DynamoStore, Item};
use crate::store::run_store::RateBudget;
use crate::store::{Error, Result};

/// Draws that lost the race to another process, retried before giving up for now.
const RACES: usize = 20;

/// The budget items of one table.
pub(super) struct Budget {
    client: Client,
    table: String,
    url: String,
    /// Each bucket's item as this process last wrote it: (tokens, counted at, version).
    last: Mutex<HashMap<String, (i64, i64, i64)>>,
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Tokens after refilling `t` (thousandths) counted at `at` until `now`.
fn refilled(t: i64, at: i64, now: i64, rate: f64, burst: f64) -> i64 {
    let elapsed = (now - at).max(0) as f64 / 1000.0;
    let cap = (burst * 1000.0) as i64;
    (t + (elapsed * rate * 1000.0) as i64).min(cap)
}

impl Budget {
    fn remote(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Remote {
            url: self.url.clone(),
            problem: format!("{what}: {e}"),
        }
    }

    fn key(bucket: &str) -> Item {
        Item::from([
            ("pk".to_string(), s("#BUDGET")),
            ("sk".to_string(), s(bucket)),
        ])
    }

    /// The bucket's item as this process last wrote it.
    fn remembered(&self, bucket: &str) -> Option<(i64, i64, i64)> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(bucket).copied()
    }

    fn remember(&self, bucket: &str, item: Option<(i64, i64, i64)>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match item {
            Some(it) => last.insert(bucket.to_string(), it),
            None => last.remove(bucket),
        };
    }

    /// The bucket's item read from the table: (tokens, counted at, version).
    async fn read(&self, bucket: &str, burst: f64, now: i64) -> Result<(i64, i64, Option<i64>)> {
        let got = (self.client.get_item())
            .table_name(&self.table)
            .set_key(Some(Self::key(bucket)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                self.remote(
                    "GetItem budget",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                )
            })?;
        Ok(match got.item() {
            Some(it) => (
                get_n(it, "t").unwrap_or(0),
                get_n(it, "at").unwrap_or(now),
                get_n(it, "v"),
            ),
            // A bucket nobody drew from yet is full.
            None => ((burst * 1000.0) as i64, now, None),
        })
    }

    /// One attempt: `Some(granted)`, or `None` when another process wrote in between.
    /// Knowing nothing of the item, a `blind` attempt writes as if nobody had drawn yet
    /// (a full bucket, on the condition that there is no item): when there is one, the
    /// refusal returns it, so a process's first draw costs no read.
    async fn try_draw(
        &self,
        bucket: &str,
        want: u32,
        rate: f64,
        burst: f64,
        blind: bool,
    ) -> Result<Option<u32>> {
        let now = now_ms();
        let (t, at, v) = match self.remembered(bucket) {
            Some((t, at, v)) => (t, at, Some(v)),
            None if blind => ((burst * 1000.0) as i64, now, None),
            None => self.read(bucket, burst, now).await?,
        };
        let have = refilled(t, at, now, rate, burst);
        if v.is_some() && have < 1000 {
            // Less than a token even by this copy, and other processes' draws since it was
            // taken only lower the count: empty for now, known without a write. (A machine
            // whose clock runs ahead may have refilled the item further: then this only
            // waits a little longer, never takes more.)
            return Ok(Some(0));
        }
        let granted = (have / 1000).clamp(0, i64::from(want));
        let mut item = Self::key(bucket);
        item.insert("t".into(), n(have - granted * 1000));
        item.insert("at".into(), n(now.max(at)));
        item.insert("v".into(), n(v.unwrap_or(0) + 1));
        let put = (self.client.put_item())
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            );
        let put = match v {
            Some(v) => put
                .condition_expression("v = :v")
                .expression_attribute_values(":v", n(v)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        let written = (have - granted * 1000, now.max(at), v.unwrap_or(0) + 1);
        match put.send().await {
            Ok(_) => {
                self.remember(bucket, Some(written));
                Ok(Some(granted as u32))
            }
            Err(e) if e.as_service_error().is_some_and(is_condition_failed) => {
                // Another process drew meanwhile: the refusal carries the item as it is now
                // (ReturnValuesOnConditionCheckFailure), else it is read next time.
                use aws_sdk_dynamodb::operation::put_item::PutItemError;
                let now_is = match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => c.item(),
                    _ => None,
                };
                let current = now_is
                    .and_then(|it| Some((get_n(it, "t")?, get_n(it, "at")?, get_n(it, "v")?)));
                self.remember(bucket, current);
                Ok(None)
            }
            Err(e) => {
                // It may have landed: read the item next time.
                self.remember(bucket, None);
                Err(self.remote(
                    "PutItem budget",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                ))
            }
        }
    }
}

#[async_trait::async_trait]
impl RateBudget for Budget {
    async fn draw(&self, bucket: &str, want: u32, rate: f64, burst: f64) -> Result<u32> {
        for race in 0..RACES {
            let blind = race == 0;
            if let Some(granted) = self.try_draw(bucket, want, rate, burst, blind).await? {
                return Ok(granted);
            }
        }
        // Many processes at once: none for this one now (the caller waits and draws again).
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::refilled;

    #[test]
    fn tokens_refill_at_the_rate_up_to_the_burst_and_never_for_a_clock_behind() {
        assert_eq!(
            refilled(0, 1_000, 1_500, 20.0, 5.0),
            5_000,
            "0.5 s at 20/s, capped at 5"
        );
        assert_eq!(refilled(0, 1_000, 1_100, 20.0, 5.0), 2_000, "0.1 s at 20/s");
        assert_eq!(
            refilled(1_500, 2_000, 1_000, 20.0, 5.0),
            1_500,
            "a clock behind refills nothing"
        );
    }
}
