//! One downstream connection's HTTP serving, once the front (`runtime::front`) has let it in
//! and finished its TLS handshake: hyper's HTTP/1.1 or h2 server (chosen by ALPN) with the
//! listener's limits, the idle timeout, and the graceful wind-down on drain.

use std::future::Future;
use std::rc::Rc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use super::context::ConnCtx;
use super::service;
use super::watch::{self, Watch, Watched};
use crate::config::HttpLimits;

/// Smallest read buffer hyper accepts for HTTP/1 heads.
const MIN_HEADER_BUF: usize = 8192;

/// How HTTP is spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// Plain listener: HTTP/1.1, or h2 with prior knowledge (hyper's auto detection).
    Detect,
    /// TLS with ALPN `h2`.
    H2,
    /// TLS without ALPN `h2`: HTTP/1.1.
    Http1,
}

/// Spawns hyper's per-stream h2 tasks on this worker's `LocalSet`.
#[derive(Debug, Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        // h2 streams run as their own tasks: inside the connection's span when it is
        // enabled (debug level); otherwise without the wrapper and its enter/exit per poll.
        let span = tracing::Span::current();
        if span.is_disabled() {
            tokio::task::spawn_local(fut);
        } else {
            tokio::task::spawn_local(fut.instrument(span));
        }
    }
}

/// Serves HTTP on an established stream (`version` as TLS negotiated it) until it closes,
/// or winds it down gracefully once `drain` is cancelled: requests in flight finish, then
/// the connection closes (HTTP/1 after its response, h2 by GOAWAY). Closed at once when a
/// connection sends neither an h2 preface nor a request within `header_timeout` (HTTP/1
/// over TLS has hyper's own deadline for that), or when a write to it makes no progress for
/// `send_timeout` (counted): see `watch`.
pub async fn serve<I>(io: I, version: HttpVersion, ctx: Rc<ConnCtx>, drain: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let builder = http_builder(&ctx.listener.http);
    let builder = match version {
        HttpVersion::Detect => builder,
        HttpVersion::H2 => builder.http2_only(),
        HttpVersion::Http1 => builder.http1_only(),
    };
    let limits = &ctx.listener.http;
    let (idle_timeout, header_timeout) = (limits.idle_timeout, limits.header_timeout);
    let send_timeout = limits.send_timeout;
    let watch = Rc::new(Watch::default());
    let io = Watched::new(io, Rc::clone(&watch));
    let svc_ctx = Rc::clone(&ctx);
    // Boxed: the request's future is large, and hyper moves it whole into an h2 stream's
    // task (several copies per request); a box moves as a pointer.
    let svc = service_fn(move |req| Box::pin(service::handle(req, Rc::clone(&svc_ctx))));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let silent = async {
        if version == HttpVersion::Http1 {
            std::future::pending::<()>().await;
        }
        watch::silent(&watch, &ctx.idle, header_timeout).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = ctx.idle.expired(idle_timeout) => {
            debug!("closing idle connection");
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = silent => {
            debug!("closing a connection that sent no request within header_timeout");
            return;
        }
        _ = watch::stalled(&watch, send_timeout) => {
            debug!("closing a connection that stopped reading: send_timeout");
            ctx.http.shard.send_timed_out();
            return;
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
    }
}

/// The hyper server settings for a listener's limits.
fn http_builder(limits: &HttpLimits) -> auto::Builder<LocalExec> {
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BUF));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.header_timeout);
    builder
}
