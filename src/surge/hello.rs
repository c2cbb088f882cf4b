//! Hello mode: a new connection that costs the client no cryptography. It connects, sends a
//! PROXY v2 header and a pre-built TLS 1.3 ClientHello in one write, reads until the
//! server's first flight has arrived, and resets the connection.
//!
//! A TLS 1.3 server does all of a full handshake's expensive work when it answers the
//! ClientHello: its ephemeral key exchange, then the CertificateVerify signature, before it
//! sends its first flight (ServerHello in clear, then EncryptedExtensions, Certificate,
//! CertificateVerify and Finished in encrypted records, content type 23). So the arrival of
//! that flight proves the server did the work; what the client skips (its own key exchange,
//! the signature check, its Finished) costs the server nothing more than a read. Without
//! early data, a TLS 1.3 server cannot tell a replayed ClientHello from a new one, so a pool
//! of [`POOL`] ClientHellos built once ([`Hellos`]) is sent in turn.
//!
//! The flight has arrived ([`Flight::Done`]) once at least one whole application-data record
//! was read and the bytes read end on a record boundary; an alert, a HelloRetryRequest or
//! bytes that are not TLS records are a TLS failure; the connection closed or reset first
//! is "refused". Latency: connect to the flight's arrival.
//!
//! The connection is closed with a reset (`SO_LINGER` 0): no TIME_WAIT on the client side,
//! whose ephemeral ports would otherwise run out within a minute at a few hundred
//! connections per second. levee then records the handshake as failed (the client never
//! sent its Finished), not as full, though it did a full handshake's work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::io_failure;
use super::record::{Failure, Recorder};

/// ClientHellos built at start and sent in turn.
pub const POOL: usize = 256;
/// Most bytes read while waiting for the server's first flight.
pub const MAX_FLIGHT: usize = 64 * 1024;
/// Largest TLS record body accepted (2^14 plus the largest expansion TLS 1.3 allows).
const MAX_RECORD: usize = 16_384 + 256;
/// `ServerHello.random` of a HelloRetryRequest (RFC 8446, 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// A pool of ready-to-send ClientHellos (TLS records), each from a fresh client connection
/// (its own key share and random), handed out in turn.
#[derive(Debug)]
pub struct Hellos {
    hellos: Vec<Box<[u8]>>,
    next: AtomicUsize,
}

impl Hellos {
    /// `n` ClientHellos (at least one) for `sni` with `config` (TLS 1.3 only, no resumption:
    /// see [`super::tls::hello_config`]).
    pub fn build(
        config: &Arc<ClientConfig>,
        sni: &ServerName<'static>,
        n: usize,
    ) -> anyhow::Result<Self> {
        let mut hellos = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let mut conn = ClientConnection::new(Arc::clone(config), sni.clone())
                .context("building a ClientHello")?;
            let mut out = Vec::with_capacity(2048);
            // A ClientHello is a few records at most; bounded in case of a surprise.
            for _ in 0..16 {
                if !conn.wants_write() {
                    break;
                }
                conn.write_tls(&mut out).context("writing a ClientHello")?;
            }
            anyhow::ensure!(!out.is_empty(), "rustls wrote no ClientHello");
            hellos.push(out.into_boxed_slice());
        }
        Ok(Self {
            hellos,
            next: AtomicUsize::new(0),
        })
    }

    /// The next ClientHello of the pool.
    pub fn next(&self) -> &[u8] {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.hellos
            .get(i % self.hellos.len().max(1))
            .map_or(&[][..], |h| &h[..])
    }

    /// How many the pool holds.
    pub fn len(&self) -> usize {
        self.hellos.len()
    }

    /// Whether the pool is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.hellos.is_empty()
    }
}

/// How far the server's answer has come, from the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flight {
    /// Not yet the whole first flight: read on.
    More,
    /// The first flight arrived: a whole application-data record, ending on a record
    /// boundary.
    Done,
    /// The server sent an alert.
    Alert,
    /// The server asked for another ClientHello (a key share it does not support).
    HelloRetry,
    /// Not TLS records (or a record too large).
    NotTls,
}

