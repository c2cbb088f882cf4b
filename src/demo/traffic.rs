//! The synthetic traffic of `levee demo`: visitors from several countries arriving at a
//! gentle, steady rate, then a surge from one country, so `levee top` has something to show.
//!
//! Each country sends visits as a Poisson process at its base rate. A visit is one new
//! connection (PROXY v2 header with one of the country's addresses, then TLS) carrying one to
//! four requests on keep-alive. Most visitors are returning ones and resume their TLS
//! session. [`SURGE_AFTER`] after the start, and every [`SURGE_EVERY`] after that,
//! [`SURGE_COUNTRY`] sends [`SURGE_FACTOR`] times its rate for [`SURGE_LENGTH`], from new
//! clients without sessions (the shape of a flood through VPN exits), then calms down.
//!
//! Bounded: at most [`MAX_VISITS_IN_FLIGHT`] visits at once (arrivals beyond are dropped),
//! each visit bounded by `visit::VISIT_TIMEOUT`, every connection to a loopback listener. It
//! runs on a thread of its own until the demo's shutdown token is cancelled.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::addresses::CountryAddrs;
use super::visit::{self, Visit};

/// Base arrival rate of visits (new connections) per second, by country.
pub const BASE_RATES: [(&str, f64); 7] = [
    ("US", 3.0),
    ("IN", 2.5),
    ("DE", 2.0),
    ("BR", 2.0),
    ("JP", 1.5),
    ("GB", 1.5),
    ("FR", 1.0),
];
/// The country that surges.
pub const SURGE_COUNTRY: &str = "BR";
/// Its rate during a surge, as a multiple of its base rate.
pub const SURGE_FACTOR: f64 = 10.0;
/// When the first surge starts.
pub const SURGE_AFTER: Duration = Duration::from_secs(60);
/// How long a surge lasts.
pub const SURGE_LENGTH: Duration = Duration::from_secs(60);
/// From the start of one surge to the start of the next. The baseline learns from surges
/// too: with the default 10-minute half-life, surges every 5 minutes would raise it until
/// only the first is flagged; every 10 minutes, each one is.
pub const SURGE_EVERY: Duration = Duration::from_secs(600);
/// Visits in flight at most.
pub const MAX_VISITS_IN_FLIGHT: usize = 256;
/// Share of calm visits that come back with a TLS session to resume.
const RETURNING_SHARE: f64 = 0.7;
/// Request paths of a visit; `/flaky/...` gets a 503 from the demo backends.
const PATHS: [&str; 8] = [
    "/",
    "/",
    "/api/items",
    "/api/items?page=2",
    "/static/app.js",
    "/static/style.css",
    "/api/cart",
    "/search?q=levee",
];
/// Share of requests that go to a failing path (so the 5xx column is not always 0).
const FLAKY_SHARE: f64 = 0.02;

/// Whether the surge country is surging `elapsed` after the traffic started.
pub fn surging(elapsed: Duration) -> bool {
    elapsed
        .checked_sub(SURGE_AFTER)
        .is_some_and(|t| t.as_millis() % SURGE_EVERY.as_millis() < SURGE_LENGTH.as_millis())
}

/// The visit rate of `code` at `elapsed` (0 for a country without a base rate).
pub fn rate(code: &str, elapsed: Duration) -> f64 {
    let base = BASE_RATES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(0.0, |(_, r)| *r);
    if code == SURGE_COUNTRY && surging(elapsed) {
        base * SURGE_FACTOR
    } else {
        base
    }
}

/// Everything the traffic needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The demo-only PROXY-protocol listener (loopback).
    pub target: SocketAddr,
    /// The visitors' addresses by country.
    pub countries: Vec<CountryAddrs>,
    /// The demo listener's certificate, the only one the visitors trust.
    pub pinned: CertificateDer<'static>,
    /// The crypto provider levee uses.
    pub provider: Arc<CryptoProvider>,
}

/// Starts the traffic on a thread of its own; it stops when `shutdown` is cancelled.
pub fn start(plan: Plan, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fresh = visit::client_config(&plan.provider, plan.pinned.clone(), false)?;
    std::thread::Builder::new()
        .name("levee-demo-traffic".into())
        .spawn(move || rt.block_on(drive(plan, fresh, shutdown)))?;
    Ok(())
}

/// What visits report, shared by the country loops.
#[derive(Debug, Default)]
struct Outcomes {
    ok: AtomicU64,
    failed: AtomicU64,
    warned: AtomicBool,
}

async fn drive(plan: Plan, fresh: Arc<ClientConfig>, shutdown: CancellationToken) {
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(MAX_VISITS_IN_FLIGHT));
    let outcomes = Arc::new(Outcomes::default());
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64);
    for (i, country) in plan.countries.iter().enumerate() {
        if country.addrs.is_empty() {
            continue;
        }
        // Per-country session caches: a returning visitor resumes with its own country's
        // sessions, and one country's surge does not consume another's tickets.
        let returning = visit::client_config(&plan.provider, plan.pinned.clone(), true)
            .unwrap_or_else(|_| Arc::clone(&fresh));
        let mut cl = CountryLoop {
            code: country.code,
            addrs: country.addrs.clone(),
            target: plan.target,
            returning,
            fresh: Arc::clone(&fresh),
            rng: Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            started,
        };
        let (slots, outcomes, shutdown) =
            (Arc::clone(&slots), Arc::clone(&outcomes), shutdown.clone());
        tokio::spawn(async move { cl.run(&slots, &outcomes, &shutdown).await });
    }
    let mut was = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = surging(started.elapsed());
        if now != was {
            if now {
                info!(
                    country = SURGE_COUNTRY,
                    factor = SURGE_FACTOR,
                    seconds = SURGE_LENGTH.as_secs(),
                    "demo: surge starts"
                );
            } else {
                info!(
                    country = SURGE_COUNTRY,
                    ok = outcomes.ok.load(Ordering::Relaxed),
                    failed = outcomes.failed.load(Ordering::Relaxed),
                    "demo: surge ends"
                );
            }
            was = now;
        }
    }
}

