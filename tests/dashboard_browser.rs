//! The dashboard in a real browser (issue 15, item 5): Debian's headless chromium, driven
//! over the DevTools protocol, opens `/dashboard?token=…` of a levee with `[admin] token`
//! while three countries send steady traffic; then a BR surge starts. Checked: the token
//! leaves the address bar, the page shows the countries, the banner names BR within 2 s of
//! the surge's onset, the world map shades BR as spiking, the page fits 1366x768 and a 390 px phone without sideways
//! scrolling, and the console has no error and no uncaught exception from start to end.
//! Screenshots at both sizes are saved under `$CARGO_TARGET_DIR/artifacts/` (else
//! `target/artifacts/`).
//!
//! Chromium is required where `LEVEE_REQUIRE_CHROMIUM` is set (`.ci/run` sets it, after
//! installing Debian's chromium): without it the test fails and says how to install it.
//! Elsewhere (the README's `cargo test` on a machine with only the Rust toolchain) a missing
//! chromium is reported on stderr and the browser checks are not run. `LEVEE_CHROMIUM`
//! names another binary.
//!
//! Spikes can start from the 14th second of the process (the baseline must have seen 3 s
//! after the 10 s window), so this takes about 20 s: 14 s of steady traffic, the surge, the
//! screenshots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "dashboard_browser/cdp.rs"]
mod cdp;
mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cdp::{Browser, Cdp, base64_decode, find_chromium};
use common::stats::*;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "browser-token-0123456789";
/// Steady new connections per second from each country.
const STEADY: u64 = 4;
/// The surge: this many BR connections at its onset, then `SURGE_RATE` a second.
const SURGE_BURST: u64 = 150;
const SURGE_RATE: u64 = 60;
/// The bound from the surge's onset to the banner naming the country.
const BANNER_WITHIN: Duration = Duration::from_secs(2);

/// Sends `rate` (read at every step) new connections per second from `from` until `stop`.
fn drive(from: IpAddr, to: SocketAddr, rate: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    drop(common::stats::paced(rate, stop, move |_| {
        tokio::spawn(one_request(from, to));
    }));
}

/// One `GET /` from `from`; its answer does not matter here.
async fn one_request(from: IpAddr, to: SocketAddr) {
    let _ = request_from(from, to, &get_request("/")).await;
}

/// Where screenshots go: the target directory's `artifacts/`.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Errors the page reported: console errors and asserts, uncaught exceptions, and log
/// entries at level error (failed loads, CSP violations).
fn console_errors(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| match e["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                matches!(e["params"]["type"].as_str(), Some("error" | "assert"))
            }
            Some("Runtime.exceptionThrown") => true,
            Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
            _ => false,
        })
        .map(Value::to_string)
        .collect()
}

/// Sets the viewport to `width`x`height`, checks nothing overflows sideways, and saves a
/// screenshot as `name`.
fn screenshot(cdp: &mut Cdp, width: u32, height: u32, name: &str) -> PathBuf {
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }),
    );
    // Layout settles at once; one frame for the paint.
    std::thread::sleep(Duration::from_millis(300));
    let scroll_width = cdp.eval("document.documentElement.scrollWidth");
    assert!(
        scroll_width.as_u64().unwrap() <= u64::from(width),
        "at {width} px the page is {scroll_width} px wide"
    );
    let shot = cdp.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts_dir().join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
    path
}

