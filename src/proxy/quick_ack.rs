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
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.ack.unacked.set(true),
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
