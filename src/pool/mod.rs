//! Per-(user, database, node) pools of server connections: checkout with a wait queue and a
//! timeout, a guard that returns (or closes) the connection, idle reaping, min-idle upkeep, stats.
//! The pool never routes and never parses SQL.

mod guard;

pub use guard::Pooled;

use crate::backend::{BackendError, ConnectParams, ServerConn};
use crate::protocol::{sqlstate, ClientError};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Live-reloadable pool settings.
#[derive(Clone)]
pub struct PoolSettings {
    /// Maximum server connections.
    pub size: usize,
    /// Connections kept open even when idle.
    pub min_size: usize,
    /// How long a checkout waits.
    pub checkout_timeout: Duration,
    /// Idle connections older than this are closed (zero = never).
    pub idle_timeout: Duration,
    /// Connections older than this are closed when next idle (zero = never).
    pub lifetime: Duration,
    /// Query run before a connection changes hands after a session.
    pub reset_query: String,
    /// Shared prepared statements kept per server connection (0 = no limit).
    pub max_prepared: usize,
    /// How to connect.
    pub connect: ConnectParams,
}

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection became free in time.
    #[error("no server connection available within {timeout_ms} ms (pool of {size} for user \"{user}\", database \"{database}\" is busy)")]
    Timeout {
        /// Waited.
        timeout_ms: u128,
        /// Pool size.
        size: usize,
        /// User.
        user: String,
        /// Database.
        database: String,
    },
    /// Opening a new connection failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The pool was shut down.
    #[error("pgproxy is shutting down")]
    Closed,
}

impl ClientError for PoolError {
    fn sqlstate(&self) -> &'static str {
        match self {
            PoolError::Timeout { .. } => sqlstate::TOO_MANY_CONNECTIONS,
            PoolError::Backend(b) => b.sqlstate(),
            PoolError::Closed => sqlstate::ADMIN_SHUTDOWN,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            PoolError::Timeout { .. } => Some(
                "retry later, or raise pool_size / checkout_timeout_ms in the pgproxy config; \
                 long transactions hold server connections"
                    .into(),
            ),
            PoolError::Backend(b) => b.hint(),
            PoolError::Closed => None,
        }
    }
}

/// Counters, read by stats and the admin console.
#[derive(Default)]
pub struct PoolStats {
    /// Checkouts served.
    pub checkouts: AtomicU64,
    /// Checkouts that timed out.
    pub timeouts: AtomicU64,
    /// Server connections opened.
    pub connects: AtomicU64,
    /// Connections currently open (idle + in use).
    pub open: AtomicUsize,
}

pub(crate) struct PoolInner {
    /// Boxed: a connection moves between the queue, a `Pooled` and a session on every
    /// transaction, and a pointer moves cheaper than the struct.
    pub(crate) idle: Mutex<VecDeque<Box<ServerConn>>>,
    pub(crate) sem: Arc<Semaphore>,
    pub(crate) settings: ArcSwap<PoolSettings>,
    /// Permits currently in the semaphore's budget (tracks resizes).
    permits: Mutex<usize>,
    pub(crate) stats: PoolStats,
    closed: CancellationToken,
    /// Mirrors `closed` for the per-release check (a token's `is_cancelled` takes a lock).
    pub(crate) is_closed: std::sync::atomic::AtomicBool,
}

/// A handle to one pool; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    pub(crate) inner: Arc<PoolInner>,
}

impl Pool {
    /// Creates a pool and starts its maintenance task (idle reaping, min-idle upkeep).
    pub fn new(settings: PoolSettings) -> Pool {
        let size = settings.size.max(1);
        let inner = Arc::new(PoolInner {
            idle: Mutex::new(VecDeque::new()),
            sem: Arc::new(Semaphore::new(size)),
            settings: ArcSwap::from_pointee(settings),
            permits: Mutex::new(size),
            stats: PoolStats::default(),
            closed: CancellationToken::new(),
            is_closed: std::sync::atomic::AtomicBool::new(false),
        });
        let pool = Pool { inner };
        tokio::spawn(pool.clone().maintain());
        pool
    }

    /// Current settings.
    pub fn settings(&self) -> Arc<PoolSettings> {
        self.inner.settings.load_full()
    }

    /// Current settings, borrowed (cheaper than `settings` on a hot path; do not hold across
    /// `.await`).
    pub fn settings_ref(&self) -> arc_swap::Guard<Arc<PoolSettings>> {
        self.inner.settings.load()
    }

