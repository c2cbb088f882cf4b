//! Validation tests: each bad config is rejected with an error naming its key; the shipped
//! example configs load.
#![allow(clippy::unwrap_used)] // tests may panic

use std::path::Path;

use super::test_support::context;
use super::*;
use crate::config::{ConfigErrors, load_file, load_str};
use crate::lb::{Algorithm, HashKey, HealthProbe};

fn ctx(base_dir: &Path) -> BuildContext {
    BuildContext {
        generation: 7,
        ..context(base_dir)
    }
}

const LISTENER: &str =
    "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"api\"\n";
const POOL: &str = "[pools.api]\n[[pools.api.backends]]\naddress = \"127.0.0.1:9001\"\n";

/// The errors of `source` (which must be rejected), resolving files against `dir`.
fn errors_in(source: &str, dir: &Path) -> Vec<ConfigError> {
    match load_str(source, &ctx(dir)) {
        Ok(_) => panic!("accepted:\n{source}"),
        Err(ConfigErrors(errs)) => errs,
    }
}

/// Asserts that `source` is rejected with an error on `key` whose reason contains `needle`.
fn assert_rejects(source: &str, key: &str, needle: &str) {
    assert_rejects_in(source, Path::new("."), key, needle);
}

fn assert_rejects_in(source: &str, dir: &Path, key: &str, needle: &str) {
    let errs = errors_in(source, dir);
    let found = errs
        .iter()
        .any(|e| e.key == key && e.reason.contains(needle));
    assert!(
        found,
        "want `{key}: ..{needle}..`, got:\n{}",
        ConfigErrors(errs)
    );
}

#[test]
fn base_config_is_valid() {
    let snap = load_str(&format!("{LISTENER}{POOL}"), &ctx(Path::new("."))).unwrap();
    assert_eq!(snap.generation, 7);
    assert_eq!(snap.source_hash, source_hash(&format!("{LISTENER}{POOL}")));
    assert_eq!(snap.admin.listen, Some("127.0.0.1:9901".parse().unwrap()));
    assert_eq!(snap.server.shutdown_timeout, Duration::from_secs(30));
    assert!(snap.listeners[0].tls.is_none());
    assert_eq!(snap.listeners[0].http.max_body_bytes, 100 * 1024 * 1024);
    assert_eq!(snap.pool(snap.listeners[0].default_pool).name, "api");
}

#[test]
fn syntax_error() {
    assert_rejects(
        &format!("{LISTENER}{POOL}[server]\nworkers = \n"),
        "server.workers",
        "line 9",
    );
}

#[test]
fn unknown_keys() {
    let src = format!("{LISTENER}[listeners.tls]\nbogus = 1\n{POOL}");
    assert_rejects(&src, "listeners[0].tls.bogus", "unknown field `bogus`");
    let src = format!("{LISTENER}{POOL}weigth = 2\n");
    assert_rejects(&src, "pools.api.backends[0].weigth", "unknown field");
}

#[test]
fn missing_pool() {
    let src = LISTENER.replace("\"api\"", "\"x\"");
    assert_rejects(
        &format!("{src}{POOL}"),
        "listeners[0].default_pool",
        "unknown pool \"x\"",
    );
    let src = format!("{LISTENER}[[listeners.routes]]\nhost = \"a\"\npool = \"nope\"\n{POOL}");
    assert_rejects(&src, "listeners[0].routes[0].pool", "unknown pool \"nope\"");
}

#[test]
fn duplicate_listener_name_and_address() {
    let src = format!("{LISTENER}{}{POOL}", LISTENER.replace(":0", ":8080"));
    assert_rejects(&src, "listeners[1].name", "duplicate listener name \"web\"");
    let a = LISTENER.replace(":0", ":8080");
    let b = a.replace("web", "other").replace("127.0.0.1", "0.0.0.0");
    assert_rejects(
        &format!("{a}{a}{POOL}"),
        "listeners[1].listen",
        "duplicate listen address",
    );
    assert_rejects(
        &format!("{a}{b}{POOL}"),
        "listeners[1].listen",
        "overlaps listeners[0].listen",
    );
}

