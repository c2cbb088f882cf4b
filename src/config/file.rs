//! The raw serde form of the TOML config file, and turning TOML errors into key-path errors.
//!
//! Owns only the shape of the file: every table denies unknown fields, values that need
//! checking (addresses, durations, ranges, references) stay as written and are checked by
//! `validate`, so that one pass can report every problem instead of the first.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

mod admission;
mod pool;

pub use admission::{RawAdmission, RawRateLimit};
pub use pool::{RawBackend, RawHealthCheck, RawOutlierDetection, RawPool, RawStatus};

/// The whole file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: RawServer,
    /// `[admin]`.
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[[listeners]]`, in file order.
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    /// `[pools.NAME]`, sorted by name.
    #[serde(default)]
    pub pools: BTreeMap<String, RawPool>,
    /// `[geo]`.
    #[serde(default)]
    pub geo: RawGeo,
    /// `[stats]`.
    #[serde(default)]
    pub stats: RawStats,
    /// `[admission]`.
    #[serde(default)]
    pub admission: RawAdmission,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Worker threads; default: available cores.
    pub workers: Option<i64>,
    /// Graceful shutdown deadline, e.g. `"30s"`.
    pub shutdown_timeout: Option<String>,
    /// Listen backlog.
    pub backlog: Option<i64>,
    /// `"text"` or `"json"`.
    pub log_format: Option<String>,
    /// Whether the access log is written.
    pub access_log: Option<bool>,
    /// Whether access-log lines carry the request's query string.
    pub access_log_query: Option<bool>,
    /// File the access log is appended to (reopened on SIGUSR1); default: stdout.
    pub access_log_path: Option<std::path::PathBuf>,
    /// Entries of the shared TLS 1.2 session-ID cache.
    pub tls_session_cache: Option<i64>,
    /// Reload when the config file changes.
    pub watch_config: Option<bool>,
}

/// `[admin]`: the admin API listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Socket address, or `"off"` / `""` to disable.
    pub listen: Option<String>,
    /// Bearer token every endpoint but `/healthz` requires; absent: no token.
    pub token: Option<String>,
}

/// `[stats]`: traffic windows, baselines and spike detection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStats {
    /// Spike when the 10 s connection rate is this many times the baseline.
    pub spike_threshold: Option<f64>,
    /// ... and at least this many new connections per second.
    pub spike_min_rate: Option<f64>,
    /// Smallest baseline the ratio divides by, in connections per second.
    pub spike_floor: Option<f64>,
    /// Half-life of the baseline's moving average, e.g. `"10m"`.
    pub baseline_half_life: Option<String>,
}

/// `[geo]`: the GeoIP databases (MaxMind DB files).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    /// Country database; relative to the config file's directory. Default: the bundled one.
    pub country_db: Option<PathBuf>,
    /// ASN database (GeoLite2-ASN shape); relative to the config file's directory; `""` for
    /// none. Default: the bundled one.
    pub asn_db: Option<PathBuf>,
    /// Whether clients are looked up at all. Default: true.
    pub enabled: Option<bool>,
    /// Upstream request header carrying the client's country. Default: `X-Client-Country`.
    pub country_header: Option<String>,
    /// Upstream request header carrying the client's ASN. Default: `X-Client-ASN`.
    pub asn_header: Option<String>,
}

/// `[[listeners]]`: one listening address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Unique name.
    pub name: String,
    /// Socket address to bind.
    pub listen: String,
    /// Pool used when no route matches.
    pub default_pool: String,
    /// `[listeners.tls]`; absent means plain HTTP.
    pub tls: Option<RawTls>,
    /// `[listeners.http]`; absent means defaults.
    #[serde(default)]
    pub http: RawHttp,
    /// `[[listeners.routes]]`, first match wins.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// `"off"` (default), `"v1"`, `"v2"` or `"any"`: a PROXY protocol header comes first.
    pub proxy_protocol: Option<String>,
    /// CIDRs allowed to send a PROXY header or a believed `X-Forwarded-For`. Default: none.
    pub trusted_proxies: Option<Vec<String>>,
    /// Time allowed for the whole PROXY header, from accept, e.g. `"5s"`.
    pub proxy_protocol_timeout: Option<String>,
    /// Whether `X-Forwarded-For` from `trusted_proxies` names the client. Default: false.
    pub trust_forwarded_for: Option<bool>,
    /// Whether this listener's requests are in the access log. Default: `[server] access_log`.
    pub access_log: Option<bool>,
}

/// `[listeners.tls]`: TLS termination settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Certificates; the first is the default. Empty or absent: a generated self-signed one.
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    /// Deadline for the whole handshake, e.g. `"10s"`.
    pub handshake_timeout: Option<String>,
}

/// One `{ cert = "...", key = "..." }` entry of `listeners.tls.certificates`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM certificate chain, leaf first; relative to the config file's directory.
    pub cert: PathBuf,
    /// PEM private key; relative to the config file's directory.
    pub key: PathBuf,
}

/// `[listeners.http]`: request limits and downstream timeouts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Largest request head in bytes.
    pub max_header_bytes: Option<i64>,
    /// Largest request body in bytes.
    pub max_body_bytes: Option<i64>,
    /// Time allowed to receive a request head.
    pub header_timeout: Option<String>,
    /// Keep-alive idle time between requests.
    pub idle_timeout: Option<String>,
    /// Longest time without progress writing to the client.
    pub send_timeout: Option<String>,
    /// How long an upgraded connection (WebSocket) may pass no byte either way.
    pub upgrade_idle_timeout: Option<String>,
}

/// `[[listeners.routes]]`: host and/or path prefix to a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Host to match (case-insensitive, no port).
    pub host: Option<String>,
    /// Path prefix to match; starts with `/`.
    pub path_prefix: Option<String>,
    /// Destination pool name.
    pub pool: String,
}

/// Parses TOML text into the raw form. The error names the key path where one can be found
/// (`listeners[0].tls.bogus`), and always the line and column.
pub fn parse(source: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(source).map_err(|e| toml_error(source, &e))
}

/// Maps a TOML error to a key path plus a one-line reason.
fn toml_error(source: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().replace('\n', "; ");
    let Some(span) = e.span() else {
        let key = missing_field(&message).unwrap_or_default().to_string();
        return ConfigError::new(key, message);
    };
    let (line, column) = line_column(source, span.start);
    let mut key = key_path_at(source, span.start);
    if let Some(field) = missing_field(&message) {
        key = join(&key, field);
    }
    if key.is_empty() {
        key = format!("line {line}");
    }
    ConfigError::new(key, format!("{message} (line {line}, column {column})"))
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// One-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A key as written in a path: bare when it can be (`api`), else quoted (`"a.b"`).
pub(crate) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The segments of a bare (maybe dotted) key; quoted parts arrive as separate tokens.
fn bare_segments(word: &str) -> impl Iterator<Item = String> + '_ {
    word.split('.')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// The key path (`listeners[1].routes[0].pool`) of whatever sits at byte `offset` of a TOML
/// document. A small scanner, not a parser: it tolerates the malformed input it is asked about
/// and only tracks headers, keys, inline tables and arrays.
pub(crate) fn key_path_at(source: &str, offset: usize) -> String {
    let mut locator = Locator {
        tokens: Tokens {
            src: source,
            pos: 0,
        },
        frames: vec![Frame::table(String::new())],
        arrays_of_tables: HashMap::new(),
    };
    locator.run(offset)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBrace,
    CloseBrace,
    Comma,
    Equals,
    Newline,
    /// A bare word: key (maybe dotted), number, boolean, date.
    Word(String),
    /// A string's contents: one key segment even if it holds dots.
    Quoted(String),
}

struct Tokens<'a> {
    src: &'a str,
    pos: usize,
}

impl Tokens<'_> {
    /// The next token and its start offset, skipping blanks and comments.
    fn next(&mut self) -> Option<(usize, Token)> {
        let rest = &self.src[self.pos..];
        let skipped = rest.len() - rest.trim_start_matches([' ', '\t', '\r']).len();
        self.pos += skipped;
        let start = self.pos;
        let c = self.src[start..].chars().next()?;
        let single = match c {
            '[' => Some(Token::Open),
            ']' => Some(Token::Close),
            '{' => Some(Token::OpenBrace),
            '}' => Some(Token::CloseBrace),
            ',' => Some(Token::Comma),
            '=' => Some(Token::Equals),
            '\n' => Some(Token::Newline),
            _ => None,
        };
        if let Some(token) = single {
            self.pos += 1;
            return Some((start, token));
        }
        let token = match c {
            '#' => {
                self.pos = self.src[start..]
                    .find('\n')
                    .map_or(self.src.len(), |i| start + i);
                return self.next();
            }
            '"' | '\'' => self.string(c),
            _ => self.word(),
        };
        Some((start, token))
    }

    fn string(&mut self, quote: char) -> Token {
        let triple: String = std::iter::repeat_n(quote, 3).collect();
        let rest = &self.src[self.pos..];
        let (open, close) = if rest.starts_with(&triple) {
            (3, triple.as_str())
        } else {
            (1, &triple[..1])
        };
        let body = &rest[open..];
        let mut end = body.len();
        let mut escaped = false;
        for (i, ch) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if ch == '\\' && quote == '"' {
                escaped = true;
            } else if body[i..].starts_with(close) || (open == 1 && ch == '\n') {
                end = i;
                break;
            }
        }
        let closed = body[end..].starts_with(close);
        self.pos += open + end + if closed { close.len() } else { 0 };
        Token::Quoted(body[..end].to_string())
    }

    fn word(&mut self) -> Token {
        let rest = &self.src[self.pos..];
        let len = rest
            .find(|c: char| c.is_whitespace() || "[]{},=#\"'".contains(c))
            .unwrap_or(rest.len())
            .max(rest.chars().next().map_or(0, char::len_utf8));
        self.pos += len;
        Token::Word(rest[..len].to_string())
    }
}

/// Where keys currently land: a (header or inline) table, or an array being filled.
enum Frame {
    Table {
        base: String,
        key: Vec<String>,
        in_value: bool,
    },
    Array {
        path: String,
        index: usize,
    },
}

impl Frame {
    fn table(base: String) -> Self {
        Frame::Table {
            base,
            key: Vec::new(),
            in_value: false,
        }
    }

    fn path(&self) -> String {
        match self {
            Frame::Table { base, key, .. } => key.iter().fold(base.clone(), |p, k| join(&p, k)),
            Frame::Array { path, index } => format!("{path}[{index}]"),
        }
    }
}

struct Locator<'a> {
    tokens: Tokens<'a>,
    frames: Vec<Frame>,
    /// Element counts of arrays of tables, by resolved path (`listeners[0].routes`).
    arrays_of_tables: HashMap<String, usize>,
}

impl Locator<'_> {
    fn run(&mut self, offset: usize) -> String {
        while let Some((start, token)) = self.tokens.next() {
            // A syntax error reported at a line end belongs to the key on that line.
            if start > offset || (start == offset && token == Token::Newline) {
                break;
            }
            let header_position = self.frames.len() == 1
                && matches!(
                    self.frames.last(),
                    Some(Frame::Table {
                        in_value: false,
                        ..
                    })
                );
            if header_position && token == Token::Open {
                self.header();
            } else if matches!(self.frames.last(), Some(Frame::Array { .. })) {
                self.array_token(token);
            } else {
                self.table_token(token);
            }
        }
        self.frames.last().map(Frame::path).unwrap_or_default()
    }

    fn array_token(&mut self, token: Token) {
        let Some(Frame::Array { path, index }) = self.frames.last_mut() else {
            return;
        };
        let element = format!("{path}[{index}]");
        match token {
            Token::Close => self.pop(),
            Token::Comma => *index += 1,
            Token::OpenBrace => self.frames.push(Frame::table(element)),
            Token::Open => self.frames.push(Frame::Array {
                path: element,
                index: 0,
            }),
            _ => {}
        }
    }

    fn table_token(&mut self, token: Token) {
        let Some(Frame::Table { key, in_value, .. }) = self.frames.last_mut() else {
            return;
        };
        match token {
            Token::Word(w) if !*in_value => key.extend(bare_segments(&w)),
            Token::Quoted(w) if !*in_value => key.push(key_segment(&w)),
            Token::Equals => *in_value = true,
            Token::Comma | Token::Newline => {
                key.clear();
                *in_value = false;
            }
            Token::CloseBrace => self.pop(),
            Token::OpenBrace if *in_value => {
                let path = self.frames.last().map(Frame::path).unwrap_or_default();
                self.frames.push(Frame::table(path));
            }
            Token::Open if *in_value => {
                let path = self.frames.last().map(Frame::path).unwrap_or_default();
                self.frames.push(Frame::Array { path, index: 0 });
            }
            _ => {}
        }
    }

    /// Leaves an inline table or array; the enclosing key's value is then complete.
    fn pop(&mut self) {
        if self.frames.len() > 1 {
            self.frames.pop();
        }
    }

    /// Reads a `[a.b]` or `[[a.b]]` header (the first `[` already consumed) and resolves it.
    fn header(&mut self) {
        let mut segments = Vec::new();
        let mut array = false;
        let mut first = true;
        while let Some((_, token)) = self.tokens.next() {
            match token {
                Token::Open if first => array = true,
                Token::Word(w) => segments.extend(bare_segments(&w)),
                Token::Quoted(w) => segments.push(key_segment(&w)),
                Token::Close | Token::Newline => break,
                _ => {}
            }
            first = false;
        }
        if array {
            // Consume the second `]` of `]]` if present.
            let save = self.tokens.pos;
            if !matches!(self.tokens.next(), Some((_, Token::Close))) {
                self.tokens.pos = save;
            }
        }
        let base = self.resolve(&segments, array);
        self.frames = vec![Frame::table(base)];
    }

    /// `listeners.routes` -> `listeners[1].routes[0]`, counting array-of-tables elements.
    fn resolve(&mut self, segments: &[String], array: bool) -> String {
        let mut path = String::new();
        for (i, segment) in segments.iter().enumerate() {
            path = join(&path, segment);
            let last = i + 1 == segments.len();
            if last && array {
                let count = self.arrays_of_tables.entry(path.clone()).or_insert(0);
                *count += 1;
                path = format!("{path}[{}]", *count - 1);
            } else if let Some(count) = self.arrays_of_tables.get(&path) {
                path = format!("{path}[{}]", count.saturating_sub(1));
            }
        }
        path
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn err(source: &str) -> ConfigError {
        parse(source).unwrap_err()
    }

    #[test]
    fn unknown_field_in_nested_tables_names_the_path() {
        let l = "listen = ':1'\ndefault_pool = 'p'\n";
        let src = format!(
            "[[listeners]]\nname='a'\n{l}[[listeners]]\nname='b'\n{l}[listeners.tls]\nbogus = 1\n"
        );
        let e = err(&src);
        assert_eq!(e.key, "listeners[1].tls.bogus");
        assert!(e.reason.contains("unknown field `bogus`"), "{e}");
        assert!(e.reason.contains("line 10, column 1"), "{e}");
        let e = err("[[listeners]]\nname='a'\n[[listeners]]\n");
        assert_eq!(e.key, "listeners[0].listen");
        assert!(e.reason.contains("missing field `listen`"), "{e}");
    }

    #[test]
    fn unknown_field_in_inline_table_inside_array() {
        let src = "[[listeners]]\nname='a'\n[listeners.tls]\n# c [x]\ncertificates = [\n  { cert = 'a', key = 'b' },\n  { cert = \"a]\", key = 'b', bogus = 1 },\n]\n";
        assert_eq!(err(src).key, "listeners[0].tls.certificates[1].bogus");
    }

    #[test]
    fn dotted_keys_headers_and_missing_fields() {
        let e = err("[[listeners]]\nname='a'\ntls.bogus = 1\n");
        assert_eq!(e.key, "listeners[0].tls.bogus");
        let e = err("[pools.\"a.b\"]\n[[pools.\"a.b\".backends]]\n\"ad.dr\" = 1\n");
        assert_eq!(e.key, r#"pools."a.b".backends[0]."ad.dr""#);
        let e = err("[[listeners]]\nname='a'\n[listeners.bogus]\nx=1\n");
        assert_eq!(e.key, "listeners[0].bogus");
        let e = err(
            "[pools.api]\n[[pools.api.backends]]\naddress='x'\n[[pools.api.backends]]\nweight=1\n",
        );
        assert_eq!(e.key, "pools.api.backends[1].address");
        let e = err(
            "[[listeners]]\nname='a'\nlisten='x'\ndefault_pool='p'\n[[listeners.routes]]\npool=1\n",
        );
        assert_eq!(e.key, "listeners[0].routes[0].pool");
        assert!(e.reason.contains("invalid type"), "{e}");
    }

    #[test]
    fn syntax_error_names_the_line_and_key() {
        let e = err("[server]\nworkers = \n");
        assert_eq!(e.key, "server.workers");
        assert!(e.reason.contains("line 2"), "{e}");
        let e = err("[server\n");
        assert!(e.reason.contains("line 1"), "{e}");
    }

    #[test]
    fn scanner_survives_odd_input() {
        for src in [
            "", "[", "[[", "a = [[[", "a = '''x", "x = \"\\", "é = 1", "]]]}}}", "a={b=[{",
        ] {
            for offset in 0..=src.len() {
                let _ = key_path_at(src, offset);
            }
        }
    }
}
