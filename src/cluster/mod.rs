//! Topology: shards, their nodes, and the pools that reach them. Holds the live config snapshot
//! (`ArcSwap`) and builds or reconfigures pools when it changes. Node states, health checks
//! and failover live here too (`nodes`, `health`). Never parses SQL.

mod health;
mod nodes;

pub use nodes::{DetachCause, NodeState, Topology};

use crate::backend::ConnectParams;
use crate::config::{Config, Database, User};
use crate::net::client_connector;
use crate::pool::{Pool, PoolSettings};
use crate::protocol::scram::client::SaltedCache;
use crate::shard::ShardMap;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

/// Identifies one pool: (client user, client database, shard index, node index).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Client-facing user name.
    pub user: String,
    /// Client-facing database name.
    pub database: String,
    /// Shard index in the config.
    pub shard: usize,
    /// Node index within the shard.
    pub node: usize,
}

/// Why a config cannot be put to use.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] crate::net::TlsError),
    /// The sharding rules cannot be built, or would move stored keys without `force`.
    #[error("sharding rules: {0}")]
    Sharding(String),
}

/// The live config and the pools built from it. Cheap to share via `Arc`.
pub struct Cluster {
    config: ArcSwap<Config>,
    shard_map: ArcSwap<ShardMap>,
    pools: Mutex<HashMap<PoolKey, Pool>>,
    tls: ArcSwap<Option<TlsConnector>>,
    /// Node states per shard.
    pub topology: Topology,
    /// Salted passwords for SCRAM logins to nodes (computed once per role and node salt).
    scram: Arc<SaltedCache>,
}

impl Cluster {
    /// Builds the cluster state for a validated config.
    pub fn new(config: Config) -> Result<Cluster, ClusterError> {
        let tls = build_tls(&config)?;
        let map = ShardMap::from_config(&config).map_err(ClusterError::Sharding)?;
        let sizes: Vec<usize> = config.shards.iter().map(|s| s.nodes.len()).collect();
        let topology = Topology::new(&sizes);
        load_down_nodes(&config, &topology);
        Ok(Cluster {
            topology,
            shard_map: ArcSwap::from_pointee(map),
            config: ArcSwap::from_pointee(config),
            pools: Mutex::new(HashMap::new()),
            tls: ArcSwap::from_pointee(tls),
            scram: Arc::default(),
        })
    }

    /// The current config snapshot.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The current sharding rules.
    pub fn shard_map(&self) -> Arc<ShardMap> {
        self.shard_map.load_full()
    }

    /// The pool for the main node of the single shard (routing comes with sharding).
    pub fn main_pool(&self, user: &User, db: &Database) -> Pool {
        let main = self.topology.main(0).unwrap_or(0);
        self.pool(user, db, 0, main)
    }

    /// Detaches a node (see `Topology::detach`) and closes its pools' idle connections.
    /// Returns true if the node went down now.
    pub fn detach(&self, shard: usize, node: usize, cause: DetachCause, detail: &str) -> bool {
        if !self.topology.detach(shard, node, cause, detail) {
            return false;
        }
        self.detach_pools(shard, node);
        self.save_down_nodes();
        true
    }

