//! The front: a connection's way in, from accept to HTTP serving, in one place.
//!
//! ```text
//! accept (accept loop) -> max_connections -> client address (net) -> tag (geo)
//!   -> admission verdict (admission) -> open -> handshake slot (admission's gate)
//!   -> TLS (tls) -> HTTP serving (proxy)
//! ```
//!
//! Each stage is a function of the module that owns its subject; the front only sequences
//! them, records every verdict once on the worker's stats shard, and acts on the socket
//! (close, reset, hold, serve). The client address step has two states:
//! - `Ready`: the listener takes no PROXY header, or the header is already in (the usual
//!   case under load: the client sent it with its first flight and the connection waited in
//!   the accept queue). The accept loop goes on synchronously: tag, verdict, and, for a TLS
//!   listener, whether the handshake gate would refuse it now; a connection of a country
//!   over its automatic cap whose whole ClientHello is in too is refused there unless the
//!   hello offers to resume (`capped_hello_refused`). A connection refused there is
//!   closed without a task or an epoll registration; under a flood that is most of them,
//!   and a task per refused connection cost as much as the refusal.
//! - `NeedHeader`: the connection's task waits for the header (within
//!   `proxy_protocol_timeout`), then takes the same steps.
//!
//! Counted here, once each: refusals by country and reason, the connection opened (and
//! closed, by a guard), the handshake's kind and time. Admission knows no sockets and writes
//! no stats; it returns verdicts.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, field};

use super::worker_ctx::WorkerCtx;
use crate::admission::{Admitted, ConnectionPermit, LateCap, Ticket};
use crate::config::{Listener, SnapshotHandle};
use crate::geo::ClientTag;
use crate::labels::{CountryIdx, HandshakeKind, RejectReason};
use crate::net::{self, ClientAddress};
use crate::proxy::{self, ConnCtx, HttpVersion};
use crate::stats::Shard;
use crate::tls::{self, HandshakeError};

/// One listener's front on one worker: what its accept loop hands connections to.
#[derive(Debug)]
pub struct Front {
    /// The listener's name in the config.
    pub name: String,
    /// The worker.
    pub worker: Rc<WorkerCtx>,
    /// Tracks the connection tasks, for the graceful shutdown.
    pub connections: TaskTracker,
    /// Cancelled when the listener's connections must drain.
    pub drain: CancellationToken,
}

/// What is known of a connection from accept on; its `max_connections` slot is held as
/// long as it lives.
#[derive(Debug)]
struct Arrival {
    _permit: ConnectionPermit,
    transport_peer: SocketAddr,
    /// The snapshot it was accepted on, and its listener's index there.
    snapshot: Rc<SnapshotHandle>,
    listener_index: usize,
}

impl Arrival {
    /// Its listener (in the snapshot it was accepted on).
    fn listener(&self) -> Option<&Arc<Listener>> {
        self.snapshot.listeners.get(self.listener_index)
    }
}

/// A connection let in by admission, counted as opened until dropped.
#[derive(Debug)]
struct Entry {
    client: SocketAddr,
    tag: ClientTag,
    admitted: Admitted,
    /// Counted as opened; `None` while its country's automatic cap is deferred to its
    /// ClientHello (counted once that passes: a refusal there is counted as refused before
    /// open, and must not also count as opened).
    _open: Option<Open>,
}

/// The verdict on a connection whose client address is known.
#[derive(Debug)]
enum Verdict {
    /// Refused: close it (counted).
    Refused(RejectReason),
    /// Refused by a bucket whose action is `tarpit`: hold it, then close it (counted).
    Tarpit,
    /// Let in.
    Admitted(Entry),
}

/// Where the connection's task starts: the client address step's two states.
#[derive(Debug)]
enum Stage {
    /// Admitted in the accept loop; `header_len` bytes of PROXY header are still to be taken
    /// off the socket.
    Admitted { entry: Entry, header_len: usize },
    /// The PROXY header has not arrived: read it, then decide.
    NeedHeader,
}

/// What the accept loop does with a new connection.
#[derive(Debug)]
enum Screened {
    /// Refused and closed.
    Closed,
    /// Hold it in a tarpit, then close it.
    Tarpit(std::net::TcpStream, Arrival),
    /// Serve it (from `Stage`) in its own task.
    Serve(std::net::TcpStream, Arrival, Stage),
}

