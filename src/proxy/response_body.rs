//! The response body sent downstream: counted, returns its upstream connection to the pool
//! at the end of the stream, and reports its completion once (access log, stats).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::upstream::PooledSender;

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

    /// An empty body that reports no completion: a `101` or an h2 extended CONNECT's
    /// `200`, whose request completes when its tunnel ends (`proxy::tunnel`).
    pub fn switched() -> Self {
        Self {
            kind: Kind::Full(None),
            sent: 0,
            on_complete: None,
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
        if let Kind::Upstream { inner, pooled } = &mut self.kind
            && inner.is_end_stream()
            && let Some(sender) = pooled.take()
        {
            sender.release();
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
                match &p {
                    Poll::Ready(None) => {
                        if let Some(sender) = pooled.take() {
                            sender.release();
                        }
                    }
                    Poll::Pending => {
                        if let Some(sender) = pooled {
                            sender.waiting_for_body();
                        }
                    }
                    Poll::Ready(Some(_)) => {}
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
