//! `levee demo`: levee with nothing else installed. Three built-in backends on ephemeral
//! loopback ports behind a TLS listener with a generated certificate, and (unless
//! `--no-traffic`) gentle synthetic traffic from several countries with a periodic surge from
//! one, so `levee top` in a second terminal has something to show.
//!
//! - [`backends`]: the demo backends.
//! - [`addresses`]: visitor addresses per country, found in the bundled GeoIP database.
//! - [`proxy_v2`]: the PROXY v2 header the visitors send.
//! - [`visit`]: one visit (PROXY header, TLS pinned to the demo certificate, requests).
//! - [`traffic`]: the arrival schedule and the surge.
//!
//! The visitors connect to a second, demo-only listener on loopback that takes a PROXY v2
//! header from 127.0.0.1 only: that is how the traffic comes from "Brazil" while every packet
//! stays on this machine. A levee whose listeners do not take the `proxy_protocol` keys yet
//! refuses that config; the demo then runs without traffic and says why.

pub mod addresses;
pub mod backends;
pub mod proxy_v2;
pub mod traffic;
pub mod visit;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::app;
use crate::config::{self, BuildContext, Snapshot};
use crate::reload::ReloadSource;

pub use backends::spawn_backends;

/// Name of the listener a newcomer curls.
pub const DEMO_LISTENER: &str = "demo";
/// Name of the demo-only loopback listener the synthetic visitors connect to.
pub const TRAFFIC_LISTENER: &str = "demo-traffic";

/// The demo config: one TLS listener with a generated certificate, round robin over
/// `backends`, the access log on and the config file watched (edit the file the demo wrote,
/// and it reloads). With `traffic`, a second TLS listener on 127.0.0.1 (ephemeral port) that
/// takes a PROXY v2 header from 127.0.0.1 only, kept out of the access log (the synthetic
/// requests would flood the terminal; `levee top` shows them), and a spike minimum rate the
/// demo's surge reaches.
pub fn config_toml(
    listen: SocketAddr,
    admin: SocketAddr,
    backends: &[SocketAddr],
    traffic: bool,
) -> String {
    let mut toml = String::from(
        "[server]
access_log = true
watch_config = true

",
    );
    if traffic {
        // The demo's rates are gentle (a surge of ~20 new connections a second), below the
        // production default of `spike_min_rate`.
        toml.push_str("[stats]\nspike_min_rate = 5.0\n\n");
    }
    toml.push_str(&format!(
        "[admin]\nlisten = \"{admin}\"\n\n\
         [[listeners]]\nname = \"{DEMO_LISTENER}\"\nlisten = \"{listen}\"\n\
         default_pool = \"demo\"\n[listeners.tls]\n\n"
    ));
    if traffic {
        toml.push_str(&format!(
            "[[listeners]]\nname = \"{TRAFFIC_LISTENER}\"\nlisten = \"127.0.0.1:0\"\n\
             default_pool = \"demo\"\nproxy_protocol = \"v2\"\n\
             trusted_proxies = [\"127.0.0.1/32\"]\naccess_log = false\n[listeners.tls]\n\n"
        ));
    }
    toml.push_str("[pools.demo]\nalgorithm = \"round_robin\"\n");
    for b in backends {
        toml.push_str(&format!("\n[[pools.demo.backends]]\naddress = \"{b}\"\n"));
    }
    toml
}

