//! Admin HTTP endpoints:
//! - `GET /healthz`: liveness, `ok`.
//! - `GET /stats`: traffic per country and per ASN with rates, baselines and spikes, the
//!   config generation, reload counters and workers, as JSON (see `stats_json`).
//! - `GET /pools`: every pool's backends and their state, as JSON (see `pools`).
//! - `GET /metrics`: all of the above in the Prometheus text format, version 0.0.4 (see
//!   `prometheus`).
//! - `POST /reload`: reloads the config file; the report as JSON.
//! - `GET /dashboard`: the live page for a browser, and its assets under `/dashboard/`
//!   (see `dashboard`).
//!
//! With `[admin] token` set, every endpoint but `/healthz` and the dashboard's assets needs
//! `Authorization: Bearer TOKEN` (`/dashboard` also takes `?token=TOKEN`), else 401 with
//! `WWW-Authenticate: Bearer`. The token is read from the snapshot serving now (a reload
//! can set or change it) and compared in constant time.
//!
//! Slow or idle clients cannot pile up: a request head must arrive within
//! `HEADER_TIMEOUT`, a connection lives at most `CONNECTION_LIFETIME`, and at most
//! `MAX_CONNECTIONS` are open at once (more are closed at accept).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::dashboard;
use super::state::AdminState;

/// Time allowed to receive a whole request head, from the moment one is waited for.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an admin connection stays open (a reload answers within `admin::client`'s 60 s).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Most admin connections open at once: `levee top`, `levee reload` and a scraper need a
/// handful; the rest would be a flood.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves the admin API on `listener` until `shutdown` is cancelled.
pub async fn serve_admin(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!(
                limit = MAX_CONNECTIONS,
                "admin connection refused: too many open"
            );
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&req, &state).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Err(e)) => debug!(error = %e, "admin connection error"),
                Err(_) => debug!("admin connection closed: lifetime reached"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

async fn respond(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let open = path == "/healthz" || dashboard::is_public_asset(path);
    if !open && !authorized_for(req, state.config.load().admin.token.as_deref()) {
        let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"levee\""),
        );
        return r;
    }
    match (req.method(), path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/stats") => json(super::stats_json(state)),
        (&Method::GET, "/pools") => json(super::pools_json(&state.config.load())),
        (&Method::GET, "/metrics") => metrics(state),
        (&Method::POST, "/reload") => reload(state).await,
        (&Method::GET, p) if dashboard::is_route(p) => {
            dashboard::response(p).unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"))
        }
        (_, "/healthz" | "/stats" | "/pools" | "/metrics" | "/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        (_, p) if dashboard::is_route(p) => {
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

/// Whether `req` may see its path: the bearer `token`, or for the dashboard's page (which a
/// browser navigates to, without a header) `?token=` (always, when there is none).
fn authorized_for<B>(req: &Request<B>, token: Option<&str>) -> bool {
    if authorized(req, token) {
        return true;
    }
    let (Some(token), dashboard::PAGE) = (token, req.uri().path()) else {
        return false;
    };
    dashboard::query_token(req.uri().query())
        .is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

/// Whether `req` carries the bearer `token` (always, when there is none).
fn authorized<B>(req: &Request<B>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim());
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

/// Compares `given` with `expected` in time that depends only on `expected`'s length, so the
/// answer's timing tells nothing about how much of a guess was right.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// `GET /metrics`: the Prometheus text exposition.
fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    let body = super::render_metrics(
        &state.config.load(),
        state.reloader.stats(),
        &state.shards,
        &state.view.load(),
        &state.admission.auto_view.load(),
        state
            .access_log_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(super::METRICS_CONTENT_TYPE),
    );
    r
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request<()> {
        let mut b = Request::get("/stats");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn bearer_token() {
        let token = Some("0123456789abcdef");
        assert!(authorized(&req(None), None));
        assert!(authorized(&req(Some("Bearer whatever")), None));
        assert!(authorized(&req(Some("Bearer 0123456789abcdef")), token));
        assert!(authorized(&req(Some("bearer 0123456789abcdef")), token));
        assert!(!authorized(&req(None), token));
        assert!(!authorized(&req(Some("Bearer 0123456789abcdeF")), token));
        assert!(!authorized(&req(Some("Bearer 0123456789abcde")), token));
        assert!(!authorized(&req(Some("Bearer 0123456789abcdef0")), token));
        assert!(!authorized(&req(Some("Basic 0123456789abcdef")), token));
        assert!(!authorized(&req(Some("0123456789abcdef")), token));
    }

    #[test]
    fn query_token_only_for_the_dashboard_page() {
        let token = Some("t0k");
        let get = |uri: &str| Request::get(uri).body(()).unwrap();
        assert!(authorized_for(&get("/dashboard?token=t0k"), token));
        assert!(!authorized_for(&get("/dashboard?token=t0K"), token));
        assert!(!authorized_for(&get("/dashboard"), token));
        assert!(!authorized_for(&get("/stats?token=t0k"), token));
        assert!(!authorized_for(&get("/dashboard/?token=t0k"), token));
        assert!(authorized_for(&get("/stats"), None));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }
}
