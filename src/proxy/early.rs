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
use crate::admission::RejectReason;
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
    let limits = settings.gate_limits();
    if listener.tls.is_some()
        && !admitted.allowlisted
        && worker.handshakes.refuses_now(limits, tag.country)
    {
        let reason = RejectReason::HandshakeQueueFull;
        // Counted as its task would have: admitted (opened), then refused by the gate, which
        // is not a refusal before open (the offered rate counts it once, as opened).
        worker.shard.connection_opened(tag.country);
        if let Some(asn) = tag.asn {
            worker.shard.asn_connection(asn, tag.country, client.ip());
        }
        worker.shard.connection_closed(tag.country);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;
    use crate::net::proxy_protocol::encode_v2;
    use crate::proxy::test_support::{worker, worker_for};

    /// A connected pair: (client, server side non-blocking as accepted, the server's peer).
    fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server, peer)
    }

    fn verdict(w: &WorkerCtx, server: TcpStream, peer: SocketAddr) -> AtAccept {
        let snapshot = w.snapshot.current();
        let listener = snapshot.listeners[0].clone();
        at_accept(server, peer, &snapshot, &listener, w)
    }

    fn rejected(w: &WorkerCtx, reason: RejectReason) -> u64 {
        let mut all = [0; RejectReason::COUNT];
        for c in 0..crate::geo::country::COUNTRY_COUNT {
            let mut one = [0; RejectReason::COUNT];
            w.shard
                .add_rejected(crate::stats::CountryIdx(c as u16), &mut one);
            for (a, b) in all.iter_mut().zip(one) {
                *a += b;
            }
        }
        all[reason as usize]
    }

    #[test]
    fn a_refused_connection_is_reset_at_accept_and_an_admitted_one_carries_its_verdict() {
        let w = worker("[admission.countries.default]\nnew_connections_per_sec = 1\nburst = 1");
        let (_client, server, peer) = pair();
        match verdict(&w, server, peer) {
            AtAccept::Admitted(_, r) => {
                assert_eq!((r.client, r.header_len), (peer, 0));
                assert!(!r.admitted.allowlisted);
            }
            other => panic!("{other:?}"),
        }
        let (mut client, server, peer) = pair();
        assert!(matches!(verdict(&w, server, peer), AtAccept::Refused));
        assert_eq!(rejected(&w, RejectReason::RateLimit), 1);
        // Closed with a reset, before a byte was read or written.
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 1];
        let e = client.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }

    #[test]
    fn a_proxy_header_already_in_is_decided_and_one_still_coming_is_left_to_the_task() {
        let source = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                      default_pool = \"api\"\nproxy_protocol = \"v2\"\n\
                      trusted_proxies = [\"127.0.0.1/32\"]\n\
                      [pools.api]\n[[pools.api.backends]]\naddress = \"127.0.0.1:9001\"\n";
        let w = worker_for(source);
        let (_silent, server, peer) = pair();
        assert!(matches!(verdict(&w, server, peer), AtAccept::Undecided(_)));

        let (mut client, server, peer) = pair();
        let src: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        let header = encode_v2(src, "127.0.0.1:443".parse().unwrap());
        client.write_all(&header).unwrap();
        client.write_all(b"rest").unwrap();
        // Until both are in (loopback: at once, but not before the write returns).
        let mut peeked = [0u8; 64];
        for _ in 0..200 {
            if server.peek(&mut peeked).unwrap_or(0) >= header.len() + 4 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match verdict(&w, server, peer) {
            AtAccept::Admitted(_, r) => assert_eq!((r.client, r.header_len), (src, header.len())),
            other => panic!("{other:?}"),
        }
    }
}
