//! The timed TLS handshake with a deadline.
//!
//! Until the ClientHello arrives a waiting client costs only its socket and a small read
//! buffer; the handshake clock starts at the ClientHello so idle time is not counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::server::Acceptor;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::stats::HandshakeKind;

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
        }
    }
}

/// Runs the server side of a TLS handshake on `tcp`, within `deadline` from now.
pub async fn accept_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    deadline: Duration,
) -> Result<HandshakeOutcome, HandshakeError> {
    let until = tokio::time::Instant::now() + deadline;
    let mut hello_at: Option<Instant> = None;
    let handshake = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await;
        hello_at = Some(Instant::now());
        start?.into_stream(config).await
    };
    let result = tokio::time::timeout_at(until, handshake).await;
    let duration = hello_at.map_or(Duration::ZERO, |t| t.elapsed());
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
