//! The control thread: one more thread beside the workers, with its own current-thread
//! runtime, for everything that is not a client's connection: the admin API (`POST /reload`
//! among it), the active health checks, the config file watch, and the stats windows with
//! the automatic caps they drive (`windows`). Workers never wait for it: they only read what
//! it publishes (the snapshot, the caps, the fair-share weights).

mod windows;

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::admin::{AdminState, serve_admin};

/// The control thread: the admin API (`POST /reload` among it), the active health checks
/// (once per process, for every pool with a `health_check`), the config file watch
/// (`reload::watch`, which follows `server.watch_config`) and the stats windows (once a
/// second: rates, baselines, spike events; the admin API reads the view they publish). Runs
/// until `shutdown`.
pub fn spawn(
    admin: Option<std::net::TcpListener>,
    state: AdminState,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = std::thread::Builder::new()
        .name("levee-control".into())
        .spawn(move || {
            rt.block_on(async move {
                let config = Arc::clone(&state.config);
                let health = tokio::spawn(crate::lb::health::run(config, shutdown.clone()));
                let windows = tokio::spawn(windows::run(
                    Arc::clone(&state.shards),
                    Arc::clone(&state.config),
                    Arc::clone(&state.view),
                    Arc::clone(&state.admission),
                    shutdown.clone(),
                ));
                // Started whenever there is a file to watch; it watches only while the
                // running config says `watch_config = true`, so a reload can turn it on.
                let watch = state.reloader.path().is_some().then(|| {
                    tokio::spawn(crate::reload::watch::run(
                        Arc::clone(&state.reloader),
                        Arc::clone(&state.config),
                        shutdown.clone(),
                    ))
                });
                if let Some(socket) = admin {
                    match tokio::net::TcpListener::from_std(socket) {
                        Ok(l) => serve_admin(l, state, shutdown).await,
                        Err(e) => warn!(error = %e, "admin API unavailable"),
                    }
                }
                // Health checks run until shutdown, with or without the admin API.
                if health.await.is_err() {
                    warn!("health checks stopped unexpectedly");
                }
                let watch_ended_well = match watch {
                    Some(w) => w.await.is_ok(),
                    None => true,
                };
                if !watch_ended_well {
                    warn!("the config watch stopped unexpectedly");
                }
                if windows.await.is_err() {
                    warn!("the stats windows stopped unexpectedly");
                }
            });
        })?;
    Ok(handle)
}
