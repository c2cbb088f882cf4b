//! Raw config -> `Snapshot`: applies defaults, checks every value and reference, and reads the
//! certificate and key files, so that a snapshot which exists is usable as is.
//!
//! Owns the defaults and the rules. It collects every problem (each naming its key path, e.g.
//! `pools.api.backends[1].address`) instead of stopping at the first; it never binds sockets or
//! touches running state.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file::{RawCertificate, RawConfig, RawListener, RawRoute, RawTls};
use super::{
    AdminSettings, BuildContext, ConfigError, ConfigErrors, HttpLimits, Listener, ListenerTls,
    LogFormat, PoolId, Route, ServerSettings, Snapshot,
};
use crate::tls::certs::{CertError, NamedKey};

/// Default number of entries of the shared TLS 1.2 session-ID cache (`server.tls_session_cache`).
pub const DEFAULT_TLS_SESSION_CACHE: usize = 20_480;
/// Default admin API address (`admin.listen`).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

// Defaults of the other keys (config/levee.toml documents each; pool keys: see `pool`, `policy`).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const BACKLOG: u32 = 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `[listeners.http] send_timeout`.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const UPGRADE_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

// Accepted ranges. hyper refuses a read buffer under 8 KiB, and the head limit is that buffer.
const WORKERS_RANGE: (i64, i64) = (1, 1024);
const BACKLOG_RANGE: (i64, i64) = (1, 65_535);
const SESSION_CACHE_RANGE: (i64, i64) = (1, 10_000_000);
const HEADER_BYTES_RANGE: (i64, i64) = (8 * 1024, 1024 * 1024);

mod admin;
mod admission;
mod admission_limits;
mod geo;
mod listener_net;
mod policy;
mod pool;
mod stats;

type PoolIndex = HashMap<String, PoolId>;

/// Builds a snapshot from the raw file, or returns every problem found.
pub fn build(raw: RawConfig, source: &str, ctx: &BuildContext) -> Result<Snapshot, ConfigErrors> {
    let mut errs = Vec::new();
    let pool_index: PoolIndex = raw
        .pools
        .keys()
        .enumerate()
        .map(|(i, name)| (name.clone(), PoolId(i)))
        .collect();
    let server = server_settings(&raw, &ctx.base_dir, &mut Scope::new(&mut errs, "server"));
    let admin = admin_settings(&raw, &mut Scope::new(&mut errs, "admin"));
    check_listener_identity(&raw, &mut Scope::new(&mut errs, ""));
    let listeners = build_listeners(&raw.listeners, &pool_index, ctx, &mut errs);
    let pools = pool::build_pools(&raw.pools, ctx.previous.as_deref(), &mut errs);
    let previous_geo = ctx.previous.as_deref().map(|p| &p.geo);
    let geo = geo::build_geo(
        &raw.geo,
        &ctx.base_dir,
        previous_geo,
        &mut Scope::new(&mut errs, "geo"),
    );
    let geo_settings = geo::geo_settings(
        &raw.geo,
        ctx.previous.as_deref().map(|p| &p.geo_settings),
        &mut Scope::new(&mut errs, "geo"),
    );
    let stats = stats::build_stats(&raw.stats, &mut Scope::new(&mut errs, "stats"));
    let admission =
        admission::build_admission(&raw.admission, &mut Scope::new(&mut errs, "admission"));
    match (server, admin, listeners, pools, geo, stats, admission) {
        (
            Some(server),
            Some(admin),
            Some(listeners),
            Some(pools),
            Some(geo),
            Some(stats),
            Some(admission),
        ) if errs.is_empty() => Ok(Snapshot {
            generation: ctx.generation,
            source_hash: source_hash(source),
            pool_stats: pool::build_pool_stats(
                &pools,
                server.workers.get(),
                ctx.previous.as_deref(),
            ),
            server,
            admin,
            listeners,
            pools,
            pool_index,
            geo,
            geo_settings,
            stats,
            admission,
        }),
        _ if errs.is_empty() => Err(ConfigError::new("", "invalid configuration").into()),
        _ => Err(ConfigErrors(errs)),
    }
}

