//! An open-loop handshake flood for admission tests: new connections from one loopback
//! address at a fixed rate whatever the server does (up to `FLOOD_HELD` open at once), each
//! a ClientHello that waits up to `FLOOD_WAIT` for the server's first flight, then a reset.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use levee::surge::hello::{Flight, Hellos, flight};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

/// How long one flood connection waits for the server's first flight.
pub const FLOOD_WAIT: Duration = Duration::from_secs(2);
/// Flood connections open at once, at most (arrivals beyond it are skipped).
pub const FLOOD_HELD: usize = 1000;
/// New flood connections per millisecond (5,000 a second).
pub const FLOOD_PER_MS: u32 = 5;

/// What the flood's connections saw.
#[derive(Default)]
pub struct FloodCounts {
    pub attempts: AtomicU64,
    /// Arrivals not sent: `FLOOD_HELD` were open.
    pub skipped: AtomicU64,
    /// The server's first flight arrived (levee did a full handshake's work).
    pub flights: AtomicU64,
    /// Closed or reset by the server before any byte.
    pub refused_without_bytes: AtomicU64,
    /// Bytes that were not a TLS first flight.
    pub not_tls: AtomicU64,
    /// Nothing within `FLOOD_WAIT` (the client gave up and reset).
    pub gave_up: AtomicU64,
}

/// One flood connection from `from`: the ClientHello, then read until the first flight, a
/// close, or `FLOOD_WAIT`; then a reset.
async fn hello_once(hellos: &Hellos, from: IpAddr, to: SocketAddr, counts: &FloodCounts) {
    counts.attempts.fetch_add(1, Ordering::Relaxed);
    let Ok(socket) = TcpSocket::new_v4() else {
        return;
    };
    if socket.bind(SocketAddr::new(from, 0)).is_err() {
        return;
    }
    let Ok(mut tcp) = socket.connect(to).await else {
        counts.refused_without_bytes.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if tcp.write_all(hellos.next()).await.is_err() {
        counts.refused_without_bytes.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut buf = Vec::with_capacity(8192);
    let read = tokio::time::timeout(FLOOD_WAIT, async {
        loop {
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if flight(&buf) != Flight::More {
                return;
            }
        }
    })
    .await;
    let counter = match (read, buf.is_empty(), flight(&buf)) {
        (Err(_), true, _) => &counts.gave_up,
        (_, true, _) => &counts.refused_without_bytes,
        (_, false, Flight::Done) => &counts.flights,
        _ => &counts.not_tls,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
}

/// Starts a flood from `from` to `to` lasting `lasting`; the handle ends when every
/// connection has.
pub fn open_loop(
    to: SocketAddr,
    from: IpAddr,
    hellos: Arc<Hellos>,
    counts: Arc<FloodCounts>,
    lasting: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let held = Arc::new(tokio::sync::Semaphore::new(FLOOD_HELD));
        let stop_at = Instant::now() + lasting;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        while Instant::now() < stop_at {
            tick.tick().await;
            for _ in 0..FLOOD_PER_MS {
                let Ok(slot) = Arc::clone(&held).try_acquire_owned() else {
                    counts.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (hellos, counts) = (Arc::clone(&hellos), Arc::clone(&counts));
                tasks.spawn(async move {
                    hello_once(&hellos, from, to, &counts).await;
                    drop(slot);
                });
            }
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    })
}

/// The counts as one line, for assertion messages.
pub fn describe(counts: &FloodCounts) -> String {
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    format!(
        "flood: {} attempts ({} skipped), {} flights, {} refused without a byte, {} gave up, \
         {} not TLS",
        c(&counts.attempts),
        c(&counts.skipped),
        c(&counts.flights),
        c(&counts.refused_without_bytes),
        c(&counts.gave_up),
        c(&counts.not_tls)
    )
}
