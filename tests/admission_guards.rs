//! `[admission]` global guards over real sockets: `max_connections` and
//! `max_connections_per_ip` hold exactly and refuse before TLS with a clean close, the
//! per-worker handshake queue refuses beyond its size and after its timeout, a client
//! trickling its request head is closed by `header_timeout` (slowloris), and a request body
//! slower than `min_upload_rate` is cut with 408. Every refusal is counted by reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::client::tls_connect;
use common::stats::{BR_IP, DE_IP, get_request, request_from, stats_doc, write_loopback_geo};
use common::{
    Backend, Levee, SLACK, TlsOpts, client_config_insecure, listener_toml, pool_toml,
    start_levee_in,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Starts levee with `workers`, the loopback GeoIP fixture, the admin API, `[admission]`
/// lines `admission`, a TLS listener `tls` (generated certificate) and a plain listener
/// `plain`, both with `[listeners.http]` lines `http`, in front of `backend`.
fn start(workers: usize, admission: &str, tls_extra: &str, http: &str, backend: &Backend) -> Levee {
    let dir = tempfile::tempdir().unwrap();
    write_loopback_geo(dir.path());
    let toml = config(workers, admission, tls_extra, http, backend);
    start_levee_in(dir, &toml)
}

/// The config `start` runs.
fn config(
    workers: usize,
    admission: &str,
    tls_extra: &str,
    http: &str,
    backend: &Backend,
) -> String {
    format!(
        "[server]\nworkers = {workers}\nshutdown_timeout = \"2s\"\naccess_log = false\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [geo]\ncountry_db = \"countries.mmdb\"\nasn_db = \"asns.mmdb\"\n\n\
         [admission]\n{admission}\n\n{}{}{}",
        listener_toml("tls", "web", Some(&[]), tls_extra, http),
        listener_toml("plain", "web", None, "", http),
        pool_toml("web", &[backend.addr], ""),
    )
}

/// A TCP connection from source address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    tokio::time::timeout(SLACK, socket.connect(to))
        .await
        .expect("connect in time")
        .unwrap()
}

/// Whether the peer closes `tcp` (EOF or reset) within `within`, without sending anything.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, tcp.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("a refused connection got {n} bytes"),
        Err(_) => false,
    }
}

/// A keep-alive GET on `tcp`; true when a 200 head came back (the connection stays open).
async fn keep_alive_get(tcp: &mut TcpStream) -> bool {
    let req = b"GET / HTTP/1.1\r\nHost: levee.test\r\n\r\n";
    let reply = common::client::raw_head(tcp, req).await;
    reply.status == 200
}

/// The first flight of a TLS client (its ClientHello), to send and then stall.
fn client_hello() -> Vec<u8> {
    let config = client_config_insecure(TlsOpts::default());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    client.write_tls(&mut out).unwrap();
    out
}

/// `/stats`' `admission.rejected.<reason>`.
async fn rejected(levee: &Levee, reason: &str) -> u64 {
    let doc = stats_doc(levee, None).await;
    doc["admission"]["rejected"][reason].as_u64().unwrap()
}

