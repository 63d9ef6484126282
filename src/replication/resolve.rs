//! Resolution of in-doubt prepared transactions at startup. A gid naming its main
//! (`decision_log::main_of_gid`: the main committed with a plain COMMIT, the followers
//! prepared) is committed if the main's `txid_status` says committed, rolled back if aborted;
//! if that main was detached (recorded in `<decision_log>.nodes`) it is committed, as the
//! followers hold the transaction; a main that cannot be reached, or no longer knows the
//! transaction, leaves it prepared (warned about, asked again by a later pass). Any other
//! pgproxy gid is committed if the decision log says so, else rolled back.
//!
//! The first pass runs before the listener accepts clients, so no session is between the two
//! phases and a gid without a `C` record can only be one whose decision was never made. If it
//! left anything (a node or main that could not be reached), the server runs
//! [`Pass::Retry`] passes while clients run: they finish only gids of earlier runs (never this
//! process's own: `GidGen::instance`) and skip nodes recorded as detached, so a main that came
//! back, or was detached meanwhile, does not leave its followers' rows locked until the next
//! start. Connects with the same code, TLS and credentials as the pools
//! (`backend::ServerConn`), once per node, database and user that can log in. Must not:
//! accept clients.

use super::decision_log::{gid_instance, is_pgproxy_gid, main_of_gid, DecisionLog};
use crate::backend::{BackendError, ConnectParams, InternalResult, ServerConn};
use crate::config::{Config, Node, ServerTls, User};
use crate::net::{client_connector, TlsError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

/// pgproxy gids prepared in the current database, their owner, and whether the logged-in role
/// may finish them (only the preparing role or a superuser may).
const LIST_SQL: &str = "SELECT x.gid, x.owner, (x.owner = current_user OR r.rolsuper) \
     FROM pg_catalog.pg_prepared_xacts x, \
     (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) r \
     WHERE x.database = current_database() AND x.gid LIKE 'pgproxy\\_%' ORDER BY x.prepared";

/// Longest one statement may take: a node that accepts logins but then hangs must not hold up
/// startup for ever.
const STATEMENT_LIMIT: Duration = Duration::from_secs(30);

/// Why resolution could not run at all (per-node trouble is only counted and logged).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The TLS settings towards the nodes are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What a resolution run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResolveReport {
    /// `COMMIT PREPARED` run (one per gid and node).
    pub committed: usize,
    /// `ROLLBACK PREPARED` run (one per gid and node).
    pub rolled_back: usize,
    /// Nodes that could not be reached.
    pub unreachable_nodes: usize,
    /// Failed logins, queries or resolutions, and gids owned by a role pgproxy cannot log in as.
    pub failed: usize,
    /// True when every node and database was searched and everything found was resolved; only
    /// then are the logged commit decisions marked done.
    pub complete: bool,
}

impl ResolveReport {
    /// A node could not be reached, or a gid could not be found out or resolved: worth
    /// another pass.
    pub fn left_any(&self) -> bool {
        self.unreachable_nodes > 0 || self.failed > 0
    }
}

impl fmt::Display for ResolveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} committed, {} rolled back, {} unreachable nodes, {} failures{}",
            self.committed,
            self.rolled_back,
            self.unreachable_nodes,
            self.failed,
            if self.complete { "" } else { " (incomplete)" }
        )
    }
}

/// What one node's task found.
#[derive(Default)]
struct NodeOutcome {
    committed: usize,
    rolled_back: usize,
    failed: usize,
    unreachable: bool,
}

/// Which resolution pass runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pass {
    /// At start, before clients: every pgproxy gid on every node.
    Startup,
    /// While clients run: only gids of other instances than this process's (`GidGen::instance`),
    /// i.e. of earlier runs, on nodes not recorded as detached.
    Retry {
        /// This process's gid instance.
        own_instance: String,
    },
}

impl Pass {
    /// True if this pass leaves `gid` alone (a gid of this process, maybe in flight).
    fn skips(&self, gid: &str) -> bool {
        matches!(self, Pass::Retry { own_instance } if gid_instance(gid) == Some(own_instance.as_str()))
    }
}

