//! `GET /metrics` on the admin API: Prometheus text format 0.0.4 whose counters match the
//! traffic sent, and whose config metrics follow reloads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// Label pairs of one sample, in the order written.
type Labels = Vec<(String, String)>;

/// One sample line: its metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

/// A `/metrics` document, checked line by line.
#[derive(Debug)]
struct Exposition {
    samples: Vec<Sample>,
    /// Family name -> declared type.
    types: HashMap<String, String>,
}

impl Exposition {
    /// The value of the sample `name` whose labels are exactly `labels` (in any order).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {self:#?}"))
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.contains(['i', 'I', 'n', 'N']) => Err(format!("bad value {s:?}")),
        _ => s.parse().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// Parses `{k="v",...}` at the start of `s`; returns the labels and what follows the `}`.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        if !labels.is_empty() {
            rest = rest.strip_prefix(',').ok_or("no , between labels")?;
        }
        let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !is_name(key, false) || key.starts_with("__") {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling \\")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.iter().any(|(k, _)| k == key) {
            return Err(format!("label {key} twice"));
        }
        labels.push((key.to_string(), value));
        rest = &after[end + 1..];
    }
}

/// Checks every line of `text` against the 0.0.4 text format and collects the samples:
/// `# HELP name text`, `# TYPE name type` (once per family, before its samples), other
/// comments, or `name[{labels}] value [timestamp]`; no blank lines; ends with a newline.
/// Histogram families: `_bucket` with `le`, cumulative, `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "no final newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut series = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", n + 1) };
        if line.is_empty() {
            fail("blank line");
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !is_name(name, true) {
                        fail("bad metric name");
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        fail("bad type");
                    }
                    if samples
                        .iter()
                        .any(|s: &Sample| family_of(&s.name, &types) == name)
                    {
                        fail("TYPE after the family's samples");
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        fail("TYPE twice");
                    }
                }
                (Some("HELP"), Some(name), help) => {
                    if !is_name(name, true) {
                        fail("bad metric name");
                    }
                    if help.is_some_and(|h| h.contains(['\n'])) {
                        fail("raw newline in HELP");
                    }
                    let help = help.unwrap_or("").to_string();
                    if helps.insert(name.to_string(), help).is_some() {
                        fail("HELP twice");
                    }
                }
                (Some("TYPE" | "HELP"), _, _) => fail("incomplete HELP/TYPE"),
                _ => {} // any other comment
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| fail("no value"));
        let name = &line[..name_end];
        if !is_name(name, true) {
            fail("bad metric name");
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).unwrap_or_else(|e| fail(&e))
        } else {
            (Vec::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| fail("no space before value"));
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).unwrap_or_else(|e| fail(&e));
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().unwrap_or_else(|_| fail("bad timestamp"));
        }
        if fields.next().is_some() {
            fail("trailing fields");
        }
        let family = family_of(name, &types);
        if !types.contains_key(family) {
            fail("sample without a TYPE for its family");
        }
        let mut key = labels.clone();
        key.sort();
        if !series.insert((name.to_string(), key)) {
            fail("duplicate series");
        }
        if types[family] == "histogram"
            && name.ends_with("_bucket")
            && !labels.iter().any(|(k, _)| k == "le")
        {
            fail("bucket without le");
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    // A family's samples are contiguous.
    let mut seen_families: Vec<&str> = Vec::new();
    for s in &samples {
        let f = family_of(&s.name, &types);
        if seen_families.last() != Some(&f) {
            assert!(!seen_families.contains(&f), "family {f} is split");
            seen_families.push(f);
        }
    }
    let doc = Exposition { samples, types };
    check_histograms(&doc);
    doc
}

/// The family a sample belongs to: histogram samples drop `_bucket`/`_sum`/`_count`.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
            {
                return base;
            }
        }
    }
    name
}

