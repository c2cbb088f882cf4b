//! The command line of `levee bench surge`, as clap parses it; [`super::plan`] checks it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// `levee bench surge`: baseline clients from several countries plus a surge of new TLS
/// connections from one, every client address presented through PROXY v2.
#[derive(Debug, Clone, Parser)]
#[command(name = "surge")]
pub struct SurgeArgs {
    /// levee's TLS listener that takes PROXY v2 from 127.0.0.1 (a loopback address only).
    #[arg(long, value_name = "ADDR")]
    pub target: SocketAddr,
    /// TLS server name (SNI) the clients ask for.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub sni: String,
    /// PEM file of the CA (or the certificate itself) to trust; without it, any certificate
    /// is accepted (bench only: handshake signatures are still checked).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// How long to run (at most 600s).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Baseline countries (ISO codes, comma separated).
    #[arg(long, value_delimiter = ',', default_value = "DE,JP,US,FR")]
    pub baseline: Vec<String>,
    /// No baseline clients: only the surge (needs `--surge-rate` above 0). For running the
    /// surge generator and the baseline clients as two processes (see the module docs).
    #[arg(long, conflicts_with = "baseline")]
    pub no_baseline: bool,
    /// New connections per second from each baseline country (0: none).
    #[arg(long, default_value_t = 10.0)]
    pub baseline_rate: f64,
    /// Keep-alive clients per baseline country (one TLS connection each, reused).
    #[arg(long, default_value_t = 2)]
    pub keepalive_clients: usize,
    /// Requests per second of each keep-alive client.
    #[arg(long, default_value_t = 10.0)]
    pub keepalive_rate: f64,
    /// The country that surges.
    #[arg(long, default_value = "BR")]
    pub surge_country: String,
    /// New connections per second of the surge (0: no surge).
    #[arg(long, default_value_t = 0.0)]
    pub surge_rate: f64,
    /// How surge connections are made. `hello` (the default): PROXY header and a pre-built
    /// TLS 1.3 ClientHello, read until the server's first flight (the server has then done a
    /// full handshake's work), reset; the client does no cryptography, so it can offer many
    /// thousands per second. `full`: full handshake and `GET /`, like the baseline.
    #[arg(long, default_value = "hello", value_parser = ["hello", "full"])]
    pub surge_mode: String,
    /// When the surge starts: before it, baseline only (warm-up). Every country's figures
    /// are taken from this moment to the end (the surge window), with or without a surge.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub surge_after: Duration,
    /// Longest one attempt may take (connect, handshake, request, response).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Client connections open at once, at most; arrivals beyond it are counted as skipped.
    /// With a surge, the baseline keeps a share of its own (enough for its rates).
    #[arg(long, default_value_t = 4000)]
    pub max_in_flight: usize,
    /// Arrival process of new connections: `poisson` or `even` (evenly spaced).
    #[arg(long, default_value = "poisson", value_parser = ["poisson", "even"])]
    pub arrivals: String,
    /// Seed of the arrival times and address picks (fixed: runs are repeatable).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print only the JSON report.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Measure capacity instead: `--concurrency` closed-loop clients doing new connections
    /// back to back for `--duration`; prints connections/s (see `--capacity-mode`).
    #[arg(long)]
    pub capacity: bool,
    /// The capacity run's connections. `hello` (the default): ClientHello to server first
    /// flight, as `--surge-mode hello`; it measures the server's full-handshake capacity,
    /// the client doing no cryptography. `full`: full handshake and `GET /` (bounded by the
    /// client's own handshakes on a small machine).
    #[arg(long, default_value = "hello", value_parser = ["hello", "full"])]
    pub capacity_mode: String,
    /// Closed-loop clients of `--capacity`.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Client runtime threads (1: pin the tool to one core with taskset).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}
