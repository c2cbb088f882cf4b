//! The worker's upstream connection pool: HTTP/1.1 keep-alive connections per backend.
//!
//! Owned by one worker (`Rc`, `RefCell`), so checking a connection out or in takes no lock.
//! A connection goes back to the pool when its response body has been read to the end.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::error::ProxyError;
use super::prefixed::Prefixed;
use super::quick_ack::{AckRequest, QuickAck};
use super::request_body::{BodyTooLarge, RequestBody};
use crate::lb::PoolTimeouts;

/// Most idle connections kept per backend per worker.
const MAX_IDLE_PER_BACKEND: usize = 1024;

type Sender = http1::SendRequest<RequestBody>;

/// An upstream connection: its request sender, the way to ask its socket for an ACK, and
/// where its socket is handed over if the backend switches protocols.
struct Conn {
    sender: Sender,
    ack: Rc<AckRequest>,
    handoff: Rc<Handoff>,
}

/// What hyper returns of a connection whose backend switched protocols (or that ended).
type Ended = http1::Parts<TokioIo<QuickAck>>;

/// Armed by a request that asks to upgrade: the connection's driver sends its socket here
/// once hyper lets go of it.
#[derive(Default)]
struct Handoff {
    armed: RefCell<Option<oneshot::Sender<Ended>>>,
}

/// The socket of a connection whose backend switched protocols, with the bytes hyper had
/// read past the `101` put back in front.
pub type Switched = Prefixed<QuickAck>;

/// Resolves to the backend's socket once its `101` is in and hyper has let go of it.
#[derive(Debug)]
pub struct UpgradeWait(oneshot::Receiver<Ended>);

impl UpgradeWait {
    /// The switched socket, or `None` if the connection ended another way.
    pub async fn switched(self) -> Option<Switched> {
        let parts = self.0.await.ok()?;
        Some(Prefixed::new(parts.read_buf, parts.io.into_inner()))
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A worker's pool of idle upstream connections, keyed by backend address.
#[derive(Default)]
pub struct UpstreamPool {
    idle: RefCell<HashMap<SocketAddr, Vec<Idle>>>,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("backends", &self.idle.borrow().len())
            .finish()
    }
}

/// A connection in use; `release` puts it back into the pool it came from.
pub struct PooledSender {
    pool: Rc<UpstreamPool>,
    backend: SocketAddr,
    conn: Conn,
    upgrade: Option<UpgradeWait>,
}

impl PooledSender {
    /// Returns the connection to the pool (it must have finished its response).
    pub fn release(self) {
        if self.conn.sender.is_closed() {
            return;
        }
        let mut idle = self.pool.idle.borrow_mut();
        let list = idle.entry(self.backend).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle {
                conn: self.conn,
                since: Instant::now(),
            });
        }
    }

    /// The wait for the socket, when the request asked to upgrade (taken once; the
    /// connection is never pooled again after a `101`).
    pub fn take_upgrade(&mut self) -> Option<UpgradeWait> {
        self.upgrade.take()
    }

    /// The response body has no more bytes yet: the socket ACKs what it has read now, so
    /// a backend whose Nagle holds the rest for that ACK sends it (see `quick_ack`).
    pub fn waiting_for_body(&self) {
        self.conn.ack.request();
    }
}

impl UpstreamPool {
    /// An empty pool.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Drops idle connections older than `max_idle` and closed ones.
    pub fn sweep(&self, max_idle: std::time::Duration) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            list.retain(|c| !c.conn.sender.is_closed() && now.duration_since(c.since) < max_idle);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    fn take_idle(&self, backend: SocketAddr, timeouts: &PoolTimeouts) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&backend)?;
        while let Some(c) = list.pop() {
            if !c.conn.sender.is_closed() && c.since.elapsed() < timeouts.idle {
                return Some(c.conn);
            }
        }
        None
    }

    /// Sends `req` to `backend`, reusing an idle connection when one is alive.
    ///
    /// A pooled connection that turns out closed before the request was written is
    /// discarded and the request goes out on a fresh connection, so a backend closing
    /// idle keep-alives never costs a client request. When the request was never written
    /// (connect failed), it comes back in `SendError::NotSent` so the caller may retry it.
    pub async fn send(
        self: &Rc<Self>,
        backend: SocketAddr,
        mut req: Request<RequestBody>,
        timeouts: &PoolTimeouts,
    ) -> Result<(Response<Incoming>, PooledSender), SendError> {
        loop {
            let (mut conn, reused) = match self.take_idle(backend, timeouts) {
                Some(s) => (s, true),
                None => match connect(backend, timeouts).await {
                    Ok(s) => (s, false),
                    Err(e) => return Err(SendError::NotSent(e, Box::new(req))),
                },
            };
            if reused && conn.sender.ready().await.is_err() {
                continue;
            }
            // Only a request asking to upgrade still has `Upgrade` here (hop-by-hop otherwise).
            let upgrade = req.headers().contains_key(http::header::UPGRADE).then(|| {
                let (tx, rx) = oneshot::channel();
                *conn.handoff.armed.borrow_mut() = Some(tx);
                UpgradeWait(rx)
            });
            let head = head_acked(conn.sender.try_send_request(req), &conn.ack);
            let sent = tokio::time::timeout(timeouts.response, head).await;
            match sent {
                Err(_) => return Err(SendError::Sent(ProxyError::ResponseTimeout)),
                Ok(Ok(resp)) => {
                    let pooled = PooledSender {
                        pool: Rc::clone(self),
                        backend,
                        conn,
                        upgrade,
                    };
                    return Ok((resp, pooled));
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    Some(unsent) => {
                        return Err(SendError::NotSent(
                            classify(e.into_error()),
                            Box::new(unsent),
                        ));
                    }
                    None => return Err(SendError::Sent(classify(e.into_error()))),
                },
            }
        }
    }
}

