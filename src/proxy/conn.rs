//! One downstream connection's HTTP serving, once the front (`runtime::front`) has let it in
//! and finished its TLS handshake: hyper's HTTP/1.1 or h2 server (chosen by ALPN, or on a
//! plain listener by the first bytes: `sniff`) with the listener's limits, the idle timeout,
//! the graceful wind-down on drain, and the hand-over of an upgraded HTTP/1 connection to
//! its tunnel (`proxy::tunnel`).
//!
//! **Parking idle HTTP/1 connections.** hyper keeps an HTTP/1 connection's read buffer
//! (8 KiB), write buffer (8 KiB) and parser state for as long as the connection lives,
//! and no setting releases them between requests. A keep-alive connection that has been
//! between requests for [`PARK_AFTER`] is therefore parked: hyper's connection is wound
//! down without touching the socket (`graceful_shutdown` while idle, then `into_parts`),
//! and the task holds only the TLS stream and the connection's context until the socket
//! is readable again, when a new hyper connection takes over (with any bytes hyper had
//! read past the last request put back in front, `Prefixed`). Busy connections are never
//! parked: one timer wake per `PARK_AFTER` checks them. HTTP/2 connections are not parked
//! (their HPACK tables and settings are connection state).

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use super::context::ConnCtx;
use super::prefixed::Prefixed;
use super::service::{self, ProxyResponse, RequestRecord};
use super::tunnel::Tunnel;
use super::watch::{self, Watch, Watched};
use crate::config::HttpLimits;

/// Smallest read buffer hyper accepts for HTTP/1 heads.
const MIN_HEADER_BUF: usize = 8192;

/// How long an HTTP/1 keep-alive connection is between requests before it is parked.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// How HTTP is spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// Plain listener: HTTP/1.1, or h2 with prior knowledge (hyper's auto detection).
    Detect,
    /// TLS with ALPN `h2`.
    H2,
    /// TLS without ALPN `h2`: HTTP/1.1.
    Http1,
}

/// A client stream whose socket can be waited on while the connection is parked.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + 'static {
    /// Resolves once the socket has bytes to read (or has closed, or failed).
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
}

/// Waits for a byte (or the end) to arrive, without taking it. A peek, not `readable()`:
/// readiness left set by the last read (which need not have drained the socket) would end
/// the wait at once.
async fn byte_waiting(tcp: &TcpStream) -> io::Result<()> {
    let mut byte = [0u8; 1];
    tcp.peek(&mut byte).await.map(drop)
}

impl ClientStream for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        byte_waiting(self)
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        byte_waiting(self.get_ref().0)
    }
}

/// Spawns hyper's per-stream h2 tasks on this worker's `LocalSet`.
#[derive(Debug, Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        // h2 streams run as their own tasks: inside the connection's span when it is
        // enabled (debug level); otherwise without the wrapper and its enter/exit per poll.
        let span = tracing::Span::current();
        if span.is_disabled() {
            tokio::task::spawn_local(fut);
        } else {
            tokio::task::spawn_local(fut.instrument(span));
        }
    }
}

