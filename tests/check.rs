//! `levee check` (the real binary): rejects bad configs naming the key, accepts good ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// A valid config; `{cert}` is one certificate entry, `{workers}` the worker count.
fn base(cert: &str) -> String {
    format!(
        r#"[server]
workers = 2
shutdown_timeout = "5s"

[admin]
listen = "off"

[[listeners]]
name = "main"
listen = "127.0.0.1:0"
default_pool = "web"

[listeners.tls]
certificates = [{cert}]
handshake_timeout = "5s"

[[listeners.routes]]
path_prefix = "/api/"
pool = "web"

[pools.web]
algorithm = "round_robin"
response_timeout = "5s"

[[pools.web.backends]]
address = "127.0.0.1:9001"
"#
    )
}

fn check(dir: &std::path::Path, name: &str, toml: &str) -> Output {
    let path = write_file(dir, &format!("{name}.toml"), toml);
    run_levee(&["check", "--config", path.to_str().unwrap()])
}

#[test]
fn check_rejects_bad_configs_naming_the_key() {
    let ca = TestCa::new();
    let good = ca.leaf("good", &["localhost"]);
    let other = ca.leaf("other", &["localhost"]);
    let cert = good.toml();
    let ok = base(&cert);

    // The base itself passes, so each failure below is down to its one change.
    let out = check(ca.dir(), "ok", &ok);
    assert_eq!(out.status.code(), Some(0), "base rejected: {}", out.stderr);

    let missing = ca.dir().join("missing.pem");
    let mismatched = format!(
        "{{ cert = '{}', key = '{}' }}",
        good.cert_path.display(),
        other.key_path.display()
    );
    let not_pem = ca.write("garbage.pem", "this is not PEM\n");
    let garbage_cert = format!(
        "{{ cert = '{}', key = '{}' }}",
        not_pem.display(),
        good.key_path.display()
    );
    let unreadable = format!(
        "{{ cert = '{}', key = '{}' }}",
        missing.display(),
        good.key_path.display()
    );
    let second_listener = "\n[[listeners]]\nname = \"main\"\nlisten = \"127.0.0.1:0\"\n\
                           default_pool = \"web\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "syntax error",
            ok.replace("workers = 2", "workers = "),
            "server.workers",
        ),
        (
            "unclosed table header",
            ok.replace("[admin]", "[admin"),
            "admin",
        ),
        (
            "unknown key",
            ok.replace("workers = 2", "workers = 2\nworkerz = 3"),
            "server.workerz",
        ),
        (
            "unknown key in a listener's tls table",
            ok.replace(
                "handshake_timeout",
                "handshake_timeout_ms = 5\nhandshake_timeout",
            ),
            "listeners[0].tls.handshake_timeout_ms",
        ),
        (
            "missing default pool",
            ok.replace("default_pool = \"web\"", "default_pool = \"nope\""),
            "listeners[0].default_pool",
        ),
        (
            "route to a missing pool",
            ok.replace("pool = \"web\"\n\n[pools", "pool = \"nope\"\n\n[pools"),
            "listeners[0].routes[0].pool",
        ),
        (
            "duplicate listener name",
            ok.replace("\n[pools.web]", &format!("{second_listener}\n[pools.web]")),
            "listeners[1].name",
        ),
        (
            "bad backend address",
            ok.replace("127.0.0.1:9001", "not-an-address"),
            "pools.web.backends[0].address",
        ),
        (
            "bad listen address",
            ok.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:99999\""),
            "listeners[0].listen",
        ),
        (
            "unreadable certificate",
            base(&unreadable),
            "listeners[0].tls.certificates[0].cert",
        ),
        (
            "certificate file without PEM",
            base(&garbage_cert),
            "listeners[0].tls.certificates[0].cert",
        ),
        (
            "key not matching the certificate",
            base(&mismatched),
            "listeners[0].tls.certificates[0].key",
        ),
        (
            "zero workers",
            ok.replace("workers = 2", "workers = 0"),
            "server.workers",
        ),
        (
            "bad duration",
            ok.replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"soon\""),
            "server.shutdown_timeout",
        ),
        (
            "empty pool",
            ok.replace("[[pools.web.backends]]\naddress = \"127.0.0.1:9001\"\n", ""),
            "pools.web.backends",
        ),
        (
            "unknown algorithm",
            ok.replace("\"round_robin\"", "\"random_guess\""),
            "pools.web.algorithm",
        ),
        (
            "wrong type",
            ok.replace("workers = 2", "workers = \"two\""),
            "server.workers",
        ),
    ];
    assert!(cases.len() >= 8);
    let mut failures = Vec::new();
    for (i, (what, toml, key)) in cases.iter().enumerate() {
        assert_ne!(toml, &ok, "case {what:?} changed nothing");
        let out = check(ca.dir(), &format!("bad{i}"), toml);
        let named = out
            .stderr
            .lines()
            .any(|l| l.starts_with(&format!("{key}:")) || l.contains(&format!(" {key}:")));
        let code = out.status.code();
        if code == Some(0) || code.is_none() || !named {
            failures.push(format!(
                "{what}: exit {code:?}, expected a line `{key}: ...`; stderr:\n{}",
                out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n---\n"));
}

#[test]
fn check_reports_every_problem_at_once() {
    let toml = r#"[server]
workers = 0

[admin]
listen = "off"

[[listeners]]
name = "main"
listen = "127.0.0.1:0"
default_pool = "nope"

[pools.web]
[[pools.web.backends]]
address = "nowhere"
"#;
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path(), "multi", toml);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    for key in [
        "server.workers:",
        "listeners[0].default_pool:",
        "pools.web.backends[0].address:",
    ] {
        assert!(
            out.stderr.contains(key),
            "{key} missing from:\n{}",
            out.stderr
        );
    }
}

#[test]
fn check_accepts_the_documented_config_and_examples() {
    for file in ["config/levee.toml", "config/examples/minimal.toml"] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let out = run_levee(&["check", "--config", &path]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file} rejected:\n{}",
            out.stderr
        );
        assert!(out.stdout.contains("ok"), "{}", out.stdout);
    }
}

