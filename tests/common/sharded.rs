//! Sharded clusters for the sharding tests: several shards of one or more [`PgNode`]s each
//! behind one pgproxy with `[sharding]` rules, plus one plain PostgreSQL "reference" node that
//! holds all the data, for comparing answers.

use super::cluster::{decision_dir, start_nodes};
use super::{connect_app, PgNode, Proxy, ProxyConfig};
use tokio_postgres::Client;

/// The sharded tables every sharded test uses: `contacts` and `notes` by `user_id`, `users`
/// by `id`.
pub const TABLES: &str = "[[sharding.tables]]\nname = \"contacts\"\ncolumn = \"user_id\"\n\
    [[sharding.tables]]\nname = \"notes\"\ncolumn = \"user_id\"\n\
    [[sharding.tables]]\nname = \"users\"\ncolumn = \"id\"\n";

/// Shards of nodes behind one pgproxy.
pub struct ShardedCluster {
    /// The proxy.
    pub proxy: Proxy,
    /// Nodes per shard.
    pub shards: Vec<Vec<PgNode>>,
    /// The config text the proxy runs with.
    pub config: String,
    dir: tempfile::TempDir,
}

/// The config text: the common users and database, `shards` shards with the given node
/// ports, `[sharding]` with `extra` lines and the tables.
pub fn sharded_config(shards: &[Vec<u16>], extra: &str, decision_log: &str) -> String {
    sharded_config_with(shards, extra, "", decision_log)
}

/// Like [`sharded_config`], with more `[[sharding.…]]` sub-tables (overrides, ranges, lists).
pub fn sharded_config_with(
    shards: &[Vec<u16>],
    extra: &str,
    tables: &str,
    decision_log: &str,
) -> String {
    let base = ProxyConfig::with_nodes(&[])
        .pool_size(24)
        .checkout_timeout_ms(20_000);
    let text = base.render();
    // Drop the single empty shard the base config ends with.
    let mut out = text.replace("\n[[shards]]\nname = \"s0\"\n", "\n");
    for (i, ports) in shards.iter().enumerate() {
        out += &format!("\n[[shards]]\nname = \"s{i}\"\n");
        for p in ports {
            out += &format!("[[shards.nodes]]\nhost = \"127.0.0.1\"\nport = {p}\n");
        }
    }
    out += &format!(
        "\n[replication]\ndecision_log = {}\n",
        super::toml_str(decision_log)
    );
    out += &format!("\n[sharding]\n{extra}\n{TABLES}\n{tables}");
    out
}

impl ShardedCluster {
    /// `shards` shards of `nodes` nodes each; `extra` goes into `[sharding]`.
    pub async fn start(shards: usize, nodes: usize, extra: &str) -> ShardedCluster {
        Self::start_with_tables(shards, nodes, extra, "").await
    }

    /// Like [`ShardedCluster::start`], with more `[[sharding.…]]` sub-tables.
    pub async fn start_with_tables(
        shards: usize,
        nodes: usize,
        extra: &str,
        tables: &str,
    ) -> ShardedCluster {
        let mut all = start_nodes(shards * nodes).await;
        let mut per: Vec<Vec<PgNode>> = Vec::new();
        for _ in 0..shards {
            let rest = all.split_off(nodes);
            per.push(std::mem::replace(&mut all, rest));
        }
        let dir = decision_dir();
        let ports: Vec<Vec<u16>> = per
            .iter()
            .map(|s| s.iter().map(PgNode::port).collect())
            .collect();
        let log = dir.path().join("decisions.log");
        let text = sharded_config_with(&ports, extra, tables, log.to_str().expect("utf-8"));
        let proxy = Proxy::start(&text).await;
        ShardedCluster {
            proxy,
            shards: per,
            config: text,
            dir,
        }
    }

    /// Kills pgproxy with SIGKILL and starts a new one with the same config (and decision
    /// log); its in-doubt transactions are resolved at start.
    pub async fn kill_and_restart_proxy(&mut self) {
        self.proxy.signal(9);
        self.proxy
            .wait_exit(std::time::Duration::from_secs(10))
            .await
            .expect("pgproxy exits on SIGKILL");
        self.proxy = Proxy::start(&self.config).await;
    }

    /// Every node of every shard.
    pub fn all_nodes(&self) -> Vec<&PgNode> {
        self.shards.iter().flatten().collect()
    }

    /// A client (`app`) through the proxy.
    pub async fn client(&self) -> Client {
        connect_app(self.proxy.port()).await
    }

    /// The decision log's directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `sql`'s single value on every node of shard `s`, asserting they agree.
    pub async fn shard_scalar(&self, s: usize, sql: &str) -> String {
        let mut first: Option<String> = None;
        for node in &self.shards[s] {
            let v = node.scalar(sql).await;
            if let Some(f) = &first {
                assert_eq!(f, &v, "nodes of shard {s} differ on {sql}");
            }
            first.get_or_insert(v);
        }
        first.unwrap_or_default()
    }
}
