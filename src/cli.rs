//! Command line: `run`, `check`, `reload`, `geo lookup`, `top`, `demo`, `bench surge`.
//!
//! `levee reload` asks a running levee to reload its config file through `POST /reload` on
//! its admin API (`admin::client`) and prints the outcome. Exit codes: 0 when the new config
//! is serving, 1 when the reload was refused (each error printed as `KEY: REASON`; the
//! running config keeps serving), 2 when the admin API cannot be reached or found.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use crate::app;
use crate::config::{self, LogFormat};

mod geo;
mod logging;

pub use logging::{FlatJson, init_tracing};

/// `levee --version`: the package version and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LEVEE_COMMIT"), ")");

/// levee: a thread-per-core TLS-terminating load-balancing reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "levee", version = VERSION, about)]
pub struct Cli {
    /// Config file: to run or check; for `reload`, where to read `[admin] listen`.
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    /// Log filter (e.g. `info`, `debug`, `levee=debug`); RUST_LOG also works. The access log has its own switch.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy with `--config FILE`.
    Run,
    /// Validate a config fully (files, keys, references) and exit 0, or 1 with the errors.
    Check,
    /// Ask a running levee to reload its config file (`POST /reload` on its admin API).
    ///
    /// Exit 0: reloaded; 1: refused (the errors are printed, the old config keeps serving);
    /// 2: the admin API cannot be reached.
    Reload {
        /// Admin API address, `host:port` (default: `[admin] listen` of `--config FILE`,
        /// else 127.0.0.1:9901).
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
        /// Print the JSON report as the admin API sent it.
        #[arg(long)]
        json: bool,
    },
    /// GeoIP: what levee tags a client address with.
    Geo {
        /// What to do.
        #[command(subcommand)]
        command: GeoCommand,
    },
    /// Live per-country (and per-ASN) traffic view over the admin API, like `htop`.
    ///
    /// Keys: `s` cycles the sort (rate, spike ratio, 5xx, name), `a` toggles the ASN view,
    /// arrows scroll, `q` / Esc / Ctrl-C quit.
    Top {
        /// Admin API address, `host:port` (default: `[admin] listen` of `--config FILE`,
        /// else 127.0.0.1:9901).
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
        /// Admin API bearer token (default: LEVEE_ADMIN_TOKEN, else `[admin] token` of
        /// `--config FILE`).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
    },
    /// Run on an embedded default: generated certificate, three built-in demo backends, and
    /// gentle synthetic traffic from several countries with a periodic surge (watch it with
    /// `levee top`).
    Demo {
        /// Address of the demo TLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Address of the admin API.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// Do not send synthetic traffic.
        #[arg(long)]
        no_traffic: bool,
    },
    /// Print a shell completion script (e.g. `levee completions bash > /etc/bash_completion.d/levee`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, in roff (e.g. `levee man > /usr/local/share/man/man1/levee.1`).
    Man,
    /// Load tools for benchmarks (loopback only).
    Bench {
        /// What to run.
        #[command(subcommand)]
        command: BenchCommand,
    },
}

/// `levee bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Surge replay: baseline clients from several countries and a surge of new TLS
    /// connections from one, client addresses sent through PROXY v2; prints per-country
    /// success rate and p50/p99 latency (table or JSON). `--capacity` measures full
    /// handshakes/s instead.
    Surge(Box<crate::surge::SurgeArgs>),
    /// Demo backends on fixed loopback addresses, until SIGINT/SIGTERM (for bench scripts).
    #[command(hide = true)]
    Backends {
        /// Address to serve on (repeat for more backends).
        #[arg(long, value_name = "ADDR", required = true)]
        listen: Vec<SocketAddr>,
        /// Stop after this long at most.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        max_time: std::time::Duration,
    },
}

