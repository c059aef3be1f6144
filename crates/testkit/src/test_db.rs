//! A fresh, isolated database per test, on SQLite or PostgreSQL.

use std::path::PathBuf;

use sqlx::Connection;

/// The admin URL of the suite's PostgreSQL cluster (a `postgres://` URL to any database on it).
pub const TEST_DATABASE_URL_VAR: &str = "WATCHGRID_TEST_DATABASE_URL";

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test. SQLite files live in a temporary directory removed on
/// drop; PostgreSQL databases are created on the suite's throwaway cluster and vanish with it.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub backend: TestBackend,
    /// Keeps the SQLite file's directory alive; also a scratch directory for the test.
    pub dir: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn new(backend: TestBackend) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = match backend {
            TestBackend::Sqlite => {
                format!("sqlite://{}", dir.path().join("watchgrid.db").display())
            }
            TestBackend::Postgres => create_postgres_database(&suite_postgres_url()).await,
        };
        Self { url, backend, dir }
    }

    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// The suite's cluster. Missing configuration is a failure, not a silent skip: a PostgreSQL test
/// that does not run must not look like one that passed.
pub fn suite_postgres_url() -> String {
    match std::env::var(TEST_DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{TEST_DATABASE_URL_VAR} is not set: run the suite with scripts/test.sh, which starts a \
             throwaway PostgreSQL cluster, or point {TEST_DATABASE_URL_VAR} at a PostgreSQL server \
             where the test user may CREATE DATABASE"
        ),
    }
}

/// Create `wgt_<random>` on the cluster behind `admin_url` and return its URL.
pub async fn create_postgres_database(admin_url: &str) -> String {
    let name = format!("wgt_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test cluster at {admin_url}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    conn.close().await.ok();
    with_database(admin_url, &name)
}

/// `admin_url` with its database name replaced by `name`.
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5/postgres?sslmode=disable", "x"),
            "postgres://u@127.0.0.1:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }
}