impl Front {
    /// A connection accepted on `snapshot.listeners[listener_index]`: screened at once, then
    /// served (or held) in its own task unless refused.
    pub fn arrive(
        &self,
        tcp: std::net::TcpStream,
        transport_peer: SocketAddr,
        snapshot: &Rc<SnapshotHandle>,
        listener_index: usize,
    ) {
        let (tcp, arrival, stage) = match self.screen(tcp, transport_peer, snapshot, listener_index)
        {
            Screened::Closed => return,
            Screened::Tarpit(tcp, arrival) => {
                let held = tarpit(tcp, arrival, Rc::clone(&self.worker), self.drain.clone());
                self.connections.spawn_local(held);
                return;
            }
            Screened::Serve(tcp, arrival, stage) => (tcp, arrival, stage),
        };
        let _ = tcp.set_nodelay(true);
        let tcp = match TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                debug!(listener = %self.name, %transport_peer, error = %e, "cannot register connection");
                return;
            }
        };
        // At debug level: nothing inside a connection logs above debug, and an enabled span
        // costs every connection a registry entry and an enter/exit on each poll.
        let span = tracing::debug_span!(
            "conn",
            worker = self.worker.id,
            peer = %transport_peer,
            client = field::Empty,
            listener = %self.name,
            sni = field::Empty,
            alpn = field::Empty,
        );
        let worker = Rc::clone(&self.worker);
        let served = connection(tcp, arrival, stage, worker, self.drain.clone());
        self.connections.spawn_local(served.instrument(span));
    }

    /// The synchronous part of the way in, in the accept loop: `max_connections`, the client
    /// address as far as the bytes already in tell it, and, when it is known, the tag, the
    /// verdict and the handshake gate's.
    fn screen(
        &self,
        tcp: std::net::TcpStream,
        transport_peer: SocketAddr,
        snapshot: &Rc<SnapshotHandle>,
        listener_index: usize,
    ) -> Screened {
        let worker = &self.worker;
        let Some(listener) = snapshot.listeners.get(listener_index) else {
            return Screened::Closed;
        };
        // max_connections: refused here, before anything is read (PROXY header or TLS).
        let limit = snapshot.admission.max_connections;
        let Some(permit) = worker.admission().connections.try_acquire(limit) else {
            let country = snapshot.client_tag(transport_peer.ip()).country;
            refuse(worker.shard(), country, RejectReason::MaxConnections);
            close_refused(&tcp, RejectReason::MaxConnections);
            return Screened::Closed;
        };
        let arrival = Arrival {
            _permit: permit,
            transport_peer,
            snapshot: Rc::clone(snapshot),
            listener_index,
        };
        let policy = &listener.client_address;
        let (client, header_len) = match net::client_address_now(&tcp, transport_peer, policy) {
            ClientAddress::NeedHeader => return Screened::Serve(tcp, arrival, Stage::NeedHeader),
            ClientAddress::Ready { client, header_len } => (client, header_len),
        };
        match verdict(worker, &arrival, client) {
            Verdict::Refused(reason) => {
                close_refused(&tcp, reason);
                Screened::Closed
            }
            Verdict::Tarpit => Screened::Tarpit(tcp, arrival),
            Verdict::Admitted(entry)
                if entry.admitted.cap_deferred
                    && capped_hello_refused(worker, &tcp, header_len, entry.tag.country) =>
            {
                close_refused(&tcp, RejectReason::AutoCap);
                Screened::Closed
            }
            Verdict::Admitted(entry)
                if gate_refuses(worker, &arrival, &entry.admitted, entry.tag.country) =>
            {
                close_refused(&tcp, RejectReason::HandshakeQueueFull);
                Screened::Closed
            }
            Verdict::Admitted(entry) => {
                Screened::Serve(tcp, arrival, Stage::Admitted { entry, header_len })
            }
        }
    }
}

