//! Helpers of the stats tests: a GeoIP fixture that gives loopback source addresses a
//! country and an ASN, a levee config using it, requests sent from a chosen loopback
//! address, and admin API calls with or without a bearer token.
//!
//! The fixture maps 127.0.0.2 to BR (AS64500), 127.0.0.3 to DE (AS64501) and 127.0.0.4 to JP
//! (AS64502); 127.0.0.1 stays unknown (`ZZ`, no ASN). A client picks its country by binding
//! its socket to one of these addresses before connecting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use mmdb_writer::ipnet::IpNet;
use tokio::net::TcpSocket;

use super::client::{RawReply, raw_exchange};
use super::mmdb::{asn_record, flat_country, write_db};
use super::{Conn, Levee, Proto, Reply, SLACK, empty, start_levee_in};

/// Source address of Brazilian test clients.
pub const BR_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Source address of German test clients.
pub const DE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// Source address of Japanese test clients.
pub const JP_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
/// Source address of clients of no known country.
pub const ZZ_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// (address, country, ASN, organisation) of the fixture.
pub const FIXTURE: [(IpAddr, &str, u32, &str); 3] = [
    (BR_IP, "BR", 64_500, "Example BR Net"),
    (DE_IP, "DE", 64_501, "Example DE Net"),
    (JP_IP, "JP", 64_502, "Example JP Net"),
];

/// Writes `countries.mmdb` (ip-location-db shape) and `asns.mmdb` (GeoLite2-ASN shape) into
/// `dir`.
pub fn write_loopback_geo(dir: &Path) {
    let net = |ip: IpAddr| IpNet::new(ip, 32).unwrap();
    let countries = FIXTURE
        .iter()
        .map(|&(ip, code, _, _)| (net(ip), flat_country(code)));
    write_db(&dir.join("countries.mmdb"), "levee-test-country", countries);
    let asns = FIXTURE
        .iter()
        .map(|&(ip, _, asn, org)| (net(ip), asn_record(asn, org)));
    write_db(&dir.join("asns.mmdb"), "GeoLite2-ASN", asns);
}

/// Starts levee with 2 workers, the admin API on an ephemeral port (with `token` if any),
/// the loopback GeoIP fixture, `[stats]` lines `stats`, and a plain listener `web` whose
/// `/down` routes to a backend nobody listens on (502) and the rest to `backend`.
pub fn start_stats_levee(
    backend: SocketAddr,
    down: SocketAddr,
    token: Option<&str>,
    stats: &str,
) -> Levee {
    let dir = tempfile::tempdir().unwrap();
    write_loopback_geo(dir.path());
    let token = token.map_or(String::new(), |t| format!("token = \"{t}\"\n"));
    let toml = format!(
        "[server]\nworkers = 2\nshutdown_timeout = \"2s\"\naccess_log = false\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{token}\n\
         [geo]\ncountry_db = \"countries.mmdb\"\nasn_db = \"asns.mmdb\"\n\n\
         [stats]\n{stats}\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\
         [[listeners.routes]]\npath_prefix = \"/down\"\npool = \"down\"\n\n\
         [pools.web]\n[[pools.web.backends]]\naddress = \"{backend}\"\n\n\
         [pools.down]\n[[pools.down.backends]]\naddress = \"{down}\"\n"
    );
    start_levee_in(dir, &toml)
}

/// Sends `request` verbatim (it should say `Connection: close`) on a new connection from
/// source address `from` to `to`, and reads the reply to the end.
pub async fn request_from(from: IpAddr, to: SocketAddr, request: &[u8]) -> RawReply {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = socket.connect(to).await.unwrap();
    raw_exchange(stream, request).await
}

/// `GET path` with `Connection: close`.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: levee.test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// `POST /echo` with a body of `len` bytes and `Connection: close`.
pub fn echo_request(len: usize) -> Vec<u8> {
    let mut r = format!(
        "POST /echo HTTP/1.1\r\nHost: levee.test\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes();
    r.extend(std::iter::repeat_n(b'x', len));
    r
}

/// `METHOD path` on the admin API, with `Authorization: Bearer TOKEN` when `token` is given.
pub async fn admin_request(levee: &Levee, method: &str, path: &str, token: Option<&str>) -> Reply {
    let admin = levee.running().admin_addr().expect("admin API enabled");
    let mut c = Conn::plain(admin, Proto::H1).await;
    let mut req = c.request(method, path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    c.send(req.body(empty()).unwrap()).await
}

/// `GET /stats` (with `token`), parsed.
pub async fn stats_doc(levee: &Levee, token: Option<&str>) -> serde_json::Value {
    let reply = admin_request(levee, "GET", "/stats", token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    serde_json::from_slice(&reply.body).expect("/stats is JSON")
}

/// The `/stats` row of country `code`, if listed.
pub fn country_row<'a>(doc: &'a serde_json::Value, code: &str) -> Option<&'a serde_json::Value> {
    doc["countries"]
        .as_array()?
        .iter()
        .find(|c| c["country"] == code)
}

/// Polls `/stats` until `done` holds (bounded).
pub async fn wait_stats(
    levee: &Levee,
    token: Option<&str>,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let doc = stats_doc(levee, token).await;
        if done(&doc) {
            return doc;
        }
        assert!(started.elapsed() < SLACK * 10, "not reached: {doc:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Paces new connections at `rate` a second (read at every 20 ms step) until `stop`:
/// `start(n)` is called for the n-th (from 0) and starts it. Returns how many were started.
pub fn paced(
    rate: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    start: impl Fn(u64) + Send + 'static,
) -> tokio::task::JoinHandle<u64> {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    tokio::spawn(async move {
        let started = Instant::now();
        let mut sent = 0u64;
        // Credit accrues at the current rate; each whole credit is one connection.
        let mut credit = 0.0f64;
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = Instant::now();
            credit += now.duration_since(last).as_secs_f64() * rate.load(Ordering::Relaxed) as f64;
            last = now;
            while credit >= 1.0 {
                credit -= 1.0;
                start(sent);
                sent += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120));
        sent
    })
}
