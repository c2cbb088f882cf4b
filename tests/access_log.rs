//! The access log of the real binary with `log_format = "json"`: every stdout line is one
//! flat JSON object; a request's line has its host, proto (h1/h2), query (only with
//! `access_log_query`), user agent, request id (the client's, or the one levee made and sent
//! upstream), upstream_ms beside duration_ms, and who produced the status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::{Conn, Proto, TlsOpts, client_config_insecure, raw_exchange};
use common::*;
use serde_json::{Map, Value};
use tokio::net::TcpStream;

/// Runs levee with `server` settings and a plain and a TLS listener in front of `backend`,
/// sends the requests of `traffic`, stops levee, and returns its stdout lines as objects.
async fn json_lines_of<F, Fut>(
    backend: &Backend,
    server: &str,
    traffic: F,
) -> Vec<Map<String, Value>>
where
    F: FnOnce(SocketAddr, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let plain: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = format!(
        "[server]\nworkers = 1\nshutdown_timeout = \"2s\"\nlog_format = \"json\"\n{server}\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"{plain}\"\ndefault_pool = \"web\"\n\n\
         [[listeners]]\nname = \"secure\"\nlisten = \"{tls}\"\ndefault_pool = \"web\"\n\
         [listeners.tls]\n\n{}",
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
    wait_accepting(&mut child, plain).await.unwrap();
    wait_accepting(&mut child, tls).await.unwrap();
    traffic(plain, tls).await;
    child.sigterm();
    let exited = child.wait_exit_async(Duration::from_secs(10)).await;
    assert!(exited.is_some(), "levee did not stop");
    let out = std::fs::read_to_string(&stdout_path).unwrap();
    out.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(map)) => {
                let nested = map.values().any(|v| v.is_object() || v.is_array());
                assert!(!nested, "not flat: {line}");
                map
            }
            _ => panic!("not one JSON object: {line:?}"),
        })
        .collect()
}

/// The access line whose path is `path`.
fn access<'a>(lines: &'a [Map<String, Value>], path: &str) -> &'a Map<String, Value> {
    lines
        .iter()
        .find(|l| l["target"] == "levee::access" && l.get("path") == Some(&Value::from(path)))
        .unwrap_or_else(|| panic!("no access line for {path}: {lines:#?}"))
}

fn is_made_id(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_are_flat_and_carry_the_request() {
    let backend = Backend::start("b1");
    let lines = json_lines_of(
        &backend,
        "access_log_query = true",
        |plain, tls| async move {
            let tcp = TcpStream::connect(plain).await.unwrap();
            let head = b"GET /h1?token=s3cret HTTP/1.1\r\nHost: example.test\r\n\
            User-Agent: probe/1.0\r\nX-Request-Id: client-id-1\r\nConnection: close\r\n\r\n";
            assert_eq!(raw_exchange(tcp, head).await.status, 200);
            let tcp = TcpStream::connect(plain).await.unwrap();
            let no_host = b"GET /nohost HTTP/1.1\r\nConnection: close\r\n\r\n";
            assert_eq!(raw_exchange(tcp, no_host).await.status, 400);
            let config = client_config_insecure(TlsOpts::default().h2());
            let mut h2 = Conn::tls(tls, config, "localhost", Proto::H2).await;
            assert_eq!(h2.get("/h2").await.status, 200);
        },
    )
    .await;

    assert!(lines.iter().any(|l| l["target"] != "levee::access"));
    let h1 = access(&lines, "/h1");
    assert_eq!(h1["request_id"], "client-id-1", "{h1:?}");
    assert_eq!(h1["host"], "example.test");
    assert_eq!(h1["proto"], "h1");
    assert_eq!(h1["query"], "token=s3cret");
    assert_eq!(h1["user_agent"], "probe/1.0");
    assert_eq!(h1["listener"], "web");
    assert_eq!(h1["status"], 200);
    assert_eq!(h1["status_from"], "backend");
    assert_eq!(h1["pool"], "web");
    assert_eq!(h1["backend"], backend.addr.to_string());
    let upstream = h1["upstream_ms"].as_f64().expect("upstream_ms");
    let duration = h1["duration_ms"].as_f64().expect("duration_ms");
    assert!(upstream > 0.0 && upstream <= duration, "{h1:?}");
    for span_field in ["worker", "sni", "alpn", "span", "spans", "fields"] {
        assert!(!h1.contains_key(span_field), "{span_field} in {h1:?}");
    }

    let levee_made = access(&lines, "/nohost");
    assert_eq!(levee_made["status"], 400);
    assert_eq!(levee_made["status_from"], "levee");
    assert!(!levee_made.contains_key("upstream_ms"), "{levee_made:?}");
    assert!(!levee_made.contains_key("host"), "{levee_made:?}");
    assert!(is_made_id(&levee_made["request_id"]), "{levee_made:?}");

    let h2 = access(&lines, "/h2");
    assert_eq!(h2["proto"], "h2");
    assert_eq!(h2["listener"], "secure");
    assert!(
        h2["host"].as_str().unwrap().starts_with("localhost:"),
        "{h2:?}"
    );
    assert!(is_made_id(&h2["request_id"]), "{h2:?}");
    let seen = backend.seen();
    let ids: Vec<Option<String>> = seen.iter().map(|s| s.header("x-request-id")).collect();
    assert_eq!(ids[0].as_deref(), Some("client-id-1"), "kept upstream");
    assert_eq!(
        ids[1].as_deref(),
        h2["request_id"].as_str(),
        "made, sent, logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_is_left_out_by_default() {
    let backend = Backend::start("b1");
    let lines = json_lines_of(&backend, "", |plain, _| async move {
        let tcp = TcpStream::connect(plain).await.unwrap();
        let head = b"GET /q?token=s3cret HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        assert_eq!(raw_exchange(tcp, head).await.status, 200);
    })
    .await;
    let line = access(&lines, "/q");
    assert!(!line.contains_key("query"), "{line:?}");
    assert!(!line.contains_key("user_agent"), "none sent: {line:?}");
    assert_eq!(backend.last().target, "/q?token=s3cret", "forwarded whole");
}
