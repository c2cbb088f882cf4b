//! Keep-alive latency while the config is reloaded 10 times a second, against the same load
//! without reloads, in the same process and run (issue 4 target: p99 within 1.2x).
//!
//! levee runs in-process (release build, 2 workers, plain HTTP listener) in front of one
//! in-process hyper backend. A client runtime keeps `CONNECTIONS` keep-alive HTTP/1.1
//! connections busy. Rounds alternate: quiet, reloading, quiet, reloading... (ABAB), so drift
//! of this shared machine hits both arms alike; each arm's latencies are pooled over its
//! rounds. While reloading, a thread rewrites the config (two configs whose pools differ)
//! and calls `Reloader::reload` every 100 ms.
//!
//! Run: `cargo bench --bench reload_p99` (about 1 minute). Knobs: `ROUNDS` (default 6),
//! `ROUND_SECS` (default 5). Under `cargo test` it runs 2 rounds of 1 s as a smoke test.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "bench set-up: a failure to build fixtures should stop the run loudly"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Keep-alive client connections.
const CONNECTIONS: usize = 32;
/// Reloads per second while reloading.
const RELOADS_PER_SEC: u64 = 10;
/// Most latency samples kept per round (bounds memory and the loop).
const MAX_SAMPLES: usize = 2_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A backend answering every request with 200 "ok", on its own thread.
fn start_backend() -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    });
    addr
}

/// Config `variant` 0 or 1: one listener; the default pool has the backend; 20 more pools
/// of unreachable addresses differ between the variants.
fn config(backend: SocketAddr, variant: usize) -> String {
    let mut s = format!(
        "[server]\nworkers = 2\naccess_log = false\n[admin]\nlisten = \"off\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\n\
         [pools.web]\n[[pools.web.backends]]\naddress = \"{backend}\"\n"
    );
    for p in 0..20 {
        s += &format!(
            "[pools.extra{p}]\n[[pools.extra{p}.backends]]\naddress = \"10.0.{variant}.{}:80\"\n",
            p + 1
        );
    }
    s
}

/// One keep-alive connection sending GET / until `stop`, recording latencies in µs.
async fn client(addr: SocketAddr, stop: Arc<AtomicBool>) -> Vec<u32> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut samples = Vec::with_capacity(64 * 1024);
    while !stop.load(Ordering::Relaxed) && samples.len() < MAX_SAMPLES / CONNECTIONS {
        let req = hyper::Request::get("/")
            .header("host", "bench")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let started = Instant::now();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await.unwrap();
        samples.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    samples
}

/// Runs the clients for `secs` seconds; returns every latency sample.
fn round(rt: &tokio::runtime::Runtime, addr: SocketAddr, secs: u64) -> Vec<u32> {
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(client(addr, Arc::clone(&stop))))
            .collect();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    })
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test` this only smoke-tests itself briefly.
    let benching = std::env::args().any(|a| a == "--bench");
    let rounds = if benching { env_or("ROUNDS", 6) } else { 2 };
    let secs = if benching { env_or("ROUND_SECS", 5) } else { 1 };
    let backend = start_backend();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("levee.toml");
    std::fs::write(&path, config(backend, 0)).unwrap();
    let (snapshot, source) = levee::app::load(Path::new(&path)).unwrap();
    let running = Arc::new(levee::app::start_with(snapshot, Some(source)).unwrap());
    let addr = running.listener_addr("web").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut quiet, mut reloading) = (Vec::new(), Vec::new());
    let mut reloads = 0u64;
    let mut reload_ms = Vec::new();
    for r in 0..rounds {
        let reload = r % 2 == 1;
        let stop = Arc::new(AtomicBool::new(false));
        let reloader = reload.then(|| {
            let (running, stop, path) = (Arc::clone(&running), Arc::clone(&stop), path.clone());
            std::thread::spawn(move || {
                let mut took = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 10_000 {
                    i += 1;
                    std::fs::write(&path, config(backend, i % 2)).unwrap();
                    let report = running.reload();
                    assert!(report.ok, "{:?}", report.errors);
                    took.push(report.took.as_secs_f64() * 1000.0);
                    std::thread::sleep(Duration::from_millis(1000 / RELOADS_PER_SEC));
                }
                took
            })
        });
        let samples = round(&rt, addr, secs);
        stop.store(true, Ordering::Relaxed);
        if let Some(t) = reloader {
            let took = t.join().unwrap();
            reloads += took.len() as u64;
            reload_ms.extend(took);
        }
        println!(
            "round {r}: {} {} requests",
            if reload { "reloading" } else { "quiet    " },
            samples.len()
        );
        if reload {
            reloading.extend(samples);
        } else {
            quiet.extend(samples);
        }
    }
    quiet.sort_unstable();
    reloading.sort_unstable();
    reload_ms.sort_by(f64::total_cmp);
    let (q50, q99) = (percentile(&quiet, 0.5), percentile(&quiet, 0.99));
    let (r50, r99) = (percentile(&reloading, 0.5), percentile(&reloading, 0.99));
    println!();
    println!("| arm | requests | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!("| no reloads | {} | {q50:.3} | {q99:.3} |", quiet.len());
    println!(
        "| {RELOADS_PER_SEC} reloads/s ({reloads} reloads) | {} | {r50:.3} | {r99:.3} |",
        reloading.len()
    );
    println!();
    println!(
        "p99 ratio (reloading / quiet): {:.2}; p50 ratio {:.2}",
        r99 / q99,
        r50 / q50
    );
    if let (Some(first), Some(last)) = (reload_ms.first(), reload_ms.last()) {
        let median = reload_ms[reload_ms.len() / 2];
        println!("reload took: min {first:.2} ms, median {median:.2} ms, max {last:.2} ms");
    }
    if let Ok(running) = Arc::try_unwrap(running) {
        running.stop();
    }
}
