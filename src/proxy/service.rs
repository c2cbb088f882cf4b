//! Per-request handling: route, pick a backend, rewrite, forward, stream back, log.

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;

use super::body::{OnComplete, RequestBody, ResponseBody};
use super::conn::ConnCtx;
use super::error::ProxyError;
use super::headers::{rewrite_request, rewrite_response};
use super::route::route;
use crate::config::PoolId;
use crate::lb::{InFlight, PickContext};

/// The response type levee sends downstream.
pub type ProxyResponse = Response<ResponseBody<RequestRecord>>;

/// What is known about one request; written to stats and the access log when it completes.
#[derive(Debug)]
pub struct RequestRecord {
    conn: Rc<ConnCtx>,
    method: Method,
    uri: Uri,
    pool: Option<PoolId>,
    backend: Option<SocketAddr>,
    status: StatusCode,
    start: Instant,
    bytes_in: Rc<Cell<u64>>,
    _in_flight: Option<InFlight>,
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        // However the request ends (completed, failed, or cancelled by the client).
        self.conn.idle.end();
    }
}

impl OnComplete for RequestRecord {
    fn complete(&mut self, bytes_out: u64) {
        let bytes_in = self.bytes_in.get();
        let shard = &self.conn.worker.shard;
        shard.request(self.conn.country, self.status.as_u16(), bytes_in, bytes_out);
        if !self.conn.snapshot.server.access_log {
            return;
        }
        let pool = self
            .pool
            .map_or("-", |id| self.conn.snapshot.pool(id).name.as_str());
        let backend = self.backend.map(tracing::field::display);
        tracing::info!(
            target: "levee::access",
            client = %self.conn.peer.ip(),
            method = %self.method,
            path = %self.uri.path(),
            status = self.status.as_u16(),
            pool,
            backend,
            duration_ms = self.start.elapsed().as_micros() as f64 / 1000.0,
            bytes_in,
            bytes_out,
        );
    }
}

/// Handles one request from a downstream connection.
pub async fn handle(
    req: Request<Incoming>,
    conn: Rc<ConnCtx>,
) -> Result<Response<ResponseBody<RequestRecord>>, Infallible> {
    conn.idle.begin();
    let mut record = RequestRecord {
        conn: Rc::clone(&conn),
        method: req.method().clone(),
        uri: req.uri().clone(),
        pool: None,
        backend: None,
        status: StatusCode::OK,
        start: Instant::now(),
        bytes_in: Rc::new(Cell::new(0)),
        _in_flight: None,
    };
    let limits = &conn.listener.http;
    if declared_length(&req).is_some_and(|len| len > limits.max_body_bytes) {
        return Ok(error_response(ProxyError::BodyTooLarge, record));
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let pool_id = route(&conn.listener, host, req.uri().path());
    record.pool = Some(pool_id);
    let pool = conn.snapshot.pool(pool_id);
    let ctx = PickContext {
        client: Some(conn.peer.ip()),
    };
    let Some(backend) = pool.pick(&ctx) else {
        return Ok(error_response(ProxyError::NoBackend, record));
    };
    record.backend = Some(backend.address);
    record._in_flight = Some(backend.state.begin_request());

    let (mut parts, body) = req.into_parts();
    rewrite_request(&mut parts, &conn.client, &backend.authority);
    let body = RequestBody::new(body, limits.max_body_bytes, Rc::clone(&record.bytes_in));
    let upstream_req = Request::from_parts(parts, body);
    let sent_at = Instant::now();
    let result = conn
        .worker
        .upstream
        .send(backend.address, upstream_req, &pool.timeouts)
        .await;
    match result {
        Ok((resp, pooled)) => {
            conn.worker
                .shard
                .upstream_latency(conn.country, sent_at.elapsed());
            let (mut parts, body) = resp.into_parts();
            rewrite_response(&mut parts);
            record.status = parts.status;
            Ok(Response::from_parts(
                parts,
                ResponseBody::upstream(body, pooled, record),
            ))
        }
        Err(e) => {
            if e.is_upstream() {
                backend.state.record_failure();
                tracing::warn!(backend = %backend.address, pool = %pool.name, error = %e, "upstream request failed");
            } else {
                tracing::debug!(error = %e, "request failed on the client side");
            }
            Ok(error_response(e, record))
        }
    }
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
    let mut resp = Response::new(ResponseBody::full(e.body_text(), record));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