fn check_histograms(doc: &Exposition) {
    for (family, kind) in &doc.types {
        if kind != "histogram" {
            continue;
        }
        // Group buckets by their labels without `le`.
        let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
        for s in doc
            .samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut rest: Vec<_> = s
                .labels
                .iter()
                .filter(|(k, _)| k != "le")
                .cloned()
                .collect();
            rest.sort();
            let le = &s.labels.iter().find(|(k, _)| k == "le").unwrap().1;
            let le = parse_value(le).unwrap_or_else(|e| panic!("{family}: le {e}"));
            groups.entry(rest).or_default().push((le, s.value));
        }
        assert!(!groups.is_empty(), "histogram {family} has no buckets");
        for (labels, buckets) in groups {
            let les: Vec<f64> = buckets.iter().map(|b| b.0).collect();
            assert!(
                les.windows(2).all(|w| w[0] < w[1]),
                "{family} {labels:?}: le not increasing {les:?}"
            );
            assert_eq!(les.last(), Some(&f64::INFINITY), "{family}: no +Inf bucket");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family} {labels:?}: buckets not cumulative {buckets:?}"
            );
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = doc.get(&format!("{family}_count"), &pairs);
            doc.get(&format!("{family}_sum"), &pairs);
            assert_eq!(buckets.last().unwrap().1, count, "{family}: +Inf != _count");
        }
    }
}

#[test]
fn line_checker_rejects_bad_lines() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\\n\"} 1\n";
    let doc = parse_exposition(ok);
    assert_eq!(doc.get("a_total", &[("k", "v\"\n")]), 1.0);
    for bad in [
        "a 1\n",                                                    // no TYPE
        "# TYPE a gauge\na{k=\"v} 1\n",                             // unterminated
        "# TYPE a gauge\na{k=\"v\"} x\n",                           // bad value
        "# TYPE a gauge\na{k=\"\\t\"} 1\n",                         // bad escape
        "# TYPE a gauge\na 1\na 2\n",                               // duplicate series
        "# TYPE a gauge\n\na 1\n",                                  // blank line
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 1\n", // split family
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
    ] {
        let caught = std::panic::catch_unwind(|| parse_exposition(bad));
        assert!(caught.is_err(), "accepted: {bad:?}");
    }
}

async fn scrape(admin: SocketAddr) -> (Reply, Exposition) {
    let mut c = Conn::plain(admin, Proto::H1).await;
    let reply = c.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc = parse_exposition(&reply.text());
    (reply, doc)
}

