//! Before TLS: the PROXY header of a new connection. A peer outside `trusted_proxies` is refused
//! before a byte is read; a trusted one must send a complete, valid header within
//! `proxy_protocol_timeout`.
//!
//! Exactly the header's bytes are taken off the socket, so the TLS ClientHello or HTTP request
//! behind it is untouched and the stream goes on to the next layer as a plain `TcpStream`. The
//! header is framed by peeking (as HAProxy does): the peer may send it in pieces, and a v1
//! line's length is only known at its `\r\n`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

use super::ClientAddressPolicy;
use super::proxy_protocol::{self, Accept, ParseError, ProxyHeader, V1_MAX_LEN};

/// Why a connection was refused before TLS or HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ClientAddrError {
    /// The listener expects a PROXY header and the TCP peer is not a trusted proxy.
    #[error("PROXY header expected from {0}, which is not in trusted_proxies")]
    Untrusted(IpAddr),
    /// No complete header within `proxy_protocol_timeout`.
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection before the header was complete.
    #[error("connection closed before a complete PROXY header")]
    Closed,
    /// The bytes are not a valid header of an accepted version.
    #[error("malformed PROXY header: {0}")]
    Malformed(#[from] ParseError),
    /// The socket failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// The client address of a new connection from `peer`: the TCP peer itself when the listener
/// takes no PROXY header, else the source the header declares (the peer again for v1
/// `UNKNOWN` and v2 `LOCAL`). IPv4-mapped IPv6 addresses come back as IPv4.
pub async fn client_address(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    policy: &ClientAddressPolicy,
) -> Result<SocketAddr, ClientAddrError> {
    let Some(accept) = policy.proxy_protocol else {
        return Ok(canonical(peer));
    };
    if !policy.trusted_proxies.contains(peer.ip()) {
        return Err(ClientAddrError::Untrusted(peer.ip()));
    }
    let limit = policy.proxy_protocol_timeout;
    let header = tokio::time::timeout(limit, read_header(tcp, accept))
        .await
        .map_err(|_| ClientAddrError::Timeout(limit))??;
    Ok(canonical(header.client_or(peer)))
}

/// Bytes peeked by `client_address_now`: a v1 line or a v2 header with up to ~200 bytes of
/// TLVs; a longer header is left to `client_address`.
pub const HEADER_PEEK: usize = 256;

/// The client address of a just-accepted connection, as far as the bytes already received
/// tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddress {
    /// Known: the listener takes no PROXY header (`header_len` 0), or its header is already
    /// in, `header_len` bytes to take off the socket ([`skip_header`]) before TLS.
    Ready {
        /// The real client address.
        client: SocketAddr,
        /// Length of the PROXY header still on the socket.
        header_len: usize,
    },
    /// Not known yet: the header is not complete (or longer than `HEADER_PEEK`), or something
    /// is wrong (untrusted peer, malformed header). [`client_address`] waits for it within
    /// `proxy_protocol_timeout`, or reports what is wrong.
    NeedHeader,
}

/// The client address of a just-accepted connection from `peer`, decided from bytes
/// already received, without waiting. `tcp` must be non-blocking.
pub fn client_address_now(
    tcp: &std::net::TcpStream,
    peer: SocketAddr,
    policy: &ClientAddressPolicy,
) -> ClientAddress {
    let Some(accept) = policy.proxy_protocol else {
        let client = canonical(peer);
        return ClientAddress::Ready {
            client,
            header_len: 0,
        };
    };
    if !policy.trusted_proxies.contains(peer.ip()) {
        return ClientAddress::NeedHeader;
    }
    let mut buf = [0u8; HEADER_PEEK];
    let Ok(n) = tcp.peek(&mut buf) else {
        return ClientAddress::NeedHeader;
    };
    match buf.get(..n).map(|b| proxy_protocol::parse(b, accept)) {
        Some(Ok(Some((header, header_len)))) => ClientAddress::Ready {
            client: canonical(header.client_or(peer)),
            header_len,
        },
        _ => ClientAddress::NeedHeader,
    }
}

