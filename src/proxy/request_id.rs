//! `X-Request-Id`: the client's own when it is a sane token, else one this worker makes;
//! sent upstream and written to the access log.
//!
//! A made id is 32 lowercase hex digits (the shape of a W3C trace id): a random 64-bit
//! prefix drawn once per worker, then the worker's request counter. It is unique within the
//! process without any shared state, and across processes with overwhelming probability;
//! it costs no random draw per request.

use std::cell::Cell;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header the id travels in.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id levee keeps (longer ones are replaced: a log field, not a payload).
const MAX_CLIENT_ID: usize = 128;

/// One worker's maker of request ids (not shared: each worker has its own).
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: Cell<u64>,
}

impl RequestIds {
    /// A maker with a random prefix (from the TLS provider's secure random source; a
    /// failure there falls back to the time and the thread, which is still unique enough
    /// for a log correlation id).
    pub fn new() -> Self {
        let mut bytes = [0u8; 8];
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let prefix = match provider.secure_random.fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => fallback_prefix(),
        };
        Self::with_prefix(prefix)
    }

    /// A maker whose ids start with `prefix` (tests).
    pub fn with_prefix(prefix: u64) -> Self {
        Self {
            prefix,
            next: Cell::new(0),
        }
    }

    /// The request's id: the client's `X-Request-Id` when it is one visible-ASCII token of
    /// at most 128 bytes (and the only one), else a new id. `headers` is left as it was.
    pub fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        let mut sent = headers.get_all(&X_REQUEST_ID).iter();
        if let (Some(id), None) = (sent.next(), sent.next())
            && is_valid(id.as_bytes())
        {
            return id.clone();
        }
        self.make()
    }

    /// A new id, never one made before by this maker.
    pub fn make(&self) -> HeaderValue {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let mut text = [0u8; 32];
        hex(self.prefix, &mut text[..16]);
        hex(n, &mut text[16..]);
        // 32 hex digits are always a valid header value.
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a client's id is kept: 1 to 128 bytes, each visible ASCII (no space, no control
/// byte, nothing a log line or a backend would have to escape).
fn is_valid(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_CLIENT_ID && id.iter().all(|b| b.is_ascii_graphic())
}

/// `value` as 16 lowercase hex digits in `out` (16 bytes).
fn hex(value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 60 - 4 * i;
        *slot = DIGITS[((value >> shift) & 0xf) as usize];
    }
}

/// A prefix from the clock and the thread, when no secure random byte can be had.
fn fallback_prefix() -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::time::SystemTime::now().hash(&mut h);
    std::thread::current().id().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ids: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for id in ids {
            map.append(&X_REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
        }
        map
    }

    #[test]
    fn made_ids_are_32_hex_digits_prefix_then_counter() {
        let ids = RequestIds::with_prefix(0x0123_4567_89ab_cdef);
        assert_eq!(ids.make(), "0123456789abcdef0000000000000000");
        assert_eq!(ids.make(), "0123456789abcdef0000000000000001");
    }

    #[test]
    fn workers_draw_different_prefixes() {
        let (a, b) = (RequestIds::new(), RequestIds::new());
        assert_ne!(a.make(), b.make());
    }

    #[test]
    fn a_sane_client_id_is_kept() {
        let ids = RequestIds::with_prefix(1);
        let id = ids.for_request(&headers(&[b"abc-123_XYZ.4"]));
        assert_eq!(id, "abc-123_XYZ.4");
    }

    #[test]
    fn bad_or_repeated_client_ids_are_replaced() {
        let ids = RequestIds::with_prefix(1);
        let long = vec![b'a'; MAX_CLIENT_ID + 1];
        let max = vec![b'a'; MAX_CLIENT_ID];
        for bad in [&b""[..], b"has space", b"tab\there", &long, b"caf\xc3\xa9"] {
            let id = ids.for_request(&headers(&[bad]));
            assert_eq!(id.len(), 32, "{bad:?} replaced by a made id");
        }
        assert_eq!(ids.for_request(&headers(&[b"a", b"b"])).len(), 32);
        assert_eq!(ids.for_request(&headers(&[&max])).as_bytes(), &max[..]);
        assert_eq!(ids.for_request(&HeaderMap::new()).len(), 32);
    }
}
