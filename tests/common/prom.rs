//! A checker for the Prometheus text exposition format 0.0.4: every line of a `/metrics`
//! document is checked (names, labels and their escapes, values, HELP/TYPE once per family
//! and before its samples, contiguous families, cumulative histograms whose `+Inf` bucket is
//! `_count`), and the samples are collected for lookups.

use std::collections::HashMap;

/// Label pairs of one sample, in the order written.
pub type Labels = Vec<(String, String)>;

/// One sample line: its metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Label pairs, in the order written.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// A `/metrics` document, checked line by line.
#[derive(Debug)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Family name -> declared type.
    pub types: HashMap<String, String>,
}

impl Exposition {
    /// The value of the sample `name` whose labels are exactly `labels` (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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

    /// The value of a sample that must exist.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {self:#?}"))
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

pub fn parse_value(s: &str) -> Result<f64, String> {
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
pub fn parse_exposition(text: &str) -> Exposition {
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
        if let Some(base) = name.strip_suffix(suffix)
            && types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
        {
            return base;
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
