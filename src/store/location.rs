//! Where the state lives, and the one place that picks a backend for it: a plain path is
//! the SQLite state file, `dynamodb://TABLE[?region=R]` a DynamoDB table shared by every
//! machine that names it. `open`, `has_state` and `init` answer for either, so nothing
//! outside `store/` knows which backend is in use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::dynamodb::DynamoStore;
use super::{Error, Result, RunStore, Store};

/// Where the state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The SQLite state file.
    File(PathBuf),
    /// A DynamoDB table (`dynamodb://TABLE[?region=R]`).
    Table {
        /// Table name.
        table: String,
        /// Region (else the AWS chain's).
        region: Option<String>,
    },
}

const SCHEME: &str = "dynamodb://";

impl Location {
    /// Parses `--state` / `[state] url`: `dynamodb://TABLE[?region=R]`, else a file path.
    /// A malformed `dynamodb://` URL is an error saying what is wrong.
    pub fn parse(s: &str) -> std::result::Result<Location, String> {
        let Some(rest) = s.strip_prefix(SCHEME) else {
            if s.contains("://") {
                return Err(format!(
                    "{s:?}: the only state URL is dynamodb://TABLE[?region=R] (else a file path)"
                ));
            }
            return Ok(Location::File(PathBuf::from(s)));
        };
        let (table, query) = match rest.split_once('?') {
            Some((t, q)) => (t, Some(q)),
            None => (rest, None),
        };
        // DynamoDB's rule for table names: 3 to 255 of [A-Za-z0-9_.-].
        let valid = (3..=255).contains(&table.len())
            && (table.chars()).all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(format!(
                "{s:?}: the table name must be 3 to 255 letters, digits, '_', '-' or '.'"
            ));
        }
        let mut region = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("region", r)) if !r.is_empty() => region = Some(r.to_string()),
                _ => {
                    return Err(format!(
                        "{s:?}: unknown parameter {pair:?} (the only one is region=R)"
                    ))
                }
            }
        }
        Ok(Location::Table {
            table: table.to_string(),
            region,
        })
    }

    /// Whether this is a shared (networked) store.
    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Table { .. })
    }
}

/// The IAM permissions a shared store needs, scoped to it: the actions and the resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// IAM actions.
    pub actions: Vec<&'static str>,
    /// Resource ARNs (the table and its indexes).
    pub resources: Vec<String>,
}

impl Location {
    /// The permissions commands need on this store (`iam-policy`): none for a state file;
    /// for a table, its item reads and conditional writes on the table and its indexes,
    /// in `region` when the URL names none (`*` when unknown); `write` false for the
    /// read-only commands. The account is `*` (the URL does not say it).
    pub fn permissions(
        &self,
        partition: &str,
        region: Option<&str>,
        write: bool,
    ) -> Option<Permissions> {
        let Location::Table { table, region: own } = self else {
            return None;
        };
        let region = own.as_deref().or(region).unwrap_or("*");
        let arn = format!("arn:{partition}:dynamodb:{region}:*:table/{table}");
        let mut actions = vec!["dynamodb:GetItem", "dynamodb:Query"];
        if write {
            actions.extend([
                // A batch lists the keys of the `by_key` index instead of one Query per row.
                "dynamodb:Scan",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
            ]);
        }
        Some(Permissions {
            actions,
            resources: vec![arn.clone(), format!("{arn}/index/*")],
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Table {
                table,
                region: None,
            } => write!(f, "{SCHEME}{table}"),
            Location::Table {
                table,
                region: Some(r),
            } => write!(f, "{SCHEME}{table}?region={r}"),
        }
    }
}

/// How a networked store is reached: the AWS profile (else the standard chain) and the
/// per-attempt timeout of its calls.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// AWS profile for the store's own client.
    pub profile: Option<String>,
    /// Region when the URL names none (else the chain's).
    pub region: Option<String>,
    /// Per-attempt timeout.
    pub attempt_timeout: Duration,
}

/// Opens the store at `loc`: the state file (created if needed), or the table (which must
/// exist: `init` creates it). Failures that mean nothing can be read or written (a file
/// that does not open, a missing or denied table) are [`Error::is_open_failure`].
pub async fn open(loc: &Location, access: &Access) -> Result<Arc<dyn RunStore>> {
    match loc {
        Location::File(p) => Ok(Arc::new(Store::open(p)?)),
        Location::Table { table, region } => Ok(Arc::new(
            DynamoStore::open(table, region.as_deref(), access).await?,
        )),
    }
}

/// Opens the store at `loc` for commands on existing runs: a state file that does not
/// exist is [`Error::NoState`] (never created by a read); a table as [`open`].
pub async fn open_existing(loc: &Location, access: &Access) -> Result<Arc<dyn RunStore>> {
    if let Location::File(p) = loc {
        if !p.exists() {
            return Err(Error::NoState(p.display().to_string()));
        }
    }
    open(loc, access).await
}

/// Whether there is a store at `loc` that may hold runs: the state file exists (a state
/// file is created by the first run), or — a table being created only by `init` — the
/// table opens: a missing, denied or unreachable table is an error naming the problem.
pub async fn has_state(loc: &Location, access: &Access) -> Result<bool> {
    match loc {
        Location::File(p) => Ok(p.exists()),
        Location::Table { table, region } => {
            DynamoStore::open(table, region.as_deref(), access).await?;
            Ok(true)
        }
    }
}

/// What `init` did to a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initialised {
    /// It was created.
    Created,
    /// It was there already (nothing changed).
    Existed,
}

/// Creates the store at `loc` if it is not there (idempotent): the table with its key
/// schema and indexes (on-demand capacity), or the state file.
pub async fn init(loc: &Location, access: &Access) -> Result<Initialised> {
    match loc {
        Location::File(p) => {
            let existed = p.exists();
            Store::open(p)?;
            Ok(if existed {
                Initialised::Existed
            } else {
                Initialised::Created
            })
        }
        Location::Table { table, region } => {
            DynamoStore::create_table(table, region.as_deref(), access).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_url_names_a_table_and_a_path_stays_a_file() {
        assert_eq!(
            Location::parse("dynamodb://team-state?region=eu-west-1").unwrap(),
            Location::Table {
                table: "team-state".into(),
                region: Some("eu-west-1".into())
            }
        );
        assert_eq!(
            Location::parse("dynamodb://t_1").unwrap().to_string(),
            "dynamodb://t_1"
        );
        assert_eq!(
            Location::parse(".connect-onboard/state.db").unwrap(),
            Location::File(".connect-onboard/state.db".into())
        );
        for bad in [
            "dynamodb://",
            "dynamodb://a",
            "dynamodb://bad/name",
            "dynamodb://tbl?zone=1",
            "dynamodb://tbl?region=",
            "s3://bucket/key",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
