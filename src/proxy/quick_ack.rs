//! The upstream socket, ACKing what it reads at once ([`QuickAck`]).
//!
//! The stall this prevents (issue 14): levee sends a request right after connecting or
//! right after the previous response, so Linux puts the socket in "pingpong" (interactive)
//! mode and delays the ACK of what arrives next, hoping to carry it on data levee would send
//! back. Levee sends nothing until the response is complete. A backend that writes its
//! response head and body in two sends without TCP_NODELAY (Python's `http.server`, many dev
//! servers; any backend streaming small chunks) has Nagle's algorithm hold the second send
//! until the first is ACKed: each response then waits for the delayed-ACK timer, 40 ms.
//!
//! `TCP_QUICKACK` is not sticky: the kernel leaves quick-ACK mode again on its own. So it is
//! set after every read that returned data; when an ACK is pending, the kernel sends it then
//! and there. That is one `setsockopt` per read that returned bytes (reads of a response
//! whose bytes are all in already cost none, and hyper reads a small response in one). On
//! systems without `TCP_QUICKACK` this is a plain pass-through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that asks the kernel to ACK at once after each read that returned data.
#[derive(Debug)]
pub struct QuickAck {
    tcp: TcpStream,
}

impl QuickAck {
    /// Wraps a connected stream.
    pub fn new(tcp: TcpStream) -> Self {
        Self { tcp }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn ack_now(&self) {
        // Best effort: a failure leaves the kernel's own ACK timing, as without it.
        let _ = socket2::SockRef::from(&self.tcp).set_tcp_quickack(true);
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn ack_now(&self) {}
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.ack_now();
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
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
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
