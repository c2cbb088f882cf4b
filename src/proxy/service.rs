//! Per-request handling: prepare (client, limits, route), pick a backend, rewrite and
//! forward with retries, stream back, record (stats and the access log).

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::context::ConnCtx;
use super::error::ProxyError;
use super::headers::{rewrite_request, rewrite_response};
use super::request_body::{MinUploadRate, RequestBody};
use super::request_id::X_REQUEST_ID;
use super::response_body::{OnComplete, ResponseBody};
use super::route::route;
use super::semantics::{check_head, request_host};
use super::tunnel::Tunnel;
use super::upgrade::{self, Requested};
use super::upstream::{PooledSender, SendError};
use crate::access_log::{AccessEntry, StatusFrom};
use crate::admission::UploadRate;
use crate::config::{PoolId, SnapshotHandle};
use crate::geo::tag::ClientTag;
use crate::labels::RejectReason;
use crate::lb::{InFlight, Outcome, PickContext, Pool, Tried, Upgrades};
use crate::net::client_ip_for_request;

/// The response type levee sends downstream.
pub type ProxyResponse = Response<ResponseBody<RequestRecord>>;

/// What is known about one request; written to stats and the access log when it completes.
#[derive(Debug)]
pub struct RequestRecord {
    conn: Rc<ConnCtx>,
    /// The client address of this request (`net::client_ip_for_request`).
    client: IpAddr,
    /// Its GeoIP tag when a trusted X-Forwarded-For names another client than the
    /// connection's (else the connection's tag applies).
    forwarded_tag: Option<ClientTag>,
    /// The snapshot this request routed on (its pool ids index into it).
    snapshot: Rc<SnapshotHandle>,
    method: Method,
    uri: Uri,
    pool: Option<PoolId>,
    backend: Option<SocketAddr>,
    status: StatusCode,
    start: Instant,
    bytes_in: Rc<Cell<u64>>,
    /// Set when admission control refused the request (logged as `refused`).
    refused: Option<RejectReason>,
    /// Who produced `status`.
    status_from: StatusFrom,
    /// From sending the answered attempt to the backend's response head.
    upstream: Option<Duration>,
    /// `X-Request-Id`, sent upstream and logged.
    request_id: HeaderValue,
    /// Kept for the access log only (`None` when it is off): the `Host` header and the
    /// `User-Agent` (refcounted views of the request head, no copy).
    host_header: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    version: http::Version,
    /// Whether the request's listener writes the access log.
    access_log: bool,
    _in_flight: Option<InFlight>,
}

