//! The checked plan of a run (every bound enforced here) and the open-loop arrival schedule.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use rustls_pki_types::ServerName;

use super::args::SurgeArgs;
use crate::demo::traffic::Rng;

/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Longest attempt timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Highest arrival rate of one stream (new connections or requests per second).
pub const MAX_RATE: f64 = 100_000.0;
/// Most arrivals one run may schedule, all streams together.
pub const MAX_ATTEMPTS: f64 = 20_000_000.0;
/// Most client connections open at once (`--max-in-flight`).
pub const MAX_IN_FLIGHT: usize = 50_000;
/// Most client runtime threads.
pub const MAX_THREADS: usize = 64;

/// What a country does in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Steady new connections and keep-alive clients.
    Baseline,
    /// The surge of new connections (and its baseline traffic, if also listed there).
    Surge,
}

/// One country of the run.
#[derive(Debug, Clone)]
pub struct CountryPlan {
    /// ISO code, upper case.
    pub code: String,
    /// Its role.
    pub role: Role,
    /// Keep-alive clients.
    pub keepalive_clients: usize,
    /// Its new connections are hello-mode ones ([`super::hello`]): the surge country with
    /// `--surge-mode hello`, every country with `--capacity --capacity-mode hello`.
    pub hello: bool,
}

/// A stream of new-connection arrivals from one country.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    /// Index into [`Plan::countries`].
    pub country: usize,
    /// Arrivals per second.
    pub rate: f64,
    /// Offset from the start of the run of the first possible arrival.
    pub from: Duration,
    /// The surge stream (its connections come out of the surge's share of slots).
    pub surge: bool,
    /// Hello-mode connections ([`super::hello`]) rather than full ones.
    pub hello: bool,
}

/// A checked run: every option within its bound.
#[derive(Debug, Clone)]
pub struct Plan {
    /// levee's PROXY-v2 TLS listener (loopback).
    pub target: SocketAddr,
    /// Server name the clients send.
    pub sni: ServerName<'static>,
    /// CA file to trust, else any certificate (bench only).
    pub ca: Option<PathBuf>,
    /// Length of the run.
    pub duration: Duration,
    /// Start of the reported window (the surge start); it ends with the run.
    pub window_from: Duration,
    /// Countries: baselines first (none with `--no-baseline`), then the surge country if not
    /// among them.
    pub countries: Vec<CountryPlan>,
    /// New-connection streams.
    pub streams: Vec<Stream>,
    /// Requests per second of each keep-alive client.
    pub keepalive_rate: f64,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Client connections open at once, at most.
    pub max_in_flight: usize,
    /// Of those, the baseline's share (keep-alive clients and baseline new connections); the
    /// rest is the surge's, so the surge cannot take the client-side slots of the baseline.
    /// 0 with `--no-baseline`: every slot is the surge's.
    pub baseline_slots: usize,
    /// Poisson arrivals (else evenly spaced).
    pub poisson: bool,
    /// Seed of the arrival times and address picks.
    pub seed: u64,
    /// `Some(concurrency)`: capacity mode.
    pub capacity: Option<usize>,
    /// Capacity mode with hello-mode connections.
    pub capacity_hello: bool,
    /// Some connections of the run are hello-mode ones (the ClientHello pool is needed).
    pub hello: bool,
    /// Client runtime threads.
    pub threads: usize,
    /// Echo of the options, for the report.
    pub args: SurgeArgs,
}