/// Polls until `/stats`' `admission.rejected.<reason>` reaches `n` (bounded).
async fn wait_rejected(levee: &Levee, reason: &str, n: u64) -> u64 {
    let started = Instant::now();
    loop {
        let got = rejected(levee, reason).await;
        if got >= n || started.elapsed() > SLACK * 5 {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/metrics` text.
async fn metrics(levee: &Levee) -> String {
    let reply = common::stats::admin_request(levee, "GET", "/metrics", None).await;
    assert_eq!(reply.status, 200);
    reply.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_exact_and_refuses_before_tls() {
    let backend = Backend::start("b1");
    let levee = start(2, "max_connections = 5", "", "", &backend);
    let addr = levee.addr("tls");
    let config = client_config_insecure(TlsOpts::default());
    let mut held = Vec::new();
    for _ in 0..5 {
        let (tls, _) = tls_connect(addr, config.clone(), "localhost")
            .await
            .unwrap();
        held.push(tls);
    }
    let t = levee
        .wait_totals(SLACK, |t| t.handshakes.iter().sum::<u64>() == 5)
        .await;
    assert_eq!(t.handshakes.iter().sum::<u64>(), 5);

    // The 6th: accepted by the kernel, closed by levee at once, before any TLS byte.
    let mut sixth = connect_from(IpAddr::from([127, 0, 0, 1]), addr).await;
    assert!(closed_within(&mut sixth, SLACK * 3).await, "6th not closed");
    assert!(
        tls_connect(addr, config.clone(), "localhost")
            .await
            .is_err(),
        "a TLS client is refused too"
    );
    assert_eq!(wait_rejected(&levee, "max_connections", 2).await, 2);
    let t = levee.totals();
    assert_eq!(
        t.handshakes.iter().sum::<u64>(),
        5,
        "no handshake for refused"
    );
    assert_eq!(t.connections, 5, "refused connections are not opened");
    let text = metrics(&levee).await;
    assert!(
        text.contains(
            "levee_admission_rejected_total{country=\"ZZ\",reason=\"max_connections\"} 2\n"
        ),
        "{text}"
    );

    // One closes: a new one is accepted (and still exactly 5 may be open).
    drop(held.pop());
    levee
        .wait_totals(SLACK * 3, |t| t.connections_active == 4)
        .await;
    let (tls, _) = tls_connect(addr, config.clone(), "localhost")
        .await
        .unwrap();
    held.push(tls);
    let mut seventh = connect_from(IpAddr::from([127, 0, 0, 1]), levee.addr("plain")).await;
    assert!(
        closed_within(&mut seventh, SLACK * 3).await,
        "the cap is process-wide"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_cap_is_exact_and_other_addresses_are_unaffected() {
    let backend = Backend::start("b1");
    let levee = start(2, "max_connections_per_ip = 2", "", "", &backend);
    let addr = levee.addr("plain");
    let mut br = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from(BR_IP, addr).await;
        assert!(keep_alive_get(&mut c).await);
        br.push(c);
    }
    let mut third = connect_from(BR_IP, addr).await;
    assert!(
        closed_within(&mut third, SLACK * 3).await,
        "3rd from BR refused"
    );
    // Another address has its own 2, and its 3rd is refused too.
    let mut de = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from(DE_IP, addr).await;
        assert!(keep_alive_get(&mut c).await, "DE unaffected by BR's cap");
        de.push(c);
    }
    let mut de3 = connect_from(DE_IP, addr).await;
    assert!(closed_within(&mut de3, SLACK * 3).await);
    // The held ones still work.
    for c in br.iter_mut().chain(de.iter_mut()) {
        assert!(keep_alive_get(c).await);
    }
    assert_eq!(wait_rejected(&levee, "per_ip", 2).await, 2);
    let text = metrics(&levee).await;
    for country in ["BR", "DE"] {
        let line = format!(
            "levee_admission_rejected_total{{country=\"{country}\",reason=\"per_ip\"}} 1\n"
        );
        assert!(text.contains(&line), "{line}{text}");
    }
    // A BR connection closes: BR may open one more, exactly.
    drop(br.pop());
    let started = Instant::now();
    let mut again = loop {
        let mut c = connect_from(BR_IP, addr).await;
        if !closed_within(&mut c, Duration::from_millis(200)).await {
            break c;
        }
        assert!(started.elapsed() < SLACK * 3, "BR slot never freed");
    };
    assert!(keep_alive_get(&mut again).await);
    let mut over = connect_from(BR_IP, addr).await;
    assert!(closed_within(&mut over, SLACK * 3).await);
    // Over TLS the refusal comes before the handshake.
    let config = client_config_insecure(TlsOpts::default());
    let before = levee.totals().handshakes.iter().sum::<u64>();
    let mut tls_over = connect_from(BR_IP, levee.addr("tls")).await;
    assert!(closed_within(&mut tls_over, SLACK * 3).await);
    assert_eq!(levee.totals().handshakes.iter().sum::<u64>(), before);
    drop(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_queue_refuses_when_full_and_after_its_timeout() {
    let backend = Backend::start("b1");
    let admission = "max_handshakes_in_flight = 1\nhandshake_queue = 1\n\
                     handshake_queue_timeout = \"1500ms\"";
    let levee = start(1, admission, "handshake_timeout = \"10s\"", "", &backend);
    let addr = levee.addr("tls");
    let local = IpAddr::from([127, 0, 0, 1]);
    let hello = client_hello();
    // A client that connects and says nothing takes no slot (it costs no CPU yet).
    let _silent = connect_from(local, addr).await;
    // 1: sends its ClientHello, takes the only slot, then stalls mid-handshake.
    let mut first = connect_from(local, addr).await;
    first.write_all(&hello).await.unwrap();
    let mut server_hello = [0u8; 5];
    tokio::time::timeout(SLACK, first.read_exact(&mut server_hello))
        .await
        .expect("the first gets its ServerHello")
        .unwrap();
    assert_eq!(server_hello[0], 0x16, "a TLS handshake record");
    // 2: waits in the queue, with no reply to its ClientHello.
    let second_at = Instant::now();
    let mut second = connect_from(local, addr).await;
    second.write_all(&hello).await.unwrap();
    let started = Instant::now();
    loop {
        let doc = stats_doc(&levee, None).await;
        if doc["admission"]["handshake_queue_depth"] == 1 {
            break;
        }
        assert!(started.elapsed() < SLACK * 3, "no waiter: {doc:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 3: the queue is full: refused at once, with a reset and without a reply (levee does
    // not even read its ClientHello, so the reset may already greet the connect).
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    match tokio::time::timeout(SLACK, socket.connect(addr))
        .await
        .unwrap()
    {
        Ok(mut third) => {
            let _ = third.write_all(&hello).await;
            assert!(closed_within(&mut third, SLACK).await, "3rd not refused");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(wait_rejected(&levee, "handshake_queue_full", 1).await, 1);
    // 2 gives up after handshake_queue_timeout.
    assert!(
        closed_within(&mut second, SLACK * 4).await,
        "2nd still waiting"
    );
    let waited = second_at.elapsed();
    assert!(waited >= Duration::from_millis(1300), "{waited:?}");
    assert_eq!(wait_rejected(&levee, "handshake_queue_timeout", 1).await, 1);
    let doc = stats_doc(&levee, None).await;
    assert_eq!(doc["admission"]["handshake_queue_depth"], 0);
    assert_eq!(
        levee.totals().handshakes.iter().sum::<u64>(),
        0,
        "no TLS yet"
    );
    // 1 goes away: its slot serves a real client at once.
    drop(first);
    let config = client_config_insecure(TlsOpts::default());
    let started = Instant::now();
    loop {
        if tls_connect(addr, config.clone(), "localhost").await.is_ok() {
            break;
        }
        assert!(started.elapsed() < SLACK * 3, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The third, and perhaps the silent client: the kernel hands a connection that has sent
    // nothing to accept only after `TCP_DEFER_ACCEPT`'s second, when the queue may still be
    // full; it took no slot either way.
    let text = metrics(&levee).await;
    let full = (1..=2).any(|n| {
        text.contains(&format!(
            "levee_admission_rejected_total{{country=\"ZZ\",reason=\"handshake_queue_full\"}} {n}\n"
        ))
    });
    assert!(full, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_by_the_header_timeout() {
    let backend = Backend::start("b1");
    let levee = start(2, "", "", "header_timeout = \"3s\"", &backend);
    let addr = levee.addr("plain");
    let mut slow = connect_from(BR_IP, addr).await;
    let head =
        b"GET / HTTP/1.1\r\nHost: levee.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut closed_after = None;
    for (i, byte) in head.iter().enumerate() {
        if slow.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Others are served meanwhile.
        if i % 4 == 0 {
            let reply = request_from(DE_IP, addr, &get_request("/")).await;
            assert_eq!(reply.status, 200);
        }
        let mut buf = [0u8; 256];
        // One byte a second.
        match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            Err(_) => {}
            Ok(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
    }
    let took = closed_after.expect("the trickling client was never closed");
    assert!(
        took >= Duration::from_millis(2500),
        "closed too early: {took:?}"
    );
    assert!(took <= Duration::from_secs(6), "closed too late: {took:?}");
    let reply = request_from(DE_IP, addr, &get_request("/")).await;
    assert_eq!(reply.status, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_below_the_minimum_upload_rate_gets_408() {
    let backend = Backend::start("b1");
    let admission = "min_upload_rate = 1000\nmin_upload_rate_grace = \"1s\"";
    let levee = start(2, admission, "", "", &backend);
    let addr = levee.addr("plain");
    // A fast upload passes.
    let fast = request_from(DE_IP, addr, &common::stats::echo_request(5000)).await;
    assert_eq!(fast.status, 200);
    // 10 bytes every 200 ms is 50 bytes/s: cut after the 1 s grace.
    let mut slow = connect_from(BR_IP, addr).await;
    let head = "POST /digest HTTP/1.1\r\nHost: levee.test\r\nContent-Length: 100000\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    let outcome = tokio::time::timeout(SLACK * 6, async {
        loop {
            if slow.write_all(&[b'x'; 10]).await.is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
                Err(_) => {}
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    reply.extend_from_slice(&buf[..n]);
                    if reply.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "slow upload never cut");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 408"), "expected a 408: {text}");
    assert_eq!(wait_rejected(&levee, "slow_upload", 1).await, 1);
    let m = metrics(&levee).await;
    assert!(
        m.contains("levee_admission_rejected_total{country=\"BR\",reason=\"slow_upload\"} 1\n")
    );
    let fast = request_from(DE_IP, addr, &common::stats::echo_request(5000)).await;
    assert_eq!(fast.status, 200, "others unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_limits_and_keeps_the_counts() {
    let backend = Backend::start("b1");
    let levee = start(2, "max_connections = 1", "", "", &backend);
    let addr = levee.addr("plain");
    let mut first = connect_from(BR_IP, addr).await;
    assert!(keep_alive_get(&mut first).await);
    let mut refused = connect_from(BR_IP, addr).await;
    assert!(closed_within(&mut refused, SLACK * 3).await);
    // Raised by a reload: one more fits, the open one still counts.
    let report = levee.reload_with(&config(2, "max_connections = 2", "", "", &backend));
    assert!(report.ok, "{report:?}");
    let mut second = connect_from(BR_IP, addr).await;
    assert!(keep_alive_get(&mut second).await);
    let mut third = connect_from(BR_IP, addr).await;
    assert!(
        closed_within(&mut third, SLACK * 3).await,
        "2 open: the 3rd is refused"
    );
    // A per-IP cap set by a reload counts the connections already open.
    let report = levee.reload_with(&config(2, "max_connections_per_ip = 2", "", "", &backend));
    assert!(report.ok, "{report:?}");
    let mut over = connect_from(BR_IP, addr).await;
    assert!(
        keep_alive_get(&mut over).await,
        "opened before the cap: not counted"
    );
    assert!(keep_alive_get(&mut first).await);
    assert!(keep_alive_get(&mut second).await);
}