impl RequestRecord {
    /// The record of `req`, arriving on `conn` and routed on `snapshot`.
    fn new(conn: &Rc<ConnCtx>, snapshot: &Rc<SnapshotHandle>, req: &Request<Incoming>) -> Self {
        let logs_access = conn.listener_in(snapshot).logs_access(&snapshot.server);
        let logged = |name| req.headers().get(name).filter(|_| logs_access).cloned();
        Self {
            conn: Rc::clone(conn),
            client: conn.client.ip(),
            forwarded_tag: None,
            snapshot: Rc::clone(snapshot),
            method: req.method().clone(),
            uri: req.uri().clone(),
            pool: None,
            backend: None,
            status: StatusCode::OK,
            start: Instant::now(),
            bytes_in: Rc::new(Cell::new(0)),
            refused: None,
            status_from: StatusFrom::Levee,
            upstream: None,
            request_id: conn.http.request_ids.for_request(req.headers()),
            host_header: logged(header::HOST),
            user_agent: logged(header::USER_AGENT),
            version: req.version(),
            access_log: logs_access,
            _in_flight: None,
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        // However the request ends (completed, failed, or cancelled by the client).
        self.conn.idle.end();
        // Free the backend slot before waking a queued request, or it finds none.
        if self._in_flight.take().is_some()
            && let Some(id) = self.pool
        {
            let pool = self.snapshot.pool(id);
            if pool.policy.limits.max_connections.is_some() {
                pool.queue.slot_freed();
            }
        }
    }
}

impl OnComplete for RequestRecord {
    fn complete(&mut self, bytes_out: u64) {
        let bytes_in = self.bytes_in.get();
        let shard = &self.conn.http.shard;
        let tag = self.forwarded_tag.as_ref().unwrap_or(&self.conn.tag);
        shard.request(tag.country, self.status.as_u16(), bytes_in, bytes_out);
        let answered_by = self._in_flight.as_ref(); // Some only when a backend answered
        super::pool_stats::completed(
            &self.snapshot,
            self.pool,
            answered_by,
            self.status,
            self.start,
            shard.worker,
        );
        if let Some(asn) = tag.asn {
            shard.asn_request(asn);
        }
        if !self.access_log {
            return;
        }
        let snapshot = &self.snapshot;
        self.conn.http.access_log.write(&AccessEntry {
            request_id: &self.request_id,
            client: self.client,
            peer: self.conn.transport_peer,
            country: tag.country_code(),
            asn: tag.asn,
            listener: &self.conn.listener.name,
            version: self.version,
            method: &self.method,
            uri: &self.uri,
            host_header: self.host_header.as_ref(),
            with_query: snapshot.server.access_log_query,
            status: self.status.as_u16(),
            status_from: self.status_from,
            pool: self.pool.map(|id| snapshot.pool(id).name.as_str()),
            backend: self.backend,
            upstream: self.upstream,
            duration: self.start.elapsed(),
            bytes_in,
            bytes_out,
            user_agent: self.user_agent.as_ref(),
            refused: self.refused.map(RejectReason::as_str),
        });
    }
}

/// Handles one request from a downstream connection, in four steps: prepare (client, request
/// limits, route), pick (the pool's choice of a backend), forward with retries, and record
/// (per attempt on the backend, `Pool::record_outcome`; per request on the worker's shard and
/// in the access log, when the response body completes: `RequestRecord`).
///
/// The steps that wait are awaited here, one level deep, and take what they keep by
/// reference: every `async fn` argument is stored twice in its future (once as an argument,
/// once as a local), and this future lives in every h2 stream's task.
pub async fn handle(
    req: Request<Incoming>,
    conn: Rc<ConnCtx>,
) -> Result<Response<ResponseBody<RequestRecord>>, Infallible> {
    conn.idle.begin(!req.body().is_end_stream());
    let snapshot = conn.routing_snapshot();
    let record = RequestRecord::new(&conn, &snapshot, &req);
    let asked = upgrade::requested(&req);
    let (mut req, mut record, pool_id) = match prepare(req, &conn, &snapshot, record, &asked) {
        Ok(prepared) => prepared,
        Err(refused) => return Ok(*refused),
    };
    let pool = snapshot.pool(pool_id);
    let (asked, client_upgrade) = match asked {
        None => (None, None),
        Some(Requested::ExtendedConnect(_)) if pool.policy.upgrades == Upgrades::Refused => {
            return Ok(error_response(ProxyError::MethodNotAllowed, record));
        }
        Some(_) if pool.policy.upgrades == Upgrades::Refused => (None, None),
        // An h2 stream hands itself over through its request; HTTP/1 through the connection.
        Some(r @ Requested::ExtendedConnect(_)) => (Some(r), req.extensions_mut().remove()),
        Some(r) => (Some(r), None),
    };
    let pick = pool.pick_context(record.client, req.headers());
    let tried = Tried::default();
    let (index, in_flight) = match pool.pick_for(&pick, &tried).await {
        Ok(found) => found,
        Err(e) => return Ok(error_response(e.into(), record)),
    };
    let (req, replay) = outbound(req, &conn, &snapshot, pool, index, &record, asked.as_ref());
    let mut retries = Retries {
        pick,
        tried,
        replay,
        left: pool.policy.retry.retries,
    };
    let first = Attempt {
        index,
        in_flight,
        req,
    };
    let answered = with_retries(first, &mut retries, &conn, pool, &mut record).await;
    Ok(match (answered, &asked) {
        (Ok((resp, pooled)), Some(asked)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            switched(
                resp,
                pooled,
                record,
                asked,
                client_upgrade,
                &conn,
                &snapshot,
            )
        }
        (Ok((resp, _)), Some(Requested::ExtendedConnect(_))) if resp.status().is_success() => {
            // A 2xx would tell an h2 client its tunnel is open: the backend did not switch.
            error_response(ProxyError::BadResponse, record)
        }
        (Ok((resp, pooled)), _) => upstream_response(resp, pooled, record),
        (Err(e), _) => error_response(e, record),
    })
}

/// Step 1: the request's client (the connection's, or a trusted `X-Forwarded-For`'s), its
/// request bucket, the declared body size, and its route (also noted in the record).
fn prepare(
    req: Request<Incoming>,
    conn: &ConnCtx,
    snapshot: &SnapshotHandle,
    mut record: RequestRecord,
    asked: &Option<Requested>,
) -> Result<(Request<Incoming>, RequestRecord, PoolId), Box<ProxyResponse>> {
    let listener = conn.listener_in(snapshot);
    let client_ip = client_ip_for_request(&listener.client_address, conn.client, req.headers());
    record.client = client_ip;
    if client_ip != conn.client.ip() {
        // Looked up per request only in this case: one proxy connection carries many clients.
        record.forwarded_tag = Some(snapshot.client_tag(client_ip));
    }
    // An extended CONNECT (RFC 8441) is checked as the GET it goes upstream as.
    let method = match asked {
        Some(Requested::ExtendedConnect(_)) => &Method::GET,
        _ => req.method(),
    };
    if let Err(e) = check_head(method, req.uri(), req.version(), req.headers()) {
        return Err(Box::new(error_response(e, record)));
    }
    let mut record = over_request_limit(conn, snapshot, record)?;
    if declared_length(&req).is_some_and(|len| len > listener.http.max_body_bytes) {
        return Err(Box::new(error_response(ProxyError::BodyTooLarge, record)));
    }
    let host = request_host(req.uri(), req.headers());
    let pool = route(listener, host, req.uri().path());
    record.pool = Some(pool);
    Ok((req, record, pool))
}

/// The request as it goes upstream: headers rewritten for `backends[index]`, the body
/// capped, counted and held to the minimum upload rate; and a copy of its head to replay
/// when it may be sent again (bodyless and idempotent, with retries configured).
fn outbound(
    req: Request<Incoming>,
    conn: &ConnCtx,
    snapshot: &SnapshotHandle,
    pool: &Pool,
    index: usize,
    record: &RequestRecord,
    asked: Option<&Requested>,
) -> (Request<RequestBody>, Option<http::request::Parts>) {
    let (mut parts, body) = req.into_parts();
    let tag = record.forwarded_tag.as_ref().unwrap_or(&conn.tag);
    let authority = &pool.backends[index].authority;
    rewrite_request(
        &mut parts,
        &conn.forwarding,
        &snapshot.geo_settings,
        tag,
        authority,
    );
    if let Some(asked) = asked {
        upgrade::restore_request(&mut parts, asked, new_websocket_key);
    }
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), record.request_id.clone());
    // A bodyless idempotent request can be sent again even after a backend reset it.
    let replay =
        (pool.policy.retry.retries > 0 && body.is_end_stream() && is_idempotent(&parts.method))
            .then(|| parts.clone());
    let admission = &snapshot.admission;
    let min_rate = admission
        .min_upload_rate
        .filter(|_| !body.is_end_stream())
        .map(|rate| MinUploadRate {
            rate: UploadRate::new(rate, admission.min_upload_rate_grace),
            shard: Arc::clone(&conn.http.shard),
            country: tag.country,
        });
    let max_body = conn.listener_in(snapshot).http.max_body_bytes;
    let mut body =
        RequestBody::new(body, max_body, Rc::clone(&record.bytes_in)).with_min_rate(min_rate);
    if !body.is_end_stream() {
        // Only a body still to come keeps the connection from parking (`IdleTracker`).
        body = body.with_open_flag(conn.idle.body_open());
    }
    pool.budget.deposit(&pool.policy.retry);
    (Request::from_parts(parts, body), replay)
}

