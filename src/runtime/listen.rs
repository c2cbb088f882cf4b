//! Listening sockets: one per worker per listener, all on the same port via SO_REUSEPORT,
//! with `TCP_DEFER_ACCEPT`.

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
    if let Err(e) = defer_accept(&socket) {
        // Served all the same: connections then reach accept before their first bytes.
        tracing::warn!(%addr, error = %e, "cannot set TCP_DEFER_ACCEPT");
    }
    Ok(socket.into())
}

/// How long the kernel holds a new connection that has sent nothing before handing it to
/// accept anyway (levee's clients always speak first: a ClientHello, a PROXY header or a
/// request).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Sets `TCP_DEFER_ACCEPT` (as nginx's `deferred` and HAProxy's `defer-accept` do): the
/// kernel queues a connection for accept once its first bytes have arrived, so the accept
/// loop finds the PROXY header and the ClientHello already in and can refuse a flood's
/// connection there, without a task or an epoll registration (`runtime::front`). Neither
/// std (unstable) nor socket2 sets this option, hence the one `unsafe` call of the crate.
#[allow(unsafe_code)]
fn defer_accept(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value: libc::c_int = DEFER_ACCEPT_SECS;
    // SAFETY: a valid socket descriptor, an option of type int, a pointer to a live int and
    // its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
