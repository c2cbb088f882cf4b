//! Keep-alive latency while the config is reloaded 10 times a second, against the same load
//! without reloads, in the same process and run (issue 4 target: p99 within 1.2x).
//!
//! levee runs in-process (release build, 2 workers, plain HTTP listener) in front of one
//! in-process hyper backend. A client runtime keeps `CONNECTIONS` keep-alive HTTP/1.1
//! connections busy. Rounds alternate: quiet, reloading, quiet, reloading... (ABAB), so drift
//! of this shared machine hits both arms alike; each arm's latencies are pooled over its
//! rounds. While reloading, a thread rewrites the config (two configs whose pools differ)
//! and calls `Reloader::reload` every 100 ms. Backend and load are `benches/common`.
//!
//! Run: `cargo bench --bench reload_p99` (about 1 minute). Knobs: `ROUNDS` (default 6),
//! `ROUND_SECS` (default 5). Under `cargo test` it runs 2 rounds of 1 s as a smoke test.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "bench set-up: a failure to build fixtures should stop the run loudly"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{percentile_ms as percentile, round, rounds_and_secs, start_backend};

/// Keep-alive client connections.
const CONNECTIONS: usize = 32;
/// Reloads per second while reloading.
const RELOADS_PER_SEC: u64 = 10;
/// Source address of the clients.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

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

fn main() {
    let (rounds, secs) = rounds_and_secs();
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
        let samples = round(&rt, CLIENT, addr, CONNECTIONS, secs).latencies_us;
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