impl Plan {
    /// Checks `args`; the error says which option is wrong and why.
    pub fn new(args: &SurgeArgs) -> anyhow::Result<Self> {
        if !args.target.ip().is_loopback() {
            bail!(
                "--target {}: not a loopback address; levee bench surge only sends traffic to \
                 this machine (127.0.0.0/8 or ::1)",
                args.target
            );
        }
        let sni = ServerName::try_from(args.sni.clone())
            .map_err(|e| anyhow!("--sni {}: {e}", args.sni))?;
        check_duration("--duration", args.duration, MAX_DURATION)?;
        check_duration("--timeout", args.timeout, MAX_TIMEOUT)?;
        for (name, rate) in [
            ("--baseline-rate", args.baseline_rate),
            ("--keepalive-rate", args.keepalive_rate),
            ("--surge-rate", args.surge_rate),
        ] {
            if !(0.0..=MAX_RATE).contains(&rate) {
                bail!("{name} {rate}: must be between 0 and {MAX_RATE}");
            }
        }
        if !(1..=MAX_IN_FLIGHT).contains(&args.max_in_flight) {
            bail!(
                "--max-in-flight {}: must be 1..={MAX_IN_FLIGHT}",
                args.max_in_flight
            );
        }
        if !(1..=MAX_THREADS).contains(&args.threads) {
            bail!("--threads {}: must be 1..={MAX_THREADS}", args.threads);
        }
        if !args.capacity && args.surge_after >= args.duration {
            bail!("--surge-after must be shorter than --duration (the window is between them)");
        }
        if args.no_baseline && args.capacity {
            bail!("--no-baseline: the capacity run needs countries; drop one of the two");
        }
        if args.no_baseline && args.surge_rate <= 0.0 {
            bail!("--no-baseline needs --surge-rate above 0 (else there is nothing to run)");
        }
        let capacity = if args.capacity {
            if !(1..=args.max_in_flight).contains(&args.concurrency) {
                bail!(
                    "--concurrency {}: must be 1..=--max-in-flight",
                    args.concurrency
                );
            }
            Some(args.concurrency)
        } else {
            None
        };
        let (mut countries, streams) = countries(args)?;
        let capacity_hello = capacity.is_some() && args.capacity_mode == "hello";
        if capacity_hello {
            for c in &mut countries {
                c.hello = true;
            }
        }
        let hello = capacity_hello || streams.iter().any(|s| s.hello);
        let keepalive: usize = countries.iter().map(|c| c.keepalive_clients).sum();
        if capacity.is_none() && keepalive >= args.max_in_flight {
            bail!(
                "--max-in-flight {} leaves no room beside {keepalive} keep-alive clients",
                args.max_in_flight
            );
        }
        let surging = streams.iter().any(|s| s.surge);
        if surging && keepalive + 2 > args.max_in_flight {
            bail!(
                "--max-in-flight {} leaves no room for the surge",
                args.max_in_flight
            );
        }
        let baseline_slots = if args.no_baseline {
            0
        } else if surging {
            let rate: f64 = streams.iter().filter(|s| !s.surge).map(|s| s.rate).sum();
            let need = keepalive + (rate * args.timeout.as_secs_f64()).ceil() as usize + 16;
            need.min(args.max_in_flight / 2)
                .max(keepalive + 1)
                .min(args.max_in_flight - 1)
        } else {
            args.max_in_flight
        };
        let secs = args.duration.as_secs_f64();
        let scheduled = streams.iter().map(|s| s.rate * secs).sum::<f64>()
            + keepalive as f64 * args.keepalive_rate * secs;
        if scheduled > MAX_ATTEMPTS {
            bail!("{scheduled:.0} arrivals planned: more than {MAX_ATTEMPTS} in one run");
        }
        Ok(Self {
            target: args.target,
            sni,
            ca: args.ca.clone(),
            duration: args.duration,
            window_from: if args.capacity {
                Duration::ZERO
            } else {
                args.surge_after
            },
            countries,
            streams,
            keepalive_rate: args.keepalive_rate,
            timeout: args.timeout,
            max_in_flight: args.max_in_flight,
            baseline_slots,
            poisson: args.arrivals == "poisson",
            seed: args.seed,
            capacity,
            capacity_hello,
            hello,
            threads: args.threads,
            args: args.clone(),
        })
    }
}

fn check_duration(name: &str, d: Duration, max: Duration) -> anyhow::Result<()> {
    if d.is_zero() || d > max {
        bail!(
            "{name} {}: must be above 0 and at most {}",
            humantime::format_duration(d),
            humantime::format_duration(max)
        );
    }
    Ok(())
}

/// An ISO country code, upper-cased, or an error naming the option.
fn code(option: &str, raw: &str) -> anyhow::Result<String> {
    let c = raw.trim().to_ascii_uppercase();
    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        bail!("{option} {raw:?}: not a two-letter country code");
    }
    Ok(c)
}