/// Entries of the TLS 1.2 session-ID cache configured in `server.tls_session_cache`.
///
/// The shared `Resumption` exists before any snapshot (it outlives reloads), so this is read
/// from the raw file; an invalid value falls back to the default here and is reported by `build`.
pub fn tls_session_cache(raw: &RawConfig) -> usize {
    raw.server
        .tls_session_cache
        .filter(|&n| (SESSION_CACHE_RANGE.0..=SESSION_CACHE_RANGE.1).contains(&n))
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_TLS_SESSION_CACHE)
}

/// A 64-bit FNV-1a hash of the source text: stable across runs and builds, unlike SipHash keys.
pub fn source_hash(source: &str) -> u64 {
    source.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Collects errors for the keys under one prefix (`listeners[0].http`), and parses scalars.
struct Scope<'a> {
    errs: &'a mut Vec<ConfigError>,
    prefix: String,
}

impl Scope<'_> {
    fn new(errs: &mut Vec<ConfigError>, prefix: impl Into<String>) -> Scope<'_> {
        Scope {
            errs,
            prefix: prefix.into(),
        }
    }

    /// A scope for a sub-key, sharing the error list.
    fn child(&mut self, sub: &str) -> Scope<'_> {
        let prefix = self.key(sub);
        Scope::new(self.errs, prefix)
    }

    fn key(&self, field: &str) -> String {
        match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{field}", self.prefix),
        }
    }

    fn add(&mut self, field: &str, reason: impl Into<String>) {
        let key = self.key(field);
        self.errs.push(ConfigError::new(key, reason));
    }

    /// A duration that must not be zero; `None` gives the default.
    fn timeout(&mut self, field: &str, value: Option<&str>, default: Duration) -> Option<Duration> {
        let d = self.duration(field, value, default)?;
        if d.is_zero() {
            self.add(field, "must be greater than 0");
            return None;
        }
        Some(d)
    }

    /// A duration such as "500ms" or "10s"; `None` gives the default.
    fn duration(
        &mut self,
        field: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(text) = value else {
            return Some(default);
        };
        let parsed = humantime::parse_duration(text.trim());
        if let Err(e) = &parsed {
            let hint = "expected a duration such as \"500ms\", \"10s\" or \"1m\"";
            self.add(field, format!("invalid duration \"{text}\": {e}; {hint}"));
        }
        parsed.ok()
    }

    /// An integer in `min..=max`; `None` gives the default.
    fn int<T: TryFrom<i64>>(
        &mut self,
        field: &str,
        value: Option<i64>,
        default: T,
        (min, max): (i64, i64),
    ) -> Option<T> {
        let Some(v) = value else {
            return Some(default);
        };
        let converted = T::try_from(v).ok().filter(|_| v >= min && v <= max);
        if converted.is_none() {
            let reason = if v < min {
                format!("must be at least {min} (got {v})")
            } else {
                format!("must be at most {max} (got {v})")
            };
            self.add(field, reason);
        }
        converted
    }

    /// `ip:port`; host names are refused because nothing here resolves DNS.
    fn addr(&mut self, field: &str, text: &str) -> Option<SocketAddr> {
        let trimmed = text.trim();
        if let Ok(addr) = trimmed.parse::<SocketAddr>() {
            return Some(addr);
        }
        let port = trimmed.rsplit_once(':').map(|(_, p)| p);
        let numeric_port =
            port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let hint = if trimmed.parse::<IpAddr>().is_ok() {
            "missing port; expected ip:port such as 10.0.0.1:8080 or [::1]:8080"
        } else if numeric_port && port.and_then(|p| p.parse::<u16>().ok()).is_none() {
            "port must be between 0 and 65535"
        } else if numeric_port {
            "host names are not supported (no DNS resolution); use an IP address such as 10.0.0.1:8080"
        } else {
            "expected ip:port such as 10.0.0.1:8080 or [::1]:8080"
        };
        self.add(field, format!("invalid socket address \"{text}\": {hint}"));
        None
    }

    /// Resolves a pool name to its id.
    fn pool(&mut self, field: &str, name: &str, pools: &PoolIndex) -> Option<PoolId> {
        let id = pools.get(name).copied();
        if id.is_none() {
            let mut known: Vec<&str> = pools.keys().map(String::as_str).collect();
            known.sort_unstable();
            let known = if known.is_empty() {
                "no pools are defined".to_string()
            } else {
                format!("defined pools: {}", known.join(", "))
            };
            self.add(field, format!("unknown pool \"{name}\" ({known})"));
        }
        id
    }
}

