//! The demo backends: plain HTTP/1.1 servers on ephemeral loopback ports that say who they
//! are and what levee forwarded (client address, country and ASN tags). Paths under
//! `/flaky` answer 503.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// Starts `count` demo backends on 127.0.0.1 (ephemeral ports) on a thread of their own.
/// Each answers `hello from demo backend N` with the request line and forwarding headers.
pub fn spawn_backends(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    spawn_backends_at(&vec![any; count])
}

/// Starts one demo backend on each of `addrs` (port 0: ephemeral) on a thread of its own;
/// returns the bound addresses. Used by `levee demo` and `levee bench backends`.
pub fn spawn_backends_at(addrs: &[SocketAddr]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut sockets = Vec::with_capacity(addrs.len());
    for a in addrs {
        let s = std::net::TcpListener::bind(a).with_context(|| format!("demo backend bind {a}"))?;
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    let addrs = sockets
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<Vec<_>, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("levee-demo-backends".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (i, s) in sockets.into_iter().enumerate() {
                    if let Ok(l) = tokio::net::TcpListener::from_std(s) {
                        tasks.push(tokio::spawn(serve_backend(i + 1, l)));
                    }
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?;
    Ok(addrs)
}

async fn serve_backend(n: usize, listener: tokio::net::TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(move |req| async move { Ok::<_, Infallible>(answer(n, &req)) });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await
            {
                debug!(error = %e, "demo backend connection error");
            }
        });
    }
}

fn answer(n: usize, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    // The synthetic traffic sends a few requests here, so the 5xx column has something.
    if req.uri().path().starts_with("/flaky") {
        let mut r = Response::new(Full::new(Bytes::from_static(b"demo backend: flaky\n")));
        *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        return r;
    }
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let body = format!(
        "hello from demo backend {n}\n{} {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\n\
         x-client-country: {}\nx-client-asn: {}\n",
        req.method(),
        req.uri(),
        h("x-forwarded-for"),
        h("x-forwarded-proto"),
        h("x-client-country"),
        h("x-client-asn"),
    );
    Response::new(Full::new(Bytes::from(body)))
}