/// The countries and their new-connection streams.
fn countries(args: &SurgeArgs) -> anyhow::Result<(Vec<CountryPlan>, Vec<Stream>)> {
    let surge = code("--surge-country", &args.surge_country)?;
    let mut countries: Vec<CountryPlan> = Vec::new();
    let mut streams = Vec::new();
    let baseline: &[String] = if args.no_baseline {
        &[]
    } else {
        &args.baseline
    };
    for raw in baseline {
        let c = code("--baseline", raw)?;
        if countries.iter().any(|p| p.code == c) {
            bail!("--baseline: {c} listed twice");
        }
        if args.baseline_rate > 0.0 {
            streams.push(Stream {
                country: countries.len(),
                rate: args.baseline_rate,
                from: Duration::ZERO,
                surge: false,
                hello: false,
            });
        }
        let role = if c == surge && args.surge_rate > 0.0 {
            Role::Surge
        } else {
            Role::Baseline
        };
        countries.push(CountryPlan {
            code: c,
            role,
            keepalive_clients: if args.keepalive_rate > 0.0 {
                args.keepalive_clients
            } else {
                0
            },
            hello: false,
        });
    }
    if countries.is_empty() && !args.no_baseline {
        bail!("--baseline: at least one country (or --no-baseline for a surge only)");
    }
    if args.surge_rate > 0.0 && !args.capacity {
        let hello = args.surge_mode == "hello";
        let i = match countries.iter().position(|p| p.code == surge) {
            Some(_) if hello => bail!(
                "--surge-mode hello: the surge country {surge} is also a baseline country, \
                 whose full connections would share its report row with the hello ones; pick \
                 another surge country or --surge-mode full"
            ),
            Some(i) => i,
            None => {
                countries.push(CountryPlan {
                    code: surge,
                    role: Role::Surge,
                    keepalive_clients: 0,
                    hello,
                });
                countries.len() - 1
            }
        };
        streams.push(Stream {
            country: i,
            rate: args.surge_rate,
            from: args.surge_after,
            surge: true,
            hello,
        });
    }
    Ok((countries, streams))
}

/// The arrival offsets (from the start of the run) of one stream, up to `until`: Poisson
/// (exponential gaps) or evenly spaced with a random phase. Finite: a positive rate and an
/// end.
#[derive(Debug, Clone)]
pub struct Arrivals {
    rate: f64,
    poisson: bool,
    next: Duration,
    until: Duration,
    rng: Rng,
}

impl Arrivals {
    /// The arrivals of `stream` until `until`, drawn from `seed`.
    pub fn new(stream: &Stream, poisson: bool, until: Duration, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let first = if stream.rate > 0.0 {
            Duration::from_secs_f64(rng.unit() / stream.rate)
        } else {
            until
        };
        Self {
            rate: stream.rate,
            poisson,
            next: stream.from + first,
            until,
            rng,
        }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.rate <= 0.0 || self.next >= self.until {
            return None;
        }
        let at = self.next;
        let gap = if self.poisson {
            self.rng.exponential(self.rate)
        } else {
            Duration::from_secs_f64(1.0 / self.rate)
        };
        self.next = at + gap;
        Some(at)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> anyhow::Result<Plan> {
        let mut v = vec!["surge"];
        if !extra.contains(&"--target") {
            v.extend_from_slice(&["--target", "127.0.0.1:8443"]);
        }
        v.extend_from_slice(extra);
        Plan::new(&SurgeArgs::try_parse_from(v)?)
    }

    #[test]
    fn defaults_are_four_baselines_and_no_surge() {
        let p = args(&[]).unwrap();
        let codes: Vec<_> = p.countries.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["DE", "JP", "US", "FR"]);
        assert_eq!(p.streams.len(), 4);
        assert_eq!(p.window_from, Duration::from_secs(5));
        assert_eq!(p.duration, Duration::from_secs(20));
    }

    #[test]
    fn surge_country_is_added_with_a_late_stream() {
        let p = args(&["--surge-rate", "300", "--surge-country", "br"]).unwrap();
        let br = p.countries.last().unwrap();
        assert_eq!((br.code.as_str(), br.role), ("BR", Role::Surge));
        let s = p.streams.last().unwrap();
        assert_eq!(
            (s.rate, s.from, s.surge, s.hello),
            (300.0, Duration::from_secs(5), true, true)
        );
        assert!(br.hello && p.hello && !p.countries[0].hello);
        assert!(p.streams.iter().filter(|s| !s.surge).all(|s| !s.hello));
        // 8 keep-alive clients, 40 baseline connections/s for a 5 s timeout, 16 spare.
        assert_eq!(p.baseline_slots, 8 + 200 + 16);
        assert_eq!(args(&[]).unwrap().baseline_slots, 4000);
        assert!(!args(&[]).unwrap().hello);
    }

