//! `[stats]`: the spike detection settings, checked so the control thread can use them as
//! they are (finite numbers in range, a half-life of at least one window tick).

use std::time::Duration;

use super::super::file::RawStats;
use super::Scope;
use crate::config::StatsSettings;

/// Accepted half-lives: one tick (the windows advance once a second) to a week.
const HALF_LIFE_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));

/// Builds `[stats]`; every key is optional (see `StatsSettings::default`).
pub(super) fn build_stats(raw: &RawStats, s: &mut Scope<'_>) -> Option<StatsSettings> {
    let d = StatsSettings::default();
    let threshold = number(s, "spike_threshold", raw.spike_threshold, d.spike_threshold);
    let threshold = threshold.filter(|&t| {
        let ok = t > 1.0;
        if !ok {
            s.add(
                "spike_threshold",
                format!("must be greater than 1 (got {t})"),
            );
        }
        ok
    });
    let min_rate = number(s, "spike_min_rate", raw.spike_min_rate, d.spike_min_rate);
    let floor = number(s, "spike_floor", raw.spike_floor, d.spike_floor);
    let floor = floor.filter(|&f| {
        if f <= 0.0 {
            s.add("spike_floor", format!("must be greater than 0 (got {f})"));
        }
        f > 0.0
    });
    let half_life = raw.baseline_half_life.as_deref();
    let half_life = s
        .duration("baseline_half_life", half_life, d.baseline_half_life)
        .filter(|h| {
            let (min, max) = HALF_LIFE_RANGE;
            let ok = (min..=max).contains(h);
            if !ok {
                let reason = format!(
                    "must be between {} and {} (got {})",
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                    humantime::format_duration(*h)
                );
                s.add("baseline_half_life", reason);
            }
            ok
        });
    Some(StatsSettings {
        spike_threshold: threshold?,
        spike_min_rate: min_rate?,
        spike_floor: floor?,
        baseline_half_life: half_life?,
    })
}

/// A finite, non-negative number; `None` gives the default.
fn number(s: &mut Scope<'_>, field: &str, value: Option<f64>, default: f64) -> Option<f64> {
    let v = value.unwrap_or(default);
    if !v.is_finite() || v < 0.0 {
        s.add(
            field,
            format!("must be a finite number, 0 or more (got {v})"),
        );
        return None;
    }
    Some(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::test_support::{MINIMAL, assert_rejected, context};
    use crate::config::{ConfigErrors, StatsSettings, load_str};

    fn stats(table: &str) -> Result<StatsSettings, ConfigErrors> {
        load_str(
            &format!("{MINIMAL}[stats]\n{table}\n"),
            &context(Path::new(".")),
        )
        .map(|s| s.stats)
    }

    fn rejected(table: &str, key: &str, needle: &str) {
        assert_rejected(&format!("{MINIMAL}[stats]\n{table}\n"), key, needle);
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(stats("").unwrap(), StatsSettings::default());
        let s = stats(
            "spike_threshold = 3\nspike_min_rate = 2.5\nspike_floor = 0.5\n\
             baseline_half_life = \"2s\"",
        )
        .unwrap();
        assert_eq!(s.spike_threshold, 3.0);
        assert_eq!(s.spike_min_rate, 2.5);
        assert_eq!(s.spike_floor, 0.5);
        assert_eq!(s.baseline_half_life, Duration::from_secs(2));
        assert_eq!(
            stats("spike_min_rate = 0").unwrap().spike_min_rate,
            0.0,
            "0: any rate can spike"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        rejected(
            "spike_threshold = 1",
            "stats.spike_threshold",
            "greater than 1",
        );
        rejected("spike_threshold = -3", "stats.spike_threshold", "0 or more");
        rejected("spike_min_rate = -1", "stats.spike_min_rate", "0 or more");
        rejected("spike_min_rate = nan", "stats.spike_min_rate", "finite");
        rejected("spike_floor = 0", "stats.spike_floor", "greater than 0");
        rejected("spike_floor = inf", "stats.spike_floor", "finite");
        rejected(
            "baseline_half_life = \"500ms\"",
            "stats.baseline_half_life",
            "between 1s and 7days",
        );
        rejected(
            "baseline_half_life = \"soon\"",
            "stats.baseline_half_life",
            "invalid duration",
        );
        rejected("bogus = 1", "stats.bogus", "unknown field");
    }
}
