//! Bounded, mergeable summaries used by the per-site statistics.
//!
//! * [`TopK`]: the Misra–Gries frequent-items summary with `capacity`
//!   counters. Every estimate is a lower bound of the true count and is off
//!   by at most [`TopK::error_bound`], which is at most `n / (capacity + 1)`
//!   for `n` items seen (also after any number of merges, whose inputs add up
//!   to `n`). So every item seen more than `n / (capacity + 1)` times is in
//!   the summary. Memory: at most `capacity` keys of at most
//!   [`MAX_KEY_BYTES`] bytes.
//! * [`QuantileSketch`]: a log-bucketed relative-error sketch (the idea of
//!   DDSketch). A value `x > 0` goes to bucket `ceil(log_γ x)` with
//!   `γ = (1 + α) / (1 − α)`; a quantile is answered with the bucket's
//!   midpoint `2γⁱ / (γ + 1)`, which is within relative error `α` of every
//!   value in that bucket, so a returned quantile is within `α` (relative)
//!   of the true value of the same rank. Merge adds bucket counts and is
//!   exact (merging two sketches equals sketching the combined input). With
//!   `α = 1 %`, values from 1 µs to 10⁵ s need fewer than 1,300 buckets. The
//!   buckets are kept as one run of counters from the lowest to the highest
//!   index in use (an insert is an index and an add), and that run is
//!   capped at [`QuantileSketch::MAX_BINS`] by folding the lowest buckets
//!   together, which only ever loses accuracy on the lowest quantiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Keys longer than this are cut (at a character boundary) before counting.
pub const MAX_KEY_BYTES: usize = 256;

/// Misra–Gries frequent items over string keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopK {
    capacity: usize,
    /// Items seen (sum of weights), across merges.
    total: u64,
    counters: BTreeMap<String, u64>,
}

impl TopK {
    /// A summary keeping at most `capacity` counters (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            total: 0,
            counters: BTreeMap::new(),
        }
    }

    /// Counts one occurrence of `key`.
    pub fn insert(&mut self, key: &str) {
        self.insert_n(key, 1);
    }

    /// Counts `n` occurrences of `key` in a row: the same summary as `n`
    /// calls of [`TopK::insert`], in one lookup when `key` has a counter or
    /// there is room for one.
    pub fn insert_n(&mut self, key: &str, mut n: u64) {
        let key = truncate(key);
        while n > 0 {
            if let Some(c) = self.counters.get_mut(key) {
                *c += n;
                self.total += n;
                return;
            }
            if self.counters.len() < self.capacity {
                self.counters.insert(key.to_owned(), n);
                self.total += n;
                return;
            }
            // The new item and every counter lose one: `capacity + 1` units
            // of count are discarded, which bounds the error.
            self.total += 1;
            self.counters.retain(|_, c| {
                *c -= 1;
                *c > 0
            });
            n -= 1;
        }
    }

    /// Merges another summary into this one (the mergeable-summaries rule:
    /// add counters, then subtract the `capacity + 1`-th largest count from
    /// all and keep the positive ones). The capacity of `self` is kept.
    pub fn merge(&mut self, other: &TopK) {
        self.total += other.total;
        for (k, c) in &other.counters {
            *self.counters.entry(k.clone()).or_insert(0) += c;
        }
        if self.counters.len() > self.capacity {
            let mut counts: Vec<u64> = self.counters.values().copied().collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            let cut = counts[self.capacity];
            self.counters.retain(|_, c| {
                *c -= cut.min(*c);
                *c > 0
            });
        }
    }

    /// Items seen.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The most an estimate can be below the true count:
    /// `(n − Σ counters) / (capacity + 1)`.
    pub fn error_bound(&self) -> u64 {
        let kept: u64 = self.counters.values().sum();
        (self.total - kept.min(self.total)) / (self.capacity as u64).saturating_add(1)
    }

    /// The estimated count of `key` (a lower bound; 0 if not kept).
    pub fn estimate(&self, key: &str) -> u64 {
        self.counters.get(truncate(key)).copied().unwrap_or(0)
    }

    /// The `n` largest counters, largest first (ties by key).
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> =
            self.counters.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

fn truncate(key: &str) -> &str {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    let mut end = MAX_KEY_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

/// Relative-error quantile sketch over non-negative values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileSketch {
    alpha: f64,
    count: u64,
    /// Values at or below [`QuantileSketch::MIN_VALUE`].
    zero: u64,
    /// `+inf` while empty: stored as `null`, which JSON has in place of
    /// infinities (and read back as `+inf`).
    #[serde(
        serialize_with = "finite_or_null",
        deserialize_with = "null_as_pos_inf"
    )]
    min: f64,
    /// `-inf` while empty, stored as `null` the same way.
    #[serde(
        serialize_with = "finite_or_null",
        deserialize_with = "null_as_neg_inf"
    )]
    max: f64,
    sum: f64,
    bins: Bins,
}

