//! Tests of `levee demo`: its configs, and its visitors against a real levee (PROXY v2
//! header, pinned TLS, per-country counting), read back through `levee top`'s client and
//! rendered by its view.

use std::sync::Arc;

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn plain_demo_config_loads_on_this_build() {
    let ctx = app::initial_context(Path::new(".")).unwrap();
    let toml = config_toml(
        addr("127.0.0.1:0"),
        addr("127.0.0.1:0"),
        &[addr("127.0.0.1:9")],
        false,
    );
    let s = config::load_str(&toml, &ctx).unwrap();
    assert_eq!(s.listeners.len(), 1);
    assert!(!toml.contains("proxy_protocol"));
}

#[test]
fn traffic_config_adds_a_loopback_proxy_v2_listener() {
    let toml = config_toml(
        addr("127.0.0.1:8443"),
        addr("127.0.0.1:9901"),
        &[addr("127.0.0.1:9")],
        true,
    );
    let doc: toml::Table = toml::from_str(&toml).unwrap();
    let listeners = doc["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2);
    let t = &listeners[1];
    assert_eq!(t["name"].as_str(), Some(TRAFFIC_LISTENER));
    assert_eq!(t["listen"].as_str(), Some("127.0.0.1:0"));
    assert_eq!(t["proxy_protocol"].as_str(), Some("v2"));
    assert_eq!(t["trusted_proxies"][0].as_str(), Some("127.0.0.1/32"));
    assert!(t.get("tls").is_some());
    assert_eq!(
        t["access_log"].as_bool(),
        Some(false),
        "visitors not logged"
    );
    assert_eq!(
        listeners[0].get("access_log"),
        None,
        "a person's requests are"
    );
    assert_eq!(doc["server"]["access_log"].as_bool(), Some(true));
    assert_eq!(doc["server"]["watch_config"].as_bool(), Some(true));
    assert_eq!(doc["stats"]["spike_min_rate"].as_float(), Some(5.0));
}

#[test]
fn demo_falls_back_to_no_traffic_only_when_the_keys_are_refused() {
    let ctx = app::initial_context(Path::new(".")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("levee.toml");
    let (a, b) = (addr("127.0.0.1:0"), [addr("127.0.0.1:9")]);
    let (snapshot, traffic) = load(a, a, &b, &ctx, true, &path).unwrap();
    let plain = config::load_str(&config_toml(a, a, &b, true), &ctx).is_ok();
    assert_eq!(traffic, plain);
    assert_eq!(snapshot.listeners.len(), if traffic { 2 } else { 1 });
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        config_toml(a, a, &b, traffic),
        "runs on the file it wrote"
    );
    let (_, off) = load(a, a, &b, &ctx, false, &path).unwrap();
    assert!(!off);
}

/// Each demo country sends a different number of visits (country i: i + 1 visits of two
/// requests, one of them to a failing path) through the PROXY v2 listener; `/stats`, read
/// with `levee top`'s client, counts exactly that under each country, and top renders it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_are_counted_under_their_countries_and_top_shows_them() {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    let backends = spawn_backends(1).unwrap();
    let ctx = app::initial_context(Path::new(".")).unwrap();
    let any = addr("127.0.0.1:0");
    let snapshot = config::load_str(&config_toml(any, any, &backends, true), &ctx).unwrap();
    let running = app::start(snapshot).unwrap();
    let target = running.listener_addr(TRAFFIC_LISTENER).unwrap();
    let admin = running.admin_addr().unwrap().to_string();
    let picked = addresses::pick(&crate::geo::GeoDb::bundled().unwrap());
    let pinned = ctx.generated_certificate().unwrap().0.cert[0].clone();
    let tls = visit::client_config(&ctx.resumption.provider, pinned, true).unwrap();

    let mut want = HashMap::new();
    for (i, country) in picked.iter().enumerate() {
        for n in 0..=i {
            let ip = country.addrs[n % country.addrs.len()];
            let port = 40_000 + u16::try_from(n).unwrap();
            visit::run(visit::Visit {
                target,
                client: SocketAddr::new(ip.into(), port),
                tls: Arc::clone(&tls),
                paths: vec!["/", "/flaky/checkout"],
                think: Duration::ZERO,
            })
            .await
            .unwrap();
        }
        want.insert(country.code.to_string(), u64::try_from(i + 1).unwrap());
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    let stats = loop {
        let stats = crate::top::client::fetch_stats(&admin, None).await.unwrap();
        let got: HashMap<String, u64> = stats
            .countries
            .iter()
            .map(|c| (c.country.clone(), c.connections))
            .collect();
        if got == want {
            break stats;
        }
        assert!(Instant::now() < deadline, "want {want:?}, got {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for c in &stats.countries {
        let n = want[&c.country];
        assert_eq!((c.requests.c2xx, c.requests.c5xx), (n, n), "{}", c.country);
        let hs = c.tls_handshakes;
        assert_eq!((hs.full + hs.resumed, hs.failed), (n, 0), "{}", c.country);
    }

    let model = crate::top::Model {
        source: admin,
        stats: Some(stats),
        error: None,
    };
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
    terminal
        .draw(|f| crate::top::draw(f, &model, &crate::top::UiState::default()))
        .unwrap();
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|cell| cell.symbol())
        .collect();
    for code in want.keys() {
        assert!(screen.contains(&format!("{code} ")), "{code} not on screen");
    }
    tokio::task::block_in_place(|| running.stop());
}
