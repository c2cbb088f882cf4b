//! No false caps on the shipped defaults (issue 15, item 2): returning clients (a flash
//! crowd of resumptions) of a country that is spiking and capped are never refused, and a
//! burst of keep-alive requests is never refused or capped. (A country growing 3x over five
//! minutes never spikes: `stats::window` tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::admission::start_admission_levee;
use common::flood::{self, FloodCounts};
use common::stats::{BR_IP, DE_IP, country_row, stats_doc};
use common::{Backend, SLACK, TlsOpts, client_config_insecure};
use levee::surge::hello::Hellos;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

/// Returning clients (each with its own session cache).
const RETURNING: usize = 200;

/// One GET on a new TLS connection from `from`: the status and whether the handshake
/// resumed, or `None` when it failed.
async fn get(from: IpAddr, to: SocketAddr, config: Arc<ClientConfig>) -> Option<(u16, bool)> {
    let attempt = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(from, 0)).ok()?;
        let tcp = socket.connect(to).await.ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        let mut tls = TlsConnector::from(config).connect(name, tcp).await.ok()?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let req = b"GET / HTTP/1.1\r\nHost: levee.test\r\nConnection: close\r\n\r\n";
        tls.write_all(req).await.ok()?;
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply).await;
        let text = String::from_utf8_lossy(&reply);
        let status = text.split(' ').nth(1)?.parse().ok()?;
        Some((status, resumed))
    };
    tokio::time::timeout(SLACK, attempt).await.ok().flatten()
}

/// `admission.rejected.<reason>`.
fn rejected(doc: &serde_json::Value, reason: &str) -> u64 {
    doc["admission"]["rejected"][reason].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_clients_of_a_capped_country_are_never_refused() {
    let backend = Backend::start("b1");
    let levee = start_admission_levee(1, "", &backend);
    let addr = levee.addr("tls");
    let started = Instant::now();
    // The returning clients' first visits: a full handshake each, and a ticket.
    let configs: Vec<_> = (0..RETURNING)
        .map(|_| client_config_insecure(TlsOpts::default()))
        .collect();
    for chunk in configs.chunks(20) {
        let firsts: Vec<_> = chunk
            .iter()
            .map(|c| tokio::spawn(get(BR_IP, addr, Arc::clone(c))))
            .collect();
        for f in firsts {
            assert_eq!(f.await.unwrap(), Some((200, false)));
        }
    }
    // Spikes are flagged only once the baselines have data (13 s after the start).
    let ready = started + Duration::from_secs(14);
    while Instant::now() < ready {
        let _ = get(DE_IP, addr, client_config_insecure(TlsOpts::default())).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A BR handshake flood: BR spikes, the handshake queue backs up, BR is capped.
    let name = ServerName::try_from("localhost").unwrap();
    let hellos =
        Arc::new(Hellos::build(&levee::surge::tls::hello_config().unwrap(), &name, 64).unwrap());
    let counts = Arc::new(FloodCounts::default());
    let lasting = Duration::from_secs(5);
    let flood = flood::open_loop(addr, BR_IP, hellos, Arc::clone(&counts), lasting);
    let capped_by = Instant::now() + Duration::from_secs(4);
    loop {
        let doc = stats_doc(&levee, None).await;
        if rejected(&doc, "auto_cap") > 0 {
            break;
        }
        assert!(
            Instant::now() < capped_by,
            "BR never capped; {}; {:#}",
            flood::describe(&counts),
            doc["admission"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The flash crowd: every returning client at once, while BR is capped.
    let returning: Vec<_> = configs
        .iter()
        .map(|c| tokio::spawn(get(BR_IP, addr, Arc::clone(c))))
        .collect();
    let mut outcomes = Vec::with_capacity(RETURNING);
    for r in returning {
        outcomes.push(r.await.unwrap());
    }
    let doc = stats_doc(&levee, None).await;
    flood.await.unwrap();
    let served = outcomes.iter().filter(|o| **o == Some((200, true))).count();
    assert_eq!(
        served,
        RETURNING,
        "every returning client resumes and is served; {outcomes:?}; {}",
        flood::describe(&counts)
    );
    let caps = doc["admission"]["auto"]["caps"].as_array().unwrap();
    assert!(
        caps.iter().any(|c| c["country"] == "BR"),
        "BR was capped meanwhile: {:#}",
        doc["admission"]
    );
    // Every BR connection is counted once: as opened, or as refused by the cap (which is
    // applied at the ClientHello, after the connection was let in).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let doc = stats_doc(&levee, None).await;
    let opened = country_row(&doc, "BR").unwrap()["connections"]
        .as_u64()
        .unwrap();
    let attempts = 2 * RETURNING as u64 + counts.attempts.load(Ordering::Relaxed);
    let capped = rejected(&doc, "auto_cap");
    assert!(
        opened + capped <= attempts,
        "{opened} opened + {capped} capped > {attempts} BR connections made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_keep_alive_requests_is_never_refused_or_capped() {
    let backend = Backend::start("b1");
    let levee = start_admission_levee(1, "", &backend);
    let addr = levee.addr("tls");
    // 16 keep-alive connections from BR, 250 requests each, back to back.
    let clients: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let socket = TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(BR_IP, 0)).unwrap();
                let tcp = socket.connect(addr).await.unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let config = client_config_insecure(TlsOpts::default());
                let tls = TlsConnector::from(config).connect(name, tcp).await.unwrap();
                let io = hyper_util::rt::TokioIo::new(tls);
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                let mut ok = 0;
                for _ in 0..250 {
                    let req = hyper::Request::get("/")
                        .header("host", "levee.test")
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap();
                    if send.send_request(req).await.unwrap().status() == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for c in clients {
        ok += c.await.unwrap();
    }
    assert_eq!(ok, 16 * 250);
    let doc = stats_doc(&levee, None).await;
    let refused: u64 = doc["admission"]["rejected"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(refused, 0, "{:#}", doc["admission"]);
    assert!(
        doc["admission"]["auto"]["caps"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
