//! In-process HTTP/1.1 backends that name themselves, record what they saw, and offer a few
//! behaviours (hello, echo, digest, download, slow, hang, status). Each runs on its own thread and
//! runtime, so it keeps serving while a test thread blocks.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::body::{BoxError, TestBody, empty, full, pattern, pattern_chunked};
use super::hex;

/// A request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: http::Method,
    /// Path and query.
    pub target: String,
    /// HTTP version on the wire between levee and the backend.
    pub version: Version,
    /// Every header, as received.
    pub headers: HeaderMap,
}

impl Seen {
    /// All values of a header, joined with ", ".
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<non-utf8>"))
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

#[derive(Default)]
struct State {
    requests: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    /// Extra delay before answering any request (0: none), see `set_delay`.
    delay_ms: AtomicU64,
}

/// A running backend; stops when dropped.
pub struct Backend {
    /// Its name, sent back in `x-backend` and in the hello body.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts a backend called `name` on 127.0.0.1 with an ephemeral port.
    pub fn start(name: &str) -> Self {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind backend");
        Self::start_on(name, socket)
    }

    /// Starts a backend on an already bound socket.
    pub fn start_on(name: &str, socket: std::net::TcpListener) -> Self {
        socket.set_nonblocking(true).expect("nonblocking");
        let addr = socket.local_addr().expect("local addr");
        let state = Arc::new(State::default());
        let (stop, stopped) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("backend runtime");
        let name_owned = name.to_string();
        let st = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("backend-{name}"))
            .spawn(move || {
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(socket).expect("listener");
                    tokio::select! {
                        _ = accept_loop(listener, name_owned, st) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every connection task, including hung ones.
                rt.shutdown_background();
            })
            .expect("backend thread");
        Self {
            name: name.to_string(),
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Starts a backend on `addr` again (e.g. where a stopped one listened), retrying the bind
    /// for up to 5 s.
    pub fn start_at(name: &str, addr: SocketAddr) -> Self {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(socket) => return Self::start_on(name, socket),
                Err(e) if std::time::Instant::now() >= deadline => {
                    panic!("cannot bind backend {name} on {addr} again: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Stops the backend now: its listening socket and every connection are closed when this
    /// returns (the same as dropping it, spelled out for tests that take a backend away).
    pub fn stop(self) {
        drop(self);
    }

    /// Opt-in: delays every later response by `delay` (before the path's own behaviour), to
    /// make this backend slower than its peers. `Duration::ZERO` turns it off.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Number of requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen lock").clone()
    }

    /// The most recent request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the backend saw no request")
    }

    /// Waits (bounded) until at least `n` requests have arrived.
    pub async fn wait_requests(&self, n: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.requests() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.requests() >= n
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, name: String, state: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let name = name.clone();
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let name = name.clone();
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(req, &name, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// `key=value` pairs of a query string.
fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(q: &HashMap<String, String>, key: &str) -> u64 {
    q.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn answer(req: Request<Incoming>, name: &str, state: &State) -> Response<TestBody> {
    let seen = Seen {
        method: req.method().clone(),
        target: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.to_string()),
        version: req.version(),
        headers: req.headers().clone(),
    };
    state.seen.lock().expect("seen lock").push(seen.clone());
    state.requests.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let q = query(&req);
    let mut resp = match req.uri().path() {
        "/echo" => Response::new(req.into_body().map_err(|e| Box::new(e) as BoxError).boxed()),
        "/digest" => digest(req.into_body()).await,
        "/download" if q.contains_key("chunked") => {
            Response::new(pattern_chunked(number(&q, "bytes")))
        }
        "/download" => Response::new(pattern(number(&q, "bytes"))),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(number(&q, "ms"))).await;
            Response::new(full(format!("slow done by {name}\n")))
        }
        "/hang" => {
            std::future::pending::<()>().await;
            Response::new(empty())
        }
        "/headers" => Response::new(full(headers_json(&seen))),
        "/status" => {
            let mut r = Response::new(full(format!("status from {name}\n")));
            let code = u16::try_from(number(&q, "code")).unwrap_or(500);
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            r
        }
        _ => Response::new(full(format!("hello from {name}\n"))),
    };
    resp.headers_mut().insert(
        "x-backend",
        HeaderValue::from_str(name).expect("backend name is a header value"),
    );
    resp
}

/// Reads the whole body, answers its length and SHA-256.
async fn digest(mut body: Incoming) -> Response<TestBody> {
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    hasher.update(d);
                    len += d.len() as u64;
                }
            }
            Err(e) => {
                let mut r = Response::new(full(format!("body error: {e}\n")));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                return r;
            }
        }
    }
    let sha = hex(&hasher.finalize());
    let mut r = Response::new(full(Bytes::from(format!("{len} {sha}\n"))));
    r.headers_mut().insert("x-body-len", HeaderValue::from(len));
    r.headers_mut().insert(
        "x-body-sha256",
        HeaderValue::from_str(&sha).expect("hex is a header value"),
    );
    r
}

fn headers_json(seen: &Seen) -> String {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    for name in seen.headers.keys() {
        if let Some(v) = seen.header(name.as_str()) {
            map.insert(name.to_string(), serde_json::Value::String(v));
        }
    }
    serde_json::Value::Object(map).to_string()
}