/// Finds pgproxy gids prepared on every node of every shard, in every configured database, and
/// commits those `log` holds a commit decision for, rolling back the others (gids naming their
/// main: as that main decided). Unreachable nodes are warned about and skipped. When the
/// search was complete, marks every decision it looked at done.
pub async fn resolve_in_doubt(
    config: &Config,
    log: &DecisionLog,
    pass: Pass,
) -> Result<ResolveReport, ResolveError> {
    let mut report = ResolveReport::default();
    if config.databases.is_empty() {
        warn!("no [[databases]] configured: in-doubt prepared transactions cannot be found or resolved");
        return Ok(report);
    }
    let users: Vec<&User> = config.users.iter().filter(|u| can_log_in(u)).collect();
    if users.is_empty() {
        warn!("no user with a plaintext server password or trust: in-doubt prepared transactions cannot be resolved");
        return Ok(report);
    }
    let tls = tls_connector(config)?;
    let decided: HashSet<String> = log
        .committed()
        .into_iter()
        .filter(|g| !pass.skips(g))
        .collect();
    let decided = Arc::new(decided);
    let pass = Arc::new(pass);
    let mains = Arc::new(Mains {
        detached: crate::cluster::recorded_down_nodes(config)
            .into_iter()
            .map(|(_, addr)| addr)
            .collect(),
        configured: config
            .shards
            .iter()
            .flat_map(|s| s.nodes.iter().map(|n| format!("{}:{}", n.host, n.port)))
            .collect(),
    });
    let mut tasks = JoinSet::new();
    for shard in &config.shards {
        for node in &shard.nodes {
            let detached = mains
                .detached
                .contains(&format!("{}:{}", node.host, node.port));
            if detached && *pass != Pass::Startup {
                // Stale until it is rebuilt; its prepared transactions go with that.
                continue;
            }
            let mut logins = Vec::new();
            let mut seen = HashSet::new();
            for db in &config.databases {
                let database = db.server_database.as_deref().unwrap_or(&db.name);
                for user in &users {
                    if seen.insert((user.server_user(), database)) {
                        logins.push(connect_params(config, node, user, database, &tls));
                    }
                }
            }
            tasks.spawn(resolve_node(
                shard.name.clone(),
                logins,
                decided.clone(),
                mains.clone(),
                pass.clone(),
            ));
        }
    }
    while let Some(joined) = tasks.join_next().await {
        let o = joined.unwrap_or_else(|e| {
            warn!(error = %e, "in-doubt resolution task failed");
            NodeOutcome {
                failed: 1,
                ..NodeOutcome::default()
            }
        });
        report.committed += o.committed;
        report.rolled_back += o.rolled_back;
        report.failed += o.failed;
        report.unreachable_nodes += usize::from(o.unreachable);
    }
    report.complete = !report.left_any();
    if report.complete {
        // No node holds any logged gid any more: nothing is left to decide for them.
        for gid in decided.iter() {
            if let Err(e) = log.record_done(gid) {
                warn!(error = %e, "could not mark a resolved commit done");
            }
        }
    }
    Ok(report)
}

/// What is known of the nodes a gid can name as its main.
struct Mains {
    /// `host:port` of nodes a previous run detached: the followers hold their transactions.
    detached: HashSet<String>,
    /// `host:port` of every configured node.
    configured: HashSet<String>,
}

/// Whether the main of a followers' prepared transaction committed it: asks the main's
/// `txid_status` (waiting a little while it is still in progress: the main notices pgproxy's
/// end at its next read). Err: why it stays prepared.
async fn main_committed(
    conns: &mut HashMap<String, ServerConn>,
    login: &ConnectParams,
    mains: &Mains,
    (xid, host, port): (u64, &str, u16),
) -> Result<bool, String> {
    let addr = format!("{host}:{port}");
    if mains.detached.contains(&addr) {
        return Ok(true);
    }
    if !mains.configured.contains(&addr) {
        return Err(format!("its main node {addr} is not in the configuration"));
    }
    let conn = match conns.entry(addr.clone()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let mut params = login.clone();
            params.host = host.to_string();
            params.port = port;
            let c = ServerConn::connect(&params)
                .await
                .map_err(|err| format!("its main node {addr} cannot be asked ({err})"))?;
            e.insert(c)
        }
    };
    let sql = format!("SELECT pg_catalog.txid_status({xid})");
    for _ in 0..IN_PROGRESS_POLLS {
        let r = match run(conn, &sql).await {
            Ok(r) => r,
            Err(err) => {
                conns.remove(&addr);
                return Err(format!("its main node {addr} could not say ({err})"));
            }
        };
        match r
            .rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .flatten()
            .as_deref()
        {
            Some("committed") => return Ok(true),
            Some("aborted") => return Ok(false),
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            None => {
                return Err(format!(
                    "its main node {addr} no longer knows transaction {xid}"
                ))
            }
        }
    }
    Err(format!(
        "transaction {xid} is still in progress on its main node {addr}"
    ))
}

/// How many times (200 ms apart) a main's transaction still in progress is asked about.
const IN_PROGRESS_POLLS: usize = 50;

