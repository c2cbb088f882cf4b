//! Idle tracking for one downstream connection: closes it when no request has been in
//! flight for the listener's `idle_timeout` (HTTP/1 keep-alive and HTTP/2 alike), and tells
//! when an HTTP/1 connection is quiet enough to park (`proxy::conn`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on a connection and when the last one started or ended.
#[derive(Debug)]
pub struct IdleTracker {
    active: Cell<usize>,
    last: Cell<Instant>,
    begun: Cell<bool>,
    /// Set while the last request's body is still arriving (cleared by its `RequestBody`
    /// at the end of the stream): the connection is not between requests before then.
    body_open: Rc<Cell<bool>>,
    /// Set when parking found bytes of a next request already read, or when a parked
    /// connection wakes: no new attempt until a request begins, so its bytes reach hyper
    /// first and a client sending a head slowly still meets `header_timeout`.
    park_declined: Cell<bool>,
}

impl Default for IdleTracker {
    fn default() -> Self {
        Self {
            active: Cell::new(0),
            last: Cell::new(Instant::now()),
            begun: Cell::new(false),
            body_open: Rc::new(Cell::new(false)),
            park_declined: Cell::new(false),
        }
    }
}

impl IdleTracker {
    /// A request started; `with_body` when a body follows its head.
    pub fn begin(&self, with_body: bool) {
        self.active.set(self.active.get() + 1);
        self.last.set(Instant::now());
        self.begun.set(true);
        self.body_open.set(with_body);
        self.park_declined.set(false);
    }

    /// The flag the request's body clears once it has arrived whole.
    pub fn body_open(&self) -> Rc<Cell<bool>> {
        Rc::clone(&self.body_open)
    }

    /// Whether any request has begun on the connection.
    pub fn has_begun(&self) -> bool {
        self.begun.get()
    }

    /// A request finished (its response body was sent or dropped).
    pub fn end(&self) {
        self.active.set(self.active.get().saturating_sub(1));
        self.last.set(Instant::now());
    }

    /// No parking until the next request begins: see `park_declined`.
    pub fn decline_park(&self) {
        self.park_declined.set(true);
    }

    /// Resolves once the connection has had no request in flight for `timeout`.
    pub async fn expired(&self, timeout: Duration) {
        loop {
            if self.active.get() > 0 {
                // Busy: a request can only end later than now, so check again a timeout later.
                tokio::time::sleep(timeout).await;
                continue;
            }
            let deadline = self.last.get() + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }

    /// Resolves once the connection has been between requests for `after`: a request has
    /// been served, none is in flight, its body has arrived whole, and `quiet()` (no write
    /// waiting) holds. Checks once per `after` while busy, so a busy connection pays one
    /// timer wake per `after`, not one per request.
    pub async fn parkable(&self, after: Duration, quiet: impl Fn() -> bool) {
        loop {
            let between = self.begun.get()
                && self.active.get() == 0
                && !self.body_open.get()
                && !self.park_declined.get();
            if !between {
                tokio::time::sleep(after).await;
                continue;
            }
            let deadline = self.last.get() + after;
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
            } else if quiet() {
                return;
            } else {
                tokio::time::sleep(after).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_when_idle_for_the_timeout() {
        let t = IdleTracker::default();
        t.begin(false);
        let timeout = Duration::from_secs(5);
        let expired = tokio::time::timeout(Duration::from_secs(20), t.expired(timeout)).await;
        assert!(expired.is_err(), "expired while a request was in flight");
        t.end();
        let started = Instant::now();
        t.expired(timeout).await;
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn parkable_only_between_requests_with_the_body_in_and_nothing_to_write() {
        let t = IdleTracker::default();
        let after = Duration::from_secs(1);
        let long = Duration::from_secs(30);
        let waited = tokio::time::timeout(long, t.parkable(after, || true)).await;
        assert!(waited.is_err(), "parkable before any request");
        // A request in flight, then over with its body still arriving: not yet.
        t.begin(true);
        let waited = tokio::time::timeout(long, t.parkable(after, || true)).await;
        assert!(waited.is_err(), "parkable with a request in flight");
        t.end();
        let waited = tokio::time::timeout(long, t.parkable(after, || true)).await;
        assert!(waited.is_err(), "parkable while the body is still open");
        t.body_open().set(false);
        // A write waiting: not yet.
        let waited = tokio::time::timeout(long, t.parkable(after, || false)).await;
        assert!(waited.is_err(), "parkable with a write waiting");
        // Between requests: `after` after the last one ended.
        t.begin(false);
        t.end();
        let started = Instant::now();
        t.parkable(after, || true).await;
        assert!(started.elapsed() >= after);
        // Declined (a next request's bytes were read): not again until a request begins.
        t.decline_park();
        let waited = tokio::time::timeout(long, t.parkable(after, || true)).await;
        assert!(waited.is_err(), "parkable again after a decline");
        t.begin(false);
        t.end();
        tokio::time::timeout(long, t.parkable(after, || true))
            .await
            .unwrap_or_else(|_| panic!("a request after the decline makes it parkable again"));
    }
}
