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
use std::path::Path;

use anyhow::{Context, anyhow};

use crate::app;
use crate::config::{self, BuildContext, Snapshot};

pub use backends::spawn_backends;

/// Name of the listener a newcomer curls.
pub const DEMO_LISTENER: &str = "demo";
/// Name of the demo-only loopback listener the synthetic visitors connect to.
pub const TRAFFIC_LISTENER: &str = "demo-traffic";

/// The demo config: one TLS listener with a generated certificate, round robin over
/// `backends`. With `traffic`, a second TLS listener on 127.0.0.1 (ephemeral port) that
/// takes a PROXY v2 header from 127.0.0.1 only, no access log (the synthetic requests
/// would flood the terminal; `levee top` shows them), and a spike minimum rate the demo's
/// surge reaches.
pub fn config_toml(
    listen: SocketAddr,
    admin: SocketAddr,
    backends: &[SocketAddr],
    traffic: bool,
) -> String {
    let mut toml = String::new();
    if traffic {
        // The demo's rates are gentle (a surge of ~20 new connections a second), below the
        // production default of `spike_min_rate`.
        toml.push_str("[server]\naccess_log = false\n\n[stats]\nspike_min_rate = 5.0\n\n");
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
             trusted_proxies = [\"127.0.0.1/32\"]\n[listeners.tls]\n\n"
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
    let (snapshot, traffic) = load(listen, admin, &backends, &ctx, traffic)?;
    let running = app::start(snapshot)?;
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
    let top = if admin.to_string() == config::validate::DEFAULT_ADMIN_LISTEN {
        "levee top".to_string()
    } else {
        format!("levee top --admin {admin}")
    };
    println!("watch it:   run `{top}` in a second terminal");
    println!("stop:       Ctrl-C");
    let token = running.shutdown_token();
    app::wait_then_stop(running, token)?;
    Ok(0)
}

/// The demo snapshot: with the traffic listener when asked and this build accepts it,
/// else without (and no traffic); the flag says which.
fn load(
    listen: SocketAddr,
    admin: SocketAddr,
    backends: &[SocketAddr],
    ctx: &BuildContext,
    traffic: bool,
) -> anyhow::Result<(Snapshot, bool)> {
    if traffic {
        match config::load_str(&config_toml(listen, admin, backends, true), ctx) {
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
    let snapshot = config::load_str(&config_toml(listen, admin, backends, false), ctx)
        .map_err(|e| anyhow!("{e}"))?;
    Ok((snapshot, false))
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
