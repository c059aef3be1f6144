//! When the next heartbeat goes out: the server's interval with ±10% jitter after a success;
//! exponential backoff with full jitter (1 s doubling to a 5 min cap) after a failure; a slow
//! fixed retry while the server refuses the credential. Randomness is injected, so the bounds
//! are tested deterministically.

use std::time::Duration;

use rand::Rng;

/// The backoff ceiling after the first failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// The largest backoff ceiling.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The retry interval while the server refuses the device credential (HTTP 401), before jitter.
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);
/// The fraction of jitter around a regular interval.
pub const JITTER: f64 = 0.10;
/// The shortest interval the agent honours, whatever the server says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What the last attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The heartbeat was acknowledged; the server wants one every `interval`.
    Success { interval: Duration },
    /// The heartbeat failed; this many times in a row now (at least 1).
    Failure { consecutive: u32 },
    /// The server refused the credential (HTTP 401).
    Refused,
}

/// The delay before the next attempt. `rng` supplies the jitter.
pub fn next_delay(outcome: Outcome, rng: &mut impl Rng) -> Duration {
    let unit: f64 = rng.gen();
    delay_for(outcome, unit)
}

/// [`next_delay`] with the random number given: `unit` in `[0, 1)`.
pub fn delay_for(outcome: Outcome, unit: f64) -> Duration {
    let unit = unit.clamp(0.0, 1.0);
    match outcome {
        Outcome::Success { interval } => jittered(interval.max(MIN_INTERVAL), unit),
        Outcome::Failure { consecutive } => backoff_ceiling(consecutive).mul_f64(unit),
        Outcome::Refused => jittered(REFUSED_RETRY, unit),
    }
}

/// `interval` scaled into `[0.9, 1.1)` of itself.
fn jittered(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
}

/// `min(cap, start * 2^(consecutive - 1))`: 1 s, 2 s, 4 s, ... 256 s, 300 s, 300 s, ...
pub fn backoff_ceiling(consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(31);
    BACKOFF_START
        .checked_mul(1_u32 << doublings)
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP)
}

/// The server's interval, as a duration the agent honours.
pub fn server_interval(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs)).max(MIN_INTERVAL)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn check(outcome: Outcome, unit: f64, expected: Duration) {
        assert_eq!(delay_for(outcome, unit), expected, "{outcome:?} at {unit}");
    }

    #[test]
    fn exact_delays() {
        let ok = |secs| Outcome::Success { interval: S(secs) };
        let failed = |consecutive| Outcome::Failure { consecutive };
        for (outcome, unit, expected) in [
            (ok(60), 0.0, S(54)),
            (ok(60), 0.5, S(60)),
            (ok(60), 1.0, S(66)),
            (ok(0), 0.5, S(1)),
            (failed(1), 0.0, S(0)),
            (failed(1), 0.5, MS(500)),
            (failed(1), 1.0, S(1)),
            (failed(2), 1.0, S(2)),
            (failed(3), 1.0, S(4)),
            (failed(9), 1.0, S(256)),
            (failed(10), 1.0, S(300)),
            (failed(10), 0.5, S(150)),
            (failed(u32::MAX), 1.0, S(300)),
            (Outcome::Refused, 0.0, S(270)),
            (Outcome::Refused, 1.0, S(330)),
        ] {
            check(outcome, unit, expected);
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let ceilings: Vec<u64> = (0..=12).map(|n| backoff_ceiling(n).as_secs()).collect();
        assert_eq!(
            ceilings,
            vec![1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
        assert_eq!(backoff_ceiling(40), BACKOFF_CAP);
    }

    /// Many seeded draws stay inside the documented bounds and actually spread over them.
    #[test]
    fn random_delays_stay_in_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        let cases = [
            (Outcome::Success { interval: S(60) }, S(54), S(66)),
            (Outcome::Success { interval: S(5) }, MS(4500), MS(5500)),
            (Outcome::Failure { consecutive: 1 }, S(0), S(1)),
            (Outcome::Failure { consecutive: 4 }, S(0), S(8)),
            (Outcome::Failure { consecutive: 30 }, S(0), S(300)),
            (Outcome::Refused, S(270), S(330)),
        ];
        for (outcome, low, high) in cases {
            let draws: Vec<Duration> = (0..2000).map(|_| next_delay(outcome, &mut rng)).collect();
            let min = draws.iter().min().copied().unwrap_or_default();
            let max = draws.iter().max().copied().unwrap_or_default();
            assert!(min >= low && max <= high, "{outcome:?}: {min:?}..{max:?}");
            // The draws cover most of the range: the jitter is real.
            let spread = (max - min).as_secs_f64() / (high - low).as_secs_f64();
            assert!(spread > 0.9, "{outcome:?}: spread {spread}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let schedule = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..=8)
                .map(|n| next_delay(Outcome::Failure { consecutive: n }, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(schedule(1), schedule(1));
        assert_ne!(schedule(1), schedule(2));
    }

    #[test]
    fn server_intervals() {
        assert_eq!(server_interval(0), S(1));
        assert_eq!(server_interval(30), S(30));
    }
}
