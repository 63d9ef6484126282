//! CancelRequest routing: each client gets a BackendKeyData of pgproxy's own; the registry maps
//! it to the server connection currently running that client's query.

use bytes::{BufMut, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tracing::debug;

/// Where a cancel for a client should go right now.
#[derive(Clone, Debug)]
pub struct CancelTarget {
    /// Node `host:port`.
    pub addr: Arc<str>,
    /// Backend process id.
    pub pid: i32,
    /// Backend secret.
    pub secret: i32,
}

impl CancelTarget {
    /// The query running on a server connection.
    pub fn of(conn: &crate::backend::ServerConn) -> CancelTarget {
        CancelTarget {
            addr: conn.addr.clone(),
            pid: conn.pid,
            secret: conn.secret,
        }
    }
}

/// One client's slot: its secret and its current target.
pub struct CancelSlot {
    secret: i32,
    target: Mutex<Option<CancelTarget>>,
    /// A cancel was forwarded to the current target since the last `take_sent`.
    sent: AtomicBool,
}

impl CancelSlot {
    /// Sets (or clears) the server connection a cancel should reach.
    pub fn set(&self, t: Option<CancelTarget>) {
        *self.target.lock() = t;
    }

    /// Points cancels at `t` instead of the current target, atomically; returns whether a
    /// cancel was forwarded to the one replaced since the last `take_sent`/`swap` (and
    /// forgets it). A scatter read or COPY on other connections swaps its own target in and
    /// the session's back out: each learns whether its connection got a cancel.
    pub fn swap(&self, t: Option<CancelTarget>) -> bool {
        let mut target = self.target.lock();
        *target = t;
        self.sent.swap(false, Ordering::AcqRel)
    }

    /// Marks a cancel as forwarded to the current target again (what a `swap` returned for
    /// it, once it is back).
    pub fn restore_sent(&self, sent: bool) {
        if sent {
            self.sent.store(true, Ordering::Release);
        }
    }

    /// Whether a cancel was forwarded to the attached server connection (and forget it). Such
    /// a connection is closed rather than given to another client: PostgreSQL's postmaster
    /// signals the backend twice (its pid, then its process group), and a late second signal
    /// cancels whatever statement that backend runs next.
    pub fn take_sent(&self) -> bool {
        self.sent.swap(false, Ordering::AcqRel)
    }
}

/// pid → slot, for all connected clients.
#[derive(Default)]
pub struct CancelRegistry {
    slots: Mutex<HashMap<i32, Arc<CancelSlot>>>,
}

impl CancelRegistry {
    /// Registers a new client; returns its (pid, secret) and slot.
    pub fn register(&self) -> (i32, i32, Arc<CancelSlot>) {
        let mut slots = self.slots.lock();
        loop {
            let pid = rand::random::<i32>() & 0x3fff_ffff;
            if pid == 0 || slots.contains_key(&pid) {
                continue;
            }
            let secret = rand::random::<i32>();
            let slot = Arc::new(CancelSlot {
                secret,
                target: Mutex::new(None),
                sent: AtomicBool::new(false),
            });
            slots.insert(pid, slot.clone());
            return (pid, secret, slot);
        }
    }

    /// Removes a client's slot.
    pub fn unregister(&self, pid: i32) {
        self.slots.lock().remove(&pid);
    }

    /// Forwards a CancelRequest to the server connection serving that client, if any. Wrong
    /// secrets are ignored silently, as PostgreSQL does.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let target = {
            let slots = self.slots.lock();
            match slots.get(&pid) {
                Some(s) if s.secret == secret => {
                    // Marked under the target's lock: a session clearing the target (`set`)
                    // and then asking `take_sent` sees either no target here or the mark.
                    let t = s.target.lock();
                    if t.is_some() {
                        s.sent.store(true, Ordering::Release);
                    }
                    t.clone()
                }
                _ => None,
            }
        };
        let Some(t) = target else {
            debug!(pid, "cancel request for no running query");
            return;
        };
        send_cancel(&t).await;
    }
}

/// Sends a CancelRequest for the query running on a server connection.
pub async fn send_cancel(t: &CancelTarget) {
    let mut b = BytesMut::with_capacity(16);
    b.put_i32(16);
    b.put_i32(crate::protocol::startup::CANCEL_REQUEST);
    b.put_i32(t.pid);
    b.put_i32(t.secret);
    match tokio::net::TcpStream::connect(&*t.addr).await {
        Ok(mut s) => {
            let _ = s.write_all(&b).await;
            let _ = s.shutdown().await;
        }
        Err(e) => debug!(error = %e, "could not forward cancel request"),
    }
}