fn server_settings(raw: &RawConfig, base_dir: &Path, s: &mut Scope<'_>) -> Option<ServerSettings> {
    let raw = &raw.server;
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let workers = s.int("workers", raw.workers, cores, WORKERS_RANGE);
    let shutdown = raw.shutdown_timeout.as_deref();
    let shutdown_timeout = s.duration("shutdown_timeout", shutdown, SHUTDOWN_TIMEOUT);
    let backlog = s.int("backlog", raw.backlog, BACKLOG, BACKLOG_RANGE);
    let log_format = match raw.log_format.as_deref() {
        None | Some("text") => Some(LogFormat::Text),
        Some("json") => Some(LogFormat::Json),
        Some(other) => {
            let reason = format!("unknown log format \"{other}\" (expected \"text\" or \"json\")");
            s.add("log_format", reason);
            None
        }
    };
    let access_log_path = match raw.access_log_path.as_deref() {
        None => Some(None),
        Some(path) => match log_file(path, base_dir) {
            Ok(path) => Some(Some(path)),
            Err(reason) => {
                s.add("access_log_path", reason);
                None
            }
        },
    };
    let cache = raw.tls_session_cache;
    let tls_session_cache = s.int(
        "tls_session_cache",
        cache,
        DEFAULT_TLS_SESSION_CACHE,
        SESSION_CACHE_RANGE,
    );
    Some(ServerSettings {
        workers: workers.and_then(NonZeroUsize::new)?,
        shutdown_timeout: shutdown_timeout?,
        backlog: backlog?,
        log_format: log_format?,
        access_log: raw.access_log.unwrap_or(true),
        access_log_query: raw.access_log_query.unwrap_or(false),
        access_log_path: access_log_path?,
        tls_session_cache: tls_session_cache?,
        watch_config: raw.watch_config.unwrap_or(false),
    })
}

/// A log file path joined to the config file's directory: not empty, not a directory, and
/// in a directory that exists (the file itself is created when levee opens it).
fn log_file(path: &Path, base_dir: &Path) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty (leave the key out to log to stdout)".to_string());
    }
    let full = base_dir.join(path);
    if full.is_dir() {
        return Err(format!("\"{}\" is a directory, not a file", full.display()));
    }
    let parent = full.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent.filter(|d| !d.is_dir()) {
        return Err(format!(
            "directory \"{}\" does not exist (levee creates the file, not its directory)",
            dir.display()
        ));
    }
    Ok(full)
}

fn admin_settings(raw: &RawConfig, s: &mut Scope<'_>) -> Option<AdminSettings> {
    let token = admin::token(raw.admin.token.as_deref(), s);
    let text = raw.admin.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    if text.trim().is_empty() || text.trim().eq_ignore_ascii_case("off") {
        return Some(AdminSettings {
            listen: None,
            token: token?,
        });
    }
    let listen = Some(s.addr("listen", text)?);
    Some(AdminSettings {
        listen,
        token: token?,
    })
}

/// Unique listener names, and no two sockets (listeners or admin) bound to the same address.
fn check_listener_identity(raw: &RawConfig, s: &mut Scope<'_>) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut bound: Vec<(String, SocketAddr)> = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        if let Some(first) = names.get(l.name.as_str()) {
            let reason = format!(
                "duplicate listener name \"{}\" (also listeners[{first}])",
                l.name
            );
            s.add(&format!("listeners[{i}].name"), reason);
        } else {
            names.insert(&l.name, i);
        }
        let key = format!("listeners[{i}].listen");
        check_overlap(s, key, l.listen.trim().parse().ok(), &mut bound);
    }
    let admin = raw.admin.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    check_overlap(
        s,
        "admin.listen".into(),
        admin.trim().parse().ok(),
        &mut bound,
    );
}

