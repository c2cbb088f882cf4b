//! Keep-alive req/s with every admission limit configured but none hit, against the same
//! config without `[admission]`, in the same process and run (issue 6 target: the checks
//! cost at most 2%).
//!
//! levee runs in-process (release build, 2 workers, plain HTTP listener) in front of one
//! in-process hyper backend, with a GeoIP fixture that tags 127.0.0.2 as BR / AS64500. A
//! client runtime keeps `CONNECTIONS` keep-alive HTTP/1.1 connections from 127.0.0.2 busy,
//! so every request takes a token from the BR country bucket and the AS64500 bucket (and is
//! checked against the allowlist). Rounds alternate A (no `[admission]`), B (all limits
//! set, far above the load), switched by `Reloader::reload`; a discarded warm-up round
//! comes first. Before measuring, tiny BR and AS64500 limits are loaded once each to check
//! that both buckets really answer 429 for these clients.
//!
//! Run: `cargo bench --bench admission_cost` (about 1 minute). Knobs: `ROUNDS` (default 6),
//! `ROUND_SECS` (default 5). Under `cargo test` it runs 2 rounds of 1 s as a smoke test.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "bench set-up: a failure to build fixtures should stop the run loudly"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use common::{connect, get, round, rounds_and_secs, start_backend};
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{Value, Writer};

/// Keep-alive client connections.
const CONNECTIONS: usize = 32;
/// Source address of the clients: BR, AS64500 in the fixture.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Cost target of issue 6.
const TARGET: f64 = 0.02;

/// Every admission limit, none reachable by this load (B arm).
const ADMISSION: &str = "[admission]\nmax_connections = 100000\nmax_connections_per_ip = 10000\n\
    max_handshakes_in_flight = 1000\nallowlist = [\"192.0.2.0/24\"]\n\
    [admission.countries.default]\nnew_connections_per_sec = 1000000\nburst = 1000000\n\
    requests_per_sec = 10000000\nrequest_burst = 10000000\n\
    [admission.asns.default]\nrequests_per_sec = 10000000\nrequest_burst = 10000000\n";

/// Writes `countries.mmdb` and `asns.mmdb` mapping `CLIENT` to BR and AS64500.
fn write_geo(dir: &Path) {
    let net = IpNet::new(CLIENT, 32).unwrap();
    let write = |file: &str, kind: &str, value: Value| {
        let mut w = Writer::new(kind);
        w.insert_value(net, value).unwrap();
        std::fs::write(dir.join(file), w.to_bytes().unwrap()).unwrap();
    };
    write(
        "countries.mmdb",
        "levee-bench-country",
        Value::map([("country_code", "BR")]),
    );
    let asn = Value::map([
        ("autonomous_system_number", Value::from(64_500_u32)),
        (
            "autonomous_system_organization",
            Value::from("Example BR Net"),
        ),
    ]);
    write("asns.mmdb", "GeoLite2-ASN", asn);
}

/// The config with `admission` appended (empty: arm A).
fn config(backend: SocketAddr, admission: &str) -> String {
    format!(
        "[server]\nworkers = 2\naccess_log = false\n[admin]\nlisten = \"off\"\n\n\
         [geo]\ncountry_db = \"countries.mmdb\"\nasn_db = \"asns.mmdb\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\n\
         [pools.web]\n[[pools.web.backends]]\naddress = \"{backend}\"\n\n{admission}"
    )
}

/// Writes `toml` to `path` and reloads it.
fn reload(running: &levee::app::Running, path: &Path, toml: &str) {
    std::fs::write(path, toml).unwrap();
    let report = running.reload();
    assert!(report.ok, "{:?}", report.errors);
}

/// Loads `admission` (a one-request bucket for these clients) and checks that the third
/// request on one connection from `CLIENT` is answered 429.
fn expect_limited(
    rt: &tokio::runtime::Runtime,
    running: &levee::app::Running,
    path: &Path,
    backend: SocketAddr,
    admission: &str,
) {
    reload(running, path, &config(backend, admission));
    let addr = running.listener_addr("web").unwrap();
    let statuses: Vec<u16> = rt.block_on(async {
        let mut sender = connect(CLIENT, addr).await;
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(get(&mut sender).await);
        }
        out
    });
    assert_eq!(statuses[2], 429, "{admission}: {statuses:?}");
}

fn main() {
    let (rounds, secs) = rounds_and_secs();
    let backend = start_backend();
    let dir = tempfile::tempdir().unwrap();
    write_geo(dir.path());
    let path = dir.path().join("levee.toml");
    let (arm_a, arm_b) = (config(backend, ""), config(backend, ADMISSION));
    std::fs::write(&path, &arm_a).unwrap();
    let (snapshot, source) = levee::app::load(Path::new(&path)).unwrap();
    let running = levee::app::start_with(snapshot, Some(source)).unwrap();
    let addr = running.listener_addr("web").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The clients are tagged: a BR bucket and an AS64500 bucket each refuse them.
    let tiny = "requests_per_sec = 1\nrequest_burst = 1\n";
    expect_limited(
        &rt,
        &running,
        &path,
        backend,
        &format!("{ADMISSION}[admission.countries.BR]\n{tiny}"),
    );
    expect_limited(
        &rt,
        &running,
        &path,
        backend,
        &format!("{ADMISSION}[admission.asns.AS64500]\n{tiny}"),
    );
    println!("sanity: BR and AS64500 request buckets answer 429 to 127.0.0.2 when tiny");

    reload(&running, &path, &arm_a);
    let _ = round(&rt, CLIENT, addr, CONNECTIONS, 1);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let limits = r % 2 == 1;
        reload(&running, &path, if limits { &arm_b } else { &arm_a });
        let done = round(&rt, CLIENT, addr, CONNECTIONS, secs);
        println!(
            "round {r}: {} {:>9.0} req/s ({} requests)",
            if limits { "B limits " } else { "A no-adm " },
            done.per_sec(),
            done.requests
        );
        if limits { &mut b } else { &mut a }.push(done);
    }
    let pooled = |arm: &[common::Round]| {
        let n: u64 = arm.iter().map(|r| r.requests).sum();
        let t: f64 = arm.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        n as f64 / t
    };
    let (ra, rb) = (pooled(&a), pooled(&b));
    let ratio = rb / ra;
    let pairs: Vec<String> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| format!("{:.3}", y.per_sec() / x.per_sec()))
        .collect();
    println!();
    println!("| arm | rounds | req/s (pooled) |");
    println!("|---|---|---|");
    println!("| A: no [admission] | {} | {ra:.0} |", a.len());
    println!("| B: every limit set, none hit | {} | {rb:.0} |", b.len());
    println!();
    println!(
        "ratio B/A: {ratio:.4} (cost {:+.2}%); per pair: {}",
        (1.0 - ratio) * 100.0,
        pairs.join(" ")
    );
    let verdict = if 1.0 - ratio <= TARGET {
        "within"
    } else {
        "over"
    };
    println!("verdict: {verdict} the {:.0}% target", TARGET * 100.0);
    // No request of arm B was refused: `round` asserts every answer is 200.
    running.stop();
}
