//! Spikes list their top ASNs with the default config: no `[geo]` table, so the bundled
//! country and ASN databases tag the clients. The clients declare public addresses in PROXY
//! v1 headers (from a trusted 127.0.0.1): Brazil from two networks (UOL's 200.147.0.0/16,
//! AS7162, and Telefonica Brasil's 189.0.0.0/19, AS26599), Germany (AS3320) and Japan
//! (AS17676) at a steady rate, then a 10x burst from Brazil. The spike, in `/stats` and in
//! its warning, names both Brazilian networks with their organisations.
//!
//! A test binary of its own: it installs the process's log subscriber, and the spike test
//! of tests/stats_spike.rs counts the spike lines of its binary. About 15 s: the baseline
//! needs 13 s before anything can spike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::client::raw_exchange;
use common::logs::CapturedLogs;
use common::stats::{get_request, stats_doc};
use common::*;
use levee::net::proxy_protocol::encode_v1;
use serde_json::Value;
use tokio::net::TcpStream;

/// Steady new connections per second from each country; the burst is ten times that.
const STEADY: u64 = 6;

const BR_UOL: IpAddr = IpAddr::V4(Ipv4Addr::new(200, 147, 0, 1));
const BR_TELEFONICA: IpAddr = IpAddr::V4(Ipv4Addr::new(189, 0, 0, 1));
const DE: IpAddr = IpAddr::V4(Ipv4Addr::new(80, 128, 0, 1));
const JP: IpAddr = IpAddr::V4(Ipv4Addr::new(126, 0, 0, 1));

/// levee with the default `[geo]` and `[stats]` tuned as in tests/stats_spike.rs, and a
/// plain listener taking PROXY headers from 127.0.0.1.
fn start(backend: SocketAddr) -> Levee {
    let toml = format!(
        "[server]\nworkers = 2\nshutdown_timeout = \"2s\"\naccess_log = false\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [stats]\nspike_threshold = 5\nspike_min_rate = 3\nspike_floor = 1\n\
         baseline_half_life = \"5s\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\
         proxy_protocol = \"v1\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [pools.web]\n[[pools.web.backends]]\naddress = \"{backend}\"\n"
    );
    start_levee(&toml)
}

/// One connection from `client` (declared in a PROXY v1 header): a GET; the status.
async fn proxied_get(to: SocketAddr, client: IpAddr) -> u16 {
    let source = SocketAddr::new(client, 40_000);
    let mut bytes = encode_v1(source, SocketAddr::from(([192, 0, 2, 1], 443))).into_bytes();
    bytes.extend(get_request("/"));
    let stream = TcpStream::connect(to).await.unwrap();
    raw_exchange(stream, &bytes).await.status
}

/// Sends `rate` new connections per second (read at every step), from each of `from` in
/// turn, until `stop`; the number sent.
fn drive(
    from: &'static [IpAddr],
    to: SocketAddr,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    common::stats::paced(rate, stop, move |n| {
        let client = from[n as usize % from.len()];
        tokio::spawn(async move {
            assert_eq!(proxied_get(to, client).await, 200);
        });
    })
}

/// Polls `/stats` every 200 ms until `done`, for at most `within`.
async fn watch(levee: &Levee, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let doc = stats_doc(levee, None).await;
        if done(&doc) {
            return doc;
        }
        assert!(started.elapsed() < within, "not reached: {doc:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn br_spike(doc: &Value) -> Option<&Value> {
    doc["spikes"]
        .as_array()?
        .iter()
        .find(|s| s["country"] == "BR")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spike_lists_top_asns_from_the_bundled_database() {
    let logs = CapturedLogs::install("levee::spike=info");
    let backend = Backend::start("a");
    let levee = start(backend.addr);
    let web = levee.addr("web");
    let stop = Arc::new(AtomicBool::new(false));
    let br_rate = Arc::new(AtomicU64::new(STEADY));
    let sources: [(&'static [IpAddr], _); 3] = [
        (&[BR_UOL, BR_TELEFONICA], Arc::clone(&br_rate)),
        (&[DE], Arc::new(AtomicU64::new(STEADY))),
        (&[JP], Arc::new(AtomicU64::new(STEADY))),
    ];
    let drivers: Vec<_> = sources
        .into_iter()
        .map(|(from, rate)| drive(from, web, rate, Arc::clone(&stop)))
        .collect();

    // Steady until the baselines are there; the ASN rows come from the bundled data.
    let doc = watch(&levee, Duration::from_secs(30), |d| {
        d["uptime_seconds"].as_f64().unwrap() >= 10.0
    })
    .await;
    let asns: Vec<u64> = doc["asns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["asn"].as_u64())
        .collect();
    for asn in [7162, 26_599, 3320, 17_676] {
        assert!(asns.contains(&asn), "AS{asn} in /stats: {doc:#}");
    }

    br_rate.store(10 * STEADY, Ordering::Relaxed);
    let doc = watch(&levee, Duration::from_secs(20), |d| {
        br_spike(d).is_some_and(|s| s["top_asns"].as_array().is_some_and(|a| a.len() >= 2))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        assert!(d.await.unwrap() > 0);
    }

    let spike = br_spike(&doc).unwrap();
    let top: Vec<(u64, &str)> = spike["top_asns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["asn"].as_u64().unwrap(), a["org"].as_str().unwrap()))
        .collect();
    for want in [
        (7162, "Universo Online S.A."),
        (26_599, "TELEFONICA BRASIL S.A"),
    ] {
        assert!(top.contains(&want), "{want:?} in {spike:#}");
    }
    assert!(top.len() <= 3, "{spike:#}");

    let text = logs.text();
    let started = text
        .lines()
        .find(|l| l.contains("traffic spike started") && l.contains("BR"))
        .unwrap_or_else(|| panic!("no BR spike line:\n{text}"));
    assert!(started.contains("top_asns="), "{started}");
    assert!(
        started.contains("AS7162 Universo Online S.A.")
            || started.contains("AS26599 TELEFONICA BRASIL S.A"),
        "{started}"
    );
}
