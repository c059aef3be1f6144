//! Embedded, forward-only migrations, one directory per dialect with the same versions.
//!
//! Each migration runs in its own transaction, so a failing one leaves the schema as it was.
//! On PostgreSQL the migrator holds an advisory lock while it works: replicas that start at the
//! same moment wait for each other and the migrations are applied once.

use std::collections::BTreeSet;

use sqlx::migrate::Migrator;

use crate::{Backend, Database, StoreError};

/// The PostgreSQL advisory lock a migration run holds (`pg_advisory_lock(8606719496047915620)`,
/// the bytes of "watchgrd"). Replicas wait on it; an operator can see it in `pg_locks`.
pub const MIGRATION_LOCK_KEY: i64 = 0x7761_7463_6867_7264;

/// Migrations for PostgreSQL (`migrations/postgres`).
pub static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
/// Migrations for SQLite (`migrations/sqlite`); same versions and names as PostgreSQL's.
pub static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// Both sets as the schema of migrated test databases: `TestDatabase::migrated(backend,
/// &TEST_SCHEMA)` clones a PostgreSQL template instead of running every migration per test.
#[cfg(feature = "test-util")]
pub const TEST_SCHEMA: watchgrid_testkit::Schema = watchgrid_testkit::Schema {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions this run applied (empty when another replica had already applied them).
    pub applied: Vec<i64>,
    /// Versions recorded in the database that this binary does not know: the database was
    /// migrated by a newer release. Tolerated so that a rollback after strictly additive
    /// migrations can still start, but worth a warning.
    pub unknown: Vec<i64>,
}

impl Database {
    /// The embedded migrator for this database's dialect.
    pub fn migrator(&self) -> &'static Migrator {
        match self.backend() {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        }
    }

    /// Apply every pending embedded migration.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.migrate_with(self.migrator()).await
    }

    /// Apply `migrator`'s pending migrations (tests pass their own to exercise failures).
    ///
    /// On PostgreSQL the whole run, including the before/after bookkeeping, holds the advisory
    /// lock [`MIGRATION_LOCK_KEY`], so the report says exactly what *this* run applied.
    pub async fn migrate_with(&self, migrator: &Migrator) -> Result<MigrationReport, StoreError> {
        let Database::Postgres(pool) = self else {
            return self.migrate_locked(migrator).await;
        };
        let mut lock = pool.acquire().await?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut lock)
            .await?;
        let result = self.migrate_locked(migrator).await;
        // Closing the session releases the lock even if an explicit unlock would fail, and
        // the connection never returns to the pool still holding it.
        let _ = sqlx::Connection::close(lock).await;
        result
    }

    async fn migrate_locked(&self, migrator: &Migrator) -> Result<MigrationReport, StoreError> {
        let before = self.applied_versions().await?;
        let mut migrator = Migrator {
            migrations: migrator.migrations.clone(),
            ..Migrator::DEFAULT
        };
        migrator.set_ignore_missing(true);
        with_pool!(self, pool => migrator.run(pool).await?);
        let after = self.applied_versions().await?;
        let known: BTreeSet<i64> = migrator.iter().map(|m| m.version).collect();
        Ok(MigrationReport {
            applied: after.difference(&before).copied().collect(),
            unknown: after.difference(&known).copied().collect(),
        })
    }

    /// Versions of the embedded migrations not yet applied.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied = self.applied_versions().await?;
        Ok(self
            .migrator()
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Versions recorded as successfully applied; empty on a fresh database.
    ///
    /// Read-only: creating the bookkeeping table here, outside the migration lock, would race
    /// with a replica that is migrating at the same moment.
    pub async fn applied_versions(&self) -> Result<BTreeSet<i64>, StoreError> {
        let table_exists_sql = match self.backend() {
            Backend::Postgres => "SELECT to_regclass('_sqlx_migrations') IS NOT NULL",
            Backend::Sqlite => {
                "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')"
            }
        };
        let versions = with_pool!(self, pool => {
            let exists: bool = sqlx::query_scalar(table_exists_sql).fetch_one(pool).await?;
            if exists {
                sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                    .fetch_all(pool)
                    .await?
            } else {
                Vec::new()
            }
        });
        Ok(versions.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_have_the_same_migrations() {
        let names = |m: &Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert!(!POSTGRES.migrations.is_empty());
        assert_eq!(names(&POSTGRES), names(&SQLITE));
    }
}