/// Resolves on one node, logging in once per (role, database); returns its counts.
async fn resolve_node(
    shard: String,
    logins: Vec<ConnectParams>,
    decided: Arc<HashSet<String>>,
    mains: Arc<Mains>,
    pass: Arc<Pass>,
) -> NodeOutcome {
    let mut out = NodeOutcome::default();
    // (database, gid) → owner, for gids the logged-in role was not allowed to finish.
    let mut foreign: BTreeMap<(String, String), String> = BTreeMap::new();
    for p in &logins {
        let (node, database) = (p.addr(), p.database.as_str());
        let mut conn = match ServerConn::connect(p).await {
            Ok(c) => c,
            Err(e @ (BackendError::Connect { .. } | BackendError::Io(_))) => {
                warn!(shard, node, error = %e, "node unreachable; its in-doubt transactions stay prepared");
                out.unreachable = true;
                return out;
            }
            Err(e) => {
                warn!(shard, node, database, user = p.user, error = %e, "could not log in to look for in-doubt transactions");
                out.failed += 1;
                continue;
            }
        };
        // Connections to the mains the gids name, in this database as this role.
        let mut main_conns = HashMap::new();
        let rows = match run(&mut conn, LIST_SQL).await {
            Ok(r) => r.rows,
            Err(e) => {
                warn!(shard, node, database, error = %e, "could not list prepared transactions");
                out.failed += 1;
                continue;
            }
        };
        for row in rows {
            let [Some(gid), Some(owner), Some(allowed)] = &row[..] else {
                continue;
            };
            if !is_pgproxy_gid(gid) || pass.skips(gid) {
                continue;
            }
            let key = (database.to_string(), gid.clone());
            if allowed != "t" {
                foreign.insert(key, owner.clone());
                continue;
            }
            foreign.remove(&key);
            let commit = match main_of_gid(gid) {
                None => decided.contains(gid),
                Some(main) => match main_committed(&mut main_conns, p, &mains, main).await {
                    Ok(c) => c,
                    Err(why) => {
                        warn!(
                            shard,
                            node,
                            database,
                            gid,
                            why,
                            "in-doubt transaction left prepared; pgproxy asks again in a while"
                        );
                        out.failed += 1;
                        continue;
                    }
                },
            };
            let action = if commit { "COMMIT" } else { "ROLLBACK" };
            let sql = format!("{action} PREPARED {}", quote_literal(gid));
            match run(&mut conn, &sql).await {
                Ok(_) if commit => out.committed += 1,
                Ok(_) => out.rolled_back += 1,
                Err(e) => {
                    warn!(shard, node, database, gid, error = %e, "could not resolve in-doubt transaction");
                    out.failed += 1;
                    // After a timeout the connection is out of step: leave the rest to the next
                    // login (or the next start).
                    break;
                }
            }
            info!(
                shard,
                node, database, gid, action, "resolved in-doubt transaction"
            );
        }
    }
    for ((database, gid), owner) in foreign {
        warn!(
            shard,
            database,
            gid,
            owner,
            "in-doubt transaction owned by a role pgproxy cannot log in as; resolve it by hand"
        );
        out.failed += 1;
    }
    out
}

/// Runs one statement, giving up after [`STATEMENT_LIMIT`].
async fn run(conn: &mut ServerConn, sql: &str) -> Result<InternalResult, BackendError> {
    match tokio::time::timeout(STATEMENT_LIMIT, conn.run_internal(sql)).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::Io(format!(
            "no answer within {} s",
            STATEMENT_LIMIT.as_secs()
        ))),
    }
}

/// True if pgproxy can log in to the nodes as this user: a plaintext server password, or no
/// password at all (trust on the node).
pub(crate) fn can_log_in(user: &User) -> bool {
    user.server_password().is_some() || user.password.is_none()
}

/// The TLS connector `general.server_tls` calls for (as the pools build it).
pub(crate) fn tls_connector(config: &Config) -> Result<Option<TlsConnector>, TlsError> {
    match config.general.server_tls {
        ServerTls::Disable => Ok(None),
        ServerTls::VerifyFull => Ok(Some(client_connector(
            config.general.server_tls_ca_file.as_deref(),
        )?)),
        ServerTls::Prefer | ServerTls::Require => Ok(Some(client_connector(None)?)),
    }
}

/// Connection settings for `user` on `node` in server database `database`.
pub(crate) fn connect_params(
    config: &Config,
    node: &Node,
    user: &User,
    database: &str,
    tls: &Option<TlsConnector>,
) -> ConnectParams {
    ConnectParams {
        host: node.host.clone(),
        port: node.port,
        user: user.server_user().to_string(),
        password: user.server_password().map(str::to_string),
        database: database.to_string(),
        tls: config.general.server_tls,
        tls_connector: tls.clone(),
        connect_timeout: Duration::from_millis(config.general.connect_timeout_ms),
        activity: None,
        scram: None,
        detached: None,
    }
}

/// `s` as an SQL string literal (standard_conforming_strings: only `'` needs doubling).
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
