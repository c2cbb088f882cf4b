//! Helpers for the reload tests: a bounded load generator that records, for every request, the
//! config generations it overlapped; request bodies the test feeds chunk by chunk; responses
//! read chunk by chunk; reloads off the async threads; the admin API; refused connects.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee::reload::ReloadReport;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Levee;
use super::body::{BoxError, TestBody, empty};
use super::client::{Conn, Proto, STEP};

/// Upper bound on requests per load client, so a load loop ends even if the test stalls.
pub const MAX_REQUESTS_PER_CLIENT: u64 = 100_000;
/// Upper bound on how long a load loop runs.
pub const MAX_LOAD_TIME: Duration = Duration::from_secs(60);
/// How many failure messages a load keeps (it counts them all).
const KEEP_FAILURES: usize = 10;

/// How one load client talks to levee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One HTTP/1.1 keep-alive connection for all its requests (a new one after an error).
    KeepAliveH1,
    /// One h2 (prior knowledge) connection for all its requests (a new one after an error).
    KeepAliveH2,
    /// A new HTTP/1.1 connection for each request.
    NewConnectionH1,
    /// A new h2 connection for each request.
    NewConnectionH2,
}

impl Style {
    fn proto(self) -> Proto {
        match self {
            Self::KeepAliveH2 | Self::NewConnectionH2 => Proto::H2,
            Self::KeepAliveH1 | Self::NewConnectionH1 => Proto::H1,
        }
    }

    fn reconnects(self) -> bool {
        matches!(self, Self::NewConnectionH1 | Self::NewConnectionH2)
    }
}

/// The four clients of the reload tests: keep-alive HTTP/1.1, keep-alive h2, and a new
/// connection per request (HTTP/1.1 and h2).
pub const STYLES: [Style; 4] = [
    Style::KeepAliveH1,
    Style::KeepAliveH2,
    Style::NewConnectionH1,
    Style::NewConnectionH2,
];

/// One completed request, as a load client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Client index.
    pub client: usize,
    /// How that client talks.
    pub style: Style,
    /// Config generation read just before the request was sent.
    pub gen_before: u64,
    /// Config generation read just after its response was read to the end.
    pub gen_after: u64,
    /// Test-defined epoch when the request was sent (also in its path as `e=`).
    pub epoch: u64,
    /// The `x-backend` that answered.
    pub backend: String,
}

/// Reads the generation of the config levee serves now.
pub type Generation = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The generation `levee` serves, as a `Generation` for `Load::start`.
pub fn generation_of(levee: &Arc<Levee>) -> Generation {
    let levee = Arc::clone(levee);
    Arc::new(move || levee.running().snapshot().generation)
}

#[derive(Default)]
struct Shared {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    samples: Mutex<Vec<Sample>>,
    stop: AtomicBool,
    epoch: AtomicU64,
}

impl Shared {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut kept = self.failures.lock().unwrap();
        if kept.len() < KEEP_FAILURES {
            kept.push(why);
        }
    }
}

/// Clients sending `GET /load?c=<client>&e=<epoch>` in a loop until `finish` (or the bounds).
pub struct Load {
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<()>>,
}

/// What a load did, once finished.
#[derive(Debug)]
pub struct LoadResult {
    /// Requests answered 200 with an `x-backend`.
    pub ok: u64,
    /// Every other outcome (status, transport error, timeout).
    pub failed: u64,
    /// The first few failures.
    pub failures: Vec<String>,
    /// Every successful request.
    pub samples: Vec<Sample>,
}

impl LoadResult {
    /// Asserts that nothing failed and at least `min_ok` requests completed.
    pub fn assert_no_failure(&self, min_ok: u64) {
        assert_eq!(
            self.failed, 0,
            "{} client requests failed ({} ok); first: {:#?}",
            self.failed, self.ok, self.failures
        );
        assert!(
            self.ok >= min_ok,
            "only {} requests completed (want {min_ok})",
            self.ok
        );
    }
}

impl Load {
    /// Starts one client per entry of `styles` against `addr`.
    pub fn start(addr: SocketAddr, styles: &[Style], generation: Generation) -> Self {
        let shared = Arc::new(Shared::default());
        let clients = styles
            .iter()
            .enumerate()
            .map(|(i, &style)| {
                tokio::spawn(client(
                    i,
                    addr,
                    style,
                    Arc::clone(&generation),
                    Arc::clone(&shared),
                ))
            })
            .collect();
        Self { shared, clients }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.shared.ok.load(Ordering::SeqCst)
    }

