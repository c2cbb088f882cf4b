//! Admin HTTP endpoints:
//! - `GET /healthz`: liveness, `ok`.
//! - `GET /stats`: the config generation, reload counters and traffic totals so far, as JSON.
//! - `GET /pools`: every pool's backends and their state, as JSON (see `pools`).
//! - `GET /metrics`: all of the above in the Prometheus text format, version 0.0.4 (see
//!   `prometheus`).
//! - `POST /reload`: reloads the config file; the report as JSON.

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::Snapshot;
use crate::reload::Reloader;
use crate::stats::{HandshakeKind, Shard, totals};

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Every worker's stats shard.
    pub shards: Arc<Vec<Arc<Shard>>>,
    /// The live config.
    pub config: Arc<ArcSwap<Snapshot>>,
    /// Reloads the config (`POST /reload`).
    pub reloader: Arc<Reloader>,
}

/// Serves the admin API on `listener` until `shutdown` is cancelled.
pub async fn serve_admin(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&req, &state).await) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
            if let Err(e) = conn.await {
                debug!(error = %e, "admin connection error");
            }
        });
    }
}

async fn respond(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/stats") => json(stats_json(state)),
        (&Method::GET, "/pools") => json(super::pools_json(&state.config.load())),
        (&Method::GET, "/metrics") => metrics(state),
        (&Method::POST, "/reload") => reload(state).await,
        (_, "/healthz" | "/stats" | "/pools" | "/metrics" | "/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `POST /reload`: 200 with the report when the new config is serving, 422 with the errors
/// when it was refused (the running config keeps serving).
async fn reload(state: &AdminState) -> Response<Full<Bytes>> {
    let reloader = Arc::clone(&state.reloader);
    // File reads and certificate parsing block: keep them off the control runtime.
    match tokio::task::spawn_blocking(move || reloader.reload()).await {
        Ok(report) => {
            let status = if report.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            let mut r = json(report.to_json());
            *r.status_mut() = status;
            r
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reload failed unexpectedly\n",
        ),
    }
}

/// `GET /metrics`: the Prometheus text exposition.
fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    let body = super::render_metrics(&state.config.load(), state.reloader.stats(), &state.shards);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(super::METRICS_CONTENT_TYPE),
    );
    r
}

fn stats_json(state: &AdminState) -> serde_json::Value {
    let t = totals(state.shards.iter().map(|s| s.as_ref()));
    let snapshot = state.config.load();
    serde_json::json!({
        "config": {
            "generation": snapshot.generation,
            "source_hash": format!("{:016x}", snapshot.source_hash),
            "reloads": {
                "ok": state.reloader.stats().succeeded(),
                "failed": state.reloader.stats().failed(),
                "last_reload_timestamp_seconds": state.reloader.stats().last_reload_unix_seconds(),
            },
        },
        "workers": state.shards.iter().map(|s| {
            let w = totals([s.as_ref()]);
            serde_json::json!({
                "worker": s.worker,
                "connections": w.connections,
                "connections_active": w.connections_active,
                "requests": w.requests.iter().sum::<u64>(),
            })
        }).collect::<Vec<_>>(),
        "totals": {
            "connections": t.connections,
            "connections_active": t.connections_active,
            "tls_handshakes": {
                "full": t.handshakes_of(HandshakeKind::Full),
                "resumed": t.handshakes_of(HandshakeKind::Resumed),
                "failed": t.handshakes_of(HandshakeKind::Failed),
            },
            "requests": {
                "1xx": t.requests[0], "2xx": t.requests[1], "3xx": t.requests[2],
                "4xx": t.requests[3], "5xx": t.requests[4],
            },
            "bytes_in": t.bytes_in,
            "bytes_out": t.bytes_out,
        },
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