/// Tags the client and asks admission for its verdict (allowlist, buckets, automatic cap,
/// per-IP cap); records it. An admitted connection is counted as opened from here on.
fn verdict(worker: &WorkerCtx, arrival: &Arrival, client: SocketAddr) -> Verdict {
    let snapshot = &arrival.snapshot;
    let tag = snapshot.client_tag(client.ip());
    let shard = worker.shard();
    let country = tag.country;
    let tls = arrival.listener().is_some_and(|l| l.tls.is_some());
    let decided = worker
        .admission()
        .decide(&snapshot.admission, client.ip(), &tag, tls);
    let dry_run_refusal = match &decided {
        Ok(admitted) => admitted.dry_run_refusal,
        Err(refusal) => refusal.dry_run_refusal,
    };
    if dry_run_refusal {
        shard.admission_rejected(country, RejectReason::AutoCapDryRun);
    }
    match decided {
        Err(refusal) => {
            refuse(shard, country, refusal.reason);
            if refusal.tarpit {
                Verdict::Tarpit
            } else {
                Verdict::Refused(refusal.reason)
            }
        }
        Ok(admitted) => {
            let open =
                (!admitted.cap_deferred).then(|| Open::new(&worker.http.shard, &tag, client));
            Verdict::Admitted(Entry {
                client,
                tag,
                admitted,
                _open: open,
            })
        }
    }
}

/// Bytes peeked for a capped connection's ClientHello in the accept loop: a PROXY header (up
/// to what is left of this after the hello) and the classification's bytes.
const CAPPED_PEEK: usize = tls::hello::PEEK_BYTES + 512;

/// Whether a connection over its country's automatic cap (the cap deferred to its
/// ClientHello) is refused in the accept loop: its whole ClientHello is already in after the
/// PROXY header and offers no resumption. Refused there, it costs no epoll registration, no
/// task and no parse by rustls; under a capped flood that is most connections (the flood's
/// client sends its hello with its first flight). `false` when the hello is not all in yet or
/// does not parse: the connection's task waits for it and decides as before. Counted.
fn capped_hello_refused(
    worker: &WorkerCtx,
    tcp: &std::net::TcpStream,
    header_len: usize,
    country: CountryIdx,
) -> bool {
    let mut buf = [0u8; CAPPED_PEEK];
    let end = header_len.saturating_add(tls::hello::PEEK_BYTES);
    let Some(window) = buf.get_mut(..end) else {
        return false;
    };
    // Non-blocking (accepted with SOCK_NONBLOCK): nothing in yet is `WouldBlock`.
    let Ok(n) = tcp.peek(window) else {
        return false;
    };
    let resumes = window
        .get(header_len..n)
        .and_then(tls::hello::whole_hello_resumes);
    if resumes != Some(false) {
        return false;
    }
    refuse(worker.shard(), country, RejectReason::AutoCap);
    true
}

/// Whether the handshake gate would refuse this TLS connection now (every slot taken, the
/// queue full, and no waiter of a country further ahead of its share to make room): it is
/// refused before its ClientHello is read, and counted. Allowlisted clients never are.
fn gate_refuses(
    worker: &WorkerCtx,
    arrival: &Arrival,
    admitted: &Admitted,
    country: CountryIdx,
) -> bool {
    let limits = arrival.snapshot.admission.gate_limits();
    let tls = arrival.listener().is_some_and(|l| l.tls.is_some());
    if !tls || admitted.allowlisted || !worker.handshakes.refuses_now(limits, country) {
        return false;
    }
    refuse(worker.shard(), country, RejectReason::HandshakeQueueFull);
    true
}

