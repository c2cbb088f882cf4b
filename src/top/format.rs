//! Number and sparkline formatting for `levee top`: short, fixed-width strings that fit the
//! narrow columns of an 80-column terminal.

/// Eighth-block bars, lowest to highest; a zero second is a space.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A rate per second: `0`, `3.4`, `57`, `1.2k`, `3.4M`.
pub fn rate(x: f64) -> String {
    if !x.is_finite() || x < 0.05 {
        "0".into()
    } else if x < 10.0 {
        format!("{x:.1}")
    } else if x < 1_000.0 {
        format!("{x:.0}")
    } else if x < 1_000_000.0 {
        format!("{:.1}k", x / 1_000.0)
    } else {
        format!("{:.1}M", x / 1_000_000.0)
    }
}

/// A rate that may be missing (an older levee): `-`, else as [`rate`].
pub fn rate_or_dash(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), rate)
}

/// A count: `987`, `12.3k`, `4.5M`, `6.7G`.
pub fn count(n: u64) -> String {
    // Display precision only: the conversion loses nothing that is shown.
    #[allow(clippy::cast_precision_loss)]
    let x = n as f64;
    if n < 10_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", x / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.1}M", x / 1e6)
    } else {
        format!("{:.1}G", x / 1e9)
    }
}

/// A spike ratio: `-` when there is none yet, `1.2x`, `34x`.
pub fn ratio(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        "-".into()
    } else if x < 10.0 {
        format!("{x:.1}x")
    } else {
        format!("{x:.0}x")
    }
}

/// A share 0..1 as a whole percentage (`-` when unknown): `0%`, `64%`, `100%`.
pub fn percent(share: Option<f64>) -> String {
    match share {
        Some(s) if s.is_finite() => format!("{:.0}%", (s * 100.0).clamp(0.0, 100.0)),
        _ => "-".into(),
    }
}

/// A small share 0..1 with a decimal below 10 % (error rates): `0%`, `0.4%`, `12%`.
pub fn fine_percent(share: f64) -> String {
    let p = if share.is_finite() {
        (share * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    if p == 0.0 {
        "0%".into()
    } else if p < 9.95 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// Milliseconds (`-` when unknown): `0.8`, `42`, `1250`, `12s`.
pub fn millis(ms: Option<f64>) -> String {
    match ms {
        Some(m) if m.is_finite() && m >= 0.0 => {
            if m < 10.0 {
                format!("{m:.1}")
            } else if m < 10_000.0 {
                format!("{m:.0}")
            } else {
                format!("{:.0}s", m / 1_000.0)
            }
        }
        _ => "-".into(),
    }
}

/// An uptime: `42s`, `5m07s`, `2h03m`, `3d04h`.
pub fn uptime(secs: f64) -> String {
    // Whole seconds are enough, and negative or absurd values show as 0.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// A sparkline of `history` (oldest first) in exactly `width` cells. Longer histories are
/// averaged into `width` buckets; shorter ones are right-aligned, so the newest second is
/// always the last cell. Bars are scaled to `top` (at least the largest value shown), so a
/// caller can scale to the row's baseline and make a surge stand out.
pub fn sparkline(history: &[f64], width: usize, top: f64) -> String {
    if width == 0 {
        return String::new();
    }
    let values = resample(history, width);
    let max = values.iter().copied().fold(top, f64::max);
    let mut out = String::with_capacity(width * 3);
    for _ in values.len()..width {
        out.push(' ');
    }
    for v in values {
        out.push(bar(v, max));
    }
    out
}

/// The bar for `v` on a scale of 0..`max`; a space for nothing, the lowest bar for a little.
fn bar(v: f64, max: f64) -> char {
    if !v.is_finite() || v <= 0.0 || max <= 0.0 {
        return ' ';
    }
    // 0..=7 after the clamp, so the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((v / max) * 8.0).ceil().clamp(1.0, 8.0) as usize - 1;
    BARS[i]
}

/// `history` as at most `width` values: unchanged when it fits, else bucket means.
fn resample(history: &[f64], width: usize) -> Vec<f64> {
    let n = history.len();
    if n <= width {
        return history.to_vec();
    }
    (0..width)
        .map(|i| {
            let (from, to) = (i * n / width, ((i + 1) * n / width).max(i * n / width + 1));
            let bucket = &history[from..to.min(n)];
            // Bucket sizes are small (at most 60), so the conversion is exact.
            #[allow(clippy::cast_precision_loss)]
            let len = bucket.len().max(1) as f64;
            bucket.iter().sum::<f64>() / len
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit_their_columns() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(3.44), "3.4");
        assert_eq!(rate(57.2), "57");
        assert_eq!(rate(1234.0), "1.2k");
        assert_eq!(rate(f64::NAN), "0");
        assert_eq!(rate_or_dash(None), "-");
        assert_eq!(rate_or_dash(Some(41.2)), "41");
        assert_eq!(count(9_999), "9999");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(4_500_000), "4.5M");
        assert_eq!(ratio(0.0), "-");
        assert_eq!(ratio(1.23), "1.2x");
        assert_eq!(ratio(34.4), "34x");
        assert_eq!(percent(None), "-");
        assert_eq!(percent(Some(0.638)), "64%");
        assert_eq!(percent(Some(1.2)), "100%");
        assert_eq!(fine_percent(0.0), "0%");
        assert_eq!(fine_percent(0.004), "0.4%");
        assert_eq!(fine_percent(0.12), "12%");
        assert_eq!(millis(None), "-");
        assert_eq!(millis(Some(0.84)), "0.8");
        assert_eq!(millis(Some(1250.0)), "1250");
        assert_eq!(millis(Some(12_000.0)), "12s");
        assert_eq!(uptime(42.9), "42s");
        assert_eq!(uptime(307.0), "5m07s");
        assert_eq!(uptime(7_380.0), "2h03m");
        assert_eq!(uptime(273_600.0), "3d04h");
    }

    #[test]
    fn sparkline_has_exact_width_and_newest_last() {
        let h: Vec<f64> = (0..60).map(|i| if i >= 50 { 10.0 } else { 1.0 }).collect();
        let s = sparkline(&h, 20, 0.0);
        assert_eq!(s.chars().count(), 20);
        assert_eq!(s.chars().last(), Some('█'));
        assert_eq!(s.chars().next(), Some('▁'));
        let wide = sparkline(&h, 70, 0.0);
        assert_eq!(wide.chars().count(), 70);
        assert!(wide.starts_with("          ▁"));
        assert_eq!(sparkline(&[], 5, 0.0), "     ");
        assert_eq!(sparkline(&[0.0, 2.0], 2, 8.0), " ▂");
        assert_eq!(sparkline(&h, 0, 0.0), "");
    }
}
