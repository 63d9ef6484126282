//! Real-PostgreSQL integration harness shared by the test files in `tests/`.
//!
//! Owns: finding the PostgreSQL binaries, starting throwaway nodes ([`PgNode`]), running the built
//! `pgproxy` binary ([`Proxy`], [`ProxyConfig`]), client helpers (tokio-postgres, psql, pgbench)
//! and a raw wire-protocol client ([`wire::RawConn`]) for malformed-input tests.
//! Must not: share state between tests (every test starts its own nodes and proxy, on free ports,
//! in its own temp dirs, so tests run in parallel; the one thing shared is the read-only template
//! data dir nodes are copied from, `template.rs`) or wait without a bound (a hung proxy must fail
//! a test, not hang it).
#![allow(dead_code)]

pub mod binary;
mod client;
pub mod cluster;
mod config;
mod pg;
mod proxy;
pub mod rng;
pub mod sharded;
mod template;
pub mod wire;
pub mod workloads;

#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use config::*;
#[allow(unused_imports)]
pub use pg::*;
#[allow(unused_imports)]
pub use proxy::*;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The one command that installs what these tests need.
const INSTALL_HINT: &str =
    "run `scripts/test` (it installs PostgreSQL) or `apt-get install -y postgresql`";

/// Directory holding `initdb`, `postgres`, `psql` and `pgbench`.
///
/// `PGPROXY_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
/// Panics (never skips) when none is found.
pub fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PGPROXY_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").exists(),
            "PGPROXY_PG_BIN={} has no initdb; unset it or {INSTALL_HINT}",
            dir.display()
        );
        return dir;
    }
    if let Some(dir) = newest_debian_bin_dir() {
        return dir;
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").exists() {
            return dir;
        }
    }
    panic!("PostgreSQL server binaries (initdb, postgres) not found: {INSTALL_HINT}");
}

/// `/usr/lib/postgresql/<major>/bin` with the highest major version that has `initdb`.
fn newest_debian_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A PostgreSQL tool from [`pg_bin_dir`].
pub fn pg_tool(name: &str) -> PathBuf {
    pg_bin_dir().join(name)
}

/// A TCP port free right now on 127.0.0.1 (the OS picks it; a small race with other tests remains).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr of a bound socket").port()
}

/// Runs `fut`, panicking with `what` if it takes longer than `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s: {what}"),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with `what` after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("not reached within {secs}s: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `lines` lines of a text file ("" if unreadable), for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts a node and a proxy in front of it, configured by `configure` (applied to
/// [`ProxyConfig::new`]). Bind as `let (node, proxy) = ...` so the proxy drops first.
pub async fn node_and_proxy(configure: impl FnOnce(ProxyConfig) -> ProxyConfig) -> (PgNode, Proxy) {
    let node = PgNode::start().await;
    let proxy = Proxy::start(&configure(ProxyConfig::new(node.port())).render()).await;
    (node, proxy)
}
