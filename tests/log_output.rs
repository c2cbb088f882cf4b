//! The real binary's log output when stdout is not a terminal (a file here, as under systemd
//! or a log collector): plain text, no ANSI colour codes, the access log included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::raw_exchange;
use common::*;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_file_carry_no_colour_codes() {
    let backend = Backend::start("b1");
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = format!(
        "[server]\nworkers = 1\nshutdown_timeout = \"2s\"\n\n[admin]\nlisten = \"off\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"{addr}\"\ndefault_pool = \"web\"\n\n{}",
        pool_toml("web", &[backend.addr], "")
    );
    let config = write_file(dir.path(), "levee.toml", &toml);
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let child = Command::new(levee_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn levee");
    let mut child = ChildGuard::new(child, stderr_path);
    wait_accepting(&mut child, addr).await.unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let reply = raw_exchange(
        tcp,
        b"GET /logged HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.await.status, 200);
    child.sigterm();
    assert!(
        child
            .wait_exit_async(Duration::from_secs(10))
            .await
            .is_some()
    );
    let out = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(out.contains("config loaded"), "{out}");
    assert!(out.contains("/logged"), "no access log line: {out}");
    assert!(
        !out.contains('\u{1b}'),
        "ANSI escape codes in a file: {out:?}"
    );
}