/// Serves HTTP on an established stream (`version` as TLS negotiated it) until it closes,
/// or winds it down gracefully once `drain` is cancelled: requests in flight finish, then
/// the connection closes (HTTP/1 after its response, h2 by GOAWAY). Closed at once when a
/// connection sends neither an h2 preface nor a request within `header_timeout` (HTTP/1
/// over TLS has hyper's own deadline for that), or when a write to it makes no progress for
/// `send_timeout` (counted): see `watch`. HTTP/1 (plain or TLS) parks between requests (see the
/// module docs).
pub fn serve<I: ClientStream>(
    io: I,
    version: HttpVersion,
    ctx: Rc<ConnCtx>,
    drain: CancellationToken,
) -> impl Future<Output = ()> {
    // Each hyper connection is boxed, and so is the stream (before the future is made, so
    // the future holds a pointer): the task then holds only the parts it needs now (a
    // parked stream, or h1 without h2's state), not the largest of them inline, and moves
    // of the stream are moves of a pointer.
    let watch = Rc::new(Watch::default());
    let io = Box::new(Watched::new(io, Rc::clone(&watch)));
    async move {
        // However the connection ends, a tunnel it never took over goes (and with it the
        // request record's hold on this context).
        let _tunnel_slot = TunnelSlotGuard(&ctx);
        let limits = &ctx.listener.http;
        match version {
            HttpVersion::Http1 => serve_http1(io, Bytes::new(), &watch, &ctx, &drain).await,
            HttpVersion::H2 => {
                let conn = http2_builder(limits).serve_connection(TokioIo::new(io), service(&ctx));
                drive(Box::pin(conn), &watch, &ctx, &drain).await;
            }
            HttpVersion::Detect => {
                let mut io = io;
                let sniffed = tokio::select! {
                    s = sniff(&mut io) => s,
                    () = tokio::time::sleep(limits.header_timeout) => {
                        debug!("closing a connection that sent no request within header_timeout");
                        return;
                    }
                    () = drain.cancelled() => return,
                };
                match sniffed {
                    Ok(Sniffed::H2(preface)) => {
                        let io = TokioIo::new(Prefixed::new(preface, io));
                        let conn = http2_builder(limits).serve_connection(io, service(&ctx));
                        drive(Box::pin(conn), &watch, &ctx, &drain).await;
                    }
                    Ok(Sniffed::Http1(first)) => {
                        serve_http1(io, first, &watch, &ctx, &drain).await;
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// Empties the connection's tunnel slot when the connection's future ends or is dropped.
struct TunnelSlotGuard<'a>(&'a ConnCtx);

impl Drop for TunnelSlotGuard<'_> {
    fn drop(&mut self) {
        self.0.pending_tunnel.borrow_mut().take();
    }
}

/// What a plain listener's connection opened with.
enum Sniffed {
    /// The whole HTTP/2 connection preface (prior knowledge h2c).
    H2(Bytes),
    /// Bytes that are not that preface: HTTP/1.
    Http1(Bytes),
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; watch::PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the first bytes tell HTTP/1 from an h2 preface (one byte, for every HTTP/1
/// method; the whole preface for h2), as hyper-util's detection does. Done here rather than
/// by `auto`, so HTTP/1 on a plain listener is served (and parked, and upgraded) the way it
/// is over TLS. An end of stream before a decision is an error.
async fn sniff<I: ClientStream>(io: &mut Box<Watched<I>>) -> io::Result<Sniffed> {
    use tokio::io::AsyncReadExt;
    let mut buf = BytesMut::with_capacity(watch::PREFACE_LEN);
    loop {
        let n = io.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let len = buf.len().min(watch::PREFACE_LEN);
        if buf[..len] != PREFACE[..len] {
            return Ok(Sniffed::Http1(buf.freeze()));
        }
        if len == watch::PREFACE_LEN {
            return Ok(Sniffed::H2(buf.freeze()));
        }
    }
}

/// The request handler of a connection, as a hyper service.
#[derive(Debug, Clone)]
struct Handler(Rc<ConnCtx>);

/// A request's future, boxed: it is large, and hyper moves it whole into an h2 stream's
/// task (several copies per request); a box moves as a pointer.
type Handling = Pin<Box<dyn Future<Output = Result<ProxyResponse, Infallible>>>>;

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = Handling;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        Box::pin(service::handle(req, Rc::clone(&self.0)))
    }
}

/// The handler of `ctx`'s requests.
fn service(ctx: &Rc<ConnCtx>) -> Handler {
    Handler(Rc::clone(ctx))
}

/// A hyper connection that can be wound down gracefully (h2, or auto-detected).
trait Graceful: Future<Output = Result<(), Self::Error>> {
    /// The connection's error.
    type Error: std::fmt::Display;
    /// Finishes what is in flight, then ends.
    fn graceful(self: Pin<&mut Self>);
}

impl<T> Graceful for http2::Connection<T, Handler, LocalExec>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    type Error = hyper::Error;
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs an h2 or auto-detected connection to its end, with the listener's deadlines.
async fn drive<C: Graceful>(
    mut conn: Pin<Box<C>>,
    watch: &Watch,
    ctx: &ConnCtx,
    drain: &CancellationToken,
) {
    let limits = &ctx.listener.http;
    let silent = watch::silent(watch, &ctx.idle, limits.header_timeout);
    let result = tokio::select! {
        // The connection first, the deadlines after: no random start per wake.
        biased;
        r = conn.as_mut() => r,
        _ = drain.cancelled() => {
            conn.as_mut().graceful();
            conn.await
        }
        _ = ctx.idle.expired(limits.idle_timeout) => {
            debug!("closing idle connection");
            conn.as_mut().graceful();
            conn.await
        }
        _ = silent => {
            debug!("closing a connection that sent no request within header_timeout");
            return;
        }
        _ = watch::stalled(watch, limits.send_timeout) => {
            debug!("closing a connection that stopped reading: send_timeout");
            ctx.http.shard.send_timed_out();
            return;
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
    }
}

/// HTTP/1.1 (plain or over TLS), parked between requests (module docs): one hyper connection per
/// busy spell, the stream and its context kept across them. While parked, this future
/// holds only the stream: each busy spell is boxed, and freed when it ends.
async fn serve_http1<I: ClientStream>(
    io: Box<Watched<I>>,
    first: Bytes,
    watch: &Watch,
    ctx: &Rc<ConnCtx>,
    drain: &CancellationToken,
) {
    let limits = &ctx.listener.http;
    let builder = http1_builder(limits);
    let (mut io, mut leftover) = (io, first);
    loop {
        let spell = Box::pin(busy_spell(&builder, io, leftover, watch, ctx, drain));
        (io, leftover) = match spell.await {
            Spell::Gone => return,
            Spell::Closing(mut io) => return close(&mut io, limits.send_timeout).await,
            Spell::Parking(io, leftover) => (io, leftover),
            Spell::Switched(io, leftover, tunnel) => {
                let client = Prefixed::new(leftover, io);
                let tunnel =
                    Box::pin((*tunnel).run(client, watch::stalled(watch, limits.send_timeout)));
                return tunnel.await;
            }
        };
        if !leftover.is_empty() {
            // Part of a next request was read: serve it now, and do not park again before
            // it has begun (its head still meets `header_timeout`).
            ctx.idle.decline_park();
            continue;
        }
        // Parked: hyper's buffers and state are gone until the client sends again.
        let woke = tokio::select! {
            r = io.get_ref().readable() => r.is_ok(),
            _ = drain.cancelled() => false,
            _ = ctx.idle.expired(limits.idle_timeout) => {
                debug!("closing idle connection");
                false
            }
        };
        if !woke {
            return close(&mut io, limits.send_timeout).await;
        }
        // Not again before the request that woke it has begun.
        ctx.idle.decline_park();
    }
}

/// How a busy spell of an HTTP/1 connection ended.
enum Spell<I> {
    /// Over (client gone, error, or send stall): the stream is dropped.
    Gone,
    /// Over, the stream to be closed cleanly (the client or levee ended it between
    /// requests, or `Connection: close`).
    Closing(Box<Watched<I>>),
    /// Between requests for `PARK_AFTER`: park the stream, with any bytes hyper read past
    /// the last request.
    Parking(Box<Watched<I>>, Bytes),
    /// The backend switched protocols: the stream (with any bytes hyper read past the
    /// request) goes to the tunnel.
    Switched(Box<Watched<I>>, Bytes, Box<Tunnel<RequestRecord>>),
}

/// One hyper connection on the stream, from `leftover` on, until it ends or parks.
async fn busy_spell<I: ClientStream>(
    builder: &http1::Builder,
    io: Box<Watched<I>>,
    leftover: Bytes,
    watch: &Watch,
    ctx: &Rc<ConnCtx>,
    drain: &CancellationToken,
) -> Spell<I> {
    let limits = &ctx.listener.http;
    let stream = TokioIo::new(Prefixed::new(leftover, io));
    let mut conn: Box<Http1Connection<I>> =
        Box::new(builder.serve_connection(stream, service(ctx)));
    let mut parking = false;
    let result = tokio::select! {
        // The connection first, the deadlines after: no random start per wake.
        biased;
        r = poll_fn(|cx| conn.poll_without_shutdown(cx)) => r,
        _ = drain.cancelled() => wind_down(&mut conn).await,
        _ = ctx.idle.expired(limits.idle_timeout) => {
            debug!("closing idle connection");
            wind_down(&mut conn).await
        }
        _ = ctx.idle.parkable(PARK_AFTER, || watch.quiet()) => {
            parking = true;
            wind_down(&mut conn).await
        }
        _ = watch::stalled(watch, limits.send_timeout) => {
            debug!("closing a connection that stopped reading: send_timeout");
            ctx.http.shard.send_timed_out();
            return Spell::Gone;
        }
    };
    let tunnel = ctx.pending_tunnel.borrow_mut().take();
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
        return Spell::Gone;
    }
    let parts = conn.into_parts();
    let (rest, io) = parts.io.into_inner().into_parts();
    if let Some(tunnel) = tunnel {
        return Spell::Switched(io, joined(parts.read_buf, rest), Box::new(tunnel));
    }
    if parking && !drain.is_cancelled() {
        Spell::Parking(io, joined(parts.read_buf, rest))
    } else {
        Spell::Closing(io)
    }
}

/// hyper's HTTP/1 connection on a client stream.
type Http1Connection<I> = http1::Connection<TokioIo<Prefixed<Box<Watched<I>>>>, Handler>;

/// Asks an HTTP/1 connection to finish (at once when it is between requests; after the
/// response in flight otherwise) and runs it to its end, leaving the socket open.
async fn wind_down<I: ClientStream>(conn: &mut Http1Connection<I>) -> hyper::Result<()> {
    Pin::new(&mut *conn).graceful_shutdown();
    poll_fn(|cx| conn.poll_without_shutdown(cx)).await
}

/// Bytes hyper had read and not used, then the part of the put-back prefix it had not
/// read (both empty but in the rarest cases).
fn joined(read: Bytes, rest: Bytes) -> Bytes {
    if rest.is_empty() {
        return read;
    }
    if read.is_empty() {
        return rest;
    }
    let mut all = BytesMut::with_capacity(read.len() + rest.len());
    all.extend_from_slice(&read);
    all.extend_from_slice(&rest);
    all.freeze()
}

/// Closes the stream cleanly (TLS close_notify, then FIN), within `limit`.
async fn close<I: ClientStream>(io: &mut Watched<I>, limit: Duration) {
    let _ = tokio::time::timeout(limit, io.shutdown()).await;
}

/// hyper's HTTP/1 server settings for a listener's limits.
fn http1_builder(limits: &HttpLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BUF));
    builder
}

/// hyper's h2 server settings for a listener's limits.
fn http2_builder(limits: &HttpLimits) -> http2::Builder<LocalExec> {
    let mut builder = http2::Builder::new(LocalExec);
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.header_timeout)
        // RFC 8441: WebSocket over h2, forwarded as an HTTP/1.1 upgrade (`proxy::upgrade`).
        .enable_connect_protocol();
    builder
}
