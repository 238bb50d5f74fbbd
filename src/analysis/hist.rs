//! Latency histograms, mergeable.
//!
//! Overall histograms (direction x protocol x blocking) are HdrHistograms
//! with 3 significant digits: a reported percentile is within 0.1% of the
//! true value (the bucket holding it). Per-process and per-conversation
//! ones are [`SparseHist`]: the same log-linear buckets as an HdrHistogram
//! with 2 significant digits (within 1%: the widest bucket is 1/128 of its
//! value), stored sparsely, so that thousands of keys cost little and a
//! key that comes and goes costs no large allocation. Counts, mean and max
//! are exact.

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

    /// What a stored copy needs: (highest value of each non-empty bucket,
    /// count), the exact sum and the exact max. [`LatencyHist::from_parts`]
    /// puts each count back into the same bucket.
    pub fn parts(&self) -> (Vec<(u64, u64)>, u128, u64) {
        let buckets = self
            .h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        (buckets, self.sum, self.max)
    }

    pub fn from_parts(sigfig: u8, buckets: &[(u64, u64)], sum: u128, max: u64) -> Self {
        let mut h = LatencyHist::new(sigfig);
        for &(v, n) in buckets {
            if h.h.record_n(v, n).is_err() {
                h.h.saturating_record_n(v, n);
            }
        }
        h.sum = sum;
        h.max = max;
        h
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

/// A log-linear histogram stored as sorted (bucket, count) pairs: values
/// below 256 exactly, above that 128 buckets per power of two. New values
/// wait in a small buffer and are merged in sorted batches: a linear,
/// cache-friendly merge every [`PENDING`] values instead of a search (and
/// often an insert) for each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseHist {
    buckets: Vec<(u32, u64)>,
    pending: Vec<u32>,
    count: u64,
    sum: u128,
    max: u64,
}

// 256: a wide histogram (a thousand buckets) pays its linear merge once
// per 256 values; the buffer only grows as values come.
const PENDING: usize = 256;

#[inline]
fn sparse_index(v: u64) -> u32 {
    if v < 256 {
        v as u32
    } else {
        let exp = 63 - v.leading_zeros() - 7;
        exp * 128 + (v >> exp) as u32
    }
}

/// The highest value that falls in bucket `idx`.
fn sparse_highest(idx: u32) -> u64 {
    if idx < 256 {
        return u64::from(idx);
    }
    let exp = idx / 128 - 1;
    let m = u128::from(idx - exp * 128);
    (((m + 1) << exp) - 1).min(u128::from(u64::MAX)) as u64
}

