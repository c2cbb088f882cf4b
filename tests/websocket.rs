//! WebSocket through levee: a real tungstenite client and server, over TLS and plain
//! listeners, and over h2 (RFC 8441 extended CONNECT); the tunnel's accounting, and what
//! reloads, a backend's death, drain and `allow_upgrade = false` do to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::client::{Conn, Proto, TlsOpts, client_config_insecure, tls_connect};
use common::{ACCESS_LOG_FILE, Levee, listener_toml, pool_toml, server_toml, start_levee};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::{WebSocketStream, client_async};

const STEP: Duration = Duration::from_secs(10);

/// A WebSocket echo server: echoes every data message; on the text `bye` it closes from its
/// side. Its connection tasks can be killed (`kill`) to simulate a backend that dies.
struct EchoServer {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl EchoServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let held = Arc::clone(&conns);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let task = tokio::spawn(echo(tcp));
                held.lock().unwrap().push(task.abort_handle());
            }
        });
        Self {
            addr,
            conns,
            accept: accept.abort_handle(),
        }
    }

    /// Kills every open connection (their sockets close).
    fn kill(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.kill();
    }
}

async fn echo(tcp: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(t) if t.as_str() == "bye" => {
                let _ = ws.close(None).await;
                // Read on until the client's close answers ours.
            }
            m @ (Message::Text(_) | Message::Binary(_)) => {
                let sent = ws.send(m).await;
                if sent.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// Two listeners (TLS with a generated certificate, plain) to pool `ws`; `http` goes into
/// both `[listeners.http]`, `pool_extra` into `[pools.ws]`. JSON access log on.
fn config(backend: SocketAddr, pool_extra: &str, http: &str) -> String {
    let log = format!(
        "access_log = true\naccess_log_path = \"{ACCESS_LOG_FILE}\"\nlog_format = \"json\""
    );
    server_toml(2).replace("access_log = false", &log)
        + &listener_toml("tls", "ws", Some(&[]), "", http)
        + &listener_toml("plain", "ws", None, "", http)
        + &pool_toml("ws", &[backend], pool_extra)
}

/// Requests answered, every status class.
fn requests(t: &levee::stats::CountersSnapshot) -> u64 {
    t.requests.iter().sum()
}

async fn tls_stream(levee: &Levee) -> impl AsyncRead + AsyncWrite + Unpin + use<> {
    let config = client_config_insecure(TlsOpts::default().h1());
    tls_connect(levee.addr("tls"), config, "localhost")
        .await
        .unwrap()
        .0
}

async fn plain_stream(levee: &Levee) -> TcpStream {
    TcpStream::connect(levee.addr("plain")).await.unwrap()
}

/// Sends 1,000 text messages, then reads their 1,000 echoes; then a 1 MB binary message.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    for i in 0..1000 {
        ws.send(Message::text(format!("message {i}")))
            .await
            .unwrap();
    }
    for i in 0..1000 {
        let got = tokio::time::timeout(STEP, ws.next()).await.unwrap();
        assert_eq!(got.unwrap().unwrap(), Message::text(format!("message {i}")));
    }
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    let got = tokio::time::timeout(STEP, ws.next()).await.unwrap();
    assert_eq!(got.unwrap().unwrap(), Message::binary(big));
}

