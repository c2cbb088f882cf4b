//! The real client address: PROXY protocol v1/v2 headers from trusted proxies (plain HTTP and
//! in front of TLS), refusals (untrusted source, malformed header, silence), and
//! `X-Forwarded-For` from a trusted proxy on a plain listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::{RawReply, raw_exchange};
use common::{Backend, TlsOpts, client_config_insecure, pool_toml, server_toml, start_levee};
use levee::net::proxy_protocol::{V2_SIGNATURE, encode_v1, encode_v2};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Client addresses in the documentation ranges, one per range.
const CLAIMED: [&str; 4] = [
    "192.0.2.10:40001",
    "198.51.100.7:40002",
    "203.0.113.9:40003",
    "[2001:db8::5]:40004",
];

/// A `[[listeners]]` entry written by hand: `keys` are top-level listener keys, `tls` adds a
/// `[listeners.tls]` with a generated certificate.
fn listener(name: &str, keys: &str, tls: bool) -> String {
    let mut s = format!(
        "[[listeners]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"app\"\n{keys}\n"
    );
    if tls {
        s += "[listeners.tls]\ncertificates = []\n";
    }
    s + "\n"
}

fn config(listeners: &[String], backends: &[SocketAddr], pool_extra: &str) -> String {
    server_toml(1) + &listeners.concat() + &pool_toml("app", backends, pool_extra)
}

const REQUEST: &[u8] = b"GET /headers HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n";

/// Connects, writes `prefix` then a request, and reads the reply to the end.
async fn exchange(addr: SocketAddr, prefix: &[u8]) -> RawReply {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(REQUEST);
    raw_exchange(tcp, &bytes).await
}

