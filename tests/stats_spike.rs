//! Spike detection end to end (issue test 5): steady traffic from three countries builds
//! their baselines, then a 10x burst from one of them flags exactly that country, logs one
//! warning, and clears (one more line) after the burst stops.
//!
//! Windows tick once a second and the baseline needs 13 s before anything can spike, so
//! this test takes about 20 s: 10 s steady, the burst until it is flagged (about 5 s), then
//! steady until it clears (about 5 s). `[stats] spike_min_rate` is low so that the steady
//! countries are kept out by their ratio, not by their rate, and the half-life is short.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::logs::CapturedLogs;
use common::stats::*;
use common::*;
use serde_json::Value;

/// Steady new connections per second from each country; the burst is ten times that.
const STEADY: u64 = 5;

/// Sends `rate` new connections per second (read at every step) from `from` until `stop`.
fn drive(
    from: IpAddr,
    to: SocketAddr,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    common::stats::paced(rate, stop, move |_| {
        tokio::spawn(async move {
            let reply = request_from(from, to, &get_request("/")).await;
            assert_eq!(reply.status, 200);
        });
    })
}

fn spiking(doc: &Value) -> Vec<String> {
    doc["spikes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["country"].as_str().unwrap().to_string())
        .collect()
}

/// Polls `/stats` (every 200 ms, at most `within`) until `done`; checks `always` on each.
async fn watch(
    levee: &Levee,
    within: Duration,
    always: impl Fn(&Value),
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let doc = stats_doc(levee, None).await;
        always(&doc);
        if done(&doc) {
            return doc;
        }
        assert!(
            started.elapsed() < within,
            "not reached within {within:?}: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_country_is_flagged_once_and_clears() {
    let logs = CapturedLogs::install("levee::spike=info");

    let backend = Backend::start("a");
    let stats = "spike_threshold = 5\nspike_min_rate = 3\nspike_floor = 1\n\
                 baseline_half_life = \"5s\"";
    let levee = start_stats_levee(backend.addr, closed_addr(), None, stats);
    let web = levee.addr("web");
    let stop = Arc::new(AtomicBool::new(false));
    let rates: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(STEADY))).collect();
    let drivers: Vec<_> = [BR_IP, DE_IP, JP_IP]
        .into_iter()
        .zip(&rates)
        .map(|(ip, rate)| drive(ip, web, Arc::clone(rate), Arc::clone(&stop)))
        .collect();
    let br_rate = &rates[0];
    let none_spiking = |doc: &Value| assert_eq!(spiking(doc), Vec::<String>::new(), "{doc:#}");
    let only_br = |doc: &Value| {
        let s = spiking(doc);
        assert!(s.is_empty() || s == ["BR"], "{doc:#}");
        for code in ["DE", "JP"] {
            let row = country_row(doc, code).unwrap();
            assert_eq!(row["spiking"], false, "{code}: {row:#}");
        }
    };

    // Steady: every country's baseline settles near STEADY.
    let doc = watch(&levee, Duration::from_secs(30), none_spiking, |d| {
        d["uptime_seconds"].as_f64().unwrap() >= 10.0
    })
    .await;
    for code in ["BR", "DE", "JP"] {
        assert!(country_row(&doc, code).is_some(), "{code}: {doc:#}");
    }

    // The burst: flagged within the 10 s window, BR only.
    br_rate.store(10 * STEADY, Ordering::Relaxed);
    let doc = watch(&levee, Duration::from_secs(20), only_br, |d| {
        spiking(d) == ["BR"]
    })
    .await;
    let spike = &doc["spikes"][0];
    let (rate, baseline, ratio) = (
        spike["rate"].as_f64().unwrap(),
        spike["baseline"].as_f64().unwrap(),
        spike["ratio"].as_f64().unwrap(),
    );
    assert!(ratio >= 5.0 && rate >= 3.0, "{spike:#}");
    assert!(
        baseline > 0.5 * STEADY as f64 && baseline < 2.0 * STEADY as f64,
        "the baseline is the steady rate: {spike:#}"
    );
    let br = country_row(&doc, "BR").unwrap();
    assert_eq!(br["spiking"], true);
    assert_eq!(doc["countries"][0]["country"], "BR", "sorted first");

    // Back to steady: the spike ends.
    br_rate.store(STEADY, Ordering::Relaxed);
    watch(&levee, Duration::from_secs(30), only_br, |d| {
        spiking(d).is_empty()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        assert!(d.await.unwrap() > 0);
    }

    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("levee::spike"))
        .collect();
    // Shown with --nocapture.
    println!("{text}");
    assert_eq!(lines.len(), 2, "one start and one end:\n{text}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("traffic spike started"),
        "{text}"
    );
    assert!(
        lines[0].contains("country=\"BR\"") || lines[0].contains("country=BR"),
        "{text}"
    );
    for field in ["rate=", "baseline=", "ratio=", "top_asns="] {
        assert!(lines[0].contains(field), "{field}: {text}");
    }
    assert!(
        lines[1].contains("INFO") && lines[1].contains("traffic spike ended"),
        "{text}"
    );
    assert!(lines[1].contains("BR"), "{text}");
}