    /// Failed requests so far.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Sets the epoch that requests sent from now on carry.
    pub fn set_epoch(&self, epoch: u64) {
        self.shared.epoch.store(epoch, Ordering::SeqCst);
    }

    /// Polls until at least `n` requests succeeded in total, or `within` passes.
    pub async fn wait_ok(&self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.ok() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// Waits until `more` further requests succeeded (bounded); panics otherwise.
    pub async fn wait_more(&self, more: u64, within: Duration) {
        let want = self.ok() + more;
        assert!(
            self.wait_ok(want, within).await,
            "load stalled: {} ok (want {want}), {} failed, first: {:?}",
            self.ok(),
            self.failed(),
            self.shared.failures.lock().unwrap()
        );
    }

    /// Stops the clients, waits for them (each ends within one request) and returns what
    /// they did.
    pub async fn finish(self) -> LoadResult {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            tokio::time::timeout(STEP * 2, c)
                .await
                .expect("a load client did not stop")
                .expect("a load client panicked");
        }
        LoadResult {
            ok: self.shared.ok.load(Ordering::SeqCst),
            failed: self.shared.failed.load(Ordering::SeqCst),
            failures: self.shared.failures.lock().unwrap().clone(),
            samples: std::mem::take(&mut *self.shared.samples.lock().unwrap()),
        }
    }
}

/// Connects, or says why not (`Conn::plain` panics on failure: it runs as its own task, so a
/// failed connect counts as a failed request instead of ending the client).
async fn connect(addr: SocketAddr, proto: Proto) -> Result<Conn, String> {
    tokio::spawn(Conn::plain(addr, proto))
        .await
        .map_err(|e| format!("connect failed: {e}"))
}

async fn client(
    id: usize,
    addr: SocketAddr,
    style: Style,
    generation: Generation,
    shared: Arc<Shared>,
) {
    let started = Instant::now();
    let proto = style.proto();
    let mut conn: Option<Conn> = None;
    for _ in 0..MAX_REQUESTS_PER_CLIENT {
        if shared.stop.load(Ordering::SeqCst) || started.elapsed() > MAX_LOAD_TIME {
            return;
        }
        let gen_before = generation();
        let epoch = shared.epoch.load(Ordering::SeqCst);
        if style.reconnects() {
            conn = None;
        }
        let c = match conn.take() {
            Some(c) => c,
            None => match connect(addr, proto).await {
                Ok(c) => c,
                Err(e) => {
                    shared.fail(format!("client {id} {style:?}: {e}"));
                    // Back off a little: the run fails anyway, no need to spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut c = c;
        let req = c
            .request("GET", &format!("/load?c={id}&e={epoch}"))
            .body(empty())
            .unwrap();
        match c.try_send(req).await {
            Ok(reply) if reply.status == StatusCode::OK && reply.backend().is_some() => {
                let gen_after = generation();
                let backend = reply.backend().unwrap_or_default().to_string();
                shared.samples.lock().unwrap().push(Sample {
                    client: id,
                    style,
                    gen_before,
                    gen_after,
                    epoch,
                    backend,
                });
                shared.ok.fetch_add(1, Ordering::SeqCst);
                conn = Some(c);
            }
            Ok(reply) => {
                shared.fail(format!(
                    "client {id} {style:?}: {} {:?} {}",
                    reply.status,
                    reply.backend(),
                    reply.text()
                ));
                conn = Some(c);
            }
            // The connection is unusable after a transport error: reconnect next time.
            Err(e) => shared.fail(format!("client {id} {style:?}: {e}")),
        }
    }
}

/// Reloads `levee` from `toml` on a blocking thread (a reload reads files and may bind).
pub async fn reload_to(levee: &Arc<Levee>, toml: &str) -> ReloadReport {
    let levee = Arc::clone(levee);
    let toml = toml.to_string();
    tokio::time::timeout(
        STEP,
        tokio::task::spawn_blocking(move || levee.reload_with(&toml)),
    )
    .await
    .expect("reload timed out")
    .expect("reload panicked")
}

/// Asserts that a reload succeeded and produced generation `generation`.
pub fn assert_reloaded(report: &ReloadReport, generation: u64) {
    assert!(report.ok, "reload refused: {:?}", report.errors);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.generation, generation, "generation after reload");
}

/// A request body the test feeds chunk by chunk; it ends when the sender is dropped.
pub struct FedBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for FedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A body fed through the returned sender (no size hint: HTTP/1.1 sends it chunked).
pub fn fed_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, FedBody { rx }.boxed())
}

