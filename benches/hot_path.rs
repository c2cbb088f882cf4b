//! Criterion benches of the pieces on levee's per-request and per-handshake path, measured
//! through the public API: header rewriting (with the GeoIP tag headers), the per-connection
//! GeoIP tag, SNI certificate lookup, stats recording, picking a backend and the admission
//! checks of a new connection and of a request.
//!
//! Run: `cargo bench --bench hot_path` (or `-- rewrite` for one group). `cargo test
//! --all-targets` runs every bench once as a smoke test.
#![allow(
    clippy::expect_used,
    reason = "bench set-up: a failure to build fixtures should stop the run loudly"
)]

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request, Version};
use levee::admission::auto::CapCheck;
use levee::admission::shares::FairShares;
use levee::admission::{Admission, AdmissionSettings, GateLimits, HandshakeGate, Ticket};
use levee::geo::country::COUNTRY_COUNT;
use levee::geo::{GeoDb, GeoSettings, tag};
use levee::lb::{Backend, Balancer, PickContext, RoundRobin};
use levee::proxy::headers::{ClientSide, rewrite_request, strip_hop_by_hop};
use levee::stats::{CountryIdx, HandshakeKind, Shard, UNKNOWN_COUNTRY};
use levee::tls::{SniResolver, generate_self_signed, provider};
use rustls::sign::CertifiedKey;