    /// Records the nodes that are down in `<decision_log>.nodes`, so that a restarted pgproxy
    /// does not take a stale node back (it may have missed writes).
    pub(crate) fn save_down_nodes(&self) {
        let cfg = self.config.load();
        let mut text = String::from(
            "# nodes pgproxy detached: stale until rebuilt from a live sibling; delete a line\n\
             # (with pgproxy stopped) only after that node holds the same data again\n",
        );
        for (s, shard) in cfg.shards.iter().enumerate() {
            for (n, node) in shard.nodes.iter().enumerate() {
                if self.topology.state(s, n) == NodeState::Down {
                    text.push_str(&format!("{} {}:{}\n", shard.name, node.host, node.port));
                }
            }
        }
        let path = down_nodes_path(&cfg);
        let tmp = format!("{path}.tmp");
        let written = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            warn!(path, error = %e, "could not record the detached nodes");
        }
    }

    fn detach_pools(&self, shard: usize, node: usize) {
        self.pools.lock().retain(|key, pool| {
            let gone = key.shard == shard && key.node == node;
            if gone {
                pool.shutdown();
            }
            !gone
        });
    }

    /// A node for a load-balanced read: an up node chosen by weight (`r` uniform in [0, 1)).
    pub fn pick_read_node(&self, shard: usize, r: f64) -> Option<usize> {
        let cfg = self.config.load();
        let nodes = &cfg.shards.get(shard)?.nodes;
        let up = self.topology.up_nodes(shard);
        let total: u64 = up.iter().map(|&i| u64::from(nodes[i].weight)).sum();
        if total == 0 {
            return self.topology.main(shard);
        }
        let mut x = (r * total as f64) as u64;
        for &i in &up {
            let w = u64::from(nodes[i].weight);
            if x < w {
                return Some(i);
            }
            x -= w;
        }
        up.last().copied()
    }

    /// The pool for (user, db, shard, node), created on first use.
    pub fn pool(&self, user: &User, db: &Database, shard: usize, node: usize) -> Pool {
        let key = PoolKey {
            user: user.name.clone(),
            database: db.name.clone(),
            shard,
            node,
        };
        let mut pools = self.pools.lock();
        if let Some(p) = pools.get(&key) {
            return p.clone();
        }
        let cfg = self.config.load();
        let settings = self.settings(&cfg, user, db, shard, node);
        let pool = Pool::new(settings);
        pools.insert(key, pool.clone());
        pool
    }

    fn settings(
        &self,
        cfg: &Config,
        user: &User,
        db: &Database,
        shard: usize,
        node: usize,
    ) -> PoolSettings {
        let g = &cfg.general;
        let n = cfg
            .shards
            .get(shard)
            .and_then(|s| s.nodes.get(node))
            .expect("validated config has the shard and node a pool key names");
        PoolSettings {
            size: cfg.pool_size(user, db),
            min_size: g.min_pool_size,
            checkout_timeout: Duration::from_millis(g.checkout_timeout_ms),
            idle_timeout: Duration::from_millis(g.idle_timeout_ms),
            lifetime: Duration::from_millis(g.server_lifetime_ms),
            reset_query: g.server_reset_query.clone(),
            max_prepared: g.max_prepared_statements,
            connect: ConnectParams {
                host: n.host.clone(),
                port: n.port,
                user: user.server_user().to_string(),
                password: user.server_password().map(str::to_string),
                database: db
                    .server_database
                    .clone()
                    .unwrap_or_else(|| db.name.clone()),
                tls: g.server_tls,
                tls_connector: (**self.tls.load()).clone(),
                connect_timeout: Duration::from_millis(g.connect_timeout_ms),
                activity: self.topology.activity(shard, node),
                scram: Some(self.scram.clone()),
                detached: (cfg.shards.get(shard).map_or(0, |s| s.nodes.len()) > 1)
                    .then(|| self.topology.detached_signal(shard, node)),
            },
        }
    }

    /// Swaps in a new validated config: reconfigures pools whose user and database still exist,
    /// shuts down the others. Clients already connected keep their sessions.
    pub fn reload(&self, new: Config) -> Result<(), ClusterError> {
        let tls = build_tls(&new)?;
        let map = self.new_shard_map(&new)?;
        for change in crate::config::restart_required(&self.config.load(), &new) {
            warn!(option = %change, "option changed but needs a restart; keeping the old value");
        }
        let mut new = new;
        let old = self.config.load_full();
        // Options that do not reload keep their old values.
        new.general.listen = old.general.listen.clone();
        new.general.worker_threads = old.general.worker_threads;
        new.shards = old.shards.clone();
        self.tls.store(Arc::new(tls));
        self.config.store(Arc::new(new));
        // Sessions take the new rules at their next transaction; one in flight keeps its own.
        self.shard_map.store(Arc::new(map));
        let cfg = self.config.load_full();
        let mut pools = self.pools.lock();
        pools.retain(|key, pool| {
            let (Some(user), Some(db)) = (cfg.user(&key.user), cfg.database(&key.database)) else {
                pool.shutdown();
                return false;
            };
            pool.reconfigure(self.settings(&cfg, user, &db, key.shard, key.node));
            true
        });
        info!(pools = pools.len(), "configuration reloaded");
        Ok(())
    }

    /// The sharding rules of a new config (built over the running shard list, which needs a
    /// restart to change). Refused when they would move keys already stored, unless the new
    /// config sets `sharding.force = true`.
    fn new_shard_map(&self, new: &Config) -> Result<ShardMap, ClusterError> {
        let mut with_shards = new.clone();
        with_shards.shards = self.config.load().shards.clone();
        let map = ShardMap::from_config(&with_shards).map_err(ClusterError::Sharding)?;
        if let Some(why) = self.shard_map.load().placement_change(&map) {
            if !new.sharding.force {
                return Err(ClusterError::Sharding(format!(
                    "the new rules would move keys that may already be stored ({why}); move the data first, \
                     then reload with sharding.force = true"
                )));
            }
            warn!(change = %why, "sharding rules changed with force = true: keys move to other shards");
        }
        Ok(map)
    }

    /// Closes every pool (shutdown).
    pub fn shutdown(&self) {
        for p in self.pools.lock().values() {
            p.shutdown();
        }
    }

    /// A snapshot of all pools, for stats.
    pub fn pools(&self) -> Vec<(PoolKey, Pool)> {
        self.pools
            .lock()
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }
}

/// Where detached nodes are recorded: beside the decision log.
fn down_nodes_path(cfg: &Config) -> String {
    format!("{}.nodes", cfg.replication.decision_log)
}

/// The nodes a previous run detached, as (shard name, `host:port`) pairs from
/// `<decision_log>.nodes` (see `Cluster::save_down_nodes`).
pub(crate) fn recorded_down_nodes(cfg: &Config) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(down_nodes_path(cfg)) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// Marks down the nodes a previous run detached (see `Cluster::save_down_nodes`).
fn load_down_nodes(cfg: &Config, topology: &Topology) {
    let path = down_nodes_path(cfg);
    for (name, addr) in recorded_down_nodes(cfg) {
        for (s, shard) in cfg
            .shards
            .iter()
            .enumerate()
            .filter(|(_, sh)| sh.name == name)
        {
            for (n, node) in shard.nodes.iter().enumerate() {
                if format!("{}:{}", node.host, node.port) == addr {
                    warn!(
                        shard = %name,
                        node = %addr,
                        "node stays detached: an earlier run detached it (recorded in {path}); rebuild it from a live sibling (docs/OPERATIONS.md), then remove its line"
                    );
                    topology.detach(
                        s,
                        n,
                        DetachCause::Recorded,
                        &format!("detached before this start (recorded in {path})"),
                    );
                }
            }
        }
    }
}

fn build_tls(cfg: &Config) -> Result<Option<TlsConnector>, crate::net::TlsError> {
    use crate::config::ServerTls;
    match cfg.general.server_tls {
        ServerTls::Disable => Ok(None),
        ServerTls::VerifyFull => Ok(Some(client_connector(
            cfg.general.server_tls_ca_file.as_deref(),
        )?)),
        ServerTls::Prefer | ServerTls::Require => Ok(Some(client_connector(None)?)),
    }
}