/// `levee geo` subcommands.
#[derive(Debug, Subcommand)]
pub enum GeoCommand {
    /// Print what levee would tag IP with: country code and index, ASN and organisation, and
    /// which database answered. Uses `[geo]` of `--config FILE`, else the bundled databases.
    Lookup {
        /// The client address (IPv4 or IPv6).
        ip: std::net::IpAddr,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let path = require_config(cli.config.as_deref())?;
            let (snapshot, source) = app::load(path)?;
            init_tracing(cli.log_level.as_deref(), snapshot.server.log_format);
            app::run_config(snapshot, source)?;
            Ok(0)
        }
        Command::Check => check(require_config(cli.config.as_deref())?),
        Command::Reload { admin, json } => reload(admin, cli.config.as_deref(), json),
        Command::Geo {
            command: GeoCommand::Lookup { ip, json },
        } => geo::lookup(ip, cli.config.as_deref(), json),
        Command::Top { admin, token } => top(admin, token, cli.config.as_deref()),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "levee", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(0)
        }
        Command::Demo {
            listen,
            admin,
            no_traffic,
        } => {
            if let Some(path) = &cli.config {
                return Err(anyhow!(
                    "levee demo runs on its own embedded config and takes no --config ({}); \
                     to serve that file, run `levee run --config {}`",
                    path.display(),
                    path.display()
                ));
            }
            init_tracing(cli.log_level.as_deref(), LogFormat::Text);
            crate::demo::run(listen, admin, !no_traffic)
        }
        Command::Bench { command } => {
            init_tracing(cli.log_level.as_deref().or(Some("warn")), LogFormat::Text);
            match command {
                BenchCommand::Surge(args) => crate::surge::main(&args),
                BenchCommand::Backends { listen, max_time } => {
                    crate::surge::backends::serve(&listen, max_time)
                }
            }
        }
    }
}

fn require_config(path: Option<&Path>) -> anyhow::Result<&Path> {
    path.ok_or_else(|| anyhow!("--config FILE is required (or try `levee demo`)"))
}

fn check(path: &Path) -> anyhow::Result<i32> {
    match app::load(path) {
        Ok((s, _)) => {
            for w in config::warnings(&s) {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} listeners, {} pools, generation hash {:016x})",
                path.display(),
                s.listeners.len(),
                s.pools.len(),
                s.source_hash
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

fn reload(admin: Option<String>, config: Option<&Path>, json: bool) -> anyhow::Result<i32> {
    use crate::admin::client::{admin_addr_from_config, admin_token, post_reload_with};
    let addr = match (admin, config) {
        (Some(a), _) => a,
        (None, Some(path)) => admin_addr_from_config(path)?,
        (None, None) => config::validate::DEFAULT_ADMIN_LISTEN.to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // No report: the error goes to `main`, which prints it and exits 2.
    let answer = rt.block_on(post_reload_with(&addr, admin_token(config).as_deref()))?;
    let r = &answer.report;
    if json {
        println!("{}", answer.json);
    } else if r.ok {
        println!(
            "reloaded: generation {} (source {}) in {:.1} ms",
            r.generation, r.source_hash, r.took_ms
        );
    } else {
        eprintln!(
            "reload refused: generation {} (source {}) keeps serving",
            r.generation, r.source_hash
        );
        for e in &r.errors {
            if e.key.is_empty() {
                eprintln!("{}", e.reason);
            } else {
                eprintln!("{}: {}", e.key, e.reason);
            }
        }
    }
    Ok(if r.ok { 0 } else { 1 })
}

fn top(admin: Option<String>, token: Option<String>, config: Option<&Path>) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "levee top needs a terminal (stdout is not one); for the same data as JSON, \
             GET /stats on the admin API (Prometheus text: /metrics)"
        );
        return Ok(2);
    }
    let addr = match (admin, config) {
        (Some(a), _) => a,
        (None, Some(path)) => crate::admin::client::admin_addr_from_config(path)?,
        (None, None) => config::validate::DEFAULT_ADMIN_LISTEN.to_string(),
    };
    let token = crate::top::client::resolve_token(token, config);
    crate::top::run(addr, token).map_err(|e| anyhow!("levee top: {e}"))?;
    Ok(0)
}
