//! The front's screening in the accept loop, on real sockets: a refusal is reset before a
//! byte, an admission carries its verdict, a PROXY header already in is decided at once and
//! one still coming is left to the connection's task.

#![allow(clippy::unwrap_used)] // tests may panic

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::*;
use crate::admission::Admission;
use crate::config::load_str;
use crate::config::validate::test_support::{MINIMAL, context};
use crate::geo::country;
use crate::net::proxy_protocol::encode_v2;

/// A front (worker 0, its own shard and admission state) for the first listener of `source`.
fn front_for(source: &str) -> Front {
    let snapshot = load_str(source, &context(Path::new("."))).unwrap();
    let shard = Arc::new(Shard::new(0, country::COUNTRY_COUNT));
    let config = Arc::new(ArcSwap::from_pointee(snapshot));
    let admission = Arc::new(Admission::default());
    let log = crate::access_log::WorkerLog::discarding();
    let worker = WorkerCtx::new(0, shard, admission, config, log);
    Front {
        name: "web".into(),
        worker: Rc::new(worker),
        connections: TaskTracker::new(),
        drain: CancellationToken::new(),
    }
}

/// A connected pair: (client, server side non-blocking as accepted, the server's peer).
fn pair() -> (TcpStream, TcpStream, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, peer) = l.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    (client, server, peer)
}

fn screen(front: &Front, server: TcpStream, peer: SocketAddr) -> Screened {
    let snapshot = front.worker.http.snapshot.current();
    front.screen(server, peer, &snapshot, 0)
}

fn rejected(front: &Front, reason: RejectReason) -> u64 {
    let mut all = [0; RejectReason::COUNT];
    for c in country::all() {
        let mut one = [0; RejectReason::COUNT];
        front.worker.shard().add_rejected(c, &mut one);
        for (a, b) in all.iter_mut().zip(one) {
            *a += b;
        }
    }
    all[reason as usize]
}

#[test]
fn a_refused_connection_is_reset_in_the_accept_loop_and_an_admitted_one_carries_its_verdict() {
    let admission = "[admission.countries.default]\nnew_connections_per_sec = 1\nburst = 1";
    let front = front_for(&format!("{MINIMAL}[admission]\n{admission}\n"));
    let (_client, server, peer) = pair();
    match screen(&front, server, peer) {
        Screened::Serve(_, _, Stage::Admitted { entry, header_len }) => {
            assert_eq!((entry.client, header_len), (peer, 0));
            assert!(!entry.admitted.allowlisted);
        }
        other => panic!("{other:?}"),
    }
    let (mut client, server, peer) = pair();
    assert!(matches!(screen(&front, server, peer), Screened::Closed));
    assert_eq!(rejected(&front, RejectReason::RateLimit), 1);
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
    let front = front_for(source);
    let (_silent, server, peer) = pair();
    assert!(matches!(
        screen(&front, server, peer),
        Screened::Serve(_, _, Stage::NeedHeader)
    ));

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
    match screen(&front, server, peer) {
        Screened::Serve(_, _, Stage::Admitted { entry, header_len }) => {
            assert_eq!((entry.client, header_len), (src, header.len()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn max_connections_is_refused_first_and_an_admitted_connection_is_counted_open_once() {
    let front = front_for(&format!("{MINIMAL}[admission]\nmax_connections = 1\n"));
    let (_client, server, peer) = pair();
    let admitted = screen(&front, server, peer);
    assert!(matches!(admitted, Screened::Serve(..)));
    let (_second, server, peer) = pair();
    assert!(matches!(screen(&front, server, peer), Screened::Closed));
    assert_eq!(rejected(&front, RejectReason::MaxConnections), 1);
    let totals = crate::stats::totals([front.worker.shard()]);
    assert_eq!((totals.connections, totals.connections_active), (1, 1));
    drop(admitted);
    let totals = crate::stats::totals([front.worker.shard()]);
    assert_eq!(
        totals.connections_active, 0,
        "closed when the connection is dropped"
    );
}
