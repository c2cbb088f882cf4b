//! A rustls + hyper client: TLS with a chosen trust, versions, ALPN and resumption, then one
//! HTTP/1.1 or h2 connection whose handshake facts are kept next to the responses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::body::{TestBody, empty};

/// Upper bound for any single client step (connect, handshake, response, body).
pub const STEP: Duration = Duration::from_secs(30);

/// The aws-lc-rs provider, as levee uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS 1.3 only.
pub const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
/// TLS 1.2 only.
pub const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
/// Both versions.
pub const TLS_ANY: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Client TLS settings.
#[derive(Debug, Clone)]
pub struct TlsOpts {
    /// Protocol versions offered.
    pub versions: &'static [&'static SupportedProtocolVersion],
    /// ALPN protocols offered.
    pub alpn: Vec<Vec<u8>>,
    /// Resumption settings (the default keeps an in-memory session cache).
    pub resumption: Resumption,
    /// Whether SNI is sent.
    pub sni: bool,
}

impl Default for TlsOpts {
    fn default() -> Self {
        Self {
            versions: TLS_ANY,
            alpn: vec![b"http/1.1".to_vec()],
            resumption: Resumption::default(),
            sni: true,
        }
    }
}

impl TlsOpts {
    /// Offers only h2.
    pub fn h2(mut self) -> Self {
        self.alpn = vec![b"h2".to_vec()];
        self
    }
    /// Offers only http/1.1.
    pub fn h1(mut self) -> Self {
        self.alpn = vec![b"http/1.1".to_vec()];
        self
    }
    /// Offers these versions only.
    pub fn versions(mut self, v: &'static [&'static SupportedProtocolVersion]) -> Self {
        self.versions = v;
        self
    }
}

/// A client config trusting only `ca`.
pub fn client_config(ca: &CertificateDer<'static>, opts: TlsOpts) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("add CA");
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(opts.versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    apply(&mut config, opts);
    Arc::new(config)
}

/// A client config that accepts any server certificate (to see what the server presents).
pub fn client_config_insecure(opts: TlsOpts) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(opts.versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        .with_no_client_auth();
    apply(&mut config, opts);
    Arc::new(config)
}

fn apply(config: &mut ClientConfig, opts: TlsOpts) {
    config.alpn_protocols = opts.alpn;
    config.resumption = opts.resumption;
    config.enable_sni = opts.sni;
}

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What the TLS handshake produced, seen from the client.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// Full or resumed.
    pub handshake: Option<rustls::HandshakeKind>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// Leaf certificate the server presented.
    pub peer_cert: Option<CertificateDer<'static>>,
    /// Negotiated protocol version.
    pub version: Option<rustls::ProtocolVersion>,
}

/// Connects TCP then TLS (bounded); `server_name` is used for SNI and verification.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> std::io::Result<(TlsStream<TcpStream>, TlsInfo)> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let fut = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        TlsConnector::from(config).connect(name, tcp).await
    };
    let tls = tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| std::io::Error::other("TLS connect timed out"))??;
    let conn = tls.get_ref().1;
    let info = TlsInfo {
        handshake: conn.handshake_kind(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        peer_cert: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned()),
        version: conn.protocol_version(),
    };
    Ok((tls, info))
}

/// HTTP/1.1 or h2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1.
    H1,
    /// HTTP/2.
    H2,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// One client connection.
