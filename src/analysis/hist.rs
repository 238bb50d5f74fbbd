//! Latency histograms: HdrHistogram, mergeable.
//!
//! Overall histograms (direction x protocol x blocking) keep 3 significant
//! digits: a reported percentile is within 0.1% of the true value (the
//! bucket holding it). Per-process and per-conversation histograms keep 2
//! (within 1%: the worst bucket is 1/128 wide), so that a thousand of them
//! fit in a few megabytes. Counts and max are exact.

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct LatencyHist {
    h: Histogram<u64>,
    sum: u128,
    /// Exact (the histogram's own max is its bucket's top).
    max: u64,
}

impl LatencyHist {
    /// `sigfig` 2 or 3. Auto-resizing: memory follows the largest value
    /// recorded.
    pub fn new(sigfig: u8) -> Self {
        LatencyHist {
            h: Histogram::new(sigfig).expect("valid sigfig"),
            sum: 0,
            max: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        // Auto-resize grows to fit; past what it can track, saturate.
        if self.h.record(ns).is_err() {
            self.h.saturating_record(ns);
        }
        self.sum += u128::from(ns);
        self.max = self.max.max(ns);
    }

    pub fn merge(&mut self, other: &LatencyHist) {
        // Both auto-resize, so adding cannot fail for range; counts
        // saturate at u64 which cannot happen in practice.
        self.h.add(&other.h).expect("auto-resizing histograms add");
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the highest value equivalent to
    /// the bucket that holds it, capped by the exact max.
    pub fn quantile(&self, q: f64) -> u64 {
        self.h.value_at_quantile(q).min(self.max)
    }

    pub fn mean(&self) -> f64 {
        if self.h.is_empty() {
            0.0
        } else {
            self.sum as f64 / self.h.len() as f64
        }
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            mean: self.mean(),
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.max(),
        }
    }

    /// What was recorded since `older`, an earlier copy of this
    /// histogram (for a rate window from two cumulative snapshots).
    /// `None` when `older` is not an earlier state of this one (a count
    /// went down). The sum is exact; the max is the top of the highest
    /// bucket left, within the histogram's precision.
    pub fn since(&self, older: &LatencyHist) -> Option<LatencyHist> {
        let mut h = self.h.clone();
        h.subtract(&older.h).ok()?;
        let max = if h.is_empty() {
            0
        } else {
            h.max().min(self.max)
        };
        Some(LatencyHist {
            h,
            sum: self.sum.checked_sub(older.sum)?,
            max,
        })
    }

    /// (bucket low, bucket high, count) for every non-empty bucket, in
    /// log2 steps (for the text histogram).
    pub fn log2_buckets(&self) -> Vec<(u64, u64, u64)> {
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        for v in self.h.iter_recorded() {
            let value = v.value_iterated_to();
            let b = 64 - value.leading_zeros();
            let lo = if b == 0 { 0 } else { 1u64 << (b - 1) };
            let hi = if b == 0 {
                0
            } else {
                (1u64 << (b - 1)).saturating_mul(2) - 1
            };
            match out.last_mut() {
                Some(last) if last.0 == lo => last.2 += v.count_at_value(),
                _ => out.push((lo, hi, v.count_at_value())),
            }
        }
        out
    }
}

/// Count, mean and percentiles in nanoseconds. `mean` is exact; the
/// percentiles are within the histogram's precision; `max` is exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_precision() {
        let mut h = LatencyHist::new(3);
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 100_000);
        assert_eq!(s.max, 100_000_000);
        let close = |got: u64, want: f64| (got as f64 - want).abs() / want < 0.001;
        assert!(close(s.p50, 50_000_000.0), "{}", s.p50);
        assert!(close(s.p99, 99_000_000.0), "{}", s.p99);
        assert!(close(s.p999, 99_900_000.0), "{}", s.p999);
        assert!((s.mean - 50_000_500.0).abs() < 1.0);

        let mut a = LatencyHist::new(2);
        let mut b = LatencyHist::new(2);
        a.record(10);
        b.record(5_000_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.max(), 5_000_000_000);
        let buckets = a.log2_buckets();
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[0], (8, 15, 1));
    }

    #[test]
    fn since_is_the_window_between_two_copies() {
        let mut h = LatencyHist::new(2);
        for v in [1_000, 2_000, 3_000] {
            h.record(v);
        }
        let old = h.clone();
        for v in [1_000_000, 2_000_000] {
            h.record(v);
        }
        let w = h.since(&old).unwrap();
        assert_eq!(w.count(), 2);
        assert!(w.quantile(0.0) >= 990_000, "{}", w.quantile(0.0));
        assert_eq!(w.mean(), 1_500_000.0);
        assert!(
            old.since(&h).is_none(),
            "a newer copy is not an older state"
        );
    }
}
