//! Idle tracking for one downstream connection: closes it when no request has been in
//! flight for the listener's `idle_timeout` (HTTP/1 keep-alive and HTTP/2 alike).

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on a connection and when the last one started or ended.
#[derive(Debug)]
pub struct IdleTracker {
    active: Cell<usize>,
    last: Cell<Instant>,
    begun: Cell<bool>,
}

impl Default for IdleTracker {
    fn default() -> Self {
        Self {
            active: Cell::new(0),
            last: Cell::new(Instant::now()),
            begun: Cell::new(false),
        }
    }
}

impl IdleTracker {
    /// A request started.
    pub fn begin(&self) {
        self.active.set(self.active.get() + 1);
        self.last.set(Instant::now());
        self.begun.set(true);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_when_idle_for_the_timeout() {
        let t = IdleTracker::default();
        t.begin();
        let timeout = Duration::from_secs(5);
        let expired = tokio::time::timeout(Duration::from_secs(20), t.expired(timeout)).await;
        assert!(expired.is_err(), "expired while a request was in flight");
        t.end();
        let started = Instant::now();
        t.expired(timeout).await;
        assert!(started.elapsed() >= Duration::from_secs(5));
    }
}
