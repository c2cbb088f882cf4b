//! Load-balancing algorithms end to end: real backends on loopback behind levee's plain HTTP
//! listener, each pool configured in TOML (`algorithm`, `weight`, `hash_key`), counting at
//! the backends (`x-backend`) where the requests went.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// A `[pools.NAME]` table with `algorithm`, `extra` settings and weighted backends.
fn weighted_pool_toml(
    name: &str,
    algorithm: &str,
    extra: &str,
    backends: &[(SocketAddr, u32)],
) -> String {
    let mut s = format!("[pools.{name}]\nalgorithm = \"{algorithm}\"\n{extra}\n");
    for (addr, weight) in backends {
        s += &format!("[[pools.{name}.backends]]\naddress = \"{addr}\"\nweight = {weight}\n");
    }
    s + "\n"
}

/// levee with a plain listener "plain" to pool "web" over `backends` with these weights.
fn start(algorithm: &str, extra: &str, backends: &[(&Backend, u32)]) -> Levee {
    let list: Vec<(SocketAddr, u32)> = backends.iter().map(|(b, w)| (b.addr, *w)).collect();
    let toml = server_toml(2)
        + &listener_toml("plain", "web", None, "", "")
        + &weighted_pool_toml("web", algorithm, extra, &list);
    start_levee(&toml)
}

/// Starts backends called b0, b1, ...
fn backends(n: usize) -> Vec<Backend> {
    (0..n).map(|i| Backend::start(&format!("b{i}"))).collect()
}

/// Sends `total` GETs of `path` over `clients` keep-alive connections at once; returns how
/// many each backend (by `x-backend`) answered. Every request must succeed.
async fn spread(
    addr: SocketAddr,
    clients: usize,
    total: usize,
    path: &str,
) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let path = path.to_string();
        let share = total / clients + usize::from(c < total % clients);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::plain(addr, Proto::H1).await;
            let mut counts: HashMap<String, usize> = HashMap::new();
            for _ in 0..share {
                let reply = conn.get(&path).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                *counts
                    .entry(reply.backend().unwrap().to_string())
                    .or_default() += 1;
            }
            counts
        }));
    }
    let mut counts = HashMap::new();
    for t in tasks {
        for (name, n) in t.await.unwrap() {
            *counts.entry(name).or_default() += n;
        }
    }
    assert_eq!(counts.values().sum::<usize>(), total);
    counts
}

