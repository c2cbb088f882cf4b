//! Fuzz target `admission_buckets`: the GCRA arithmetic behind every rate limit and the
//! automatic per-country cap (`levee::admission::gcra`), driven by arbitrary rates, bursts
//! and sequences of clock steps and takes.
//!
//! Input: 8 bytes of an `f64` rate (any bit pattern: NaN, infinities, negatives, subnormals),
//! 4 bytes of burst, 1 byte picking whether the rate is built by `Rate::per_second` (what
//! config validation and the automatic cap do) or taken raw as an interval, then 5-byte ops:
//! a clock step (byte 0 picks the scale: ns, µs, ms, s, or a jump of up to 2^63 ns) and the
//! number of takes at that instant (byte 4), on one `Cell` or on an ASN's cell of `AsnCells`.
//!
//! Defends: no panic and no overflow on any input; a rate that is not a finite number above
//! 0 fails closed (the longest interval); a bucket never passes more than its tolerance and
//! the time elapsed allow (`passes <= (tolerance + elapsed) / interval + 1`: no fail-open on
//! saturation); a refusal's wait is honest (a take after waiting it passes, or the bucket is
//! at the end of time); and an ASN's bucket, reclaimed or shared with another
//! ASN, is never looser than one of its own.
#![no_main]

use levee::admission::gcra::{AsnCells, Cell, MAX_INTERVAL_NS, MAX_TOLERANCE_NS, Rate};
use libfuzzer_sys::fuzz_target;

/// The step of one op, in nanoseconds.
fn step(op: &[u8]) -> u64 {
    let n = u64::from(u32::from_le_bytes([op[1], op[2], op[3], 0]));
    match op[0] % 5 {
        0 => n,
        1 => n * 1_000,
        2 => n * 1_000_000,
        3 => n * 1_000_000_000,
        _ => n << 39,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let (head, ops) = data.split_at(13);
    let per_sec = f64::from_le_bytes([
        head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
    ]);
    let burst = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let rate = if head[12] & 1 == 0 {
        let rate = Rate::per_second(per_sec, burst);
        if !(per_sec.is_finite() && per_sec > 0.0) {
            assert_eq!(rate.interval_ns, MAX_INTERVAL_NS, "{per_sec} did not fail closed");
        }
        rate
    } else {
        // A raw interval, as the automatic cap stores it (never 0: 0 means "no cap").
        Rate {
            interval_ns: per_sec.to_bits().max(1),
            burst: burst.max(1),
        }
    };
    assert!(rate.interval_ns >= 1 && rate.burst >= 1, "{rate:?}");
    let asn = head[12] & 2 == 2;
    let tolerance = u128::from(rate.interval_ns)
        .saturating_mul(u128::from(rate.burst - 1))
        .min(u128::from(MAX_TOLERANCE_NS));

    let cell = Cell::default();
    let asns = AsnCells::default();
    let t0: u64 = 1;
    let mut now = t0;
    // Passes of the single cell (index 0) or of each of 32 ASNs.
    let mut passes = [0u128; 32];
    for op in ops.chunks_exact(5) {
        now = now.saturating_add(step(op));
        let who = usize::from(op[0] >> 3);
        for _ in 0..op[4] {
            let bucket = if asn {
                asns.cell(64_500 + who as u32, now)
            } else {
                &cell
            };
            let slot = if asn { who } else { 0 };
            match bucket.take(rate, now) {
                Ok(()) => passes[slot] += 1,
                Err(wait) if !asn => {
                    // Waiting exactly as long as it said frees a token, unless the bucket
                    // is at the end of time (`u64::MAX`: refused for good).
                    let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                    let Some(later) = now.checked_add(wait).filter(|_| wait != u64::MAX) else {
                        continue;
                    };
                    now = later;
                    let again = cell.take(rate, now);
                    let end_of_time = Err(std::time::Duration::from_nanos(u64::MAX));
                    assert!(
                        again.is_ok() || again == end_of_time,
                        "told to wait {wait} ns, refused at {now}: {again:?}"
                    );
                    passes[0] += u128::from(again.is_ok());
                }
                Err(_) => {}
            }
        }
        // A bucket (alone, or an ASN's, shared or not) never passes more than it holds plus
        // what the time elapsed refilled.
        let elapsed = u128::from(now - t0);
        let bound = (tolerance + elapsed) / u128::from(rate.interval_ns) + 1;
        for (i, &p) in passes.iter().enumerate() {
            assert!(p <= bound, "bucket {i}: {p} passes, at most {bound} ({rate:?}, {elapsed} ns)");
        }
    }
});
