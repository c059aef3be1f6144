//! Rate limits on unauthenticated endpoints, with `governor`'s GCRA token buckets.
//!
//! Each limiter has a capacity (the burst) that refills at capacity-per-minute. Keyed limiters
//! forget idle keys every minute so memory stays bounded under a spray of addresses; client
//! addresses are keys as [`client_key`] makes them (IPv6 by its /64).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::metrics::Metrics;

pub mod limiter;
pub use limiter::Limiter;

/// The all-clients registration ceiling is this many times the per-address capacity: high
/// enough that one address (or one token) can never reach it and block everyone else.
pub const REGISTRATION_CEILING_FACTOR: u32 = 20;

/// Capacities (per minute, also the burst) from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacities {
    pub login: NonZeroU32,
    pub registration: NonZeroU32,
    pub unauthenticated: NonZeroU32,
    pub device_creation: NonZeroU32,
}

/// The key of a client address: an IPv6 client is usually given a whole /64, so every
/// address in it is one key (else a single host could rotate through 2^64 buckets).
/// IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        },
    }
}

#[derive(Debug)]
pub struct RateLimits {
    login: DefaultKeyedRateLimiter<IpAddr>,
    login_account: DefaultKeyedRateLimiter<(String, IpAddr)>,
    registration: DefaultKeyedRateLimiter<IpAddr>,
    registration_token: DefaultKeyedRateLimiter<Uuid>,
    registration_global: DefaultDirectRateLimiter,
    device_creation: DefaultKeyedRateLimiter<Uuid>,
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
        let ceiling = NonZeroU32::new(
            capacities
                .registration
                .get()
                .saturating_mul(REGISTRATION_CEILING_FACTOR),
        )
        .unwrap_or(NonZeroU32::MAX);
        Self {
            login: RateLimiter::keyed(quota(capacities.login)),
            login_account: RateLimiter::keyed(quota(capacities.login)),
            registration: RateLimiter::keyed(quota(capacities.registration)),
            registration_token: RateLimiter::keyed(quota(capacities.registration)),
            registration_global: RateLimiter::direct(quota(ceiling)),
            device_creation: RateLimiter::keyed(quota(capacities.device_creation)),
            unauthenticated: RateLimiter::keyed(quota(capacities.unauthenticated)),
            metrics,
        }
    }

    /// Take one token from the address-keyed `limiter` for `addr` (an IPv6 address counts as
    /// its /64). Limiters keyed otherwise have their own methods and pass here.
    pub fn check_addr(&self, limiter: Limiter, addr: IpAddr) -> Result<(), RetryAfter> {
        let key = client_key(addr);
        let result = match limiter {
            Limiter::Login => self.login.check_key(&key),
            Limiter::Unauthenticated => self.unauthenticated.check_key(&key),
            Limiter::Registration => self.registration.check_key(&key),
            Limiter::LoginAccount
            | Limiter::PasswordQueue
            | Limiter::RegistrationToken
            | Limiter::RegistrationGlobal
            | Limiter::DeviceCreation => Ok(()),
        };
        self.outcome(limiter, result)
    }

    /// Take one token from the login limiter of `account` (any case) as tried from `addr`.
    pub fn check_account(&self, account: &str, addr: IpAddr) -> Result<(), RetryAfter> {
        let key = (account.to_lowercase(), client_key(addr));
        let result = self.login_account.check_key(&key);
        self.outcome(Limiter::LoginAccount, result)
    }

    /// Take one token of a registration with onboarding token `token` from the token's own
    /// limiter and from the all-clients ceiling.
    pub fn check_registration(&self, token: Uuid) -> Result<(), RetryAfter> {
        let result = self.registration_token.check_key(&token);
        self.outcome(Limiter::RegistrationToken, result)?;
        let result = self.registration_global.check();
        self.outcome(Limiter::RegistrationGlobal, result)
    }

    /// Take one token of a plain device created in `tenant`.
    pub fn check_device_creation(&self, tenant: Uuid) -> Result<(), RetryAfter> {
        let result = self.device_creation.check_key(&tenant);
        self.outcome(Limiter::DeviceCreation, result)
    }

    /// Count a login shed by the password-hashing queue.
    pub fn shed_password_check(&self) {
        self.metrics.rate_limit_rejected(Limiter::PasswordQueue);
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
        self.registration.retain_recent();
        self.registration_token.retain_recent();
        self.device_creation.retain_recent();
        self.unauthenticated.retain_recent();
        self.login.shrink_to_fit();
        self.login_account.shrink_to_fit();
        self.registration.shrink_to_fit();
        self.registration_token.shrink_to_fit();
        self.device_creation.shrink_to_fit();
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
                device_creation: five,
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
                device_creation: one,
            },
            Arc::new(Metrics::new()),
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        limits.check_account("Alice", a).unwrap();
        assert!(limits.check_account("alice", a).is_err());
        // The same account from another address has its own budget.
        limits.check_account("alice", b).unwrap();
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let check = |addr: &str, expected: &str| {
            let key = client_key(addr.parse().unwrap());
            assert_eq!(key, expected.parse::<IpAddr>().unwrap(), "{addr}");
        };
        check("192.0.2.7", "192.0.2.7");
        check("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::");
        check("2001:db8:1:2::1", "2001:db8:1:2::");
        check("::ffff:192.0.2.7", "192.0.2.7");

        let one = NonZeroU32::new(1).unwrap();
        let limits = RateLimits::new(
            Capacities {
                login: one,
                registration: one,
                unauthenticated: one,
                device_creation: one,
            },
            Arc::new(Metrics::new()),
        );
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limits.check_addr(Limiter::Login, first).unwrap();
        assert!(limits.check_addr(Limiter::Login, same_64).is_err());
        limits.check_addr(Limiter::Login, other_64).unwrap();
    }

    #[test]
    fn one_address_or_token_cannot_reach_the_registration_ceiling() {
        let capacity = NonZeroU32::new(3).unwrap();
        let limits = RateLimits::new(
            Capacities {
                login: capacity,
                registration: capacity,
                unauthenticated: capacity,
                device_creation: capacity,
            },
            Arc::new(Metrics::new()),
        );
        let token = Uuid::new_v4();
        for _ in 0..3 {
            limits.check_registration(token).unwrap();
        }
        assert!(
            limits.check_registration(token).is_err(),
            "the token's own limit"
        );
        // Other tokens share only the ceiling, which is far above one token's share.
        let others = 3 * (REGISTRATION_CEILING_FACTOR - 1);
        for _ in 0..others {
            limits.check_registration(Uuid::new_v4()).unwrap();
        }
        assert!(
            limits.check_registration(Uuid::new_v4()).is_err(),
            "the ceiling"
        );
    }
}
