//! What a client connection's socket shows about the client, watched by [`Watched`]:
//!
//! - **Its first bytes.** A connection that has sent neither a whole HTTP/2 connection
//!   preface nor the start of a request within the listener's `header_timeout` is closed
//!   then ([`silent`]), as an HTTP/1 connection that sends nothing is (hyper's
//!   `header_read_timeout`). hyper's HTTP/2 server waits for the preface without a deadline,
//!   and on a plain listener the protocol detection reads the first bytes before hyper's
//!   HTTP/1 deadline starts: without this, such a connection was held until the idle
//!   timeout, or, on h2 over TLS, forever.
//! - **Writes that make no progress.** A client that stops reading fills its socket buffer
//!   and every write to it waits. [`stalled`] resolves when one has waited `send_timeout`
//!   without a byte getting through; the connection is then closed, and with it the
//!   request's backend connection and pool slot.
//!
//! The stream only counts and notes times; the deadlines are futures the connection's
//! `select!` races (`proxy::conn`).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::idle::IdleTracker;

/// Length of the HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
pub const PREFACE_LEN: usize = 24;

/// What [`Watched`] has seen, shared with the deadlines.
#[derive(Debug, Default)]
pub struct Watch {
    /// Bytes read so far, counted up to [`PREFACE_LEN`].
    seen: Cell<usize>,
    /// Since when a write has been waiting without progress, if one is.
    stalled_since: Cell<Option<Instant>>,
    /// The `stalled` deadline's waker, while it waits for a stall to begin.
    stall_waker: RefCell<Option<Waker>>,
}

impl Watch {
    /// A write is waiting: a stall begins now unless one already has.
    fn write_waits(&self) {
        if self.stalled_since.get().is_none() {
            self.stalled_since.set(Some(Instant::now()));
            if let Some(waker) = self.stall_waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// A write made progress: no stall.
    fn write_progressed(&self) {
        if self.stalled_since.get().is_some() {
            self.stalled_since.set(None);
        }
    }

    /// Whether no write is waiting.
    pub fn quiet(&self) -> bool {
        self.stalled_since.get().is_none()
    }

    /// Notes how a write-side poll ended.
    fn note<T>(&self, polled: &Poll<io::Result<T>>, progressed: impl Fn(&T) -> bool) {
        match polled {
            Poll::Pending => self.write_waits(),
            Poll::Ready(Ok(v)) if progressed(v) => self.write_progressed(),
            Poll::Ready(_) => {}
        }
    }
}

/// A client stream whose reads and writes are noted in a [`Watch`].
#[derive(Debug)]
pub struct Watched<I> {
    inner: I,
    watch: Rc<Watch>,
}

impl<I> Watched<I> {
    /// Wraps `inner`; `watch` receives what is seen.
    pub fn new(inner: I, watch: Rc<Watch>) -> Self {
        Self { inner, watch }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let seen = self.watch.seen.get();
        if seen < PREFACE_LEN {
            self.watch.seen.set(seen + (buf.filled().len() - before));
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch.note(&polled, |n| *n > 0);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch.note(&polled, |n| *n > 0);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch.note(&polled, |()| true);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves `within` from now if by then fewer than [`PREFACE_LEN`] bytes were read and no
/// request has begun (`idle`); else never.
pub async fn silent(watch: &Watch, idle: &IdleTracker, within: Duration) {
    tokio::time::sleep(within).await;
    if watch.seen.get() >= PREFACE_LEN || idle.has_begun() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once a write has waited `timeout` without progress. Wakes only when a stall
/// begins and when its deadline comes, not periodically.
pub async fn stalled(watch: &Watch, timeout: Duration) {
    loop {
        let since = poll_fn(|cx| match watch.stalled_since.get() {
            Some(since) => Poll::Ready(since),
            None => {
                *watch.stall_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        tokio::time::sleep_until(since + timeout).await;
        if watch.stalled_since.get() == Some(since) {
            return;
        }
        // Progress since (or a new stall that began later): wait for that one.
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silent_fires_only_without_a_preface_or_a_request() {
        let (client, server) = tokio::io::duplex(64);
        let watch = Rc::new(Watch::default());
        let mut server = Watched::new(server, Rc::clone(&watch));
        let idle = IdleTracker::default();
        let mut client = client;
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!((n, watch.seen.get()), (16, 16));
        // Half a preface: silent after the deadline.
        let deadline = Duration::from_secs(5);
        tokio::time::timeout(Duration::from_secs(6), silent(&watch, &idle, deadline))
            .await
            .unwrap();
        // The whole preface: never silent.
        client.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
        let _ = server.read(&mut buf).await.unwrap();
        assert_eq!(watch.seen.get(), PREFACE_LEN);
        let waited = tokio::time::timeout(Duration::from_secs(60), silent(&watch, &idle, deadline));
        assert!(waited.await.is_err());
        // No bytes, but a request began: never silent either.
        let quiet = Watch::default();
        idle.begin(false);
        let waited = tokio::time::timeout(Duration::from_secs(60), silent(&quiet, &idle, deadline));
        assert!(waited.await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_timeout_is_stalled_and_progress_resets_it() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (mut client, server) = tokio::io::duplex(16);
                let watch = Rc::new(Watch::default());
                let mut server = Watched::new(server, Rc::clone(&watch));
                let timeout = Duration::from_secs(30);
                // The client reads nothing: the 16-byte pipe fills and the write waits.
                let writer =
                    tokio::task::spawn_local(async move { server.write_all(&[7u8; 64]).await });
                tokio::task::yield_now().await;
                assert!(watch.stalled_since.get().is_some(), "the write waits");
                // Reading some lets it progress: the stall ends, and a new one begins.
                tokio::time::advance(Duration::from_secs(20)).await;
                let mut buf = [0u8; 16];
                client.read_exact(&mut buf).await.unwrap();
                tokio::task::yield_now().await;
                let started = Instant::now();
                tokio::time::timeout(Duration::from_secs(31), stalled(&watch, timeout))
                    .await
                    .unwrap();
                assert!(started.elapsed() >= Duration::from_secs(29), "too early");
                writer.abort();
            })
            .await;
    }
}
