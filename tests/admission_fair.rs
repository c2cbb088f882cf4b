//! Per-country buckets and fair handshake scheduling over real sockets (issue 6, tests 1
//! and 4), plus the bucket actions: tarpit, 429 with Retry-After, and the allowlist.
//!
//! Clients connect from loopback source addresses the GeoIP fixture tags as BR (127.0.0.2),
//! DE (127.0.0.3) or JP (127.0.0.4); levee counts handshakes per country in `/stats`, which
//! is how "a refused connection never reached the TLS handshake" is checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::admission::{Outcome, fresh_client, start_admission_levee, tls_get_from};
use common::stats::{BR_IP, DE_IP, JP_IP, country_row, get_request, request_from, stats_doc};
use common::{Backend, Levee, SLACK};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

/// Longest a single test connection may take (generous: CI machines are slow and busy).
const ATTEMPT: Duration = Duration::from_secs(5);

/// Handshakes (full + resumed + failed) levee counted for `code`.
fn handshakes(doc: &Value, code: &str) -> u64 {
    country_row(doc, code).map_or(0, |row| {
        let h = &row["tls_handshakes"];
        ["full", "resumed", "failed"]
            .iter()
            .map(|k| h[k].as_u64().unwrap())
            .sum()
    })
}

/// `admission.rejected.<reason>`.
fn rejected(doc: &Value, reason: &str) -> u64 {
    doc["admission"]["rejected"][reason].as_u64().unwrap()
}

/// Opens `count` TLS connections from `from`, one every `every`, each doing one GET;
/// returns every outcome once all have ended, with the time the last one was started and
/// the time the last one ended (both from the first start).
async fn arrivals(
    from: IpAddr,
    to: SocketAddr,
    count: usize,
    every: Duration,
) -> (Vec<Outcome>, Duration, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until((started + every * i as u32).into()).await;
        tasks.push(tokio::spawn(tls_get_from(
            from,
            to,
            fresh_client(),
            ATTEMPT,
        )));
    }
    let span = started.elapsed();
    let mut outcomes = Vec::with_capacity(count);
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    (outcomes, span, started.elapsed())
}

fn ok_count(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| **o == Outcome::Status(200))
        .count()
}

