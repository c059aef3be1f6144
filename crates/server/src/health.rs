//! The health-check registry behind `/healthz` and `/readyz`, and the migration state.
//!
//! Subsystems plug a named check in at start-up (`db` now; `wireguard`, `ssh_ca`, `dns` as they
//! land). Checks run concurrently, each under a deadline, so one hung dependency cannot stall
//! the endpoint: it reports `error: timed out` instead.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use watchgrid_wire::{HealthReport, HealthStatus};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Named health checks.
#[derive(Clone, Default)]
pub struct HealthRegistry {
    checks: Vec<(&'static str, CheckFn)>,
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|(name, _)| *name).collect();
        f.debug_struct("HealthRegistry")
            .field("checks", &names)
            .finish()
    }
}

impl HealthRegistry {
    /// Add a check: `Ok(())` reads `"ok"`, `Err(reason)` reads `"error: reason"`.
    pub fn register<F, Fut>(&mut self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()) as CheckFuture)));
    }

    /// Run every check concurrently; the value of each is `ok` or `error: ...`.
    pub async fn run(&self) -> BTreeMap<String, String> {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, check) in &self.checks {
            let (name, future) = (*name, check());
            tasks.spawn(async move {
                let value = match tokio::time::timeout(CHECK_TIMEOUT, future).await {
                    Ok(Ok(())) => "ok".to_owned(),
                    Ok(Err(reason)) => format!("error: {reason}"),
                    Err(_) => format!("error: timed out after {}s", CHECK_TIMEOUT.as_secs()),
                };
                (name, value)
            });
        }
        let mut results = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, value)) => {
                    results.insert(name.to_owned(), value);
                }
                Err(err) => tracing::error!(error = %err, "health check task failed"),
            }
        }
        // A check whose task panicked must still show up, as failed.
        for (name, _) in &self.checks {
            results
                .entry((*name).to_owned())
                .or_insert_with(|| "error: check panicked".to_owned());
        }
        results
    }

    /// The `/healthz` report.
    pub async fn health(&self) -> HealthReport {
        report(self.run().await, None)
    }

    /// The `/readyz` report: the health checks plus the migration state.
    pub async fn readiness(&self, migrations: &MigrationState) -> HealthReport {
        let mut checks = self.run().await;
        let migrations = migrations.get().to_string();
        checks.insert("migrations".to_owned(), migrations.clone());
        report(checks, Some(migrations))
    }
}

fn report(checks: BTreeMap<String, String>, migrations: Option<String>) -> HealthReport {
    let status = if checks.values().all(|v| v == "ok") {
        HealthStatus::Ok
    } else {
        HealthStatus::Error
    };
    HealthReport {
        status,
        checks,
        migrations,
    }
}

/// Where start-up migrations stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationStatus {
    /// Not finished yet (running, waiting for another replica's lock, or for the database).
    Pending,
    Ok,
    /// A migration failed; the server stays up but not ready. The message says which.
    Failed(String),
}

impl std::fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrationStatus::Pending => f.write_str("pending"),
            MigrationStatus::Ok => f.write_str("ok"),
            MigrationStatus::Failed(reason) => write!(f, "error: {reason}"),
        }
    }
}

/// Shared, cheaply readable migration status.
#[derive(Debug, Clone)]
pub struct MigrationState(Arc<RwLock<MigrationStatus>>);

impl Default for MigrationState {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(MigrationStatus::Pending)))
    }
}

impl MigrationState {
    pub fn get(&self) -> MigrationStatus {
        self.0
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn set(&self, status: MigrationStatus) {
        match self.0.write() {
            Ok(mut guard) => *guard = status,
            Err(poisoned) => *poisoned.into_inner() = status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failing_and_hung_checks_are_reported_by_name() {
        let mut registry = HealthRegistry::default();
        registry.register("db", || async { Ok(()) });
        registry.register("wireguard", || async {
            Err("interface wg0 is gone".to_owned())
        });
        registry.register("slow", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        let started = std::time::Instant::now();
        let report = registry.health().await;
        assert!(started.elapsed() < CHECK_TIMEOUT + Duration::from_secs(1));
        assert_eq!(report.status, HealthStatus::Error);
        assert_eq!(report.checks["db"], "ok");
        assert_eq!(report.checks["wireguard"], "error: interface wg0 is gone");
        assert_eq!(report.checks["slow"], "error: timed out after 2s");
        assert_eq!(report.migrations, None);
    }

    #[tokio::test]
    async fn readiness_follows_migrations() {
        let mut registry = HealthRegistry::default();
        registry.register("db", || async { Ok(()) });
        let state = MigrationState::default();
        let pending = registry.readiness(&state).await;
        assert_eq!(pending.status, HealthStatus::Error);
        assert_eq!(pending.migrations.as_deref(), Some("pending"));
        state.set(MigrationStatus::Ok);
        let ready = registry.readiness(&state).await;
        assert!(ready.is_ok());
        assert_eq!(ready.checks["migrations"], "ok");
    }
}
