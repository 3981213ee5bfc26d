//! A fixed-size log-linear latency histogram.
//!
//! Recording is an index computation and an increment, so it can sit on the receive path of
//! millions of messages a second; memory is the same whatever the run length. Each power of
//! two is split into 64 buckets, so a reported percentile is within 1.6 % of the true value.

use std::time::Duration;

/// Sub-buckets per power of two (the precision: 1 / SUB).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Highest power of two tracked; 2^40 ns is about 18 minutes, longer than any run.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS + 1) as usize * SUB;

/// Counts of durations, in nanoseconds, by log-linear bucket.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max_ns: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max_ns", &self.max_ns)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max_ns: 0,
        }
    }
}

fn index_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = (63 - ns.leading_zeros()).min(MAX_EXP);
    let ns = ns.min((1u64 << (MAX_EXP + 1)) - 1);
    let sub = (ns >> (exp - SUB_BITS)) as usize & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + sub
}

/// The midpoint of a bucket, in nanoseconds.
fn value_of(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let exp = (index - SUB) / SUB + SUB_BITS as usize;
    let sub = ((index - SUB) % SUB) as u64;
    let shift = exp - SUB_BITS as usize;
    let low = (SUB as u64 + sub) << shift;
    low + ((1u64 << shift) >> 1)
}

impl Histogram {
    /// Counts one duration.
    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.record_ns(ns);
    }

    /// Counts one duration given in nanoseconds.
    pub(crate) fn record_ns(&mut self, ns: u64) {
        self.counts[index_of(ns)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds every count of `other` to this histogram.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// How many durations were recorded.
    pub(crate) fn len(&self) -> u64 {
        self.total
    }

    /// The duration at quantile `q` (0.0..=1.0), or `None` when nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(value_of(i).min(self.max_ns)));
            }
        }
        Some(Duration::from_nanos(self.max_ns))
    }

    /// The quantile in microseconds, as a JSON-friendly float.
    pub(crate) fn quantile_us(&self, q: f64) -> Option<f64> {
        self.quantile(q).map(|d| d.as_nanos() as f64 / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_within_precision() {
        let mut last = 0;
        for ns in (0..5_000_000u64)
            .step_by(97)
            .chain([1 << 30, (1 << 40) - 1])
        {
            let i = index_of(ns);
            assert!(i >= last || ns < 64, "index went down at {ns}");
            last = i;
            let v = value_of(i);
            let err = v.abs_diff(ns) as f64 / ns.max(1) as f64;
            assert!(err <= 1.0 / 64.0, "{ns} -> bucket {i} value {v}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.len(), 1000);
        let p50 = h.quantile_us(0.5).unwrap();
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((p50 - 500.0).abs() < 10.0, "p50 {p50}");
        assert!((p99 - 990.0).abs() < 20.0, "p99 {p99}");
        assert_eq!(h.quantile(1.0), Some(Duration::from_micros(1000)));
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record_ns(100);
        b.record_ns(1_000_000);
        a.merge(&b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.quantile(1.0), Some(Duration::from_micros(1000)));
        assert!(Histogram::default().quantile(0.5).is_none());
    }
}