/// The connection's task: the rest of the client address step, then the handshake and HTTP.
fn connection(
    tcp: TcpStream,
    arrival: Arrival,
    stage: Stage,
    worker: Rc<WorkerCtx>,
    drain: CancellationToken,
) -> impl Future<Output = ()> {
    // An async block, not an `async fn`: the block uses what it captured in place, where an
    // `async fn` keeps every argument twice in its future, which lives as long as the
    // connection (so does `handshake_then_http`'s).
    let mut tcp = tcp;
    async move {
        let Some(listener) = arrival.listener() else {
            return;
        };
        let policy = &listener.client_address;
        let entry = match stage {
            Stage::Admitted { entry, header_len } => {
                let limit = policy.proxy_protocol_timeout;
                if let Err(e) = net::skip_header(&mut tcp, header_len, limit).await {
                    debug!(error = %e, "connection lost before TLS");
                    return;
                }
                entry
            }
            Stage::NeedHeader => {
                let read = tokio::select! {
                    r = net::client_address(&mut tcp, arrival.transport_peer, policy) => r,
                    _ = drain.cancelled() => return,
                };
                let client = match read {
                    Ok(client) => client,
                    Err(e) => {
                        debug!(error = %e, "connection refused before TLS");
                        return;
                    }
                };
                match verdict(&worker, &arrival, client) {
                    Verdict::Admitted(entry) => entry,
                    Verdict::Refused(reason) => return close_refused(&tcp, reason),
                    Verdict::Tarpit => {
                        let settings = &arrival.snapshot.admission;
                        worker.admission().hold_tarpitted(settings, &drain).await;
                        return close_refused(&tcp, RejectReason::Tarpit);
                    }
                }
            }
        };
        if entry.client != arrival.transport_peer {
            tracing::Span::current().record("client", field::display(entry.client));
        }
        handshake_then_http(tcp, &arrival, entry, worker, drain).await;
        // The process-wide slot is held until the connection is over.
        drop(arrival);
    }
}

/// The handshake slot and TLS (for a TLS listener), then HTTP serving until the connection
/// ends.
// An async block on purpose (see `connection`): an `async fn` would keep `entry` twice.
#[allow(clippy::manual_async_fn)]
fn handshake_then_http(
    tcp: TcpStream,
    arrival: &Arrival,
    entry: Entry,
    worker: Rc<WorkerCtx>,
    drain: CancellationToken,
) -> impl Future<Output = ()> + '_ {
    async move {
        let Some(listener) = arrival.listener() else {
            return;
        };
        // Its per-IP slot (in `admitted`) and its open count live until the connection closes.
        let Entry {
            client,
            tag,
            admitted,
            _open: mut open,
        } = entry;
        let country = tag.country;
        // A connection whose automatic cap waits for its ClientHello is counted as opened
        // once it is not refused by that cap.
        let late_open = open.is_none().then(|| tag.clone());
        let open_late = |open: &mut Option<Open>| {
            if let Some(tag) = &late_open {
                open.get_or_insert_with(|| Open::new(&worker.http.shard, tag, client));
            }
        };
        let ctx = ConnCtx::new(
            Rc::clone(&worker.http),
            Rc::clone(&arrival.snapshot),
            arrival.listener_index,
            client,
            arrival.transport_peer,
            tag,
        );
        let Some(ctx) = ctx.map(Rc::new) else {
            return;
        };
        let Some(tls_settings) = &listener.tls else {
            Box::pin(proxy::serve(tcp, HttpVersion::Detect, ctx, drain)).await;
            return drop((admitted, open));
        };
        if gate_refuses(&worker, arrival, &admitted, country) {
            open_late(&mut open);
            return close_refused(&tcp, RejectReason::HandshakeQueueFull);
        }
        let config = Arc::clone(&tls_settings.server_config);
        let deadline = tls_settings.handshake_timeout;
        // The handshake and the HTTP serving are boxed: each is large, and inline the
        // connection's task would keep the size of both for as long as it lives.
        let handshake = Box::pin(handshake(
            tcp, config, deadline, arrival, &admitted, country, &worker,
        ));
        let accepted = tokio::select! {
            r = handshake => r,
            _ = drain.cancelled() => return,
        };
        let shard = worker.shard();
        if !matches!(
            accepted,
            Err(HandshakeError::Refused(RejectReason::AutoCap))
        ) {
            open_late(&mut open);
        }
        let outcome = match accepted {
            Ok(o) => o,
            Err(HandshakeError::Refused(reason)) => return refuse(shard, country, reason),
            Err(e) => {
                shard.handshake(country, HandshakeKind::Failed, e.duration());
                debug!(error = %e, "TLS handshake failed");
                return;
            }
        };
        shard.handshake(country, outcome.kind, outcome.duration);
        let span = tracing::Span::current();
        span.record("sni", outcome.sni().unwrap_or(""));
        let h2 = outcome.is_h2();
        span.record("alpn", if h2 { "h2" } else { "http/1.1" });
        let version = if h2 {
            HttpVersion::H2
        } else {
            HttpVersion::Http1
        };
        // Out of its box now: a field moved out would keep the box until the end of scope.
        let stream = outcome.into_stream();
        Box::pin(proxy::serve(stream, version, ctx, drain)).await;
        drop((admitted, open));
    }
}

