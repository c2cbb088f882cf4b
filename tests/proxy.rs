//! HTTPS proxying end to end: HTTP/1.1 and h2 by ALPN, forwarding headers, hop-by-hop removal,
//! round robin, routes, plain HTTP and HTTP/1.0 without Host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::backend::Seen;
use common::client::{Proto, raw_exchange, tls_connect};
use common::*;
use http::Version;

/// A TLS listener "tls" for app.test + a plain listener "plain", both to pool "web".
struct Setup {
    ca: TestCa,
    backends: Vec<Backend>,
    levee: Levee,
}

fn setup(backend_names: &[&str], workers: usize) -> Setup {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["app.test", "localhost"]);
    let backends: Vec<Backend> = backend_names.iter().map(|n| Backend::start(n)).collect();
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let toml = server_toml(workers)
        + &listener_toml("tls", "web", Some(&[&leaf]), "", "")
        + &listener_toml("plain", "web", None, "", "")
        + &pool_toml("web", &addrs, "");
    let levee = start_levee(&toml);
    Setup {
        ca,
        backends,
        levee,
    }
}

fn assert_forwarded(seen: &Seen, host: &str, xff: &str, proto: &str, via: &str) {
    assert_eq!(seen.header("host").as_deref(), Some(host), "Host kept");
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some(host));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some(xff));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some(proto));
    let v = seen.header("via").unwrap_or_default();
    assert!(v.contains(via) && v.contains("levee"), "Via was {v:?}");
    assert_eq!(seen.version, Version::HTTP_11, "upstream is HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_get_over_http11_reaches_the_backend_with_forwarding_headers() {
    let s = setup(&["b1"], 2);
    let addr = s.levee.addr("tls");
    let cfg = client_config(&s.ca.der(), TlsOpts::default().h1());
    let mut conn = Conn::tls(addr, cfg, "app.test", Proto::H1).await;
    let info = conn.tls.clone().unwrap();
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));

    let reply = conn.get("/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(reply.backend(), Some("b1"));
    assert_eq!(reply.text(), "hello from b1\n");
    let host = format!("app.test:{}", addr.port());
    assert_forwarded(&s.backends[0].last(), &host, "127.0.0.1", "https", "1.1");

    // A client that is not a trusted proxy cannot forge forwarding headers: what it sent is
    // replaced by what levee knows (the listener trusts no proxy).
    let req = conn
        .request("GET", "/headers")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "http")
        .body(empty())
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    let seen = s.backends[0].last();
    assert_eq!(seen.target, "/headers");
    assert_forwarded(&seen, &host, "127.0.0.1", "https", "1.1");
    // The backend's own JSON view agrees.
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_get_over_h2_reaches_the_backend_with_forwarding_headers() {
    let s = setup(&["b1"], 2);
    let addr = s.levee.addr("tls");
    let cfg = client_config(&s.ca.der(), TlsOpts::default().h2());
    let mut conn = Conn::tls(addr, cfg, "app.test", Proto::H2).await;
    assert_eq!(conn.tls.as_ref().unwrap().alpn.as_deref(), Some(&b"h2"[..]));

    for i in 0..3 {
        let req = conn
            .request("GET", &format!("/h2/{i}?q=1"))
            .header("x-forwarded-for", "198.51.100.1")
            .header("x-custom", "kept")
            .body(empty())
            .unwrap();
        let reply = conn.send(req).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.version, Version::HTTP_2);
        assert_eq!(reply.backend(), Some("b1"));
        assert_eq!(reply.text(), "hello from b1\n");
        let seen = s.backends[0].last();
        assert_eq!(seen.target, format!("/h2/{i}?q=1"));
        let host = format!("app.test:{}", addr.port());
        assert_forwarded(&seen, &host, "127.0.0.1", "https", "2");
        assert_eq!(seen.header("x-custom").as_deref(), Some("kept"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_from_the_client_never_reach_the_backend() {
    let s = setup(&["b1"], 1);
    let addr = s.levee.addr("tls");
    let cfg = client_config(&s.ca.der(), TlsOpts::default().h1());
    let (tls, _) = tls_connect(addr, cfg, "app.test").await.unwrap();
    let request = b"GET /hop HTTP/1.1\r\n\
        Host: app.test\r\n\
        Connection: close, X-Foo\r\n\
        X-Foo: secret\r\n\
        Keep-Alive: timeout=5\r\n\
        TE: trailers\r\n\
        Upgrade: websocket\r\n\
        Proxy-Connection: keep-alive\r\n\
        Trailer: X-Checksum\r\n\
        X-Keep: yes\r\n\
        \r\n";
    let reply = raw_exchange(tls, request).await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    let seen = s.backends[0].last();
    assert_eq!(seen.target, "/hop");
    for h in [
        "connection",
        "x-foo",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "trailer",
    ] {
        assert!(
            seen.header(h).is_none(),
            "hop-by-hop header {h} reached the backend: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header("x-keep").as_deref(), Some("yes"));
    assert_eq!(seen.header("host").as_deref(), Some("app.test"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly_over_three_backends() {
    let s = setup(&["rr-a", "rr-b", "rr-c"], 2);
    let addr = s.levee.addr("tls");
    let h1 = client_config(&s.ca.der(), TlsOpts::default().h1());
    let h2 = client_config(&s.ca.der(), TlsOpts::default().h2());
    let mut order = Vec::new();
    // Keep-alive on one connection, then fresh connections (any worker), then h2.
    let mut conn = Conn::tls(addr, h1.clone(), "app.test", Proto::H1).await;
    for _ in 0..3 {
        order.push(conn.get("/").await.backend().unwrap().to_string());
    }
    for _ in 0..3 {
        let (reply, _) = tls_get(addr, h1.clone(), "app.test", Proto::H1, "/").await;
        order.push(reply.backend().unwrap().to_string());
    }
    let mut conn = Conn::tls(addr, h2, "app.test", Proto::H2).await;
    for _ in 0..3 {
        order.push(conn.get("/").await.backend().unwrap().to_string());
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for b in &order {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "order: {order:?}");
    assert!(counts.values().all(|&c| c == 3), "order: {order:?}");
    // Strict rotation: any three consecutive picks name three different backends.
    for w in order.windows(3) {
        assert!(
            w[0] != w[1] && w[1] != w[2] && w[0] != w[2],
            "order: {order:?}"
        );
    }
    for b in &s.backends {
        assert_eq!(b.requests(), 3, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_listener_forwards_with_proto_http() {
    let s = setup(&["b1"], 1);
    let addr = s.levee.addr("plain");
    let mut conn = Conn::plain(addr, Proto::H1).await;
    let reply = conn.get("/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from b1\n");
    let seen = s.backends[0].last();
    assert_forwarded(&seen, &addr.to_string(), "127.0.0.1", "http", "1.1");

    // h2 with prior knowledge on the plain listener.
    let mut conn = Conn::plain(addr, Proto::H2).await;
    let reply = conn.get("/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(s.backends[0].requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_request_without_host_is_forwarded() {
    let s = setup(&["b1"], 1);
    let addr = s.levee.addr("tls");
    let cfg = client_config(&s.ca.der(), TlsOpts::default().h1());
    let (tls, _) = tls_connect(addr, cfg, "app.test").await.unwrap();
    let reply = raw_exchange(tls, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert!(
        String::from_utf8_lossy(&reply.body).contains("hello from b1"),
        "{reply:?}"
    );
    let seen = s.backends[0].last();
    // levee fills in a Host (the backend's authority) but invents no X-Forwarded-Host.
    assert_eq!(
        seen.header("host").as_deref(),
        Some(s.backends[0].addr.to_string().as_str())
    );
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));

    // Same over the plain listener (what `openssl s_time`-style tools send).
    let tcp = tokio::net::TcpStream::connect(s.levee.addr("plain"))
        .await
        .unwrap();
    let reply = raw_exchange(tcp, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_prefix_else_default_pool() {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["app.test", "api.test"]);
    let web = Backend::start("web");
    let api = Backend::start("api");
    let other = Backend::start("other");
    let toml = server_toml(1)
        + &listener_toml("tls", "web", Some(&[&leaf]), "", "")
        + "[[listeners.routes]]\nhost = \"api.test\"\npool = \"api\"\n\n\
           [[listeners.routes]]\npath_prefix = \"/other/\"\npool = \"other\"\n\n"
        + &pool_toml("web", &[web.addr], "")
        + &pool_toml("api", &[api.addr], "")
        + &pool_toml("other", &[other.addr], "");
    let levee = start_levee(&toml);
    let addr = levee.addr("tls");
    let cfg = client_config(&ca.der(), TlsOpts::default().h1());
    let cases = [
        ("app.test", "/", "web"),
        ("app.test", "/other/x", "other"),
        ("api.test", "/other/x", "api"),
        ("API.TEST", "/", "api"),
    ];
    for (host, path, want) in cases {
        let mut conn = Conn::tls(addr, cfg.clone(), "app.test", Proto::H1).await;
        let mut req = conn.request("GET", path);
        // Replace the Host that `request` set.
        req.headers_mut()
            .unwrap()
            .insert(http::header::HOST, host.parse().unwrap());
        let reply = conn.send(req.body(empty()).unwrap()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend(), Some(want), "{host}{path}");
    }
}
