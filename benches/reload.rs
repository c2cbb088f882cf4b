//! Reload latency: `Reloader::reload` (read the file, parse, validate, carry state over, bind
//! nothing new, one store) for a config of 100 pools x 10 backends, against a running levee.
//!
//! Two configs alternate, so each reload builds and stores a genuinely new snapshot: they
//! differ in every pool's backend weights (worst case: every balancer and `maglev` table is
//! rebuilt), or in one pool's (the usual reload: the other pools keep their balancers).
//! Target (issue 4): under 50 ms.
//!
//! Run: `cargo bench --bench reload`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "bench set-up: a failure to build fixtures should stop the run loudly"
)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

/// Pools in the benched config.
const POOLS: usize = 100;
/// Backends per pool.
const BACKENDS: usize = 10;

/// A config with `POOLS` pools of `BACKENDS` backends (never connected to), one plain and
/// one TLS listener (generated certificate) routing to every pool by path prefix, health
/// checks and outlier detection on every pool. `variant` changes the backend weights of the
/// first `changed` pools.
pub fn big_config(variant: u32, changed: usize) -> String {
    let mut s = String::from(
        "[server]\nworkers = 1\naccess_log = false\n[admin]\nlisten = \"off\"\n\n\
         [[listeners]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"p000\"\n",
    );
    for p in 0..POOLS {
        let _ = writeln!(
            s,
            "[[listeners.routes]]\npath_prefix = \"/p{p:03}/\"\npool = \"p{p:03}\""
        );
    }
    s += "\n[[listeners]]\nname = \"tls\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"p001\"\n\
          [listeners.tls]\ncertificates = []\n\n";
    for p in 0..POOLS {
        let algorithm = ["round_robin", "weighted", "least_conn", "p2c", "maglev"][p % 5];
        let _ = writeln!(
            s,
            "[pools.p{p:03}]\nalgorithm = \"{algorithm}\"\n\
             [pools.p{p:03}.health_check]\npath = \"/health\"\ninterval = \"60s\"\n\
             [pools.p{p:03}.outlier_detection]\nconsecutive_failures = 5"
        );
        for b in 0..BACKENDS {
            let shift = if p < changed { variant } else { 0 };
            let weight = 1 + (b as u32 + shift) % 5;
            let _ = writeln!(
                s,
                "[[pools.p{p:03}.backends]]\naddress = \"10.{}.{}.{}:8080\"\nweight = {weight}",
                p / 250,
                p % 250,
                b + 1
            );
        }
    }
    s
}

fn bench_reload(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("levee.toml");
    std::fs::write(&path, big_config(0, POOLS)).unwrap();
    let (snapshot, source) = levee::app::load(Path::new(&path)).unwrap();
    let running = levee::app::start_with(snapshot, Some(source)).unwrap();
    let mut group = c.benchmark_group("reload");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    // Every pool's weights change (every balancer and maglev table is rebuilt), or one
    // pool's (the others keep their balancers).
    for (label, changed) in [("every_pool_changed", POOLS), ("one_pool_changed", 1)] {
        let configs = [big_config(1, changed), big_config(2, changed)];
        println!(
            "config: {POOLS} pools x {BACKENDS} backends, {} bytes",
            configs[0].len()
        );
        let mut i = 0usize;
        group.bench_function(format!("100_pools_x_10_backends/{label}"), |b| {
            b.iter(|| {
                i += 1;
                std::fs::write(&path, &configs[i % 2]).unwrap();
                let report = running.reload();
                assert!(report.ok, "{:?}", report.errors);
                report.took
            })
        });
    }
    group.finish();
    running.stop();
}

criterion_group!(benches, bench_reload);
criterion_main!(benches);