/// Adds the sorted bucket list `b` into the sorted list `a`, in place:
/// no allocation unless `b` brings buckets `a` lacks (then `a` grows once
/// and the two merge from the back). A fresh list per merge was the
/// summary thread's largest cost (issue #20).
fn merge_into(a: &mut Vec<(u32, u64)>, b: &[(u32, u64)]) {
    let (mut i, mut j, mut new) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => {
                new += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                a[i].1 += b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    new += b.len() - j;
    if new == 0 {
        return;
    }
    // The counts of shared buckets are already added: place the new ones.
    let old = a.len();
    a.resize(old + new, (0, 0));
    let (mut i, mut j, mut k) = (old, b.len(), old + new);
    while j > 0 {
        if i > 0 && a[i - 1].0 >= b[j - 1].0 {
            if a[i - 1].0 == b[j - 1].0 {
                // Shared: counted above, skip b's.
                j -= 1;
                continue;
            }
            a[k - 1] = a[i - 1];
            i -= 1;
        } else {
            a[k - 1] = b[j - 1];
            j -= 1;
        }
        k -= 1;
    }
}

impl SparseHist {
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.count += 1;
        self.sum += u128::from(v);
        self.max = self.max.max(v);
        // The buffer grows as values come (not 64 at once): most keys of
        // a churning table see a few ops, and a bounded summary holds
        // thousands of them (issue #23).
        self.pending.push(sparse_index(v));
        if self.pending.len() == PENDING {
            self.flush();
        }
    }

    /// Moves the buffered values into the buckets.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.sort_unstable();
        let mut run = [(0u32, 0u64); PENDING];
        let mut n = 0;
        for &idx in &self.pending {
            if n > 0 && run[n - 1].0 == idx {
                run[n - 1].1 += 1;
            } else {
                run[n] = (idx, 1);
                n += 1;
            }
        }
        self.pending.clear();
        merge_into(&mut self.buckets, &run[..n]);
    }

    /// The buckets with nothing pending (a copy only when some are).
    fn flushed(&self) -> std::borrow::Cow<'_, SparseHist> {
        if self.pending.is_empty() {
            std::borrow::Cow::Borrowed(self)
        } else {
            let mut c = self.clone();
            c.flush();
            std::borrow::Cow::Owned(c)
        }
    }

    pub fn merge(&mut self, o: &SparseHist) {
        if o.count == 0 {
            return;
        }
        self.flush();
        let o = o.flushed();
        merge_into(&mut self.buckets, &o.buckets);
        self.count += o.count;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// What a stored copy needs: the sorted (bucket index, count) pairs,
    /// the count, the exact sum and the exact max.
    pub fn parts(&self) -> (Vec<(u32, u64)>, u64, u128, u64) {
        let h = self.flushed();
        (h.buckets.clone(), h.count, h.sum, h.max)
    }

    /// The inverse of [`SparseHist::parts`]; `None` when the pairs are
    /// not sorted or do not add up to the count.
    pub fn from_parts(buckets: Vec<(u32, u64)>, count: u64, sum: u128, max: u64) -> Option<Self> {
        let sorted = buckets.windows(2).all(|w| w[0].0 < w[1].0);
        let total: u64 = buckets.iter().map(|b| b.1).sum();
        (sorted && total == count).then_some(SparseHist {
            buckets,
            pending: Vec::new(),
            count,
            sum,
            max,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at rank ceil(q x count), as the top of its bucket (capped
    /// by the exact max), like HdrHistogram.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let h = self.flushed();
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for &(idx, n) in &h.buckets {
            seen += n;
            if seen >= rank {
                return sparse_highest(idx).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> LatencySummary {
        let h = self.flushed();
        LatencySummary {
            count: h.count,
            mean: if h.count == 0 {
                0.0
            } else {
                h.sum as f64 / h.count as f64
            },
            p50: h.quantile(0.5),
            p90: h.quantile(0.9),
            p99: h.quantile(0.99),
            p999: h.quantile(0.999),
            max: h.max,
        }
    }
}

/// For `top`'s windows and drill-down (kept apart from the rest so the
/// owner's edits above do not collide).
impl SparseHist {
    /// What was recorded since `older`, an earlier copy of this histogram.
    /// `None` when `older` is not an earlier state of this one (a count
    /// went down). The max is the top of the highest bucket left, capped
    /// by the exact max.
    pub fn since(&self, older: &SparseHist) -> Option<SparseHist> {
        let cur = self.flushed();
        let old = older.flushed();
        let mut buckets = Vec::with_capacity(cur.buckets.len());
        let mut j = 0;
        for &(idx, n) in &cur.buckets {
            let mut m = 0;
            while j < old.buckets.len() && old.buckets[j].0 <= idx {
                if old.buckets[j].0 == idx {
                    m = old.buckets[j].1;
                } else {
                    return None;
                }
                j += 1;
            }
            let left = n.checked_sub(m)?;
            if left > 0 {
                buckets.push((idx, left));
            }
        }
        if j < old.buckets.len() {
            return None;
        }
        let max = buckets
            .last()
            .map_or(0, |&(idx, _)| sparse_highest(idx).min(self.max));
        Some(SparseHist {
            buckets,
            pending: Vec::new(),
            count: self.count.checked_sub(older.count)?,
            sum: self.sum.checked_sub(older.sum)?,
            max,
        })
    }

    /// (bucket low, bucket high, count) for every non-empty power of two,
    /// for the text histogram.
    pub fn log2_buckets(&self) -> Vec<(u64, u64, u64)> {
        let h = self.flushed();
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        for &(idx, n) in &h.buckets {
            let value = sparse_highest(idx);
            let b = 64 - value.leading_zeros();
            let lo = if b == 0 { 0 } else { 1u64 << (b - 1) };
            let hi = if b == 0 {
                0
            } else {
                (1u64 << (b - 1)).saturating_mul(2) - 1
            };
            match out.last_mut() {
                Some(last) if last.0 == lo => last.2 += n,
                _ => out.push((lo, hi, n)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_buckets_are_within_one_percent() {
        let mut prev_hi = None;
        for idx in 0..7424u32 {
            let hi = sparse_highest(idx);
            if let Some(p) = prev_hi {
                assert_eq!(sparse_index(p + 1), idx, "bucket {idx} starts after {p}");
            }
            assert_eq!(sparse_index(hi), idx);
            prev_hi = Some(hi);
            if hi == u64::MAX {
                break;
            }
        }
        let mut h = SparseHist::default();
        let mut all: Vec<u64> = (0..20_000u64).map(|i| i * i % 9_999_991 + 1).collect();
        for &v in &all {
            h.record(v);
        }
        all.sort();
        for q in [0.5, 0.9, 0.99, 0.999] {
            let rank = (q * all.len() as f64).ceil() as usize;
            let want = all[rank - 1] as f64;
            let got = h.quantile(q) as f64;
            assert!(
                got >= want && (got - want) / want < 0.01,
                "{q}: {got} vs {want}"
            );
        }
        assert_eq!(h.max(), *all.last().unwrap());
        // Merging halves equals one pass.
        let (mut a, mut b) = (SparseHist::default(), SparseHist::default());
        for (i, &v) in all.iter().enumerate() {
            if i % 3 == 0 { a.record(v) } else { b.record(v) }
        }
        a.merge(&b);
        let mut one = SparseHist::default();
        for &v in &all {
            one.record(v);
        }
        assert_eq!(a.summary(), one.summary());
        a.flush();
        one.flush();
        assert_eq!(a.buckets, one.buckets);
    }

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

    #[test]
    fn sparse_since_is_the_window_between_two_copies() {
        let mut h = SparseHist::default();
        for v in [1_000, 2_000, 3_000] {
            h.record(v);
        }
        let old = h.clone();
        for v in [1_000_000, 2_000_000, 3_000] {
            h.record(v);
        }
        let w = h.since(&old).unwrap();
        assert_eq!(w.count(), 3);
        assert_eq!(w.summary().mean, 1_001_000.0);
        assert!(
            (3_000..=3_030).contains(&w.quantile(0.0)),
            "{}",
            w.quantile(0.0)
        );
        assert!(w.max() >= 2_000_000 && w.max() <= 2_020_000, "{}", w.max());
        assert!(
            old.since(&h).is_none(),
            "a newer copy is not an older state"
        );
        let b = w.log2_buckets();
        assert_eq!(b.iter().map(|x| x.2).sum::<u64>(), 3);
        assert_eq!(b[0].0, 2048);
    }
}
