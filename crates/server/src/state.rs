//! [`AppState`]: what every handler can reach, built once at start-up.

use std::sync::Arc;

use anyhow::Context;
use watchgrid_store::Database;

use crate::auth::password::{PasswordHasher, PasswordPolicy};
use crate::auth::tokens::JwtKeys;
use crate::config::{Config, WgBackendChoice};
use crate::fleet::{hub, DeviceIndex, Fleet, Heartbeats, Hub};
use crate::health::{HealthRegistry, MigrationState, MigrationStatus};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::ssh::SshAuthority;

/// Handlers and middleware clone the state several times per request, so it is one `Arc`:
/// cloning it is one atomic increment (it used to be ~11 plus two allocations, ~13 % of the
/// server's CPU per heartbeat; docs/benchmarks.md). Fields are reached through `Deref`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Database,
    pub health: Arc<HealthRegistry>,
    pub metrics: Arc<Metrics>,
    pub migrations: MigrationState,
    pub jwt: JwtKeys,
    pub limits: Arc<RateLimits>,
    pub password_policy: PasswordPolicy,
    pub hasher: PasswordHasher,
    pub fleet: Arc<Fleet>,
    pub ssh: Arc<SshAuthority>,
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
        let fleet_config = config.fleet.clone();
        // A missing file is settled once the device index is loaded (`Hub::settle_key`).
        let private_key = hub::load_key(&fleet_config.wg_config).map_err(|e| {
            anyhow::anyhow!("the server's WireGuard key (WATCHGRID_WG_CONFIG): {e}")
        })?;
        let hub = Arc::new(Hub::new(fleet_config.clone(), private_key, metrics.clone()));
        if fleet_config.backend != WgBackendChoice::None || hub.key_was_missing() {
            let probe = hub.clone();
            health.register("wireguard", move || {
                let hub = probe.clone();
                async move { hub.check() }
            });
        }
        let dns = Arc::new(crate::dns::MagicDnsService::new(
            &config.dns,
            &fleet_config,
        )?);
        if dns.checked() {
            let probe = dns.clone();
            health.register("dns", move || {
                let dns = probe.clone();
                async move { dns.check() }
            });
        }
        // The CA files are checked once the schema exists; until then readiness reports the
        // pending migrations.
        let migrations = MigrationState::default();
        let ssh = Arc::new(SshAuthority::new(config.ssh.ca_dir.clone()));
        let (probe, probe_db, probe_migrations) = (ssh.clone(), db.clone(), migrations.clone());
        health.register("ssh_ca", move || {
            let (ssh, db, migrations) = (probe.clone(), probe_db.clone(), probe_migrations.clone());
            async move {
                if migrations.get() != MigrationStatus::Ok {
                    return Ok(());
                }
                ssh.health(&db).await
            }
        });
        let fleet = Arc::new(Fleet {
            index: DeviceIndex::with_observer(fleet_config.overlay, dns.clone()),
            dns,
            heartbeats: Heartbeats::default(),
            hub,
            config: fleet_config,
        });
        Ok(Self(Arc::new(Shared {
            config,
            db,
            health: Arc::new(health),
            metrics,
            migrations,
            jwt,
            limits,
            password_policy: PasswordPolicy::new(),
            hasher: PasswordHasher::new(),
            fleet,
            ssh,
        })))
    }
}
