//! Broken configs during load: each reload is refused with an error naming the key, the
//! running snapshot stays the very same one (generation, hash, listeners), and four clients
//! keep getting answers without a single failure. Through the admin API, `POST /reload`
//! answers 422 with the errors as JSON, and 200 with the new generation once the file is fixed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::client::Proto;
use common::*;

/// Requests that must complete after each refused reload before the next one.
const REQUESTS_BETWEEN: u64 = 20;

/// One broken config and the error it must be refused with.
struct Case {
    what: &'static str,
    /// The config file; `None`: the file is missing.
    toml: Option<String>,
    /// The key an error must name (`starts_with` when `prefix`).
    key: &'static str,
    prefix: bool,
    /// Part of that error's reason.
    reason: &'static str,
}

fn case(what: &'static str, toml: String, key: &'static str, reason: &'static str) -> Case {
    Case {
        what,
        toml: Some(toml),
        key,
        prefix: false,
        reason,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_configs_are_refused_under_load_and_change_nothing() {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let other = ca.leaf("other", &["localhost"]);
    let (a1, a2) = (Backend::start("a1"), Backend::start("a2"));
    // Every broken config routes to `intruder` instead: if any part of one were applied,
    // the intruder would get traffic.
    let intruder = Backend::start("intruder");
    let server = server_with_admin();
    let web = listener_toml("web", "web", None, "", "");
    let tls = |l: &Leaf| listener_toml("tls", "web", Some(&[l]), "", "");
    let good = server.clone() + &web + &tls(&leaf) + &pool_toml("web", &[a1.addr, a2.addr], "");
    // The good config with the pool moved to the intruder, before breaking it.
    let moved = |extra: &str| pool_toml("web", &[intruder.addr], extra);
    let base = server.clone() + &web + &tls(&leaf);
    let missing = Leaf {
        cert_path: ca.dir().join("missing.pem"),
        ..leaf.clone()
    };
    let mismatched = Leaf {
        key_path: other.key_path.clone(),
        ..leaf.clone()
    };
    let garbage = Leaf {
        cert_path: ca.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n"),
        ..leaf.clone()
    };
    let tls_listener = |l: &Leaf| server.clone() + &web + &tls(l) + &moved("");
    // A port someone else holds (without SO_REUSEPORT, so levee cannot share it).
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = squatter.local_addr().unwrap();
    let busy_listener = listener_toml("extra", "web", None, "", "")
        + &listener_toml("busy", "web", None, "", "").replace("127.0.0.1:0", &busy.to_string());
    let cases = vec![
        case(
            "syntax error",
            base.replace("workers = 2", "workers = ") + &moved(""),
            "server.workers",
            "line",
        ),
        case(
            "unknown key",
            base.clone() + &moved("colour = \"blue\""),
            "pools.web.colour",
            "unknown field `colour`",
        ),
        case(
            "missing pool",
            base.replacen("default_pool = \"web\"", "default_pool = \"nope\"", 1) + &moved(""),
            "listeners[0].default_pool",
            "unknown pool \"nope\"",
        ),
        case(
            "route to a missing pool",
            server.clone()
                + &web
                + "[[listeners.routes]]\npath_prefix = \"/x\"\npool = \"gone\"\n\n"
                + &tls(&leaf)
                + &moved(""),
            "listeners[0].routes[0].pool",
            "unknown pool \"gone\"",
        ),
        case(
            "duplicate listener",
            base.clone() + &web + &moved(""),
            "listeners[2].name",
            "duplicate listener name \"web\"",
        ),
        case(
            "unreadable certificate",
            tls_listener(&missing),
            "listeners[1].tls.certificates[0].cert",
            "missing.pem",
        ),
        case(
            "certificate that is not one",
            tls_listener(&garbage),
            "listeners[1].tls.certificates[0].cert",
            "garbage.pem",
        ),
        case(
            "mismatched key",
            tls_listener(&mismatched),
            "listeners[1].tls.certificates[0].key",
            "does not match",
        ),
        case(
            "bad backend address",
            base.clone() + "[pools.web]\n[[pools.web.backends]]\naddress = \"10.0.0.1\"\n",
            "pools.web.backends[0].address",
            "invalid socket address \"10.0.0.1\"",
        ),
        case(
            "bad listen address",
            base.replacen(
                "listen = \"127.0.0.1:0\"\ndefault_pool",
                "listen = \"nowhere\"\ndefault_pool",
                1,
            ) + &moved(""),
            "listeners[0].listen",
            "invalid socket address",
        ),
        case(
            "bad duration",
            base.clone() + &moved("connect_timeout = \"3 parsecs\""),
            "pools.web.connect_timeout",
            "invalid duration \"3 parsecs\"",
        ),
        case(
            "empty pool",
            base.clone() + &pool_toml("web", &[], ""),
            "pools.web.backends",
            "at least one",
        ),
        case(
            "unknown algorithm",
            base.clone() + &moved("").replace("round_robin", "random"),
            "pools.web.algorithm",
            "unknown algorithm \"random\"",
        ),
        Case {
            prefix: true,
            ..case(
                "bad GeoIP path",
                base.clone() + &moved("") + "[geo]\ncountry_db = \"/nonexistent/x.mmdb\"\n",
                "geo",
                "",
            )
        },
        case(
            "workers changed (restart only)",
            base.replace("workers = 2", "workers = 3") + &moved(""),
            "server.workers",
            "restart",
        ),
        case(
            "admin listener changed (restart only)",
            base.replace("listen = \"127.0.0.1:0\"\n\n[[", "listen = \"off\"\n\n[[") + &moved(""),
            "admin.listen",
            "restart",
        ),
        case(
            "listen address in use",
            base.clone() + &busy_listener + &moved(""),
            "listeners[3].listen",
            "cannot listen",
        ),
        Case {
            what: "config file missing",
            toml: None,
            key: "",
            prefix: false,
            reason: "cannot read config file",
        },
    ];

    let levee = Arc::new(start_levee(&good));
    let load = Load::start(levee.addr("web"), &STYLES, generation_of(&levee));
    load.wait_more(50, Duration::from_secs(10)).await;
    let first = levee.running().snapshot();
    let listeners = levee.running().reloader().listeners();
    for (i, c) in cases.iter().enumerate() {
        let report = match &c.toml {
            Some(toml) => reload_to(&levee, toml).await,
            None => {
                std::fs::remove_file(levee.config_path()).unwrap();
                let l = Arc::clone(&levee);
                tokio::task::spawn_blocking(move || l.running().reload())
                    .await
                    .unwrap()
            }
        };
        let what = c.what;
        assert!(!report.ok, "{what}: accepted");
        let named = report.errors.iter().find(|e| {
            (if c.prefix {
                e.key.starts_with(c.key)
            } else {
                e.key == c.key
            }) && e.reason.contains(c.reason)
        });
        assert!(
            named.is_some(),
            "{what}: want an error on `{}` with {:?}, got {:?}",
            c.key,
            c.reason,
            report.errors
        );
        eprintln!("{what}: {:?}", report.errors);
        // The running snapshot is untouched: the same Arc, so the same generation and hash.
        assert_eq!(report.generation, first.generation, "{what}");
        assert_eq!(report.source_hash, first.source_hash, "{what}");
        assert!(
            Arc::ptr_eq(&first, &levee.running().snapshot()),
            "{what}: the snapshot was replaced"
        );
        assert_eq!(levee.running().reloader().listeners(), listeners, "{what}");
        assert_eq!(
            levee.running().reloader().stats().failed(),
            i as u64 + 1,
            "{what}"
        );
        // Traffic keeps flowing (and fails nowhere, checked at the end).
        load.wait_more(REQUESTS_BETWEEN, Duration::from_secs(10))
            .await;
    }
    // A listener that bound before another failed to is not left behind.
    assert!(levee.running().listener_addr("extra").is_none());
    assert!(levee.running().listener_addr("busy").is_none());
    drop(squatter);

    // The TLS listener still presents the certificate it started with.
    let cfg = client_config(&ca.der(), TlsOpts::default());
    let (reply, info) = tls_get(levee.addr("tls"), cfg, "localhost", Proto::H1, "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(info.peer_cert.as_ref(), Some(&leaf.der));

    // A good config is still taken after all those refusals.
    let fixed = good.replace(
        &pool_toml("web", &[a1.addr, a2.addr], ""),
        &pool_toml("web", &[a1.addr, a2.addr, intruder.addr], ""),
    );
    assert_ne!(fixed, good);
    assert_eq!(intruder.requests(), 0, "a refused config routed traffic");
    assert_reloaded(&reload_to(&levee, &fixed).await, first.generation + 1);
    assert!(
        intruder.wait_requests(1, Duration::from_secs(10)).await,
        "the good reload did not route to its new backend"
    );
    let result = load.finish().await;
    result.assert_no_failure(cases.len() as u64 * REQUESTS_BETWEEN);
    for s in &result.samples {
        if s.gen_after == first.generation {
            assert!(s.backend == "a1" || s.backend == "a2", "{s:?}");
        }
    }
    assert!(a1.requests() > 0 && a2.requests() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_post_reload_answers_422_with_the_errors_then_200_with_the_generation() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let config = |backend: &Backend, extra: &str| {
        server_with_admin()
            + &listener_toml("web", "web", None, "", "")
            + &pool_toml("web", &[backend.addr], extra)
    };
    let levee = start_levee(&config(&a, ""));
    let mut conn = Conn::plain(levee.addr("web"), Proto::H1).await;
    assert_eq!(conn.get("/").await.backend(), Some("a"));

    levee.write_config(&config(&b, "connect_timeout = \"3 parsecs\""));
    let (status, content_type, doc) = admin_call(&levee, "POST", "/reload").await;
    assert_eq!(status, 422, "{doc}");
    assert_eq!(content_type, "application/json");
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["generation"], 1, "{doc}");
    let errors = doc["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{doc}");
    assert_eq!(errors[0]["key"], "pools.web.connect_timeout", "{doc}");
    let reason = errors[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("invalid duration"), "{doc}");
    assert_eq!(
        conn.get("/").await.backend(),
        Some("a"),
        "refused but applied"
    );

    let (status, _, _) = admin_call(&levee, "GET", "/reload").await;
    assert_eq!(status, 405, "only POST reloads");

    levee.write_config(&config(&b, ""));
    let (status, content_type, doc) = admin_call(&levee, "POST", "/reload").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(content_type, "application/json");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["generation"], 2, "{doc}");
    let took_ms = doc["took_ms"].as_f64().expect("took_ms is a number");
    assert!((0.0..10_000.0).contains(&took_ms), "{doc}");
    assert!(doc.get("errors").is_none(), "{doc}");
    // The same keep-alive connection routes on the new config.
    assert_eq!(conn.get("/").await.backend(), Some("b"));

    let (status, _, stats) = admin_call(&levee, "GET", "/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["config"]["generation"], 2, "{stats}");
    assert_eq!(stats["config"]["reloads"]["ok"], 1, "{stats}");
    assert_eq!(stats["config"]["reloads"]["failed"], 1, "{stats}");
}
