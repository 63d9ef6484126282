//! One client connection: startup and authentication, then the relay between the client and
//! server connections. `relay` is the one place that matches on message types.

mod auth;
mod batch;
pub use auth::VerifierCache;
mod cancel;
mod catalog;
mod client;
mod commit;
mod commit_main;
mod copy_fill;
mod cursors;
mod determinism;
mod drain;
mod error;
mod expect;
mod extended;
mod follower;
mod followers;
mod insert_columns;
mod keyless;
mod keyless_det;
mod keyless_request;
mod keyless_split;
mod lost;
mod merged_in_txn;
mod relay;
mod replica;
mod replica_copy;
mod response;
mod scatter;
mod scatter_ext;
mod settings;
mod shape;
mod shard;
mod shard_copy;
mod shard_copy_fill;
mod shard_copy_out;
mod shard_copy_rows;
mod startup;
mod statements;
mod txn_sets;
mod txn_ts;

pub use cancel::CancelRegistry;
pub use error::SessionError;
pub use statements::StatementCache;

use crate::cluster::Cluster;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, Instrument};

/// Counters across sessions.
#[derive(Default)]
pub struct SessionStats {
    /// Clients connected now.
    pub clients: AtomicUsize,
    /// Clients pinned to a server connection now (transaction mode).
    pub pinned: AtomicUsize,
    /// Times a client got pinned, since start.
    pub pins_total: AtomicU64,
    /// Transactions relayed.
    pub transactions: AtomicU64,
}

/// State shared by all sessions: passed down from the server, never global.
pub struct Shared {
    /// Config, topology and pools.
    pub cluster: Arc<Cluster>,
    /// BackendKeyData → server connection, for CancelRequest.
    pub cancels: CancelRegistry,
    /// Prepared statements known across clients.
    pub statements: StatementCache,
    /// SCRAM verifiers derived from plaintext passwords.
    pub verifiers: VerifierCache,
    /// Counters.
    pub stats: SessionStats,
    /// TLS acceptor for clients (None: answer SSLRequest with 'N').
    pub tls: ArcSwap<Option<TlsAcceptor>>,
    /// Set when a drain starts: no new sessions, idle ones close.
    pub draining: Arc<drain::DrainSignal>,
    /// Column defaults of written tables (deterministic writes).
    pub schema: determinism::SchemaCache,
    /// Global transaction ids for two-phase commit.
    pub gids: crate::replication::decision_log::GidGen,
    /// The two-phase commit decision log (set by the server once it is open).
    pub decisions: std::sync::OnceLock<Arc<crate::replication::decision_log::DecisionLog>>,
    next_id: AtomicU64,
}

impl Shared {
    /// Builds the shared state.
    pub fn new(cluster: Arc<Cluster>, tls: Option<TlsAcceptor>) -> Shared {
        Shared {
            cluster,
            cancels: CancelRegistry::default(),
            statements: StatementCache::default(),
            verifiers: VerifierCache::default(),
            stats: SessionStats::default(),
            tls: ArcSwap::from_pointee(tls),
            draining: Arc::default(),
            schema: determinism::SchemaCache::default(),
            gids: crate::replication::decision_log::GidGen::new(),
            decisions: std::sync::OnceLock::new(),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Shared {
    /// Starts a drain: new logins are refused, idle sessions close.
    pub fn start_drain(&self) {
        self.draining.start();
    }

    /// True once a drain started.
    pub fn is_draining(&self) -> bool {
        self.draining.is_started()
    }
}

/// Serves one client connection to its end. Never panics on network input.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = tcp.set_nodelay(true);
    shared.stats.clients.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("session", id, addr = %peer, user = tracing::field::Empty, db = tracing::field::Empty);
    async {
        match startup::establish(tcp, &shared).await {
            Ok(Some(session)) => {
                match session.run().await {
                    Ok(())
                    | Err(
                        SessionError::ClientGone
                        | SessionError::ClientIo(_)
                        | SessionError::Shutdown,
                    ) => {
                        debug!("session ended")
                    }
                    // pgproxy closed the client's connection: say why.
                    Err(e) => info!(error = %e, "session closed by pgproxy"),
                }
            }
            Ok(None) => {}
            Err(e) => debug!(error = %e, "session ended during startup"),
        }
    }
    .instrument(span)
    .await;
    shared.stats.clients.fetch_sub(1, Ordering::Relaxed);
}
