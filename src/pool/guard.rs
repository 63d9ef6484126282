//! `Pooled`: a checked-out server connection. Returning it is explicit (`release`) so the caller
//! states the connection is clean; dropping it without release closes the connection, so a
//! connection left mid-transaction or broken can never reach another client.

use super::PoolInner;
use crate::backend::ServerConn;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

/// A server connection on loan from a pool.
pub struct Pooled {
    conn: Option<Box<ServerConn>>,
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<PoolInner>,
}

impl Pooled {
    pub(super) fn new(
        conn: Box<ServerConn>,
        permit: OwnedSemaphorePermit,
        pool: Arc<PoolInner>,
    ) -> Self {
        Pooled {
            conn: Some(conn),
            permit: Some(permit),
            pool,
        }
    }

    /// Returns a clean, idle connection (ReadyForQuery 'I', nothing in flight) to the pool.
    pub fn release(mut self) {
        if let Some(mut c) = self.conn.take() {
            if self.pool.is_closed.load(Ordering::Acquire) || !c.rbuf.is_empty() {
                self.pool.stats.open.fetch_sub(1, Ordering::Relaxed);
            } else {
                c.last_used = Instant::now();
                self.pool.idle.lock().push_back(c);
            }
        }
        self.permit.take();
    }

    /// Runs the pool's reset query (session ended), then returns the connection; closes it if
    /// the reset fails. Runs in the background so the client is not kept waiting.
    pub fn reset_and_release(mut self) {
        let Some(mut c) = self.conn.take() else {
            return;
        };
        let permit = self.permit.take();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let reset = pool.settings.load().reset_query.clone();
            let ok = reset.trim().is_empty() || c.run_internal(&reset).await.is_ok();
            if ok && !pool.is_closed.load(Ordering::Acquire) {
                if reset.to_ascii_uppercase().contains("DISCARD ALL") {
                    c.forget_session_state();
                }
                c.last_used = Instant::now();
                pool.idle.lock().push_back(c);
            } else {
                pool.stats.open.fetch_sub(1, Ordering::Relaxed);
                debug!("server connection closed after failed reset");
            }
            drop(permit);
        });
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.stats.open.fetch_sub(1, Ordering::Relaxed);
            debug!("server connection closed (not released clean)");
        }
    }
}

impl Deref for Pooled {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        self.conn
            .as_ref()
            .expect("a Pooled holds its connection until released")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("a Pooled holds its connection until released")
    }
}
