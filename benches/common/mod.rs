//! Shared by the end-to-end benches (`reload_p99`, `admission_cost`): the knobs, an
//! in-process hyper backend, and a round of keep-alive HTTP/1.1 load against levee.
#![allow(
    dead_code,
    reason = "each bench target compiles this module and uses only part of it"
)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};

/// Most latency samples kept per round (bounds memory; requests past it are still counted).
pub const MAX_SAMPLES: usize = 2_000_000;
/// Most requests one connection sends in a round (bounds the loop besides its time).
const MAX_REQUESTS_PER_CONN: u64 = 50_000_000;

/// The numeric environment variable `name`, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (rounds, seconds a round): `ROUNDS` (default 6) and `ROUND_SECS` (default 5) under
/// `cargo bench` (which passes `--bench`); 2 rounds of 1 s under `cargo test`.
pub fn rounds_and_secs() -> (u64, u64) {
    if std::env::args().any(|a| a == "--bench") {
        (env_or("ROUNDS", 6), env_or("ROUND_SECS", 5))
    } else {
        (2, 1)
    }
}

/// A backend answering every request with 200 "ok", on its own thread.
pub fn start_backend() -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    });
    addr
}

/// Opens a keep-alive HTTP/1.1 connection to `addr` from source address `from`.
pub async fn connect(
    from: IpAddr,
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// `GET /` on `sender`; returns the status once the body is read.
pub async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> u16 {
    let req = hyper::Request::get("/")
        .header("host", "bench")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await.unwrap();
    status
}

/// What one round of load did.
#[derive(Debug, Default)]
pub struct Round {
    /// Requests answered 200.
    pub requests: u64,
    /// Latencies in µs (at most `MAX_SAMPLES`).
    pub latencies_us: Vec<u32>,
    /// Wall time from the first connect to the stop.
    pub elapsed: Duration,
}

impl Round {
    /// Requests a second.
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// One keep-alive connection sending GET / until `stop`; every answer must be 200.
async fn client(
    from: IpAddr,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    max_samples: usize,
) -> (u64, Vec<u32>) {
    let mut sender = connect(from, addr).await;
    let mut samples = Vec::with_capacity(max_samples.min(64 * 1024));
    let mut requests = 0;
    while !stop.load(Ordering::Relaxed) && requests < MAX_REQUESTS_PER_CONN {
        let started = Instant::now();
        let status = get(&mut sender).await;
        assert_eq!(status, 200);
        requests += 1;
        if samples.len() < max_samples {
            samples.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
    }
    (requests, samples)
}

/// Runs `connections` keep-alive clients from source address `from` against `addr` for
/// `secs` seconds.
pub fn round(
    rt: &tokio::runtime::Runtime,
    from: IpAddr,
    addr: SocketAddr,
    connections: usize,
    secs: u64,
) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let started = Instant::now();
        let per_conn = MAX_SAMPLES / connections.max(1);
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(client(from, addr, Arc::clone(&stop), per_conn)))
            .collect();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let mut out = Round {
            elapsed,
            ..Round::default()
        };
        for t in tasks {
            let (n, samples) = t.await.unwrap();
            out.requests += n;
            out.latencies_us.extend(samples);
        }
        out
    })
}

/// The `p` quantile of sorted µs samples, in ms.
pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}