/// Runs the demo until Ctrl-C; `traffic` turns the synthetic visitors on. Returns the exit
/// code.
pub fn run(listen: SocketAddr, admin: SocketAddr, traffic: bool) -> anyhow::Result<i32> {
    let backends = spawn_backends(3)?;
    let ctx = app::initial_context(Path::new("."))?;
    let dir = ConfigDir::create()?;
    let path = dir.config_path();
    let (snapshot, traffic) = load(listen, admin, &backends, &ctx, traffic, &path)?;
    let source = ReloadSource {
        path: path.clone(),
        ctx: ctx.clone(),
    };
    let running = app::start_with(snapshot, Some(source))?;
    let url = running
        .listener_addr(DEMO_LISTENER)
        .map_or_else(|| listen.to_string(), |a| a.to_string());
    println!("levee demo: TLS listener https://{url}/ -> 3 demo backends {backends:?}");
    println!("admin API:  http://{admin}/healthz  http://{admin}/stats  http://{admin}/metrics");
    println!("try:        curl -k https://{url}/   (self-signed certificate)");
    let target = running.listener_addr(TRAFFIC_LISTENER);
    let started = match target {
        Some(target) if traffic => start_traffic(target, &ctx, &running),
        _ => Ok(()),
    };
    if let Err(e) = &started {
        // The proxy itself is up: keep it serving, without the visitors.
        eprintln!("levee demo: synthetic traffic off: {e:#}");
    }
    if let (Some(target), true, Ok(())) = (target, traffic, &started) {
        println!(
            "traffic:    synthetic visitors from {} via PROXY v2 on {target}; a surge from {} \
             starts in {} s",
            countries(),
            traffic::SURGE_COUNTRY,
            traffic::SURGE_AFTER.as_secs()
        );
    }
    let admin_arg = if admin.to_string() == config::validate::DEFAULT_ADMIN_LISTEN {
        String::new()
    } else {
        format!(" --admin {admin}")
    };
    println!(
        "config:     {} (edit it: it reloads on save; or `levee reload{admin_arg}`)",
        path.display()
    );
    println!("watch it:   run `levee top{admin_arg}` in a second terminal");
    println!("stop:       Ctrl-C");
    let token = running.shutdown_token();
    app::wait_then_stop(running, token)?;
    Ok(0)
}

/// The demo snapshot, loaded from its config written to `path`: with the traffic listener
/// when asked and this build accepts it, else without (and no traffic); the flag says which.
fn load(
    listen: SocketAddr,
    admin: SocketAddr,
    backends: &[SocketAddr],
    ctx: &BuildContext,
    traffic: bool,
    path: &Path,
) -> anyhow::Result<(Snapshot, bool)> {
    let write = |traffic| {
        let toml = config_toml(listen, admin, backends, traffic);
        std::fs::write(path, toml).with_context(|| format!("writing {}", path.display()))
    };
    if traffic {
        write(true)?;
        match config::load_file(path, ctx) {
            Ok(snapshot) => return Ok((snapshot, true)),
            Err(e) => {
                let why = e.to_string().replace('\n', "; ");
                eprintln!(
                    "levee demo: synthetic traffic off: this build refuses the demo's \
                     PROXY-protocol listener ({why})"
                );
            }
        }
    }
    write(false)?;
    let snapshot = config::load_file(path, ctx).map_err(|e| anyhow!("{e}"))?;
    Ok((snapshot, false))
}

/// The demo's own directory under the system temp dir, holding the config it runs on (so
/// `levee reload` and the file watch have a file to read); removed when the demo stops.
struct ConfigDir(PathBuf);

impl ConfigDir {
    /// `levee-demo-PID` in the temp dir, created (or reused, when a dead demo of the same
    /// PID left it).
    fn create() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("levee-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// Where the demo's config is written.
    fn config_path(&self) -> PathBuf {
        self.0.join("levee.toml")
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Picks the visitors' addresses and starts the traffic thread.
fn start_traffic(
    target: SocketAddr,
    ctx: &BuildContext,
    running: &app::Running,
) -> anyhow::Result<()> {
    let db = crate::geo::GeoDb::bundled().context("bundled GeoIP database")?;
    let countries = addresses::pick(&db);
    let (key, _) = ctx
        .generated_certificate()
        .context("the demo's generated certificate")?;
    let pinned = key
        .cert
        .first()
        .cloned()
        .context("the generated certificate is empty")?;
    let plan = traffic::Plan {
        target,
        countries,
        pinned,
        provider: ctx.resumption.provider.clone(),
    };
    traffic::start(plan, running.shutdown_token())
}

/// The demo countries, for the banner: `US, IN, DE, ...`.
fn countries() -> String {
    traffic::BASE_RATES
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
