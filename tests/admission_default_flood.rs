//! Protection on the shipped defaults (issue 15, test 1): with no `[admission]` keys at all,
//! an open-loop handshake flood from one country (BR: new connections at a fixed rate
//! whatever levee does, up to 1,000 held at once, each a ClientHello that waits up to 2 s
//! for the server's first flight, then a reset; a few times what a debug-build levee
//! worker can answer) is shed before TLS while clients of other countries
//! (DE, JP: a new TLS connection and a GET every 50 ms) keep >= 99% success. What is shed
//! is counted by reason, and a refused connection never got a TLS byte.
//!
//! One test in its own binary: the flood loads the machine, and nothing else of the suite
//! runs beside it in this process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How long the flood lasts.
const FLOOD_FOR: Duration = Duration::from_secs(4);
use std::time::{Duration, Instant};

use common::admission::{Outcome, fresh_client, start_admission_levee, tls_get_from};
use common::flood::{self, FloodCounts};
use common::stats::{BR_IP, DE_IP, JP_IP, country_row, stats_doc};
use common::{Backend, SLACK};
use levee::surge::hello::Hellos;
use rustls_pki_types::ServerName;

/// New TLS connections with a GET from `from`, one every 50 ms, `count` of them.
async fn visitors(from: IpAddr, to: SocketAddr, count: usize) -> Vec<Outcome> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until((started + Duration::from_millis(50) * i as u32).into()).await;
        tasks.push(tokio::spawn(tls_get_from(from, to, fresh_client(), SLACK)));
    }
    let mut outcomes = Vec::with_capacity(count);
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes
}

/// `admission.rejected`, summed over every reason.
fn rejected_total(doc: &serde_json::Value) -> u64 {
    doc["admission"]["rejected"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_shipped_defaults_a_handshake_flood_is_shed_and_other_countries_are_served() {
    let backend = Backend::start("b1");
    // No [admission] keys: the adaptive handshake limit and automatic caps as shipped.
    let levee = start_admission_levee(1, "", &backend);
    let addr = levee.addr("tls");
    let name = ServerName::try_from("localhost").unwrap();
    let hello_config = levee::surge::tls::hello_config().unwrap();
    let hellos = Arc::new(Hellos::build(&hello_config, &name, 64).unwrap());
    let counts = Arc::new(FloodCounts::default());

    // Before the flood: the visitors' usual traffic (the baseline).
    let before = tokio::join!(visitors(DE_IP, addr, 10), visitors(JP_IP, addr, 10));
    let warm_ok = before.0.iter().chain(&before.1);
    assert!(warm_ok.clone().all(|o| *o == Outcome::Status(200)));

    let flood = flood::open_loop(
        addr,
        BR_IP,
        Arc::clone(&hellos),
        Arc::clone(&counts),
        FLOOD_FOR,
    );
    // The visitors during the flood, from half a second after its start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (de, jp) = tokio::join!(visitors(DE_IP, addr, 50), visitors(JP_IP, addr, 50));
    flood.await.unwrap();

    let all: Vec<_> = de.iter().chain(&jp).collect();
    let ok = all.iter().filter(|o| ***o == Outcome::Status(200)).count();
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let flood_seen = flood::describe(&counts);
    // >= 99% of the other countries' new connections succeed.
    assert!(
        ok * 100 >= all.len() * 99,
        "{ok} of {} visitors served; {flood_seen}; {all:?}",
        all.len()
    );
    let doc = stats_doc(&levee, None).await;
    let rejected = rejected_total(&doc);
    eprintln!(
        "{flood_seen}; rejected {rejected}: {}",
        doc["admission"]["rejected"]
    );
    // The flood was shed, and counted by reason (nothing of DE's or JP's was refused, so
    // every refusal is the flood's).
    assert!(
        rejected > 0,
        "nothing shed; {flood_seen}; {:#}",
        doc["admission"]
    );
    assert_eq!(c(&counts.not_tls), 0, "{flood_seen}");
    // A refused connection never got a TLS byte: refusals are at most the connections that
    // ended without the server's flight.
    let without_flight = c(&counts.attempts) - c(&counts.flights);
    assert!(
        rejected <= without_flight,
        "{rejected} refused but only {without_flight} ended without a flight; {flood_seen}"
    );
    assert!(c(&counts.refused_without_bytes) > 0, "{flood_seen}");
    // The visitors' handshakes all completed, none of them was refused.
    for code in ["DE", "JP"] {
        let row = country_row(&doc, code).unwrap();
        let full = row["tls_handshakes"]["full"].as_u64().unwrap();
        assert!(full >= 59, "{code}: {full} full handshakes; {row:#}");
    }
}
