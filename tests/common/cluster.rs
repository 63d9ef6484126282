//! Replicated shards for the replication tests: several [`PgNode`]s behind one pgproxy whose
//! config has `[replication]` and `[health]` sections, node comparisons made directly on each
//! node, and `pgproxy verify` run as the built binary.

use super::{connect_app, eventually, toml_str, PgNode, Proxy, ProxyConfig};
use futures_util::future::join_all;
use std::path::{Path, PathBuf};
use tokio_postgres::Client;

/// A pgproxy config for one replicated shard `s0`: the common users and database (see
/// [`ProxyConfig`]), nodes with weights, `[replication]` (decision log in a per-test temp dir)
/// and `[health]`. Pools are sized for 16 concurrent clients.
#[derive(Debug, Clone)]
pub struct ReplConfig {
    base: ProxyConfig,
    nodes: Vec<(u16, u32)>,
    replication: Vec<(String, String)>,
    health: Vec<(String, String)>,
}

impl ReplConfig {
    /// Nodes (weight 1 each) on `ports`, 2pc commit, refuse nondeterministic writes, load
    /// balancing on, the decision log at `decision_log`.
    pub fn new(ports: &[u16], decision_log: &Path) -> ReplConfig {
        let base = ProxyConfig::with_nodes(&[])
            .pool_size(24)
            .checkout_timeout_ms(20_000);
        let log = decision_log.to_str().expect("utf-8 temp path");
        ReplConfig {
            base,
            nodes: ports.iter().map(|&p| (p, 1)).collect(),
            replication: vec![
                ("decision_log".into(), toml_str(log)),
                ("commit".into(), toml_str("2pc")),
                ("nondeterministic".into(), toml_str("refuse")),
                ("load_balance".into(), "true".into()),
            ],
            health: Vec::new(),
        }
    }

    /// Node weights, in node order.
    pub fn weights(mut self, weights: &[u32]) -> Self {
        assert_eq!(weights.len(), self.nodes.len(), "one weight per node");
        for (n, w) in self.nodes.iter_mut().zip(weights) {
            n.1 = *w;
        }
        self
    }

    /// `[replication] key = value` (raw TOML value).
    pub fn replication(mut self, key: &str, value: &str) -> Self {
        put(&mut self.replication, key, value);
        self
    }

    /// `commit = "2pc"` or `"ordered"`.
    pub fn commit(self, mode: &str) -> Self {
        self.replication("commit", &toml_str(mode))
    }

    /// `[health] key = value` (raw TOML value).
    pub fn health(mut self, key: &str, value: &str) -> Self {
        put(&mut self.health, key, value);
        self
    }

    /// `[general] key = value` (raw TOML value).
    pub fn general(mut self, key: &str, value: &str) -> Self {
        self.base = self.base.general(key, value);
        self
    }

    /// The same config over another set of nodes (weights reset to 1).
    pub fn with_ports(mut self, ports: &[u16]) -> Self {
        self.nodes = ports.iter().map(|&p| (p, 1)).collect();
        self
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut out = self.base.render();
        for (port, weight) in &self.nodes {
            out += &format!(
                "\n[[shards.nodes]]\nhost = \"127.0.0.1\"\nport = {port}\nweight = {weight}\n"
            );
        }
        out += "\n[replication]\n";
        for (k, v) in &self.replication {
            out += &format!("{k} = {v}\n");
        }
        out += "\n[health]\n";
        for (k, v) in &self.health {
            out += &format!("{k} = {v}\n");
        }
        out
    }
}

fn put(entries: &mut Vec<(String, String)>, key: &str, value: &str) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = value.to_string(),
        None => entries.push((key.to_string(), value.to_string())),
    }
}

/// `n` fresh nodes, started in parallel.
pub async fn start_nodes(n: usize) -> Vec<PgNode> {
    join_all((0..n).map(|_| PgNode::start())).await
}

/// A replicated shard: its nodes and the pgproxy in front of them. Fields drop in order: the
/// proxy first, then the nodes, then the temp dir holding the decision log.
pub struct ReplCluster {
    /// The proxy.
    pub proxy: Proxy,
    /// The nodes, in config order (node 0 is the main while it is up).
    pub nodes: Vec<PgNode>,
    /// The config the proxy runs with.
    pub config: ReplConfig,
    dir: tempfile::TempDir,
}

/// A per-test temp dir for the decision log.
pub fn decision_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pgproxy-repl-")
        .tempdir()
        .expect("temp dir for the decision log")
}

impl ReplCluster {
    /// Starts `n` nodes and a proxy configured by `configure`.
    pub async fn start(n: usize, configure: impl FnOnce(ReplConfig) -> ReplConfig) -> ReplCluster {
        let nodes = start_nodes(n).await;
        Self::with_nodes(nodes, decision_dir(), configure).await
    }

