//! `GET /dashboard`: a live page for incident responders, embedded in the binary (HTML, JS,
//! CSS and an icon, no external request of any kind), that polls `GET /stats`.
//!
//! Owns the embedded files, their headers and the `?token=` form of the admin token; it
//! knows nothing of the stats (the page reads `/stats` like any other client).
//!
//! **Token.** With `[admin] token` set, the page itself needs the token, as every endpoint
//! but `/healthz` does: as `Authorization: Bearer TOKEN`, or, because a browser cannot set
//! a header when it navigates, as `/dashboard?token=TOKEN` (accepted on this one path only).
//! The page then keeps the token in memory only (no storage, no cookie), removes it from
//! the address bar and history with `history.replaceState`, and sends it as
//! `Authorization: Bearer` on each `/stats` fetch. `Referrer-Policy: no-referrer` keeps it out of any
//! referrer. The assets (`/dashboard/app.js`, `/dashboard/style.css`,
//! `/dashboard/favicon.svg`, `/dashboard/world.json`) are served without the token: they hold no data (the same
//! bytes are in every levee binary) and a `<script src>` cannot send a header, so guarding
//! them would mean putting the token in more URLs.
//!
//! **Map.** `world.json` holds one SVG path per country (ISO alpha-2 code), from Natural
//! Earth's 1:110m countries (public domain) as npm `world-atlas` 2.0.2 packages them (ISC),
//! projected by `data/dashboard_world_map.mjs` (which says how to run it again); about
//! 70 KB.
//!
//! **Headers.** A strict `Content-Security-Policy` (`default-src 'none'`; scripts, styles,
//! images and fetches from the admin origin only; no inline script or style; no framing),
//! `X-Content-Type-Options: nosniff`, `Cache-Control: no-store`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// Path of the page.
pub const PAGE: &str = "/dashboard";

/// The policy of the page and its assets: nothing but the admin origin, nothing inline.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self'; connect-src 'self'; base-uri 'none'; \
                       form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its route, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 5] = [
    Asset {
        path: PAGE,
        content_type: "text/html; charset=utf-8",
        body: include_str!("index.html"),
    },
    Asset {
        path: "/dashboard/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("app.js"),
    },
    Asset {
        path: "/dashboard/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("style.css"),
    },
    Asset {
        path: "/dashboard/world.json",
        content_type: "application/json",
        body: include_str!("world.json"),
    },
    Asset {
        path: "/dashboard/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("favicon.svg"),
    },
];

/// Whether `path` is one of the dashboard's routes.
pub fn is_route(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// Whether `path` is an asset served without the token (everything but the page).
pub fn is_public_asset(path: &str) -> bool {
    path != PAGE && is_route(path)
}

/// The embedded file at `path`, with the dashboard's headers; `None` for another path.
pub fn response(path: &str) -> Option<Response<Full<Bytes>>> {
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    let mut r = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Some(r)
}

/// The `token` parameter of a query string, percent-decoded (`+` is a space); `None` when
/// absent or not valid UTF-8 once decoded.
pub fn query_token(query: Option<&str>) -> Option<String> {
    let value = query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)?;
    percent_decode(value)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_token_is_found_and_decoded() {
        assert_eq!(query_token(None), None);
        assert_eq!(query_token(Some("")), None);
        assert_eq!(query_token(Some("token=abc")).as_deref(), Some("abc"));
        assert_eq!(
            query_token(Some("x=1&token=a%2Bb+c%3D")).as_deref(),
            Some("a+b c=")
        );
        assert_eq!(query_token(Some("tokens=abc")), None);
        assert_eq!(query_token(Some("token=%zz")), None);
        assert_eq!(query_token(Some("token=%4")), None);
        assert_eq!(query_token(Some("token=%ff")), None);
    }

    #[test]
    fn every_route_has_the_headers() {
        for a in &ASSETS {
            let r = response(a.path).unwrap();
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        }
        assert!(response("/dashboard/nope.js").is_none());
        assert!(is_public_asset("/dashboard/app.js") && !is_public_asset(PAGE));
    }
}