#[test]
fn bad_addresses() {
    let src = format!("{LISTENER}{POOL}[[pools.api.backends]]\naddress = \"10.0.0.1\"\n");
    assert_rejects(
        &src,
        "pools.api.backends[1].address",
        "invalid socket address \"10.0.0.1\"",
    );
    let src = format!(
        "{LISTENER}{}",
        POOL.replace("127.0.0.1:9001", "backend.local:80")
    );
    assert_rejects(
        &src,
        "pools.api.backends[0].address",
        "host names are not supported",
    );
    let src = format!("{}{POOL}", LISTENER.replace("127.0.0.1:0", "nowhere"));
    assert_rejects(&src, "listeners[0].listen", "invalid socket address");
    assert_rejects(
        &format!("{LISTENER}{POOL}[admin]\nlisten = \"x\"\n"),
        "admin.listen",
        "invalid",
    );
}

#[test]
fn zero_workers_and_bad_ranges() {
    let server = "[server]\nworkers = 0\nbacklog = 0\nlog_format = \"xml\"\n";
    let src = format!("{server}{LISTENER}{POOL}");
    assert_rejects(&src, "server.workers", "must be at least 1");
    assert_rejects(&src, "server.backlog", "must be at least 1");
    assert_rejects(&src, "server.log_format", "unknown log format \"xml\"");
    let src = format!("{LISTENER}{POOL}weight = 0\n");
    assert_rejects(&src, "pools.api.backends[0].weight", "must be at least 1");
}

#[test]
fn bad_durations() {
    let api = POOL.replacen("]\n", "]\nconnect_timeout = \"3 parsecs\"\n", 1);
    let b = POOL
        .replace("api", "b")
        .replacen("]\n", "]\nresponse_timeout = \"0s\"\n", 1);
    let src = format!("{LISTENER}{api}{b}");
    assert_rejects(
        &src,
        "pools.api.connect_timeout",
        "invalid duration \"3 parsecs\"",
    );
    assert_rejects(&src, "pools.b.response_timeout", "must be greater than 0");
    let zero_shutdown = format!("[server]\nshutdown_timeout = \"0s\"\n{LISTENER}{POOL}");
    assert!(load_str(&zero_shutdown, &ctx(Path::new("."))).is_ok());
}

#[test]
fn empty_pool_and_no_listener() {
    assert_rejects(
        &format!("{LISTENER}{POOL}[pools.empty]\n"),
        "pools.empty.backends",
        "at least one",
    );
    assert_rejects(POOL, "listeners", "at least one");
}

#[test]
fn routes_are_checked_and_normalised() {
    let route = |r: &str| format!("{LISTENER}[[listeners.routes]]\n{r}\npool = \"api\"\n{POOL}");
    let key = "listeners[0].routes[0]";
    assert_rejects(
        &route("host = \"a.test:443\""),
        &format!("{key}.host"),
        "must not include a port",
    );
    assert_rejects(
        &route("path_prefix = \"api\""),
        &format!("{key}.path_prefix"),
        "start with '/'",
    );
    let snap = load_str(&route("host = \"API.Example.COM\""), &ctx(Path::new("."))).unwrap();
    assert_eq!(
        snap.listeners[0].routes[0].host.as_deref(),
        Some("api.example.com")
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let src = format!(
        "[server]\nworkers = 0\n{}{POOL}",
        LISTENER.replace("\"api\"", "\"x\"")
    );
    let errs = errors_in(&src, Path::new("."));
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs));
}

/// Writes a self-signed certificate and its key for `name` into `dir`.
fn write_cert(dir: &Path, name: &str) {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), generated.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        generated.key_pair.serialize_pem(),
    )
    .unwrap();
}

