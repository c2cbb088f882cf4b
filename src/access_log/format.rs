//! One access-log line, as text or flat JSON, appended to a worker's buffer.
//!
//! The shapes are those the `tracing` subscriber wrote before the log left it (so parsers
//! written for them keep working): text is
//! `2026-12-05T12:00:00.000123Z  INFO levee::access: key=value ...` with strings quoted and
//! escaped as Rust's `Debug` does, addresses, method and path bare; JSON is one flat object
//! with `timestamp`, `level` and `target` first, then the fields. Absent values (no backend,
//! no ASN, no user agent) are left out rather than written empty. Field order is fixed.
//!
//! Bytes are pushed straight into the buffer (integers by `itoa`, plain strings copied as
//! they are, escaping only when a string needs it): formatting through `fmt` cost ~11,000
//! instructions per line, a sixth of a keep-alive request (issue 14).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Version};

use super::entry::AccessEntry;
use crate::config::LogFormat;

/// Formats lines in one format, remembering the timestamp's second (the date part is only
/// computed once a second).
#[derive(Debug)]
pub struct LineFormat {
    format: LogFormat,
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    second_text: String,
}

impl LineFormat {
    /// A formatter of `format` lines.
    pub fn new(format: LogFormat) -> Self {
        Self {
            format,
            second: u64::MAX,
            second_text: String::new(),
        }
    }

    /// Appends `entry`'s line, stamped `now`, to `out` (with its newline).
    pub fn append(&mut self, out: &mut Vec<u8>, entry: &AccessEntry<'_>, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        if since.as_secs() != self.second {
            self.second = since.as_secs();
            let whole = UNIX_EPOCH + Duration::from_secs(since.as_secs());
            self.second_text.clear();
            let _ = write!(
                self.second_text,
                "{}",
                humantime::format_rfc3339_seconds(whole)
            );
            // `...SSZ`: keep the date and time, the fraction and the `Z` are added per line.
            self.second_text.truncate(19);
        }
        let micros = since.subsec_micros();
        match self.format {
            LogFormat::Text => {
                self.stamp(out, micros);
                out.extend_from_slice(b"Z  INFO levee::access:");
                fields(entry, &mut Text { out });
            }
            LogFormat::Json => {
                out.extend_from_slice(b"{\"timestamp\":\"");
                self.stamp(out, micros);
                out.extend_from_slice(b"Z\",\"level\":\"INFO\",\"target\":\"levee::access\"");
                fields(entry, &mut Json { out: &mut *out });
                out.push(b'}');
            }
        }
        out.push(b'\n');
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff` (the second's text and six digits of microseconds).
    fn stamp(&self, out: &mut Vec<u8>, micros: u32) {
        out.extend_from_slice(self.second_text.as_bytes());
        out.push(b'.');
        push_padded(out, micros, 6);
    }
}

/// `value` in decimal, left-padded with zeros to `width` digits.
fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(value);
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(text.len())));
    out.extend_from_slice(text.as_bytes());
}

/// An integer in decimal.
fn push_int(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// An address as `Display` writes it (IPv4 digit by digit; IPv6 through `Display`, whose
/// compression rules are not worth redoing).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_int(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A socket address as `Display` writes it: `ip:port`, `[ip6]:port`.
fn push_socket(out: &mut Vec<u8>, addr: SocketAddr) {
    if addr.is_ipv6() {
        out.push(b'[');
        push_ip(out, addr.ip());
        out.push(b']');
    } else {
        push_ip(out, addr.ip());
    }
    out.push(b':');
    push_int(out, u64::from(addr.port()));
}

/// `value` between double quotes, copied as it is (the caller knows it needs no escaping).
fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(value);
    out.push(b'"');
}

/// Milliseconds with microsecond precision, as `{:?}` writes `micros / 1000.0` (shortest
/// form, at least one fractional digit: `2.0`, `1.84`, `0.123`).
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    let whole = u64::try_from(micros / 1000).unwrap_or(u64::MAX);
    push_int(out, whole);
    out.push(b'.');
    let mut frac = (micros % 1000) as u32;
    let mut width = 3;
    while width > 1 && frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    push_padded(out, frac, width);
}

/// How one format writes each kind of field. Numbers are written alike in both formats.
trait Fields {
    /// Writes the separator and `key`, and returns the line to write its value into.
    fn key(&mut self, key: &str) -> &mut Vec<u8>;
    /// A string field (quoted).
    fn text(&mut self, key: &str, value: &str);
    /// A field with no quotes in text and a string in JSON: `value` writes it.
    fn bare(&mut self, key: &str, value: impl FnOnce(&mut Vec<u8>));
    /// A token that needs no escaping in either format (method, path: visible ASCII
    /// without quotes or backslashes, or it is escaped as a string in JSON).
    fn word(&mut self, key: &str, value: &str);
    /// An integer field.
    fn int(&mut self, key: &str, value: u64) {
        push_int(self.key(key), value);
    }
    /// A duration in milliseconds (always with a fraction, as serde_json writes floats).
    fn millis(&mut self, key: &str, value: Duration) {
        push_millis(self.key(key), value);
    }
}

/// The fields of `entry`, in the line's order.
fn fields(e: &AccessEntry<'_>, f: &mut impl Fields) {
    if let Some(id) = visible(Some(e.request_id)) {
        f.text("request_id", id);
    }
    f.bare("client", |out| push_ip(out, e.client));
    f.bare("peer", |out| push_socket(out, e.peer));
    f.text("country", e.country);
    if let Some(asn) = e.asn {
        f.int("asn", u64::from(asn));
    }
    f.text("listener", e.listener);
    f.text("proto", proto(e.version));
    f.word("method", e.method.as_str());
    let host = e.uri.authority().map(|a| a.as_str());
    if let Some(host) = host.or_else(|| visible(e.host_header)) {
        f.text("host", host);
    }
    f.word("path", e.uri.path());
    if let Some(query) = e.uri.query().filter(|_| e.with_query) {
        f.text("query", query);
    }
    f.int("status", u64::from(e.status));
    f.text("status_from", e.status_from.as_str());
    if let Some(pool) = e.pool {
        f.text("pool", pool);
    }
    if let Some(backend) = e.backend {
        f.bare("backend", |out| push_socket(out, backend));
    }
    if let Some(upstream) = e.upstream {
        f.millis("upstream_ms", upstream);
    }
    f.millis("duration_ms", e.duration);
    f.int("bytes_in", e.bytes_in);
    f.int("bytes_out", e.bytes_out);
    if let Some(agent) = visible(e.user_agent) {
        f.text("user_agent", agent);
    }
    if let Some(refused) = e.refused {
        f.text("refused", refused);
    }
}

/// `h1` or `h2`: the protocol the client spoke.
fn proto(version: Version) -> &'static str {
    if version == Version::HTTP_2 {
        "h2"
    } else {
        "h1"
    }
}

/// A header value as text, when it is visible ASCII (others are left out, not mangled).
fn visible(v: Option<&HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
}

/// Bytes that `Debug`'s quoting leaves as they are: printable ASCII but `"` and `\\`. A
/// table: one load per byte instead of three comparisons (eight strings per line).
static DEBUG_PLAIN: [bool; 256] = plain_bytes(0x7f);

/// Bytes that serde_json leaves as they are: all but `"`, `\\` and control characters.
static JSON_PLAIN: [bool; 256] = plain_bytes(0x100);

/// `true` for the bytes from 0x20 below `end`, but `"` and `\\`.
const fn plain_bytes(end: usize) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < end {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table
}

/// `key=value` pairs after the target, separated by spaces.
struct Text<'a> {
    out: &'a mut Vec<u8>,
}

