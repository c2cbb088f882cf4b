//! The access log's sinks, on the real binary: `[server] access_log_path` reopened on SIGUSR1
//! (logrotate), every line written out on SIGTERM, and a sink that cannot keep up (stdout
//! to a pipe nobody reads) costs dropped lines, counted in `levee_access_log_dropped_total`,
//! never a stalled request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::client::{Conn, Proto};
use common::prom::parse_exposition;
use common::*;

/// A one-worker config with a plain listener `web` at `addr` in front of `backend`, the
/// admin API at `admin`, and `server` lines added to `[server]`.
fn config(
    dir: &Path,
    addr: SocketAddr,
    admin: SocketAddr,
    backend: &Backend,
    server: &str,
) -> std::path::PathBuf {
    let toml = format!(
        "[server]\nworkers = 1\nshutdown_timeout = \"2s\"\n{server}\n\n\
         [admin]\nlisten = \"{admin}\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"{addr}\"\ndefault_pool = \"web\"\n\n{}",
        pool_toml("web", &[backend.addr], "")
    );
    write_file(dir, "levee.toml", &toml)
}

fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

fn signal(child: &ChildGuard, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Lines of `file` whose path field is `path` (text format: `path=/x `).
fn lines_for(file: &Path, path: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let needle = format!(" path={path} ");
    text.lines().filter(|l| l.contains(&needle)).count()
}

async fn wait_for_line(file: &Path, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines_for(file, path) == 0 {
        assert!(Instant::now() < deadline, "no line for {path} in {file:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_is_reopened_on_sigusr1_and_complete_after_sigterm() {
    let backend = Backend::start("b1");
    let dir = tempfile::tempdir().unwrap();
    let (addr, admin) = (local(free_port()), local(free_port()));
    let cfg = config(
        dir.path(),
        addr,
        admin,
        &backend,
        "access_log_path = \"logs/access.log\"",
    );
    // The file's directory must exist: a config naming a missing one is refused.
    let refused = run_levee(&["check", "--config", cfg.to_str().unwrap()]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        refused.stderr.contains("server.access_log_path")
            && refused.stderr.contains("does not exist"),
        "{}",
        refused.stderr
    );
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let log = dir.path().join("logs/access.log");
    let rotated = dir.path().join("logs/access.log.1");
    let mut child = spawn_levee_with_config(&["run"], &cfg, dir.path());
    wait_accepting(&mut child, addr).await.unwrap();

    let mut conn = Conn::plain(addr, Proto::H1).await;
    assert_eq!(conn.get("/before").await.status, 200);
    wait_for_line(&log, "/before").await;

    // logrotate: move the file away, then signal; levee writes a new file by the old name.
    std::fs::rename(&log, &rotated).unwrap();
    signal(&child, "USR1");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(conn.get("/after").await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if lines_for(&log, "/after") > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no new file after SIGUSR1");
    }
    assert_eq!(lines_for(&rotated, "/before"), 1);
    assert_eq!(lines_for(&log, "/before"), 0);

    // A burst answered just before SIGTERM is all in the file once levee has exited.
    const BURST: usize = 300;
    for _ in 0..BURST {
        assert_eq!(conn.get("/burst").await.status, 200);
    }
    drop(conn);
    child.sigterm();
    let exited = child.wait_exit_async(Duration::from_secs(15)).await;
    assert!(exited.is_some_and(|s| s.success()), "{}", child.stderr());
    assert_eq!(lines_for(&log, "/burst"), BURST, "lines lost at shutdown");
}

/// `levee_access_log_dropped_total` from the admin API.
async fn dropped(admin: SocketAddr) -> f64 {
    let mut c = Conn::plain(admin, Proto::H1).await;
    let reply = c.get("/metrics").await;
    assert_eq!(reply.status, 200);
    parse_exposition(&reply.text()).get("levee_access_log_dropped_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_cannot_keep_up_drops_lines_instead_of_stalling_requests() {
    let backend = Backend::start("b1");
    let dir = tempfile::tempdir().unwrap();
    let (addr, admin) = (local(free_port()), local(free_port()));
    let cfg = config(dir.path(), addr, admin, &backend, "");
    let stderr_path = dir.path().join("stderr");
    let mut spawned = Command::new(levee_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // Nobody reads stdout until the end: once the pipe is full the writer blocks on it.
    let mut stdout = spawned.stdout.take().unwrap();
    let mut child = ChildGuard::new(spawned, stderr_path);
    wait_accepting(&mut child, addr).await.unwrap();
    assert_eq!(dropped(admin).await, 0.0);

    // Four keep-alive clients in rounds of 500 requests each; every request must still be
    // answered promptly.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut served = 0usize;
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(Conn::plain(addr, Proto::H1).await);
    }
    let mut lost = 0.0;
    while lost == 0.0 {
        assert!(
            served < 200_000 && started.elapsed() < Duration::from_secs(90),
            "no line dropped after {served} requests"
        );
        let tasks: Vec<_> = conns
            .drain(..)
            .map(|mut c| {
                tokio::spawn(async move {
                    let mut slowest = Duration::ZERO;
                    for _ in 0..500 {
                        let t = Instant::now();
                        assert_eq!(c.get("/flood").await.status, 200);
                        slowest = slowest.max(t.elapsed());
                    }
                    (c, slowest)
                })
            })
            .collect();
        for task in tasks {
            let (c, took) = task.await.unwrap();
            conns.push(c);
            slowest = slowest.max(took);
            served += 500;
        }
        lost = dropped(admin).await;
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a request waited {slowest:?} for a blocked sink"
    );
    // Unblock the sink, then stop.
    let reader = std::thread::spawn(move || {
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    child.sigterm();
    let exited = child.wait_exit_async(Duration::from_secs(20)).await;
    assert!(exited.is_some(), "levee did not stop: {}", child.stderr());
    let _ = reader.join();
}
