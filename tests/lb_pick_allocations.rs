//! Picking a backend allocates nothing: every algorithm, with and without `slow_start`, plus
//! the request-key hash `maglev` computes, counted by `allocation-counter`'s global allocator
//! (allocations of the measuring thread only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use levee::lb::hash::mix64;
use levee::lb::{
    Algorithm, Backend, InFlight, PickContext, PoolPolicy, parse_hash_key, request_hash,
};

/// `n` backends with varied weights, loads and latencies; every tenth one down, and the
/// first one recovered a moment ago (so `slow_start` has something to ramp).
fn pool(n: usize) -> (Vec<Backend>, Vec<InFlight>) {
    let backends: Vec<Backend> = (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], 8080));
            Backend::new(addr, 1 + (i % 5) as u32)
        })
        .collect();
    let mut held = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        for _ in 0..(i % 3) {
            held.push(b.state.begin_request());
        }
        b.state
            .record_success(Duration::from_micros(100 + (i as u64 * 37) % 900));
        if n > 3 && i % 10 == 9 {
            b.state.set_healthy(false);
        }
    }
    backends[0].state.set_healthy(false);
    backends[0].state.set_healthy(true);
    (backends, held)
}

#[test]
fn picking_allocates_nothing_for_any_algorithm_or_pool_size() {
    let client: IpAddr = "192.0.2.10".parse().unwrap();
    let slow_start = PoolPolicy {
        slow_start: Some(Duration::from_secs(30)),
        ..PoolPolicy::default()
    };
    for n in [3, 30, 300] {
        let (backends, _held) = pool(n);
        for algorithm in Algorithm::ALL {
            for policy in [PoolPolicy::default(), slow_start.clone()] {
                let balancer = algorithm.build(&backends, &policy);
                let mut picked = 0;
                let info = allocation_counter::measure(|| {
                    for key in 0..2_000u64 {
                        let ctx = PickContext {
                            client: Some(client),
                            hash: Some(mix64(key)),
                        };
                        picked += usize::from(balancer.pick(&backends, &ctx).is_some());
                    }
                });
                let allocated = info.count_total;
                assert_eq!(picked, 2_000, "{algorithm} with {n} backends found none");
                assert_eq!(
                    allocated, 0,
                    "{algorithm} with {n} backends allocated {allocated} times in 2,000 picks"
                );
            }
        }
    }
}

#[test]
fn hashing_the_request_key_allocates_nothing() {
    let mut headers = HeaderMap::new();
    headers.insert("x-user", HeaderValue::from_static("user-1234"));
    headers.insert(
        "cookie",
        HeaderValue::from_static("theme=dark; session=abcdef0123456789; lang=en"),
    );
    let keys = ["client_ip", "header:x-user", "cookie:session"].map(|k| parse_hash_key(k).unwrap());
    let client: IpAddr = "2001:db8::7".parse().unwrap();
    let mut hashed = 0;
    let info = allocation_counter::measure(|| {
        for key in &keys {
            for _ in 0..1_000 {
                hashed += usize::from(request_hash(key, client, &headers).is_some());
            }
        }
    });
    assert_eq!(hashed, 3_000);
    assert_eq!(info.count_total, 0);
}

#[test]
fn the_counter_sees_allocations() {
    let info = allocation_counter::measure(|| {
        let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(16));
        drop(v);
    });
    assert_eq!(info.count_total, 1, "the counting allocator is not in use");
}
