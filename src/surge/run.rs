//! Running a plan: the open-loop run (new-connection arrivals on their own schedule, however
//! slow the server, plus keep-alive clients) and the closed-loop capacity run. A new
//! connection is a full one ([`client::attempt`]) or, for the streams and runs that ask for
//! it, a hello-mode one ([`hello::attempt`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

use super::client::{self, Target};
use super::hello::{self, Hellos};
use super::keepalive;
use super::plan::{Arrivals, MAX_ATTEMPTS, Plan, Stream};
use super::record::{Failure, Kind, Recorder};
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
    slots: [Arc<Semaphore>; 2],
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
enum Visitor {
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
        Self {
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
    fn client(&self, country: usize, rng: &mut Rng) -> SocketAddr {
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
    fn visitor(&self, country: usize, hello: bool, rng: &mut Rng) -> Visitor {
        if hello {
            let n = self.addrs.get(country).map_or(0, Vec::len);
            Visitor::Hello(rng.below(n))
        } else {
            Visitor::Full(self.client(country, rng))
        }
    }

    /// A new-connection attempt of `country` as `visitor`: its latency or why it failed.
    async fn attempt(&self, country: usize, visitor: Visitor) -> Result<Duration, Failure> {
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
    fn note_start(&self, due: Instant) {
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
    async fn drain(&self) {
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

/// The open-loop run: keep-alive clients and new-connection streams until the end, then the
/// in-flight attempts finish (bounded by their timeout).
pub async fn open_loop(plan: &Plan, ctx: Arc<Ctx>) -> anyhow::Result<()> {
    let mut rng = Rng(plan.seed);
    let mut tasks = Vec::new();
    for (i, c) in plan.countries.iter().enumerate() {
        for _ in 0..c.keepalive_clients {
            let permit = Arc::clone(&ctx.slots[0])
                .try_acquire_owned()
                .context("no connection slot left for the keep-alive clients")?;
            let client = ctx.client(i, &mut rng);
            let phase = Duration::from_secs_f64(rng.unit() / plan.keepalive_rate);
            let (ctx, rate) = (Arc::clone(&ctx), plan.keepalive_rate);
            tasks.push(tokio::spawn(async move {
                keepalive::run(ctx, i, client, rate, phase).await;
                drop(permit);
            }));
        }
    }
    for (j, s) in plan.streams.iter().enumerate() {
        let seed = plan.seed ^ (j as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (ctx, s, poisson, until) = (Arc::clone(&ctx), *s, plan.poisson, plan.duration);
        tasks.push(tokio::spawn(stream(ctx, s, poisson, until, seed)));
    }
    for t in tasks {
        let _ = t.await;
    }
    ctx.drain().await;
    Ok(())
}

/// One stream's arrivals, each a new-connection attempt of its own (or skipped when
/// `--max-in-flight` connections are open).
async fn stream(ctx: Arc<Ctx>, s: Stream, poisson: bool, until: Duration, seed: u64) {
    let mut rng = Rng(seed.rotate_left(17));
    for at in Arrivals::new(&s, poisson, until, seed) {
        let due = ctx.start + at;
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        ctx.note_start(due);
        let Ok(permit) = Arc::clone(&ctx.slots[usize::from(s.surge)]).try_acquire_owned() else {
            ctx.rec
                .record(s.country, Kind::New, at, Err(Failure::Skipped));
            continue;
        };
        let visitor = ctx.visitor(s.country, s.hello, &mut rng);
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let r = ctx.attempt(s.country, visitor).await;
            drop(permit);
            ctx.rec.record(s.country, Kind::New, at, r);
        });
    }
}

/// The closed-loop capacity run: `concurrency` clients, each doing new-connection attempts
/// (hello-mode ones with `--capacity-mode hello`) back to back (countries in turn) until the
/// end; returns the wall time until the last one finished.
pub async fn closed_loop(plan: &Plan, ctx: Arc<Ctx>, concurrency: usize) -> Duration {
    let countries = plan.countries.len().max(1);
    let per_client = (MAX_ATTEMPTS as usize) / concurrency.max(1);
    let hello = plan.capacity_hello;
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let ctx = Arc::clone(&ctx);
        let mut rng = Rng(plan.seed ^ (w as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        tasks.push(tokio::spawn(async move {
            for n in 0..per_client {
                let now = Instant::now();
                if now >= ctx.end {
                    break;
                }
                let country = (w + n) % countries;
                let visitor = ctx.visitor(country, hello, &mut rng);
                let r = ctx.attempt(country, visitor).await;
                ctx.rec.record(country, Kind::New, now - ctx.start, r);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ctx.start.elapsed()
}