#[test]
fn check_accepts_relative_certificate_paths() {
    let ca = TestCa::new();
    ca.leaf("rel", &["localhost"]);
    let toml = base("{ cert = 'rel.pem', key = 'rel.key' }");
    let out = check(ca.dir(), "relative", &toml);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
}

#[test]
fn check_fails_on_a_missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let out = run_levee(&["check", "--config", path.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stderr.contains("absent.toml"), "{}", out.stderr);
}

#[test]
fn check_warns_when_the_admin_api_listens_beyond_loopback_without_a_token() {
    let ca = TestCa::new();
    let cert = ca.leaf("good", &["localhost"]).toml();
    let with_admin = |admin: &str| base(&cert).replace("listen = \"off\"", admin);
    // Beyond loopback, no token: valid (exit 0), with a warning naming the key.
    let open = check(ca.dir(), "open", &with_admin("listen = \"0.0.0.0:9901\""));
    assert_eq!(open.status.code(), Some(0), "{}", open.stderr);
    assert!(
        open.stderr.contains("warning: admin.listen: 0.0.0.0:9901"),
        "{}",
        open.stderr
    );
    // With a token, or on loopback: no warning.
    let token = with_admin("listen = \"0.0.0.0:9901\"\ntoken = \"0123456789abcdef-token\"");
    let loopback = with_admin("listen = \"127.0.0.1:9901\"");
    for (name, toml) in [("token", token), ("loopback", loopback)] {
        let out = check(ca.dir(), name, &toml);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", out.stderr);
        assert!(!out.stderr.contains("warning"), "{name}: {}", out.stderr);
    }
}
