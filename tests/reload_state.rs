//! What a reload does to requests already running and to the backends it removes:
//! - a streaming request (slow request body, or both bodies streaming) started before a
//!   reload that removes its backend completes intact, byte for byte, on that backend, while
//!   new requests already go to the new one;
//! - once a reload that removes a backend has returned, that backend receives no new request,
//!   and the requests it was serving complete.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::Proto;
use common::*;
use http::StatusCode;

/// Chunks of a streamed body, and their size.
const CHUNKS: usize = 64;
const CHUNK: usize = 64 * 1024;
/// Chunks sent before the reload.
const BEFORE_RELOAD: usize = 8;

/// `[server]` + one plain listener "web" to pool "web" = [backend].
fn single_backend(backend: &Backend) -> String {
    server_toml(2)
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[backend.addr], "")
}

/// Checks that a request sent now goes to `want`: on `same_connection` (an h2 handle on the
/// streaming request's connection: a new stream beside it), or else on a new connection.
async fn new_requests_go_to(
    same_connection: Option<StreamConn>,
    addr: std::net::SocketAddr,
    want: &str,
) {
    let mut probe = match same_connection {
        Some(c) => c,
        None => StreamConn::open(addr, Proto::H1).await,
    };
    let mut resp = probe.send("GET", "/", empty()).await.unwrap();
    let backend = resp.headers().get("x-backend").cloned();
    read_to_end(resp.body_mut()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        backend.as_ref().and_then(|v| v.to_str().ok()),
        Some(want),
        "a request sent after the reload"
    );
}