/// Takes the `len` bytes of a PROXY header already framed by `client_address_now` off the
/// socket (they were peeked, so they are there), within `limit` all the same.
pub async fn skip_header(
    tcp: &mut TcpStream,
    len: usize,
    limit: Duration,
) -> Result<(), ClientAddrError> {
    if len == 0 {
        return Ok(());
    }
    let mut buf = [0u8; HEADER_PEEK];
    let bytes = buf.get_mut(..len).ok_or(ParseError::NotProxy)?;
    match tokio::time::timeout(limit, tcp.read_exact(bytes)).await {
        Err(_) => Err(ClientAddrError::Timeout(limit)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ClientAddrError::Closed),
        Ok(Err(e)) => Err(e.into()),
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Reads one PROXY header off `tcp`, and not a byte more. No time limit: the caller sets one.
pub async fn read_header(
    tcp: &mut TcpStream,
    accept: Accept,
) -> Result<ProxyHeader, ClientAddrError> {
    let len = peek_header_len(tcp, accept).await?;
    let mut small = [0u8; V1_MAX_LEN];
    let mut large = Vec::new();
    let bytes = if len <= small.len() {
        &mut small[..len]
    } else {
        // A v2 header with large TLVs: at most 64 KiB, and only from a trusted proxy.
        large.resize(len, 0);
        &mut large[..]
    };
    tcp.read_exact(bytes).await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ClientAddrError::Closed,
        _ => ClientAddrError::Io(e),
    })?;
    match proxy_protocol::parse(bytes, accept)? {
        Some((header, _)) => Ok(header),
        // These bytes were framed as a whole header when peeked; not worth a panic.
        None => Err(ParseError::NotProxy.into()),
    }
}