/// The banner's countries and text, `None` while it is hidden.
const BANNER: &str = "(() => { const b = document.getElementById('banner'); \
    return b && !b.hidden ? b.dataset.countries + '|' + b.textContent : null; })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium_names_a_surging_country_within_two_seconds() {
    let Some(chromium) = find_chromium() else {
        let how = "the dashboard's browser test needs Debian's chromium \
                   (`DEBIAN_FRONTEND=noninteractive apt-get install -y chromium`, as .ci/run \
                   does), or LEVEE_CHROMIUM=/path/to/chromium";
        assert!(
            std::env::var_os("LEVEE_REQUIRE_CHROMIUM").is_none(),
            "chromium not found: {how}"
        );
        eprintln!("SKIPPED: chromium not found: {how}");
        return;
    };
    let backend = Backend::start("a");
    let stats = "spike_threshold = 3\nspike_min_rate = 5\nspike_floor = 1\n\
                 baseline_half_life = \"30s\"";
    let levee = start_stats_levee(backend.addr, closed_addr(), Some(TOKEN), stats);
    let web = levee.addr("web");
    let admin = levee.running().admin_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rates: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(STEADY))).collect();
    for (ip, rate) in [BR_IP, DE_IP, JP_IP].into_iter().zip(&rates) {
        drive(ip, web, Arc::clone(rate), Arc::clone(&stop));
    }

    // The browser starts while the baselines warm up.
    let browser = tokio::task::block_in_place(|| Browser::start(&chromium, 1366, 768));
    let mut cdp = tokio::task::block_in_place(|| {
        let mut cdp = Cdp::connect(&browser.page_ws_url());
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            cdp.call(domain, json!({}));
        }
        let url = format!("http://{admin}/dashboard?token={TOKEN}");
        cdp.call("Page.navigate", json!({ "url": url }));
        cdp
    });

    // Loaded, the token out of the address bar, the three countries on screen.
    let started = Instant::now();
    loop {
        let state = tokio::task::block_in_place(|| {
            cdp.eval(
                "[document.readyState, location.href, \
                  document.getElementById('status')?.textContent, \
                  Array.from(document.querySelectorAll('#rows .code')).map(e => e.textContent)]",
            )
        });
        let codes: Vec<&str> = state[3]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if state[0] == "complete"
            && state[2] == "live"
            && ["BR", "DE", "JP"].iter().all(|c| codes.contains(c))
        {
            let href = state[1].as_str().unwrap();
            assert!(
                !href.contains("token"),
                "the token stays in the address bar: {href}"
            );
            assert!(href.ends_with("/dashboard"), "{href}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the page did not come up: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Wait until a spike can start (the 14th second), with no banner so far.
    loop {
        let doc = stats_doc(&levee, Some(TOKEN)).await;
        assert_eq!(
            doc["spikes"],
            json!([]),
            "nothing spikes while steady: {doc:#}"
        );
        if doc["uptime_seconds"].as_f64().unwrap() >= 14.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = tokio::task::block_in_place(|| cdp.eval(BANNER));
    assert!(before.is_null(), "a banner before the surge: {before}");

    // The surge: a burst from BR, then a high rate.
    let onset = Instant::now();
    for _ in 0..SURGE_BURST {
        tokio::spawn(one_request(BR_IP, web));
    }
    rates[0].store(SURGE_RATE, Ordering::Relaxed);
    let banner = loop {
        let banner = tokio::task::block_in_place(|| cdp.eval(BANNER));
        if let Some(text) = banner.as_str() {
            break text.to_string();
        }
        let waited = onset.elapsed();
        assert!(
            waited <= BANNER_WITHIN,
            "no banner {waited:?} after the surge's onset; /stats: {:#}",
            stats_doc(&levee, Some(TOKEN)).await["spikes"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = onset.elapsed();
    println!("banner after {took:?}: {banner}");
    assert!(
        took <= BANNER_WITHIN,
        "the banner came {took:?} after the onset"
    );
    let (countries, text) = banner.split_once('|').unwrap();
    assert_eq!(countries, "BR", "{banner}");
    assert!(
        text.contains("SPIKE BR") && text.contains("baseline"),
        "{banner}"
    );
    assert!(text.contains("admission:"), "{banner}");
    // The fixture's ASN database names BR's network.
    assert!(text.contains("AS64500"), "{banner}");

    // A second of the surge on screen, then both sizes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| {
        // The map is drawn, BR in red.
        let hot = cdp
            .eval("Array.from(document.querySelectorAll('#map path.hot')).map(p => p.textContent)");
        assert!(
            hot[0].as_str().unwrap_or_default().starts_with("Brazil"),
            "{hot}"
        );
        screenshot(&mut cdp, 1366, 768, "dashboard-1366x768.png");
        screenshot(&mut cdp, 390, 844, "dashboard-390x844.png");
        // A last command reads every event the page sent until now.
        cdp.eval("1");
    });
    stop.store(true, Ordering::Relaxed);

    let console: Vec<&Value> = cdp
        .events
        .iter()
        .filter(|e| e["method"] == "Runtime.consoleAPICalled" || e["method"] == "Log.entryAdded")
        .collect();
    println!("console messages: {console:?}");
    let errors = console_errors(&cdp.events);
    assert_eq!(errors, Vec::<String>::new(), "console errors");
    // The check sees what it looks for: a console.error and an uncaught exception of ours.
    tokio::task::block_in_place(|| {
        cdp.events.clear();
        cdp.eval("console.error('levee-probe'); setTimeout(() => { throw new Error('levee-probe'); }, 0); 1");
        std::thread::sleep(Duration::from_millis(200));
        cdp.eval("1");
    });
    let probes = console_errors(&cdp.events);
    assert_eq!(probes.len(), 2, "{:?}", cdp.events);
    assert!(
        probes.iter().all(|p| p.contains("levee-probe")),
        "{probes:?}"
    );
    drop(browser);
}