fn tls_listener(certs: &[(&str, &str)]) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|(c, k)| format!("{{ cert = \"{c}\", key = \"{k}\" }}"))
        .collect();
    format!(
        "{LISTENER}[listeners.tls]\ncertificates = [{}]\n{POOL}",
        list.join(", ")
    )
}

#[test]
fn certificates_load_relative_to_base_dir() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a.test");
    write_cert(dir.path(), "b.test");
    let src = tls_listener(&[("a.test.pem", "a.test.key"), ("b.test.pem", "b.test.key")]);
    let snap = load_str(&src, &ctx(dir.path())).unwrap();
    let tls = snap.listeners[0].tls.as_ref().unwrap();
    assert!(!tls.generated_certificate);
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
}

#[test]
fn unreadable_cert_and_mismatched_key() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a.test");
    write_cert(dir.path(), "b.test");
    let key = "listeners[0].tls.certificates[0]";
    let src = tls_listener(&[("missing.pem", "a.test.key")]);
    assert_rejects_in(
        &src,
        dir.path(),
        &format!("{key}.cert"),
        "cannot read certificate",
    );
    let src = tls_listener(&[("a.test.pem", "b.test.key")]);
    let needle = "private key does not match certificate";
    assert_rejects_in(&src, dir.path(), &format!("{key}.key"), needle);
}

#[test]
fn shipped_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "config/levee.toml",
        "config/examples/minimal.toml",
        "config/examples/load_balancing.toml",
    ] {
        let snap =
            load_file(&root.join(file), &ctx(root)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            snap.listeners
                .iter()
                .any(|l| l.tls.as_ref().is_some_and(|t| t.generated_certificate))
        );
        let names: Vec<&str> = snap.pools.iter().map(|p| p.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "{file}: pools sorted by name");
        for (name, id) in &snap.pool_index {
            assert_eq!(&snap.pool(*id).name, name);
        }
    }
}

/// A config whose pool `api` has `keys` and then the sub-tables `tables`.
fn pool_with(keys: &str, tables: &str) -> String {
    format!(
        "{LISTENER}[pools.api]\n{keys}\n{tables}\n\
         [[pools.api.backends]]\naddress = \"127.0.0.1:9001\"\n\
         [[pools.api.backends]]\naddress = \"127.0.0.1:9002\"\nweight = 3\n"
    )
}

fn policy_of(source: &str) -> crate::lb::PoolPolicy {
    let snap = load_str(source, &ctx(Path::new("."))).unwrap();
    snap.pools[0].policy.clone()
}

#[test]
fn pool_policy_defaults() {
    let p = policy_of(&pool_with("", ""));
    assert_eq!(p.algorithm, Algorithm::RoundRobin);
    assert_eq!(p.hash_key, HashKey::ClientIp);
    assert_eq!(p.retry.retries, 2);
    assert!((p.retry.budget_ratio - 0.2).abs() < 1e-9);
    assert_eq!(p.limits.max_connections, None);
    assert_eq!(p.limits.queue_size, 0);
    assert_eq!(p.limits.queue_timeout, Duration::from_secs(1));
    assert_eq!(p.slow_start, None);
    assert!(p.health_check.is_none() && p.outlier.is_none());
    let p = policy_of(&pool_with(
        "max_connections = 8",
        "[pools.api.health_check]\n[pools.api.outlier_detection]\n",
    ));
    assert_eq!(p.limits.max_connections, Some(8));
    assert_eq!(p.limits.queue_size, 100);
    let hc = p.health_check.unwrap();
    let http = HealthProbe::Http {
        path: "/".into(),
        status: 200..=399,
    };
    assert_eq!(hc.probe, http);
    assert_eq!(
        (hc.interval, hc.timeout),
        (Duration::from_secs(2), Duration::from_secs(1))
    );
    assert_eq!((hc.rise, hc.fall), (2, 3));
    let od = p.outlier.unwrap();
    assert_eq!(od.consecutive_failures, 5);
    assert_eq!(od.ejection_time, Duration::from_secs(30));
    assert_eq!(od.max_ejected_percent, 50);
    assert!(!od.include_5xx);
}

