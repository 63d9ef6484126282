//! Node states within each shard: one state machine, logged at info on every transition.
//!
//! A node starts `Up`. It goes `Down` when health checks fail `health.failures` times in a row,
//! when a connection to it breaks mid-statement, or when its outcome of a write disagrees with
//! the main's (quarantine). A node that went down never comes back by itself: it may have
//! missed writes, so it is stale until online recovery rebuilds it. The last `Up` node of a
//! shard is never marked down (there is nothing to fail over to, and it holds every write).
//! The main of a shard is its first `Up` node, in config order.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Serving reads and writes.
    Up,
    /// Detached: stale until online recovery re-attaches it.
    Down,
}

impl NodeState {
    /// Lowercase name for logs and the admin console.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
        }
    }
}

/// Why a node is being detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachCause {
    /// Consecutive failed health checks.
    HealthCheck,
    /// A connection failed while a statement ran on it.
    ConnectionFailed,
    /// Its result of a write differed from the main's.
    Divergence,
    /// The second phase of a commit failed on it after others committed.
    CommitFailed,
    /// A previous run of pgproxy detached it (recorded beside the decision log).
    Recorded,
}

impl DetachCause {
    fn as_str(self) -> &'static str {
        match self {
            DetachCause::HealthCheck => "health checks failed",
            DetachCause::ConnectionFailed => "connection failed mid-statement",
            DetachCause::Divergence => "result differed from the main node's",
            DetachCause::CommitFailed => "commit failed after other nodes committed",
            DetachCause::Recorded => "detached by an earlier run",
        }
    }
}

struct NodeStatus {
    state: AtomicU8,
    failures: AtomicU32,
    reason: Mutex<String>,
    /// Reads from the node by any server connection (see `activity`).
    activity: Arc<AtomicU64>,
    /// Cancelled when the node is detached: work waiting on it gives up.
    detached: CancellationToken,
}

const UP: u8 = 0;
const DOWN: u8 = 1;

/// The state of every node of every shard.
pub struct Topology {
    shards: Vec<Vec<NodeStatus>>,
    /// Transitions to down since start.
    pub detached_total: AtomicU64,
    /// Nodes detached because their result differed from the main's.
    pub divergences_total: AtomicU64,
    /// Times a shard's main changed.
    pub failovers_total: AtomicU64,
    lock: Mutex<()>,
}

impl Topology {
    /// All nodes up; `sizes[i]` is the node count of shard i.
    pub fn new(sizes: &[usize]) -> Topology {
        Topology {
            shards: sizes
                .iter()
                .map(|&n| {
                    (0..n)
                        .map(|_| NodeStatus {
                            state: AtomicU8::new(UP),
                            failures: AtomicU32::new(0),
                            reason: Mutex::new(String::new()),
                            activity: Arc::new(AtomicU64::new(0)),
                            detached: CancellationToken::new(),
                        })
                        .collect()
                })
                .collect(),
            detached_total: AtomicU64::new(0),
            divergences_total: AtomicU64::new(0),
            failovers_total: AtomicU64::new(0),
            lock: Mutex::new(()),
        }
    }

    /// Number of nodes configured for a shard.
    pub fn node_count(&self, shard: usize) -> usize {
        self.shards.get(shard).map_or(0, Vec::len)
    }

    /// A node's state (Down for an unknown node).
    pub fn state(&self, shard: usize, node: usize) -> NodeState {
        match self.status(shard, node) {
            Some(s) if s.state.load(Ordering::Acquire) == UP => NodeState::Up,
            _ => NodeState::Down,
        }
    }

    /// A counter every server connection to the node bumps when it reads from it: a health
    /// check that times out while it moves is on a slow node, not a dead one.
    pub fn activity(&self, shard: usize, node: usize) -> Option<Arc<AtomicU64>> {
        self.status(shard, node).map(|s| s.activity.clone())
    }

    /// Cancelled when the node is detached (at once for an unknown node): a session waiting
    /// for a node's answer also waits on this, so a node that hangs (frozen, not closed) and
    /// is detached by health checks releases its waiters.
    pub fn detached_signal(&self, shard: usize, node: usize) -> CancellationToken {
        match self.status(shard, node) {
            Some(s) => s.detached.clone(),
            None => {
                let t = CancellationToken::new();
                t.cancel();
                t
            }
        }
    }

    /// Why a node is down ("" when up).
    pub fn reason(&self, shard: usize, node: usize) -> String {
        self.status(shard, node)
            .map(|s| s.reason.lock().clone())
            .unwrap_or_default()
    }

    fn status(&self, shard: usize, node: usize) -> Option<&NodeStatus> {
        self.shards.get(shard).and_then(|s| s.get(node))
    }

    /// The shard's main: its first up node.
    pub fn main(&self, shard: usize) -> Option<usize> {
        self.shards
            .get(shard)?
            .iter()
            .position(|n| n.state.load(Ordering::Acquire) == UP)
    }

    /// The shard's up nodes, in config order.
    pub fn up_nodes(&self, shard: usize) -> Vec<usize> {
        self.shards.get(shard).map_or_else(Vec::new, |s| {
            s.iter()
                .enumerate()
                .filter(|(_, n)| n.state.load(Ordering::Acquire) == UP)
                .map(|(i, _)| i)
                .collect()
        })
    }

    /// Marks a node down. Returns false if it was already down or is the shard's last up
    /// node (which is kept: it has every write).
    pub fn detach(&self, shard: usize, node: usize, cause: DetachCause, detail: &str) -> bool {
        let _g = self.lock.lock();
        let Some(status) = self.status(shard, node) else {
            return false;
        };
        if status.state.load(Ordering::Acquire) != UP {
            return false;
        }
        if self.up_nodes(shard).len() <= 1 {
            error!(
                shard,
                node,
                cause = cause.as_str(),
                detail,
                "the last up node of the shard failed; keeping it attached"
            );
            return false;
        }
        let was_main = self.main(shard) == Some(node);
        status.state.store(DOWN, Ordering::Release);
        status.detached.cancel();
        *status.reason.lock() = format!("{}: {detail}", cause.as_str());
        self.detached_total.fetch_add(1, Ordering::Relaxed);
        if cause == DetachCause::Divergence {
            self.divergences_total.fetch_add(1, Ordering::Relaxed);
            error!(
                shard,
                node, detail, "node quarantined: its result differed from the main's"
            );
        }
        info!(
            shard,
            node,
            from = "up",
            to = "down",
            cause = cause.as_str(),
            detail,
            "node state changed"
        );
        if was_main {
            self.failovers_total.fetch_add(1, Ordering::Relaxed);
            info!(shard, old_main = node, new_main = ?self.main(shard), "failover: the shard has a new main node");
        }
        true
    }

    /// Records a health check result. Returns true when this check marked the node down.
    pub fn health_result(
        &self,
        shard: usize,
        node: usize,
        ok: bool,
        threshold: u32,
        detail: &str,
    ) -> bool {
        let Some(status) = self.status(shard, node) else {
            return false;
        };
        if ok {
            status.failures.store(0, Ordering::Relaxed);
            return false;
        }
        let n = status.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= threshold.max(1) && self.detach(shard, node, DetachCause::HealthCheck, detail)
    }
}