fn count(counts: &HashMap<String, usize>, name: &str) -> usize {
    counts.get(name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_one_two_seven_lands_within_three_percent() {
    let b = backends(3);
    let levee = start("weighted", "", &[(&b[0], 1), (&b[1], 2), (&b[2], 7)]);
    let total = 10_000;
    let counts = spread(levee.addr("plain"), 4, total, "/").await;
    eprintln!("weighted 1:2:7: {counts:?}");
    for (name, share) in [("b0", 0.10), ("b1", 0.20), ("b2", 0.70)] {
        let got = count(&counts, name) as f64 / total as f64;
        assert!(
            (got - share).abs() <= 0.03,
            "{name}: {got:.3} of requests, want {share} +/- 0.03 ({counts:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    let b = backends(3);
    let levee = start("round_robin", "", &[(&b[0], 1), (&b[1], 1), (&b[2], 1)]);
    let counts = spread(levee.addr("plain"), 3, 3_000, "/").await;
    for name in ["b0", "b1", "b2"] {
        let got = count(&counts, name);
        assert!(got.abs_diff(1_000) <= 30, "{name} got {got} ({counts:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sends_new_requests_away_from_a_backend_holding_slow_ones() {
    let b = backends(2);
    let (slow, fast) = (&b[0], &b[1]);
    let levee = start("least_conn", "", &[(slow, 1), (fast, 1)]);
    let addr = levee.addr("plain");

    // 8 concurrent requests split between the two; `fast` answers its share in 300 ms,
    // `slow` holds its share for 5 s.
    slow.set_delay(Duration::from_secs(5));
    fast.set_delay(Duration::from_millis(300));
    let held: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { Conn::plain(addr, Proto::H1).await.get("/").await }))
        .collect();
    assert!(slow.wait_requests(2, Duration::from_secs(3)).await);
    assert!(
        fast.wait_requests(2, Duration::from_secs(3)).await,
        "least_conn spread the burst"
    );
    tokio::time::sleep(Duration::from_millis(600)).await; // fast's share has finished
    let holding = slow.requests();
    slow.set_delay(Duration::ZERO);
    fast.set_delay(Duration::ZERO);

    // While `slow` still holds them, new requests go to `fast`.
    let counts = spread(addr, 1, 200, "/").await;
    assert_eq!(
        count(&counts, "b0"),
        0,
        "new requests reached the backend holding {holding} slow ones: {counts:?}"
    );
    assert_eq!(slow.requests(), holding);
    for h in held {
        assert_eq!(h.await.unwrap().status, 200);
    }

    // Once it has drained, it gets its turn again.
    let counts = spread(addr, 1, 100, "/").await;
    assert!(count(&counts, "b0") >= 40, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_shifts_load_away_from_a_ten_times_slower_backend() {
    let b = backends(3);
    let levee = start("p2c", "", &[(&b[0], 1), (&b[1], 1), (&b[2], 1)]);
    b[0].set_delay(Duration::from_millis(20));
    b[1].set_delay(Duration::from_millis(2));
    b[2].set_delay(Duration::from_millis(2));
    let total = 600;
    let counts = spread(levee.addr("plain"), 4, total, "/").await;
    let slow = count(&counts, "b0") as f64 / total as f64;
    eprintln!("p2c: {counts:?}");
    // Round robin would send it a third.
    assert!(
        slow < 0.10,
        "the slow backend got {slow:.3} of requests ({counts:?})"
    );
}

/// Sends one GET per key (`x-user: user-K`) over `clients` connections at once; returns the
/// backend that answered each key.
async fn by_key(addr: SocketAddr, keys: &[usize], clients: usize) -> HashMap<usize, String> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mine: Vec<usize> = keys.iter().copied().skip(c).step_by(clients).collect();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::plain(addr, Proto::H1).await;
            let mut seen = Vec::with_capacity(mine.len());
            for k in mine {
                let req = conn
                    .request("GET", "/")
                    .header("x-user", format!("user-{k}"))
                    .body(empty())
                    .unwrap();
                let reply = conn.send(req).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                seen.push((k, reply.backend().unwrap().to_string()));
            }
            seen
        }));
    }
    let mut map = HashMap::new();
    for t in tasks {
        map.extend(t.await.unwrap());
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_keys_stick_and_removing_one_of_ten_remaps_at_most_fifteen_percent() {
    let b = backends(10);
    let all: Vec<(&Backend, u32)> = b.iter().map(|x| (x, 1)).collect();
    let extra = "hash_key = \"header:x-user\"";
    let ten = start("maglev", extra, &all);
    let keys: Vec<usize> = (0..10_000).collect();
    let before = by_key(ten.addr("plain"), &keys, 4).await;
    assert_eq!(before.len(), keys.len());
    let used: std::collections::HashSet<&String> = before.values().collect();
    assert_eq!(used.len(), 10, "every backend gets keys");

    // The same key reaches the same backend, on other connections and other workers.
    let again: Vec<usize> = keys.iter().copied().step_by(7).collect();
    let repeat = by_key(ten.addr("plain"), &again, 3).await;
    for k in &again {
        assert_eq!(
            repeat[k], before[k],
            "key {k} moved while the pool was unchanged"
        );
    }

    // The same keys through a pool without b3.
    let nine_list: Vec<(&Backend, u32)> = all
        .iter()
        .copied()
        .filter(|(x, _)| x.name != "b3")
        .collect();
    let nine = start("maglev", extra, &nine_list);
    let after = by_key(nine.addr("plain"), &keys, 4).await;
    let moved = keys.iter().filter(|k| before[k] != after[k]).count();
    let on_b3 = keys.iter().filter(|k| before[k] == "b3").count();
    eprintln!(
        "maglev: {moved} of {} keys moved ({on_b3} were on b3)",
        keys.len()
    );
    assert!(
        moved * 100 <= keys.len() * 15,
        "{moved} of {} keys moved ({on_b3} were on the removed backend)",
        keys.len()
    );
    assert!(after.values().all(|name| name != "b3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_same_client_ip_always_reaches_the_same_backend() {
    let b = backends(5);
    let all: Vec<(&Backend, u32)> = b.iter().map(|x| (x, 1)).collect();
    let levee = start("maglev", "hash_key = \"client_ip\"", &all);
    // Several connections (so several source ports, and both workers): one client IP.
    let counts = spread(levee.addr("plain"), 4, 400, "/").await;
    assert_eq!(counts.len(), 1, "127.0.0.1 was spread over {counts:?}");
}
