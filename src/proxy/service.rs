//! Per-request handling: route, pick a backend, rewrite, forward, stream back, log.

use std::cell::Cell;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body::Body as _;
use hyper::body::Incoming;

use super::acquire::{Tried, acquire};
use super::body::{OnComplete, RequestBody, ResponseBody};
use super::conn::ConnCtx;
use super::error::ProxyError;
use super::headers::{rewrite_request, rewrite_response};
use super::route::route;
use super::upstream::{PooledSender, SendError};
use crate::admission::{RejectReason, UploadRate};
use crate::config::PoolId;
use crate::geo::tag::ClientTag;
use crate::lb::{InFlight, PickContext, outlier};
use crate::net::client_ip_for_request;
use crate::runtime::SnapshotHandle;

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
    _in_flight: Option<InFlight>,
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        // However the request ends (completed, failed, or cancelled by the client).
        self.conn.idle.end();
        // Free the backend slot before waking a queued request, or it finds none.
        if self._in_flight.take().is_some() {
            if let Some(id) = self.pool {
                let pool = self.snapshot.pool(id);
                if pool.policy.limits.max_connections.is_some() {
                    pool.queue.slot_freed();
                }
            }
        }
    }
}

impl OnComplete for RequestRecord {
    fn complete(&mut self, bytes_out: u64) {
        let bytes_in = self.bytes_in.get();
        let shard = &self.conn.worker.shard;
        let tag = self.forwarded_tag.as_ref().unwrap_or(&self.conn.tag);
        shard.request(tag.country, self.status.as_u16(), bytes_in, bytes_out);
        if let Some(asn) = tag.asn {
            shard.asn_request(asn);
        }
        if !self.snapshot.server.access_log {
            return;
        }
        let pool = self
            .pool
            .map_or("-", |id| self.snapshot.pool(id).name.as_str());
        let backend = self.backend.map(tracing::field::display);
        tracing::info!(
            target: "levee::access",
            client = %self.client,
            country = tag.country_code(),
            asn = tag.asn,
            method = %self.method,
            path = %self.uri.path(),
            status = self.status.as_u16(),
            pool,
            backend,
            duration_ms = self.start.elapsed().as_micros() as f64 / 1000.0,
            bytes_in,
            bytes_out,
            refused = self.refused.map(RejectReason::as_str),
        );
    }
}

