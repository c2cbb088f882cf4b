//! `GET /dashboard` over HTTP: the page and its assets with their content types and
//! security headers, the admin token (Bearer header or `?token=` on the page, nothing for the
//! data-free assets), and no external URL anywhere in what is embedded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::stats::*;
use common::*;

const TOKEN: &str = "dash-token-0123456789";

/// (route, content type) of everything the dashboard serves.
const ROUTES: [(&str, &str); 5] = [
    ("/dashboard", "text/html; charset=utf-8"),
    ("/dashboard/app.js", "text/javascript; charset=utf-8"),
    ("/dashboard/style.css", "text/css; charset=utf-8"),
    ("/dashboard/favicon.svg", "image/svg+xml"),
    ("/dashboard/world.json", "application/json"),
];

/// The one absolute URL allowed: the SVG namespace, a name that is never fetched.
const SVG_NS: &str = "http://www.w3.org/2000/svg";

fn assert_dashboard_headers(reply: &Reply, content_type: &str, path: &str) {
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{path}"
    );
    let csp = reply.header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{path}: {directive} in {csp:?}");
    }
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
}

/// Every absolute or protocol-relative URL, and anything that could fetch from elsewhere.
fn external_references(text: &str) -> Vec<String> {
    let text = text.replace(SVG_NS, "");
    [
        "http://", "https://", "ws://", "wss://", "\"//", "'//", "@import", "url(",
    ]
    .iter()
    .filter_map(|needle| {
        text.find(needle)
            .map(|at| text[at..].chars().take(60).collect())
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_served_with_its_headers_and_no_external_reference() {
    let backend = Backend::start("a");
    let levee = start_stats_levee(backend.addr, closed_addr(), None, "");
    for (path, content_type) in ROUTES {
        let reply = admin_request(&levee, "GET", path, None).await;
        assert_dashboard_headers(&reply, content_type, path);
        let text = reply.text();
        assert!(!text.is_empty(), "{path}");
        assert_eq!(external_references(&text), Vec::<String>::new(), "{path}");
    }
    let page = admin_request(&levee, "GET", "/dashboard", None)
        .await
        .text();
    for asset in [
        "/dashboard/app.js",
        "/dashboard/style.css",
        "/dashboard/favicon.svg",
    ] {
        assert!(
            page.contains(&format!("\"{asset}\"")),
            "the page loads {asset}"
        );
    }
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "nothing inline"
    );
    let app = admin_request(&levee, "GET", "/dashboard/app.js", None)
        .await
        .text();
    assert!(app.contains("'/stats'") && app.contains("Bearer"), "{app}");
    assert!(app.contains("'/dashboard/world.json'"), "the map");
    let world = admin_request(&levee, "GET", "/dashboard/world.json", None).await;
    let world: serde_json::Value = serde_json::from_slice(&world.body).unwrap();
    let shapes = world["countries"].as_object().unwrap();
    assert!(shapes.len() > 150, "{}", shapes.len());
    for code in ["BR", "DE", "JP", "US", "IN"] {
        assert!(shapes[code].as_str().unwrap().starts_with('M'), "{code}");
    }
    assert!(
        !app.contains("innerHTML"),
        "text goes in with textContent only"
    );

    let missing = admin_request(&levee, "GET", "/dashboard/other.js", None).await;
    assert_eq!(missing.status, 404);
    let post = admin_request(&levee, "POST", "/dashboard", None).await;
    assert_eq!(post.status, 405);
}

#[test]
fn embedded_sources_reference_nothing_external() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/dashboard");
    let (mut seen, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            external_references(&text),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
        seen += 1;
        bytes += text.len();
    }
    assert!(bytes < 300_000, "the dashboard embeds {bytes} bytes");
    assert_eq!(seen, ROUTES.len(), "every embedded file is checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_needs_it_and_the_assets_do_not() {
    let backend = Backend::start("a");
    let levee = start_stats_levee(backend.addr, closed_addr(), Some(TOKEN), "");

    let refused = admin_request(&levee, "GET", "/dashboard", None).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    for wrong in [
        "/dashboard?token=nope",
        "/dashboard?token=",
        "/dashboard?x=1",
    ] {
        assert_eq!(
            admin_request(&levee, "GET", wrong, None).await.status,
            401,
            "{wrong}"
        );
    }
    let wrong_header = admin_request(&levee, "GET", "/dashboard", Some("nope")).await;
    assert_eq!(wrong_header.status, 401);

    let by_header = admin_request(&levee, "GET", "/dashboard", Some(TOKEN)).await;
    assert_dashboard_headers(&by_header, ROUTES[0].1, "/dashboard (Bearer)");
    let by_query = format!("/dashboard?token={TOKEN}");
    let by_query = admin_request(&levee, "GET", &by_query, None).await;
    assert_dashboard_headers(&by_query, ROUTES[0].1, "/dashboard?token=");
    let encoded = format!("/dashboard?view=1&token={}", TOKEN.replace('-', "%2D"));
    assert_eq!(
        admin_request(&levee, "GET", &encoded, None).await.status,
        200
    );

    // The query form is the page's only: the data still needs the header.
    let stats = format!("/stats?token={TOKEN}");
    assert_eq!(admin_request(&levee, "GET", &stats, None).await.status, 401);
    assert_eq!(
        admin_request(&levee, "GET", "/stats", Some(TOKEN))
            .await
            .status,
        200
    );

    // The assets hold no data and a <script src> cannot send a header.
    for (path, content_type) in &ROUTES[1..] {
        let reply = admin_request(&levee, "GET", path, None).await;
        assert_dashboard_headers(&reply, content_type, path);
    }
}
