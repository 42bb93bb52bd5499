//! The state file's schema: append-only migrations keyed by `PRAGMA user_version` (cargo's
//! pattern). Entries are never edited or removed, so old state files can always be resumed;
//! a file from a newer build is refused before anything is read or written.

use rusqlite::{Connection, TransactionBehavior};

use super::{Error, Result};

/// Schema migrations, applied in order. Never edit or remove an entry; append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        workflow_name TEXT NOT NULL,
        workflow TEXT NOT NULL,
        meta TEXT NOT NULL
     );
     CREATE TABLE agents (
        run_id TEXT NOT NULL REFERENCES runs(id),
        agent_key TEXT NOT NULL,
        subject TEXT NOT NULL,
        state TEXT NOT NULL,
        on_failure TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        lease_token TEXT,
        lease_holder TEXT,
        lease_expires_ms INTEGER,
        PRIMARY KEY (run_id, agent_key)
     );
     CREATE INDEX agents_by_key ON agents(agent_key);
     CREATE TABLE steps (
        run_id TEXT NOT NULL,
        agent_key TEXT NOT NULL,
        step_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        owned INTEGER NOT NULL DEFAULT 0,
        unresolved INTEGER NOT NULL DEFAULT 0,
        outputs TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        first_write_ms INTEGER,
        last_error TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (run_id, agent_key, step_id),
        FOREIGN KEY (run_id, agent_key) REFERENCES agents(run_id, agent_key)
     );
     CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        run_id TEXT NOT NULL,
        agent_key TEXT NOT NULL,
        step_id TEXT,
        kind TEXT NOT NULL,
        detail TEXT
     );",
    // 2: the settle window runs from the latest write, not the first one
    "ALTER TABLE steps ADD COLUMN last_write_ms INTEGER;",
    // 3: role leases (`RunStore::lead`): one row per role, e.g. `sync-watch`
    "CREATE TABLE roles (
        role TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
     );",
];

/// Refuses a file from a newer build before anything (even its journal mode) is changed.
pub(super) fn check_not_newer(conn: &Connection) -> Result<()> {
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(Error::TooNew {
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(Error::TooNew {
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for m in &MIGRATIONS[version..] {
        tx.execute_batch(m)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    tx.commit()?;
    Ok(())
}