/// Writes a finite `v` as a number, anything else as `null`.
fn finite_or_null<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

fn null_as_pos_inf<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

fn null_as_neg_inf<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

/// A sketch's bucket counts: one counter per index from `low` to
/// `low + counts.len() - 1`, so an insert costs an index and an add rather
/// than a map lookup. The first and last counters are never zero, so equal
/// contents compare equal. Serialized as a map from index to count (the
/// non-zero ones), as the sketch was stored before.
#[derive(Debug, Clone, Default, PartialEq)]
struct Bins {
    low: i32,
    counts: std::collections::VecDeque<u64>,
}

impl Bins {
    /// Adds `n` (> 0) to bucket `i`, keeping the run at most `max` buckets
    /// long: buckets that would fall below it are folded into its lowest.
    fn add(&mut self, i: i32, n: u64, max: usize) {
        let max = max.max(1) as i64;
        let len = self.counts.len() as i64;
        if len == 0 {
            self.low = i;
            self.counts.push_back(n);
            return;
        }
        let (low, i) = (i64::from(self.low), i64::from(i));
        let high = low + len - 1;
        if i < low {
            // The new bucket is the lowest, unless the run would grow too
            // long: then it is counted in the lowest bucket that fits.
            let at = i.max(high - max + 1);
            if at < low {
                for _ in 0..(low - at) {
                    self.counts.push_front(0);
                }
                self.low = at as i32;
            }
            if let Some(c) = self.counts.front_mut() {
                *c += n;
            }
            return;
        }
        let new_low = i - max + 1;
        if new_low > low {
            // Growing upwards past the cap: fold the lowest buckets into
            // the new lowest.
            let shift = (new_low - low).min(len) as usize;
            let folded: u64 = self.counts.drain(..shift).sum();
            if self.counts.is_empty() {
                self.counts.push_back(0);
            }
            if let Some(c) = self.counts.front_mut() {
                *c += folded;
            }
            self.low = new_low as i32;
        }
        let at = (i - i64::from(self.low)) as usize;
        match self.counts.get_mut(at) {
            Some(c) => *c += n,
            None => {
                self.counts.resize(at, 0);
                self.counts.push_back(n);
            }
        }
    }

    /// `(index, count)` of the non-zero buckets, lowest first.
    fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let low = i64::from(self.low);
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(move |(k, c)| ((low + k as i64) as i32, *c))
    }

    /// Buckets spanned (zeros between used ones included).
    #[cfg(test)]
    fn span(&self) -> usize {
        self.counts.len()
    }
}

impl Serialize for Bins {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Bins {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<i32, u64>::deserialize(d)?;
        let mut bins = Bins::default();
        // Added as inserts are, so a damaged store with indices far apart
        // folds into the cap instead of allocating the gap.
        for (i, c) in map.into_iter().filter(|(_, c)| *c > 0) {
            bins.add(i, c, QuantileSketch::MAX_BINS);
        }
        Ok(bins)
    }
}

impl Default for QuantileSketch {
    fn default() -> Self {
        Self::new(Self::DEFAULT_ALPHA)
    }
}

impl QuantileSketch {
    /// The relative accuracy used by the statistics: 1 %.
    pub const DEFAULT_ALPHA: f64 = 0.01;
    /// Most buckets kept (the lowest are folded together past it).
    pub const MAX_BINS: usize = 2048;
    /// Values at or below this count as zero.
    pub const MIN_VALUE: f64 = 1e-9;

    /// An empty sketch with relative accuracy `alpha` (clamped to
    /// 0.0001..=0.5).
    pub fn new(alpha: f64) -> Self {
        let alpha = if alpha.is_finite() {
            alpha.clamp(0.0001, 0.5)
        } else {
            Self::DEFAULT_ALPHA
        };
        Self {
            alpha,
            count: 0,
            zero: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            bins: Bins::default(),
        }
    }

    fn gamma(&self) -> f64 {
        (1.0 + self.alpha) / (1.0 - self.alpha)
    }

    /// `gamma().ln()`, computed once for the default accuracy (every
    /// insert needs it).
    fn ln_gamma(&self) -> f64 {
        static DEFAULT: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        if self.alpha == Self::DEFAULT_ALPHA {
            *DEFAULT.get_or_init(|| self.gamma().ln())
        } else {
            self.gamma().ln()
        }
    }

