//! Listeners changed by reload: an added listener accepts (on every worker, plain and TLS); a
//! removed one refuses new connections while the requests in flight on it complete; a moved
//! one serves on its new address and releases the old; changing a listener's certificate or
//! routes re-binds nothing and applies to connections already open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::client::Proto;
use common::*;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use tokio::task::JoinHandle;

/// New connections made to an added listener (enough that both workers get some).
const CONNECTIONS: usize = 24;
/// Chunks of each upload in flight while its listener is removed, and their size.
const CHUNKS: usize = 32;
const CHUNK: usize = 64 * 1024;

fn web_and(backend: &Backend, more: &str) -> String {
    pool_of(&[backend], more)
}

/// A listener "web" (plus `more`) to a pool "web" of `backends`.
fn pool_of(backends: &[&Backend], more: &str) -> String {
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    server_toml(2)
        + &listener_toml("web", "web", None, "", "")
        + more
        + &pool_toml("web", &addrs, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_added_by_reload_accepts_on_every_worker() {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let a = Backend::start("a");
    let levee = Arc::new(start_levee(&web_and(&a, "")));
    let web = levee.addr("web");
    assert!(levee.running().listener_addr("extra").is_none());

    let added = listener_toml("extra", "web", None, "", "")
        + &listener_toml("secure", "web", Some(&[&leaf]), "", "");
    assert_reloaded(&reload_to(&levee, &web_and(&a, &added)).await, 2);
    assert_eq!(levee.addr("web"), web, "an unchanged listener was re-bound");
    let extra = levee.addr("extra");
    assert_ne!(extra.port(), 0);
    assert_ne!(extra, web);

    let before = levee.running().worker_totals();
    for i in 0..CONNECTIONS {
        let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
        let mut c = Conn::plain(extra, proto).await;
        let reply = c.get("/").await;
        assert_eq!(reply.status, 200, "connection {i}");
        assert_eq!(reply.backend(), Some("a"));
    }
    let after = levee.running().worker_totals();
    for (w, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a.connections > b.connections,
            "worker {w} accepted nothing on the new listener: {before:?} -> {after:?}"
        );
    }

    let cfg = client_config(&ca.der(), TlsOpts::default().h2());
    let (reply, info) = tls_get(levee.addr("secure"), cfg, "localhost", Proto::H2, "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), Some("a"));
    assert_eq!(info.peer_cert.as_ref(), Some(&leaf.der));
}

/// An upload in flight on `addr`, with its sender and the bytes sent so far; the task gives
/// the connection back with the response head.
struct Upload {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    sent: Vec<u8>,
    seed: usize,
    response: JoinHandle<(StreamConn, Result<Response<Incoming>, String>)>,
}

async fn start_upload(addr: SocketAddr, proto: Proto, seed: usize) -> Upload {
    let mut conn = StreamConn::open(addr, proto).await;
    let (tx, body) = fed_body();
    let response = tokio::spawn(async move {
        let r = conn.send("POST", "/digest", body).await;
        (conn, r)
    });
    let mut upload = Upload {
        tx,
        sent: Vec::new(),
        seed,
        response,
    };
    upload.feed(CHUNKS / 4).await;
    upload
}

impl Upload {
    async fn feed(&mut self, chunks: usize) {
        for _ in 0..chunks {
            let c = chunk(self.seed * 1000 + self.sent.len() / CHUNK, CHUNK);
            self.sent.extend_from_slice(&c);
            feed(&self.tx, c).await;
        }
    }

    /// Sends the rest, ends the body and checks the digest from one of `backends`; returns
    /// the connection and the backend that answered.
    async fn finish(mut self, backends: &[&str]) -> (StreamConn, String) {
        self.feed(CHUNKS - CHUNKS / 4).await;
        drop(self.tx);
        let (conn, resp) = self.response.await.unwrap();
        let mut resp = resp.expect("upload failed");
        let body = read_to_end(resp.body_mut()).await;
        let h = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
        assert_eq!(resp.status(), StatusCode::OK, "{body:?}");
        let backend = h("x-backend").unwrap_or_default().to_string();
        assert!(backends.contains(&backend.as_str()), "{backend}");
        assert_eq!(h("x-body-len"), Some(self.sent.len().to_string().as_str()));
        assert_eq!(h("x-body-sha256"), Some(sha256(&self.sent).as_str()));
        (conn, backend)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_removed_by_reload_refuses_new_connections_and_its_requests_finish() {
    let a = Backend::start("a");
    let extra_toml = listener_toml("extra", "web", None, "", "");
    let levee = Arc::new(start_levee(&web_and(&a, &extra_toml)));
    let extra = levee.addr("extra");
    // Requests in flight on the listener about to go: an HTTP/1.1 and an h2 upload.
    let h1 = start_upload(extra, Proto::H1, 1).await;
    let h2 = start_upload(extra, Proto::H2, 2).await;
    assert!(a.wait_requests(2, Duration::from_secs(10)).await);

    assert_reloaded(&reload_to(&levee, &web_and(&a, "")).await, 2);
    assert!(levee.running().listener_addr("extra").is_none());
    assert!(
        wait_refused(extra, Duration::from_secs(5)).await,
        "the removed listener still accepts"
    );
    for i in 0..10 {
        assert!(refused(extra).await, "connect {i} to the removed listener");
    }
    // The other listener is untouched.
    let mut c = Conn::plain(levee.addr("web"), Proto::H1).await;
    assert_eq!(c.get("/").await.backend(), Some("a"));

    h1.finish(&["a"]).await;
    h2.finish(&["a"]).await;
    assert_eq!(a.requests(), 3);

    // The same name can come back (on a new port, as configured with port 0).
    assert_reloaded(&reload_to(&levee, &web_and(&a, &extra_toml)).await, 3);
    let again = levee.addr("extra");
    let mut c = Conn::plain(again, Proto::H2).await;
    assert_eq!(c.get("/").await.backend(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_left_on_a_removed_listener_finish_their_requests_then_close() {
    let keep = Backend::start("keep");
    let gone = Backend::start("gone");
    let extra_toml = listener_toml("extra", "web", None, "", "");
    let levee = Arc::new(start_levee(&pool_of(&[&keep, &gone], &extra_toml)));
    let extra = levee.addr("extra");
    // Idle keep-alive connections on the listener about to go, each after one request...
    let mut idle = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let mut c = StreamConn::open(extra, proto).await;
        let mut resp = c.send("GET", "/", empty()).await.unwrap();
        read_to_end(resp.body_mut()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        idle.push(c);
    }
    // ... and requests in flight on it.
    let h1 = start_upload(extra, Proto::H1, 1).await;
    let h2 = start_upload(extra, Proto::H2, 2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while keep.requests() + gone.requests() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "uploads did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The reload removes the listener and one of the pool's backends.
    assert_reloaded(&reload_to(&levee, &pool_of(&[&keep], "")).await, 2);
    let gone_at_return = gone.requests();
    // The connections drain: an idle one closes (it would otherwise keep routing on the
    // config it was accepted with, removed backend included)...
    for (i, c) in idle.iter().enumerate() {
        assert!(
            c.wait_closed(Duration::from_secs(5)).await,
            "idle connection {i} of a removed listener is still open"
        );
    }
    // ... and one with a request in flight closes after its response.
    for upload in [h1, h2] {
        let (conn, _) = upload.finish(&["keep", "gone"]).await;
        assert!(
            conn.wait_closed(Duration::from_secs(5)).await,
            "a connection of a removed listener stays open after its last request"
        );
    }
    assert_eq!(
        gone.requests(),
        gone_at_return,
        "the removed backend got a request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_listener_serves_on_its_new_address_and_releases_the_old() {
    let a = Backend::start("a");
    let levee = Arc::new(start_levee(&web_and(&a, "")));
    let old = levee.addr("web");
    // A keep-alive connection opened before the move.
    let mut before = Conn::plain(old, Proto::H1).await;
    assert_eq!(before.get("/").await.backend(), Some("a"));

    let port = free_port();
    let moved = web_and(&a, "").replacen(
        "listen = \"127.0.0.1:0\"\ndefault_pool",
        &format!("listen = \"127.0.0.1:{port}\"\ndefault_pool"),
        1,
    );
    assert_reloaded(&reload_to(&levee, &moved).await, 2);
    let new = levee.addr("web");
    assert_eq!(new.port(), port);
    let mut c = Conn::plain(new, Proto::H2).await;
    assert_eq!(c.get("/").await.backend(), Some("a"));
    assert!(
        wait_refused(old, Duration::from_secs(5)).await,
        "the old address still accepts"
    );
    // The connection accepted on the old address still serves (its listener kept its name).
    assert_eq!(before.get("/").await.backend(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_certificates_and_routes_rebinds_nothing_and_applies_to_open_connections() {
    let ca = TestCa::new();
    let one = ca.leaf("one", &["localhost"]);
    let two = ca.leaf("two", &["localhost"]);
    let (a, r) = (Backend::start("a"), Backend::start("r"));
    let config = |leaf: &Leaf, routes: &str| {
        server_toml(2)
            + &listener_toml("tls", "web", Some(&[leaf]), "", "")
            + routes
            + &pool_toml("web", &[a.addr], "")
            + &pool_toml("other", &[r.addr], "")
    };
    let levee = Arc::new(start_levee(&config(&one, "")));
    let addr = levee.addr("tls");
    let cfg = |proto: Proto| {
        let opts = TlsOpts::default();
        let opts = if proto == Proto::H2 {
            opts.h2()
        } else {
            opts.h1()
        };
        client_config(&ca.der(), opts)
    };
    let mut h1 = Conn::tls(addr, cfg(Proto::H1), "localhost", Proto::H1).await;
    let mut h2 = Conn::tls(addr, cfg(Proto::H2), "localhost", Proto::H2).await;
    for c in [&mut h1, &mut h2] {
        assert_eq!(c.get("/r/x").await.backend(), Some("a"), "no route yet");
    }

    let route = "[[listeners.routes]]\npath_prefix = \"/r\"\npool = \"other\"\n\n";
    assert_reloaded(&reload_to(&levee, &config(&two, route)).await, 2);
    assert_eq!(levee.addr("tls"), addr, "the listener was re-bound");
    // Connections opened before the reload route on the new config.
    for c in [&mut h1, &mut h2] {
        assert_eq!(c.get("/r/x").await.backend(), Some("r"));
        assert_eq!(c.get("/").await.backend(), Some("a"));
    }
    // New handshakes present the new certificate.
    let (reply, info) = tls_get(addr, cfg(Proto::H1), "localhost", Proto::H1, "/r/y").await;
    assert_eq!(reply.backend(), Some("r"));
    assert_eq!(info.peer_cert.as_ref(), Some(&two.der));
}
