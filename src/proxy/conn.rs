//! One downstream connection: TLS (if the listener has it), then HTTP/1.1 or h2 by ALPN.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, field};

use super::early::Resolved;
use super::headers::ClientSide;
use super::idle::IdleTracker;
use super::service;
use super::upstream::UpstreamPool;
use crate::admission::{Admission, ConnectionPermit, HandshakeGate, RejectReason, Ticket};
use crate::config::{HttpLimits, Listener, Snapshot};
use crate::geo::ClientTag;
use crate::net;
use crate::runtime::{LocalSnapshot, SnapshotHandle};
use crate::stats::{CountryIdx, HandshakeKind, Shard};
use crate::tls;

/// Smallest read buffer hyper accepts for HTTP/1 heads.
const MIN_HEADER_BUF: usize = 8192;

/// State owned by one worker thread and shared by its connections.
#[derive(Debug)]
pub struct WorkerCtx {
    /// Worker index.
    pub id: usize,
    /// This worker's stats shard.
    pub shard: Arc<Shard>,
    /// This worker's upstream connection pool.
    pub upstream: Rc<UpstreamPool>,
    /// Cancelled when the worker starts its graceful shutdown.
    pub shutdown: CancellationToken,
    /// The newest config snapshot, as a worker-local `Rc`.
    pub snapshot: LocalSnapshot,
    /// Admission counts shared by every worker (open connections, per client IP).
    pub admission: Arc<Admission>,
    /// This worker's TLS handshake cap and queue.
    pub handshakes: Rc<HandshakeGate>,
}

/// What every request on one connection shares.
#[derive(Debug)]
pub struct ConnCtx {
    /// The worker serving it.
    pub worker: Rc<WorkerCtx>,
    /// The config snapshot taken when the connection was accepted. Requests route on the
    /// newest snapshot instead, while it still has this connection's listener (see
    /// `ConnCtx::routing`).
    pub snapshot: Rc<SnapshotHandle>,
    /// The listener (from that snapshot) that accepted it.
    pub listener: Arc<Listener>,
    /// Client address: the source a trusted proxy's PROXY header declared, else the TCP peer.
    pub peer: SocketAddr,
    /// The TCP peer (the proxy in front, when a PROXY header was read).
    pub transport_peer: SocketAddr,
    /// Client facts used for forwarding headers.
    pub client: ClientSide,
    /// Country slot of the client (the same as `tag.country`).
    pub country: CountryIdx,
    /// What the client is tagged with (GeoIP, looked up once when the connection was
    /// accepted): stats slot, ASN, and the upstream header values.
    pub tag: ClientTag,
    /// Requests in flight on this connection, for the idle timeout.
    pub idle: IdleTracker,
}

impl ConnCtx {
    /// The snapshot a new request on this connection routes on: the newest one while it
    /// still has this connection's listener (by name), else the one the connection was
    /// accepted with (its listener was removed by a reload; the connection drains on it).
    pub fn routing_snapshot(&self) -> Rc<SnapshotHandle> {
        let newest = self.worker.snapshot.current();
        if Arc::ptr_eq(newest.arc(), self.snapshot.arc())
            || newest.listener(&self.listener.name).is_some()
        {
            newest
        } else {
            Rc::clone(&self.snapshot)
        }
    }