fn check_overlap(
    s: &mut Scope<'_>,
    key: String,
    addr: Option<SocketAddr>,
    bound: &mut Vec<(String, SocketAddr)>,
) {
    // Port 0 asks for an ephemeral port: never a clash.
    let Some(addr) = addr.filter(|a| a.port() != 0) else {
        return;
    };
    match bound.iter().find(|(_, b)| overlaps(addr, *b)) {
        Some((other, b)) if *b == addr => {
            s.add(
                &key,
                format!("duplicate listen address {addr} (also {other})"),
            );
        }
        Some((other, b)) => s.add(
            &key,
            format!("listen address {addr} overlaps {other} ({b})"),
        ),
        None => bound.push((key, addr)),
    }
}

/// Whether two bound addresses would receive each other's connections.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    let any_v6 = |ip: IpAddr| ip.is_ipv6() && ip.is_unspecified();
    let wildcard = (a.ip().is_unspecified() || b.ip().is_unspecified())
        && (a.is_ipv4() == b.is_ipv4() || any_v6(a.ip()) || any_v6(b.ip()));
    a.port() == b.port() && (a.ip() == b.ip() || wildcard)
}

fn build_listeners(
    raw: &[RawListener],
    pools: &PoolIndex,
    ctx: &BuildContext,
    errs: &mut Vec<ConfigError>,
) -> Option<Vec<Arc<Listener>>> {
    if raw.is_empty() {
        let reason = "at least one [[listeners]] entry is required";
        errs.push(ConfigError::new("listeners", reason));
        return None;
    }
    let built: Vec<Option<Arc<Listener>>> = raw
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut s = Scope::new(errs, format!("listeners[{i}]"));
            build_listener(&mut s, l, pools, ctx).map(Arc::new)
        })
        .collect();
    built.into_iter().collect()
}

fn build_listener(
    s: &mut Scope<'_>,
    raw: &RawListener,
    pools: &PoolIndex,
    ctx: &BuildContext,
) -> Option<Listener> {
    if raw.name.trim().is_empty() {
        s.add("name", "must not be empty");
    }
    let listen = s.addr("listen", &raw.listen);
    let default_pool = s.pool("default_pool", &raw.default_pool, pools);
    let routes: Vec<Option<Route>> = raw
        .routes
        .iter()
        .enumerate()
        .map(|(j, r)| build_route(&mut s.child(&format!("routes[{j}]")), r, pools))
        .collect();
    let http = http_limits(&mut s.child("http"), raw);
    let tls = match &raw.tls {
        None => Some(None),
        Some(t) => listener_tls(&mut s.child("tls"), t, ctx).map(Some),
    };
    let client_address = listener_net::client_address(s, raw);
    Some(Listener {
        name: raw.name.clone(),
        listen: listen?,
        tls: tls?,
        routes: routes.into_iter().collect::<Option<_>>()?,
        default_pool: default_pool?,
        http: http?,
        client_address: client_address?,
        access_log: raw.access_log,
    })
}

fn build_route(s: &mut Scope<'_>, raw: &RawRoute, pools: &PoolIndex) -> Option<Route> {
    let pool = s.pool("pool", &raw.pool, pools);
    let host = match raw.host.as_deref() {
        None => Some(None),
        Some(h) => route_host(s, h).map(Some),
    };
    let path_prefix = match raw.path_prefix.as_deref() {
        None => Some(None),
        Some(p) => route_path(s, p).map(Some),
    };
    Some(Route {
        host: host?,
        path_prefix: path_prefix?,
        pool: pool?,
    })
}

/// A host name to match exactly: lower-cased, without a port.
fn route_host(s: &mut Scope<'_>, host: &str) -> Option<String> {
    let h = host.trim().to_ascii_lowercase();
    let v6_literal = h
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
    let name_chars = h
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    let problem = if h.is_empty() {
        "must not be empty (leave host out to match any host)"
    } else if v6_literal || name_chars {
        return Some(h);
    } else if h.contains(':') {
        "must not include a port (routes match the host name only)"
    } else {
        "is not a valid host name"
    };
    s.add("host", format!("\"{host}\" {problem}"));
    None
}

