//! What the clients of one run share ([`Ctx`]): the target, the record, the run's window,
//! the connection slots and the client's own lag. A new connection is a full one
//! ([`client::attempt`]) or, for the streams and runs that ask for it, a hello-mode one
//! ([`hello::attempt`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::client::{self, Target};
use super::hello::{self, Hellos};
use super::plan::Plan;
use super::record::{Failure, Recorder};
use crate::demo::traffic::Rng;
use crate::net::proxy_protocol::encode_v2;

/// A start later than this behind its schedule counts as late (the client is the bottleneck).
pub const LATE: Duration = Duration::from_millis(10);
/// Time given, after the run, to the attempts still in flight beyond their own timeout.
const DRAIN_SLACK: Duration = Duration::from_secs(1);

/// What the clients of one run share.
#[derive(Debug)]
pub struct Ctx {
    /// Where to connect.
    pub target: Target,
    /// The record.
    pub rec: Recorder,
    /// Start of the run.
    pub start: Instant,
    /// Start of the run, seconds since the Unix epoch (to line the run up with the server's
    /// own clock, e.g. a spike's `since` in `/stats`).
    pub started_unix_s: f64,
    /// End of the run: no arrival after it.
    pub end: Instant,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Client addresses per country (index as in the plan).
    pub addrs: Vec<Vec<Ipv4Addr>>,
    /// Hello mode: the ClientHellos and the PROXY headers, when the plan has hello-mode
    /// connections.
    pub hello: Option<HelloKit>,
    /// Connection slots: the baseline's, then the surge's.
    pub(super) slots: [Arc<Semaphore>; 2],
    sizes: [usize; 2],
    late: AtomicU64,
    late_at_us: std::sync::Mutex<Vec<u64>>,
    max_lag_us: AtomicU64,
    last_start_us: AtomicU64,
}

/// How many late starts `Lag::late_starts_at_s` lists.
const LATE_LISTED: usize = 32;

/// What hello-mode connections send, built once before the run: a pool of ClientHellos and,
/// per country, one PROXY v2 header per client address (each with a fixed source port).
#[derive(Debug)]
pub struct HelloKit {
    /// The ClientHellos, sent in turn.
    pub hellos: Hellos,
    /// PROXY v2 headers per country (index as in the plan), one per address of
    /// [`Ctx::addrs`].
    pub headers: Vec<Vec<Box<[u8]>>>,
}

impl HelloKit {
    /// The pool of [`hello::POOL`] ClientHellos for `target` and the headers of every
    /// address of `addrs`.
    pub fn build(target: &Target, addrs: &[Vec<Ipv4Addr>]) -> anyhow::Result<Self> {
        let config = super::tls::hello_config()?;
        let hellos = Hellos::build(&config, &target.sni, hello::POOL)?;
        let headers = addrs
            .iter()
            .map(|ips| {
                ips.iter()
                    .enumerate()
                    .map(|(i, ip)| {
                        let port = 1024 + u16::try_from(i * 7919 % 64_000).unwrap_or(0);
                        let client = SocketAddr::V4(SocketAddrV4::new(*ip, port));
                        encode_v2(client, target.addr).into_boxed_slice()
                    })
                    .collect()
            })
            .collect();
        Ok(Self { hellos, headers })
    }
}

/// Who a new connection claims to be: a full connection's client address, or the index of
/// a hello-mode connection's pre-built PROXY header.
#[derive(Debug, Clone, Copy)]
pub(super) enum Visitor {
    Full(SocketAddr),
    Hello(usize),
}

/// How far behind schedule the client fell (open loop).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Lag {
    /// Arrivals started more than [`LATE`] after their time.
    pub late_starts: u64,
    /// Largest delay of a start, milliseconds.
    pub max_lag_ms: f64,
    /// When the first late starts (up to 32) were due, seconds from the start of the run: a
    /// latency outlier at the same moment was the client's, not the server's.
    pub late_starts_at_s: Vec<f64>,
    /// When the last new-connection arrival actually started, seconds from the start of the
    /// run (0 when none): past `duration_s` when the client fell behind. Arrivals count in
    /// the window by their scheduled time, so `attempts / window` is the target rate
    /// whatever the lag; arrivals sent / (this or the end, whichever is later, minus the
    /// window start) is the rate actually offered.
    pub last_start_s: f64,
}