impl Fields for Text<'_> {
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.out.push(b' ');
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
        self.out
    }
    fn text(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        if value.bytes().all(|b| DEBUG_PLAIN[usize::from(b)]) {
            push_quoted(out, value.as_bytes());
        } else {
            let _ = write!(out, "{value:?}");
        }
    }
    fn bare(&mut self, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
        value(self.key(key));
    }
    fn word(&mut self, key: &str, value: &str) {
        self.bare(key, |out| out.extend_from_slice(value.as_bytes()));
    }
}

/// `,"key":value` members of the line's object.
struct Json<'a> {
    out: &'a mut Vec<u8>,
}

impl Fields for Json<'_> {
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }
    fn text(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        if value.bytes().all(|b| JSON_PLAIN[usize::from(b)]) {
            push_quoted(out, value.as_bytes());
        } else {
            let _ = serde_json::to_writer(out, value);
        }
    }
    fn bare(&mut self, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
        let out = self.key(key);
        // Addresses: digits, dots, colons and brackets, nothing to escape.
        out.push(b'"');
        value(out);
        out.push(b'"');
    }
    fn word(&mut self, key: &str, value: &str) {
        self.text(key, value);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use http::{Method, Uri};

    use super::*;
    use crate::access_log::StatusFrom;

    fn line(format: LogFormat, uri: &Uri, agent: &HeaderValue, upstream: bool) -> String {
        let id = HeaderValue::from_static("req-1");
        let entry = AccessEntry {
            request_id: &id,
            client: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
            peer: SocketAddr::from(([127, 0, 0, 1], 50412)),
            country: "BR",
            asn: upstream.then_some(64500),
            listener: "public",
            version: Version::HTTP_2,
            method: &Method::GET,
            uri,
            host_header: None,
            with_query: true,
            status: 200,
            status_from: StatusFrom::Backend,
            pool: Some("web"),
            backend: upstream.then(|| SocketAddr::from(([10, 0, 0, 10], 8080))),
            upstream: upstream.then(|| Duration::from_micros(1840)),
            duration: Duration::from_micros(2000),
            bytes_in: 0,
            bytes_out: 5120,
            user_agent: Some(agent),
            refused: None,
        };
        let mut out = Vec::new();
        let at = UNIX_EPOCH + Duration::from_micros(1_764_936_000_000_123);
        LineFormat::new(format).append(&mut out, &entry, at);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_text_line_has_the_tracing_layout() {
        let uri: Uri = "https://shop.example:443/cart?x=1".parse().unwrap();
        let agent = HeaderValue::from_static("curl/8.5.0 \"q\"");
        let got = line(LogFormat::Text, &uri, &agent, true);
        assert_eq!(
            got,
            "2025-12-05T12:00:00.000123Z  INFO levee::access: request_id=\"req-1\" \
             client=203.0.113.9 peer=127.0.0.1:50412 country=\"BR\" asn=64500 \
             listener=\"public\" proto=\"h2\" method=GET host=\"shop.example:443\" path=/cart \
             query=\"x=1\" status=200 status_from=\"backend\" pool=\"web\" \
             backend=10.0.0.10:8080 upstream_ms=1.84 duration_ms=2.0 bytes_in=0 \
             bytes_out=5120 user_agent=\"curl/8.5.0 \\\"q\\\"\"\n"
        );
    }

    #[test]
    fn a_json_line_is_one_flat_object_without_absent_fields() {
        let uri: Uri = "/a%22b".parse().unwrap();
        let agent = HeaderValue::from_static("agent \"x\" \\");
        let got = line(LogFormat::Json, &uri, &agent, false);
        assert!(got.ends_with("}\n"), "{got}");
        let head = r#"{"timestamp":"2025-12-05T12:00:00.000123Z","level":"INFO","target":"levee::access","request_id":"req-1","#;
        assert!(got.starts_with(head), "{got}");
        let value: serde_json::Value = serde_json::from_str(&got).unwrap();
        let obj = value.as_object().unwrap();
        assert_eq!(obj["timestamp"], "2025-12-05T12:00:00.000123Z");
        assert_eq!(obj["target"], "levee::access");
        assert_eq!(obj["client"], "203.0.113.9");
        assert_eq!(obj["path"], "/a%22b");
        assert_eq!(obj["user_agent"], "agent \"x\" \\");
        assert_eq!(obj["duration_ms"], 2.0);
        assert_eq!(obj["status"], 200);
        for absent in ["asn", "backend", "upstream_ms", "host", "refused"] {
            assert!(!obj.contains_key(absent), "{absent} in {got}");
        }
    }

    #[test]
    fn numbers_are_written_as_display_and_float_debug_write_them() {
        for micros in (0..5000).chain([999_999, 1_000_000, 12_345_678, 86_400_000_001]) {
            let mut out = Vec::new();
            push_millis(&mut out, Duration::from_micros(micros));
            let want = format!("{:?}", micros as f64 / 1000.0);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{micros}");
        }
        for micros in [0, 7, 123, 999_999] {
            let mut out = Vec::new();
            push_padded(&mut out, micros, 6);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{micros:06}"));
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let addrs: [SocketAddr; 7] = [
            "0.0.0.0:0".parse().unwrap(),
            "10.0.99.100:8080".parse().unwrap(),
            "1.22.133.9:1".parse().unwrap(),
            "203.0.113.255:65535".parse().unwrap(),
            "[::1]:443".parse().unwrap(),
            "[2001:db8::8:800:200c:417a]:8080".parse().unwrap(),
            "[::ffff:192.0.2.1]:80".parse().unwrap(),
        ];
        for octet in 0..=255u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(octet, 0, octet, 255 - octet));
            let mut text = Vec::new();
            push_ip(&mut text, ip);
            assert_eq!(String::from_utf8(text).unwrap(), ip.to_string());
        }
        for addr in addrs {
            let (mut ip, mut socket) = (Vec::new(), Vec::new());
            push_ip(&mut ip, addr.ip());
            push_socket(&mut socket, addr);
            assert_eq!(String::from_utf8(ip).unwrap(), addr.ip().to_string());
            assert_eq!(String::from_utf8(socket).unwrap(), addr.to_string());
        }
    }

    #[test]
    fn strings_are_quoted_as_debug_and_serde_json_quote_them() {
        let values = [
            "plain",
            "",
            "with space",
            "q\"uote",
            "back\\slash",
            "tab\there",
            "del\u{7f}",
            "caf\u{e9}",
            "\u{301}accent",
            "nul\u{0}",
        ];
        for v in values {
            let mut text = Vec::new();
            Text { out: &mut text }.text("k", v);
            assert_eq!(
                String::from_utf8(text).unwrap(),
                format!(" k={v:?}"),
                "{v:?}"
            );
            let mut json = Vec::new();
            Json { out: &mut json }.text("k", v);
            let want = format!(",\"k\":{}", serde_json::to_string(v).unwrap());
            assert_eq!(String::from_utf8(json).unwrap(), want, "{v:?}");
        }
    }
}
