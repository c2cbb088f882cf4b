//! Reload storm: 200 reloads alternating between two configs whose pool holds different
//! backends, while four clients (keep-alive HTTP/1.1, keep-alive h2, a new HTTP/1.1 connection
//! per request, a new h2 connection per request) send requests without pause. No request may
//! fail, and every response must come from a backend of a config that was serving at some
//! moment of that request: the generation is read just before each request is sent and just
//! after its response ends, and the backend must belong to one of the generations in between.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Reloads in the storm.
const RELOADS: u64 = 200;
/// Requests that must complete after each reload before the next one (so that every
/// generation serves traffic).
const REQUESTS_PER_GENERATION: u64 = 8;
/// Upper bound for the whole storm.
const STORM_TIME: Duration = Duration::from_secs(90);

/// Backends of config A, which serves the odd generations (1 is the first config).
const SET_A: [&str; 3] = ["a1", "a2", "c"];
/// Backends of config B, which serves the even generations.
const SET_B: [&str; 3] = ["b1", "b2", "c"];

fn members_of(generation: u64) -> &'static [&'static str] {
    if generation % 2 == 1 { &SET_A } else { &SET_B }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reloads_under_load_fail_no_request_and_route_on_a_live_config() {
    // Config A (odd generations) routes to a1, a2 and c; config B (even ones) to b1, b2 and c.
    // c is in both, so its state must carry over through every reload.
    let names = ["a1", "a2", "b1", "b2", "c"];
    let backends: BTreeMap<&str, Backend> = names.iter().map(|&n| (n, Backend::start(n))).collect();
    let config = |members: &[&str]| {
        let addrs: Vec<_> = members.iter().map(|m| backends[m].addr).collect();
        server_with_admin()
            + &listener_toml("web", "web", None, "", "")
            + &pool_toml("web", &addrs, "")
    };
    let (config_a, config_b) = (config(&SET_A), config(&SET_B));

    let levee = Arc::new(start_levee(&config_a));
    let addr = levee.addr("web");
    let load = Load::start(addr, &STYLES, generation_of(&levee));
    load.wait_more(50, Duration::from_secs(10)).await;

    let started = Instant::now();
    let mut took = Vec::new();
    for i in 0..RELOADS {
        assert!(
            started.elapsed() < STORM_TIME,
            "storm too slow: {i} reloads"
        );
        let next = if i % 2 == 0 { &config_b } else { &config_a };
        let report = reload_to(&levee, next).await;
        assert_reloaded(&report, i + 2);
        took.push(report.took);
        // Requests in flight across the reload and some sent after it, before the next one.
        load.wait_more(REQUESTS_PER_GENERATION, Duration::from_secs(10))
            .await;
    }
    let storm = started.elapsed();
    let result = load.finish().await;
    result.assert_no_failure(RELOADS * REQUESTS_PER_GENERATION);

    // Every response came from a backend that was in the pool of a generation the request
    // overlapped.
    let mut single_a = 0u64;
    let mut single_b = 0u64;
    let mut spanning = 0u64;
    let mut per_backend: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_style: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &result.samples {
        assert!(
            s.gen_before >= 1 && s.gen_before <= s.gen_after && s.gen_after <= RELOADS + 1,
            "{s:?}"
        );
        let allowed: BTreeSet<&str> = (s.gen_before..=s.gen_after)
            .flat_map(|g| members_of(g).iter().copied())
            .collect();
        assert!(
            allowed.contains(s.backend.as_str()),
            "{s:?} answered by {} while only {allowed:?} were configured",
            s.backend
        );
        match (s.gen_before == s.gen_after, s.gen_before % 2 == 1) {
            (true, true) => single_a += 1,
            (true, false) => single_b += 1,
            (false, _) => spanning += 1,
        }
        *per_backend.entry(s.backend.clone()).or_default() += 1;
        per_style
            .entry(format!("{:?}", s.style))
            .or_default()
            .insert(s.backend.clone());
    }
    let ok = result.ok;
    let mean_ms = took.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / took.len() as f64;
    let max_ms = took.iter().max().unwrap().as_secs_f64() * 1000.0;
    eprintln!(
        "{RELOADS} reloads in {storm:?} (reload mean {mean_ms:.2} ms, max {max_ms:.2} ms); \
         {ok} requests: {single_a} within an A generation, {single_b} within a B one, \
         {spanning} across reloads; per backend {per_backend:?}"
    );
    // Both configs really served, and every client style saw both sets of backends (so
    // keep-alive and h2 connections picked up new pools without reconnecting).
    assert!(single_a > 0 && single_b > 0, "{single_a} A, {single_b} B");
    for name in names {
        assert!(
            per_backend.get(name).is_some_and(|&n| n > 0),
            "{name} got nothing: {per_backend:?}"
        );
    }
    for (style, seen) in &per_style {
        assert!(
            seen.iter().any(|b| b.starts_with('a')) && seen.iter().any(|b| b.starts_with('b')),
            "{style} saw only {seen:?}"
        );
    }
    assert_eq!(per_style.len(), STYLES.len(), "{per_style:?}");
    // Backend c was in every config: its counters survived all 200 snapshots.
    let doc = pools(&levee).await;
    let c = backend_entry(&doc, "web", backends["c"].addr);
    assert_eq!(
        c["requests"].as_u64(),
        Some(backends["c"].requests()),
        "requests to c counted by levee across reloads vs received: {c}"
    );
    assert_eq!(c["in_flight"], 0, "{c}");
    assert_eq!(levee.running().reloader().stats().succeeded(), RELOADS);
    assert_eq!(levee.running().reloader().stats().failed(), 0);
}
