//! A connection's first bytes: one that has sent neither a whole HTTP/2 connection preface
//! nor the start of a request within the listener's `header_timeout` is closed then, as an
//! HTTP/1 connection that sends nothing is (hyper's `header_read_timeout`).
//!
//! hyper's HTTP/2 server waits for the preface without a deadline, and on a plain listener
//! the protocol detection (HTTP/1 or prior-knowledge h2) reads the first bytes before
//! hyper's HTTP/1 deadline starts: without this, such a connection was held until the idle
//! timeout, or, on h2 over TLS, forever. [`FirstBytes`] counts the bytes read until it has
//! seen a preface's worth; [`silent`] resolves when the deadline passed without them and
//! without a request.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::idle::IdleTracker;

/// Length of the HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
pub const PREFACE_LEN: usize = 24;

/// A stream that counts the bytes read from it, up to [`PREFACE_LEN`].
#[derive(Debug)]
pub struct FirstBytes<I> {
    inner: I,
    seen: Rc<Cell<usize>>,
}

impl<I> FirstBytes<I> {
    /// Wraps `inner`; `seen` receives the count.
    pub fn new(inner: I, seen: Rc<Cell<usize>>) -> Self {
        Self { inner, seen }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstBytes<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let seen = self.seen.get();
        if seen < PREFACE_LEN {
            self.seen.set(seen + (buf.filled().len() - before));
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstBytes<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves `within` from now if by then fewer than [`PREFACE_LEN`] bytes were read and no
/// request has begun (`idle`); else never.
pub async fn silent(seen: &Cell<usize>, idle: &IdleTracker, within: Duration) {
    tokio::time::sleep(within).await;
    if seen.get() >= PREFACE_LEN || idle.has_begun() {
        std::future::pending::<()>().await;
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
        let seen = Rc::new(Cell::new(0));
        let mut server = FirstBytes::new(server, Rc::clone(&seen));
        let idle = IdleTracker::default();
        let mut client = client;
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!((n, seen.get()), (16, 16));
        // Half a preface: silent after the deadline.
        let deadline = Duration::from_secs(5);
        tokio::time::timeout(Duration::from_secs(6), silent(&seen, &idle, deadline))
            .await
            .unwrap();
        // The whole preface: never silent.
        client.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
        let _ = server.read(&mut buf).await.unwrap();
        assert_eq!(seen.get(), PREFACE_LEN);
        let waited = tokio::time::timeout(Duration::from_secs(60), silent(&seen, &idle, deadline));
        assert!(waited.await.is_err());
        // No bytes, but a request began: never silent either.
        let quiet = Cell::new(0);
        idle.begin();
        let waited = tokio::time::timeout(Duration::from_secs(60), silent(&quiet, &idle, deadline));
        assert!(waited.await.is_err());
    }
}
