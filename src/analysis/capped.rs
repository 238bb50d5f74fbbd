//! A table with a bounded number of keys: the heaviest keys are tracked
//! exactly, and the rest fall into one explicit "other" entry, so that the
//! table's sum stays equal to the exact total.
//!
//! The table grows to twice its capacity, then keeps the `cap` heaviest
//! keys (ties broken by key order, so the choice is deterministic) and
//! merges the others into `other`. A key evicted once and seen again
//! starts from zero, so a tracked key's counts are exact when nothing was
//! ever evicted (`evictions() == 0`) and lower bounds otherwise. The
//! number of distinct keys is estimated with a HyperLogLog (exact below a
//! few hundred keys in practice; about 1.6% error above).

use std::collections::hash_map::Entry as HashEntry;
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};

/// What a table entry must offer: a weight to rank by, and a merge.
pub trait Entry: Default + Clone {
    fn weight(&self) -> u128;
    fn merge(&mut self, other: &Self);
    /// Takes in an evicted entry, for the "other" bucket. Only the counts
    /// matter there, so entries with histograms or sets drop them here:
    /// evictions must stay cheap when the tail churns.
    fn absorb(&mut self, evicted: &Self) {
        self.merge(evicted);
    }
}

#[derive(Clone, Debug)]
pub struct Capped<K, V> {
    map: FxHashMap<K, V>,
    cap: usize,
    other: V,
    evictions: u64,
    hll: Hll,
}

impl<K: Hash + Eq + Ord + Clone, V: Entry> Capped<K, V> {
    pub fn new(cap: usize) -> Self {
        Capped {
            map: FxHashMap::default(),
            cap: cap.max(1),
            other: V::default(),
            evictions: 0,
            hll: Hll::default(),
        }
    }

    /// The entry for `key`, created empty if needed.
    #[inline]
    pub fn entry(&mut self, key: K) -> &mut V {
        // Only at twice the capacity (right before a prune) does a lookup
        // happen twice.
        if self.map.len() >= 2 * self.cap && !self.map.contains_key(&key) {
            self.prune();
        }
        match self.map.entry(key) {
            HashEntry::Occupied(o) => o.into_mut(),
            // The HyperLogLog needs each key once (adding it again changes
            // nothing), so only keys new to the map are hashed for it.
            HashEntry::Vacant(v) => {
                self.hll.insert(v.key());
                v.insert(V::default())
            }
        }
    }

    /// Keeps the `cap` heaviest keys, merging the rest into `other`.
    fn prune(&mut self) {
        if self.map.len() <= self.cap {
            return;
        }
        let mut entries: Vec<(K, V)> = self.map.drain().collect();
        // A total order (weight, then key), so the kept set is the same
        // whatever order the entries came in; no need to sort them all.
        entries.select_nth_unstable_by(self.cap - 1, |a, b| {
            b.1.weight().cmp(&a.1.weight()).then_with(|| a.0.cmp(&b.0))
        });
        for (_, v) in entries.drain(self.cap..) {
            self.other.absorb(&v);
            self.evictions += 1;
        }
        self.map.extend(entries);
    }

    pub fn merge(&mut self, other: &Capped<K, V>) {
        for (k, v) in &other.map {
            self.map.entry(k.clone()).or_default().merge(v);
        }
        self.other.absorb(&other.other);
        self.evictions += other.evictions;
        self.hll.merge(&other.hll);
        if self.map.len() > 2 * self.cap {
            self.prune();
        }
    }

    /// Changes the bound (from the next prune on). A merge of partials
    /// that must not lose a key until the end runs with no bound, then
    /// takes the reader's bound before [`Capped::finish`].
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
    }

    /// Puts back an entry read from a stored table that never evicted
    /// (a run summary): the key is counted for the distinct-key estimate
    /// exactly as if its ops had been added here.
    pub fn insert_loaded(&mut self, key: K, value: V) {
        match self.map.entry(key) {
            HashEntry::Occupied(mut o) => o.get_mut().merge(&value),
            HashEntry::Vacant(v) => {
                self.hll.insert(v.key());
                v.insert(value);
            }
        }
    }

    /// Prunes to the capacity; call before reading a final result.
    pub fn finish(&mut self) {
        self.prune();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Everything not tracked (merged from evicted keys).
    pub fn other(&self) -> &V {
        &self.other
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Estimated distinct keys not tracked: 0 when nothing was evicted.
    pub fn other_keys(&self) -> u64 {
        if self.evictions == 0 {
            return 0;
        }
        (self.hll.estimate().round() as u64)
            .saturating_sub(self.map.len() as u64)
            .max(1)
    }

    /// Estimated distinct keys seen (exact count of tracked keys when
    /// nothing was evicted).
    pub fn distinct_keys(&self) -> u64 {
        self.map.len() as u64 + self.other_keys()
    }
}

/// HyperLogLog with 2^12 registers (about 1.6% standard error).
#[derive(Clone, Debug)]
pub struct Hll {
    registers: Vec<u8>,
}

const HLL_BITS: u32 = 12;

impl Default for Hll {
    fn default() -> Self {
        Hll {
            registers: vec![0; 1 << HLL_BITS],
        }
    }
}

impl Hll {
    #[inline]
    pub fn insert<K: Hash>(&mut self, key: &K) {
        let mut h = FxHasher::default();
        key.hash(&mut h);
        // splitmix64 finaliser: Fx's high bits are not uniform enough.
        let mut x = h.finish();
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let idx = (x >> (64 - HLL_BITS)) as usize;
        let rest = x << HLL_BITS;
        let rank = (rest.leading_zeros() + 1).min(64 - HLL_BITS + 1) as u8;
        if self.registers[idx] < rank {
            self.registers[idx] = rank;
        }
    }

    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = self.registers.len() as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default, Debug, PartialEq)]
    struct N(u64);
    impl Entry for N {
        fn weight(&self) -> u128 {
            u128::from(self.0)
        }
        fn merge(&mut self, o: &Self) {
            self.0 += o.0;
        }
    }

    #[test]
    fn heavy_keys_stay_and_the_sum_is_exact() {
        let mut t: Capped<u32, N> = Capped::new(10);
        let mut total = 0;
        // Keys 0..10 are heavy; 10_000 light keys come after.
        for k in 0..10u32 {
            t.entry(k).0 += 1000;
            total += 1000;
        }
        for k in 10..10_010u32 {
            t.entry(k).0 += 1;
            total += 1;
        }
        t.finish();
        assert_eq!(t.len(), 10);
        for k in 0..10 {
            assert_eq!(t.get(&k), Some(&N(1000)));
        }
        let sum: u64 = t.iter().map(|(_, v)| v.0).sum::<u64>() + t.other().0;
        assert_eq!(sum, total);
        let other_keys = t.other_keys() as f64;
        assert!((other_keys - 10_000.0).abs() < 500.0, "{other_keys}");
    }

    #[test]
    fn hll_is_close() {
        let mut h = Hll::default();
        for k in 0..100_000u64 {
            h.insert(&k);
        }
        let e = h.estimate();
        assert!((e - 100_000.0).abs() / 100_000.0 < 0.05, "{e}");
        let mut small = Hll::default();
        for k in 0..50u64 {
            small.insert(&k);
            small.insert(&k);
        }
        assert_eq!(small.estimate().round(), 50.0);
    }
}
