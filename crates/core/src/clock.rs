//! The clock domain logic reads: the system clock in production, a manual one in tests, so
//! that expiry, retention and lease logic is tested by moving time rather than sleeping.

use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Wall-clock time for domain decisions (expiry, retention, timestamps written to rows).
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The clock services hold.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

#[cfg(any(test, feature = "test-util"))]
impl ManualClock {
    /// Starts at `start`.
    pub fn at(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(ManualClock {
            now: std::sync::Mutex::new(start),
        })
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = ManualClock::at(start);
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::days(31));
        assert_eq!(clock.now().to_rfc3339(), "2026-02-01T00:00:00+00:00");
    }

    #[test]
    fn the_system_clock_is_now() {
        let before = Utc::now();
        let now = system().now();
        assert!(now >= before && now <= Utc::now());
    }
}
