//! `min_upload_rate`: a request body must average at least this many bytes per second once
//! its grace period is over; a slower one is cut and answered with 408.
//!
//! The check is lazy: a body is behind when `now > start + max(grace, received / rate)`,
//! so one timer per body is armed at that instant and moved forward as data arrives. It
//! only runs while the body is being read, so an upstream that reads slowly (back-pressure)
//! can make a client look slow only when it reads again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Longest time the clock looks ahead (keeps `Instant` arithmetic far from overflow).
const HORIZON: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// `start + d`, with `d` capped at `HORIZON`.
fn after(start: Instant, d: Duration) -> Instant {
    start.checked_add(d.min(HORIZON)).unwrap_or(start)
}

/// Error a request body ends with when the client sends it too slowly.
#[derive(Debug, thiserror::Error)]
#[error("request body slower than {rate} bytes/s")]
pub struct BodyTooSlow {
    /// The configured minimum rate.
    pub rate: u64,
}

/// The minimum-rate clock of one request body.
#[derive(Debug)]
pub struct UploadRate {
    rate: u64,
    grace: Duration,
    start: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
}

impl UploadRate {
    /// Starts the clock now: `rate` bytes per second after `grace`.
    pub fn new(rate: u64, grace: Duration) -> Self {
        let start = Instant::now();
        Self {
            rate: rate.max(1),
            grace,
            start,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(after(start, grace))),
        }
    }

    /// When the body falls behind unless more bytes arrive.
    fn deadline(&self) -> Instant {
        let secs = self.received as f64 / self.rate as f64;
        let earned = Duration::try_from_secs_f64(secs).unwrap_or(HORIZON);
        after(self.start, self.grace.max(earned))
    }

    /// `n` more body bytes arrived.
    pub fn received(&mut self, n: u64) {
        self.received = self.received.saturating_add(n);
        let deadline = self.deadline();
        if deadline != self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
    }

    /// Polled while the body waits for data: `Ready` once the client is behind.
    pub fn poll_behind(&mut self, cx: &mut Context<'_>) -> Poll<BodyTooSlow> {
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(BodyTooSlow { rate: self.rate }),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn behind_only_after_the_grace_and_below_the_rate() {
        let mut r = UploadRate::new(100, Duration::from_secs(2));
        let behind = |r: &mut UploadRate| {
            let waker = std::task::Waker::noop();
            r.poll_behind(&mut Context::from_waker(waker)).is_ready()
        };
        tokio::time::advance(Duration::from_millis(1900)).await;
        assert!(!behind(&mut r));
        r.received(300); // enough for 3 s
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(!behind(&mut r), "2.8 s, 300 bytes at 100/s: on time");
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(behind(&mut r), "3.1 s, 300 bytes: behind");
    }

    #[tokio::test(start_paused = true)]
    async fn huge_values_do_not_overflow() {
        let mut r = UploadRate::new(1, Duration::MAX);
        r.received(u64::MAX);
        r.received(u64::MAX);
        let mut r = UploadRate::new(u64::MAX, Duration::ZERO);
        r.received(1);
    }
}
