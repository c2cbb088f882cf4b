//! Streaming bodies: the request body sent upstream (size-limited, counted) and the response
//! body sent downstream (counted, returns its upstream connection to the pool at the end).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::upstream::PooledSender;
use crate::admission::UploadRate;

/// Error raised by `RequestBody` when the client sends more than the limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    /// The configured limit.
    pub limit: u64,
}

/// The client's request body on its way upstream: counted and capped.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    limit: u64,
    seen: Rc<Cell<u64>>,
    /// `[admission] min_upload_rate`, when set.
    rate: Option<UploadRate>,
}

impl RequestBody {
    /// Wraps `inner`; `seen` receives the number of bytes passed so far.
    pub fn new(inner: Incoming, limit: u64, seen: Rc<Cell<u64>>) -> Self {
        Self {
            inner: Some(inner),
            limit,
            seen,
            rate: None,
        }
    }

    /// Cuts the body (with `BodyTooSlow`) when it falls below the minimum upload rate.
    pub fn with_min_rate(mut self, rate: Option<UploadRate>) -> Self {
        self.rate = rate;
        self
    }

    /// An empty body (a retried request that had none).
    pub fn empty(seen: Rc<Cell<u64>>) -> Self {
        Self {
            inner: None,
            limit: 0,
            seen,
            rate: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                if let Some(rate) = this.rate.as_mut() {
                    if let Poll::Ready(slow) = rate.poll_behind(cx) {
                        this.inner = None;
                        return Poll::Ready(Some(Err(Box::new(slow))));
                    }
                }
                return Poll::Pending;
            }
        };
        if let (Some(data), Some(rate)) = (frame.data_ref(), this.rate.as_mut()) {
            rate.received(data.len() as u64);
        }
        if let Some(data) = frame.data_ref() {
            let total = self.seen.get() + data.len() as u64;
            self.seen.set(total);
            if total > self.limit {
                let limit = self.limit;
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

/// Runs once when a response body is finished or dropped (access log, stats).
pub trait OnComplete {
    /// Called exactly once with the number of body bytes sent.
    fn complete(&mut self, bytes_out: u64);
}

/// The response body sent to the client.
pub struct ResponseBody<C: OnComplete> {
    kind: Kind,
    sent: u64,
    on_complete: Option<C>,
}

enum Kind {
    Upstream {
        inner: Incoming,
        pooled: Option<PooledSender>,
    },
    Full(Option<Bytes>),
}

impl<C: OnComplete> ResponseBody<C> {
    /// A body streamed from a backend; `pooled` goes back to the pool at end of stream.
    pub fn upstream(inner: Incoming, pooled: PooledSender, on_complete: C) -> Self {
        Self {
            kind: Kind::Upstream {
                inner,
                pooled: Some(pooled),
            },
            sent: 0,
            on_complete: Some(on_complete),
        }
    }

    /// A small body produced by levee itself.
    pub fn full(bytes: impl Into<Bytes>, on_complete: C) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
            sent: 0,
            on_complete: Some(on_complete),
        }
    }

    fn finish(&mut self) {
        if let Some(mut c) = self.on_complete.take() {
            c.complete(self.sent);
        }
    }
}

impl<C: OnComplete> Drop for ResponseBody<C> {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, Content-Length: 0) may never be polled: its connection
        // is still clean and goes back to the pool.
        if let Kind::Upstream { inner, pooled } = &mut self.kind {
            if inner.is_end_stream() {
                if let Some(sender) = pooled.take() {
                    sender.release();
                }
            }
        }
        self.finish();
    }
}

impl<C: OnComplete + Unpin> Body for ResponseBody<C> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, pooled } => {
                let p = Pin::new(&mut *inner).poll_frame(cx);
                if let Poll::Ready(None) = p {
                    if let Some(sender) = pooled.take() {
                        sender.release();
                    }
                }
                p
            }
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