/// The TLS handshake, with the handshake gate between the ClientHello and the first reply:
/// resumption attempts (and allowlisted clients) are served first when slots are short (the
/// ClientHello is classified only when there is a gate to schedule), and a connection
/// admitted before its country's automatic cap started meets that cap when it gets its slot.
async fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    deadline: Duration,
    arrival: &Arrival,
    admitted: &Admitted,
    country: CountryIdx,
    worker: &WorkerCtx,
) -> Result<Box<tls::HandshakeOutcome>, HandshakeError> {
    let settings = &arrival.snapshot.admission;
    let limits = settings.gate_limits();
    let classify = !admitted.allowlisted;
    let (allowlisted, exempt) = (admitted.allowlisted, admitted.exempt_from_late_cap());
    let deferred = admitted.cap_deferred;
    let slot = |resuming: bool| async move {
        // Over its country's automatic cap: refused now that its ClientHello shows it is
        // no resumption attempt (a returning client is never refused for a spike).
        if deferred && !resuming {
            return Err(RejectReason::AutoCap);
        }
        let priority = allowlisted || resuming;
        let permit = worker
            .handshakes
            .acquire(limits, Ticket { country, priority })
            .await?;
        if resuming {
            return Ok(permit);
        }
        match worker.admission().late_cap(settings, exempt, country) {
            LateCap::Pass => Ok(permit),
            LateCap::WouldRefuse => {
                worker
                    .shard()
                    .admission_rejected(country, RejectReason::AutoCapDryRun);
                Ok(permit)
            }
            // The slot goes straight back to the next waiter.
            LateCap::Refuse => Err(RejectReason::AutoCapQueued),
        }
    };
    // Boxed: the outcome holds the TLS stream, and the caller's future would otherwise keep
    // a slot of that size for it as long as the connection lives.
    tls::accept_tls_gated(tcp, config, deadline, classify, slot)
        .await
        .map(Box::new)
}

impl tls::HandshakeSlot for crate::admission::HandshakePermit {
    fn handshake_work(&self, spent: Duration) {
        self.record_work(spent);
    }
}

/// Holds a connection tarpitted in the accept loop for `tarpit_delay` (or until `drain`),
/// then closes it with a reset. Its `max_connections` slot is held as long.
async fn tarpit(
    tcp: std::net::TcpStream,
    arrival: Arrival,
    worker: Rc<WorkerCtx>,
    drain: CancellationToken,
) {
    let settings = &arrival.snapshot.admission;
    worker.admission().hold_tarpitted(settings, &drain).await;
    close_refused(&tcp, RejectReason::Tarpit);
}

/// Counts a refusal of a connection from `country`, once.
fn refuse(shard: &Shard, country: CountryIdx, reason: RejectReason) {
    shard.admission_rejected(country, reason);
    debug!(reason = reason.as_str(), "connection refused");
}

/// Prepares a refused connection's close (its owner drops it next): with a reset when the
/// reason calls for one (see `RejectReason::closes_with_reset`).
fn close_refused(tcp: &impl AsFd, reason: RejectReason) {
    if reason.closes_with_reset() {
        let _ = SockRef::from(tcp).set_linger(Some(Duration::ZERO));
    }
}

/// A connection counted as open on the worker's shard (with its ASN), and as closed when
/// this is dropped, however the connection ends.
#[derive(Debug)]
struct Open {
    shard: Arc<Shard>,
    country: CountryIdx,
}

impl Open {
    fn new(shard: &Arc<Shard>, tag: &ClientTag, client: SocketAddr) -> Self {
        shard.connection_opened(tag.country);
        if let Some(asn) = tag.asn {
            shard.asn_connection(asn, tag.country, client.ip());
        }
        Self {
            shard: Arc::clone(shard),
            country: tag.country,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.shard.connection_closed(self.country);
    }
}

#[cfg(test)]
#[path = "front_tests.rs"]
mod tests;
