//! One client connection: TCP to the target, a PROXY v2 header naming the client's
//! (GeoIP-chosen) address, TLS, HTTP/1.1; and `GET /` on it. [`attempt`] is a whole
//! new-connection visit: open, one request, close.

use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::record::{Failure, Recorder};
use crate::net::proxy_protocol::encode_v2;

/// Longest wait for the server to close a connection after its last response.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Where and how the clients connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// levee's PROXY-v2 TLS listener (loopback).
    pub addr: SocketAddr,
    /// Server name sent in the ClientHello and the Host header.
    pub sni: ServerName<'static>,
    /// TLS settings (no resumption).
    pub tls: Arc<ClientConfig>,
}

/// An open HTTP/1.1 connection; its driver task is stopped when this is dropped.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Lets the server close first (it was asked to): waits up to [`CLOSE_WAIT`] for the
    /// connection to end, so the TIME_WAIT state stays on the server side.
    pub async fn close(mut self) {
        let driver = &mut self.driver;
        let _ = tokio::time::timeout(CLOSE_WAIT, driver).await;
    }

    /// `GET /` and the whole response; a status other than 2xx is a failure. `close` asks
    /// the server to close the connection after it.
    pub async fn get(&mut self, target: &Target, close: bool) -> Result<(), Failure> {
        self.sender.ready().await.map_err(|e| hyper_failure(&e))?;
        let mut req = Request::get("/")
            .header(header::HOST, host(&target.sni))
            .header(header::USER_AGENT, "levee-bench-surge");
        if close {
            req = req.header(header::CONNECTION, "close");
        }
        let req = req.body(Empty::new()).map_err(|_| Failure::Other)?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| hyper_failure(&e))?;
        let ok = resp.status().is_success();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| hyper_failure(&e))?;
        if ok { Ok(()) } else { Err(Failure::Status) }
    }
}

/// Opens a connection from `client` (as the PROXY header claims) to the target; counts it
/// for `country` in `rec` once the PROXY header is sent.
pub async fn open(
    target: &Target,
    client: SocketAddr,
    rec: &Recorder,
    country: usize,
) -> Result<Conn, Failure> {
    let mut tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| io_failure(&e))?;
    tcp.set_nodelay(true).map_err(|e| io_failure(&e))?;
    tcp.write_all(&encode_v2(client, target.addr))
        .await
        .map_err(|e| io_failure(&e))?;
    rec.opened(country);
    let tls = TlsConnector::from(Arc::clone(&target.tls))
        .connect(target.sni.clone(), tcp)
        .await
        .map_err(|e| io_failure(&e))?;
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| hyper_failure(&e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, driver })
}

/// A new-connection visit: open, `GET /`, close; the latency of the whole (connect to the
/// last response byte), or why it failed. Bounded by `timeout`.
pub async fn attempt(
    target: &Target,
    client: SocketAddr,
    rec: &Recorder,
    country: usize,
    timeout: Duration,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let visit = async {
        let mut conn = open(target, client, rec, country).await?;
        conn.get(target, true).await?;
        Ok::<_, Failure>((started.elapsed(), conn))
    };
    match tokio::time::timeout(timeout, visit).await {
        Ok(Ok((latency, conn))) => {
            conn.close().await;
            Ok(latency)
        }
        Ok(Err(f)) => Err(f),
        Err(_) => Err(Failure::Timeout),
    }
}

fn host(sni: &ServerName<'static>) -> String {
    match sni {
        ServerName::DnsName(n) => n.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "localhost".to_string(),
    }
}

/// The failure an I/O error stands for: a rustls error inside is a TLS failure; a refused,
/// reset or cut connection is "refused".
pub fn io_failure(e: &io::Error) -> Failure {
    if e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    {
        return Failure::Tls;
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Failure::Refused,
        io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Other,
    }
}

/// The failure a hyper error stands for: its I/O cause if any; a connection closed before
/// the response is "refused".
fn hyper_failure(e: &hyper::Error) -> Failure {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io_failure(io);
        }
        source = s.source();
    }
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        Failure::Refused
    } else {
        Failure::Other
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(io_failure(&tls), Failure::Tls);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(io_failure(&reset), Failure::Refused);
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(io_failure(&eof), Failure::Refused);
        assert_eq!(io_failure(&io::Error::other("x")), Failure::Other);
    }
}