/// Waits for the client side to see the end of its WebSocket (the stream's end or an error;
/// a close frame is answered by polling on); panics if it stays open.
async fn ends<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the WebSocket ended");
        match next {
            None | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn websockets_echo_through_tls_and_plain_listeners_and_count_as_one_request() {
    let backend = EchoServer::start().await;
    let levee = start_levee(&config(backend.addr, "", ""));

    let (mut ws, resp) = client_async("wss://localhost/chat?room=1", tls_stream(&levee).await)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    exchange(&mut ws).await;
    // Closed by the client: the close handshake completes through levee.
    ws.close(None).await.unwrap();
    ends(&mut ws).await;

    let (mut ws, resp) = client_async("ws://localhost/plain", plain_stream(&levee).await)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    exchange(&mut ws).await;
    // Closed by the server.
    ws.send(Message::text("bye")).await.unwrap();
    ends(&mut ws).await;

    let line = levee.access_log_line("/chat", STEP).await;
    let fields: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(fields["status"], 101, "{line}");
    assert_eq!(fields["status_from"], "backend", "{line}");
    assert!(
        fields["bytes_out"].as_u64().unwrap() > 1_000_000,
        "the tunnel's bytes are counted: {line}"
    );
    assert!(fields["bytes_in"].as_u64().unwrap() > 1_000_000, "{line}");
    let line = levee.access_log_line("/plain", STEP).await;
    assert!(line.contains("\"status\":101"), "{line}");
    let totals = levee.wait_totals(STEP, |t| requests(t) == 2).await;
    assert_eq!(requests(&totals), 2, "each WebSocket is one request");
    assert_eq!(totals.requests[0], 2, "counted as 1xx");
}

#[tokio::test]
async fn a_reload_leaves_an_open_websocket_alone_and_a_dead_backend_ends_it_cleanly() {
    let backend = EchoServer::start().await;
    let other = common::backend::Backend::start("other");
    // Ordinary requests to another pool go on beside the WebSocket throughout.
    let toml = config(backend.addr, "", "").replace(
        "name = \"plain\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"ws\"\n",
        "name = \"plain\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"ws\"\n\
         [[listeners.routes]]\npath_prefix = \"/http/\"\npool = \"other\"\n",
    ) + &pool_toml("other", &[other.addr], "");
    assert!(toml.contains("/http/"), "{toml}");
    let levee = start_levee(&toml);
    let plain = levee.addr("plain");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let others = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let mut conn = Conn::plain(plain, Proto::H1).await;
        // Bounded: at most 2,000 requests, and stopped when the test is done.
        for i in 0..2000 {
            if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            match conn
                .try_send(
                    conn.request("GET", &format!("/http/{i}"))
                        .body(common::body::empty())
                        .unwrap(),
                )
                .await
            {
                Ok(r) if r.status == 200 => ok += 1,
                Ok(r) => failed.push(format!("{i}: {}", r.status)),
                Err(e) => failed.push(format!("{i}: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failed)
    });
    let (mut ws, _) = client_async("wss://localhost/chat", tls_stream(&levee).await)
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    // A reload that changes the pools: the open WebSocket goes on.
    let third = common::backend::Backend::start("third");
    let reloaded = toml.clone() + &pool_toml("third", &[third.addr], "");
    let report = levee.reload_with(&reloaded);
    assert!(report.ok, "{report:?}");
    ws.send(Message::text("after reload")).await.unwrap();
    let got = tokio::time::timeout(STEP, ws.next()).await.unwrap();
    assert_eq!(got.unwrap().unwrap(), Message::text("after reload"));

    // The backend dies: the client's WebSocket ends (no hang), and levee serves on.
    backend.kill();
    ends(&mut ws).await;
    let (mut ws, resp) = client_async("ws://localhost/again", plain_stream(&levee).await)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("again")).await.unwrap();
    let got = tokio::time::timeout(STEP, ws.next()).await.unwrap();
    assert_eq!(got.unwrap().unwrap(), Message::text("again"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = others.await.unwrap();
    assert!(failed.is_empty(), "other requests failed: {failed:?}");
    assert!(ok >= 5, "other requests ran beside the WebSocket: {ok}");
}

#[tokio::test]
async fn shutdown_leaves_an_open_websocket_until_shutdown_timeout() {
    let backend = EchoServer::start().await;
    // shutdown_timeout is 2 s in the tests' [server].
    let levee = start_levee(&config(backend.addr, "", ""));
    let (mut ws, _) = client_async("wss://localhost/chat", tls_stream(&levee).await)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let stopping = tokio::task::spawn_blocking(move || levee.stop());
    // Draining: the WebSocket still echoes a second in.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ws.send(Message::text("still here")).await.unwrap();
    let got = tokio::time::timeout(STEP, ws.next()).await.unwrap();
    assert_eq!(got.unwrap().unwrap(), Message::text("still here"));
    // Then shutdown_timeout closes it.
    ends(&mut ws).await;
    stopping.await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "closed only at shutdown_timeout, after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_pool_that_refuses_upgrades_gets_no_upgrade_headers() {
    let backend = EchoServer::start().await;
    let levee = start_levee(&config(backend.addr, "allow_upgrade = false", ""));
    let err = client_async("ws://localhost/chat", plain_stream(&levee).await)
        .await
        .expect_err("the backend saw no Upgrade");
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("expected an HTTP answer, got {err:?}");
    };
    assert_ne!(resp.status(), 101);
}

#[tokio::test]
async fn an_upgraded_connection_idle_past_upgrade_idle_timeout_is_closed() {
    let backend = EchoServer::start().await;
    let toml = config(backend.addr, "", "upgrade_idle_timeout = \"500ms\"");
    let levee = start_levee(&toml);
    let (mut ws, _) = client_async("ws://localhost/idle", plain_stream(&levee).await)
        .await
        .unwrap();
    ws.send(Message::text("one")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("one"));
    let quiet = tokio::time::Instant::now();
    ends(&mut ws).await;
    let after = quiet.elapsed();
    assert!(
        after >= Duration::from_millis(400) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn websocket_over_h2_extended_connect_goes_up_as_an_http1_upgrade() {
    let backend = EchoServer::start().await;
    let levee = start_levee(&config(backend.addr, "", ""));
    let config = client_config_insecure(TlsOpts::default().h2());
    let (tls, info) = tls_connect(levee.addr("tls"), config, "localhost")
        .await
        .unwrap();
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    // An ordinary request first: the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) are
    // in once it is answered.
    let warm = http::Request::get("https://localhost/")
        .body(Empty::new())
        .unwrap();
    let _ = sender.send_request(warm).await.unwrap();
    let mut req = http::Request::connect("https://localhost/h2chat")
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "RFC 8441: 200 opens the tunnel");
    let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    exchange(&mut ws).await;
    ws.close(None).await.unwrap();
    ends(&mut ws).await;
    let line = levee.access_log_line("/h2chat", STEP).await;
    assert!(line.contains("\"status\":200"), "{line}");
}
