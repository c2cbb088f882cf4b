//! Command line: `run`, `check`, `reload`, `demo`.
//!
//! `levee reload` asks a running levee to reload its config file through `POST /reload` on
//! its admin API (`reload::client`) and prints the outcome. Exit codes: 0 when the new config
//! is serving, 1 when the reload was refused (each error printed as `KEY: REASON`; the
//! running config keeps serving), 2 when the admin API cannot be reached or found.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use crate::app;
use crate::config::{self, LogFormat, Snapshot};

/// levee: a thread-per-core TLS-terminating load-balancing reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "levee", version, about)]
pub struct Cli {
    /// Config file: to run or check; for `reload`, where to read `[admin] listen`.
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    /// Log filter (e.g. `info`, `debug`, `levee=debug,levee::access=off`); RUST_LOG also works.
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
    /// Run on an embedded default: generated certificate and three built-in demo backends.
    Demo {
        /// Address of the demo TLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Address of the admin API.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
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
        Command::Demo { listen, admin } => demo(listen, admin, cli.log_level.as_deref()),
    }
}

fn require_config(path: Option<&Path>) -> anyhow::Result<&Path> {
    path.ok_or_else(|| anyhow!("--config FILE is required (or try `levee demo`)"))
}

fn check(path: &Path) -> anyhow::Result<i32> {
    match app::load(path) {
        Ok((s, _)) => {
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
    use crate::reload::client::{admin_addr_from_config, post_reload};
    let addr = match (admin, config) {
        (Some(a), _) => a,
        (None, Some(path)) => admin_addr_from_config(path)?,
        (None, None) => config::validate::DEFAULT_ADMIN_LISTEN.to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // No report: the error goes to `main`, which prints it and exits 2.
    let answer = rt.block_on(post_reload(&addr))?;
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

fn demo(listen: SocketAddr, admin: SocketAddr, log_level: Option<&str>) -> anyhow::Result<i32> {
    init_tracing(log_level, LogFormat::Text);
    let backends = crate::demo::spawn_backends(3)?;
    let toml = crate::demo::config_toml(listen, admin, &backends);
    let ctx = app::initial_context(Path::new("."))?;
    let snapshot: Snapshot = config::load_str(&toml, &ctx).map_err(|e| anyhow!("{e}"))?;
    let running = app::start(snapshot)?;
    let url = running
        .listener_addr("demo")
        .map_or_else(|| listen.to_string(), |a| a.to_string());
    println!("levee demo: TLS listener https://{url}/ -> 3 demo backends {backends:?}");
    println!("admin API:  http://{admin}/healthz  http://{admin}/stats");
    println!("try:        curl -k https://{url}/   (self-signed certificate)");
    println!("stop:       Ctrl-C");
    let token = running.shutdown_token();
    app::wait_then_stop(running, token)?;
    Ok(0)
}

/// Sets up tracing: `--log-level`, else RUST_LOG, else `info`; text or JSON lines.
pub fn init_tracing(level: Option<&str>, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
