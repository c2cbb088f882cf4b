//! Criterion benches of `Balancer::pick` for every load-balancing algorithm, with 3, 30 and
//! 300 backends, plus the request-key hash `maglev` pools compute per request.
//!
//! The backends carry varied weights, in-flight counts and latency EWMAs, and one in ten is
//! down, so the picks take their usual branches. `maglev` gets a different key each
//! iteration (as a stream of clients would). Target: every pick under 100 ns at 300 backends.
//!
//! Run: `cargo bench --bench lb_pick` (or `-- maglev` for one algorithm).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "bench set-up: a failure to build fixtures should stop the run loudly"
)]

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use levee::lb::hash::mix64;
use levee::lb::{
    Algorithm, Backend, HashKey, InFlight, PickContext, PoolPolicy, parse_hash_key, request_hash,
};

/// Pool sizes benched.
const SIZES: [usize; 3] = [3, 30, 300];

/// `n` backends with weights 1..=5, 1 to 4 requests in flight each (no idle backend, so
/// `least_conn` compares a full window), a spread of latencies, and every tenth backend (but
/// never all) marked down. The guards keep the in-flight counts up.
fn pool(n: usize) -> (Vec<Backend>, Vec<InFlight>) {
    let backends: Vec<Backend> = (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], 8080));
            Backend::new(addr, 1 + (i % 5) as u32)
        })
        .collect();
    let mut held = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        for _ in 0..(1 + i * 7 % 4) {
            held.push(b.state.begin_request());
        }
        b.state
            .record_success(Duration::from_micros(200 + (i as u64 * 37) % 800));
        if n > 3 && i % 10 == 9 {
            b.state.set_healthy(false);
        }
    }
    (backends, held)
}

fn bench_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for algorithm in Algorithm::ALL {
        for n in SIZES {
            let (backends, _held) = pool(n);
            let balancer = algorithm.build(&backends, &PoolPolicy::default());
            let client: IpAddr = "192.0.2.10".parse().unwrap();
            group.bench_function(BenchmarkId::new(algorithm.name(), n), |b| {
                let mut key = 0u64;
                b.iter(|| {
                    key = key.wrapping_add(1);
                    let ctx = PickContext {
                        client: Some(client),
                        hash: Some(mix64(key)),
                    };
                    balancer.pick(black_box(&backends), black_box(&ctx))
                })
            });
        }
    }
    group.finish();
}

/// The same picks at 300 backends, with a `slow_start` window and every backend recently
/// recovered (so each one considered reads the clock for its ramp factor).
fn bench_pick_slow_start(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick_slow_start");
    let policy = PoolPolicy {
        slow_start: Some(Duration::from_secs(3_600)),
        ..PoolPolicy::default()
    };
    let (backends, _held) = pool(300);
    // Past the clock's first millisecond, where a recovery time would read as "never".
    let _ = levee::lb::clock::now_ms();
    std::thread::sleep(Duration::from_millis(2));
    for (i, b) in backends.iter().enumerate() {
        if i % 10 != 9 {
            b.state.set_healthy(false);
            b.state.set_healthy(true);
        }
    }
    for algorithm in Algorithm::ALL {
        let balancer = algorithm.build(&backends, &policy);
        group.bench_function(BenchmarkId::new(algorithm.name(), 300), |b| {
            let mut key = 0u64;
            b.iter(|| {
                key = key.wrapping_add(1);
                let ctx = PickContext {
                    client: None,
                    hash: Some(mix64(key)),
                };
                balancer.pick(black_box(&backends), black_box(&ctx))
            })
        });
    }
    group.finish();
}

fn bench_request_hash(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert("x-user", HeaderValue::from_static("user-1234567"));
    headers.insert(
        "cookie",
        HeaderValue::from_static("theme=dark; session=0123456789abcdef0123456789abcdef; lang=en"),
    );
    let client: IpAddr = "2001:db8::42".parse().unwrap();
    let keys: [(&str, HashKey); 3] = [
        ("client_ip", parse_hash_key("client_ip").unwrap()),
        ("header", parse_hash_key("header:x-user").unwrap()),
        ("cookie", parse_hash_key("cookie:session").unwrap()),
    ];
    let mut group = c.benchmark_group("request_hash");
    for (name, key) in &keys {
        group.bench_function(*name, |b| {
            b.iter(|| request_hash(black_box(key), black_box(client), black_box(&headers)))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_pick, bench_pick_slow_start, bench_request_hash
}
criterion_main!(benches);
