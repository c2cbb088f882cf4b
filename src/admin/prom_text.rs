//! Writing the Prometheus text exposition format (0.0.4) by hand: `# HELP`/`# TYPE` lines,
//! samples with escaped label values, histograms made cumulative, and exact number spellings.

use std::fmt::{self, Display, Write};

use crate::stats::{HistogramSnapshot, LATENCY_BOUNDS_US};

/// `# HELP` and `# TYPE` lines of one family.
pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    write!(out, "# HELP {name} ")?;
    Escaper {
        out: &mut *out,
        quotes: false,
    }
    .write_str(help)?;
    writeln!(out, "\n# TYPE {name} {kind}")
}

/// One sample line: `name{label="value",...} value`.
pub(super) fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &dyn Display)],
    value: impl Display,
) -> fmt::Result {
    out.push_str(name);
    write_labels(out, labels, None)?;
    writeln!(out, " {value}")
}

/// `{a="x",b="y"}` (nothing when there are no labels), with `le` last when given.
pub(super) fn write_labels(
    out: &mut String,
    labels: &[(&str, &dyn Display)],
    le: Option<&dyn Display>,
) -> fmt::Result {
    let le = le.map(|v| ("le", v));
    let mut all = labels.iter().copied().chain(le).peekable();
    if all.peek().is_none() {
        return Ok(());
    }
    out.push('{');
    for (i, (key, value)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write!(out, "{key}=\"")?;
        write!(
            Escaper {
                out: &mut *out,
                quotes: true
            },
            "{value}"
        )?;
        out.push('"');
    }
    out.push('}');
    Ok(())
}

/// The `_bucket` (cumulative, `+Inf` last), `_sum` and `_count` lines of one histogram.
pub(super) fn histogram(
    out: &mut String,
    name: &str,
    labels: &[(&str, &dyn Display)],
    h: &HistogramSnapshot,
) -> fmt::Result {
    let mut cumulative = 0u64;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le: &dyn Display = match LATENCY_BOUNDS_US.get(i) {
            Some(&us) => &Seconds(us),
            None => &"+Inf",
        };
        write!(out, "{name}_bucket")?;
        write_labels(out, labels, Some(le))?;
        writeln!(out, " {cumulative}")?;
    }
    write!(out, "{name}_sum")?;
    write_labels(out, labels, None)?;
    writeln!(out, " {}", Seconds(h.sum_us))?;
    write!(out, "{name}_count")?;
    write_labels(out, labels, None)?;
    writeln!(out, " {cumulative}")
}

/// Writes through to `out`, escaping `\` and newline, and `"` when `quotes` (label values;
/// `# HELP` text leaves quotes alone).
struct Escaper<'a> {
    out: &'a mut String,
    quotes: bool,
}

impl Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(|c| c == '\\' || c == '\n' || (self.quotes && c == '"')) {
            self.out.push_str(&rest[..i]);
            self.out.push_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'\n' => "\\n",
                _ => "\\\"",
            });
            rest = &rest[i + 1..];
        }
        self.out.push_str(rest);
        Ok(())
    }
}

/// Microseconds shown as exact decimal seconds (`2500` -> `0.0025`), no float rounding.
pub(super) struct Seconds(pub(super) u64);

impl Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, micros) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if micros == 0 {
            return write!(f, "{whole}");
        }
        // Trailing zeros of the six fractional digits dropped: 250 µs is 0.00025.
        let (mut frac, mut width) = (micros, 6);
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        write!(f, "{whole}.{frac:0width$}")
    }
}

/// A float sample value with the format's spellings of the special values.
pub(super) struct Float(pub(super) f64);

impl Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

/// A `u64` as 16 lower-case hex digits (the source hash, as `/stats` shows it).
pub(super) struct Hex16(pub(super) u64);

