//! Waking idle sessions when a drain starts. Every idle session waits on it once per
//! transaction, so waiting must cost next to nothing: a session registers its task's waker
//! once and afterwards checks an atomic flag (a `CancellationToken` takes a lock on every
//! poll).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Set once when a drain starts; wakes every waiting session.
#[derive(Default)]
pub struct DrainSignal {
    started: AtomicBool,
    wakers: Mutex<HashMap<u64, Waker>>,
    next: AtomicU64,
}

impl DrainSignal {
    /// Starts the drain: every registered waiter is woken.
    pub fn start(&self) {
        self.started.store(true, Ordering::Release);
        let wakers: Vec<Waker> = self.wakers.lock().drain().map(|(_, w)| w).collect();
        for w in wakers {
            w.wake();
        }
    }

    /// True once a drain started.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// A future that resolves once the drain started.
    pub fn wait(self: &Arc<Self>) -> DrainWait {
        DrainWait {
            signal: self.clone(),
            registered: None,
        }
    }
}

/// Resolves once a drain started. Reusable across polls from the same task: the waker is
/// registered again only if the task's waker changes.
pub struct DrainWait {
    signal: Arc<DrainSignal>,
    registered: Option<(u64, Waker)>,
}

impl Future for DrainWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_started() {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_some_and(|(_, w)| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let key = match &self.registered {
            Some((k, _)) => *k,
            None => self.signal.next.fetch_add(1, Ordering::Relaxed),
        };
        self.signal.wakers.lock().insert(key, cx.waker().clone());
        self.registered = Some((key, cx.waker().clone()));
        // A drain that started while registering woke the list before this waker was in it.
        if self.signal.is_started() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for DrainWait {
    fn drop(&mut self) {
        if let Some((k, _)) = self.registered.take() {
            self.signal.wakers.lock().remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_the_drain_starts() {
        let signal = Arc::new(DrainSignal::default());
        let mut waits: Vec<_> = (0..3)
            .map(|_| {
                let mut w = signal.wait();
                tokio::spawn(async move {
                    // Polled several times before the drain: registered once.
                    for _ in 0..3 {
                        let r =
                            tokio::time::timeout(std::time::Duration::from_millis(5), &mut w).await;
                        assert!(r.is_err(), "no drain yet");
                    }
                    w.await;
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(signal.wakers.lock().len(), 3);
        signal.start();
        for w in waits.drain(..) {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("woken")
                .expect("no panic");
        }
        assert!(signal.wakers.lock().is_empty());
        // After the start, a new waiter is ready at once.
        signal.wait().await;
    }
}
