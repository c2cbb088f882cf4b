//! HTTP semantics a strict edge enforces (RFC 9110, RFC 9112): a request without a usable
//! host or with two, an absolute-form target (its authority is the host), `CONNECT`, the
//! asterisk form for anything but `OPTIONS`, a transfer coding levee cannot frame, and a
//! backend response that frames its body twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::client::{Conn, Proto, RawReply, TlsOpts, client_config_insecure, raw_exchange};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A plain listener `web` over `backends[0]`, with a route for host `abs.example` to
/// `backends[1]`, and a TLS listener `tls` over `backends[0]`.
fn levee_for(backends: &[&Backend]) -> Levee {
    let route = "[[listeners.routes]]\nhost = \"abs.example\"\npool = \"other\"\n";
    let certs: &[&Leaf] = &[];
    let toml = server_toml(1)
        + &listener_toml("web", "web", None, "", "")
        + route
        + "\n"
        + &listener_toml("tls", "web", Some(certs), "", "")
        + &pool_toml("web", &[backends[0].addr], "")
        + &pool_toml("other", &[backends[1 % backends.len()].addr], "");
    start_levee(&toml)
}

async fn exchange(addr: SocketAddr, head: &str) -> RawReply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    raw_exchange(tcp, head.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_or_with_two_is_refused() {
    let backend = Backend::start("b1");
    let levee = levee_for(&[&backend]);
    let web = levee.addr("web");
    let no_host = exchange(web, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(no_host.status, 400, "{}", no_host.head);
    let two = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n";
    let two = exchange(web, two).await;
    assert_eq!(two.status, 400, "{}", two.head);
    assert_eq!(
        backend.requests(),
        0,
        "refused requests reached the backend"
    );
    // HTTP/1.0 without Host is fine (there was no Host in 1.0).
    let old = exchange(web, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(old.status, 200, "{}", old.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_names_the_host() {
    let (b1, b2) = (Backend::start("b1"), Backend::start("b2"));
    let levee = levee_for(&[&b1, &b2]);
    let head = "GET http://abs.example/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\
                Connection: close\r\n\r\n";
    let reply = exchange(levee.addr("web"), head).await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    // Routed by the target's authority, which is also the Host the backend sees.
    let seen = b2.last();
    assert_eq!(seen.target, "/p?q=1");
    assert_eq!(seen.header("host").as_deref(), Some("abs.example"));
    assert_eq!(b1.requests(), 0);
    // No path (and a fragment, which is not sent): the backend gets `/`, never an empty
    // target (found by the `h1_head` fuzz target).
    for (target, want) in [
        ("http://abs.example#frag", "/"),
        ("http://abs.example?q", "/?q"),
    ] {
        let head =
            format!("GET {target} HTTP/1.1\r\nHost: abs.example\r\nConnection: close\r\n\r\n");
        let reply = exchange(levee.addr("web"), &head).await;
        assert_eq!(reply.status, 200, "{target}: {}", reply.head);
        assert_eq!(b2.last().target, want, "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_a_misplaced_asterisk_are_refused() {
    let backend = Backend::start("b1");
    let levee = levee_for(&[&backend]);
    let web = levee.addr("web");
    let connect = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
                   Connection: close\r\n\r\n";
    let reply = exchange(web, connect).await;
    assert_eq!(reply.status, 405, "{}", reply.head);
    let star = exchange(
        web,
        "GET * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(star.status, 400, "{}", star.head);
    assert_eq!(backend.requests(), 0);
    let options = "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let options = exchange(web, options).await;
    assert_eq!(options.status, 200, "{}", options.head);
    assert_eq!(backend.last().target, "*");

    // The same over h2: CONNECT gets 405 on its stream, the connection goes on.
    let config = client_config_insecure(TlsOpts::default().h2());
    let mut h2 = Conn::tls(levee.addr("tls"), config, "localhost", Proto::H2).await;
    let req = h2
        .request("CONNECT", "/")
        .uri("localhost:443")
        .body(common::body::empty())
        .unwrap();
    let reply = h2.try_send(req).await;
    assert!(
        reply.as_ref().map_or(true, |r| r.status == 405),
        "h2 CONNECT: {reply:?}"
    );
    assert_eq!(h2.get("/").await.status, 200, "the connection survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_other_than_a_final_chunked_is_refused() {
    let backend = Backend::start("b1");
    let levee = levee_for(&[&backend]);
    let web = levee.addr("web");
    for te in ["gzip", "chunked, gzip", "identity"] {
        let head =
            format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        let reply = exchange(web, &head).await;
        assert!(
            reply.status == 400 || reply.status == 501,
            "{te}: {}",
            reply.head
        );
    }
    assert_eq!(backend.requests(), 0);
}

/// A backend that answers every request with `head` (and closes).
async fn raw_backend(head: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(head.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_response_framed_twice_is_a_502() {
    let backend = raw_backend(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
         a\r\n0123456789\r\n0\r\n\r\n",
    )
    .await;
    let toml = server_toml(1)
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[backend], "");
    let levee = start_levee(&toml);
    let head = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let reply = exchange(levee.addr("web"), head).await;
    assert_eq!(reply.status, 502, "{}", reply.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_is_not_a_host_or_carries_userinfo_is_refused() {
    let (b1, b2) = (Backend::start("b1"), Backend::start("b2"));
    let levee = levee_for(&[&b1, &b2]);
    let web = levee.addr("web");
    let heads = [
        "GET http://user:pw@abs.example/ HTTP/1.1\r\nHost: abs.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@abs.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: abs.example/evil\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
    ];
    for head in heads {
        let reply = exchange(web, head).await;
        assert_eq!(reply.status, 400, "{head:?} -> {}", reply.head);
    }
    assert_eq!(
        b1.requests() + b2.requests(),
        0,
        "a refused head reached a backend"
    );
    // A port in Host is part of a host: routed on the host, passed on unchanged.
    let ported = "GET / HTTP/1.1\r\nHost: abs.example:8080\r\nConnection: close\r\n\r\n";
    let reply = exchange(web, ported).await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(
        b2.last().header("host").as_deref(),
        Some("abs.example:8080")
    );
}