/// A browser-like HTTP/1.1 request head, as levee sees it from a client.
fn h1_request() -> http::request::Builder {
    Request::get("/static/app.js?v=42")
        .version(Version::HTTP_11)
        .header("host", "www.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101",
        )
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("accept-language", "en-GB,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .header("cookie", "session=0123456789abcdef; theme=dark")
        .header("connection", "keep-alive")
}

/// The request variants benched, by name.
const REQUEST_CASES: [&str; 4] = [
    "h1_typical",
    "h1_existing_xff",
    "h1_connection_names_headers",
    "h2_authority_no_host",
];

/// Builds the request head of one variant of `REQUEST_CASES`.
fn request_case(name: &str) -> http::request::Builder {
    match name {
        "h1_existing_xff" => h1_request()
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-for", "203.0.113.9"),
        "h1_connection_names_headers" => h1_request()
            .header("connection", "x-trace, x-debug")
            .header("x-trace", "1")
            .header("x-debug", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers"),
        // h2 carries the authority in the URI (`:authority`), not in a Host header.
        "h2_authority_no_host" => Request::get("https://www.example.com/api/v1/items?page=2")
            .version(Version::HTTP_2)
            .header("user-agent", "curl/8.5.0")
            .header("accept", "*/*"),
        _ => h1_request(),
    }
}

fn parts(builder: http::request::Builder) -> http::request::Parts {
    builder
        .body(())
        .expect("valid bench request")
        .into_parts()
        .0
}

fn bench_rewrite_request(c: &mut Criterion) {
    let client = ClientSide {
        ip: HeaderValue::from_static("192.0.2.33"),
        tls: true,
        trusted: false,
    };
    let fallback = HeaderValue::from_static("127.0.0.1:8080");
    // A client with a country and an ASN: both tag headers are written.
    let geo = GeoSettings::default();
    let mut client_tag = levee::geo::ClientTag::unknown();
    client_tag.country = levee::geo::country::index(*b"BR");
    client_tag.country_header = HeaderValue::from_static("BR");
    client_tag.asn = Some(64_500);
    client_tag.asn_header = Some(HeaderValue::from_static("64500"));
    let mut group = c.benchmark_group("rewrite_request");
    group.throughput(Throughput::Elements(1));
    for name in REQUEST_CASES {
        group.bench_function(name, |b| {
            // The request head is rebuilt outside the timed part for every iteration.
            b.iter_batched(
                || parts(request_case(name)),
                |mut p| {
                    rewrite_request(
                        &mut p,
                        black_box(&client),
                        black_box(&geo),
                        black_box(&client_tag),
                        black_box(&fallback),
                    );
                    p
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// The per-connection GeoIP tag on the bundled country database: a public address (found),
/// a private one (not found) and an IPv6 one.
fn bench_geo_tag(c: &mut Criterion) {
    let geo = GeoDb::bundled().expect("bundled database");
    let mut group = c.benchmark_group("geo_tag");
    group.throughput(Throughput::Elements(1));
    let cases: [(&str, IpAddr); 3] = [
        ("v4_public", IpAddr::from([8, 8, 8, 8])),
        ("v4_private", IpAddr::from([10, 1, 2, 3])),
        (
            "v6_public",
            IpAddr::from([0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888]),
        ),
    ];
    for (name, ip) in cases {
        group.bench_function(name, |b| b.iter(|| tag(&geo, black_box(ip))));
    }
    group.finish();
}

fn bench_strip_hop_by_hop(c: &mut Criterion) {
    let mut group = c.benchmark_group("strip_hop_by_hop");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("no_connection_header", {
            let mut p = parts(h1_request());
            p.headers.remove("connection");
            p.headers
        }),
        ("connection_keep_alive", parts(h1_request()).headers),
        (
            "connection_names_two",
            parts(
                h1_request()
                    .header("connection", "x-trace, x-debug")
                    .header("x-trace", "1")
                    .header("x-debug", "1"),
            )
            .headers,
        ),
    ];
    for (name, headers) in cases {
        group.bench_function(name, |b| {
            b.iter_batched(
                || headers.clone(),
                |mut h: HeaderMap| {
                    strip_hop_by_hop(&mut h);
                    h
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn bench_sni_lookup(c: &mut Criterion) {
    let (key, _) = generate_self_signed(&provider()).expect("generated certificate");
    // The resolver only looks at the names it is given, so one key can stand for many
    // certificates: 50 exact names and 50 wildcards behind a default.
    let named = |names: Vec<String>| (Arc::clone(&key), names);
    let mut certs: Vec<(Arc<CertifiedKey>, Vec<String>)> =
        vec![named(vec!["default.example".into()])];
    for i in 0..50 {
        certs.push(named(vec![format!("host{i}.example.com")]));
        certs.push(named(vec![format!("*.tenant{i}.example.net")]));
    }
    let one = SniResolver::new(vec![named(vec!["localhost".into()])]).expect("resolver");
    let many = SniResolver::new(certs).expect("resolver");

    let mut group = c.benchmark_group("sni_lookup");
    group.throughput(Throughput::Elements(1));
    let cases: [(&str, &SniResolver, Option<&str>); 5] = [
        ("1cert_exact", &one, Some("localhost")),
        ("101certs_exact", &many, Some("host37.example.com")),
        ("101certs_wildcard", &many, Some("api.tenant42.example.net")),
        (
            "101certs_unknown_default",
            &many,
            Some("nothing.example.org"),
        ),
        ("101certs_no_sni", &many, None),
    ];
    for (name, resolver, sni) in cases {
        group.bench_function(name, |b| {
            b.iter(|| resolver.lookup(black_box(sni)));
        });
    }
    group.finish();
}

/// The whole per-connection cost of GeoIP and stats: tag the client (lookup in the bundled
/// database, over 1,024 public addresses in turn so the tree walk is not one cached path),
/// then record the connection, its ASN, a full handshake, one request and the close in a
/// shard with every country slot, as `runtime/front.rs` and `proxy/service.rs` do.
fn bench_geo_connection(c: &mut Criterion) {
    let geo = GeoDb::bundled().expect("bundled database");
    let shard = Shard::new(0, COUNTRY_COUNT);
    let clients: Vec<IpAddr> = (0..1024u32)
        .map(|i| {
            IpAddr::from(
                (0x0800_0000u32 + i.wrapping_mul(2_654_435_761) % 0xD000_0000).to_be_bytes(),
            )
        })
        .collect();
    let mut group = c.benchmark_group("geo_stats_connection");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("tag_and_record", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            let ip = clients[i];
            let t = tag(&geo, black_box(ip));
            shard.connection_opened(t.country);
            if let Some(asn) = t.asn {
                shard.asn_connection(asn, t.country, ip);
            }
            shard.handshake(t.country, HandshakeKind::Full, Duration::from_micros(75));
            shard.request(t.country, 200, 300, 1_200);
            shard.connection_closed(t.country);
            t.country
        });
    });
    group.bench_function("record_only", |b| {
        let country = levee::geo::country::index_of("BR");
        b.iter(|| {
            shard.connection_opened(black_box(country));
            shard.handshake(country, HandshakeKind::Full, Duration::from_micros(75));
            shard.request(country, 200, 300, 1_200);
            shard.connection_closed(country);
        });
    });
    group.finish();
}

fn bench_stats(c: &mut Criterion) {
    let shard = Shard::new(0, COUNTRY_COUNT);
    let mut group = c.benchmark_group("stats_shard");
    group.throughput(Throughput::Elements(1));
    group.bench_function("request", |b| {
        b.iter(|| {
            shard.request(
                UNKNOWN_COUNTRY,
                black_box(200),
                black_box(10),
                black_box(10),
            )
        });
    });
    group.bench_function("handshake", |b| {
        b.iter(|| {
            shard.handshake(
                UNKNOWN_COUNTRY,
                black_box(HandshakeKind::Full),
                black_box(Duration::from_micros(75)),
            );
        });
    });
    group.finish();
}

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            let port = 10_000 + u16::try_from(i).unwrap_or(u16::MAX - 10_000);
            Backend::new(SocketAddr::from(([127, 0, 0, 1], port)), 1)
        })
        .collect()
}

fn bench_round_robin(c: &mut Criterion) {
    let ctx = PickContext::default();
    let mut group = c.benchmark_group("round_robin_pick");
    group.throughput(Throughput::Elements(1));
    for n in [3usize, 30, 300] {
        let list = backends(n);
        let rr = RoundRobin::new();
        group.bench_with_input(BenchmarkId::new("all_up", n), &list, |b, list| {
            b.iter(|| rr.pick(black_box(list), &ctx));
        });
    }
    // Worst case for the skip loop: every other backend is down.
    let list = backends(300);
    for b in list.iter().step_by(2) {
        b.state.set_healthy(false);
    }
    let rr = RoundRobin::new();
    group.bench_with_input(BenchmarkId::new("half_down", 300), &list, |b, list| {
        b.iter(|| rr.pick(black_box(list), &ctx));
    });
    group.finish();
}

/// `[admission]` with every limit set (issue 6's "all limits configured, none hit"), as
/// validated by levee's config loader.
fn admission_settings() -> AdmissionSettings {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("levee.toml");
    let toml = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
        default_pool = \"web\"\n[pools.web]\n[[pools.web.backends]]\n\
        address = \"127.0.0.1:9\"\n\n\
        [admission]\nmax_connections = 100000\nmax_connections_per_ip = 10000\n\
        max_handshakes_in_flight = 1000\nallowlist = [\"192.0.2.0/24\"]\n\
        [admission.countries.default]\nnew_connections_per_sec = 1000000\nburst = 1000000\n\
        requests_per_sec = 10000000\nrequest_burst = 10000000\n\
        [admission.asns.default]\nrequests_per_sec = 10000000\nrequest_burst = 10000000\n";
    std::fs::write(&path, toml).expect("config written");
    let (snapshot, _) = levee::app::load(&path).expect("valid config");
    snapshot.admission
}

/// Polls a future once; a gate with a free slot answers at once.
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    pin!(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// The admission checks with every limit configured and none hit, per new connection
/// (allowlist, country bucket, automatic cap, uncontended handshake gate) and per request
/// (allowlist, country and ASN buckets). Clients cycle over 128 countries and ASNs so no
/// bucket is driven past its rate (a refusal would fail the bench).
fn bench_admission(c: &mut Criterion) {
    let settings = admission_settings();
    let rules = &settings.rate_limits;
    let state = Admission::default();
    let shard = Arc::new(Shard::new(0, COUNTRY_COUNT));
    let gauge = Box::new(levee::runtime::ShardGauge(shard));
    let gate = HandshakeGate::new(gauge, Arc::new(FairShares::default()));
    let limits = GateLimits {
        in_flight: settings.max_handshakes_in_flight,
        queue: settings.handshake_queue,
        timeout: settings.handshake_queue_timeout,
    };
    let ip = IpAddr::from([203, 0, 113, 7]);
    let tags: Vec<levee::geo::ClientTag> = (1..=128u16)
        .map(|i| {
            let mut t = levee::geo::ClientTag::unknown();
            t.country = CountryIdx(i);
            t.asn = Some(64_500 + u32::from(i));
            t
        })
        .collect();
    let refused = Cell::new(0u64);
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % tags.len();
        &tags[i]
    };
    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Elements(1));
    group.bench_function("connection_checks", |b| {
        b.iter(|| {
            let tag = next();
            let ok = !rules.allowed(black_box(ip), tag)
                && state.rates.admit_connection(rules, tag).is_ok()
                && state.auto.check(tag.country) == CapCheck::Pass;
            refused.set(refused.get() + u64::from(!ok));
        });
    });
    group.bench_function("connection_checks_and_gate", |b| {
        b.iter(|| {
            let tag = next();
            let ok = !rules.allowed(black_box(ip), tag)
                && state.rates.admit_connection(rules, tag).is_ok()
                && state.auto.check(tag.country) == CapCheck::Pass;
            let ticket = Ticket {
                country: tag.country,
                priority: false,
            };
            // The permit is dropped at once, freeing the slot as a finished handshake does.
            let granted = matches!(poll_once(gate.acquire(limits, ticket)), Poll::Ready(Ok(_)));
            refused.set(refused.get() + u64::from(!(ok && granted)));
        });
    });
    // proxy/conn.rs clones the settings for every new connection.
    group.bench_function("connection_settings_clone", |b| {
        b.iter(|| black_box(&settings).clone());
    });
    group.bench_function("request_checks", |b| {
        b.iter(|| {
            let tag = next();
            let ok =
                !rules.allowed(black_box(ip), tag) && state.rates.admit_request(rules, tag).is_ok();
            refused.set(refused.get() + u64::from(!ok));
        });
    });
    group.finish();
    assert_eq!(
        refused.get(),
        0,
        "a check refused: the bench drove a bucket past its rate"
    );
}

criterion_group! {
    name = hot_path;
    // Short runs by default: these are nanosecond-scale functions. Override on the command
    // line (`-- --measurement-time 10`) for publication-quality numbers.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_rewrite_request, bench_geo_tag, bench_geo_connection, bench_strip_hop_by_hop,
        bench_sni_lookup, bench_stats, bench_round_robin, bench_admission
}
criterion_main!(hot_path);