#[test]
fn pool_policy_every_key() {
    let keys = "algorithm = \"maglev\"\nhash_key = \"header:X-User\"\nretries = 0\n\
                retry_budget_percent = 5\nmax_connections = 1\nqueue_size = 2\n\
                queue_timeout = \"250ms\"\nslow_start = \"30s\"";
    let tables = "[pools.api.health_check]\npath = \"/healthz?deep=1\"\nstatus = 204\n\
                  interval = \"500ms\"\ntimeout = \"500ms\"\nrise = 1\nfall = 10\n\
                  [pools.api.outlier_detection]\nconsecutive_failures = 3\n\
                  ejection_time = \"10s\"\nmax_ejected_percent = 100\ninclude_5xx = true\n";
    let snap = load_str(&pool_with(keys, tables), &ctx(Path::new("."))).unwrap();
    let pool = &snap.pools[0];
    assert_eq!(pool.backends[1].weight, 3);
    let p = &pool.policy;
    assert_eq!(p.algorithm, Algorithm::Maglev);
    assert_eq!(p.hash_key, HashKey::Header("x-user".parse().unwrap()));
    assert_eq!(p.retry.retries, 0);
    assert!((p.retry.budget_ratio - 0.05).abs() < 1e-9);
    let limits = &p.limits;
    assert_eq!((limits.max_connections, limits.queue_size), (Some(1), 2));
    assert_eq!(limits.queue_timeout, Duration::from_millis(250));
    assert_eq!(p.slow_start, Some(Duration::from_secs(30)));
    let hc = p.health_check.as_ref().unwrap();
    let http = HealthProbe::Http {
        path: "/healthz?deep=1".into(),
        status: 204..=204,
    };
    assert_eq!(hc.probe, http);
    assert_eq!((hc.rise, hc.fall), (1, 10));
    let od = p.outlier.as_ref().unwrap();
    assert_eq!((od.consecutive_failures, od.max_ejected_percent), (3, 100));
    assert!(od.include_5xx);
    let cookie = policy_of(&pool_with("hash_key = \"cookie:session\"", ""));
    assert_eq!(cookie.hash_key, HashKey::Cookie("session".into()));
    assert_eq!(
        policy_of(&pool_with("slow_start = \"0s\"", "")).slow_start,
        None
    );
    let tcp = "[pools.api.health_check]\ntype = \"tcp\"\n";
    let hc = policy_of(&pool_with("", tcp)).health_check.unwrap();
    assert_eq!(hc.probe, HealthProbe::Tcp);
    for (status, want) in [("\"200-299\"", 200..=299), ("\"301\"", 301..=301)] {
        let t = format!("[pools.api.health_check]\nstatus = {status}\n");
        let hc = policy_of(&pool_with("", &t)).health_check.unwrap();
        let HealthProbe::Http { status, .. } = hc.probe else {
            panic!("not http")
        };
        assert_eq!(status, want);
    }
}