/// One country's arrivals.
struct CountryLoop {
    code: &'static str,
    addrs: Vec<std::net::Ipv4Addr>,
    target: SocketAddr,
    returning: Arc<ClientConfig>,
    fresh: Arc<ClientConfig>,
    rng: Rng,
    started: Instant,
}

impl CountryLoop {
    async fn run(
        &mut self,
        slots: &Arc<Semaphore>,
        outcomes: &Arc<Outcomes>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let elapsed = self.started.elapsed();
            let wait = self.rng.exponential(rate(self.code, elapsed));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            // A full house drops the arrival: the demo never queues without bound.
            let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
                continue;
            };
            let visit = self.next_visit(self.code == SURGE_COUNTRY && surging(elapsed));
            let (outcomes, shutdown) = (Arc::clone(outcomes), shutdown.clone());
            tokio::spawn(async move {
                let result = visit::run(visit).await;
                drop(permit);
                record(&outcomes, result, &shutdown);
            });
        }
    }

    /// A calm visit: mostly returning visitors, one to four requests. A surge visit: a new
    /// client without a session, one or two requests, no pause.
    fn next_visit(&mut self, surge: bool) -> Visit {
        let ip = self.addrs[self.rng.below(self.addrs.len())];
        let port = 1024 + u16::try_from(self.rng.below(64_000)).unwrap_or(0);
        let (tls, requests, think) = if surge {
            (
                Arc::clone(&self.fresh),
                1 + self.rng.below(2),
                Duration::ZERO,
            )
        } else {
            let returning = self.rng.unit() < RETURNING_SHARE;
            let tls = if returning {
                &self.returning
            } else {
                &self.fresh
            };
            let think = Duration::from_millis(100 + self.rng.below(400) as u64);
            (Arc::clone(tls), 1 + self.rng.below(4), think)
        };
        let paths = (0..requests)
            .map(|_| {
                if self.rng.unit() < FLAKY_SHARE {
                    "/flaky/checkout"
                } else {
                    PATHS[self.rng.below(PATHS.len())]
                }
            })
            .collect();
        Visit {
            target: self.target,
            client: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            tls,
            paths,
            think,
        }
    }
}

fn record(
    outcomes: &Outcomes,
    result: Result<(), visit::VisitError>,
    shutdown: &CancellationToken,
) {
    match result {
        Ok(()) => {
            outcomes.ok.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            outcomes.failed.fetch_add(1, Ordering::Relaxed);
            if shutdown.is_cancelled() {
                return;
            }
            if !outcomes.warned.swap(true, Ordering::Relaxed) {
                warn!(error = %e, "demo: a synthetic visit failed (further failures at debug)");
            } else {
                debug!(error = %e, "demo: synthetic visit failed");
            }
        }
    }
}

/// SplitMix64: small, seedable, good enough for arrival times and picks (the demo's and
/// `levee bench surge`'s).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// An exponential wait for a Poisson process of `rate` per second, at most 10 s (and
    /// 10 s for a rate of 0, so a silent country still wakes to see a surge start).
    pub fn exponential(&mut self, rate: f64) -> Duration {
        if rate.is_nan() || rate <= 0.0 {
            return Duration::from_secs(10);
        }
        let u = 1.0 - self.unit();
        Duration::from_secs_f64((-u.ln() / rate).min(10.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_comes_after_a_minute_lasts_a_minute_and_repeats() {
        let s = |secs| surging(Duration::from_secs(secs));
        assert!(!s(0) && !s(59));
        assert!(s(60) && s(119));
        assert!(!s(120) && !s(659));
        assert!(s(660) && s(719));
        assert!(!s(720));
        assert_eq!(rate("BR", Duration::from_secs(30)), 2.0);
        assert_eq!(rate("BR", Duration::from_secs(90)), 20.0);
        assert_eq!(rate("DE", Duration::from_secs(90)), 2.0);
        assert_eq!(rate("XX", Duration::from_secs(90)), 0.0);
    }

    #[test]
    fn calm_traffic_is_gentle() {
        let total: f64 = BASE_RATES.iter().map(|(_, r)| r).sum();
        assert!(total < 20.0, "{total} visits/s");
        assert!(BASE_RATES.iter().any(|(c, _)| *c == SURGE_COUNTRY));
    }

    #[test]
    fn exponential_waits_average_one_over_the_rate() {
        let mut rng = Rng(42);
        let n = 20_000;
        let mean = (0..n)
            .map(|_| rng.exponential(4.0).as_secs_f64())
            .sum::<f64>()
            / f64::from(n);
        assert!((mean - 0.25).abs() < 0.02, "{mean}");
        assert_eq!(rng.exponential(0.0), Duration::from_secs(10));
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
