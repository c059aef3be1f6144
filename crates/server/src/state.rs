//! [`AppState`]: what every handler can reach, built once at start-up.

use std::sync::Arc;

use anyhow::Context;
use watchgrid_store::Database;

use crate::auth::password::{PasswordHasher, PasswordPolicy};
use crate::auth::tokens::JwtKeys;
use crate::config::Config;
use crate::health::{HealthRegistry, MigrationState};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;

#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub health: Arc<HealthRegistry>,
    pub metrics: Arc<Metrics>,
    pub migrations: MigrationState,
    pub jwt: JwtKeys,
    pub limits: Arc<RateLimits>,
    pub password_policy: PasswordPolicy,
    pub hasher: PasswordHasher,
}

impl AppState {
    /// Wire the subsystems together and register their health checks.
    pub fn new(config: Arc<Config>, db: Database) -> anyhow::Result<Self> {
        let jwt_secret = config
            .jwt_secret()
            .context("JWT_SECRET is not set (and was not generated)")?;
        let jwt = JwtKeys::new(jwt_secret.expose());
        let mut health = HealthRegistry::default();
        let probe = db.clone();
        health.register("db", move || {
            let db = probe.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        });
        let metrics = Arc::new(Metrics::new());
        let limits = Arc::new(RateLimits::new(config.rate_limits, metrics.clone()));
        Ok(Self {
            config,
            db,
            health: Arc::new(health),
            metrics,
            migrations: MigrationState::default(),
            jwt,
            limits,
            password_policy: PasswordPolicy::new(),
            hasher: PasswordHasher::new(),
        })
    }
}