    /// Applies new settings (reload). Size changes take effect as connections are returned.
    pub fn reconfigure(&self, new: PoolSettings) {
        let size = new.size.max(1);
        let connect_changed = {
            let old = self.inner.settings.load();
            old.connect.user != new.connect.user
                || old.connect.password != new.connect.password
                || old.connect.database != new.connect.database
                || old.connect.tls != new.connect.tls
        };
        self.inner.settings.store(Arc::new(new));
        if connect_changed {
            // Connections made with the old login are closed as they come back.
            self.inner.idle.lock().clear();
        }
        let mut permits = self.inner.permits.lock();
        if size > *permits {
            self.inner.sem.add_permits(size - *permits);
            *permits = size;
        } else if size < *permits {
            let excess = *permits - size;
            *permits = size;
            let sem = self.inner.sem.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(excess as u32).await {
                    p.forget();
                }
            });
        }
    }

    /// Waits for a server connection (FIFO among waiters), up to the checkout timeout.
    pub async fn checkout(&self) -> Result<Pooled, PoolError> {
        self.checkout_for(0).await
    }

    /// Like `checkout`, but takes the idle connection `client` used last when there is one
    /// (`ServerConn::last_client`; 0: no preference).
    pub async fn checkout_for(&self, client: i32) -> Result<Pooled, PoolError> {
        let settings = self.inner.settings.load_full();
        let permit = match self.inner.sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let wait = tokio::time::timeout(
                    settings.checkout_timeout,
                    self.inner.sem.clone().acquire_owned(),
                );
                match wait.await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(PoolError::Closed),
                    Err(_) => {
                        self.inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(PoolError::Timeout {
                            timeout_ms: settings.checkout_timeout.as_millis(),
                            size: settings.size,
                            user: settings.connect.user.clone(),
                            database: settings.connect.database.clone(),
                        });
                    }
                }
            }
        };
        self.inner.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        while let Some(conn) = self.pop_idle(client) {
            if self.is_reusable(&conn, &settings) {
                return Ok(Pooled::new(conn, permit, self.inner.clone()));
            }
            self.close(conn);
        }
        let conn = self.connect(&settings).await?;
        Ok(Pooled::new(conn, permit, self.inner.clone()))
    }

    fn pop_idle(&self, client: i32) -> Option<Box<ServerConn>> {
        let mut idle = self.inner.idle.lock();
        if client != 0 {
            if let Some(i) = idle.iter().rposition(|c| c.last_client == client) {
                return idle.remove(i);
            }
        }
        // LIFO: the most recently used connection is warm and least likely to have timed out.
        idle.pop_back()
    }

    fn is_reusable(&self, conn: &ServerConn, s: &PoolSettings) -> bool {
        let lifetime_ok = s.lifetime.is_zero() || conn.created.elapsed() < s.lifetime;
        lifetime_ok && !conn.is_dead_while_idle()
    }

    async fn connect(&self, s: &PoolSettings) -> Result<Box<ServerConn>, PoolError> {
        let conn = Box::new(ServerConn::connect(&s.connect).await?);
        self.inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.inner.stats.open.fetch_add(1, Ordering::Relaxed);
        debug!(node = %conn.addr, pid = conn.pid, "server connection opened");
        Ok(conn)
    }

    fn close(&self, conn: Box<ServerConn>) {
        self.inner.stats.open.fetch_sub(1, Ordering::Relaxed);
        debug!(node = %conn.addr, pid = conn.pid, "server connection closed");
        drop(conn);
    }

    /// Stats for this pool.
    pub fn stats(&self) -> &PoolStats {
        &self.inner.stats
    }

    /// Number of idle connections.
    pub fn idle_count(&self) -> usize {
        self.inner.idle.lock().len()
    }

    /// Closes idle connections and stops maintenance; in-use connections close when returned.
    pub fn shutdown(&self) {
        self.inner.is_closed.store(true, Ordering::Release);
        self.inner.closed.cancel();
        self.inner.sem.close();
        let drained: Vec<_> = self.inner.idle.lock().drain(..).collect();
        for c in drained {
            self.close(c);
        }
    }

    async fn maintain(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(1000));
        loop {
            tokio::select! {
                _ = self.inner.closed.cancelled() => return,
                _ = tick.tick() => {}
            }
            let s = self.inner.settings.load_full();
            self.reap(&s);
            self.fill_min_idle(&s).await;
        }
    }

    fn reap(&self, s: &PoolSettings) {
        let open = self.inner.stats.open.load(Ordering::Relaxed);
        let mut expired = Vec::new();
        {
            let mut idle = self.inner.idle.lock();
            let mut keep = VecDeque::with_capacity(idle.len());
            let mut may_close = open.saturating_sub(s.min_size);
            while let Some(c) = idle.pop_front() {
                let too_old = !s.lifetime.is_zero() && c.created.elapsed() >= s.lifetime;
                let too_idle = !s.idle_timeout.is_zero() && c.last_used.elapsed() >= s.idle_timeout;
                if (too_old || (too_idle && may_close > 0)) || c.is_dead_while_idle() {
                    may_close = may_close.saturating_sub(1);
                    expired.push(c);
                } else {
                    keep.push_back(c);
                }
            }
            *idle = keep;
        }
        for c in expired {
            self.close(c);
        }
    }

    async fn fill_min_idle(&self, s: &PoolSettings) {
        while self.inner.stats.open.load(Ordering::Relaxed) < s.min_size.min(s.size) {
            let Ok(permit) = self.inner.sem.clone().try_acquire_owned() else {
                return;
            };
            match self.connect(s).await {
                Ok(mut c) => {
                    c.last_used = Instant::now();
                    self.inner.idle.lock().push_back(c);
                    drop(permit);
                }
                Err(e) => {
                    info!(error = %e, "could not open a min_pool_size connection");
                    return;
                }
            }
        }
    }
}
