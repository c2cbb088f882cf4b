//! One downstream connection's HTTP serving, once the front (`runtime::front`) has let it in
//! and finished its TLS handshake: hyper's HTTP/1.1 or h2 server (chosen by ALPN) with the
//! listener's limits, the idle timeout, and the graceful wind-down on drain.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use super::headers::ClientSide;
use super::idle::IdleTracker;
use super::service;
use super::upstream::UpstreamPool;
use crate::admission::Admission;
use crate::config::{HttpLimits, Listener, LocalSnapshot, Snapshot, SnapshotHandle};
use crate::geo::ClientTag;
use crate::stats::Shard;

/// Smallest read buffer hyper accepts for HTTP/1 heads.
const MIN_HEADER_BUF: usize = 8192;

/// What one worker's HTTP serving shares across its connections (part of the worker's
/// state, `runtime::WorkerCtx`).
#[derive(Debug)]
pub struct WorkerHttp {
    /// This worker's stats shard.
    pub shard: Arc<Shard>,
    /// This worker's upstream connection pool.
    pub upstream: Rc<UpstreamPool>,
    /// The newest config snapshot, as a worker-local `Rc`.
    pub snapshot: LocalSnapshot,
    /// Admission state shared by every worker (the request buckets).
    pub admission: Arc<Admission>,
}

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

/// What every request on one connection shares.
#[derive(Debug)]
pub struct ConnCtx {
    /// The worker's HTTP side.
    pub http: Rc<WorkerHttp>,
    /// The config snapshot taken when the connection was accepted. Requests route on the
    /// newest snapshot instead, while it still has this connection's listener (see
    /// `ConnCtx::routing_snapshot`).
    pub snapshot: Rc<SnapshotHandle>,
    /// The listener (from that snapshot) that accepted it.
    pub listener: Arc<Listener>,
    /// Client address: the source a trusted proxy's PROXY header declared, else the TCP peer.
    pub client: SocketAddr,
    /// The TCP peer (the proxy in front, when a PROXY header was read).
    pub transport_peer: SocketAddr,
    /// Client facts used for forwarding headers.
    pub forwarding: ClientSide,
    /// What the client is tagged with (GeoIP, looked up once when the connection was
    /// accepted): stats slot, ASN, and the upstream header values.
    pub tag: ClientTag,
    /// Requests in flight on this connection, for the idle timeout.
    pub idle: IdleTracker,
    /// (snapshot generation, index of this connection's listener in it): found by name once
    /// per snapshot, not once per request.
    listener_at: Cell<(u64, Option<usize>)>,
}

impl ConnCtx {
    /// The context of a connection from `client` (through `transport_peer`) accepted by
    /// `snapshot.listeners[listener_index]`.
    pub fn new(
        http: Rc<WorkerHttp>,
        snapshot: Rc<SnapshotHandle>,
        listener_index: usize,
        client: SocketAddr,
        transport_peer: SocketAddr,
        tag: ClientTag,
    ) -> Option<Self> {
        let listener = Arc::clone(snapshot.listeners.get(listener_index)?);
        let forwarding = ClientSide {
            ip: http::HeaderValue::from_str(&client.ip().to_string())
                .unwrap_or_else(|_| http::HeaderValue::from_static("unknown")),
            tls: listener.tls.is_some(),
        };
        let listener_at = Cell::new((snapshot.generation, Some(listener_index)));
        Some(Self {
            http,
            snapshot,
            listener,
            client,
            transport_peer,
            forwarding,
            tag,
            idle: IdleTracker::default(),
            listener_at,
        })
    }

    /// The snapshot a new request on this connection routes on: the newest one while it
    /// still has this connection's listener (by name), else the one the connection was
    /// accepted with (its listener was removed by a reload; the connection drains on it).
    pub fn routing_snapshot(&self) -> Rc<SnapshotHandle> {
        let newest = self.http.snapshot.current();
        if self.listener_index(&newest).is_some() {
            newest
        } else {
            Rc::clone(&self.snapshot)
        }
    }

    /// This connection's listener as configured in `snapshot` (one from `routing_snapshot`).
    pub fn listener_in<'a>(&'a self, snapshot: &'a Snapshot) -> &'a Listener {
        self.listener_index(snapshot)
            .and_then(|i| snapshot.listeners.get(i))
            .map_or(&*self.listener, |l| &**l)
    }

    /// The index of this connection's listener in `snapshot`, looked up by name only when
    /// the snapshot's generation is not the one last seen.
    fn listener_index(&self, snapshot: &Snapshot) -> Option<usize> {
        let (generation, index) = self.listener_at.get();
        if generation == snapshot.generation {
            return index;
        }
        let name = &self.listener.name;
        let index = snapshot.listeners.iter().position(|l| l.name == *name);
        self.listener_at.set((snapshot.generation, index));
        index
    }
}

/// Spawns hyper's per-stream h2 tasks on this worker's `LocalSet`.
#[derive(Debug, Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        // h2 streams run as their own tasks: keep them inside the connection's span.
        tokio::task::spawn_local(fut.in_current_span());
    }
}

/// Serves HTTP on an established stream (`version` as TLS negotiated it) until it closes,
/// or winds it down gracefully once `drain` is cancelled: requests in flight finish, then
/// the connection closes (HTTP/1 after its response, h2 by GOAWAY).
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
    let idle_timeout = ctx.listener.http.idle_timeout;
    let svc_ctx = Rc::clone(&ctx);
    let svc = service_fn(move |req| service::handle(req, Rc::clone(&svc_ctx)));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
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
