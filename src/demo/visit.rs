//! One synthetic visit of `levee demo`: connect to the demo-only loopback listener, send a
//! PROXY v2 header claiming the visitor's address, TLS (trusting exactly the demo's
//! generated certificate), then a few HTTP/1.1 requests on the kept-alive connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::proxy_v2;
use crate::tls::client_trust::{LoopbackVerifier, Trust};

/// Longest a whole visit may take, pauses included; a stuck visit is dropped.
pub const VISIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Client TLS settings: trust only `pinned` (the demo listener's generated certificate), and
/// keep TLS sessions (a returning visitor resumes) or not (a first-time visitor, or one
/// behind a VPN exit that never saw this site, does a full handshake).
pub fn client_config(
    provider: &Arc<CryptoProvider>,
    pinned: CertificateDer<'static>,
    keep_sessions: bool,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(LoopbackVerifier::new(
            Trust::Pinned(pinned),
            Arc::clone(provider),
        ))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if keep_sessions {
        Resumption::in_memory_sessions(64)
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// What one visit does.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The demo-only listener (loopback).
    pub target: SocketAddr,
    /// The visitor's claimed address, sent in the PROXY v2 header.
    pub client: SocketAddr,
    /// TLS settings (returning or new visitor).
    pub tls: Arc<ClientConfig>,
    /// Request paths, sent one after the other on one connection.
    pub paths: Vec<&'static str>,
    /// Pause between two requests ("reading the page").
    pub think: Duration,
}

/// Why a visit failed (logged at debug; the first failure at warn).
pub type VisitError = Box<dyn std::error::Error + Send + Sync>;

/// Runs one visit to the end, bounded by [`VISIT_TIMEOUT`].
pub async fn run(visit: Visit) -> Result<(), VisitError> {
    tokio::time::timeout(VISIT_TIMEOUT, run_unbounded(visit))
        .await
        .map_err(|_| "visit timed out")?
}

async fn run_unbounded(visit: Visit) -> Result<(), VisitError> {
    let mut tcp = TcpStream::connect(visit.target).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(&proxy_v2::encode(visit.client, visit.target))
        .await?;
    let name = ServerName::try_from("localhost")?;
    let tls = TlsConnector::from(visit.tls).connect(name, tcp).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
    let driver = tokio::spawn(conn);
    let result = async {
        for (i, path) in visit.paths.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(visit.think).await;
            }
            sender.ready().await?;
            let req = Request::get(*path)
                .header(header::HOST, "localhost")
                .header(header::USER_AGENT, "levee-demo-visitor")
                .body(Empty::<Bytes>::new())?;
            let resp = sender.send_request(req).await?;
            resp.into_body().collect().await?;
        }
        Ok::<_, VisitError>(())
    }
    .await;
    // Dropping the sender lets the connection close cleanly (close_notify, FIN); the driver
    // then ends, and is given a moment to.
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    result
}