/// What the retries of one request carry from attempt to attempt.
struct Retries {
    /// What the pool picks by.
    pick: PickContext,
    /// Backends already tried (retries go elsewhere).
    tried: Tried,
    /// The head of a request that may be replayed after it was sent.
    replay: Option<http::request::Parts>,
    /// Retries left (`retry.retries`).
    left: u32,
}

/// Step 3: sends `attempt`, and again on another backend while the error is retryable and
/// retries, the retry budget and backends remain; each attempt's outcome is recorded on its
/// backend. The backend's answer, or the last error.
fn with_retries<'a>(
    attempt: Attempt,
    retries: &'a mut Retries,
    conn: &'a ConnCtx,
    pool: &'a Pool,
    record: &'a mut RequestRecord,
) -> impl Future<Output = Result<(Response<Incoming>, PooledSender), ProxyError>> + 'a {
    // An async block, not an `async fn`: it uses `attempt` in place instead of keeping a
    // second copy of it (see `handle`).
    let mut attempt = attempt;
    async move {
        loop {
            let backend = &pool.backends[attempt.index];
            retries.tried.add(attempt.index);
            record.backend = Some(backend.address);
            let sent_at = Instant::now();
            let result = conn
                .http
                .upstream
                .send(backend.address, attempt.req, &pool.timeouts)
                .await;
            let (error, unsent) = match result {
                Ok((resp, pooled)) if framed_twice(&resp) => {
                    // Not pooled: what follows this head on the connection is unknowable.
                    drop(pooled);
                    (ProxyError::BadResponse, None)
                }
                Ok((resp, pooled)) => {
                    let took = sent_at.elapsed();
                    pool.record_outcome(attempt.index, Outcome::Answered(resp.status(), took));
                    conn.http.shard.upstream_latency(conn.tag.country, took);
                    record.upstream = Some(took);
                    record._in_flight = Some(attempt.in_flight);
                    return Ok((resp, pooled));
                }
                Err(SendError::NotSent(e, req)) => (e, Some(*req)),
                Err(SendError::Sent(e)) => (e, None),
            };
            if error.is_upstream() {
                pool.record_outcome(attempt.index, error.attempt_outcome());
            }
            tracing::debug!(backend = %backend.address, pool = %pool.name, error = %error, "upstream attempt failed");
            drop(attempt.in_flight);
            let retryable = matches!(
                error,
                ProxyError::Connect(_) | ProxyError::ConnectTimeout | ProxyError::Upstream(_)
            );
            let next_req =
                unsent.or_else(|| replay_request(retries.replay.as_ref(), &record.bytes_in));
            let Some(next_req) = next_req.filter(|_| retryable && retries.left > 0) else {
                return Err(error);
            };
            // A refused connect reached no backend and costs the pool nothing: it retries
            // outside the budget (still bounded by `retries`).
            let costs_the_pool = !error.is_connect_refused();
            if costs_the_pool && !pool.budget.try_withdraw(&pool.policy.retry) {
                return Err(error);
            }
            let Ok((index, in_flight)) = pool.pick_for(&retries.pick, &retries.tried).await else {
                return Err(error);
            };
            retries.left -= 1;
            attempt = Attempt {
                index,
                in_flight,
                req: next_req,
            };
        }
    }
}

