//! One listener's accept loop on a worker.
//!
//! Connections are accepted with `accept4` on the listening socket itself (readiness from a
//! tokio `AsyncFd`), not through `tokio::net::TcpListener`, so that a new socket is a plain
//! non-blocking `std` socket until levee decides to serve it: a connection refused at accept
//! (`max_connections`, or by `proxy::early` when its PROXY header is already in) is closed
//! without being registered with epoll or given a task. Under a flood of new connections that
//! is most of them, and registering, spawning and deregistering cost as much as refusing.
//!
//! The loop accepts at most `ACCEPT_BATCH` connections, then yields until the runtime has
//! polled for I/O: requests on established connections are served between batches instead
//! of waiting behind a whole accept queue of newcomers.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::SnapshotHandle;
use crate::admission::RejectReason;
use crate::config::Listener;
use crate::proxy::early::{self, AtAccept};
use crate::proxy::{Accepted, WorkerCtx, serve_connection};

/// Pause after an accept error such as EMFILE, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Connections accepted before the loop lets the worker's other tasks run.
const ACCEPT_BATCH: usize = 16;

/// A listening socket registered with this worker's runtime.
pub type Listening = AsyncFd<Socket>;

/// Registers a bound, listening socket with the current runtime (made non-blocking first).
pub fn listening(socket: std::net::TcpListener) -> io::Result<Listening> {
    socket.set_nonblocking(true)?;
    // `AsyncFd::new` is deprecated in favour of the `unsafe` `register` because a `T` could
    // hand out a descriptor it does not own; this crate forbids `unsafe`, and a
    // `socket2::Socket` owns its descriptor for as long as the `AsyncFd` lives, which is what
    // the registration needs.
    #[allow(deprecated)]
    AsyncFd::new(Socket::from(socket))
}

/// What an accept loop serves its connections with.
pub struct AcceptCtx {
    /// The listener's name in the config.
    pub name: String,
    /// The worker.
    pub worker: Rc<WorkerCtx>,
    /// Tracks the connection tasks, for the graceful shutdown.
    pub connections: TaskTracker,
    /// Cancelled when the listener's connections must drain.
    pub drain: CancellationToken,
}

/// Accepts connections on `listener` until the task is aborted, or its listener is gone
/// from the config.
pub async fn accept_loop(listener: Listening, ctx: AcceptCtx) {
    // The last snapshot that had this listener: a connection accepted after a reload removed
    // the listener, but before this loop is told to stop, is still served (on it).
    let mut last: Option<(Rc<SnapshotHandle>, Arc<Listener>)> = None;
    loop {
        let mut ready = match listener.readable().await {
            Ok(ready) => ready,
            Err(e) => {
                debug!(listener = %ctx.name, error = %e, "accept readiness failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let mut accepted = 0;
        let mut failed = None;
        while accepted < ACCEPT_BATCH {
            let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
            let (socket, addr) = match ready.try_io(|fd| fd.get_ref().accept4(flags)) {
                // Drained: readiness is cleared; wait for the next connection.
                Err(_would_block) => break,
                Ok(Ok(accepted)) => accepted,
                Ok(Err(e)) => {
                    failed = Some(e);
                    break;
                }
            };
            accepted += 1;
            let Some(peer) = addr.as_socket() else {
                continue;
            };
            let newest = ctx.worker.snapshot.current();
            if last
                .as_ref()
                .is_none_or(|(seen, _)| !Rc::ptr_eq(seen, &newest))
            {
                if let Some(l) = newest.listener(&ctx.name) {
                    last = Some((Rc::clone(&newest), Arc::clone(l)));
                }
            }
            let Some((snapshot, l)) = &last else {
                info!(listener = %ctx.name, "listener not configured; closing its socket");
                return;
            };
            on_accept(std::net::TcpStream::from(socket), peer, snapshot, l, &ctx);
        }
        drop(ready);
        if let Some(e) = failed {
            // A connection aborted before it was accepted is no reason to wait; EMFILE,
            // ENFILE, ENOBUFS and friends are: back off instead of spinning.
            debug!(listener = %ctx.name, error = %e, "accept failed");
            if e.kind() != io::ErrorKind::ConnectionAborted {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        } else if accepted == ACCEPT_BATCH {
            // More may be waiting: let I/O be polled and established connections run first.
            tokio::task::yield_now().await;
        }
    }
}

/// Admits or refuses one accepted connection, and spawns the task of one let in.
fn on_accept(
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    snapshot: &Rc<SnapshotHandle>,
    listener: &Arc<Listener>,
    ctx: &AcceptCtx,
) {
    let worker = &ctx.worker;
    // max_connections: refused here, before anything is read (PROXY header or TLS).
    let limit = snapshot.admission.max_connections;
    let Some(permit) = worker.admission.connections.try_acquire(limit) else {
        let country = snapshot.client_tag(peer.ip()).country;
        worker
            .shard
            .admission_rejected(country, RejectReason::MaxConnections);
        debug!(listener = %ctx.name, %peer, "refused: max_connections");
        early::close_refused(tcp, RejectReason::MaxConnections);
        return;
    };
    let (tcp, resolved) = match early::at_accept(tcp, peer, snapshot, listener, worker) {
        AtAccept::Refused => return,
        AtAccept::Tarpit(tcp) => {
            let drain = ctx.drain.clone();
            let held = early::tarpit(tcp, permit, Rc::clone(worker), Rc::clone(snapshot), drain);
            ctx.connections.spawn_local(held);
            return;
        }
        AtAccept::Admitted(tcp, resolved) => (tcp, Some(resolved)),
        AtAccept::Undecided(tcp) => (tcp, None),
    };
    let _ = tcp.set_nodelay(true);
    let tcp = match TcpStream::from_std(tcp) {
        Ok(tcp) => tcp,
        Err(e) => {
            debug!(listener = %ctx.name, %peer, error = %e, "cannot register connection");
            return;
        }
    };
    let accepted = Accepted {
        tcp,
        permit,
        peer,
        resolved,
    };
    ctx.connections.spawn_local(serve_connection(
        accepted,
        Rc::clone(snapshot),
        Arc::clone(listener),
        Rc::clone(worker),
        ctx.drain.clone(),
    ));
}
