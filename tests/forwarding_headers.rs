//! Forwarding headers a client sends never reach a backend unless the listener trusts the
//! client as a proxy, including when levee knows no host to put in `X-Forwarded-Host`
//! (HTTP/1.0 without `Host`, `Host` named in `Connection`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::raw_exchange;
use common::*;
use tokio::net::TcpStream;

const FORGED: &str = "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Host: evil.example\r\n\
                      X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n\
                      Forwarded: for=203.0.113.7;host=evil.example\r\n";

fn levee_for(backend: &Backend, trusted: bool) -> Levee {
    let trust = if trusted {
        "trust_forwarded_for = true\ntrusted_proxies = [\"127.0.0.1\"]\n"
    } else {
        ""
    };
    let listener = listener_toml("web", "web", None, "", "").replacen(
        "default_pool = \"web\"\n",
        &format!("default_pool = \"web\"\n{trust}"),
        1,
    );
    start_levee(&(server_toml(1) + &listener + &pool_toml("web", &[backend.addr], "")))
}

async fn send(levee: &Levee, head: &str) {
    let tcp = TcpStream::connect(levee.addr("web")).await.unwrap();
    let reply = raw_exchange(tcp, head.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_clients_forwarding_headers_never_reach_the_backend() {
    let backend = Backend::start("b1");
    let levee = levee_for(&backend, false);
    for head in [
        format!("GET / HTTP/1.0\r\n{FORGED}\r\n"),
        format!("GET / HTTP/1.1\r\nHost: app\r\nConnection: host, close\r\n{FORGED}\r\n"),
        format!("GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n{FORGED}\r\n"),
    ] {
        send(&levee, &head).await;
        let seen = backend.last();
        assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
        let host = seen.header("x-forwarded-host");
        assert!(host.as_deref() != Some("evil.example"), "{head}: {host:?}");
        assert_eq!(seen.header("x-forwarded-port"), None, "{head}");
        assert_eq!(seen.header("forwarded"), None, "{head}");
        if head.contains("Host: app") {
            // Host is end to end even when named in Connection: levee routed on it.
            assert_eq!(seen.header("host").as_deref(), Some("app"), "{head}");
        }
    }
    // Where levee knows the host, it sets X-Forwarded-Host itself.
    assert_eq!(
        backend.last().header("x-forwarded-host").as_deref(),
        Some("app")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarding_headers_are_kept() {
    let backend = Backend::start("b1");
    let levee = levee_for(&backend, true);
    send(
        &levee,
        &format!("GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n{FORGED}\r\n"),
    )
    .await;
    let seen = backend.last();
    let xff = seen.header("x-forwarded-for");
    assert_eq!(xff.as_deref(), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("evil.example")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.header("x-forwarded-port").as_deref(), Some("443"));
    let forwarded = seen.header("forwarded");
    assert_eq!(
        forwarded.as_deref(),
        Some("for=203.0.113.7;host=evil.example")
    );
}
