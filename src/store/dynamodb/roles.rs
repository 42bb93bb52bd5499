//! Role leases in the table (`RunStore::lead`): one item per role, `pk` = `#ROLE`, `sk` =
//! the role, with `role_holder` and `role_until` (expiry, epoch ms). Taken or renewed by one
//! conditional `UpdateItem` (`attribute_not_exists(role_holder) OR role_holder = :me OR
//! role_until <= :now`); when the condition fails, one consistent read reports the live
//! holder (or, if that holder is a process known to be dead on this host, a second
//! conditional write on its name takes the lease over). Given up by a conditional
//! `REMOVE` of the holder. The item has none of the attributes the indexes key on
//! (`a_key`, `a_seq`, `g_runs`), and its `pk` is no run's, so no listing (runs, a run's
//! agents, an agent's runs, `state copy`) ever sees it.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{get_n, get_s, is_condition_failed, n, s, DynamoStore};
use crate::store::run_store::{holder_is_dead, may_take, Leadership};
use crate::store::{now_ms, Result};

/// The role items' partition key.
const ROLE_PK: &str = "#ROLE";
/// Lost races (the item changed between the write and the read) retried before reporting.
const RACES: usize = 5;

impl DynamoStore {
    /// Sets `role`'s holder to `holder` until `until` under `condition`: false when the
    /// condition failed.
    async fn set_role(
        &self,
        role: &str,
        holder: &str,
        until: i64,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<bool> {
        let mut u = (self.client.update_item())
            .table_name(&self.table)
            .key("pk", s(ROLE_PK))
            .key("sk", s(role))
            .update_expression("SET role_holder = :me, role_until = :until")
            .condition_expression(condition)
            .expression_attribute_values(":me", s(holder))
            .expression_attribute_values(":until", n(until));
        for (k, v) in values {
            u = u.expression_attribute_values(*k, v.clone());
        }
        match u.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.remote("UpdateItem role", e)),
        }
    }

    /// `role`'s holder and expiry, read consistently, if anyone holds it.
    async fn role_holder(&self, role: &str) -> Result<Option<(String, i64)>> {
        let got = (self.client.get_item())
            .table_name(&self.table)
            .key("pk", s(ROLE_PK))
            .key("sk", s(role))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.remote("GetItem role", e))?;
        Ok(got.item().and_then(|it| {
            let holder = get_s(it, "role_holder")?.to_string();
            Some((holder, get_n(it, "role_until").unwrap_or_default()))
        }))
    }

    /// Takes or renews `role` for `holder` for `ttl_ms` (see `RunStore::lead`).
    pub(super) async fn lead_role(
        &self,
        role: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Leadership> {
        let free = "attribute_not_exists(role_holder) OR role_holder = :me OR role_until <= :now";
        let mut seen = None;
        for _ in 0..RACES {
            let now = now_ms();
            let until_ms = now + ttl_ms;
            if (self.set_role(role, holder, until_ms, free, &[(":now", n(now))])).await? {
                return Ok(Leadership::Lead { until_ms });
            }
            let Some((cur, until)) = self.role_holder(role).await? else {
                continue; // given up in between: try again
            };
            if may_take(Some((&cur, until)), holder, now_ms()) {
                if !holder_is_dead(&cur) {
                    continue; // expired in between: try again
                }
                // Its holder is dead: take it over, unless it changed hands meanwhile.
                let until_ms = now_ms() + ttl_ms;
                let swap = "role_holder = :old AND role_until = :old_until";
                let old = [(":old", s(&cur)), (":old_until", n(until))];
                if self.set_role(role, holder, until_ms, swap, &old).await? {
                    return Ok(Leadership::Lead { until_ms });
                }
                continue;
            }
            seen = Some((cur, until));
            break;
        }
        // Still changing hands after `RACES` tries: report the last holder seen.
        let (holder, until_ms) = match seen {
            Some(h) => h,
            None => self.role_holder(role).await?.unwrap_or_default(),
        };
        Ok(Leadership::Standby { holder, until_ms })
    }

    /// Gives `role` up if `holder` holds it (see `RunStore::resign`).
    pub(super) async fn resign_role(&self, role: &str, holder: &str) -> Result<()> {
        let out = (self.client.update_item())
            .table_name(&self.table)
            .key("pk", s(ROLE_PK))
            .key("sk", s(role))
            .update_expression("REMOVE role_holder, role_until")
            .condition_expression("role_holder = :me")
            .expression_attribute_values(":me", s(holder))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.remote("UpdateItem role", e)),
        }
    }
}
