//! The admin API from tests: `[server]` with admin on an ephemeral port, `GET /pools`, and
//! bounded polling for a backend's state.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Conn, Levee, Proto, server_toml};

/// Slack for scheduling and for polling `/pools` on a loaded 2-core machine.
pub const SLACK: Duration = Duration::from_millis(1000);

/// `[server]` for tests with the admin API on an ephemeral loopback port.
pub fn server_with_admin() -> String {
    server_toml(2).replace("listen = \"off\"", "listen = \"127.0.0.1:0\"")
}

/// `GET /pools` from the admin API, parsed.
pub async fn pools(levee: &Levee) -> Value {
    let admin = levee.running().admin_addr().expect("admin API enabled");
    let mut c = Conn::plain(admin, Proto::H1).await;
    let reply = c.get("/pools").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_slice(&reply.body).expect("/pools is JSON")
}

/// The `/pools` entry of backend `addr` in pool `pool`.
pub fn backend_entry(doc: &Value, pool: &str, addr: SocketAddr) -> Value {
    let pool = doc["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == pool))
        .unwrap_or_else(|| panic!("no pool {pool} in {doc}"));
    let addr = addr.to_string();
    pool["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["address"] == addr.as_str()))
        .unwrap_or_else(|| panic!("no backend {addr} in {doc}"))
        .clone()
}

/// Polls `/pools` until backend `addr` of `pool` is in `state`; returns how long that took.
pub async fn wait_state(
    levee: &Levee,
    pool: &str,
    addr: SocketAddr,
    state: &str,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let entry = backend_entry(&pools(levee).await, pool, addr);
        if entry["state"] == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{addr} not {state} within {within:?}: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