    /// The relative accuracy.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Adds one value (negative and non-finite values are ignored).
    pub fn insert(&mut self, x: f64) {
        self.insert_n(x, 1);
    }

    fn insert_n(&mut self, x: f64, n: u64) {
        if !x.is_finite() || x < 0.0 || n == 0 {
            return;
        }
        self.count += n;
        self.sum += x * n as f64;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        if x <= Self::MIN_VALUE {
            self.zero += n;
        } else {
            let i = (x.ln() / self.ln_gamma()).ceil();
            let i = i.clamp(i32::MIN as f64, i32::MAX as f64) as i32;
            self.bins.add(i, n, Self::MAX_BINS);
        }
    }

    /// Merges another sketch. With the same `alpha` this is exact; with a
    /// different one, `other`'s buckets are re-inserted at their midpoints
    /// (error of both adds up).
    pub fn merge(&mut self, other: &QuantileSketch) {
        if other.count == 0 {
            return;
        }
        if (other.alpha - self.alpha).abs() > f64::EPSILON {
            let g = other.gamma();
            if other.zero > 0 {
                self.insert_n(0.0, other.zero);
            }
            for (i, c) in other.bins.iter() {
                self.insert_n(2.0 * g.powi(i) / (g + 1.0), c);
            }
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
            return;
        }
        self.count += other.count;
        self.zero += other.zero;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        for (i, c) in other.bins.iter() {
            self.bins.add(i, c, Self::MAX_BINS);
        }
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values added.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Largest value added, if any.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The value at quantile `q` (0..=1): the value of rank
    /// `floor(q · (count − 1))` within relative error `alpha`. `None` when
    /// empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !q.is_finite() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        // The extremes are kept exactly.
        if rank == 0 {
            return Some(self.min);
        }
        if rank + 1 >= self.count {
            return Some(self.max);
        }
        if rank < self.zero {
            return Some(self.min.max(0.0));
        }
        let g = self.gamma();
        let mut seen = self.zero;
        for (i, c) in self.bins.iter() {
            seen += c;
            if seen > rank {
                let v = 2.0 * g.powi(i) / (g + 1.0);
                // max/min rather than clamp: never panics, even on a
                // sketch deserialized from a damaged store.
                return Some(v.max(self.min).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `insert_n` leaves the summary exactly as the same inserts one at a
    /// time, when the key is counted, when there is room, and when the
    /// summary is full and the key must push others out.
    #[test]
    fn insert_n_is_n_inserts() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for capacity in [1, 3, 8] {
            let (mut one, mut runs) = (TopK::new(capacity), TopK::new(capacity));
            for _ in 0..2_000 {
                let key = format!("k{}", next() % 12);
                let n = next() % 6;
                for _ in 0..n {
                    one.insert(&key);
                }
                runs.insert_n(&key, n);
                assert_eq!(one, runs);
            }
        }
    }

    /// A small deterministic generator (xorshift64*), so tests need no
    /// extra crate and always see the same stream.
    pub(crate) struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Self {
            Self(seed.max(1))
        }
        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform in [0, 1).
        pub fn f64(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn zipf_stream(n: usize, keys: usize, seed: u64) -> Vec<String> {
        // Zipf(s = 1.1) by inverse CDF over `keys` ranks.
        let weights: Vec<f64> = (1..=keys).map(|r| 1.0 / (r as f64).powf(1.1)).collect();
        let total: f64 = weights.iter().sum();
        let mut cdf = Vec::with_capacity(keys);
        let mut acc = 0.0;
        for w in &weights {
            acc += w / total;
            cdf.push(acc);
        }
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| {
                let u = rng.f64();
                let r = cdf.partition_point(|&c| c < u).min(keys - 1);
                format!("/page/{r}")
            })
            .collect()
    }

    fn exact(stream: &[String]) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for s in stream {
            *m.entry(s.clone()).or_insert(0) += 1;
        }
        m
    }

    fn check_topk(s: &TopK, truth: &BTreeMap<String, u64>) {
        let n: u64 = truth.values().sum();
        assert_eq!(s.total(), n);
        let bound = s.error_bound();
        assert!(bound <= n / (s.capacity as u64 + 1), "{bound} > n/(k+1)");
        for (k, &c) in truth {
            let e = s.estimate(k);
            assert!(e <= c, "{k}: estimate {e} above true {c}");
            assert!(c - e <= bound, "{k}: true {c}, estimate {e}, bound {bound}");
            if c > n / (s.capacity as u64 + 1) {
                assert!(e > 0, "{k} (count {c}) is frequent but missing");
            }
        }
    }

    #[test]
    fn topk_within_bound_on_zipf_and_uniform() {
        let zipf = zipf_stream(50_000, 5_000, 7);
        let mut s = TopK::new(64);
        zipf.iter().for_each(|k| s.insert(k));
        check_topk(&s, &exact(&zipf));
        // The true top 5 of a Zipf stream are found, in order.
        let truth = exact(&zipf);
        let mut true_top: Vec<_> = truth.iter().collect();
        true_top.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = s.top(5).into_iter().map(|(k, _)| k).collect();
        let expect: Vec<String> = true_top[..5].iter().map(|(k, _)| (*k).clone()).collect();
        assert_eq!(top, expect);

        let mut rng = Rng::new(3);
        let uniform: Vec<String> = (0..20_000)
            .map(|_| format!("k{}", rng.next_u64() % 1000))
            .collect();
        let mut u = TopK::new(32);
        uniform.iter().for_each(|k| u.insert(k));
        check_topk(&u, &exact(&uniform));
    }

    #[test]
    fn topk_merge_keeps_bound() {
        let a = zipf_stream(30_000, 2_000, 11);
        let b = zipf_stream(20_000, 2_000, 12);
        let (mut sa, mut sb) = (TopK::new(48), TopK::new(48));
        a.iter().for_each(|k| sa.insert(k));
        b.iter().for_each(|k| sb.insert(k));
        sa.merge(&sb);
        let mut all = a.clone();
        all.extend(b);
        check_topk(&sa, &exact(&all));
        assert!(sa.counters.len() <= 48);
        // Serde round trip keeps everything.
        let json = serde_json::to_string(&sa).unwrap();
        assert_eq!(serde_json::from_str::<TopK>(&json).unwrap(), sa);
    }

    #[test]
    fn topk_small_inputs_are_exact_and_keys_are_cut() {
        let mut s = TopK::new(4);
        for k in ["/a", "/b", "/a", "/c", "/a", "/b"] {
            s.insert(k);
        }
        assert_eq!(
            s.top(10),
            vec![("/a".into(), 3), ("/b".into(), 2), ("/c".into(), 1)]
        );
        assert_eq!(s.error_bound(), 0);
        let long = "é".repeat(300);
        s.insert(&long);
        assert!(s.top(10).iter().all(|(k, _)| k.len() <= MAX_KEY_BYTES));
        assert_eq!(s.estimate(&long), 1);
    }

    fn true_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn check_quantiles(values: &mut [f64], s: &QuantileSketch) {
        values.sort_by(|a, b| a.total_cmp(b));
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let t = true_quantile(values, q);
            let e = s.quantile(q).unwrap();
            let rel = if t == 0.0 { e } else { (e - t).abs() / t };
            assert!(
                rel <= s.alpha() + 1e-9,
                "q={q}: estimate {e}, true {t}, rel {rel}"
            );
        }
    }

    #[test]
    fn quantiles_within_alpha_on_known_distributions() {
        let mut rng = Rng::new(42);
        // Uniform 0.1 .. 100 ms.
        let mut uniform: Vec<f64> = (0..50_000).map(|_| 0.1 + rng.f64() * 99.9).collect();
        // Exponential, mean 5 ms.
        let mut expo: Vec<f64> = (0..50_000).map(|_| -5.0 * (1.0 - rng.f64()).ln()).collect();
        // Log-normal-ish heavy tail: e^(N(0, 2)) via Box–Muller.
        let mut heavy: Vec<f64> = (0..50_000)
            .map(|_| {
                let (u1, u2) = (1.0 - rng.f64(), rng.f64());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (2.0 * z).exp()
            })
            .collect();
        for values in [&mut uniform, &mut expo, &mut heavy] {
            let mut s = QuantileSketch::default();
            values.iter().for_each(|&v| s.insert(v));
            assert_eq!(s.count(), values.len() as u64);
            check_quantiles(values, &s);
            assert!(s.bins.span() < 1300);
        }
    }

    #[test]
    fn quantile_merge_is_exact() {
        let mut rng = Rng::new(5);
        let a: Vec<f64> = (0..10_000).map(|_| rng.f64() * 50.0).collect();
        let b: Vec<f64> = (0..7_000).map(|_| 10.0 + rng.f64() * 500.0).collect();
        let (mut sa, mut sb, mut all) = (
            QuantileSketch::default(),
            QuantileSketch::default(),
            QuantileSketch::default(),
        );
        a.iter().for_each(|&v| sa.insert(v));
        b.iter().for_each(|&v| sb.insert(v));
        a.iter().chain(&b).for_each(|&v| all.insert(v));
        sa.merge(&sb);
        assert_eq!(sa.bins, all.bins);
        assert_eq!(sa.count(), all.count());
        for q in [0.1, 0.5, 0.9, 0.99] {
            assert_eq!(sa.quantile(q), all.quantile(q));
        }
        let mut combined: Vec<f64> = a.into_iter().chain(b).collect();
        check_quantiles(&mut combined, &sa);
        let json = serde_json::to_string(&sa).unwrap();
        let back: QuantileSketch = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bins, sa.bins);
        assert_eq!(back.quantile(0.5), sa.quantile(0.5));
    }