/// Whether a backend response frames its body both by `Content-Length` and by
/// `Transfer-Encoding` (RFC 9112 §6.3: a sign of smuggling, to be treated as an error):
/// relayed, the length the client is told and the body it gets would disagree.
fn framed_twice(resp: &Response<Incoming>) -> bool {
    let headers = resp.headers();
    headers.contains_key(header::CONTENT_LENGTH) && headers.contains_key(header::TRANSFER_ENCODING)
}

/// One try of a request on one backend.
struct Attempt {
    index: usize,
    in_flight: InFlight,
    req: Request<RequestBody>,
}

/// A fresh copy of a bodyless request for a retry, if it may be replayed.
fn replay_request(
    parts: Option<&http::request::Parts>,
    bytes_in: &Rc<Cell<u64>>,
) -> Option<Request<RequestBody>> {
    let parts = parts?.clone();
    Some(Request::from_parts(
        parts,
        RequestBody::empty(Rc::clone(bytes_in)),
    ))
}

/// Methods that may be sent twice without changing their effect (RFC 9110 §9.2.2).
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The backend's response, rewritten, streaming back to the client.
fn upstream_response(
    resp: Response<Incoming>,
    pooled: PooledSender,
    mut record: RequestRecord,
) -> ProxyResponse {
    let (mut parts, body) = resp.into_parts();
    rewrite_response(&mut parts);
    record.status = parts.status;
    record.status_from = StatusFrom::Backend;
    Response::from_parts(parts, ResponseBody::upstream(body, pooled, record))
}