fn route_path(s: &mut Scope<'_>, path: &str) -> Option<String> {
    let problem = if !path.starts_with('/') {
        "must start with '/'"
    } else if path.contains(['?', '#']) || path.contains(char::is_whitespace) {
        "must be a plain path (no query, fragment or spaces)"
    } else {
        return Some(path.to_string());
    };
    s.add("path_prefix", format!("\"{path}\" {problem}"));
    None
}

fn http_limits(s: &mut Scope<'_>, raw: &RawListener) -> Option<HttpLimits> {
    let raw = &raw.http;
    let header_bytes = raw.max_header_bytes;
    let max_header_bytes = s.int(
        "max_header_bytes",
        header_bytes,
        MAX_HEADER_BYTES,
        HEADER_BYTES_RANGE,
    );
    let max_body_bytes = s.int(
        "max_body_bytes",
        raw.max_body_bytes,
        MAX_BODY_BYTES,
        (0, i64::MAX),
    );
    let header = raw.header_timeout.as_deref();
    let header_timeout = s.timeout("header_timeout", header, HEADER_TIMEOUT);
    let idle_timeout = s.timeout(
        "idle_timeout",
        raw.idle_timeout.as_deref(),
        CLIENT_IDLE_TIMEOUT,
    );
    let send = raw.send_timeout.as_deref();
    let send_timeout = s.timeout("send_timeout", send, SEND_TIMEOUT);
    let upgrade_idle = raw.upgrade_idle_timeout.as_deref();
    let upgrade_idle_timeout =
        s.timeout("upgrade_idle_timeout", upgrade_idle, UPGRADE_IDLE_TIMEOUT);
    Some(HttpLimits {
        max_header_bytes: max_header_bytes?,
        max_body_bytes: max_body_bytes?,
        header_timeout: header_timeout?,
        idle_timeout: idle_timeout?,
        send_timeout: send_timeout?,
        upgrade_idle_timeout: upgrade_idle_timeout?,
    })
}

fn listener_tls(s: &mut Scope<'_>, raw: &RawTls, ctx: &BuildContext) -> Option<ListenerTls> {
    let handshake = raw.handshake_timeout.as_deref();
    let handshake_timeout = s.timeout("handshake_timeout", handshake, HANDSHAKE_TIMEOUT);
    let generated = raw.certificates.is_empty();
    let certs = if generated {
        ctx.generated_certificate()
            .map_err(|e| s.add("", e.to_string()))
            .ok()
            .map(|k| vec![k])
    } else {
        let loaded: Vec<Option<NamedKey>> = raw
            .certificates
            .iter()
            .enumerate()
            .map(|(j, c)| load_cert(&mut s.child(&format!("certificates[{j}]")), c, ctx))
            .collect();
        loaded.into_iter().collect()
    };
    let server_config = crate::tls::server_config(certs?, &ctx.resumption)
        .map_err(|e| s.add("", format!("cannot build the TLS configuration: {e}")))
        .ok()?;
    Some(ListenerTls {
        server_config,
        handshake_timeout: handshake_timeout?,
        generated_certificate: generated,
    })
}

/// Loads one certificate + key pair; paths are relative to the config file's directory.
fn load_cert(s: &mut Scope<'_>, raw: &RawCertificate, ctx: &BuildContext) -> Option<NamedKey> {
    let cert = ctx.base_dir.join(&raw.cert);
    let key = ctx.base_dir.join(&raw.key);
    crate::tls::load_certified_key(&cert, &key, &ctx.resumption.provider)
        .map_err(|e| {
            let field = if matches!(e, CertError::Cert { .. }) {
                "cert"
            } else {
                "key"
            };
            s.add(field, e.to_string());
        })
        .ok()
}

// The tests live in validate/tests.rs to keep this file about the rules.
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
