//! Session resumption across workers: with `workers = 2`, every connection after the first
//! resumes, whichever worker accepts it (TLS 1.3 tickets, TLS 1.2 tickets, TLS 1.2 session IDs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::client::{Proto, TLS12, TLS13};
use common::*;
use levee::stats::HandshakeKind;
use rustls::client::{Resumption, Tls12Resumption};
use rustls::{ProtocolVersion, SupportedProtocolVersion};

const CONNECTIONS: usize = 20;

async fn every_connection_after_the_first_resumes(
    versions: &'static [&'static SupportedProtocolVersion],
    resumption: Resumption,
    version: ProtocolVersion,
    proto: Proto,
) {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let backend = Backend::start("b1");
    let toml = server_toml(2)
        + &listener_toml("tls", "web", Some(&[&leaf]), "", "")
        + &pool_toml("web", &[backend.addr], "");
    let levee = start_levee(&toml);
    let addr = levee.addr("tls");
    let opts = TlsOpts {
        versions,
        resumption,
        ..TlsOpts::default()
    };
    let opts = if proto == Proto::H2 {
        opts.h2()
    } else {
        opts.h1()
    };
    // One client config (and so one client session cache) for every connection.
    let cfg = client_config(&ca.der(), opts);
    let mut kinds = Vec::new();
    for i in 0..CONNECTIONS {
        // Reading the whole response also processes any TLS 1.3 NewSessionTicket.
        let (reply, info) = tls_get(addr, cfg.clone(), "localhost", proto, "/").await;
        assert_eq!(reply.status, 200, "connection {i}");
        assert_eq!(reply.text(), "hello from b1\n");
        assert_eq!(info.version, Some(version), "connection {i}");
        kinds.push(info.handshake.unwrap());
    }
    assert_ne!(kinds[0], rustls::HandshakeKind::Resumed, "{kinds:?}");
    for (i, k) in kinds.iter().enumerate().skip(1) {
        assert_eq!(
            *k,
            rustls::HandshakeKind::Resumed,
            "connection {i}: {kinds:?}"
        );
    }
    let want = (CONNECTIONS - 1) as u64;
    let t = levee
        .wait_totals(Duration::from_secs(5), |t| {
            t.handshakes_of(HandshakeKind::Resumed) >= want
        })
        .await;
    assert!(
        t.handshakes_of(HandshakeKind::Resumed) >= want,
        "server counted {} resumed, {} full",
        t.handshakes_of(HandshakeKind::Resumed),
        t.handshakes_of(HandshakeKind::Full)
    );
    assert!(t.handshakes_of(HandshakeKind::Full) >= 1);
    // Both workers must have accepted some of the connections, or nothing crossed cores.
    let per_worker = levee.running().worker_totals();
    assert_eq!(per_worker.len(), 2);
    for (i, w) in per_worker.iter().enumerate() {
        assert!(
            w.connections > 0,
            "worker {i} accepted nothing: {per_worker:?}"
        );
    }
    assert_eq!(t.handshakes_of(HandshakeKind::Failed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_tickets_resume_across_workers() {
    every_connection_after_the_first_resumes(
        TLS13,
        Resumption::default(),
        ProtocolVersion::TLSv1_3,
        Proto::H1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_tickets_resume_across_workers_over_h2() {
    every_connection_after_the_first_resumes(
        TLS13,
        Resumption::default(),
        ProtocolVersion::TLSv1_3,
        Proto::H2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_tickets_resume_across_workers() {
    every_connection_after_the_first_resumes(
        TLS12,
        Resumption::default().tls12_resumption(Tls12Resumption::SessionIdOrTickets),
        ProtocolVersion::TLSv1_2,
        Proto::H1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_session_ids_resume_across_workers() {
    every_connection_after_the_first_resumes(
        TLS12,
        Resumption::default().tls12_resumption(Tls12Resumption::SessionIdOnly),
        ProtocolVersion::TLSv1_2,
        Proto::H1,
    )
    .await;
}