fn header(resp: &http::Response<hyper::body::Incoming>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Uploads CHUNKS chunks to `/digest` of `old`, with a reload to a pool of only `new` after
/// BEFORE_RELOAD of them: the backend's digest must match what was sent.
async fn upload_across_reload(proto: Proto) {
    let old = Backend::start("old");
    let new = Backend::start("new");
    let levee = Arc::new(start_levee(&single_backend(&old)));
    let addr = levee.addr("web");
    let mut conn = StreamConn::open(addr, proto).await;
    let same_connection = conn.h2_handle();
    let (tx, body) = fed_body();
    let upload = tokio::spawn(async move { conn.send("POST", "/digest", body).await });
    let mut sent = Vec::with_capacity(CHUNKS * CHUNK);
    for i in 0..BEFORE_RELOAD {
        let c = chunk(i, CHUNK);
        sent.extend_from_slice(&c);
        feed(&tx, c).await;
    }
    assert!(
        old.wait_requests(1, Duration::from_secs(10)).await,
        "the upload did not reach its backend"
    );
    assert_reloaded(&reload_to(&levee, &single_backend(&new)).await, 2);
    new_requests_go_to(same_connection, addr, "new").await;
    for i in BEFORE_RELOAD..CHUNKS {
        let c = chunk(i, CHUNK);
        sent.extend_from_slice(&c);
        feed(&tx, c).await;
    }
    drop(tx);
    let mut resp = upload.await.unwrap().expect("upload failed");
    let text = read_to_end(resp.body_mut()).await;
    assert_eq!(resp.status(), StatusCode::OK, "{text:?}");
    assert_eq!(header(&resp, "x-backend").as_deref(), Some("old"));
    assert_eq!(
        header(&resp, "x-body-len"),
        Some(sent.len().to_string()),
        "{text:?}"
    );
    assert_eq!(header(&resp, "x-body-sha256"), Some(sha256(&sent)));
    assert_eq!(old.requests(), 1, "the upload was sent once");
    assert_eq!(new.requests(), 1, "only the probe went to the new backend");
}

/// Reads from `body` until `received` holds `want` bytes (bounded).
async fn read_up_to(body: &mut hyper::body::Incoming, received: &mut Vec<u8>, want: usize) {
    while received.len() < want {
        let data = next_data(body)
            .await
            .unwrap_or_else(|| panic!("body ended at {} of {want} bytes", received.len()));
        received.extend_from_slice(&data);
    }
}

/// `/echo` on `old`: each chunk fed is read back before the next is sent, so both bodies are
/// mid-stream when the reload to a pool of only `new` happens.
async fn echo_across_reload(proto: Proto) {
    let old = Backend::start("old");
    let new = Backend::start("new");
    let levee = Arc::new(start_levee(&single_backend(&old)));
    let addr = levee.addr("web");
    let mut conn = StreamConn::open(addr, proto).await;
    let same_connection = conn.h2_handle();
    let (tx, body) = fed_body();
    let first = chunk(0, CHUNK);
    let mut sent = first.to_vec();
    feed(&tx, first).await;
    let mut resp = conn.send("POST", "/echo", body).await.expect("echo head");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "x-backend").as_deref(), Some("old"));
    let mut received = Vec::with_capacity(CHUNKS * CHUNK);
    read_up_to(resp.body_mut(), &mut received, sent.len()).await;
    let mut same_connection = same_connection;
    for i in 1..CHUNKS {
        if i == BEFORE_RELOAD {
            assert_reloaded(&reload_to(&levee, &single_backend(&new)).await, 2);
            new_requests_go_to(same_connection.take(), addr, "new").await;
        }
        let c = chunk(i, CHUNK);
        sent.extend_from_slice(&c);
        feed(&tx, c).await;
        read_up_to(resp.body_mut(), &mut received, sent.len()).await;
    }
    drop(tx);
    let rest = read_to_end(resp.body_mut()).await;
    assert!(rest.is_empty(), "{} bytes more than sent", rest.len());
    assert_eq!(received.len(), sent.len());
    assert_eq!(sha256(&received), sha256(&sent), "echoed body differs");
    assert_eq!(old.requests(), 1);
    assert_eq!(new.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upload_started_before_a_reload_that_removes_its_backend_completes_h1() {
    upload_across_reload(Proto::H1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upload_started_before_a_reload_that_removes_its_backend_completes_h2() {
    upload_across_reload(Proto::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_streaming_both_ways_across_a_reload_that_removes_its_backend_h1() {
    echo_across_reload(Proto::H1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_streaming_both_ways_across_a_reload_that_removes_its_backend_h2() {
    echo_across_reload(Proto::H2).await;
}

/// Requests (with epoch 1, i.e. sent after the reload returned) that the remaining backend
/// must serve before the removed one is checked.
const AFTER_RELOAD: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_gets_no_request_once_the_reload_returns_and_its_requests_finish() {
    let keep = Backend::start("keep");
    let gone = Backend::start("gone");
    // Slow, so that clients are nearly always waiting on it when the reload happens.
    gone.set_delay(Duration::from_millis(20));
    let config = |backends: &[&Backend]| {
        let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
        server_with_admin()
            + &listener_toml("web", "web", None, "", "")
            + &pool_toml("web", &addrs, "")
    };
    let levee = Arc::new(start_levee(&config(&[&keep, &gone])));
    let load = Load::start(levee.addr("web"), &STYLES, generation_of(&levee));
    assert!(
        gone.wait_requests(20, Duration::from_secs(10)).await,
        "the backend to remove got no traffic"
    );
    assert_reloaded(&reload_to(&levee, &config(&[&keep])).await, 2);
    // Every request sent from now on carries e=1.
    load.set_epoch(1);
    let gone_at_return = gone.requests();
    let after = |b: &Backend| {
        b.seen()
            .iter()
            .filter(|s| s.target.ends_with("&e=1"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while after(&keep) < AFTER_RELOAD {
        assert!(
            Instant::now() < deadline,
            "only {} requests after the reload",
            after(&keep)
        );
        assert_eq!(after(&gone), 0, "the removed backend got a new request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let result = load.finish().await;
    // The requests the removed backend was serving when the reload happened finished (no
    // failure at all), and at least one of them overlapped the reload.
    result.assert_no_failure(AFTER_RELOAD as u64);
    assert_eq!(after(&gone), 0, "the removed backend got a new request");
    let finished_on_gone = result
        .samples
        .iter()
        .filter(|s| s.backend == "gone" && s.gen_after >= 2)
        .count();
    assert!(
        finished_on_gone > 0,
        "no request to the removed backend was in flight during the reload"
    );
    for s in result.samples.iter().filter(|s| s.epoch == 1) {
        assert_eq!(s.backend, "keep", "{s:?}");
    }
    // At most the requests already routed to it before the store arrived after the return
    // (each client has one request in flight at a time).
    let late = gone.requests() - gone_at_return;
    assert!(late <= STYLES.len() as u64, "{late} requests arrived late");
    eprintln!(
        "{} ok; {finished_on_gone} requests to the removed backend finished after the reload; \
         {late} arrived after the reload returned (sent before it)",
        result.ok
    );
    // The pool now lists only the backend kept, with nothing left in flight.
    let doc = pools(&levee).await;
    let backends = doc["pools"][0]["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "{doc}");
    assert_eq!(
        backend_entry(&doc, "web", keep.addr)["in_flight"],
        0,
        "{doc}"
    );
}
