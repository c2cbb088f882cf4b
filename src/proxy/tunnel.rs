//! The bytes of an upgraded connection (WebSocket or any protocol a backend switched to):
//! copied both ways until either side closes, the tunnel has been idle for the listener's
//! `upgrade_idle_timeout`, or a write to the client makes no progress for `send_timeout`
//! (the caller's stall watch: `watch::stalled` on HTTP/1, the h2 connection's own on h2).
//!
//! A tunnel is one request: its record (`RequestRecord`, status `101`, or `200` for an h2
//! extended CONNECT) completes when the tunnel ends, with the tunnel's duration and the bytes
//! each way, so stats and the access log count it once. It holds the backend's in-flight
//! slot for as long as it is open (`least_conn` and `max_connections` see it).
//!
//! Tunnels ignore drain: a hot reload or SIGTERM leaves them open (as in-flight requests),
//! and only the end of `shutdown_timeout` closes them.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tracing::debug;

use super::response_body::OnComplete;
use super::upstream::UpgradeWait;

/// The backend side of an upgrade, and the request it completes.
pub struct Tunnel<R: OnComplete> {
    /// Resolves to the backend connection once hyper lets go of it after its `101`.
    pub upstream: UpgradeWait,
    /// Completed when the tunnel ends.
    pub record: R,
    /// Counts the bytes from the client (the record's `bytes_in`).
    pub bytes_in: Rc<Cell<u64>>,
    /// `[listeners.http] upgrade_idle_timeout`.
    pub idle_timeout: Duration,
    /// `[listeners.http] send_timeout`: bounds the closing writes.
    pub send_timeout: Duration,
}

impl<R: OnComplete> std::fmt::Debug for Tunnel<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<R: OnComplete> Tunnel<R> {
    /// The client side never switched (it went away first): the request completes with
    /// nothing tunnelled.
    pub fn abandon(mut self) {
        self.record.complete(0);
    }

    /// Copies bytes between `client` and the backend until the tunnel ends, then closes both
    /// (TLS close_notify and FIN to the client) and completes the record. `stalled`
    /// resolves when a write to the client has made no progress for `send_timeout`.
    pub async fn run<C, F>(mut self, client: C, stalled: F)
    where
        C: AsyncRead + AsyncWrite + Unpin,
        F: std::future::Future<Output = ()>,
    {
        let upstream = match self.upstream.switched().await {
            Some(upgraded) => upgraded,
            None => {
                debug!("the backend's upgrade did not complete");
                let mut client = client;
                let _ = tokio::time::timeout(self.send_timeout, client.shutdown()).await;
                self.record.complete(0);
                return;
            }
        };
        let activity = Rc::new(Activity::new());
        let (mut client_rx, mut client_tx) =
            tokio::io::split(Active::new(client, Rc::clone(&activity)));
        let (mut backend_rx, mut backend_tx) =
            tokio::io::split(Active::new(upstream, Rc::clone(&activity)));
        // Either side's end (after what it sent is through) ends the tunnel, as nginx does:
        // a WebSocket is over once one side has closed, and a peer that half-closes and
        // waits would otherwise hold the tunnel until the idle timeout.
        let ended = tokio::select! {
            r = tokio::io::copy(&mut client_rx, &mut backend_tx) => ended_by("client", &r),
            r = tokio::io::copy(&mut backend_rx, &mut client_tx) => ended_by("backend", &r),
            () = activity.idle_for(self.idle_timeout) => "idle",
            () = stalled => "client stopped reading",
        };
        debug!(ended, "tunnel ended");
        let mut client = client_rx.unsplit(client_tx);
        let mut backend = backend_rx.unsplit(backend_tx);
        let _ = tokio::time::timeout(self.send_timeout, client.shutdown()).await;
        let _ = tokio::time::timeout(self.send_timeout, backend.shutdown()).await;
        self.bytes_in.set(self.bytes_in.get() + client.read_bytes);
        self.record.complete(backend.read_bytes);
    }
}

/// Why a tunnel ended, when one direction's copy did.
fn ended_by(side: &'static str, copied: &io::Result<u64>) -> &'static str {
    match (side, copied) {
        ("client", Ok(_)) => "client closed",
        ("client", Err(_)) => "client failed",
        (_, Ok(_)) => "backend closed",
        (_, Err(_)) => "backend failed",
    }
}

/// When bytes last moved through a tunnel.
#[derive(Debug)]
struct Activity {
    last: Cell<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            last: Cell::new(Instant::now()),
        }
    }

    /// Resolves once no byte has moved either way for `timeout`. Wakes once per `timeout`
    /// at most (a timer set to the last activity's deadline), not per byte.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = self.last.get() + timeout;
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One side of a tunnel: counts what is read from it and notes activity.
struct Active<S> {
    inner: S,
    activity: Rc<Activity>,
    read_bytes: u64,
}

impl<S> Active<S> {
    fn new(inner: S, activity: Rc<Activity>) -> Self {
        Self {
            inner,
            activity,
            read_bytes: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read_bytes += n as u64;
            self.activity.last.set(Instant::now());
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.activity.last.set(Instant::now());
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_fires_only_after_a_quiet_timeout() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(60);
        let started = Instant::now();
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.last.set(Instant::now());
        activity.idle_for(timeout).await;
        assert!(
            started.elapsed() >= Duration::from_secs(90),
            "not from the start"
        );
    }
}
