//! Rate limits on unauthenticated endpoints, with `governor`'s GCRA token buckets.
//!
//! Each limiter has a capacity (the burst) that refills at capacity-per-minute. Keyed limiters
//! forget idle keys every minute so memory stays bounded under a spray of addresses.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::metrics::Metrics;

/// The limiters, named as the `limiter` label of `watchgrid_rate_limit_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limiter {
    /// Login attempts per client address.
    Login,
    /// Login attempts per account name, whatever the address.
    LoginAccount,
    /// Device registrations, across all clients.
    Registration,
    /// Every other unauthenticated endpoint, per client address.
    Unauthenticated,
}

impl Limiter {
    pub const ALL: [Limiter; 4] = [
        Limiter::Login,
        Limiter::LoginAccount,
        Limiter::Registration,
        Limiter::Unauthenticated,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limiter::Login => "login",
            Limiter::LoginAccount => "login_account",
            Limiter::Registration => "registration",
            Limiter::Unauthenticated => "unauthenticated",
        }
    }
}

/// Capacities (per minute, also the burst) from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacities {
    pub login: NonZeroU32,
    pub registration: NonZeroU32,
    pub unauthenticated: NonZeroU32,
}

#[derive(Debug)]
pub struct RateLimits {
    login: DefaultKeyedRateLimiter<IpAddr>,
    login_account: DefaultKeyedRateLimiter<String>,
    registration: DefaultDirectRateLimiter,
    unauthenticated: DefaultKeyedRateLimiter<IpAddr>,
    metrics: Arc<Metrics>,
}

/// How long until a request would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, at least 1, for the `Retry-After` header.
    pub fn seconds(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

impl RateLimits {
    pub fn new(capacities: Capacities, metrics: Arc<Metrics>) -> Self {
        let quota = |n: NonZeroU32| Quota::per_minute(n).allow_burst(n);
        Self {
            login: RateLimiter::keyed(quota(capacities.login)),
            login_account: RateLimiter::keyed(quota(capacities.login)),
            registration: RateLimiter::direct(quota(capacities.registration)),
            unauthenticated: RateLimiter::keyed(quota(capacities.unauthenticated)),
            metrics,
        }
    }

    /// Take one token from `limiter` for `addr` (ignored by the global registration limiter).
    pub fn check_addr(&self, limiter: Limiter, addr: IpAddr) -> Result<(), RetryAfter> {
        let result = match limiter {
            Limiter::Login => self.login.check_key(&addr),
            Limiter::Unauthenticated => self.unauthenticated.check_key(&addr),
            Limiter::Registration => self.registration.check(),
            Limiter::LoginAccount => Ok(()),
        };
        self.outcome(limiter, result)
    }

    /// Take one token from the per-account login limiter.
    pub fn check_account(&self, account: &str) -> Result<(), RetryAfter> {
        let result = self.login_account.check_key(&account.to_lowercase());
        self.outcome(Limiter::LoginAccount, result)
    }

    fn outcome(
        &self,
        limiter: Limiter,
        result: Result<(), governor::NotUntil<governor::clock::QuantaInstant>>,
    ) -> Result<(), RetryAfter> {
        result.map_err(|not_until| {
            self.metrics.rate_limit_rejected(limiter);
            RetryAfter(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// Drop the state of keys that are back to a full bucket.
    pub fn forget_idle(&self) {
        self.login.retain_recent();
        self.login_account.retain_recent();
        self.unauthenticated.retain_recent();
        self.login.shrink_to_fit();
        self.login_account.shrink_to_fit();
        self.unauthenticated.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let metrics = Arc::new(Metrics::new());
        let five = NonZeroU32::new(5).unwrap();
        let limits = RateLimits::new(
            Capacities {
                login: five,
                registration: five,
                unauthenticated: five,
            },
            metrics.clone(),
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..5 {
            limits.check_addr(Limiter::Login, a).unwrap();
        }
        let retry = limits.check_addr(Limiter::Login, a).unwrap_err();
        assert!((1..=12).contains(&retry.seconds()), "{retry:?}");
        // Other addresses and other limiters are unaffected.
        limits.check_addr(Limiter::Login, b).unwrap();
        limits.check_addr(Limiter::Unauthenticated, a).unwrap();
        let text = metrics.render(watchgrid_store::PoolStats { open: 0, in_use: 0 });
        assert!(
            text.contains(r#"watchgrid_rate_limit_rejections_total{limiter="login"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"watchgrid_rate_limit_rejections_total{limiter="registration"} 0"#));
    }

    #[test]
    fn account_limits_ignore_case() {
        let one = NonZeroU32::new(1).unwrap();
        let limits = RateLimits::new(
            Capacities {
                login: one,
                registration: one,
                unauthenticated: one,
            },
            Arc::new(Metrics::new()),
        );
        limits.check_account("Alice").unwrap();
        assert!(limits.check_account("alice").is_err());
    }
}
