//! [`AppState`]: what every handler can reach, built once at start-up.

use std::sync::Arc;

use watchgrid_store::Database;

use crate::config::Config;
use crate::health::{HealthRegistry, MigrationState};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub health: Arc<HealthRegistry>,
    pub metrics: Arc<Metrics>,
    pub migrations: MigrationState,
}

impl AppState {
    /// Wire the subsystems together and register their health checks.
    pub fn new(config: Arc<Config>, db: Database) -> Self {
        let mut health = HealthRegistry::default();
        let probe = db.clone();
        health.register("db", move || {
            let db = probe.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        });
        Self {
            config,
            db,
            health: Arc::new(health),
            metrics: Arc::new(Metrics::new()),
            migrations: MigrationState::default(),
        }
    }
}
