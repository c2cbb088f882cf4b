//! Request/response body helpers shared by the client and the backends.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use sha2::{Digest, Sha256};

/// Boxed error type of test bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type tests send and backends answer with.
pub type TestBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> TestBody {
    Empty::<Bytes>::new()
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// Period of the deterministic byte pattern (a prime, so a misplaced chunk changes the digest).
const PERIOD: usize = 251;
/// Size of each streamed chunk.
const CHUNK: usize = 64 * 1024;

/// Byte `i` of the pattern is `i % 251`.
fn pattern_chunk(offset: u64, len: usize) -> Bytes {
    let start = (offset % PERIOD as u64) as usize;
    let bytes: Vec<u8> = (start..start + len).map(|i| (i % PERIOD) as u8).collect();
    Bytes::from(bytes)
}

/// `n` bytes of the deterministic pattern, streamed in 64 KiB frames with an exact size hint.
pub fn pattern(n: u64) -> TestBody {
    PatternBody {
        sent: 0,
        total: n,
        exact: true,
    }
    .map_err(|e: Infallible| match e {})
    .boxed()
}

/// Like `pattern`, but without a size hint, so HTTP/1.1 sends it chunked.
pub fn pattern_chunked(n: u64) -> TestBody {
    PatternBody {
        sent: 0,
        total: n,
        exact: false,
    }
    .map_err(|e: Infallible| match e {})
    .boxed()
}

/// SHA-256 (hex) of `n` bytes of the pattern.
pub fn pattern_sha256(n: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < n {
        let len = CHUNK.min((n - offset) as usize);
        hasher.update(pattern_chunk(offset, len));
        offset += len as u64;
    }
    super::hex(&hasher.finalize())
}

/// SHA-256 (hex) of a byte slice.
pub fn sha256(bytes: &[u8]) -> String {
    super::hex(&Sha256::digest(bytes))
}

struct PatternBody {
    sent: u64,
    total: u64,
    exact: bool,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let len = CHUNK.min((self.total - self.sent) as usize);
        let chunk = pattern_chunk(self.sent, len);
        self.sent += len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.total - self.sent)
        } else {
            SizeHint::default()
        }
    }
}
