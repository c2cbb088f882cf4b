//! `[admission] auto` and `dry_run` end to end (issue 6, test 5): steady TLS traffic from
//! three countries builds their baselines, then a 10x burst from one of them, arriving in
//! clumps so handshakes queue behind `max_handshakes_in_flight = 1` (the proxy is "near its
//! handshake capacity"), is flagged as a spike. One levee with `auto` caps the country and
//! refuses what exceeds the cap; a second levee, fed the same traffic with `dry_run`, only
//! counts what it would refuse. Each logs one start and one stop, and the caps show in
//! `/stats` while they last.
//!
//! The stats windows tick once a second and need about 13 s before anything can spike, so
//! this test takes about 30 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::admission::{Outcome, fresh_client, start_admission_levee, tls_get_from};
use common::logs::CapturedLogs;
use common::stats::{BR_IP, DE_IP, JP_IP, stats_doc};
use common::{Backend, Levee};
use serde_json::Value;

/// Longest a single test connection may take (generous: CI machines are slow and busy).
const ATTEMPT: Duration = Duration::from_secs(5);

/// Steady new connections per second from each country; the burst is ten times that.
const STEADY: u64 = 5;

/// Outcomes per target (index into the targets list).
type Outcomes = Arc<Mutex<Vec<(usize, Outcome)>>>;

/// Every 100 ms, opens the connections `rate` (per second, read at every step) has earned,
/// all at once, from `from` to every target, until `stop`.
fn drive(
    from: IpAddr,
    targets: Vec<SocketAddr>,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    outcomes: Outcomes,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut credit = 0.0f64;
        let mut tasks = Vec::new();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            credit += 0.1 * rate.load(Ordering::Relaxed) as f64;
            while credit >= 1.0 {
                credit -= 1.0;
                for (i, to) in targets.iter().enumerate() {
                    let (to, outcomes) = (*to, Arc::clone(&outcomes));
                    tasks.push(tokio::spawn(async move {
                        let o = tls_get_from(from, to, fresh_client(), ATTEMPT).await;
                        outcomes.lock().unwrap().push((i, o));
                    }));
                }
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
}

/// The countries `admission.auto.caps` lists.
fn capped(doc: &Value) -> Vec<String> {
    doc["admission"]["auto"]["caps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["country"].as_str().unwrap().to_string())
        .collect()
}

/// Polls both levees' `/stats` (every 200 ms, at most `within`) until `done` holds for both.
async fn watch_both(levees: [&Levee; 2], within: Duration, done: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    loop {
        let a = stats_doc(levees[0], None).await;
        let b = stats_doc(levees[1], None).await;
        for doc in [&a, &b] {
            let c = capped(doc);
            assert!(
                c.is_empty() || c == ["BR"],
                "only BR is ever capped: {doc:#}"
            );
        }
        if done(&a) && done(&b) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "not reached within {within:?}:\n{a:#}\n{b:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start(dry_run: bool, backend: &Backend) -> Levee {
    let admission = format!(
        "max_handshakes_in_flight = 1\nhandshake_queue = 256\nhandshake_queue_timeout = \"5s\"\n\
         auto = true\ndry_run = {dry_run}\nauto_headroom = 1.5\n\n\
         [stats]\nspike_threshold = 5\nspike_min_rate = 3\nspike_floor = 1\n\
         baseline_half_life = \"5s\"\n"
    );
    start_admission_levee(1, &admission, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_and_dry_run_cap_a_spike_near_capacity_and_log_once_each() {
    let logs = CapturedLogs::install("levee::admission=info");

    let backend = Backend::start("a");
    let enforcing = start(false, &backend);
    let dry = start(true, &backend);
    let targets = vec![enforcing.addr("tls"), dry.addr("tls")];
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Outcomes = Arc::default();
    let rates: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(STEADY))).collect();
    let drivers: Vec<_> = [BR_IP, DE_IP, JP_IP]
        .into_iter()
        .zip(&rates)
        .map(|(ip, rate)| {
            let (rate, stop, out) = (Arc::clone(rate), Arc::clone(&stop), Arc::clone(&outcomes));
            drive(ip, targets.clone(), rate, stop, out)
        })
        .collect();
    let both = [&enforcing, &dry];

    // Steady: baselines settle near STEADY; nothing is capped.
    watch_both(both, Duration::from_secs(40), |d| {
        capped(d).is_empty() && d["uptime_seconds"].as_f64().unwrap() >= 13.0
    })
    .await;

    // The burst: both levees cap BR (the enforcing one for real).
    rates[0].store(10 * STEADY, Ordering::Relaxed);
    watch_both(both, Duration::from_secs(25), |d| capped(d) == ["BR"]).await;
    let doc = stats_doc(&enforcing, None).await;
    let cap = &doc["admission"]["auto"]["caps"][0];
    let per_sec = cap["cap_per_sec"].as_f64().unwrap();
    let baseline = cap["baseline"].as_f64().unwrap();
    assert!(
        (per_sec - 1.5 * baseline.max(1.0 / 1.5)).abs() < 0.01,
        "{cap:#}"
    );
    assert_eq!(cap["dry_run"], false);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back to steady: the spike ends, and so do the caps.
    rates[0].store(STEADY, Ordering::Relaxed);
    watch_both(both, Duration::from_secs(40), |d| capped(d).is_empty()).await;
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        d.await.unwrap();
    }

    let doc_enforcing = stats_doc(&enforcing, None).await;
    let doc_dry = stats_doc(&dry, None).await;
    let auto_cap = |d: &Value| d["admission"]["rejected"]["auto_cap"].as_u64().unwrap();
    let would = |d: &Value| d["admission"]["dry_run_would_reject"].as_u64().unwrap();
    assert!(auto_cap(&doc_enforcing) > 0, "{doc_enforcing:#}");
    assert_eq!(would(&doc_enforcing), 0);
    assert_eq!(auto_cap(&doc_dry), 0, "a dry run refuses nothing");
    assert!(would(&doc_dry) > 0, "{doc_dry:#}");
    // The dry run served everyone; the enforcing levee refused only BR.
    let outcomes = outcomes.lock().unwrap();
    assert!(
        outcomes
            .iter()
            .filter(|(i, _)| *i == 1)
            .all(|(_, o)| *o == Outcome::Status(200)),
        "dry run: every connection served"
    );

    let text = logs.text();
    println!("{text}");
    for dry_run in [false, true] {
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&format!("dry_run={dry_run}")))
            .collect();
        assert_eq!(
            mine.len(),
            2,
            "one start and one stop (dry_run={dry_run}):\n{text}"
        );
        assert!(
            mine[0].contains("WARN") && mine[0].contains("automatic admission cap started"),
            "{text}"
        );
        assert!(mine[0].contains("country=\"BR\"") || mine[0].contains("country=BR"));
        assert!(mine[1].contains("automatic admission cap ended"), "{text}");
    }
}
