//! `max_handshakes_in_flight`: each worker's cap on TLS handshakes in progress, with a
//! bounded FIFO wait queue in front of it.
//!
//! The gate is per worker (`Rc`, no `Send`): a handshake is CPU work on this worker's core,
//! so the cap is per core too, and nothing here is shared between workers. Waiting uses a
//! tokio `Semaphore`, which is FIFO and hands a freed permit to the oldest waiter (a
//! newcomer never overtakes the queue); a waiter that gives up leaves the queue cleanly.
//! Its lock is only ever taken by this worker's thread. A reload that changes the limit
//! starts a new semaphore: handshakes holding permits of the old one finish on it, so for
//! one handshake timeout the two together may exceed the new limit.
//!
//! A connection asks for a slot once its ClientHello has arrived (`tls::accept_tls_gated`):
//! a client that connects and says nothing costs no CPU and takes no slot (the handshake
//! deadline closes it), and the gate runs before any reply, so a refusal costs almost
//! nothing. This is where later admission layers (fair scheduling across countries,
//! resumption first, which needs the ClientHello) plug in: `acquire` is the one place a
//! new TLS connection waits.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::RejectReason;
use crate::stats::Shard;

/// One worker's handshake gate.
#[derive(Debug)]
pub struct HandshakeGate {
    /// (limit, its semaphore), replaced when the configured limit changes.
    current: RefCell<Option<(usize, Arc<Semaphore>)>>,
    waiting: Cell<usize>,
    shard: Arc<Shard>,
}

/// A handshake slot; frees it (for the next waiter) when dropped.
#[derive(Debug)]
pub struct HandshakePermit {
    _permit: Option<OwnedSemaphorePermit>,
}

/// The limits `acquire` applies (from `[admission]`).
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    /// Handshakes in flight on this worker; `None`: no limit.
    pub in_flight: Option<usize>,
    /// Waiters allowed.
    pub queue: usize,
    /// Longest wait.
    pub timeout: Duration,
}

impl HandshakeGate {
    /// A gate for one worker; its queue depth is published on `shard`.
    pub fn new(shard: Arc<Shard>) -> Rc<Self> {
        Rc::new(Self {
            current: RefCell::new(None),
            waiting: Cell::new(0),
            shard,
        })
    }

    /// Connections waiting for a handshake slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }

    fn semaphore(&self, limit: usize) -> Arc<Semaphore> {
        let mut current = self.current.borrow_mut();
        match current.as_ref() {
            Some((l, s)) if *l == limit => Arc::clone(s),
            _ => {
                let s = Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS)));
                *current = Some((limit, Arc::clone(&s)));
                s
            }
        }
    }

    fn set_waiting(&self, n: usize) {
        self.waiting.set(n);
        self.shard.set_handshake_queue_depth(n);
    }

    /// Waits for a handshake slot: at once when one is free, else in the queue (when it has
    /// room) for at most `limits.timeout`. `Err` names why the connection is refused.
    pub async fn acquire(&self, limits: GateLimits) -> Result<HandshakePermit, RejectReason> {
        let Some(limit) = limits.in_flight else {
            return Ok(HandshakePermit { _permit: None });
        };
        let semaphore = self.semaphore(limit);
        if let Ok(p) = Arc::clone(&semaphore).try_acquire_owned() {
            return Ok(HandshakePermit { _permit: Some(p) });
        }
        if self.waiting.get() >= limits.queue {
            return Err(RejectReason::HandshakeQueueFull);
        }
        self.set_waiting(self.waiting.get() + 1);
        // Leaves the queue count however the wait ends (slot, timeout, or dropped future).
        let _in_queue = Waiting(self);
        match tokio::time::timeout(limits.timeout, semaphore.acquire_owned()).await {
            Ok(Ok(p)) => Ok(HandshakePermit { _permit: Some(p) }),
            Ok(Err(_)) | Err(_) => Err(RejectReason::HandshakeQueueTimeout),
        }
    }
}

struct Waiting<'a>(&'a HandshakeGate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set_waiting(self.0.waiting.get().saturating_sub(1));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(in_flight: usize, queue: usize, ms: u64) -> GateLimits {
        GateLimits {
            in_flight: Some(in_flight),
            queue,
            timeout: Duration::from_millis(ms),
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn queue_full_and_timeout_are_refused() {
        let gate = HandshakeGate::new(Arc::new(Shard::new(0, 1)));
        let l = limits(1, 1, 100);
        let first = gate.acquire(l).await.unwrap();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let g = Rc::clone(&gate);
                let waiter = tokio::task::spawn_local(async move { g.acquire(l).await.is_ok() });
                tokio::task::yield_now().await;
                assert_eq!(gate.waiting(), 1);
                assert_eq!(gate.shard.handshake_queue_depth(), 1);
                let full = gate.acquire(l).await.map(|_| ()).unwrap_err();
                assert_eq!(full, RejectReason::HandshakeQueueFull);
                drop(first);
                assert!(waiter.await.unwrap(), "the waiter got the freed slot");
                assert_eq!(gate.waiting(), 0);
                let held = gate.acquire(l).await.unwrap();
                let late = gate.acquire(l).await.map(|_| ()).unwrap_err();
                assert_eq!(late, RejectReason::HandshakeQueueTimeout);
                assert_eq!(gate.waiting(), 0);
                drop(held);
            })
            .await;
        let unlimited = GateLimits {
            in_flight: None,
            ..l
        };
        let _many: Vec<_> = acquire_many(&gate, unlimited).await;
    }

    async fn acquire_many(gate: &HandshakeGate, l: GateLimits) -> Vec<HandshakePermit> {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(gate.acquire(l).await.unwrap());
        }
        v
    }
}