/// The backend switched protocols: the client gets its `101` (or, for an h2 extended
/// CONNECT, `200`), and the tunnel takes the record: handed to the HTTP/1 connection's task
/// (which owns the client stream), or spawned beside the h2 stream it runs on.
fn switched(
    resp: Response<Incoming>,
    mut pooled: PooledSender,
    mut record: RequestRecord,
    asked: &Requested,
    client_upgrade: Option<OnUpgrade>,
    conn: &ConnCtx,
    snapshot: &SnapshotHandle,
) -> ProxyResponse {
    let Some(upstream) = pooled.take_upgrade() else {
        return error_response(ProxyError::BadResponse, record);
    };
    let (mut parts, _empty) = resp.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    rewrite_response(&mut parts);
    upgrade::restore_response(&mut parts, asked, protocol);
    record.status = parts.status;
    record.status_from = StatusFrom::Backend;
    let limits = &conn.listener_in(snapshot).http;
    let tunnel = Tunnel {
        upstream,
        bytes_in: Rc::clone(&record.bytes_in),
        record,
        idle_timeout: limits.upgrade_idle_timeout,
        send_timeout: limits.send_timeout,
    };
    match asked {
        Requested::Http1(_) => *conn.pending_tunnel.borrow_mut() = Some(tunnel),
        Requested::ExtendedConnect(_) => {
            tokio::task::spawn_local(async move {
                let client = match client_upgrade {
                    Some(on) => on.await,
                    None => return tunnel.abandon(),
                };
                match client {
                    Ok(stream) => {
                        tunnel
                            .run(TokioIo::new(stream), std::future::pending())
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the client's h2 stream did not switch");
                        tunnel.abandon();
                    }
                }
            });
        }
    }
    Response::from_parts(parts, ResponseBody::switched())
}

/// A fresh `Sec-WebSocket-Key` for an h2 extended CONNECT going up as an HTTP/1.1 upgrade.
fn new_websocket_key() -> HeaderValue {
    let mut random = [0u8; 16];
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    if provider.secure_random.fill(&mut random).is_err() {
        // Only a nonce of the handshake (RFC 6455 §10.3 is about masking, not this).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        random = nanos.to_le_bytes();
    }
    upgrade::websocket_key(random)
}

/// 429 with `Retry-After` when the client's country or ASN request bucket is empty
/// (allowlisted clients are never limited); counted and logged as `request_rate_limit`.
fn over_request_limit(
    conn: &ConnCtx,
    snapshot: &SnapshotHandle,
    mut r: RequestRecord,
) -> Result<RequestRecord, Box<ProxyResponse>> {
    let rules = &snapshot.admission.rate_limits;
    if rules.is_empty() {
        return Ok(r);
    }
    let tag = r.forwarded_tag.as_ref().unwrap_or(&conn.tag);
    if rules.allowed(r.client, tag) {
        return Ok(r);
    }
    let Err(limited) = conn.http.admission.rates.admit_request(rules, tag) else {
        return Ok(r);
    };
    let reason = RejectReason::RequestRateLimit;
    conn.http.shard.admission_rejected(tag.country, reason);
    r.refused = Some(reason);
    r.status = StatusCode::TOO_MANY_REQUESTS;
    let retry_after = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let body = "429 Too Many Requests: request rate limit\n";
    let mut resp = Response::new(ResponseBody::full(body, r));
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = resp.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Err(Box::new(resp))
}

/// The body length the client declared, if any.
fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A small text response produced by levee for a failed request.
fn error_response(e: ProxyError, mut record: RequestRecord) -> ProxyResponse {
    let status = e.status();
    record.status = status;
    if matches!(e, ProxyError::BodyTooSlow) {
        record.refused = Some(RejectReason::SlowUpload);
    }
    let mut resp = Response::new(ResponseBody::full(e.body_text(), record));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