/// `n` bytes of test data for chunk `i` (distinct per chunk, so a lost or repeated chunk
/// changes the digest).
pub fn chunk(i: usize, n: usize) -> Bytes {
    let seed = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Bytes::from(
        (0..n as u64)
            .map(|j| (seed.wrapping_add(j.wrapping_mul(131)) >> 3) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Sends one chunk of a fed body (bounded).
pub async fn feed(tx: &mpsc::Sender<Bytes>, bytes: Bytes) {
    tokio::time::timeout(STEP, tx.send(bytes))
        .await
        .expect("feeding the request body timed out")
        .expect("the request body was dropped before it ended");
}

/// A client connection whose responses are handed over as they arrive (not collected), to
/// read a body chunk by chunk.
pub struct StreamConn {
    sender: StreamSender,
    authority: String,
}

enum StreamSender {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

impl StreamConn {
    /// Opens a plain connection (h2: prior knowledge).
    pub async fn open(addr: SocketAddr, proto: Proto) -> Self {
        let tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let io = TokioIo::new(tcp);
        let sender = match proto {
            Proto::H1 => {
                let (s, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .expect("h1 handshake");
                tokio::spawn(conn);
                StreamSender::H1(s)
            }
            Proto::H2 => {
                let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
                tokio::spawn(conn);
                StreamSender::H2(s)
            }
        };
        Self {
            sender,
            authority: addr.to_string(),
        }
    }

    /// Another handle on the same h2 connection (new streams beside the open ones); `None`
    /// for HTTP/1.1, which has one request at a time.
    pub fn h2_handle(&self) -> Option<Self> {
        match &self.sender {
            StreamSender::H2(s) => Some(Self {
                sender: StreamSender::H2(s.clone()),
                authority: self.authority.clone(),
            }),
            StreamSender::H1(_) => None,
        }
    }

    /// Whether the connection has closed (the server closed it, or it failed).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            StreamSender::H1(s) => s.is_closed(),
            StreamSender::H2(s) => s.is_closed(),
        }
    }

    /// Polls until the connection has closed or `within` passes; returns whether it closed.
    pub async fn wait_closed(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.is_closed() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Sends `method path` with `body`; returns the response head with its body unread.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: TestBody,
    ) -> Result<Response<Incoming>, String> {
        let fut = async {
            match &mut self.sender {
                StreamSender::H1(s) => {
                    let req = Request::builder()
                        .method(method)
                        .uri(path)
                        .header(http::header::HOST, self.authority.as_str())
                        .body(body)
                        .map_err(|e| e.to_string())?;
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await.map_err(|e| format!("{e:?}"))
                }
                StreamSender::H2(s) => {
                    let req = Request::builder()
                        .method(method)
                        .version(http::Version::HTTP_2)
                        .uri(format!("http://{}{path}", self.authority))
                        .body(body)
                        .map_err(|e| e.to_string())?;
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await.map_err(|e| format!("{e:?}"))
                }
            }
        };
        tokio::time::timeout(STEP, fut)
            .await
            .map_err(|_| "response head timed out".to_string())?
    }
}

/// Reads a whole response body (bounded).
pub async fn read_to_end(body: &mut Incoming) -> Bytes {
    let mut all = Vec::new();
    while let Some(data) = next_data(body).await {
        all.extend_from_slice(&data);
    }
    Bytes::from(all)
}

/// Reads the next data chunk of a response body (bounded); `None` at its end.
pub async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(STEP, body.frame())
            .await
            .expect("response body stalled")?
            .expect("response body failed");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

/// `method path` on the admin API: status, content type and the body as JSON.
pub async fn admin_call(
    levee: &Levee,
    method: &str,
    path: &str,
) -> (StatusCode, String, serde_json::Value) {
    let addr = levee.running().admin_addr().expect("admin API enabled");
    let mut c = Conn::plain(addr, Proto::H1).await;
    let req = c.request(method, path).body(empty()).unwrap();
    let reply = c.send(req).await;
    let content_type = reply.header("content-type").unwrap_or_default().to_string();
    let doc = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, content_type, doc)
}

/// Polls until a TCP connect to `addr` is refused (bounded); returns whether it was.
pub async fn wait_refused(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout(STEP, TcpStream::connect(addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ if Instant::now() >= deadline => return false,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Whether a TCP connect to `addr` is refused right now.
pub async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(STEP, TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
