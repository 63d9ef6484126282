//! Comparison of a shard's nodes (`pgproxy verify`): the same tables and sequences on every node,
//! and per table the same row count and row checksum.
//!
//! The checksum sums two 64-bit halves of each row's md5 (of its text form), so it depends
//! neither on physical row order nor on memory proportional to the table. Output-affecting
//! settings are pinned first so nodes configured differently (TimeZone, DateStyle, …) still
//! compare equal. Nodes are read one after the other without a shared snapshot: compare a quiet
//! shard, or expect tables written meanwhile to differ. Must not: accept clients.

use super::resolve::{can_log_in, connect_params, tls_connector};
use crate::backend::{BackendError, ServerConn};
use crate::config::{Config, Shard};
use crate::net::TlsError;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use tokio::task::JoinSet;

/// Settings that change the text form of values.
const PIN_SETTINGS: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

/// User tables (plain and partitioned) and sequences, schema-qualified and quoted, sorted.
const LIST_SQL: &str = "SELECT format('%I.%I', n.nspname, c.relname), c.relkind = 'S' \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'S') \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' ORDER BY 1";

/// Why a shard could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `--shard` names no configured shard.
    #[error("no shard named {0:?} in the configuration")]
    UnknownShard(String),
    /// `--database` names a database the configuration does not list.
    #[error("no database named {0:?} in the configuration")]
    UnknownDatabase(String),
    /// No database to compare.
    #[error("no [[databases]] configured: pass --database")]
    NoDatabase,
    /// No user pgproxy can log in to the nodes as.
    #[error("no user with a plaintext server password (or trust) to log in to the nodes")]
    NoUser,
    /// The TLS settings towards the nodes are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A node could not be reached or refused the login.
    #[error("shard {shard}, database {database}: {source}")]
    Connect {
        /// Shard name.
        shard: String,
        /// Server database.
        database: String,
        /// The connection failure.
        source: BackendError,
    },
}

/// A compared object's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A plain or partitioned table.
    Table,
    /// A sequence.
    Sequence,
}

/// One table or sequence across a shard's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectReport {
    /// Server database.
    pub database: String,
    /// `schema.name`, quoted where needed.
    pub name: String,
    /// Table or sequence.
    pub kind: ObjectKind,
    /// Per node, in config order: `None` if missing there, else its fingerprint (`count=… sum=…`
    /// or `last_value=…`) or the error reading it.
    pub per_node: Vec<Option<Result<String, String>>>,
}

impl ObjectReport {
    /// True when present and read on every node with the same fingerprint.
    pub fn is_identical(&self) -> bool {
        match self.per_node.first() {
            Some(Some(Ok(first))) => self.per_node.iter().all(|n| n == &Some(Ok(first.clone()))),
            _ => false,
        }
    }

    /// True when reading it failed on some node.
    pub fn has_error(&self) -> bool {
        self.per_node.iter().any(|n| matches!(n, Some(Err(_))))
    }
}

/// The comparison of one shard's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardReport {
    /// Shard name.
    pub shard: String,
    /// Node addresses (`host:port`), in config order.
    pub nodes: Vec<String>,
    /// Every table and sequence found on any node, by database then name.
    pub objects: Vec<ObjectReport>,
}

impl ShardReport {
    /// True when every object is present and identical on every node.
    pub fn is_identical(&self) -> bool {
        self.objects.iter().all(ObjectReport::is_identical)
    }

    /// True when some object could not be read on some node (the comparison is incomplete).
    pub fn has_errors(&self) -> bool {
        self.objects.iter().any(ObjectReport::has_error)
    }

    /// `12 tables identical` or `2 of 12 tables differ`; `None` for no sequences.
    fn summary(&self, kind: ObjectKind) -> Option<String> {
        let all: Vec<_> = self.objects.iter().filter(|o| o.kind == kind).collect();
        let differ = all.iter().filter(|o| !o.is_identical()).count();
        let noun = match (kind, all.len()) {
            (ObjectKind::Sequence, 0) => return None,
            (ObjectKind::Table, 1) => "table",
            (ObjectKind::Table, _) => "tables",
            (ObjectKind::Sequence, 1) => "sequence",
            (ObjectKind::Sequence, _) => "sequences",
        };
        Some(match differ {
            0 => format!("{} {noun} identical", all.len()),
            d => format!("{d} of {} {noun} differ", all.len()),
        })
    }
}

impl fmt::Display for ShardReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, a)| format!("node{i}={a}"))
            .collect();
        writeln!(f, "shard {}: {}", self.shard, nodes.join(" "))?;
        for o in &self.objects {
            let kind = if o.kind == ObjectKind::Sequence {
                " (sequence)"
            } else {
                ""
            };
            write!(f, "  {}: {}{kind} ", o.database, o.name)?;
            let missing: Vec<String> = o
                .per_node
                .iter()
                .enumerate()
                .filter(|(_, n)| n.is_none())
                .map(|(i, _)| format!("node{i}"))
                .collect();
            if o.is_identical() {
                writeln!(f, "OK")?;
            } else if !missing.is_empty() {
                writeln!(f, "MISSING on {}", missing.join(", "))?;
            } else {
                let label = if o.has_error() { "ERROR" } else { "DIFFERS" };
                write!(f, "{label}:")?;
                for (i, n) in o.per_node.iter().enumerate() {
                    match n {
                        Some(Ok(v)) => write!(f, " node{i} {v}")?,
                        Some(Err(e)) => write!(f, " node{i} error: {e}")?,
                        None => {}
                    }
                }
                writeln!(f)?;
            }
        }
        let parts: Vec<String> = [ObjectKind::Table, ObjectKind::Sequence]
            .into_iter()
            .filter_map(|k| self.summary(k))
            .collect();
        write!(f, "shard {}: {}", self.shard, parts.join(", "))
    }
}

