//! The timed TLS handshake with a deadline.
//!
//! Until the ClientHello arrives a waiting client costs only its socket and a small read
//! buffer; the handshake clock starts at the ClientHello so idle time is not counted.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::server::Acceptor;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::labels::{HandshakeKind, RejectReason};

/// A completed handshake.
#[derive(Debug)]
pub struct HandshakeOutcome {
    /// The TLS stream, ready for HTTP.
    pub stream: TlsStream<TcpStream>,
    /// Full or resumed.
    pub kind: HandshakeKind,
    /// Time from ClientHello to handshake completion.
    pub duration: Duration,
}

impl HandshakeOutcome {
    /// Whether ALPN chose HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.stream.get_ref().1.alpn_protocol() == Some(b"h2")
    }

    /// The SNI the client sent, if any.
    pub fn sni(&self) -> Option<&str> {
        self.stream.get_ref().1.server_name()
    }

    /// The stream, out of a boxed outcome (the box freed).
    pub fn into_stream(self: Box<Self>) -> TlsStream<TcpStream> {
        self.stream
    }
}

/// What holds a handshake slot: told the CPU time the handshake took on this worker (the
/// ClientHello's processing, the key exchange and signature, every poll after).
pub trait HandshakeSlot {
    /// The handshake's work is over: it took `spent` of this thread's time.
    fn handshake_work(&self, spent: Duration);
}

impl HandshakeSlot for () {
    fn handshake_work(&self, _: Duration) {}
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The deadline passed first.
    #[error("TLS handshake timed out")]
    Timeout {
        /// Time spent after the ClientHello (zero when it never came).
        duration: Duration,
    },
    /// Admission control refused the connection after its ClientHello, before any byte of
    /// the handshake was sent (not a handshake failure).
    #[error("refused before the TLS handshake: {}", .0.as_str())]
    Refused(RejectReason),
    /// The peer sent something that is not TLS, or the handshake failed.
    #[error("TLS handshake failed: {source}")]
    Failed {
        /// Underlying error.
        source: std::io::Error,
        /// Time spent after the ClientHello (zero when it never came).
        duration: Duration,
    },
}

impl HandshakeError {
    /// Time spent in the handshake proper.
    pub fn duration(&self) -> Duration {
        match self {
            HandshakeError::Timeout { duration } | HandshakeError::Failed { duration, .. } => {
                *duration
            }
            HandshakeError::Refused(_) => Duration::ZERO,
        }
    }
}

/// Runs the server side of a TLS handshake on `tcp`, within `deadline` from now.
pub async fn accept_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    deadline: Duration,
) -> Result<HandshakeOutcome, HandshakeError> {
    let open = |_resuming: bool| async { Ok::<(), RejectReason>(()) };
    accept_tls_gated(tcp, config, deadline, false, open).await
}

/// Like [`accept_tls`], with an admission gate between the ClientHello and the handshake
/// proper: `gate(resuming)` is polled once the ClientHello has arrived (before any reply),
/// and the value it resolves to is held until the handshake ends. Its `Err` refuses the
/// connection (`HandshakeError::Refused`). Time spent waiting at the gate extends
/// `deadline` and is not counted in the handshake duration. With `classify`, the first
/// bytes are peeked (within the same deadline) to tell the gate whether the ClientHello
/// offers to resume a session (`super::hello`); without it, `resuming` is false.
pub async fn accept_tls_gated<P, G>(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    deadline: Duration,
    classify: bool,
    gate: impl FnOnce(bool) -> G,
) -> Result<HandshakeOutcome, HandshakeError>
where
    P: HandshakeSlot,
    G: Future<Output = Result<P, RejectReason>>,
{
    let until = tokio::time::Instant::now() + deadline;
    let resuming = if classify {
        let mut buf = [0u8; super::hello::PEEK_BYTES];
        match tokio::time::timeout_at(until, tcp.peek(&mut buf)).await {
            Err(_) => {
                let duration = Duration::ZERO;
                return Err(HandshakeError::Timeout { duration });
            }
            // A closed or failed socket: the acceptor below reports it.
            Ok(Err(_)) => false,
            Ok(Ok(n)) => buf
                .get(..n)
                .is_some_and(super::hello::is_resumption_attempt),
        }
    } else {
        false
    };
    let hello = tokio::time::timeout_at(until, LazyConfigAcceptor::new(Acceptor::default(), tcp));
    let start = match hello.await {
        Err(_) => {
            let duration = Duration::ZERO;
            return Err(HandshakeError::Timeout { duration });
        }
        Ok(Err(source)) => {
            let duration = Duration::ZERO;
            return Err(HandshakeError::Failed { source, duration });
        }
        Ok(Ok(start)) => start,
    };
    let waiting = Instant::now();
    // A client that gives up while its connection waits for a slot is let go at once: its
    // queue place freed, and no handshake done for nobody when the slot comes.
    let slot = tokio::select! {
        biased;
        slot = gate(resuming) => slot.map_err(HandshakeError::Refused)?,
        () = client_left(&start.io) => {
            let source = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the client left while waiting for a handshake slot",
            );
            let duration = Duration::ZERO;
            return Err(HandshakeError::Failed { source, duration });
        }
    };
    let waited = waiting.elapsed();
    let hello_at = Instant::now();
    // The ClientHello is processed (key exchange, signature) when the stream is made: that
    // and every poll after is the handshake's work on this thread.
    let mut accept = start.into_stream(config);
    let mut work = hello_at.elapsed();
    let timed = poll_fn(|cx| {
        let polled = Instant::now();
        let r = Pin::new(&mut accept).poll(cx);
        work += polled.elapsed();
        r
    });
    let result = tokio::time::timeout_at(until + waited, timed).await;
    slot.handshake_work(work);
    drop(slot);
    let duration = hello_at.elapsed();
    match result {
        Err(_) => Err(HandshakeError::Timeout { duration }),
        Ok(Err(source)) => Err(HandshakeError::Failed { source, duration }),
        Ok(Ok(stream)) => {
            let kind = match stream.get_ref().1.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => HandshakeKind::Resumed,
                _ => HandshakeKind::Full,
            };
            Ok(HandshakeOutcome {
                stream,
                kind,
                duration,
            })
        }
    }
}

/// Resolves when the client has closed or reset its side (it will never finish a
/// handshake); never when it sends more bytes (left for the handshake to read).
async fn client_left(tcp: &TcpStream) {
    let mut byte = [0u8; 1];
    match tcp.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