    /// Starts a proxy over already running nodes; its decision log is `<dir>/decisions.log`.
    pub async fn with_nodes(
        nodes: Vec<PgNode>,
        dir: tempfile::TempDir,
        configure: impl FnOnce(ReplConfig) -> ReplConfig,
    ) -> ReplCluster {
        let ports: Vec<u16> = nodes.iter().map(PgNode::port).collect();
        let config = configure(ReplConfig::new(&ports, &dir.path().join("decisions.log")));
        let proxy = Proxy::start(&config.render()).await;
        ReplCluster {
            proxy,
            nodes,
            config,
            dir,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.proxy.port()
    }

    /// A client (`app`) connected through the proxy.
    pub async fn client(&self) -> Client {
        connect_app(self.proxy.port()).await
    }

    /// The decision log file.
    pub fn decision_log(&self) -> PathBuf {
        self.dir.path().join("decisions.log")
    }

    /// Every node.
    pub fn all(&self) -> Vec<&PgNode> {
        self.nodes.iter().collect()
    }

    /// Asserts every node holds the same rows in each of `tables`; returns their digests.
    pub async fn assert_identical(&self, tables: &[&str]) -> Vec<String> {
        assert_identical(&self.all(), tables).await
    }

    /// Runs `pgproxy verify` on the proxy's own config and asserts exit code 0.
    pub async fn assert_verify_ok(&self) {
        let (code, out, err) = verify(&self.proxy.config_path()).await;
        assert_eq!(code, 0, "pgproxy verify:\nstdout:\n{out}\nstderr:\n{err}");
        assert!(out.contains("identical"), "{out}");
    }

    /// What every reachable node's backends are doing, for the message of a hang.
    pub async fn activity(&self) -> String {
        let sql = "SELECT pid, state, wait_event, left(query, 70) FROM pg_stat_activity \
                   WHERE datname = 'app' AND pid <> pg_backend_pid() ORDER BY pid";
        let mut out = String::new();
        for node in &self.nodes {
            let cfg = super::pg_config(node.port(), "postgres", "", "app");
            let rows = match super::connect_with(&cfg).await {
                Ok(c) => super::simple_rows(&c, sql).await,
                Err(e) => {
                    out += &format!("node {}: {e}\n", node.port());
                    continue;
                }
            };
            out += &format!("node {}:\n", node.port());
            for r in rows {
                out += &format!("  {r:?}\n");
            }
        }
        out
    }

    /// Waits until the proxy's log contains `needle`.
    pub async fn wait_log(&self, secs: u64, needle: &str) {
        eventually(secs, &format!("proxy log contains {needle:?}"), || async {
            self.proxy.log().contains(needle).then_some(())
        })
        .await
    }
}

/// `count:md5` of a table's rows on one node, in an order that depends only on the rows.
pub async fn table_digest(node: &PgNode, table: &str) -> String {
    node.scalar(&format!(
        "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '-') \
         FROM {table} t"
    ))
    .await
}

/// Asserts `nodes` hold the same rows in each of `tables` (queried directly on each node);
/// returns the digests of the first node.
pub async fn assert_identical(nodes: &[&PgNode], tables: &[&str]) -> Vec<String> {
    let mut first = Vec::new();
    for table in tables {
        let digests = join_all(nodes.iter().map(|n| table_digest(n, table))).await;
        for (i, d) in digests.iter().enumerate() {
            assert_eq!(
                d,
                &digests[0],
                "table {table}: node {i} (port {}) differs from node 0 (port {}): {digests:?}",
                nodes[i].port(),
                nodes[0].port()
            );
        }
        first.push(digests[0].clone());
    }
    first
}

/// Runs `pgproxy verify --config <path>`; (exit code, stdout, stderr).
pub async fn verify(config: &Path) -> (i32, String, String) {
    let path = config.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgproxy"))
            .arg("verify")
            .arg("--config")
            .arg(path)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run pgproxy verify")
    })
    .await
    .expect("join verify");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Writes `config` to `<dir>/<name>` and runs `pgproxy verify` on it (e.g. over the survivors
/// of a failure); asserts exit code 0.
pub async fn assert_verify_ok_for(config: &ReplConfig, dir: &Path, name: &str) {
    let path = dir.join(name);
    std::fs::write(&path, config.render()).expect("write verify config");
    let (code, out, err) = verify(&path).await;
    assert_eq!(code, 0, "pgproxy verify:\nstdout:\n{out}\nstderr:\n{err}");
}

/// Committed-transaction count of database `app` on a node, fresh from the stats system.
pub async fn xact_commit(c: &Client) -> i64 {
    let sql = "SELECT pg_stat_clear_snapshot();
        SELECT sum(xact_commit) FROM pg_stat_database WHERE datname = current_database()";
    let rows = super::simple_rows(c, sql).await;
    let v = rows[1][0].as_deref().expect("xact_commit");
    v.parse().expect("number")
}