/// Handles one request from a downstream connection.
pub async fn handle(
    req: Request<Incoming>,
    conn: Rc<ConnCtx>,
) -> Result<Response<ResponseBody<RequestRecord>>, Infallible> {
    conn.idle.begin();
    let snapshot = conn.routing_snapshot();
    let mut record = RequestRecord {
        conn: Rc::clone(&conn),
        client: conn.peer.ip(),
        forwarded_tag: None,
        snapshot: Rc::clone(&snapshot),
        method: req.method().clone(),
        uri: req.uri().clone(),
        pool: None,
        backend: None,
        status: StatusCode::OK,
        start: Instant::now(),
        bytes_in: Rc::new(Cell::new(0)),
        refused: None,
        _in_flight: None,
    };
    let listener = conn.listener_in(&snapshot);
    // The connection's client, or the one a trusted proxy names in X-Forwarded-For.
    let client_ip = client_ip_for_request(&listener.client_address, conn.peer, req.headers());
    record.client = client_ip;
    if client_ip != conn.peer.ip() {
        // Looked up per request only in this case: one proxy connection carries many clients.
        record.forwarded_tag = Some(snapshot.client_tag(client_ip));
    }
    let mut record = match over_request_limit(&conn, &snapshot, record) {
        Ok(record) => record,
        Err(refused) => return Ok(*refused),
    };
    let limits = &listener.http;
    if declared_length(&req).is_some_and(|len| len > limits.max_body_bytes) {
        return Ok(error_response(ProxyError::BodyTooLarge, record));
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let pool_id = route(listener, host, req.uri().path());
    record.pool = Some(pool_id);
    let pool = snapshot.pool(pool_id);
    let hash = if pool.policy.algorithm == crate::lb::Algorithm::Maglev {
        crate::lb::request_hash(&pool.policy.hash_key, client_ip, req.headers())
    } else {
        None
    };
    let ctx = PickContext {
        client: Some(client_ip),
        hash,
    };
    let mut tried = Tried::default();
    let (first, in_flight) = match acquire(pool, &ctx, &tried).await {
        Ok(found) => found,
        Err(e) => return Ok(error_response(e, record)),
    };
    let (mut parts, body) = req.into_parts();
    rewrite_request(
        &mut parts,
        &conn.client,
        &snapshot.geo_settings,
        record.forwarded_tag.as_ref().unwrap_or(&conn.tag),
        &pool.backends[first].authority,
    );
    // A bodyless idempotent request can be sent again even after a backend reset it.
    let replay =
        (pool.policy.retry.retries > 0 && body.is_end_stream() && is_idempotent(&parts.method))
            .then(|| parts.clone());
    let admission = &snapshot.admission;
    let min_rate = admission
        .min_upload_rate
        .filter(|_| !body.is_end_stream())
        .map(|rate| {
            let tag = record.forwarded_tag.as_ref().unwrap_or(&conn.tag);
            let shard = Arc::clone(&conn.worker.shard);
            UploadRate::counted(rate, admission.min_upload_rate_grace, shard, tag.country)
        });
    let body = RequestBody::new(body, limits.max_body_bytes, Rc::clone(&record.bytes_in))
        .with_min_rate(min_rate);
    pool.budget.deposit(&pool.policy.retry);
    let mut attempt = Attempt {
        index: first,
        in_flight,
        req: Request::from_parts(parts, body),
    };
    let mut retries_left = pool.policy.retry.retries;
    loop {
        let backend = &pool.backends[attempt.index];
        tried.add(attempt.index);
        record.backend = Some(backend.address);
        let sent_at = Instant::now();
        let result = conn
            .worker
            .upstream
            .send(backend.address, attempt.req, &pool.timeouts)
            .await;
        let (error, unsent) = match result {
            Ok((resp, pooled)) => {
                let took = sent_at.elapsed();
                if outlier::is_failure_status(pool, resp.status()) {
                    backend.state.record_failure();
                    outlier::on_failure(pool, attempt.index);
                } else {
                    backend.state.record_success(took);
                    outlier::on_success(pool, attempt.index);
                }
                conn.worker.shard.upstream_latency(conn.country, took);
                record._in_flight = Some(attempt.in_flight);
                return Ok(upstream_response(resp, pooled, record));
            }
            Err(SendError::NotSent(e, req)) => (e, Some(*req)),
            Err(SendError::Sent(e)) => (e, None),
        };
        if error.is_upstream() {
            backend.state.record_failure();
            outlier::on_failure(pool, attempt.index);
        }
        tracing::debug!(backend = %backend.address, pool = %pool.name, error = %error, "upstream attempt failed");
        drop(attempt.in_flight);
        let retryable = matches!(
            error,
            ProxyError::Connect(_) | ProxyError::ConnectTimeout | ProxyError::Upstream(_)
        );
        let next_req = unsent.or_else(|| replay_request(replay.as_ref(), &record.bytes_in));
        let Some(next_req) = next_req.filter(|_| retryable && retries_left > 0) else {
            return Ok(error_response(error, record));
        };
        // A refused connect reached no backend and costs the pool nothing: it retries
        // outside the budget (still bounded by `retries`).
        let costs_the_pool = !error.is_connect_refused();
        if costs_the_pool && !pool.budget.try_withdraw(&pool.policy.retry) {
            return Ok(error_response(error, record));
        }
        let Ok((index, in_flight)) = acquire(pool, &ctx, &tried).await else {
            return Ok(error_response(error, record));
        };
        retries_left -= 1;
        attempt = Attempt {
            index,
            in_flight,
            req: next_req,
        };
    }
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
    Response::from_parts(parts, ResponseBody::upstream(body, pooled, record))
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
    let Err(limited) = conn.worker.admission.rates.admit_request(rules, tag) else {
        return Ok(r);
    };
    let reason = RejectReason::RequestRateLimit;
    conn.worker.shard.admission_rejected(tag.country, reason);
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
