//! `levee demo` as a newcomer meets it: it runs on a config file it wrote (so `levee reload`
//! works on it), keeps an access log of the requests a person sends, removes its file when
//! it stops, and refuses a `--config` it would not use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::client::{Proto, TlsOpts, client_config_insecure, raw_exchange, tls_get};
use common::*;
use tokio::net::TcpStream;

#[test]
fn demo_refuses_a_config_it_would_not_use() {
    let out = run_levee(&["demo", "-c", "/etc/levee/levee.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("takes no --config"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("levee run --config /etc/levee/levee.toml"),
        "{}",
        out.stderr
    );
}

/// What the demo's stdout says so far.
fn stdout_of(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The child's stdout once it contains `text` (or after 10 s, whatever it holds then).
async fn stdout_with(path: &std::path::Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = stdout_of(path);
        if out.contains(text) || Instant::now() >= deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `admin`'s `/pools` mentions `text`.
async fn pools_mention(admin: SocketAddr, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let tcp = TcpStream::connect(admin).await.unwrap();
        let req = b"GET /pools HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let reply = raw_exchange(tcp, req).await;
        if String::from_utf8_lossy(&reply.body).contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reloads_its_written_config_and_logs_requests() {
    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let child = Command::new(levee_bin())
        .args(["demo", "--no-traffic", "--listen", &listen.to_string()])
        .args(["--admin", &admin.to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn levee demo");
    let mut child = ChildGuard::new(child, stderr_path);
    wait_accepting(&mut child, listen).await.unwrap();

    // The banner is printed once the listeners are up: it may come just after the port
    // accepts.
    let banner = stdout_with(&stdout_path, "config:").await;
    let config_line = banner
        .lines()
        .find_map(|l| l.strip_prefix("config:"))
        .unwrap_or_else(|| panic!("no config line: {banner}"));
    let config = PathBuf::from(config_line.split_whitespace().next().unwrap());
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("round_robin"), "{text}");

    let tls = client_config_insecure(TlsOpts::default());
    let (reply, _) = tls_get(listen, tls, "localhost", Proto::H1, "/hello").await;
    assert_eq!(reply.status, 200);

    std::fs::write(&config, text.replace("round_robin", "least_conn")).unwrap();
    let reload = Command::new(levee_bin())
        .args(["reload", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&reload.stdout);
    assert_eq!(reload.status.code(), Some(0), "{said}");
    assert!(said.contains("reloaded: generation"), "{said}");
    assert!(
        pools_mention(admin, "least_conn").await,
        "reload not in force"
    );

    child.sigterm();
    let exited = child.wait_exit_async(Duration::from_secs(10)).await;
    assert!(exited.is_some(), "demo did not stop");
    let out = stdout_of(&stdout_path);
    let access = out
        .lines()
        .find(|l| l.contains("levee::access") && l.contains("path=/hello"))
        .unwrap_or_else(|| panic!("no access line: {out}"));
    assert!(access.contains("listener=\"demo\""), "{access}");
    assert!(!config.exists(), "the demo's config outlived it");
}