/// Why `UpstreamPool::send` failed, and whether the request can still be sent elsewhere.
#[derive(Debug)]
pub enum SendError {
    /// Nothing of the request reached the backend; here it is back.
    NotSent(ProxyError, Box<Request<RequestBody>>),
    /// The request was (at least partly) written, or the failure came after it.
    Sent(ProxyError),
}

/// Opens a new HTTP/1.1 connection to `backend` and spawns its driver on this worker. Its
/// socket ACKs what it has read when a response is waited for (`QuickAck`: no delayed-ACK
/// stall with backends that write head and body apart).
async fn connect(backend: SocketAddr, timeouts: &PoolTimeouts) -> Result<Conn, ProxyError> {
    let tcp = tokio::time::timeout(timeouts.connect, TcpStream::connect(backend))
        .await
        .map_err(|_| ProxyError::ConnectTimeout)?
        .map_err(ProxyError::Connect)?;
    // Nagle would hold small request heads back; latency matters more here.
    let _ = tcp.set_nodelay(true);
    let ack = Rc::new(AckRequest::default());
    let (sender, driver) = http1::Builder::new()
        .handshake(TokioIo::new(QuickAck::new(tcp, Rc::clone(&ack))))
        .await
        .map_err(ProxyError::Upstream)?;
    // Run without shutdown: when an upgrade was asked for (`send` armed the hand-off) and
    // the backend switched, the socket goes to the tunnel (`proxy::tunnel`); else it closes.
    let handoff = Rc::new(Handoff::default());
    let driver_handoff = Rc::clone(&handoff);
    tokio::task::spawn_local(async move {
        match driver.without_shutdown().await {
            Ok(parts) => {
                if let Some(waiting) = driver_handoff.armed.borrow_mut().take() {
                    let _ = waiting.send(parts);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, %backend, "upstream connection ended with an error");
            }
        }
    });
    Ok(Conn {
        sender,
        ack,
        handoff,
    })
}

/// First wait for a response head after which the socket ACKs what it has read of it;
/// doubled after each, up to `HEAD_ACK_LAST`.
const HEAD_ACK_FIRST: Duration = Duration::from_millis(2);
/// Longest wait between two such ACKs (the delayed-ACK timer itself is 40 ms).
const HEAD_ACK_LAST: Duration = Duration::from_millis(16);

/// Waits for a response head; once part of it has been read and the rest is slow to come,
/// ACKs what the socket has read 2, 6, 14, 30, 46... ms after that first part, so a backend
/// that writes its head in pieces apart (Nagle holding the rest for the ACK of the first)
/// is not held for the delayed-ACK timer either. No timer is armed before a first part
/// arrives: a head read whole (the usual case) costs none, where a timer per request had
/// cost an eventfd write to the runtime's driver (a new earliest deadline unparks it).
async fn head_acked<F: Future>(head: F, ack: &AckRequest) -> F::Output {
    tokio::pin!(head);
    let seen = ack.reads();
    tokio::select! {
        biased;
        out = &mut head => return out,
        () = ack.bytes_after(seen) => {}
    }
    let mut wait = HEAD_ACK_FIRST;
    loop {
        tokio::select! {
            biased;
            out = &mut head => return out,
            () = tokio::time::sleep(wait) => {
                ack.request();
                wait = (wait * 2).min(HEAD_ACK_LAST);
            }
        }
    }
}

/// Maps a hyper client error to the side that caused it.
fn classify(e: hyper::Error) -> ProxyError {
    if !e.is_user() {
        return ProxyError::Upstream(e);
    }
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if s.is::<BodyTooLarge>() {
            return ProxyError::BodyTooLarge;
        }
        if s.is::<crate::admission::BodyTooSlow>() {
            return ProxyError::BodyTooSlow;
        }
        source = s.source();
    }
    ProxyError::ClientBody(e)
}