    /// This connection's listener as configured in `snapshot` (one from `routing_snapshot`).
    pub fn listener_in<'a>(&'a self, snapshot: &'a Snapshot) -> &'a Listener {
        if std::ptr::eq(snapshot, &**self.snapshot) {
            return &self.listener;
        }
        snapshot
            .listener(&self.listener.name)
            .map_or(&*self.listener, |l| &**l)
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

/// Counts a connection closed when dropped, however the connection ends.
struct OpenConnection {
    shard: Arc<Shard>,
    country: CountryIdx,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.shard.connection_closed(self.country);
    }
}

/// An accepted TCP connection about to be served.
#[derive(Debug)]
pub struct Accepted {
    /// The socket.
    pub tcp: TcpStream,
    /// Its `max_connections` slot, held until it closes.
    pub permit: ConnectionPermit,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Client address, tag and admission, when the accept loop already decided them
    /// (`proxy::early`); `None`: the connection's task reads the PROXY header and decides.
    pub resolved: Option<Box<Resolved>>,
}

/// Serves one accepted TCP connection to the end. `drain` is cancelled when the connection
/// must wind down (worker shutdown, or its listener removed by a reload): a handshake in
/// progress is dropped, requests in flight finish, then the connection closes.
pub async fn serve_connection(
    accepted: Accepted,
    snapshot: Rc<SnapshotHandle>,
    listener: Arc<Listener>,
    worker: Rc<WorkerCtx>,
    drain: CancellationToken,
) {
    let Accepted {
        tcp,
        permit,
        peer,
        resolved,
    } = accepted;
    let span = tracing::info_span!(
        "conn",
        worker = worker.id,
        peer = %peer,
        client = field::Empty,
        listener = %listener.name,
        sni = field::Empty,
        alpn = field::Empty,
    );
    serve(tcp, peer, snapshot, listener, worker, drain, resolved)
        .instrument(span)
        .await;
    // The process-wide slot is held until the connection is over.
    drop(permit);
}

async fn serve(
    mut tcp: TcpStream,
    transport_peer: SocketAddr,
    snapshot: Rc<SnapshotHandle>,
    listener: Arc<Listener>,
    worker: Rc<WorkerCtx>,
    drain: CancellationToken,
    resolved: Option<Box<Resolved>>,
) {
    let resolved = match resolved {
        // Decided at accept: only the PROXY header's bytes are left to take off the socket.
        Some(r) => {
            let limit = listener.client_address.proxy_protocol_timeout;
            if let Err(e) = net::skip_header(&mut tcp, r.header_len, limit).await {
                debug!(error = %e, "connection lost before TLS");
                return;
            }
            *r
        }
        None => {
            match resolve(
                &mut tcp,
                transport_peer,
                &snapshot,
                &listener,
                &worker,
                &drain,
            )
            .await
            {
                Ok(r) => r,
                Err(Some(reason)) => return refused(&tcp, reason),
                Err(None) => return,
            }
        }
    };
    let Resolved {
        client: client_addr,
        header_len: _,
        tag,
        admitted,
    } = resolved;
    if client_addr != transport_peer {
        tracing::Span::current().record("client", field::display(client_addr));
    }
    let country = tag.country;
    let admission = &snapshot.admission;
    // max_handshakes_in_flight: once the ClientHello is in, wait for a handshake slot
    // (fair queue) before any reply; the slot is held until the handshake ends.
    let limits = admission.gate_limits();
    let exempt = admitted.exempt_from_late_cap();
    let _ip_permit = admitted.ip_permit;
    worker.shard.connection_opened(country);
    if let Some(asn) = tag.asn {
        worker.shard.asn_connection(asn, country, client_addr.ip());
    }
    let _open = OpenConnection {
        shard: Arc::clone(&worker.shard),
        country,
    };
    let client = ClientSide {
        ip: http::HeaderValue::from_str(&client_addr.ip().to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown")),
        tls: listener.tls.is_some(),
    };
    let ctx = Rc::new(ConnCtx {
        worker: Rc::clone(&worker),
        snapshot,
        listener: Arc::clone(&listener),
        peer: client_addr,
        transport_peer,
        client,
        country,
        tag,
        idle: IdleTracker::default(),
    });
    let Some(tls_settings) = &listener.tls else {
        let builder = http_builder(&listener.http);
        return serve_http(tcp, builder, ctx, drain).await;
    };
    // Resumption attempts (and allowlisted clients) are served first when slots are short;
    // the ClientHello is classified only when there is a gate to schedule.
    let classify = limits.in_flight.is_some() && !admitted.allowlisted;
    if classify && worker.handshakes.refuses_now(limits, country) {
        let reason = RejectReason::HandshakeQueueFull;
        worker.shard.admission_rejected(country, reason);
        debug!(reason = reason.as_str(), "refused before the ClientHello");
        return refused(&tcp, reason);
    }
    let gate = Rc::clone(&worker.handshakes);
    let slot_worker = Rc::clone(&worker);
    let slot_snapshot = Rc::clone(&ctx.snapshot);
    let slot = move |resuming: bool| async move {
        let priority = admitted.allowlisted || resuming;
        let permit = gate.acquire(limits, Ticket { country, priority }).await?;
        let settings = &slot_snapshot.admission;
        if !resuming && super::admit::meets_late_cap(&slot_worker, settings, exempt, country) {
            // The slot goes straight back to the next waiter.
            drop(permit);
            return Err(RejectReason::AutoCapQueued);
        }
        Ok(permit)
    };
    let config = Arc::clone(&tls_settings.server_config);
    let deadline = tls_settings.handshake_timeout;
    let accepted = tokio::select! {
        r = tls::accept_tls_gated(tcp, config, deadline, classify, slot) => r,
        _ = drain.cancelled() => return,
    };
    let outcome = match accepted {
        Ok(o) => o,
        Err(tls::HandshakeError::Refused(reason)) => {
            worker.shard.admission_rejected(country, reason);
            debug!(reason = reason.as_str(), "refused before the TLS handshake");
            return;
        }
        Err(e) => {
            worker
                .shard
                .handshake(country, HandshakeKind::Failed, e.duration());
            debug!(error = %e, "TLS handshake failed");
            return;
        }
    };
    worker
        .shard
        .handshake(country, outcome.kind, outcome.duration);
    let span = tracing::Span::current();
    span.record("sni", outcome.sni().unwrap_or(""));
    let h2 = outcome.is_h2();
    span.record("alpn", if h2 { "h2" } else { "http/1.1" });
    let builder = http_builder(&listener.http);
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    serve_http(outcome.stream, builder, ctx, drain).await;
}

/// Reads the real client address (the PROXY header, only from trusted_proxies, within
/// proxy_protocol_timeout; else the TCP peer), tags it and admits it (buckets, automatic
/// cap, per-IP cap, a tarpit's hold): what `proxy::early` does at accept when the header is
/// already in. `Err(Some(reason))`: refused by admission; `Err(None)`: the header failed,
/// or `drain` was cancelled first.
async fn resolve(
    tcp: &mut TcpStream,
    transport_peer: SocketAddr,
    snapshot: &Snapshot,
    listener: &Listener,
    worker: &WorkerCtx,
    drain: &CancellationToken,
) -> Result<Resolved, Option<RejectReason>> {
    let policy = &listener.client_address;
    let read = tokio::select! {
        r = net::client_address(tcp, transport_peer, policy) => r,
        _ = drain.cancelled() => return Err(None),
    };
    let client = match read {
        Ok(addr) => addr,
        Err(e) => {
            debug!(error = %e, "connection refused before TLS");
            return Err(None);
        }
    };
    let tag = snapshot.client_tag(client.ip());
    let admitted = super::admit::admit(worker, &snapshot.admission, client.ip(), &tag, drain)
        .await
        .map_err(Some)?;
    Ok(Resolved {
        client,
        header_len: 0,
        tag,
        admitted,
    })
}

/// Ends a connection refused by admission control, with a reset when the reason calls for
/// one (see `RejectReason::closes_with_reset`).
fn refused(tcp: &TcpStream, reason: RejectReason) {
    if reason.closes_with_reset() {
        let _ = tcp.set_zero_linger();
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

/// Runs HTTP on an established stream until it closes, or winds it down gracefully once
/// `drain` is cancelled.
async fn serve_http<I>(
    io: I,
    builder: auto::Builder<LocalExec>,
    ctx: Rc<ConnCtx>,
    drain: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + 'static,
{
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
