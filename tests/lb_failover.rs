//! Failover under load: a backend killed while clients send continuous GETs costs no client a
//! failed request, is marked down within `fall x interval` and used again within
//! `rise x interval` after it comes back; a pool with every backend down answers 503 at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Upper bound on requests per client, so the load loop ends even if the test stalls.
const MAX_REQUESTS_PER_CLIENT: u64 = 20_000;
/// Upper bound on the load loop's duration.
const MAX_LOAD_TIME: Duration = Duration::from_secs(30);

/// Outcome counters shared by the load clients.
#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    failed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Outcomes {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first_failure.lock().unwrap();
        first.get_or_insert(why);
    }
}

/// How one load client talks to levee.
#[derive(Clone, Copy, Debug)]
enum Style {
    KeepAliveH1,
    KeepAliveH2,
    NewConnectionPerRequest,
}

/// Sends GET / until `stop` (or the bounds), counting 200s and everything else.
async fn load_client(addr: SocketAddr, style: Style, stop: Arc<AtomicBool>, out: Arc<Outcomes>) {
    let started = Instant::now();
    let proto = match style {
        Style::KeepAliveH2 => Proto::H2,
        _ => Proto::H1,
    };
    let mut conn = Conn::plain(addr, proto).await;
    for _ in 0..MAX_REQUESTS_PER_CLIENT {
        if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_LOAD_TIME {
            return;
        }
        if matches!(style, Style::NewConnectionPerRequest) {
            conn = Conn::plain(addr, proto).await;
        }
        let req = conn.request("GET", "/").body(empty()).unwrap();
        match conn.try_send(req).await {
            Ok(reply) if reply.status == 200 => {
                out.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(reply) => out.fail(format!("{style:?}: {} {}", reply.status, reply.text())),
            Err(e) => {
                out.fail(format!("{style:?}: {e}"));
                conn = Conn::plain(addr, proto).await;
            }
        }
    }
}

/// Requests for `/` (not health probes) that `backend` has received so far.
fn proxied(backend: &Backend) -> usize {
    backend.seen().iter().filter(|s| s.target == "/").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_backends_under_load_fails_no_request() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let b_addr = b.addr;
    let (interval, rise, fall) = (Duration::from_millis(200), 2u32, 2u32);
    let check = format!(
        "retries = 2\n[pools.web.health_check]\npath = \"/health\"\ninterval = \"200ms\"\n\
         timeout = \"100ms\"\nrise = {rise}\nfall = {fall}\n"
    );
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr, b_addr, c.addr], &check);
    let levee = start_levee(&toml);
    let addr = levee.addr("web");

    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Outcomes::default());
    let styles = [
        Style::KeepAliveH1,
        Style::KeepAliveH1,
        Style::KeepAliveH2,
        Style::NewConnectionPerRequest,
    ];
    let clients: Vec<_> = styles
        .into_iter()
        .map(|style| tokio::spawn(load_client(addr, style, stop.clone(), out.clone())))
        .collect();

    // Let traffic reach all three, then kill b in the middle of it.
    assert!(
        b.wait_requests(20, Duration::from_secs(5)).await,
        "b got no traffic"
    );
    b.stop();
    let killed = Instant::now();
    wait_state(&levee, "web", b_addr, "down", interval * fall + SLACK).await;
    let down_after = killed.elapsed();

    // Keep the load on a while with b down, then bring it back where it was.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = Backend::start_at("b", b_addr);
    let restarted = Instant::now();
    wait_state(&levee, "web", b_addr, "up", interval * rise + SLACK).await;
    let up_after = restarted.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxied(&b) < 10 {
        assert!(
            Instant::now() < deadline,
            "b marked up but got {} requests",
            proxied(&b)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let ok = out.ok.load(Ordering::SeqCst);
    let failed = out.failed.load(Ordering::SeqCst);
    eprintln!("{ok} ok, {failed} failed; down after {down_after:?}, up after {up_after:?}");
    assert_eq!(
        failed,
        0,
        "client requests failed; first: {:?}",
        out.first_failure.lock().unwrap()
    );
    assert!(ok > 100, "only {ok} requests completed");
    assert!(proxied(&a) > 0 && proxied(&c) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_down_answers_503_fast() {
    let dead = [closed_addr(), closed_addr()];
    let check = "[pools.web.health_check]\ntype = \"tcp\"\ninterval = \"100ms\"\n\
                 timeout = \"100ms\"\nfall = 1\n";
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &dead, check);
    let levee = start_levee(&toml);
    for addr in dead {
        wait_state(
            &levee,
            "web",
            addr,
            "down",
            Duration::from_millis(100) + SLACK,
        )
        .await;
    }
    let mut conn = Conn::plain(levee.addr("web"), Proto::H1).await;
    for _ in 0..5 {
        let started = Instant::now();
        let reply = conn.get("/").await;
        let took = started.elapsed();
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            reply.text().contains("no backend"),
            "unclear body: {}",
            reply.text()
        );
        assert!(took < Duration::from_millis(100), "503 took {took:?}");
    }
}
