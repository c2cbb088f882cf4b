//! What a connection's requests share ([`ConnCtx`]: its client, tag, listener and the
//! snapshot it routes on), and what a worker's connections share ([`WorkerHttp`]).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use super::headers::ClientSide;
use super::idle::IdleTracker;
use super::request_id::RequestIds;
use super::service::RequestRecord;
use super::tunnel::Tunnel;
use super::upstream::UpstreamPool;
use crate::admission::Admission;
use crate::config::{Listener, LocalSnapshot, Snapshot, SnapshotHandle};
use crate::geo::ClientTag;
use crate::stats::Shard;

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
    /// This worker's maker of `X-Request-Id`s.
    pub request_ids: RequestIds,
    /// This worker's access-log buffer.
    pub access_log: Rc<crate::access_log::WorkerLog>,
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
    /// An HTTP/1 request's tunnel, between the backend's `101` and the connection's task
    /// taking over the client stream (`proxy::conn`). Emptied when the connection ends.
    pub pending_tunnel: RefCell<Option<Tunnel<RequestRecord>>>,
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
            trusted: crate::net::trusts_forwarded(&listener.client_address, client.ip()),
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
            pending_tunnel: RefCell::new(None),
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
