//! Ops, bytes, errors and a latency heat map over time, in buckets of a
//! power-of-two number of seconds aligned to the epoch. When the number of
//! buckets passes [`MAX_POINTS`], the width doubles (pairs of buckets
//! merge), so memory is bounded whatever the time span; two series merge
//! at the wider of their widths.

use std::collections::BTreeMap;

/// Latency heat map rows: bucket `i` holds latencies in `[2^i, 2^(i+1))`
/// nanoseconds (bucket 0 also holds 0); the last holds everything above.
pub const HEAT_BUCKETS: usize = 40;
pub const MAX_POINTS: usize = 2048;
const NS: i64 = 1_000_000_000;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesPoint {
    /// Indexed by `Direction::index()`: send, receive.
    pub ops: [u64; 2],
    pub bytes: [u64; 2],
    pub retry_errors: u64,
    pub hard_errors: u64,
    pub heat: Vec<u64>,
}

impl SeriesPoint {
    fn merge(&mut self, o: &SeriesPoint) {
        for i in 0..2 {
            self.ops[i] += o.ops[i];
            self.bytes[i] += o.bytes[i];
        }
        self.retry_errors += o.retry_errors;
        self.hard_errors += o.hard_errors;
        if !o.heat.is_empty() {
            if self.heat.is_empty() {
                self.heat = vec![0; HEAT_BUCKETS];
            }
            for (a, b) in self.heat.iter_mut().zip(&o.heat) {
                *a += b;
            }
        }
    }

    pub fn total_ops(&self) -> u64 {
        self.ops[0] + self.ops[1]
    }
}

pub fn heat_bucket(latency_ns: u64) -> usize {
    let b = (63 - latency_ns.max(1).leading_zeros()) as usize;
    b.min(HEAT_BUCKETS - 1)
}

#[derive(Clone, Debug)]
pub struct Series {
    /// Bucket width in seconds (a power of two).
    width_s: i64,
    points: BTreeMap<i64, SeriesPoint>,
    /// The bucket being filled (rows come in time order within a file),
    /// kept out of the map to save a lookup per op.
    current: Option<(i64, SeriesPoint)>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            width_s: 1,
            points: BTreeMap::new(),
            current: None,
        }
    }
}

impl Series {
    #[inline]
    pub fn point(&mut self, ts_ns: i64) -> &mut SeriesPoint {
        let key = ts_ns.div_euclid(NS * self.width_s);
        if self.current.as_ref().is_none_or(|(k, _)| *k != key) {
            self.flush();
            let p = self.points.remove(&key).unwrap_or_default();
            self.current = Some((key, p));
        }
        &mut self.current.as_mut().expect("just set").1
    }

    /// Puts the current bucket back into the map, and coarsens if needed.
    pub fn flush(&mut self) {
        if let Some((k, p)) = self.current.take() {
            self.points.entry(k).or_default().merge(&p);
        }
        while self.points.len() > MAX_POINTS {
            self.coarsen();
        }
    }

    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.points);
        self.width_s *= 2;
        for (k, p) in old {
            self.points.entry(k.div_euclid(2)).or_default().merge(&p);
        }
    }

    pub fn merge(&mut self, other: &Series) {
        self.flush();
        let mut other = other.clone();
        other.flush();
        while self.width_s < other.width_s {
            self.coarsen();
        }
        while other.width_s < self.width_s {
            other.coarsen();
        }
        for (k, p) in &other.points {
            self.points.entry(*k).or_default().merge(p);
        }
        while self.points.len() > MAX_POINTS {
            self.coarsen();
        }
    }

    /// A series from stored points: (bucket start in ns, point), as
    /// [`Series::points`] gives them. `None` when the width is not a power
    /// of two or a start is not on a bucket boundary.
    pub fn from_points(width_s: i64, points: Vec<(i64, SeriesPoint)>) -> Option<Series> {
        if width_s < 1 || width_s.count_ones() != 1 {
            return None;
        }
        let w = width_s.checked_mul(NS)?;
        let mut map = BTreeMap::new();
        for (start, p) in points {
            if start.rem_euclid(w) != 0 || !(p.heat.is_empty() || p.heat.len() == HEAT_BUCKETS) {
                return None;
            }
            map.insert(start.div_euclid(w), p);
        }
        Some(Series {
            width_s,
            points: map,
            current: None,
        })
    }

    pub fn width_s(&self) -> i64 {
        self.width_s
    }

    /// (bucket start in ns since the epoch, point), in time order. Call
    /// [`Series::flush`] first.
    pub fn points(&self) -> impl Iterator<Item = (i64, &SeriesPoint)> {
        debug_assert!(self.current.is_none(), "flush before reading");
        self.points
            .iter()
            .map(move |(k, p)| (k * self.width_s * NS, p))
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.current.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarsens_and_merges() {
        let mut a = Series::default();
        for s in 0..5000i64 {
            a.point(s * NS).ops[0] += 1;
        }
        a.flush();
        assert!(a.len() <= MAX_POINTS);
        assert_eq!(a.width_s(), 4);
        let total: u64 = a.points().map(|(_, p)| p.ops[0]).sum();
        assert_eq!(total, 5000);

        let mut b = Series::default();
        b.point(3 * NS).ops[1] += 7;
        b.merge(&a);
        assert_eq!(b.width_s(), 4);
        let first = b.points().next().unwrap();
        assert_eq!(first.0, 0);
        assert_eq!(first.1.ops, [4, 7]);
        assert_eq!(heat_bucket(0), 0);
        assert_eq!(heat_bucket(1024), 10);
        assert_eq!(heat_bucket(u64::MAX), HEAT_BUCKETS - 1);
    }
}
