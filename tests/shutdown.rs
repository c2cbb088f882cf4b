//! Graceful shutdown of the real binary: SIGTERM lets in-flight requests finish, then exit 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::{Proto, tls_get};
use common::*;

/// A levee process listening on a TLS listener at `addr`.
struct Proc {
    child: ChildGuard,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Starts `levee <args> --config FILE` with a TLS listener on a free port, retrying with a new
/// port if the chosen one was taken in between; waits (bounded) until it accepts.
async fn spawn_levee(
    args: &[&str],
    leaf: &Leaf,
    backend: SocketAddr,
    shutdown_timeout: &str,
) -> Proc {
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let toml = format!(
            "[server]\nworkers = 2\nshutdown_timeout = \"{shutdown_timeout}\"\n\n\
             [admin]\nlisten = \"off\"\n\n\
             [[listeners]]\nname = \"tls\"\nlisten = \"{addr}\"\ndefault_pool = \"web\"\n\
             [listeners.tls]\ncertificates = [{}]\n\n{}",
            leaf.toml(),
            pool_toml("web", &[backend], "response_timeout = \"30s\"")
        );
        let config = write_file(dir.path(), "levee.toml", &toml);
        let mut child = spawn_levee_with_config(args, &config, dir.path());
        match wait_accepting(&mut child, addr).await {
            Ok(()) => {
                return Proc {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            Err(e) => last_err = e,
        }
    }
    panic!("could not start levee: {last_err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let backend = Backend::start("slow");
    let mut p = spawn_levee(&["run"], &leaf, backend.addr, "10s").await;
    let cfg = client_config(&ca.der(), TlsOpts::default().h1());

    let addr = p.addr;
    let request = tokio::spawn(async move {
        let started = Instant::now();
        let (reply, _) = tls_get(addr, cfg, "localhost", Proto::H1, "/slow?ms=1500").await;
        (reply, started.elapsed())
    });
    // Signal only once the request is at the backend, i.e. truly in flight.
    assert!(
        backend.wait_requests(1, Duration::from_secs(10)).await,
        "the request never reached the backend: {}",
        p.child.stderr()
    );
    let signalled = Instant::now();
    p.child.sigterm();

    // New connections are refused while the old request drains.
    let mut refused = false;
    while signalled.elapsed() < Duration::from_secs(1) {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "still accepting 1 s after SIGTERM");
    assert!(
        !request.is_finished(),
        "the request finished before the listener closed; nothing was shown"
    );

    let (reply, took) = tokio::time::timeout(Duration::from_secs(20), request)
        .await
        .expect("the in-flight request did not finish")
        .unwrap();
    assert_eq!(reply.status, 200, "stderr: {}", p.child.stderr());
    assert_eq!(reply.text(), "slow done by slow\n");
    assert!(
        took >= Duration::from_millis(1400),
        "answered after {took:?}"
    );

    let status = p
        .child
        .wait_exit_async(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("levee still running 10 s after SIGTERM"));
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        p.child.stderr()
    );
    // It left once the request was done, well before the 10 s shutdown timeout.
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "exit took {:?}",
        signalled.elapsed()
    );
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_keepalive_connections_exits_0_promptly() {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let backend = Backend::start("b1");
    // The default form: `levee --config FILE`.
    let mut p = spawn_levee(&[], &leaf, backend.addr, "20s").await;
    let mut h1 = Conn::tls(
        p.addr,
        client_config(&ca.der(), TlsOpts::default().h1()),
        "localhost",
        Proto::H1,
    )
    .await;
    let mut h2 = Conn::tls(
        p.addr,
        client_config(&ca.der(), TlsOpts::default().h2()),
        "localhost",
        Proto::H2,
    )
    .await;
    assert_eq!(h1.get("/").await.status, 200);
    assert_eq!(h2.get("/").await.status, 200);

    // Both connections stay open and idle while levee is told to stop.
    let signalled = Instant::now();
    p.child.sigterm();
    let status = p
        .child
        .wait_exit_async(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("levee still running 15 s after SIGTERM"));
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        p.child.stderr()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "idle connections held the exit for {:?} (shutdown_timeout is 20 s)",
        signalled.elapsed()
    );
    drop((h1, h2));
}