    #[test]
    fn modes() {
        let full = args(&["--surge-rate", "300", "--surge-mode", "full"]).unwrap();
        assert!(!full.hello && !full.countries[4].hello && !full.streams[4].hello);
        // A hello surge from a baseline country would mix kinds in its row.
        let e = args(&["--surge-rate", "300", "--surge-country", "DE"]).unwrap_err();
        assert!(e.to_string().contains("--surge-mode"), "{e}");
        assert!(
            args(&[
                "--surge-rate",
                "3",
                "--surge-country",
                "DE",
                "--surge-mode",
                "full"
            ])
            .is_ok()
        );
        let cap = args(&["--capacity"]).unwrap();
        assert!(cap.capacity_hello && cap.hello && cap.countries.iter().all(|c| c.hello));
        let cap = args(&["--capacity", "--capacity-mode", "full"]).unwrap();
        assert!(!cap.capacity_hello && !cap.hello && cap.countries.iter().all(|c| !c.hello));
    }

    #[test]
    fn bounds_are_enforced() {
        let e = |a: &[&str]| args(a).unwrap_err().to_string();
        assert!(e(&["--target", "10.0.0.1:443"]).contains("loopback"));
        assert!(e(&["--duration", "601s"]).contains("--duration"));
        assert!(e(&["--surge-after", "30s"]).contains("--surge-after"));
        assert!(e(&["--surge-rate", "1e9"]).contains("--surge-rate"));
        assert!(e(&["--baseline", "DEU"]).contains("two-letter"));
        assert!(e(&["--max-in-flight", "4"]).contains("keep-alive"));
        assert!(args(&["--target", "[::1]:443"]).is_ok());
    }

    #[test]
    fn one_side_only() {
        // The surge generator alone: only the surge country, every slot its own.
        let p = args(&["--no-baseline", "--surge-rate", "300"]).unwrap();
        assert_eq!(p.countries.len(), 1);
        let br = &p.countries[0];
        assert_eq!(
            (br.code.as_str(), br.role, br.hello),
            ("BR", Role::Surge, true)
        );
        assert_eq!(br.keepalive_clients, 0);
        assert_eq!(p.streams.len(), 1);
        assert!(p.streams[0].surge && p.streams[0].from == Duration::from_secs(5));
        assert_eq!(p.baseline_slots, 0);
        // The surge country may be any country, baseline defaults notwithstanding.
        assert!(
            args(&[
                "--no-baseline",
                "--surge-rate",
                "3",
                "--surge-country",
                "DE"
            ])
            .is_ok()
        );
        let e = |a: &[&str]| args(a).unwrap_err().to_string();
        assert!(e(&["--no-baseline"]).contains("--surge-rate"));
        assert!(e(&["--no-baseline", "--surge-rate", "3", "--capacity"]).contains("capacity"));
        assert!(e(&["--no-baseline", "--baseline", "DE"]).contains("--baseline"));
        // The baseline clients alone: no surge stream, no surge row, same window.
        let p = args(&["--surge-rate", "0"]).unwrap();
        assert!(p.streams.iter().all(|s| !s.surge));
        assert!(
            p.countries
                .iter()
                .all(|c| c.role == Role::Baseline && !c.hello)
        );
        assert_eq!(p.window_from, Duration::from_secs(5));
        assert_eq!(p.baseline_slots, p.max_in_flight);
    }

    #[test]
    fn arrivals_are_bounded_and_near_the_rate() {
        let s = Stream {
            country: 0,
            rate: 200.0,
            from: Duration::from_secs(1),
            surge: false,
            hello: false,
        };
        for poisson in [true, false] {
            let v: Vec<_> = Arrivals::new(&s, poisson, Duration::from_secs(11), 7).collect();
            assert!((1800..2200).contains(&v.len()), "{}", v.len());
            assert!(
                v.iter()
                    .all(|t| *t >= s.from && *t < Duration::from_secs(11))
            );
            assert!(v.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
