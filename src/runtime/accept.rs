//! One listener's accept loop on a worker.
//!
//! Connections are accepted with `accept4` on the listening socket itself (readiness from a
//! tokio `AsyncFd`), not through `tokio::net::TcpListener`, so that a new socket is a plain
//! non-blocking `std` socket until levee decides to serve it: a connection refused at accept
//! (`max_connections`, or by admission when its PROXY header is already in: see
//! `runtime::front`) is closed without being registered with epoll or given a task. Under a flood of new connections that
//! is most of them, and registering, spawning and deregistering cost as much as refusing.
//!
//! The loop accepts at most `ACCEPT_BATCH` connections, then yields until the runtime has
//! polled for I/O: requests on established connections are served between batches instead
//! of waiting behind a whole accept queue of newcomers.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tracing::{debug, info};

use super::front::Front;
use crate::config::SnapshotHandle;

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

/// Accepts connections on `listener` until the task is aborted, or its listener is gone
/// from the config; each one goes to the front (`front::arrive`).
pub async fn accept_loop(listener: Listening, front: Front) {
    // The last snapshot that had this listener, and the listener's index in it: a connection
    // accepted after a reload removed the listener, but before this loop is told to stop, is
    // still served (on it).
    let mut last: Option<(Rc<SnapshotHandle>, usize)> = None;
    loop {
        let mut ready = match listener.readable().await {
            Ok(ready) => ready,
            Err(e) => {
                debug!(listener = %front.name, error = %e, "accept readiness failed");
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
            let Some(transport_peer) = addr.as_socket() else {
                continue;
            };
            let newest = front.worker.http.snapshot.current();
            if last
                .as_ref()
                .is_none_or(|(seen, _)| !Rc::ptr_eq(seen, &newest))
            {
                let name = &front.name;
                if let Some(i) = newest.listeners.iter().position(|l| l.name == *name) {
                    last = Some((Rc::clone(&newest), i));
                }
            }
            let Some((snapshot, index)) = &last else {
                info!(listener = %front.name, "listener not configured; closing its socket");
                return;
            };
            let tcp = std::net::TcpStream::from(socket);
            front.arrive(tcp, transport_peer, snapshot, *index);
        }
        drop(ready);
        if let Some(e) = failed {
            // A connection aborted before it was accepted is no reason to wait; EMFILE,
            // ENFILE, ENOBUFS and friends are: back off instead of spinning.
            debug!(listener = %front.name, error = %e, "accept failed");
            if e.kind() != io::ErrorKind::ConnectionAborted {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        } else if accepted == ACCEPT_BATCH {
            // More may be waiting: let I/O be polled and established connections run first.
            tokio::task::yield_now().await;
        }
    }
}