/// Reads the TLS record headers of `buf` (the server's bytes from the start).
pub fn flight(buf: &[u8]) -> Flight {
    let mut at = 0;
    let mut app_data = false;
    let mut first_handshake = true;
    // Every round consumes a whole record (at least 5 bytes) or returns.
    while at < buf.len() {
        let Some(&[kind, major, _, hi, lo]) = buf.get(at..at + 5) else {
            return Flight::More;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if major != 3 || len > MAX_RECORD {
            return Flight::NotTls;
        }
        let Some(body) = buf.get(at + 5..at + 5 + len) else {
            return Flight::More;
        };
        match kind {
            20 => {}
            21 => return Flight::Alert,
            22 => {
                if first_handshake && is_hello_retry(body) {
                    return Flight::HelloRetry;
                }
                first_handshake = false;
            }
            23 => app_data = true,
            _ => return Flight::NotTls,
        }
        at += 5 + len;
    }
    if app_data { Flight::Done } else { Flight::More }
}

/// Whether a handshake record starts with a HelloRetryRequest (a ServerHello whose random is
/// the RFC's constant).
fn is_hello_retry(body: &[u8]) -> bool {
    body.first() == Some(&2) && body.get(6..38) == Some(&HRR_RANDOM[..])
}

/// A hello-mode visit to `target`: the PROXY `header` and the ClientHello `hello` in one
/// write, then the server's first flight; counts the connection for `country` once written.
/// The latency (connect to the flight's arrival) or why it failed; bounded by `timeout`.
pub async fn attempt(
    target: SocketAddr,
    header: &[u8],
    hello: &[u8],
    rec: &Recorder,
    country: usize,
    timeout: Duration,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let visit = async {
        let mut tcp = TcpStream::connect(target)
            .await
            .map_err(|e| io_failure(&e))?;
        // Close with a reset: no TIME_WAIT on this side (see the module docs).
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .map_err(|e| io_failure(&e))?;
        let mut out = Vec::with_capacity(header.len() + hello.len());
        out.extend_from_slice(header);
        out.extend_from_slice(hello);
        tcp.write_all(&out).await.map_err(|e| io_failure(&e))?;
        rec.opened(country);
        let mut buf = Vec::with_capacity(8 * 1024);
        // Each round reads at least one byte or ends: at most MAX_FLIGHT rounds.
        loop {
            if buf.len() >= MAX_FLIGHT {
                return Err(Failure::Other);
            }
            let n = tcp.read_buf(&mut buf).await.map_err(|e| io_failure(&e))?;
            if n == 0 {
                return Err(Failure::Refused);
            }
            match flight(&buf) {
                Flight::More => {}
                Flight::Done => return Ok(started.elapsed()),
                Flight::Alert | Flight::HelloRetry | Flight::NotTls => return Err(Failure::Tls),
            }
        }
    };
    match tokio::time::timeout(timeout, visit).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 3, 3];
        v.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn flight_is_done_after_whole_app_data_on_a_boundary() {
        let mut server_hello = vec![2, 0, 0, 70, 3, 3];
        server_hello.extend_from_slice(&[7; 32]);
        server_hello.resize(74, 0);
        let mut buf = record(22, &server_hello);
        assert_eq!(flight(&buf), Flight::More);
        buf.extend(record(20, &[1]));
        assert_eq!(flight(&buf), Flight::More);
        let app = record(23, &[9; 300]);
        for cut in [1, 4, 5, 200] {
            let mut partial = buf.clone();
            partial.extend_from_slice(&app[..cut]);
            assert_eq!(flight(&partial), Flight::More, "cut {cut}");
        }
        buf.extend_from_slice(&app);
        assert_eq!(flight(&buf), Flight::Done);
        let mut more = buf.clone();
        more.extend_from_slice(&record(23, &[9; 50])[..10]);
        assert_eq!(flight(&more), Flight::More);
        more.extend_from_slice(&record(23, &[9; 50])[10..]);
        assert_eq!(flight(&more), Flight::Done);
    }

    #[test]
    fn alerts_retries_and_garbage_fail() {
        assert_eq!(flight(&record(21, &[2, 40])), Flight::Alert);
        let mut hrr = vec![2, 0, 0, 70, 3, 3];
        hrr.extend_from_slice(&HRR_RANDOM);
        assert_eq!(flight(&record(22, &hrr)), Flight::HelloRetry);
        assert_eq!(flight(b"HTTP/1.1 400 Bad Request\r\n"), Flight::NotTls);
        assert_eq!(flight(&[22, 3, 3, 0xff, 0xff]), Flight::NotTls);
        assert_eq!(flight(&[]), Flight::More);
    }

    #[test]
    fn pool_hellos_are_distinct_client_hellos() {
        let config = super::super::tls::hello_config().unwrap();
        let sni = ServerName::try_from("localhost").unwrap();
        let pool = Hellos::build(&config, &sni, 4).unwrap();
        assert_eq!(pool.len(), 4);
        let (a, b) = (pool.next().to_vec(), pool.next().to_vec());
        assert_ne!(a, b);
        for h in [&a, &b] {
            // A handshake record holding a ClientHello.
            assert_eq!((h[0], h[1], h[5]), (22, 3, 1));
        }
        let _ = (pool.next(), pool.next());
        assert_eq!(pool.next(), &a[..]);
    }
}