/// Peeks until the header's length is known (or it is known to be invalid).
async fn peek_header_len(tcp: &TcpStream, accept: Accept) -> Result<usize, ClientAddrError> {
    // tokio offers no synchronous peek, and one is needed inside `try_io` (below). std's peek
    // needs its own handle: a duplicate descriptor of the same socket, non-blocking like it.
    // It only peeks; every read goes through `tcp`.
    let peeker = std::net::TcpStream::from(tcp.as_fd().try_clone_to_owned()?);
    // 107 bytes always decide: a v1 line ends within them, and the v2 fixed part is 16.
    let mut buf = [0u8; V1_MAX_LEN];
    let mut seen = 0;
    loop {
        let ready = tcp.ready(Interest::READABLE).await?;
        let peeked = tcp.try_io(Interest::READABLE, || match peeker.peek(&mut buf)? {
            // Nothing new since the last look: report WouldBlock so that tokio clears the
            // readiness and the next `ready` waits for new bytes. tokio clears it only if no
            // event arrived meanwhile, so no wakeup is lost.
            n if n == seen && n > 0 && !ready.is_read_closed() => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            n => Ok(n),
        });
        let n = match peeked {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        };
        // End of stream, or closed after part of a header.
        if n == 0 || n == seen {
            return Err(ClientAddrError::Closed);
        }
        seen = n;
        if let Some(len) = proxy_protocol::header_len(&buf[..n], accept)? {
            return Ok(len);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use crate::net::{TrustedProxies, parse_cidr};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn policy(accept: Option<Accept>, trusted: &[&str]) -> ClientAddressPolicy {
        ClientAddressPolicy {
            proxy_protocol: accept,
            proxy_protocol_timeout: Duration::from_millis(300),
            trusted_proxies: TrustedProxies::new(
                trusted.iter().map(|t| parse_cidr(t).unwrap()).collect(),
            ),
            trust_forwarded_for: false,
        }
    }

    /// A connected pair: (client side, server side, the server's view of the peer).
    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, peer) = l.accept().await.unwrap();
        (client, server, peer)
    }

    async fn rest(server: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        server.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn header_in_pieces_leaves_what_follows() {
        let (mut client, mut server, peer) = pair().await;
        let p = policy(Some(Accept::Any), &["127.0.0.0/8"]);
        let writer = tokio::spawn(async move {
            for piece in [
                &b"PRO"[..],
                b"XY TCP4 192.0.2.10 ",
                b"127.0.0.1 5 6\r",
                b"\nHELLO",
            ] {
                client.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client
        });
        let addr = client_address(&mut server, peer, &p).await.unwrap();
        assert_eq!(addr, "192.0.2.10:5".parse().unwrap());
        assert_eq!(rest(&mut server, 5).await, b"HELLO");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn v2_with_tlvs_over_the_small_buffer_and_local() {
        let (mut client, mut server, peer) = pair().await;
        let p = policy(Some(Accept::V2), &["127.0.0.1"]);
        let src: SocketAddr = "[2001:db8::5]:7".parse().unwrap();
        let mut header = proxy_protocol::encode_v2(src, "[::1]:443".parse().unwrap());
        // One 200-byte TLV: the header no longer fits the 107-byte peek buffer.
        header[15] += 203;
        header.extend_from_slice(&[0xe0, 0, 200]);
        header.resize(header.len() + 200, 7);
        header.extend_from_slice(b"\x16\x03\x01");
        client.write_all(&header).await.unwrap();
        assert_eq!(client_address(&mut server, peer, &p).await.unwrap(), src);
        assert_eq!(rest(&mut server, 3).await, b"\x16\x03\x01");

        let (mut client, mut server, peer) = pair().await;
        let mut local = proxy_protocol::V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0, 0, 0]);
        client.write_all(&local).await.unwrap();
        assert_eq!(client_address(&mut server, peer, &p).await.unwrap(), peer);
    }

    #[tokio::test]
    async fn untrusted_silent_closed_and_malformed_are_refused() {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
        let p = policy(Some(Accept::Any), &["10.0.0.0/8"]);
        let e = client_address(&mut server, peer, &p).await.unwrap_err();
        assert!(matches!(e, ClientAddrError::Untrusted(_)), "{e}");

        let trusted = policy(Some(Accept::Any), &["127.0.0.1/32"]);
        let (_silent, mut server, peer) = pair().await;
        let started = std::time::Instant::now();
        let e = client_address(&mut server, peer, &trusted)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientAddrError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        client.shutdown().await.unwrap();
        let e = client_address(&mut server, peer, &trusted)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientAddrError::Closed), "{e}");

        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let e = client_address(&mut server, peer, &trusted)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientAddrError::Malformed(ParseError::NotProxy)),
            "{e}"
        );
    }

    #[tokio::test]
    async fn off_keeps_the_peer_and_reads_nothing() {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
        let addr = client_address(&mut server, peer, &policy(None, &[]))
            .await
            .unwrap();
        assert_eq!(addr, peer);
        assert_eq!(rest(&mut server, 5).await, b"PROXY");
    }
    /// Waits until `n` bytes are readable on `server`, without reading them.
    async fn wait_for(server: &TcpStream, n: usize) {
        let mut buf = vec![0; n];
        for _ in 0..200 {
            if server.peek(&mut buf).await.unwrap() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} bytes never arrived");
    }

    #[tokio::test]
    async fn a_header_already_in_is_ready_and_only_its_bytes_are_skipped() {
        let trusted = policy(Some(Accept::Any), &["127.0.0.1/32"]);
        let (mut client, server, peer) = pair().await;
        let line = b"PROXY TCP4 192.0.2.10 127.0.0.1 5 6\r\n";
        client.write_all(line).await.unwrap();
        client.write_all(b"HELLO").await.unwrap();
        wait_for(&server, line.len() + 5).await;
        let std_server = server.into_std().unwrap();
        let ClientAddress::Ready {
            client: addr,
            header_len: len,
        } = client_address_now(&std_server, peer, &trusted)
        else {
            panic!("the header is in");
        };
        assert_eq!((addr, len), ("192.0.2.10:5".parse().unwrap(), line.len()));
        // Peeking took nothing: the header is skipped, and what follows is intact.
        let mut server = TcpStream::from_std(std_server).unwrap();
        skip_header(&mut server, len, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(rest(&mut server, 5).await, b"HELLO");

        // Without PROXY protocol the peer is the client and nothing is to be skipped.
        let (_client, server, peer) = pair().await;
        let std_server = server.into_std().unwrap();
        let off = client_address_now(&std_server, peer, &policy(None, &[]));
        let ready = ClientAddress::Ready {
            client: peer,
            header_len: 0,
        };
        assert_eq!(off, ready);
    }

    #[tokio::test]
    async fn a_partial_untrusted_or_malformed_header_needs_the_header_read() {
        let trusted = policy(Some(Accept::Any), &["127.0.0.1/32"]);
        // Nothing yet, then half a header: not decided now (the task waits for the rest).
        let (mut client, server, peer) = pair().await;
        let std_server = server.into_std().unwrap();
        assert_eq!(
            client_address_now(&std_server, peer, &trusted),
            ClientAddress::NeedHeader
        );
        client.write_all(b"PROXY TCP4 192.0.2.10 ").await.unwrap();
        let server = TcpStream::from_std(std_server).unwrap();
        wait_for(&server, 10).await;
        let std_server = server.into_std().unwrap();
        assert_eq!(
            client_address_now(&std_server, peer, &trusted),
            ClientAddress::NeedHeader
        );

        // Untrusted peer and garbage: left to `client_address`, which reports them.
        let (mut client, server, peer) = pair().await;
        client.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
        wait_for(&server, 15).await;
        let std_server = server.into_std().unwrap();
        let untrusted = policy(Some(Accept::Any), &["10.0.0.0/8"]);
        assert_eq!(
            client_address_now(&std_server, peer, &untrusted),
            ClientAddress::NeedHeader
        );
        let (mut client, server, peer) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        wait_for(&server, 18).await;
        let std_server = server.into_std().unwrap();
        assert_eq!(
            client_address_now(&std_server, peer, &trusted),
            ClientAddress::NeedHeader
        );
    }
}