impl Ctx {
    /// The shared state of a run starting now; `hello` when the plan has hello-mode
    /// connections.
    pub fn new(
        plan: &Plan,
        target: Target,
        addrs: Vec<Vec<Ipv4Addr>>,
        hello: Option<HelloKit>,
    ) -> Self {
        let start = Instant::now();
        let started_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            started_unix_s,
            target,
            rec: Recorder::new(plan.countries.len(), plan.window_from),
            start,
            end: start + plan.duration,
            timeout: plan.timeout,
            addrs,
            hello,
            slots: [
                Arc::new(Semaphore::new(plan.baseline_slots)),
                Arc::new(Semaphore::new(plan.max_in_flight - plan.baseline_slots)),
            ],
            sizes: [
                plan.baseline_slots,
                plan.max_in_flight - plan.baseline_slots,
            ],
            late: AtomicU64::new(0),
            late_at_us: std::sync::Mutex::default(),
            max_lag_us: AtomicU64::new(0),
            last_start_us: AtomicU64::new(0),
        }
    }

    /// A random address of `country` with a random source port.
    pub(super) fn client(&self, country: usize, rng: &mut Rng) -> SocketAddr {
        let addrs = self.addrs.get(country).map_or(&[][..], Vec::as_slice);
        let ip = addrs
            .get(rng.below(addrs.len()))
            .copied()
            .unwrap_or(Ipv4Addr::new(192, 0, 2, 1));
        let port = 1024 + u16::try_from(rng.below(64_000)).unwrap_or(0);
        SocketAddr::V4(SocketAddrV4::new(ip, port))
    }

    /// Who the next new connection of `country` claims to be: a random address (and, for a
    /// full connection, a random source port).
    pub(super) fn visitor(&self, country: usize, hello: bool, rng: &mut Rng) -> Visitor {
        if hello {
            let n = self.addrs.get(country).map_or(0, Vec::len);
            Visitor::Hello(rng.below(n))
        } else {
            Visitor::Full(self.client(country, rng))
        }
    }

    /// A new-connection attempt of `country` as `visitor`: its latency or why it failed.
    pub(super) async fn attempt(
        &self,
        country: usize,
        visitor: Visitor,
    ) -> Result<Duration, Failure> {
        match visitor {
            Visitor::Full(client) => {
                client::attempt(&self.target, client, &self.rec, country, self.timeout).await
            }
            Visitor::Hello(i) => {
                let kit = self.hello.as_ref().ok_or(Failure::Other)?;
                let header = kit
                    .headers
                    .get(country)
                    .and_then(|h| h.get(i))
                    .ok_or(Failure::Other)?;
                let hello = kit.hellos.next();
                hello::attempt(
                    self.target.addr,
                    header,
                    hello,
                    &self.rec,
                    country,
                    self.timeout,
                )
                .await
            }
        }
    }

    /// Notes an arrival due at `due` starting now: its lag, and the latest start.
    pub(super) fn note_start(&self, due: Instant) {
        let now = Instant::now();
        let lag = now.saturating_duration_since(due);
        let since = u64::try_from(now.saturating_duration_since(self.start).as_micros())
            .unwrap_or(u64::MAX);
        self.last_start_us.fetch_max(since, Ordering::Relaxed);
        if lag > LATE {
            self.late.fetch_add(1, Ordering::Relaxed);
            let due_us = u64::try_from(due.saturating_duration_since(self.start).as_micros())
                .unwrap_or(u64::MAX);
            let mut at = self
                .late_at_us
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if at.len() < LATE_LISTED {
                at.push(due_us);
            }
        }
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.max_lag_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The lag so far.
    pub fn lag(&self) -> Lag {
        Lag {
            late_starts: self.late.load(Ordering::Relaxed),
            max_lag_ms: self.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
            late_starts_at_s: self
                .late_at_us
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|&us| us as f64 / 1e6)
                .collect(),
            last_start_s: self.last_start_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    /// Waits (bounded) until every connection of the run is closed.
    pub(super) async fn drain(&self) {
        let all = async {
            for (slots, size) in self.slots.iter().zip(self.sizes) {
                let _ = slots
                    .acquire_many(u32::try_from(size).unwrap_or(u32::MAX))
                    .await;
            }
        };
        let _ = tokio::time::timeout(self.timeout + DRAIN_SLACK, all).await;
    }
}
