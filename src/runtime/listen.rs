//! Listening sockets: one per worker per listener, all on the same port via SO_REUSEPORT.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Opens `count` listening sockets on `addr` with SO_REUSEPORT so the kernel spreads
/// connections across them. When `addr` has port 0, the first socket picks the port and
/// the others bind the same one. Returns the sockets and the actual address.
pub fn bind_reuseport_group(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let first = bind_one(addr, backlog)?;
    let actual = first.local_addr()?;
    let mut sockets = Vec::with_capacity(count);
    sockets.push(first);
    for _ in 1..count {
        sockets.push(bind_one(actual, backlog)?);
    }
    Ok((sockets, actual))
}

fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_shares_one_ephemeral_port() {
        let (socks, addr) = bind_reuseport_group("127.0.0.1:0".parse().unwrap(), 3, 64).unwrap();
        assert_ne!(addr.port(), 0);
        for s in &socks {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
    }
}
