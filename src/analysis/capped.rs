//! A table with a bounded number of keys: the heaviest keys are tracked
//! exactly, and the rest fall into one explicit "other" entry, so that the
//! table's sum stays equal to the exact total.
//!
//! The table grows to twice its capacity, then keeps the `cap` heaviest
//! keys (ties broken by key order, so the choice is deterministic) and
//! merges the others into `other`. A key evicted once and seen again
//! starts from zero, so a tracked key's counts are lower bounds once
//! anything was evicted. How low, each key says ([`Capped::bound`]), as
//! in Space-Saving (Metwally et al., 2005): a key created after an
//! eviction may have had, before, at most what the heaviest evicted entry
//! could have had (its counts plus its own bound); a running maximum of
//! that is the new key's bound. Every op makes an entry at once, so a key
//! has no ops while it is not tracked, and by induction its true counts
//! lie in `[counts, counts + bound]`. A key created before any eviction
//! and never evicted has bound 0: exact. The number of distinct keys is
//! estimated with a HyperLogLog (exact below a few hundred keys in
//! practice; about 1.6% error above).

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
    /// (ops, bytes), for the error bounds; 0 where not counted.
    fn counts(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// How much a tracked key's (ops, bytes) may undercount: its true counts
/// are within `[counts, counts + bound]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bound {
    pub ops: u64,
    pub bytes: u64,
}

impl Bound {
    fn add(self, o: Bound) -> Bound {
        Bound {
            ops: self.ops.saturating_add(o.ops),
            bytes: self.bytes.saturating_add(o.bytes),
        }
    }

    fn max(self, o: Bound) -> Bound {
        Bound {
            ops: self.ops.max(o.ops),
            bytes: self.bytes.max(o.bytes),
        }
    }

    pub fn is_zero(&self) -> bool {
        self.ops == 0 && self.bytes == 0
    }
}

#[derive(Clone, Debug)]
pub struct Capped<K, V> {
    map: FxHashMap<K, (V, Bound)>,
    cap: usize,
    other: V,
    evictions: u64,
    /// The most any key not tracked now may have had: the bound a key
    /// created now starts with.
    untracked: Bound,
    hll: Hll,
}

impl<K: Hash + Eq + Ord + Clone, V: Entry> Capped<K, V> {
    pub fn new(cap: usize) -> Self {
        Capped {
            map: FxHashMap::default(),
            cap: cap.max(1),
            other: V::default(),
            evictions: 0,
            untracked: Bound::default(),
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
            HashEntry::Occupied(o) => &mut o.into_mut().0,
            // The HyperLogLog needs each key once (adding it again changes
            // nothing), so only keys new to the map are hashed for it.
            HashEntry::Vacant(v) => {
                self.hll.insert(v.key());
                &mut v.insert((V::default(), self.untracked)).0
            }
        }
    }

    /// Keeps the `cap` heaviest keys, merging the rest into `other`.
    fn prune(&mut self) {
        if self.map.len() <= self.cap {
            return;
        }
        let mut entries: Vec<(K, (V, Bound))> = self.map.drain().collect();
        // A total order (weight, then key), so the kept set is the same
        // whatever order the entries came in; no need to sort them all.
        entries.select_nth_unstable_by(self.cap - 1, |a, b| {
            b.1.0
                .weight()
                .cmp(&a.1.0.weight())
                .then_with(|| a.0.cmp(&b.0))
        });
        for (_, (v, bound)) in entries.drain(self.cap..) {
            let (ops, bytes) = v.counts();
            self.untracked = self.untracked.max(bound.add(Bound { ops, bytes }));
            self.other.absorb(&v);
            self.evictions += 1;
        }
        self.map.extend(entries);
    }

    /// Adds `other`'s keys. A key one side does not track may hide in
    /// that side's "other" (up to its `untracked` bound): the merged
    /// bound adds that.
    pub fn merge(&mut self, other: &Capped<K, V>) {
        if !other.untracked.is_zero() {
            for (k, (_, b)) in self.map.iter_mut() {
                if !other.map.contains_key(k) {
                    *b = b.add(other.untracked);
                }
            }
        }
        for (k, (v, b)) in &other.map {
            match self.map.entry(k.clone()) {
                HashEntry::Occupied(mut o) => {
                    let e = o.get_mut();
                    e.0.merge(v);
                    e.1 = e.1.add(*b);
                }
                HashEntry::Vacant(e) => {
                    e.insert((v.clone(), b.add(self.untracked)));
                }
            }
        }
        self.untracked = self.untracked.add(other.untracked);
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
        self.insert_bounded(key, value, Bound::default());
    }

