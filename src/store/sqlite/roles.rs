//! Role leases in the state file (`roles`: one row per role, its holder and expiry): taken,
//! renewed and given up in one `IMMEDIATE` transaction each, so two processes sharing the
//! file never both lead.

use rusqlite::{params, OptionalExtension};

use super::checkpoint::exec;
use super::Store;
use crate::store::run_store::{may_take, Leadership};
use crate::store::{now_ms, Result};

impl Store {
    /// Takes or renews `role` for `holder` for `ttl_ms` (see `RunStore::lead`).
    pub fn lead(&self, role: &str, holder: &str, ttl_ms: i64) -> Result<Leadership> {
        self.with_tx(|tx| {
            let cur: Option<(String, i64)> = tx
                .query_row(
                    "SELECT holder, expires_ms FROM roles WHERE role = ?1",
                    params![role],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let now = now_ms();
            if !may_take(cur.as_ref().map(|(h, x)| (h.as_str(), *x)), holder, now) {
                let (holder, until_ms) = cur.unwrap_or_default();
                return Ok(Leadership::Standby { holder, until_ms });
            }
            let until_ms = now + ttl_ms;
            exec(
                tx,
                "INSERT INTO roles (role, holder, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms",
                params![role, holder, until_ms],
            )?;
            Ok(Leadership::Lead { until_ms })
        })
    }

    /// Gives `role` up if `holder` holds it (see `RunStore::resign`).
    pub fn resign(&self, role: &str, holder: &str) -> Result<()> {
        self.with_tx(|tx| {
            exec(
                tx,
                "DELETE FROM roles WHERE role = ?1 AND holder = ?2",
                params![role, holder],
            )?;
            Ok(())
        })
    }
}