const ZZ_2XX: [(&str, &str); 2] = [("country", "ZZ"), ("code_class", "2xx")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_and_follow_reloads() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let toml_a = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr], "");
    let levee = start_levee(&toml_a);
    let admin = levee.running().admin_addr().expect("admin API enabled");

    // Before any traffic: every family is there, counters at zero.
    let (reply, doc) = scrape(admin).await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(doc.get("levee_config_generation", &[]), 1.0);
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "ok")]),
        0.0
    );
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "error")]),
        0.0
    );
    assert_eq!(
        doc.get("levee_config_last_reload_timestamp_seconds", &[]),
        0.0
    );
    assert_eq!(doc.get("levee_requests_total", &ZZ_2XX), 0.0);
    for (family, kind) in [
        ("levee_config_generation", "gauge"),
        ("levee_config_info", "gauge"),
        ("levee_config_reloads_total", "counter"),
        ("levee_config_last_reload_timestamp_seconds", "gauge"),
        ("levee_connections_total", "counter"),
        ("levee_connections_active", "gauge"),
        ("levee_tls_handshakes_total", "counter"),
        ("levee_tls_handshake_duration_seconds", "histogram"),
        ("levee_requests_total", "counter"),
        ("levee_bytes_received_total", "counter"),
        ("levee_bytes_sent_total", "counter"),
        ("levee_upstream_latency_seconds", "histogram"),
        ("levee_backend_up", "gauge"),
        ("levee_backend_in_flight", "gauge"),
        ("levee_backend_requests_total", "counter"),
        ("levee_backend_failures_total", "counter"),
    ] {
        assert_eq!(
            doc.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }

    // Traffic: 5 GETs and 2 POSTs with bodies, on one keep-alive connection.
    const GETS: u64 = 5;
    const BODY: usize = 1000;
    let mut c = Conn::plain(levee.addr("web"), Proto::H1).await;
    for _ in 0..GETS {
        assert_eq!(c.get("/").await.status, 200);
    }
    for _ in 0..2 {
        let req = c
            .request("POST", "/echo")
            .body(full(vec![b'x'; BODY]))
            .unwrap();
        assert_eq!(c.send(req).await.status, 200);
    }
    let sent = GETS + 2;
    drop(c);

    // Stats are written when a response body ends (and a connection when it closes): poll.
    let started = Instant::now();
    let doc = loop {
        let (_, doc) = scrape(admin).await;
        let done = doc.get("levee_requests_total", &ZZ_2XX) == sent as f64
            && doc.get("levee_connections_active", &[("country", "ZZ")]) == 0.0;
        if done || started.elapsed() > SLACK * 5 {
            break doc;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(doc.get("levee_requests_total", &ZZ_2XX), sent as f64);
    for class in ["1xx", "3xx", "4xx", "5xx"] {
        let labels = [("country", "ZZ"), ("code_class", class)];
        assert_eq!(doc.get("levee_requests_total", &labels), 0.0, "{class}");
    }
    // One traffic connection; the admin API's own connections are not counted.
    assert_eq!(
        doc.get("levee_connections_total", &[("country", "ZZ")]),
        1.0
    );
    assert_eq!(
        doc.get("levee_connections_active", &[("country", "ZZ")]),
        0.0
    );
    let received = doc.get("levee_bytes_received_total", &[("country", "ZZ")]);
    assert!(received >= (2 * BODY) as f64, "bytes received {received}");
    let sent_bytes = doc.get("levee_bytes_sent_total", &[("country", "ZZ")]);
    assert!(sent_bytes >= (2 * BODY) as f64, "bytes sent {sent_bytes}");
    // Plain HTTP: no handshakes; every proxied request has an upstream latency.
    for kind in ["full", "resumed", "failed"] {
        let labels = [("country", "ZZ"), ("kind", kind)];
        assert_eq!(doc.get("levee_tls_handshakes_total", &labels), 0.0);
    }
    let zz = [("country", "ZZ")];
    assert_eq!(
        doc.get("levee_tls_handshake_duration_seconds_count", &zz),
        0.0
    );
    assert_eq!(
        doc.get("levee_upstream_latency_seconds_count", &zz),
        sent as f64
    );
    assert!(doc.get("levee_upstream_latency_seconds_sum", &zz) > 0.0);
    // The backend.
    let a_labels = [("pool", "web"), ("backend", &*a.addr.to_string())];
    assert_eq!(doc.get("levee_backend_up", &a_labels), 1.0);
    assert_eq!(doc.get("levee_backend_in_flight", &a_labels), 0.0);
    assert_eq!(
        doc.get("levee_backend_requests_total", &a_labels),
        sent as f64
    );
    assert_eq!(doc.get("levee_backend_failures_total", &a_labels), 0.0);

    // A successful reload: generation 2, one ok reload, the new backend listed, a's counters
    // carried over.
    let toml_ab = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr, b.addr], "");
    let before_reload = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let report = levee.reload_with(&toml_ab);
    assert!(report.ok, "{:?}", report.errors);
    assert_eq!(report.generation, 2);
    let (_, doc) = scrape(admin).await;
    assert_eq!(doc.get("levee_config_generation", &[]), 2.0);
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "error")]),
        0.0
    );
    let last = doc.get("levee_config_last_reload_timestamp_seconds", &[]);
    assert!(
        last >= before_reload - 1.0 && last < before_reload + 60.0,
        "last reload {last}, reloaded at {before_reload}"
    );
    let hash = format!("{:016x}", report.source_hash);
    assert_eq!(doc.get("levee_config_info", &[("source_hash", &hash)]), 1.0);
    assert_eq!(
        doc.get("levee_backend_requests_total", &a_labels),
        sent as f64
    );
    let b_labels = [("pool", "web"), ("backend", &*b.addr.to_string())];
    assert_eq!(doc.get("levee_backend_up", &b_labels), 1.0);
    assert_eq!(doc.get("levee_backend_requests_total", &b_labels), 0.0);
    // Traffic stats are not reset by a reload.
    assert_eq!(doc.get("levee_requests_total", &ZZ_2XX), sent as f64);

    // A refused reload: counted as an error, the generation stays.
    let report = levee.reload_with("this is not toml [");
    assert!(!report.ok);
    let (_, doc) = scrape(admin).await;
    assert_eq!(doc.get("levee_config_generation", &[]), 2.0);
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "error")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answers_get_only() {
    let a = Backend::start("a");
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr], "");
    let levee = start_levee(&toml);
    let admin = levee.running().admin_addr().expect("admin API enabled");
    let mut c = Conn::plain(admin, Proto::H1).await;
    let req = c.request("POST", "/metrics").body(empty()).unwrap();
    assert_eq!(c.send(req).await.status, 405);
}
