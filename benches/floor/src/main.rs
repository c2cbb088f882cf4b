//! The floor of levee's fixed crates: the least a TLS-terminating proxy built from hyper,
//! tokio-rustls and tokio can cost per request, measured beside HAProxy and levee.
//!
//! `floor LISTEN CERT KEY [BACKEND]`: two worker threads (one per core of the benchmark
//! machine), each a tokio `LocalRuntime` with its own `SO_REUSEPORT` listener, as levee's
//! workers are; TLS by rustls (aws-lc-rs), ALPN h2 or http/1.1, hyper's http1/http2 servers.
//! With BACKEND, each request goes to it over a per-worker pool of hyper HTTP/1.1 client
//! connections (the connection returns to the pool when its response body has ended), with
//! no header rewriting, no stats, no log, no timeouts. Without BACKEND it answers 13 bytes
//! itself. Not levee: a yardstick, built apart (`cargo build --release` in this folder).

use std::cell::RefCell;
use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const WORKERS: usize = 2;

type Pool = Rc<RefCell<Vec<SendRequest<Incoming>>>>;
type Reply = Response<Either<Full<Bytes>, Relayed>>;

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key, rest @ ..] = args.as_slice() else {
        return Err("usage: floor LISTEN CERT KEY [BACKEND]".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let backend: Option<SocketAddr> = rest.first().map(|b| b.parse()).transpose()?;
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let acceptor = acceptor.clone();
            std::thread::spawn(move || worker(listen, backend, acceptor))
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "worker panicked")??;
    }
    Ok(())
}

fn worker(
    listen: SocketAddr,
    backend: Option<SocketAddr>,
    acceptor: tokio_rustls::TlsAcceptor,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(Default::default())?;
    runtime.block_on(async move {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        socket.bind(&listen.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(socket.into())?;
        let pool = Pool::default();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, pool) = (acceptor.clone(), pool.clone());
            tokio::task::spawn_local(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper::service::service_fn(move |req| serve(req, backend, pool.clone()));
                let io = TokioIo::new(tls);
                if h2 {
                    let builder = hyper::server::conn::http2::Builder::new(LocalExec);
                    let _ = builder.serve_connection(io, service).await;
                } else {
                    let builder = hyper::server::conn::http1::Builder::new();
                    let _ = builder.serve_connection(io, service).await;
                }
            });
        }
    })
}

/// One request: answered here, or relayed to `backend` on a pooled connection.
async fn serve(
    req: Request<Incoming>,
    backend: Option<SocketAddr>,
    pool: Pool,
) -> Result<Reply, Infallible> {
    let Some(backend) = backend else {
        return Ok(Response::new(Either::Left(Full::new(Bytes::from_static(
            b"hello, world\n",
        )))));
    };
    match relay(req, backend, &pool).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            let mut resp = Response::new(Either::Left(Full::new(Bytes::from(e.to_string()))));
            *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
            Ok(resp)
        }
    }
}

async fn relay(
    req: Request<Incoming>,
    backend: SocketAddr,
    pool: &Pool,
) -> Result<Reply, Box<dyn Error>> {
    let idle = pool.borrow_mut().pop();
    let mut sender = match idle {
        Some(sender) => sender,
        None => {
            let tcp = tokio::net::TcpStream::connect(backend).await?;
            tcp.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::task::spawn_local(conn);
            sender
        }
    };
    sender.ready().await?;
    let (mut parts, body) = req.into_parts();
    parts.version = http::Version::HTTP_11;
    parts
        .headers
        .insert(http::header::HOST, http::HeaderValue::from_static("backend"));
    let resp = sender.send_request(Request::from_parts(parts, body)).await?;
    let (parts, body) = resp.into_parts();
    let body = Relayed {
        inner: body,
        sender: Some(sender),
        pool: pool.clone(),
    };
    Ok(Response::from_parts(parts, Either::Right(body)))
}

/// A backend's response body; its connection goes back to the pool at the end.
struct Relayed {
    inner: Incoming,
    sender: Option<SendRequest<Incoming>>,
    pool: Pool,
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling once `is_end_stream` says so: release on the last frame.
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            if let Some(sender) = self.sender.take() {
                self.pool.borrow_mut().push(sender);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Spawns h2 stream tasks on the worker's local runtime.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
