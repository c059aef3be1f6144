//! The server's Prometheus metrics, exposed at `/metrics` in the text format.
//!
//! Label values are bounded: `route` is the matched route template (or `unmatched`), never the
//! raw path, so a client cannot grow the series count by requesting random URLs.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use watchgrid_store::PoolStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

/// Every series the server exports. Built once and shared through the application state.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    db_open: Gauge<i64, AtomicI64>,
    db_in_use: Gauge<i64, AtomicI64>,
}

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
        Self {
            registry,
            http_requests,
            http_duration,
            db_open,
            db_in_use,
        }
    }

    /// Render the text exposition, sampling the pool gauges first.
    pub fn render(&self, pool: PoolStats) -> String {
        self.db_open.set(i64::from(pool.open));
        self.db_in_use.set(i64::from(pool.in_use));
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "encoding metrics failed");
        }
        out
    }
}
