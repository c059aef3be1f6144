//! Latency statistics: nearest-rank percentiles over every sample of the measured window (no
//! histogram buckets, so no bucket error), and the per-second throughput series.

use serde::Serialize;

/// The nearest-rank `p`-th percentile (`0 < p <= 100`) of `sorted` (ascending): the smallest
/// sample such that at least `p` percent of the samples are less than or equal to it. `None`
/// for no samples.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // The rank is 1-based; a product like 0.99 * 100 can land a hair above the integer, so
    // round to a millionth before taking the ceiling.
    let exact = (p / 100.0 * sorted.len() as f64 * 1e6).round() / 1e6;
    let rank = (exact.ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Summarise latencies given in microseconds (sorted in place).
    pub fn from_micros(samples: &mut [u32]) -> Option<Latency> {
        samples.sort_unstable();
        let ms = |p: f64| percentile(samples, p).map(|us| f64::from(us) / 1000.0);
        let sum: u64 = samples.iter().map(|&us| u64::from(us)).sum();
        Some(Latency {
            p50_ms: ms(50.0)?,
            p90_ms: ms(90.0)?,
            p99_ms: ms(99.0)?,
            p999_ms: ms(99.9)?,
            max_ms: f64::from(*samples.last()?) / 1000.0,
            mean_ms: sum as f64 / samples.len() as f64 / 1000.0,
        })
    }
}

/// Completions per whole second of the window: the lowest and highest, to show whether the
/// rate was sustained or came in bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PerSecond {
    pub min: u64,
    pub max: u64,
}

impl PerSecond {
    /// From per-second counters; the last, partial second is left out when there are others.
    pub fn from_buckets(buckets: &[u64], window_secs: f64) -> Option<PerSecond> {
        let whole = (window_secs.floor() as usize).min(buckets.len());
        let full = if whole == 0 {
            buckets
        } else {
            &buckets[..whole]
        };
        Some(PerSecond {
            min: *full.iter().min()?,
            max: *full.iter().max()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 99.9), Some(100));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile(&samples, 1.0), Some(1));
        assert_eq!(percentile(&samples, 1.5), Some(2));
        // 1000 samples: p99 is the 990th.
        let samples: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 99.0), Some(990));
        assert_eq!(percentile(&samples, 99.9), Some(999));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn latency_summary_is_in_milliseconds() {
        let mut samples = vec![3000, 1000, 2000, 4000];
        let summary = Latency::from_micros(&mut samples).unwrap();
        assert_eq!(summary.p50_ms, 2.0);
        assert_eq!(summary.p99_ms, 4.0);
        assert_eq!(summary.max_ms, 4.0);
        assert_eq!(summary.mean_ms, 2.5);
        assert_eq!(Latency::from_micros(&mut []), None);
    }

    #[test]
    fn per_second_ignores_the_partial_last_second() {
        let buckets = [100, 120, 90, 5];
        assert_eq!(
            PerSecond::from_buckets(&buckets, 3.0),
            Some(PerSecond { min: 90, max: 120 })
        );
        assert_eq!(
            PerSecond::from_buckets(&[5], 0.5),
            Some(PerSecond { min: 5, max: 5 })
        );
        assert_eq!(PerSecond::from_buckets(&[], 3.0), None);
    }
}
