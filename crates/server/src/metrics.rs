//! The server's Prometheus metrics, exposed at `/metrics` in the text format.
//!
//! Label values are bounded: `route` is the matched route template (or `unmatched`), never the
//! raw path, and `method` is one of [`HTTP_METHODS`] or `other`, never the raw method, so a
//! client cannot grow the series count by requesting random URLs or inventing methods. Every
//! other label takes its values from a fixed list of `&'static str`.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use watchgrid_dns::QueryCounters;

use crate::ratelimit::limiter::Limiter;
use watchgrid_store::PoolStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

/// The methods that get their own `method` label value; any other is [`OTHER_METHOD`].
pub const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

/// The `method` label of every method outside [`HTTP_METHODS`] (hyper accepts any token).
pub const OTHER_METHOD: &str = "other";

/// The `method` label for `method`: bounded, whatever the client sent.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    HTTP_METHODS
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or(OTHER_METHOD)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimiterLabels {
    pub limiter: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Why a login failed: a small fixed set, so the label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    UnknownUser,
    BadPassword,
    Disabled,
    RateLimited,
    InvalidRequest,
}

impl LoginFailure {
    pub const ALL: [LoginFailure; 5] = [
        LoginFailure::UnknownUser,
        LoginFailure::BadPassword,
        LoginFailure::Disabled,
        LoginFailure::RateLimited,
        LoginFailure::InvalidRequest,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LoginFailure::UnknownUser => "unknown_user",
            LoginFailure::BadPassword => "bad_password",
            LoginFailure::Disabled => "disabled",
            LoginFailure::RateLimited => "rate_limited",
            LoginFailure::InvalidRequest => "invalid_request",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: &'static str,
}

/// Every series the server exports. Built once and shared through the application state.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    db_open: Gauge<i64, AtomicI64>,
    db_in_use: Gauge<i64, AtomicI64>,
    rate_limit_rejections: Family<LimiterLabels, Counter>,
    login_failures: Family<ReasonLabels, Counter>,
    wireguard_peers: Gauge<i64, AtomicI64>,
    pub agent_heartbeats: Counter,
    registrations: Family<ResultLabels, Counter>,
    /// Magic DNS counts here (atomics, no lock on the query path); copied into the Prometheus
    /// counters at each scrape.
    pub dns: Arc<QueryCounters>,
    dns_queries: Family<RcodeLabels, Counter>,
    dns_forwarded: Counter,
    ssh_certificates: Family<KindLabels, Counter>,
    ssh_relays: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RcodeLabels {
    pub rcode: &'static str,
}

/// The `limiter` label of Magic DNS's per-source query limit (`WATCHGRID_DNS_RATE_LIMIT`),
/// counted by the DNS handler and mirrored here.
pub const DNS_LIMITER: &str = "dns";

/// The `rcode` label values of `watchgrid_dns_queries_total`.
pub const DNS_RCODES: [&str; 7] = [
    "noerror", "nxdomain", "refused", "servfail", "formerr", "notimp", "other",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Outcomes of `POST /api/agent/register`, the `result` label.
pub const REGISTRATION_RESULTS: [&str; 9] = [
    "ok",
    "invalid_token",
    "expired_token",
    "revoked_token",
    "used_up_token",
    "addresses_exhausted",
    "device_limit",
    "rate_limited",
    "invalid_request",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "watchgrid_http_requests",
            "HTTP requests served, by matched route, method and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms .. ~16 s
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "watchgrid_http_request_duration_seconds",
            "HTTP request latency, by matched route and method",
            http_duration.clone(),
        );
        let db_open = Gauge::default();
        registry.register(
            "watchgrid_db_open_connections",
            "Connections the database pool holds open",
            db_open.clone(),
        );
        let db_in_use = Gauge::default();
        registry.register(
            "watchgrid_db_in_use_connections",
            "Pooled database connections currently checked out",
            db_in_use.clone(),
        );
        let rate_limit_rejections = Family::<LimiterLabels, Counter>::default();
        registry.register(
            "watchgrid_rate_limit_rejections",
            "Requests refused by a rate limiter, by limiter",
            rate_limit_rejections.clone(),
        );
        let login_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "watchgrid_login_failures",
            "Failed login attempts, by reason",
            login_failures.clone(),
        );
        let wireguard_peers = Gauge::default();
        registry.register(
            "watchgrid_wireguard_peers",
            "Peers on the server's WireGuard interface",
            wireguard_peers.clone(),
        );
        let agent_heartbeats = Counter::default();
        registry.register(
            "watchgrid_agent_heartbeats",
            "Heartbeats received from agents",
            agent_heartbeats.clone(),
        );
        let registrations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "watchgrid_registrations",
            "Device registrations, by result",
            registrations.clone(),
        );
        let dns_queries = Family::<RcodeLabels, Counter>::default();
        registry.register(
            "watchgrid_dns_queries",
            "Magic DNS responses sent, by response code",
            dns_queries.clone(),
        );
        for rcode in DNS_RCODES {
            let _ = dns_queries.get_or_create(&RcodeLabels { rcode });
        }
        let dns_forwarded = Counter::default();
        registry.register(
            "watchgrid_dns_forwarded",
            "Magic DNS queries for names outside the domain handed to the forwarder (cache or upstream)",
            dns_forwarded.clone(),
        );
        let ssh_certificates = Family::<KindLabels, Counter>::default();
        registry.register(
            "watchgrid_ssh_certificates_issued",
            "SSH certificates the tenants' CAs signed, by kind (user, host)",
            ssh_certificates.clone(),
        );
        for kind in ["user", "host"] {
            let _ = ssh_certificates.get_or_create(&KindLabels { kind });
        }
        let ssh_relays = Counter::default();
        registry.register(
            "watchgrid_ssh_relays_opened",
            "SSH relays opened to devices",
            ssh_relays.clone(),
        );
        for result in REGISTRATION_RESULTS {
            let _ = registrations.get_or_create(&ResultLabels { result });
        }
        // Every label value exists from the start, at 0, so rate() and alerts work at once.
        let limiters = Limiter::ALL.map(Limiter::label);
        for limiter in limiters.into_iter().chain([DNS_LIMITER]) {
            let _ = rate_limit_rejections.get_or_create(&LimiterLabels { limiter });
        }
        for reason in LoginFailure::ALL {
            let _ = login_failures.get_or_create(&ReasonLabels {
                reason: reason.label(),
            });
        }
        Self {
            registry,
            http_requests,
            http_duration,
            db_open,
            db_in_use,
            rate_limit_rejections,
            login_failures,
            wireguard_peers,
            agent_heartbeats,
            registrations,
            dns: Arc::new(QueryCounters::default()),
            dns_queries,
            dns_forwarded,
            ssh_certificates,
            ssh_relays,
        }
    }

    /// One certificate signed: `kind` is `user` or `host`.
    pub fn ssh_certificate_issued(&self, kind: &'static str) {
        self.ssh_certificates
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub fn ssh_relay_opened(&self) {
        self.ssh_relays.inc();
    }

    pub fn wireguard_peers_set(&self, peers: i64) {
        self.wireguard_peers.set(peers);
    }

    pub fn wireguard_peers_add(&self, delta: i64) {
        self.wireguard_peers.inc_by(delta);
    }

    /// Count a registration outcome (one of [`REGISTRATION_RESULTS`]).
    pub fn registration(&self, result: &'static str) {
        self.registrations
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn rate_limit_rejected(&self, limiter: Limiter) {
        self.rate_limit_rejections
            .get_or_create(&LimiterLabels {
                limiter: limiter.label(),
            })
            .inc();
    }

    pub fn login_failed(&self, reason: LoginFailure) {
        self.login_failures
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Bring the DNS counters up to the handler's atomics (they only grow).
    fn sync_dns(&self) {
        let s = self.dns.snapshot();
        let values = [
            s.noerror, s.nxdomain, s.refused, s.servfail, s.formerr, s.notimp, s.other,
        ];
        for (rcode, value) in DNS_RCODES.into_iter().zip(values) {
            let counter = self.dns_queries.get_or_create(&RcodeLabels { rcode });
            counter.inc_by(value.saturating_sub(counter.get()));
        }
        self.dns_forwarded
            .inc_by(s.forwarded.saturating_sub(self.dns_forwarded.get()));
        // The DNS handler counts only its own refusals, so this series is theirs alone.
        let limited = self.rate_limit_rejections.get_or_create(&LimiterLabels {
            limiter: DNS_LIMITER,
        });
        limited.inc_by(s.rate_limited.saturating_sub(limited.get()));
    }

    /// Render the text exposition, sampling the pool gauges first.
    pub fn render(&self, pool: PoolStats) -> String {
        self.db_open.set(i64::from(pool.open));
        self.db_in_use.set(i64::from(pool.in_use));
        self.sync_dns();
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "encoding metrics failed");
        }
        out
    }
}
