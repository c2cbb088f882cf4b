//! A backend of the shape Python's `http.server` and many dev servers have: no TCP_NODELAY,
//! the response head and the body in separate `send`s (or a chunked body in many small
//! ones). With Nagle on, each small send after the first waits for the ACK of what is in
//! flight, so a proxy that delays its ACKs stalls every response by its delayed-ACK timer.
//!
//! Paths: `/split` (head, then a 64-byte body), `/chunks` (head, then 8 chunks and the last
//! chunk, each its own send), `/pieces` (the status line, each header line, the blank line
//! and a 32-byte body, each its own send). `?close` answers with `Connection: close` and
//! closes, as an HTTP/1.0 `http.server` does after every response.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running split-write backend; stops accepting when dropped.
pub struct SplitBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SplitBackend {
    /// Starts one on an ephemeral loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        std::thread::spawn(move || serve(tcp));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SplitBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one connection until the peer closes, a `?close` request, or an error.
fn serve(mut tcp: TcpStream) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        pending.drain(..end);
        let target = head.split(' ').nth(1).unwrap_or("/").to_string();
        let close = target.ends_with("?close");
        let connection = if close { "close" } else { "keep-alive" };
        let ok = if target.starts_with("/chunks") {
            chunked(&mut tcp, connection)
        } else if target.starts_with("/pieces") {
            pieces(&mut tcp, connection)
        } else {
            split(&mut tcp, connection)
        };
        if ok.is_err() || close {
            return;
        }
    }
}

fn split(tcp: &mut TcpStream, connection: &str) -> std::io::Result<()> {
    let body = [b'x'; 64];
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes())?;
    tcp.write_all(&body)
}

fn chunked(tcp: &mut TcpStream, connection: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes())?;
    for i in 0..8 {
        tcp.write_all(format!("10\r\nchunk {i:02} of 0008\r\n").as_bytes())?;
    }
    tcp.write_all(b"0\r\n\r\n")
}

/// The head in pieces: the status line, then each header line, then the body, one send each.
fn pieces(tcp: &mut TcpStream, connection: &str) -> std::io::Result<()> {
    let body = [b'y'; 32];
    tcp.write_all(b"HTTP/1.1 200 OK\r\n")?;
    tcp.write_all(format!("Content-Length: {}\r\n", body.len()).as_bytes())?;
    tcp.write_all(format!("Connection: {connection}\r\n").as_bytes())?;
    tcp.write_all(b"\r\n")?;
    tcp.write_all(&body)
}
