//! Periodic health checks: one task per node of every replicated shard, each holding one
//! connection and running `SELECT 1` every `health.interval_ms`. A check that fails or takes
//! longer than `health.timeout_ms` counts; `health.failures` in a row mark the node down
//! (through the one state machine in `nodes`). A node that is down is no longer checked: it
//! returns only through online recovery.

use super::{Cluster, NodeState};
use crate::backend::{ConnectParams, ServerConn};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

impl Cluster {
    /// Starts the health-check tasks (shards with two or more nodes). They stop when `stop`
    /// is cancelled.
    pub fn spawn_health_checks(self: &Arc<Self>, stop: CancellationToken) {
        let cfg = self.config();
        if cfg.health.interval_ms == 0 {
            return;
        }
        for (s, shard) in cfg.shards.iter().enumerate() {
            if shard.nodes.len() < 2 {
                continue;
            }
            for n in 0..shard.nodes.len() {
                let cluster = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cluster.check_loop(s, n) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        }
    }

    /// Login used by health checks: the first user that can log in to nodes, on the first
    /// configured database (or `postgres`).
    fn health_params(&self, shard: usize, node: usize) -> Option<ConnectParams> {
        let cfg = self.config();
        let user = cfg
            .users
            .iter()
            .find(|u| u.server_password().is_some())
            .or_else(|| cfg.users.first())?;
        let db = match cfg.databases.first() {
            Some(d) => d.clone(),
            None => cfg.database("postgres")?,
        };
        let mut s = self.settings(&cfg, user, &db, shard, node);
        // The check's own timeout (below) bounds the connect too; this one only must not fire
        // first, so that a slow login is judged like a slow check.
        s.connect.connect_timeout = Duration::from_millis(cfg.health.timeout_ms.max(1) + 10_000);
        // Its own reads say nothing about the node's other connections.
        s.connect.activity = None;
        Some(s.connect)
    }

    async fn check_loop(&self, shard: usize, node: usize) {
        let mut conn: Option<ServerConn> = None;
        // The node's activity counter when the previous check began: a check that times out
        // while other connections kept reading from the node since then is slow, not failed.
        let activity = self.topology.activity(shard, node);
        let count = || activity.as_ref().map(|a| a.load(Ordering::Relaxed));
        let mut mark = count();
        loop {
            let cfg = self.config();
            let h = cfg.health.clone();
            tokio::time::sleep(Duration::from_millis(h.interval_ms.max(10))).await;
            if self.topology.state(shard, node) == NodeState::Down {
                return;
            }
            let Some(params) = self.health_params(shard, node) else {
                return;
            };
            let timeout = Duration::from_millis(h.timeout_ms.max(1));
            let started = count();
            let result = tokio::time::timeout(timeout, async {
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => ServerConn::connect(&params).await?,
                };
                c.run_internal("SELECT 1").await?;
                Ok::<_, crate::backend::BackendError>(c)
            })
            .await;
            let since = std::mem::replace(&mut mark, started);
            let (ok, detail) = match result {
                Ok(Ok(c)) => {
                    conn = Some(c);
                    (true, String::new())
                }
                Ok(Err(e)) => (false, e.to_string()),
                Err(_) if count() != since => {
                    // Slow (a saturated machine), not dead: it answered other connections
                    // meanwhile. Neither a failure nor a success.
                    warn!(
                        shard,
                        node,
                        timeout_ms = h.timeout_ms,
                        "health check slow, but the node answers other connections; not counted"
                    );
                    continue;
                }
                Err(_) => (false, format!("no answer within {} ms", h.timeout_ms)),
            };
            if !ok {
                warn!(shard, node, error = %detail, "health check failed");
            } else {
                debug!(shard, node, "health check ok");
            }
            if self
                .topology
                .health_result(shard, node, ok, h.failures, &detail)
            {
                self.detach_pools(shard, node);
                self.save_down_nodes();
                return;
            }
        }
    }
}
