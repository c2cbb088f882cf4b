//! The upstream socket, ACKing what it has read at once when asked ([`QuickAck`]).
//!
//! The stall this prevents (issue 14): levee sends a request right after connecting or
//! right after the previous response, so Linux puts the socket in "pingpong" (interactive)
//! mode and delays the ACK of what arrives next, hoping to carry it on data levee would send
//! back. Levee sends nothing until the response is complete. A backend that writes its
//! response head and body in two sends without TCP_NODELAY (Python's `http.server`, many dev
//! servers; any backend streaming small chunks) has Nagle's algorithm hold the second send
//! until the first is ACKed: each response then waits for the delayed-ACK timer, 40 ms.
//!
//! `TCP_QUICKACK` is not sticky (the kernel leaves quick-ACK mode again on its own) and
//! each use costs a syscall and, when an ACK is pending, a packet of its own: set after
//! every read, it cost ~10% of levee's CPU per keep-alive request against a backend that
//! writes once (that ACK would otherwise ride on the next request). So it is set only when
//! a response is waited for: whoever relays a response body calls [`AckRequest::request`]
//! when the body has no more bytes yet (`Pending`); the socket's reader is woken, and its
//! next read first sets `TCP_QUICKACK`, which sends the pending ACK then and there. A
//! response that arrives whole (most backends) costs nothing; a head then a body costs one
//! ACK; a body streamed in small chunks costs one per wait. Nothing is done when nothing
//! was read since levee last sent on the socket (no ACK can be pending then). On systems
//! without `TCP_QUICKACK` this is a plain pass-through.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The way to ask an upstream socket for an immediate ACK of what it has read, shared by
/// the socket ([`QuickAck`]) and whoever relays its responses.
#[derive(Default)]
pub struct AckRequest {
    wanted: Cell<bool>,
    /// Bytes were read since the socket last sent anything (an ACK may be pending).
    unacked: Cell<bool>,
    /// The socket's reader, parked on a read that had nothing yet.
    reader: Cell<Option<Waker>>,
    /// Reads that returned bytes, counted: a response head's waiter compares against it.
    reads: Cell<u64>,
    /// A response head's waiter, woken by the next read that returns bytes.
    head_waiter: Cell<Option<Waker>>,
}

impl std::fmt::Debug for AckRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckRequest")
            .field("wanted", &self.wanted.get())
            .field("unacked", &self.unacked.get())
            .finish_non_exhaustive()
    }
}

impl AckRequest {
    /// Asks for the ACK: when bytes were read since the socket last sent anything, its
    /// parked reader is woken and sets `TCP_QUICKACK` on its next read; otherwise there is
    /// nothing to ACK and this costs nothing.
    pub fn request(&self) {
        if !self.unacked.get() {
            return;
        }
        self.wanted.set(true);
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
    }

    /// How many reads have returned bytes so far.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    /// Resolves once a read has returned bytes after the first `seen` did: part of a
    /// response has arrived.
    pub async fn bytes_after(&self, seen: u64) {
        std::future::poll_fn(|cx| {
            if self.reads.get() != seen {
                return Poll::Ready(());
            }
            self.head_waiter.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
    }

    /// A read returned bytes.
    fn read_bytes(&self) {
        self.unacked.set(true);
        self.reads.set(self.reads.get() + 1);
        if let Some(waiter) = self.head_waiter.take() {
            waiter.wake();
        }
    }

    /// Keeps the waker of a read that returned `Pending` (not cloned when it is the same).
    fn park(&self, waker: &Waker) {
        let parked = match self.reader.take() {
            Some(w) if w.will_wake(waker) => w,
            _ => waker.clone(),
        };
        self.reader.set(Some(parked));
    }
}

/// A TCP stream that ACKs what it has read at once when its [`AckRequest`] asks for it.
#[derive(Debug)]
pub struct QuickAck {
    tcp: TcpStream,
    ack: Rc<AckRequest>,
}

impl QuickAck {
    /// Wraps a connected stream; `ack` is how its ACKs are asked for.
    pub fn new(tcp: TcpStream, ack: Rc<AckRequest>) -> Self {
        Self { tcp, ack }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn ack_now(&self) {
        // Best effort: a failure leaves the kernel's own ACK timing, as without it.
        let _ = socket2::SockRef::from(&self.tcp).set_tcp_quickack(true);
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn ack_now(&self) {}

    /// What the socket sends carries the ACK of everything read before it.
    fn sent(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.ack.unacked.set(false);
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ack.wanted.replace(false) && this.ack.unacked.replace(false) {
            this.ack_now();
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        match polled {
            Poll::Pending => this.ack.park(cx.waker()),
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.ack.read_bytes(),
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.sent(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.sent(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn a_head_waiter_wakes_only_at_bytes_read_after_it_began() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let ack = Rc::new(AckRequest::default());
        let mut stream = QuickAck::new(tcp, Rc::clone(&ack));
        // A first exchange: its bytes were read before the wait begins.
        peer.write_all(b"old").await.unwrap();
        let mut buf = [0u8; 8];
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(n, 3);
        let seen = ack.reads();
        let early = tokio::time::timeout(Duration::from_millis(50), ack.bytes_after(seen));
        assert!(early.await.is_err(), "woke without new bytes");
        // New bytes: the waiter resolves once the socket's reader has read them.
        peer.write_all(b"new").await.unwrap();
        let (read, woke) = tokio::join!(stream.read(&mut buf), ack.bytes_after(seen));
        assert_eq!((read.unwrap(), woke), (3, ()));
        assert!(ack.unacked.get(), "bytes read since the last send");
        stream.write_all(b"x").await.unwrap();
        assert!(!ack.unacked.get(), "a send carries the ACK");
    }
}