pub struct Conn {
    sender: Sender,
    /// TLS facts (None on plain TCP).
    pub tls: Option<TlsInfo>,
    scheme: &'static str,
    authority: String,
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// HTTP version of the response.
    pub version: Version,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `x-backend` header.
    pub fn backend(&self) -> Option<&str> {
        self.headers.get("x-backend").and_then(|v| v.to_str().ok())
    }
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Conn {
    /// Opens a TLS connection to `addr` and speaks `proto` on it.
    pub async fn tls(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
        proto: Proto,
    ) -> Self {
        let (tls, info) = tls_connect(addr, config, server_name)
            .await
            .expect("TLS connect");
        let authority = format!("{server_name}:{}", addr.port());
        let sender = handshake(tls, proto).await;
        Self {
            sender,
            tls: Some(info),
            scheme: "https",
            authority,
        }
    }

    /// Opens a plain TCP connection (h2 means prior knowledge).
    pub async fn plain(addr: SocketAddr, proto: Proto) -> Self {
        let tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let sender = handshake(tcp, proto).await;
        Self {
            sender,
            tls: None,
            scheme: "http",
            authority: addr.to_string(),
        }
    }

    /// The `Host` / `:authority` this connection sends by default.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Builds a request for `path` (absolute URI for h2, origin-form plus Host for HTTP/1.1).
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        match self.sender {
            Sender::H1(_) => Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, self.authority.as_str()),
            Sender::H2(_) => Request::builder()
                .method(method)
                .version(Version::HTTP_2)
                .uri(format!("{}://{}{path}", self.scheme, self.authority)),
        }
    }

    /// Sends a request and reads the whole response (bounded).
    pub async fn send(&mut self, req: Request<TestBody>) -> Reply {
        self.try_send(req).await.expect("request failed")
    }

    /// Sends a request and reads the whole response; errors instead of panicking.
    pub async fn try_send(&mut self, req: Request<TestBody>) -> Result<Reply, String> {
        let fut = async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await
                }
            }
            .map_err(|e| format!("send: {e:?}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("body: {e:?}"))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
                version: parts.version,
            })
        };
        tokio::time::timeout(STEP, fut)
            .await
            .map_err(|_| "request timed out".to_string())?
    }

    /// GET `path` with an empty body.
    pub async fn get(&mut self, path: &str) -> Reply {
        let req = self.request("GET", path).body(empty()).expect("request");
        self.send(req).await
    }
}

async fn handshake<I>(io: I, proto: Proto) -> Sender
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    match proto {
        Proto::H1 => {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("h1 handshake");
            tokio::spawn(conn);
            Sender::H1(sender)
        }
        Proto::H2 => {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Sender::H2(sender)
        }
    }
}

/// One TLS connection, one GET, response read: returns (reply, TLS facts).
pub async fn tls_get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
    proto: Proto,
    path: &str,
) -> (Reply, TlsInfo) {
    let mut conn = Conn::tls(addr, config, server_name, proto).await;
    let reply = conn.get(path).await;
    (reply, conn.tls.clone().expect("TLS info"))
}

/// A raw HTTP/1.x response: status code, head text and body bytes (undecoded).
#[derive(Debug)]
pub struct RawReply {
    /// Status code from the status line.
    pub status: u16,
    /// Everything before the blank line.
    pub head: String,
    /// Everything after it, as sent (chunked framing included).
    pub body: Vec<u8>,
}

/// Writes `request` verbatim and reads until the peer closes (bounded by `STEP`).
pub async fn raw_exchange<S>(mut stream: S, request: &[u8]) -> RawReply
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fut = async {
        stream.write_all(request).await?;
        stream.flush().await?;
        let mut buf = Vec::new();
        // A close_notify-less close is fine here: we only want what arrived.
        let _ = stream.read_to_end(&mut buf).await;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(STEP, fut)
        .await
        .expect("raw exchange timed out")
        .expect("raw exchange");
    parse_raw(&buf)
}

/// Writes `request` and reads only the response head (bounded); the connection may stay open.
pub async fn raw_head<S>(stream: &mut S, request: &[u8]) -> RawReply
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fut = async {
        stream.write_all(request).await?;
        stream.flush().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(STEP, fut)
        .await
        .expect("raw head timed out")
        .expect("raw head");
    parse_raw(&buf)
}

fn parse_raw(buf: &[u8]) -> RawReply {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let body = buf.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    RawReply { status, head, body }
}

/// Reads (and drops) until the peer closes, or `within` passes; how long that took, if it
/// closed.
pub async fn closed_within<S>(stream: &mut S, within: Duration) -> Option<Duration>
where
    S: AsyncRead + Unpin,
{
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .ok()
        .map(|()| started.elapsed())
}