#[test]
fn bad_pool_keys_name_the_key() {
    let src = pool_with(
        "algorithm = \"random\"\nhash_key = \"ip\"\nretries = 11\nretry_budget_percent = 101\n\
         queue_size = 3\nqueue_timeout = \"1s\"\nslow_start = \"soon\"",
        "",
    );
    let key = "pools.api";
    assert_rejects(
        &src,
        &format!("{key}.algorithm"),
        "unknown algorithm \"random\"",
    );
    assert_rejects(&src, &format!("{key}.hash_key"), "\"ip\"");
    assert_rejects(&src, &format!("{key}.retries"), "at most 10");
    assert_rejects(&src, &format!("{key}.retry_budget_percent"), "at most 100");
    assert_rejects(
        &src,
        &format!("{key}.queue_size"),
        "without max_connections",
    );
    assert_rejects(
        &src,
        &format!("{key}.queue_timeout"),
        "without max_connections",
    );
    assert_rejects(
        &src,
        &format!("{key}.slow_start"),
        "invalid duration \"soon\"",
    );
    let src = pool_with(
        "max_connections = 0\nqueue_size = -1\nqueue_timeout = \"0s\"",
        "",
    );
    assert_rejects(&src, &format!("{key}.max_connections"), "at least 1");
    assert_rejects(&src, &format!("{key}.queue_size"), "at least 0");
    assert_rejects(&src, &format!("{key}.queue_timeout"), "greater than 0");
    let src = pool_with("hash_key = \"header:bad header\"", "");
    assert_rejects(&src, &format!("{key}.hash_key"), "header");
}

#[test]
fn bad_health_checks_name_the_key() {
    let key = "pools.api.health_check";
    let check = |body: &str| pool_with("", &format!("[pools.api.health_check]\n{body}\n"));
    let src =
        check("path = \"healthz\"\nstatus = \"399-200\"\ninterval = \"0s\"\nrise = 0\nfall = 101");
    assert_rejects(
        &src,
        &format!("{key}.path"),
        "\"healthz\" is not a request path",
    );
    assert_rejects(&src, &format!("{key}.status"), "range is empty");
    assert_rejects(&src, &format!("{key}.interval"), "greater than 0");
    assert_rejects(&src, &format!("{key}.rise"), "at least 1");
    assert_rejects(&src, &format!("{key}.fall"), "at most 100");
    assert_rejects(
        &check("status = 700"),
        &format!("{key}.status"),
        "100 to 599",
    );
    assert_rejects(
        &check("status = \"2xx\""),
        &format!("{key}.status"),
        "\"2xx\"",
    );
    let src = check("interval = \"1s\"\ntimeout = \"2s\"");
    assert_rejects(
        &src,
        &format!("{key}.timeout"),
        "not be longer than interval (1s)",
    );
    assert_rejects(&check("type = \"udp\""), &format!("{key}.type"), "\"udp\"");
    let src = check("type = \"tcp\"\npath = \"/\"\nstatus = 200");
    assert_rejects(&src, &format!("{key}.path"), "only to type = \"http\"");
    assert_rejects(&src, &format!("{key}.status"), "only to type = \"http\"");
    // Type errors come from the TOML layer, still with the key path.
    let needle = "expected a status code";
    assert_rejects(&check("status = true"), &format!("{key}.status"), needle);
    assert_rejects(
        &check("rise = \"2\""),
        &format!("{key}.rise"),
        "invalid type",
    );
    assert_rejects(
        &check("bogus = 1"),
        &format!("{key}.bogus"),
        "unknown field",
    );
}

#[test]
fn bad_outlier_detection_names_the_key() {
    let key = "pools.api.outlier_detection";
    let od = |body: &str| pool_with("", &format!("[pools.api.outlier_detection]\n{body}\n"));
    let src = od("consecutive_failures = 0\nejection_time = \"x\"\nmax_ejected_percent = 0");
    assert_rejects(&src, &format!("{key}.consecutive_failures"), "at least 1");
    assert_rejects(
        &src,
        &format!("{key}.ejection_time"),
        "invalid duration \"x\"",
    );
    assert_rejects(&src, &format!("{key}.max_ejected_percent"), "at least 1");
    let src = od("max_ejected_percent = 101\nejection_time = \"0s\"");
    assert_rejects(&src, &format!("{key}.max_ejected_percent"), "at most 100");
    assert_rejects(&src, &format!("{key}.ejection_time"), "greater than 0");
    assert_rejects(
        &od("include_5xx = \"yes\""),
        &format!("{key}.include_5xx"),
        "invalid type",
    );
}