    #[test]
    fn an_empty_sketch_survives_json() {
        // Its min and max are infinite, which JSON cannot hold: serde_json
        // writes them as null. A bucket with no function invocations has
        // such a sketch, and the store keeps buckets as JSON.
        let empty = QuantileSketch::default();
        let json = serde_json::to_string(&empty).unwrap();
        let back: QuantileSketch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, empty);
        // Merged after the round trip, it still takes the other's extremes.
        let mut one = QuantileSketch::default();
        one.insert(3.0);
        let mut merged = back;
        merged.merge(&one);
        assert_eq!(merged.quantile(0.0), one.quantile(0.0));
        assert_eq!(merged.max(), Some(3.0));
    }

    #[test]
    fn quantile_edge_cases() {
        let mut s = QuantileSketch::default();
        assert_eq!(s.quantile(0.5), None);
        for v in [f64::NAN, -1.0, f64::INFINITY] {
            s.insert(v);
        }
        assert_eq!(s.count(), 0);
        s.insert(0.0);
        s.insert(0.0);
        s.insert(8.0);
        assert_eq!(s.quantile(0.0), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(8.0));
        // Far more distinct magnitudes than MAX_BINS: memory stays bounded
        // and the top stays accurate.
        let mut wide = QuantileSketch::new(0.0001);
        for e in 0..60_000 {
            wide.insert(1e-6 * 1.0005f64.powi(e));
        }
        assert!(wide.bins.span() <= QuantileSketch::MAX_BINS);
        let top = 1e-6 * 1.0005f64.powi(59_999);
        let est = wide.quantile(1.0).unwrap();
        assert!((est - top).abs() / top <= 0.0001 + 1e-9);
    }

    #[test]
    fn bins_stay_within_the_cap_both_ways() {
        let mut b = Bins::default();
        b.add(10, 1, 4);
        b.add(12, 2, 4);
        assert_eq!(b.iter().collect::<Vec<_>>(), [(10, 1), (12, 2)]);
        // Upwards past the cap: 10 folds into 11, the new lowest.
        b.add(14, 3, 4);
        assert_eq!(b.iter().collect::<Vec<_>>(), [(11, 1), (12, 2), (14, 3)]);
        assert_eq!(b.span(), 4);
        // Downwards past the cap: counted in the lowest bucket that fits.
        b.add(-1000, 5, 4);
        assert_eq!(b.iter().collect::<Vec<_>>(), [(11, 6), (12, 2), (14, 3)]);
        // Far upwards: everything folds into one bucket below the new one.
        b.add(i32::MAX, 1, 4);
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            [(i32::MAX - 3, 11), (i32::MAX, 1)]
        );
        b.add(i32::MIN, 1, 4);
        assert_eq!(b.iter().map(|(_, c)| c).sum::<u64>(), 13);
        assert!(b.span() <= 4);
    }

    #[test]
    fn damaged_bins_fold_instead_of_allocating() {
        let json = format!(
            r#"{{"alpha":0.01,"count":3,"zero":0,"min":1.0,"max":2.0,"sum":3.0,"bins":{{"{}":1,"0":0,"{}":2}}}}"#,
            i32::MIN,
            i32::MAX
        );
        let s: QuantileSketch = serde_json::from_str(&json).unwrap();
        assert!(s.bins.span() <= QuantileSketch::MAX_BINS);
        assert_eq!(s.bins.iter().map(|(_, c)| c).sum::<u64>(), 3);
        // Stored as before: a map of the non-zero buckets. The lowest, far
        // below the cap, is counted in the lowest bucket the cap keeps.
        let back = serde_json::to_value(&s).unwrap();
        let bins = back["bins"].as_object().unwrap();
        assert_eq!(bins.len(), 2);
        let lowest = i32::MAX - (QuantileSketch::MAX_BINS as i32 - 1);
        assert_eq!(bins[&lowest.to_string()], 1);
        assert_eq!(bins[&i32::MAX.to_string()], 2);
    }
}