    /// Puts back an entry read from a stored bounded table, with its
    /// bound (the table's state comes with [`Capped::restore_untracked`]).
    pub fn insert_bounded(&mut self, key: K, value: V, bound: Bound) {
        match self.map.entry(key) {
            HashEntry::Occupied(mut o) => {
                let e = o.get_mut();
                e.0.merge(&value);
                e.1 = e.1.add(bound);
            }
            HashEntry::Vacant(v) => {
                self.hll.insert(v.key());
                v.insert((value, bound));
            }
        }
    }

    /// Puts back what a stored bounded table kept apart from its keys:
    /// its "other" entry, evictions, the bound of keys not tracked, and
    /// its distinct-key estimate (merged with the keys put back).
    pub fn restore_untracked(&mut self, other: V, evictions: u64, untracked: Bound, hll: &Hll) {
        self.other.absorb(&other);
        self.evictions += evictions;
        self.untracked = self.untracked.add(untracked);
        self.hll.merge(hll);
    }

    /// How much `key`'s counts may undercount (zero: exact).
    pub fn bound(&self, key: &K) -> Bound {
        self.map.get(key).map_or(self.untracked, |e| e.1)
    }

    /// The most a key not tracked may have had (zero: nothing evicted).
    pub fn untracked(&self) -> Bound {
        self.untracked
    }

    /// The largest bound of any tracked key: zero when every tracked key
    /// is exact.
    pub fn max_bound(&self) -> Bound {
        self.map
            .values()
            .fold(Bound::default(), |m, (_, b)| m.max(*b))
    }

    pub fn hll(&self) -> &Hll {
        &self.hll
    }

    /// Prunes to the capacity; call before reading a final result.
    pub fn finish(&mut self) {
        self.prune();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }

    /// Each key with its entry and bound.
    pub fn iter_bounded(&self) -> impl Iterator<Item = (&K, &V, Bound)> {
        self.map.iter().map(|(k, (v, b))| (k, v, *b))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|e| &e.0)
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

    /// The registers as hex (two digits each), for a stored table.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(self.registers.len() * 2);
        for r in &self.registers {
            s.push_str(&format!("{r:02x}"));
        }
        s
    }

    /// The inverse of [`Hll::to_hex`]; `None` if it is not one.
    pub fn from_hex(s: &str) -> Option<Hll> {
        if s.len() != 2 << HLL_BITS {
            return None;
        }
        let registers = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        registers
            .iter()
            .all(|&r| u32::from(r) <= 64 - HLL_BITS + 1)
            .then_some(Hll { registers })
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

    #[derive(Clone, Default, Debug, PartialEq)]
    struct C(u64);
    impl Entry for C {
        fn weight(&self) -> u128 {
            u128::from(self.0)
        }
        fn merge(&mut self, o: &Self) {
            self.0 += o.0;
        }
        fn counts(&self) -> (u64, u64) {
            (self.0, 0)
        }
    }

    /// Every tracked key's true count is within `[count, count + bound]`,
    /// after churn, re-entries and merges of bounded tables; keys that
    /// were never evicted have bound 0 and are exact; the sum with
    /// "other" is exact.
    #[test]
    fn bounds_hold_through_churn_and_merges() {
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut parts = Vec::new();
        let mut truth: std::collections::HashMap<u32, u64> = Default::default();
        let mut total = 0;
        for part in 0..3 {
            let mut t: Capped<u32, C> = Capped::new(16);
            // 5 heavy keys from the start, then a skewed tail that
            // comes back.
            for i in 0..20_000u32 {
                let k = if i % 4 == 0 {
                    (i / 4) % 5
                } else {
                    let r = next();
                    5 + (r % 3000) as u32 / (1 + (r >> 40) as u32 % 50)
                };
                let _ = part;
                t.entry(k).0 += 1;
                *truth.entry(k).or_default() += 1;
                total += 1;
            }
            parts.push(t);
        }
        let mut merged: Capped<u32, C> = Capped::new(16);
        for p in &parts {
            merged.merge(p);
        }
        merged.finish();
        for t in parts.iter().chain([&merged]) {
            assert!(t.evictions() > 0);
        }
        let mut sum = merged.other().0;
        for (k, v, b) in merged.iter_bounded() {
            let want = truth[k];
            assert!(
                v.0 <= want && want <= v.0 + b.ops,
                "{k}: {} + {} vs {want}",
                v.0,
                b.ops
            );
            sum += v.0;
        }
        assert_eq!(sum, total);
        // The heavy keys were there before any eviction: exact.
        for k in 0..5 {
            assert_eq!(merged.bound(&k).ops, 0);
            assert_eq!(merged.get(&k).unwrap().0, truth[&k]);
        }
    }

    #[test]
    fn hll_round_trips_as_hex() {
        let mut h = Hll::default();
        for k in 0..1000u64 {
            h.insert(&k);
        }
        let back = Hll::from_hex(&h.to_hex()).unwrap();
        assert_eq!(back.estimate(), h.estimate());
        assert!(Hll::from_hex("00").is_none());
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
