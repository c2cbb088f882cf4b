//! The request body on its way upstream: size-limited, counted, and cut when it arrives
//! slower than `[admission] min_upload_rate` (counted once as `slow_upload`).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::admission::UploadRate;
use crate::labels::{CountryIdx, RejectReason};
use crate::stats::Shard;

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
    rate: Option<MinUploadRate>,
    /// Cleared once the body has arrived whole (`IdleTracker::body_open`).
    open: Option<Rc<Cell<bool>>>,
}

/// A request body's minimum-rate clock, and where a body cut by it is counted.
#[derive(Debug)]
pub struct MinUploadRate {
    /// The clock.
    pub rate: UploadRate,
    /// The worker's shard, counted on once (`slow_upload`) if the body falls behind,
    /// whether or not the backend already answered.
    pub shard: Arc<Shard>,
    /// The client's country.
    pub country: CountryIdx,
}

impl RequestBody {
    /// Wraps `inner`; `seen` receives the number of bytes passed so far.
    pub fn new(inner: Incoming, limit: u64, seen: Rc<Cell<u64>>) -> Self {
        Self {
            inner: Some(inner),
            limit,
            seen,
            rate: None,
            open: None,
        }
    }

    /// Clears `open` once the whole body has arrived.
    pub fn with_open_flag(mut self, open: Rc<Cell<bool>>) -> Self {
        self.open = Some(open);
        self
    }

    /// The body has arrived whole.
    fn arrived(&mut self) {
        if let Some(open) = self.open.take() {
            open.set(false);
        }
    }

    /// Cuts the body (with `BodyTooSlow`) when it falls below the minimum upload rate.
    pub fn with_min_rate(mut self, rate: Option<MinUploadRate>) -> Self {
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
            open: None,
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
            Poll::Ready(None) => {
                this.arrived();
                return Poll::Ready(None);
            }
            Poll::Pending => {
                if let Some(min) = this.rate.as_mut()
                    && let Poll::Ready(slow) = min.rate.poll_behind(cx)
                {
                    this.inner = None;
                    min.shard
                        .admission_rejected(min.country, RejectReason::SlowUpload);
                    return Poll::Ready(Some(Err(Box::new(slow))));
                }
                return Poll::Pending;
            }
        };
        if let (Some(data), Some(min)) = (frame.data_ref(), this.rate.as_mut()) {
            min.rate.received(data.len() as u64);
        }
        if this.inner.as_ref().is_some_and(Incoming::is_end_stream) {
            this.arrived();
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