/// Connects, writes `bytes` (if any), and waits for levee to close the connection without
/// answering. Returns how long that took.
async fn closed_without_reply(addr: SocketAddr, bytes: &[u8]) -> Duration {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    if !bytes.is_empty() {
        tcp.write_all(bytes).await.expect("write");
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf))
        .await
        .expect("levee did not close the connection");
    // A close with our bytes unread may arrive as a reset: closed either way.
    if read.is_ok() {
        assert!(
            buf.is_empty(),
            "got a reply: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_headers_set_the_client_address() {
    let backend = Backend::start("b");
    let trusted = "trusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]\n";
    let listeners = [
        listener(
            "any",
            &format!("proxy_protocol = \"any\"\n{trusted}"),
            false,
        ),
        listener("v1", &format!("proxy_protocol = \"v1\"\n{trusted}"), false),
        listener("v2", &format!("proxy_protocol = \"v2\"\n{trusted}"), false),
    ];
    let levee = start_levee(&config(&listeners, &[backend.addr], ""));
    let mut expected = 0;
    for (name, versions) in [("any", &[1, 2][..]), ("v1", &[1]), ("v2", &[2])] {
        let addr = levee.addr(name);
        for claimed in CLAIMED {
            let source: SocketAddr = claimed.parse().unwrap();
            for &version in versions {
                let header = match version {
                    1 => encode_v1(source, addr).into_bytes(),
                    _ => encode_v2(source, addr),
                };
                let reply = exchange(addr, &header).await;
                assert_eq!(reply.status, 200, "{name} v{version} {claimed}");
                expected += 1;
                assert_eq!(backend.requests(), expected);
                let seen = backend.last();
                assert_eq!(
                    seen.header("x-forwarded-for").as_deref(),
                    Some(source.ip().to_string().as_str()),
                    "{name} v{version} {claimed}"
                );
            }
        }
    }
    // The wrong version for a listener is refused, and nothing reaches the backend.
    let source: SocketAddr = CLAIMED[0].parse().unwrap();
    let v1_addr = levee.addr("v1");
    closed_without_reply(v1_addr, &encode_v2(source, v1_addr)).await;
    let v2_addr = levee.addr("v2");
    closed_without_reply(v2_addr, encode_v1(source, v2_addr).as_bytes()).await;
    assert_eq!(backend.requests(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_unknown_keep_the_socket_address() {
    let backend = Backend::start("b");
    let keys = "proxy_protocol = \"any\"\ntrusted_proxies = [\"127.0.0.1\"]\n";
    let levee = start_levee(&config(&[listener("pp", keys, false)], &[backend.addr], ""));
    let addr = levee.addr("pp");
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    for header in [local, b"PROXY UNKNOWN\r\n".to_vec()] {
        assert_eq!(exchange(addr, &header).await.status, 200);
        let xff = backend.last().header("x-forwarded-for");
        assert_eq!(xff.as_deref(), Some("127.0.0.1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_source_is_refused() {
    let backend = Backend::start("b");
    // 127.0.0.1 (where the test connects from) is not in 10.0.0.0/8.
    let keys = "proxy_protocol = \"any\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n";
    let levee = start_levee(&config(&[listener("pp", keys, false)], &[backend.addr], ""));
    let addr = levee.addr("pp");
    let source: SocketAddr = CLAIMED[1].parse().unwrap();
    let mut bytes = encode_v2(source, addr);
    bytes.extend_from_slice(REQUEST);
    closed_without_reply(addr, &bytes).await;
    let mut bytes = encode_v1(source, addr).into_bytes();
    bytes.extend_from_slice(REQUEST);
    closed_without_reply(addr, &bytes).await;
    // Refused at once: no header read, so no waiting for proxy_protocol_timeout either.
    let took = closed_without_reply(addr, b"").await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_headers_are_refused_and_levee_keeps_serving() {
    let backend = Backend::start("b");
    let keys = "proxy_protocol = \"any\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let levee = start_levee(&config(&[listener("pp", keys, false)], &[backend.addr], ""));
    let addr = levee.addr("pp");
    let mut bad_v2_version = V2_SIGNATURE.to_vec();
    bad_v2_version.extend_from_slice(&[0x11, 0x11, 0x00, 0x0c]);
    bad_v2_version.extend_from_slice(&[0; 12]);
    let mut short_v2 = V2_SIGNATURE.to_vec();
    short_v2.extend_from_slice(&[0x21, 0x21, 0x00, 0x0c]); // IPv6 needs 36 bytes
    short_v2.extend_from_slice(&[0; 12]);
    let mut bad_tlv = encode_v2(CLAIMED[0].parse().unwrap(), addr);
    bad_tlv[15] += 4;
    bad_tlv.extend_from_slice(&[0x01, 0x00, 0x09, b'x']);
    let mut too_long = b"PROXY TCP4 ".to_vec();
    too_long.resize(200, b'1');
    let cases: [&[u8]; 8] = [
        REQUEST, // no header at all
        b"PROXY TCP4 192.0.2.10 127.0.0.1 1\r\n",
        b"PROXY TCP4 2001:db8::5 127.0.0.1 1 2\r\n",
        b"PROXY TCP9 192.0.2.10 127.0.0.1 1 2\r\n",
        &too_long,
        &bad_v2_version,
        &short_v2,
        &bad_tlv,
    ];
    for case in cases {
        let mut bytes = case.to_vec();
        bytes.extend_from_slice(REQUEST);
        closed_without_reply(addr, &bytes).await;
    }
    assert_eq!(backend.requests(), 0);
    let source: SocketAddr = CLAIMED[2].parse().unwrap();
    let reply = exchange(addr, &encode_v2(source, addr)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        backend.last().header("x-forwarded-for").as_deref(),
        Some("203.0.113.9")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_partial_clients_are_closed_after_the_timeout() {
    let backend = Backend::start("b");
    let keys = "proxy_protocol = \"v2\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
                proxy_protocol_timeout = \"400ms\"\n";
    let levee = start_levee(&config(&[listener("pp", keys, false)], &[backend.addr], ""));
    let addr = levee.addr("pp");
    for sent in [&b""[..], &V2_SIGNATURE[..7]] {
        let took = closed_without_reply(addr, sent).await;
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_secs(3),
            "closed after {took:?}"
        );
    }
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_in_front_of_tls() {
    let backend = Backend::start("b");
    let keys = "proxy_protocol = \"v2\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let levee = start_levee(&config(&[listener("tls", keys, true)], &[backend.addr], ""));
    let addr = levee.addr("tls");
    let connector = tokio_rustls::TlsConnector::from(client_config_insecure(TlsOpts::default()));
    for claimed in CLAIMED {
        let source: SocketAddr = claimed.parse().unwrap();
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        // Header first, then the TLS handshake on the same connection.
        tcp.write_all(&encode_v2(source, addr)).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
            .expect("handshake timed out")
            .expect("TLS handshake after the PROXY header");
        let reply = raw_exchange(tls, REQUEST).await;
        assert_eq!(reply.status, 200);
        let seen = backend.last();
        let want = source.ip().to_string();
        assert_eq!(
            seen.header("x-forwarded-for").as_deref(),
            Some(want.as_str())
        );
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    }
}

/// Which backend answered each of `clients`, each sent as `X-Forwarded-For` from 127.0.0.1.
async fn backends_for(addr: SocketAddr, clients: &[String]) -> Vec<String> {
    let mut answered = Vec::new();
    for client in clients {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET / HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: {client}\r\nConnection: close\r\n\r\n"
        );
        let reply = raw_exchange(tcp, request.as_bytes()).await;
        assert_eq!(reply.status, 200);
        let backend = reply
            .head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("x-backend")
                    .then(|| value.trim().to_string())
            })
            .expect("x-backend header");
        answered.push(backend);
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_is_the_client() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let trusting = "trusted_proxies = [\"127.0.0.1/32\"]\ntrust_forwarded_for = true\n";
    let listeners = [
        listener("trusting", trusting, false),
        listener("plain", "trusted_proxies = [\"127.0.0.1/32\"]\n", false),
    ];
    // Maglev on the client IP: the backend chosen shows which address levee took as client.
    let pool = "algorithm = \"maglev\"\nhash_key = \"client_ip\"";
    let toml =
        config(&listeners, &[a.addr, b.addr], "").replace("algorithm = \"round_robin\"", pool);
    let levee = start_levee(&toml);
    let clients: Vec<String> = (1..=24).map(|i| format!("198.51.100.{i}")).collect();
    let trusted = backends_for(levee.addr("trusting"), &clients).await;
    assert!(
        trusted.iter().any(|x| x == "a") && trusted.iter().any(|x| x == "b"),
        "24 client addresses all hashed to one backend: {trusted:?}"
    );
    // Stable: the same client address picks the same backend again.
    assert_eq!(
        backends_for(levee.addr("trusting"), &clients).await,
        trusted
    );
    // The right-most untrusted entry counts, not a forged one on its left.
    let forged: Vec<String> = clients.iter().map(|c| format!("6.6.6.6, {c}")).collect();
    assert_eq!(backends_for(levee.addr("trusting"), &forged).await, trusted);
    // Without trust_forwarded_for the TCP peer (127.0.0.1) is the client: one backend.
    let untrusted = backends_for(levee.addr("plain"), &clients).await;
    assert!(
        untrusted.iter().all(|x| x == &untrusted[0]),
        "{untrusted:?}"
    );
    // The backend still sees the whole chain, with the proxy's address appended.
    let chains: Vec<String> = a
        .seen()
        .into_iter()
        .chain(b.seen())
        .filter_map(|s| s.header("x-forwarded-for"))
        .collect();
    let want = "6.6.6.6, 198.51.100.1, 127.0.0.1";
    assert!(chains.iter().any(|x| x == want), "{chains:?}");
}
