//! The process: listener, accept loop, signals (SIGHUP reload, SIGTERM drain, SIGINT exit),
//! and shutdown. Builds the shared state and hands it to each session.

use crate::cluster::Cluster;
use crate::config::Config;
use crate::net::{server_acceptor, TlsError};
use crate::replication::decision_log::{DecisionLog, LogError};
use crate::replication::resolve::{resolve_in_doubt, Pass, ResolveError};
use crate::session::{self, Shared};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// Address.
        addr: String,
        /// OS error.
        message: String,
    },
    /// TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The cluster cannot be built from the config.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Installing signal handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(String),
    /// The two-phase commit decision log cannot be opened.
    #[error(transparent)]
    DecisionLog(#[from] LogError),
    /// In-doubt prepared transactions could not be looked for.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

fn client_tls(cfg: &Config) -> Result<Option<TlsAcceptor>, TlsError> {
    match (&cfg.general.tls_cert_file, &cfg.general.tls_key_file) {
        (Some(c), Some(k)) => Ok(Some(server_acceptor(c, k)?)),
        _ => Ok(None),
    }
}

/// Runs pgproxy until SIGTERM (after draining) or SIGINT.
pub async fn run(config: Config, config_path: PathBuf) -> Result<(), ServerError> {
    let listen = config.general.listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| ServerError::Listen {
            addr: listen.clone(),
            message: e.to_string(),
        })?;
    let tls = client_tls(&config)?;
    // Sessions record their commit decisions in it.
    let (decisions, left) = open_and_resolve(&config).await?;
    let cluster = Arc::new(Cluster::new(config)?);
    let shared = Arc::new(Shared::new(cluster.clone(), tls));
    let _ = shared.decisions.set(decisions.clone());
    let health_stop = tokio_util::sync::CancellationToken::new();
    let _health_guard = health_stop.clone().drop_guard();
    cluster.spawn_health_checks(health_stop.clone());
    if left {
        tokio::spawn(retry_resolution(shared.clone(), decisions, health_stop));
    }
    let sig = |k: SignalKind| signal(k).map_err(|e| ServerError::Signals(e.to_string()));
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    );
    let tracker = TaskTracker::new();
    info!(addr = %listen, "pgproxy listening");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tracker.spawn(session::serve(tcp, peer, shared.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = hup.recv() => reload(&shared, &config_path),
            _ = term.recv() => {
                info!("SIGTERM: draining (no new connections; open transactions may finish)");
                break;
            }
            _ = int.recv() => {
                info!("SIGINT: exiting now");
                cluster.shutdown();
                return Ok(());
            }
        }
    }
    drop(listener);
    shared.start_drain();
    tracker.close();
    let timeout = Duration::from_millis(cluster.config().general.shutdown_timeout_ms);
    tokio::select! {
        _ = tracker.wait() => info!("all sessions ended"),
        _ = tokio::time::sleep(timeout) => warn!(open = tracker.len(), "shutdown_timeout_ms reached; closing remaining sessions"),
        _ = int.recv() => info!("SIGINT during drain: exiting now"),
    }
    cluster.shutdown();
    Ok(())
}

/// Opens the decision log and resolves transactions left prepared by an earlier run, before
/// any client is accepted (no session can be between the two phases yet).
/// Returns the log and whether a node or a main could not be reached, or a gid could not be
/// resolved (worth looking again while running).
async fn open_and_resolve(config: &Config) -> Result<(Arc<DecisionLog>, bool), ServerError> {
    let log = Arc::new(DecisionLog::open(Path::new(
        &config.replication.decision_log,
    ))?);
    let report = resolve_in_doubt(config, &log, Pass::Startup).await?;
    info!(path = %log.path().display(), %report, "in-doubt prepared transactions resolved");
    Ok((log, report.left_any()))
}

/// Longest pause between two retries of in-doubt resolution.
const RESOLVE_RETRY_MAX: Duration = Duration::from_secs(60);

/// Resolution at start left prepared transactions (a node, or the main a gid names, could not
/// be reached): looks again, 1 s after start and then backing off to a minute, until a pass
/// finds nothing left. Followers' prepared transactions hold their row locks meanwhile: a main
/// detached since (or back) must not leave them so until the next start.
async fn retry_resolution(
    shared: Arc<Shared>,
    log: Arc<DecisionLog>,
    stop: tokio_util::sync::CancellationToken,
) {
    let pass = Pass::Retry {
        own_instance: shared.gids.instance().to_string(),
    };
    let mut pause = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
        let config = shared.cluster.config();
        match resolve_in_doubt(&config, &log, pass.clone()).await {
            Ok(report) if !report.left_any() => {
                info!(%report, "in-doubt prepared transactions left at start: all resolved");
                return;
            }
            Ok(report) => info!(%report, "in-doubt prepared transactions: some still left"),
            Err(e) => warn!(error = %e, "in-doubt resolution failed"),
        }
        pause = (pause * 2).min(RESOLVE_RETRY_MAX);
    }
}

/// Re-reads the config file; an invalid one is refused and the old one kept.
fn reload(shared: &Shared, path: &Path) {
    info!(path = %path.display(), "SIGHUP: reloading configuration");
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!(problems = %e.render(&path.display().to_string()), "new configuration refused; keeping the old one");
            return;
        }
    };
    let tls = match client_tls(&new) {
        Ok(t) => t,
        Err(e) => {
            error!(error = %e, "new TLS settings refused; keeping the old configuration");
            return;
        }
    };
    match shared.cluster.reload(new) {
        Ok(()) => shared.tls.store(Arc::new(tls)),
        Err(e) => error!(error = %e, "new configuration refused; keeping the old one"),
    }
}
