//! Validation tests: each bad config is rejected with an error naming its key; the shipped
//! example configs load.
#![allow(clippy::unwrap_used)] // tests may panic

use std::path::Path;

use super::*;
use crate::config::{ConfigErrors, load_file, load_str};
use crate::tls::Resumption;

fn ctx(base_dir: &Path) -> BuildContext {
    BuildContext {
        resumption: Resumption::new(64).unwrap(),
        base_dir: base_dir.to_path_buf(),
        generation: 7,
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
    for file in ["config/levee.toml", "config/examples/minimal.toml"] {
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