impl Display for Hex16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write_labels(&mut out, &[("v", &s)], None).unwrap();
        out
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escaped("plain"), r#"{v="plain"}"#);
        assert_eq!(escaped(r#"a"b"#), r#"{v="a\"b"}"#);
        assert_eq!(escaped(r"a\b"), r#"{v="a\\b"}"#);
        assert_eq!(escaped("a\nb"), r#"{v="a\nb"}"#);
        assert_eq!(escaped("\\\"\n"), r#"{v="\\\"\n"}"#);
        assert_eq!(escaped("é✓"), "{v=\"é✓\"}");
    }

    #[test]
    fn help_text_escapes_backslash_and_newline_but_not_quotes() {
        let mut out = String::new();
        family(&mut out, "m", "gauge", "a \"b\" c\\d\ne").unwrap();
        assert_eq!(out, "# HELP m a \"b\" c\\\\d\\ne\n# TYPE m gauge\n");
    }

    #[test]
    fn labels_and_no_labels() {
        let mut out = String::new();
        sample(&mut out, "m", &[], 3).unwrap();
        let labels: [(&str, &dyn Display); 2] = [("a", &"x"), ("b", &7)];
        sample(&mut out, "m", &labels, 4).unwrap();
        assert_eq!(out, "m 3\nm{a=\"x\",b=\"7\"} 4\n");
    }

    #[test]
    fn seconds_are_exact_decimals() {
        let s = |us| Seconds(us).to_string();
        assert_eq!(s(0), "0");
        assert_eq!(s(100), "0.0001");
        assert_eq!(s(250), "0.00025");
        assert_eq!(s(2_500), "0.0025");
        assert_eq!(s(1_000_000), "1");
        assert_eq!(s(1_500_000), "1.5");
        assert_eq!(s(10_000_001), "10.000001");
        assert_eq!(s(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn floats_use_the_format_spellings() {
        assert_eq!(Float(0.0).to_string(), "0");
        assert_eq!(Float(1_712_345_678.125).to_string(), "1712345678.125");
        assert_eq!(Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Float(f64::NEG_INFINITY).to_string(), "-Inf");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = HistogramSnapshot::default();
        h.buckets[0] = 2; // <= 100 µs
        h.buckets[3] = 5; // <= 1 ms
        h.buckets[LATENCY_BOUNDS_US.len()] = 1; // above 10 s
        h.sum_us = 2 * 80 + 5 * 900 + 12_000_000;
        let mut out = String::new();
        histogram(&mut out, "h", &[("country", &"ZZ")], &h).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), LATENCY_BOUNDS_US.len() + 1 + 2, "{out}");

        let buckets: Vec<(&str, u64)> = lines[..=LATENCY_BOUNDS_US.len()]
            .iter()
            .map(|l| {
                let rest = l.strip_prefix("h_bucket{country=\"ZZ\",le=\"").unwrap();
                let (le, value) = rest.split_once("\"} ").unwrap();
                (le, value.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets[0], ("0.0001", 2));
        assert_eq!(buckets[1], ("0.00025", 2));
        assert_eq!(buckets[3], ("0.001", 7));
        assert_eq!(buckets[LATENCY_BOUNDS_US.len() - 1], ("10", 7));
        assert_eq!(buckets[LATENCY_BOUNDS_US.len()], ("+Inf", 8));
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{out}");
        let les: Vec<f64> = buckets
            .iter()
            .map(|(le, _)| le.parse::<f64>().unwrap_or(f64::INFINITY))
            .collect();
        assert!(les.windows(2).all(|w| w[0] < w[1]), "{out}");

        assert_eq!(lines[lines.len() - 2], "h_sum{country=\"ZZ\"} 12.00466");
        assert_eq!(lines[lines.len() - 1], "h_count{country=\"ZZ\"} 8");
    }

    #[test]
    fn empty_histogram_has_zero_buckets_sum_and_count() {
        let mut out = String::new();
        histogram(
            &mut out,
            "h",
            &[("country", &"ZZ")],
            &HistogramSnapshot::default(),
        )
        .unwrap();
        assert!(out.lines().all(|l| l.ends_with(" 0")), "{out}");
        assert!(out.contains("h_bucket{country=\"ZZ\",le=\"+Inf\"} 0\n"));
        let mut out = String::new();
        histogram(&mut out, "h", &[], &HistogramSnapshot::default()).unwrap();
        assert!(out.contains("h_bucket{le=\"0.0001\"} 0\nh_bucket{le=\"0.00025\"} 0\n"));
        assert!(out.ends_with("h_sum 0\nh_count 0\n"), "{out}");
    }
}