/// Compares the nodes of `shard` in `database` (a configured client-facing name) or in every
/// configured database, logging in as the first user with a plaintext server password (or
/// trust). A node that cannot be reached fails the whole shard.
pub async fn verify_shard(
    config: &Config,
    shard: &Shard,
    database: Option<&str>,
) -> Result<ShardReport, VerifyError> {
    let databases: Vec<String> = match database {
        Some(name) => {
            let db = config
                .database(name)
                .ok_or_else(|| VerifyError::UnknownDatabase(name.into()))?;
            vec![db.server_database.unwrap_or(db.name)]
        }
        None if config.databases.is_empty() => return Err(VerifyError::NoDatabase),
        None => config
            .databases
            .iter()
            .map(|d| d.server_database.clone().unwrap_or_else(|| d.name.clone()))
            .collect(),
    };
    let user = config
        .users
        .iter()
        .find(|u| u.server_password().is_some())
        .or_else(|| config.users.iter().find(|u| can_log_in(u)))
        .ok_or(VerifyError::NoUser)?;
    let tls = tls_connector(config)?;
    let mut objects = Vec::new();
    for database in databases {
        let mut tasks = JoinSet::new();
        for (i, node) in shard.nodes.iter().enumerate() {
            let p = connect_params(config, node, user, &database, &tls);
            tasks.spawn(async move { (i, inventory(p).await) });
        }
        let mut per_node: Vec<BTreeMap<(ObjectKind, String), Result<String, String>>> =
            vec![BTreeMap::new(); shard.nodes.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, found) = joined.map_err(|e| VerifyError::Connect {
                shard: shard.name.clone(),
                database: database.clone(),
                source: BackendError::Io(e.to_string()),
            })?;
            per_node[i] = found.map_err(|source| VerifyError::Connect {
                shard: shard.name.clone(),
                database: database.clone(),
                source,
            })?;
        }
        let keys: BTreeSet<&(ObjectKind, String)> =
            per_node.iter().flat_map(|m| m.keys()).collect();
        for key in keys {
            objects.push(ObjectReport {
                database: database.clone(),
                name: key.1.clone(),
                kind: key.0,
                per_node: per_node.iter().map(|m| m.get(key).cloned()).collect(),
            });
        }
    }
    Ok(ShardReport {
        shard: shard.name.clone(),
        nodes: shard
            .nodes
            .iter()
            .map(|n| format!("{}:{}", n.host, n.port))
            .collect(),
        objects,
    })
}

/// [`verify_shard`] for the shard named `shard`, or for every shard with at least one node.
pub async fn verify_all(
    config: &Config,
    shard: Option<&str>,
    database: Option<&str>,
) -> Result<Vec<Result<ShardReport, VerifyError>>, VerifyError> {
    let shards: Vec<&Shard> = match shard {
        Some(name) => vec![config
            .shards
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| VerifyError::UnknownShard(name.into()))?],
        None => config
            .shards
            .iter()
            .filter(|s| !s.nodes.is_empty())
            .collect(),
    };
    let mut reports = Vec::new();
    for s in shards {
        reports.push(verify_shard(config, s, database).await);
    }
    Ok(reports)
}

/// One node's objects and their fingerprints (errors reading one object are kept per object).
async fn inventory(
    p: crate::backend::ConnectParams,
) -> Result<BTreeMap<(ObjectKind, String), Result<String, String>>, BackendError> {
    let mut conn = ServerConn::connect(&p).await?;
    conn.run_internal(PIN_SETTINGS).await?;
    let mut out = BTreeMap::new();
    for row in conn.run_internal(LIST_SQL).await?.rows {
        let [Some(name), Some(is_seq)] = &row[..] else {
            continue;
        };
        let kind = if is_seq == "t" {
            ObjectKind::Sequence
        } else {
            ObjectKind::Table
        };
        let sql = match kind {
            ObjectKind::Table => format!(
                "SELECT 'count=' || count(*) || ' sum=' || md5(\
                 coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0) || ':' || \
                 coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)) \
                 FROM (SELECT md5(t::text) AS h FROM {name} t) s"
            ),
            ObjectKind::Sequence => format!(
                "SELECT 'last_value=' || last_value || CASE WHEN is_called THEN '' \
                 ELSE ' (not called)' END FROM {name}"
            ),
        };
        let value = match conn.run_internal(&sql).await {
            Ok(r) => Ok(r
                .rows
                .into_iter()
                .next()
                .and_then(|row| row.into_iter().next().flatten())
                .unwrap_or_default()),
            Err(e) => Err(e.to_string()),
        };
        out.insert((kind, name.clone()), value);
    }
    Ok(out)
}
