//! One access-log line, as text or flat JSON, appended to a worker's buffer.
//!
//! The shapes are those the `tracing` subscriber wrote before the log left it (so parsers
//! written for them keep working): text is
//! `2026-12-05T12:00:00.000123Z  INFO levee::access: key=value ...` with strings quoted and
//! escaped as Rust's `Debug` does, addresses, method and path bare; JSON is one flat object
//! with `timestamp`, `level` and `target` first, then the fields. Absent values (no backend,
//! no ASN, no user agent) are left out rather than written empty. Field order is fixed.

use std::fmt::{Display, Write as _};
use std::io::Write as _;
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
    /// Scratch space for JSON strings made from `Display` values.
    scratch: String,
}

impl LineFormat {
    /// A formatter of `format` lines.
    pub fn new(format: LogFormat) -> Self {
        Self {
            format,
            second: u64::MAX,
            second_text: String::new(),
            scratch: String::new(),
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
                let _ = write!(
                    out,
                    "{}.{micros:06}Z  INFO levee::access:",
                    self.second_text
                );
                fields(entry, &mut Text { out });
            }
            LogFormat::Json => {
                let _ = write!(
                    out,
                    "{{\"timestamp\":\"{}.{micros:06}Z\",\"level\":\"INFO\",\"target\":\"levee::access\"",
                    self.second_text
                );
                fields(
                    entry,
                    &mut Json {
                        out: &mut *out,
                        scratch: &mut self.scratch,
                    },
                );
                out.push(b'}');
            }
        }
        out.push(b'\n');
    }
}

/// How one format writes each kind of field. Numbers are written alike in both formats.
trait Fields {
    /// Writes the separator and `key`, and returns the line to write its value into.
    fn key(&mut self, key: &str) -> &mut Vec<u8>;
    /// A string field (quoted).
    fn text(&mut self, key: &str, value: &str);
    /// A field written through `Display` (bare in text, a string in JSON).
    fn display(&mut self, key: &str, value: &dyn Display);
    /// An integer field.
    fn int(&mut self, key: &str, value: u64) {
        let _ = write!(self.key(key), "{value}");
    }
    /// A number with a fraction. Durations are finite; `{:?}` keeps a `.0` on whole
    /// numbers, as serde_json does.
    fn float(&mut self, key: &str, value: f64) {
        let _ = write!(self.key(key), "{value:?}");
    }
}

/// The fields of `entry`, in the line's order.
fn fields(e: &AccessEntry<'_>, f: &mut impl Fields) {
    if let Some(id) = visible(Some(e.request_id)) {
        f.text("request_id", id);
    }
    f.display("client", &e.client);
    f.display("peer", &e.peer);
    f.text("country", e.country);
    if let Some(asn) = e.asn {
        f.int("asn", u64::from(asn));
    }
    f.text("listener", e.listener);
    f.text("proto", proto(e.version));
    f.display("method", e.method);
    let host = e.uri.authority().map(|a| a.as_str());
    if let Some(host) = host.or_else(|| visible(e.host_header)) {
        f.text("host", host);
    }
    f.display("path", &e.uri.path());
    if let Some(query) = e.uri.query().filter(|_| e.with_query) {
        f.text("query", query);
    }
    f.int("status", u64::from(e.status));
    f.text("status_from", e.status_from.as_str());
    if let Some(pool) = e.pool {
        f.text("pool", pool);
    }
    if let Some(backend) = &e.backend {
        f.display("backend", backend);
    }
    if let Some(upstream) = e.upstream {
        f.float("upstream_ms", millis(upstream));
    }
    f.float("duration_ms", millis(e.duration));
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

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// A header value as text, when it is visible ASCII (others are left out, not mangled).
fn visible(v: Option<&HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
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
        let _ = write!(self.key(key), "{value:?}");
    }
    fn display(&mut self, key: &str, value: &dyn Display) {
        let _ = write!(self.key(key), "{value}");
    }
}

/// `,"key":value` members of the line's object.
struct Json<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut String,
}

impl Fields for Json<'_> {
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }
    fn text(&mut self, key: &str, value: &str) {
        let _ = serde_json::to_writer(self.key(key), value);
    }
    fn display(&mut self, key: &str, value: &dyn Display) {
        // Made first (with its allocation kept for the next line), then escaped.
        let mut text = std::mem::take(&mut *self.scratch);
        text.clear();
        let _ = write!(text, "{value}");
        let _ = serde_json::to_writer(self.key(key), text.as_str());
        *self.scratch = text;
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
}
