//! Admission-control test helpers: a levee with the loopback GeoIP fixture and an
//! `[admission]` table, and TLS clients that connect from a chosen loopback source address
//! (so the fixture tags them BR, DE or JP).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use super::stats::write_loopback_geo;
use super::{Backend, Levee, TlsOpts, client_config_insecure, listener_toml, pool_toml};

/// Starts levee with `workers`, the admin API, the loopback GeoIP fixture, the TOML
/// `admission` (which may open its own `[admission.*]` tables), a TLS listener `tls`
/// (generated certificate) and a plain listener `plain`, in front of `backend`.
pub fn start_admission_levee(workers: usize, admission: &str, backend: &Backend) -> Levee {
    start_with_access_log(workers, admission, backend, false)
}

/// As [`start_admission_levee`], with the access log on, in `Levee::access_log`.
pub fn start_logged_admission_levee(workers: usize, admission: &str, backend: &Backend) -> Levee {
    start_with_access_log(workers, admission, backend, true)
}

fn start_with_access_log(
    workers: usize,
    admission: &str,
    backend: &Backend,
    access_log: bool,
) -> Levee {
    let dir = tempfile::tempdir().unwrap();
    write_loopback_geo(dir.path());
    let toml = format!(
        "[server]\nworkers = {workers}\nshutdown_timeout = \"2s\"\naccess_log = {access_log}\n\
         access_log_path = \"{}\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [geo]\ncountry_db = \"countries.mmdb\"\nasn_db = \"asns.mmdb\"\n\n\
         [admission]\n{admission}\n\n{}{}{}",
        super::ACCESS_LOG_FILE,
        listener_toml("tls", "web", Some(&[]), "", ""),
        listener_toml("plain", "web", None, "", ""),
        pool_toml("web", &[backend.addr], ""),
    );
    super::start_levee_in(dir, &toml)
}

/// A client config that never resumes: every connection is a full handshake.
pub fn fresh_client() -> Arc<ClientConfig> {
    client_config_insecure(TlsOpts {
        resumption: Resumption::disabled(),
        ..TlsOpts::default()
    })
}

/// How one TLS GET ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response status.
    Status(u16),
    /// Closed or reset before the TLS handshake finished (or reset as it connected).
    Refused,
    /// Anything else, e.g. a timeout.
    Failed,
}

/// Connects from `from` to `to`, does a TLS handshake with `config`, sends one
/// `GET / HTTP/1.1` with `Connection: close` and reads the status (all within `within`).
pub async fn tls_get_from(
    from: IpAddr,
    to: SocketAddr,
    config: Arc<ClientConfig>,
    within: Duration,
) -> Outcome {
    let attempt = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(from, 0)).ok()?;
        // A connection refused with a reset may already be reset when connect returns.
        let tcp = match socket.connect(to).await {
            Ok(tcp) => tcp,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(Outcome::Refused);
            }
            Err(_) => return None,
        };
        let name = ServerName::try_from("localhost").ok()?;
        let Ok(mut tls) = TlsConnector::from(config).connect(name, tcp).await else {
            return Some(Outcome::Refused);
        };
        let req = b"GET / HTTP/1.1\r\nHost: levee.test\r\nConnection: close\r\n\r\n";
        tls.write_all(req).await.ok()?;
        let mut head = Vec::new();
        let _ = tls.read_to_end(&mut head).await;
        let text = String::from_utf8_lossy(&head);
        let status = text.split(' ').nth(1)?.parse().ok()?;
        Some(Outcome::Status(status))
    };
    match tokio::time::timeout(within, attempt).await {
        Ok(Some(o)) => o,
        _ => Outcome::Failed,
    }
}
