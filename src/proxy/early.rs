//! Admission at accept, in the accept loop itself: no task for a connection refused there.
//!
//! Under a flood of new connections most of them are refused before TLS, and a task per
//! refused connection (spawning a large future, registering the socket with epoll and
//! removing it again, polling it) cost as much as the refusal. When a new connection's PROXY
//! header is already in (the usual case under load: the client sends it with its first
//! flight, and the connection waited in the accept queue), the accept loop decides at once:
//! a refused connection is closed there, unregistered; an admitted one is spawned with what
//! was learned (`Resolved`), so its task neither reads the header twice nor decides again.
//! A connection whose header has not arrived is left to its task, which waits for it within
//! `proxy_protocol_timeout` and decides the same way.

use std::net::SocketAddr;

use socket2::SockRef;
use tracing::debug;

use super::admit::{self, Admitted};
use super::conn::WorkerCtx;
use crate::admission::{GateLimits, RejectReason};
use crate::config::{Listener, Snapshot};
use crate::geo::ClientTag;
use crate::net;

/// What the accept loop learned about an admitted connection.
#[derive(Debug)]
pub struct Resolved {
    /// The real client address (from the PROXY header, else the TCP peer).
    pub client: SocketAddr,
    /// Length of the PROXY header still to be taken off the socket (0: none).
    pub header_len: usize,
    /// The client's GeoIP tag.
    pub tag: ClientTag,
    /// Its admission (per-IP slot held, allowlisted or not).
    pub admitted: Admitted,
}

/// The accept loop's verdict on a new connection.
#[derive(Debug)]
pub enum AtAccept {
    /// Refused and closed (counted by country and reason).
    Refused,
    /// Refused by a bucket whose action is `tarpit`: hold it, then close it (its place among
    /// the tarpitted connections is taken).
    Tarpit(std::net::TcpStream),
    /// Let in: serve it with what was learned.
    Admitted(std::net::TcpStream, Box<Resolved>),
    /// Not decided here: its task reads the PROXY header and decides.
    Undecided(std::net::TcpStream),
}

/// Decides on a just-accepted, non-blocking connection from `peer` if its PROXY header (when
/// the listener takes one) has already arrived: admission (allowlist, buckets, automatic
/// cap, per-IP cap), then, for TLS listeners with a handshake cap, whether the fair
/// handshake queue would refuse it now. A refused connection is closed here, before anything
/// is read from it.
pub fn at_accept(
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    snapshot: &Snapshot,
    listener: &Listener,
    worker: &WorkerCtx,
) -> AtAccept {
    let Some((client, header_len)) = net::client_address_now(&tcp, peer, &listener.client_address)
    else {
        return AtAccept::Undecided(tcp);
    };
    let tag = snapshot.client_tag(client.ip());
    let settings = &snapshot.admission;
    let admitted = match admit::decide(worker, settings, client.ip(), &tag) {
        Ok(admitted) => admitted,
        Err(refusal) if refusal.tarpit => return AtAccept::Tarpit(tcp),
        Err(refusal) => {
            close_refused(tcp, refusal.reason);
            return AtAccept::Refused;
        }
    };
    let limits = GateLimits {
        in_flight: settings.max_handshakes_in_flight,
        queue: settings.handshake_queue,
        timeout: settings.handshake_queue_timeout,
    };
    if listener.tls.is_some()
        && !admitted.allowlisted
        && worker.handshakes.refuses_now(limits, tag.country)
    {
        let reason = RejectReason::HandshakeQueueFull;
        worker.shard.admission_rejected(tag.country, reason);
        debug!(%client, reason = reason.as_str(), "refused at accept");
        close_refused(tcp, reason);
        return AtAccept::Refused;
    }
    let resolved = Resolved {
        client,
        header_len,
        tag,
        admitted,
    };
    AtAccept::Admitted(tcp, Box::new(resolved))
}

/// Closes a refused connection: with a reset when the reason calls for one.
pub fn close_refused(tcp: std::net::TcpStream, reason: RejectReason) {
    if reason.closes_with_reset() {
        let _ = SockRef::from(&tcp).set_linger(Some(std::time::Duration::ZERO));
    }
    drop(tcp);
}

/// Holds a connection tarpitted at accept for `tarpit_delay` (or until `drain`), then closes
/// it with a reset. Its `max_connections` slot is held as long.
pub async fn tarpit(
    tcp: std::net::TcpStream,
    permit: crate::admission::ConnectionPermit,
    worker: std::rc::Rc<WorkerCtx>,
    snapshot: std::rc::Rc<crate::runtime::SnapshotHandle>,
    drain: tokio_util::sync::CancellationToken,
) {
    admit::hold_tarpitted(&worker.admission, &snapshot.admission, &drain).await;
    close_refused(tcp, RejectReason::Tarpit);
    drop(permit);
}