/// Waits until `/stats` counts `n` handshakes for `code` (bounded), returns the document.
async fn wait_handshakes(levee: &Levee, code: &str, n: u64) -> Value {
    let started = Instant::now();
    loop {
        let doc = stats_doc(levee, None).await;
        if handshakes(&doc, code) >= n || started.elapsed() > SLACK {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_country_bucket_admits_its_rate_and_no_more_before_tls() {
    let backend = Backend::start("b1");
    let admission = "[admission.countries.BR]\nnew_connections_per_sec = 20\nburst = 20\n";
    let levee = start_admission_levee(2, admission, &backend);
    let addr = levee.addr("tls");
    // BR offers 100/s for 2 s; DE 10/s at the same time.
    let br = arrivals(BR_IP, addr, 200, Duration::from_millis(10));
    let de = arrivals(DE_IP, addr, 20, Duration::from_millis(100));
    let ((br, span, total), (de, _, _)) = tokio::join!(br, de);

    let admitted = ok_count(&br) as f64;
    // A full bucket (20) plus 20 a second while connections kept arriving: at least over the
    // span of the starts, at most until the last one ended (a busy machine may deliver the
    // last arrivals late). Without the bucket all 200 would get in.
    let (low, high) = (
        20.0 + 20.0 * span.as_secs_f64() - 6.0,
        20.0 + 20.0 * total.as_secs_f64() + 6.0,
    );
    assert!(
        (low..=high).contains(&admitted),
        "BR admitted {admitted}, expected {low:.0}..={high:.0} (starts over {span:?}, all done \
         after {total:?})"
    );
    let admitted = admitted as usize;
    let refused = br.iter().filter(|o| **o == Outcome::Refused).count();
    assert_eq!(admitted + refused, br.len(), "{br:?}");
    assert_eq!(ok_count(&de), de.len(), "DE is not limited: {de:?}");

    let doc = wait_handshakes(&levee, "DE", de.len() as u64).await;
    // Refused connections never reached the handshake: BR's handshakes are its admitted.
    assert_eq!(handshakes(&doc, "BR"), admitted as u64, "{doc:#}");
    assert_eq!(handshakes(&doc, "DE"), de.len() as u64);
    assert_eq!(rejected(&doc, "rate_limit"), refused as u64);
    let br_row = country_row(&doc, "BR").unwrap();
    assert_eq!(br_row["shed"].as_u64().unwrap(), refused as u64);
    let metrics = common::stats::admin_request(&levee, "GET", "/metrics", None).await;
    let line = format!(
        "levee_admission_rejected_total{{country=\"BR\",reason=\"rate_limit\"}} {refused}\n"
    );
    assert!(metrics.text().contains(&line), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarpit_holds_then_closes_without_a_byte() {
    let backend = Backend::start("b1");
    let admission = "tarpit_delay = \"1s\"\n\
                     [admission.countries.BR]\nnew_connections_per_sec = 0.1\nburst = 1\n\
                     action = \"tarpit\"\n";
    let levee = start_admission_levee(1, admission, &backend);
    let addr = levee.addr("tls");
    assert_eq!(
        tls_get_from(BR_IP, addr, fresh_client(), ATTEMPT).await,
        Outcome::Status(200)
    );
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(BR_IP, 0)).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    let held = started.elapsed();
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "closed without a byte: {n:?}"
    );
    assert!(
        held >= Duration::from_millis(900) && held < Duration::from_secs(3),
        "held {held:?}"
    );
    let doc = stats_doc(&levee, None).await;
    assert_eq!(rejected(&doc, "tarpit"), 1);
    assert_eq!(handshakes(&doc, "BR"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_buckets_answer_429_with_retry_after_and_spare_the_allowlist() {
    let backend = Backend::start("b1");
    let admission = "allowlist = [\"127.0.0.4/32\"]\n\
                     [admission.countries.default]\nrequests_per_sec = 1\nrequest_burst = 2\n";
    let levee = start_admission_levee(1, admission, &backend);
    let plain = levee.addr("plain");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = request_from(DE_IP, plain, &get_request("/")).await;
        if reply.status == 429 {
            let retry: u64 = reply
                .head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("retry-after: ")
                        .map(str::to_string)
                })
                .expect("Retry-After")
                .trim()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry), "Retry-After {retry}");
        }
        statuses.push(reply.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    // JP is allowlisted: never limited.
    for _ in 0..6 {
        assert_eq!(
            request_from(JP_IP, plain, &get_request("/")).await.status,
            200
        );
    }
    // BR has its own bucket (the default applies per country).
    assert_eq!(
        request_from(BR_IP, plain, &get_request("/")).await.status,
        200
    );
    let doc = stats_doc(&levee, None).await;
    assert_eq!(rejected(&doc, "request_rate_limit"), 2);
    let de = country_row(&doc, "DE").unwrap();
    assert_eq!(de["requests"]["4xx"].as_u64().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_scheduling_serves_a_country_at_its_baseline_through_a_flood() {
    let backend = Backend::start("b1");
    // One worker, two handshakes at a time, a queue far smaller than the flood.
    let admission = "max_handshakes_in_flight = 2\nhandshake_queue = 16\n\
                     handshake_queue_timeout = \"2s\"\n";
    let levee = start_admission_levee(1, admission, &backend);
    let addr = levee.addr("tls");
    let stop_at = Instant::now() + Duration::from_secs(4);
    // The flood: 48 BR clients reconnecting as fast as they can, full handshakes only.
    let flood: Vec<_> = (0..48)
        .map(|_| {
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0u64, 0u64);
                while Instant::now() < stop_at {
                    match tls_get_from(BR_IP, addr, fresh_client(), ATTEMPT).await {
                        Outcome::Status(200) => ok += 1,
                        _ => refused += 1,
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    // DE at a steady 5 new connections a second (its usual rate) while the flood runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (de, _, _) = arrivals(DE_IP, addr, 15, Duration::from_millis(200)).await;
    let mut br = (0, 0);
    for f in flood {
        let (ok, refused) = f.await.unwrap();
        br = (br.0 + ok, br.1 + refused);
    }
    assert_eq!(ok_count(&de), de.len(), "every DE client completes: {de:?}");
    let doc = stats_doc(&levee, None).await;
    let shed = rejected(&doc, "fair_share")
        + rejected(&doc, "handshake_queue_full")
        + rejected(&doc, "handshake_queue_timeout");
    assert!(
        br.1 > 0 && shed > 0,
        "the flood saturated the gate: BR {br:?}, {doc:#}"
    );
    assert!(br.0 > 0, "BR still gets the rest: {br:?}");
    let wait = &doc["admission"]["queue_wait"];
    assert!(wait["count"].as_u64().unwrap() > 0, "{wait:#}");
}
