//! A fresh, isolated database per test, on SQLite or PostgreSQL: empty, or already migrated.
//!
//! Migrated PostgreSQL databases are clones of a template (crates.io's `crates_io_test_db`
//! pattern): the first test process to need a schema creates `wgt_tmpl_<hash>` under an advisory
//! lock, every test then runs `CREATE DATABASE … TEMPLATE` instead of every migration. The hash
//! covers each migration's version, description and checksum, so a changed migration gets a new
//! template and processes of different checkouts sharing one cluster never see each other's.
//! Every PostgreSQL database a test gets is dropped when its [`TestDatabase`] drops, also when the
//! test panics.

use std::path::PathBuf;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::Connection;

/// The admin URL of the suite's PostgreSQL cluster (a `postgres://` URL to any database on it).
pub const TEST_DATABASE_URL_VAR: &str = "WATCHGRID_TEST_DATABASE_URL";

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// The migration sets of a schema, one per dialect (the store's `migrations::SQLITE` and
/// `migrations::POSTGRES`). testkit takes them as values because the store dev-depends on it.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// A database that exists for one test. SQLite files live in a temporary directory removed on
/// drop; PostgreSQL databases are created on the suite's cluster and dropped on drop.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub backend: TestBackend,
    /// Keeps the SQLite file's directory alive; also a scratch directory for the test.
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database to drop, and the admin URL to drop it through.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// An empty database: for tests of migrations and start-up, which must run them themselves.
    pub async fn empty(backend: TestBackend) -> Self {
        Self::create(backend, None).await
    }

    /// A database with `schema` applied. On PostgreSQL a clone of the schema's template.
    pub async fn migrated(backend: TestBackend, schema: &Schema) -> Self {
        Self::create(backend, Some(schema)).await
    }

    async fn create(backend: TestBackend, schema: Option<&Schema>) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        match backend {
            TestBackend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("watchgrid.db").display());
                if let Some(schema) = schema {
                    migrate_sqlite(&url, schema.sqlite).await;
                }
                Self {
                    url,
                    backend,
                    dir,
                    postgres: None,
                }
            }
            TestBackend::Postgres => {
                let admin = suite_postgres_url();
                let template = match schema {
                    Some(schema) => Some(ensure_template(&admin, schema.postgres).await),
                    None => None,
                };
                let name = create_postgres_database(&admin, template.as_deref()).await;
                Self {
                    url: with_database(&admin, &name),
                    backend,
                    dir,
                    postgres: Some((admin, name)),
                }
            }
        }
    }

    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            drop_postgres_database(admin, name);
        }
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

async fn admin_connection(admin_url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test cluster at {admin_url}: {e}"))
}

/// Create `wgt_<random>` on the cluster behind `admin_url`, a copy of `template` if given
/// (otherwise empty), and return its name.
async fn create_postgres_database(admin_url: &str, template: Option<&str>) -> String {
    let name = format!("wgt_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin_connection(admin_url).await;
    let sql = match template {
        Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
        None => format!("CREATE DATABASE {name}"),
    };
    sqlx::query(&sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
    name
}

/// `DROP DATABASE … WITH (FORCE)` (which ends the test's pool connections still open) on a
/// thread of its own: `Drop` is synchronous and may run inside the test's runtime. A failure is
/// reported, not raised: a panic while the test is already unwinding would abort the process.
fn drop_postgres_database(admin_url: String, name: String) {
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            conn.close().await.ok();
            Ok::<_, String>(name)
        })
    })
    .join();
    match dropped {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("testkit: could not drop a test database: {e}"),
        Err(_) => eprintln!("testkit: the thread dropping a test database panicked"),
    }
}

/// The template's name and the advisory lock its builders take, from a hash of every migration
/// in `migrator` (version, description and checksum of its SQL).
fn template_name(migrator: &Migrator) -> (String, i64) {
    let mut hash = Sha256::new();
    for m in migrator.iter() {
        hash.update(m.version.to_le_bytes());
        hash.update(m.description.as_bytes());
        hash.update([0]);
        hash.update(&m.checksum);
    }
    let digest = hash.finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    (format!("wgt_tmpl_{hex}"), i64::from_be_bytes(key))
}

/// Make sure the template for `migrator` exists on the cluster behind `admin_url`; returns its
/// name. Safe across processes: builders serialise on an advisory lock keyed by the name, build
/// under a temporary name and rename when done, so the template's name appears only complete.
/// The template refuses connections, so no session can make `CREATE DATABASE … TEMPLATE` fail.
async fn ensure_template(admin_url: &str, migrator: &'static Migrator) -> String {
    let (template, key) = template_name(migrator);
    let mut admin = admin_connection(admin_url).await;
    if database_exists(&mut admin, &template).await {
        admin.close().await.ok();
        return template;
    }
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut admin)
        .await
        .expect("take the template lock");
    if !database_exists(&mut admin, &template).await {
        let building = format!("{template}_new");
        for sql in [
            // A builder that died half-way leaves this behind.
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            run(&mut admin, &sql).await;
        }
        let mut conn = admin_connection(&with_database(admin_url, &building)).await;
        migrator
            .run(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("migrate the template database {building}: {e}"));
        conn.close().await.ok();
        for sql in [
            format!("ALTER DATABASE {building} RENAME TO {template}"),
            format!("ALTER DATABASE {template} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
        ] {
            run(&mut admin, &sql).await;
        }
    }
    // Closing the session releases the lock.
    admin.close().await.ok();
    template
}

async fn run(conn: &mut sqlx::PgConnection, sql: &str) {
    sqlx::query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn database_exists(conn: &mut sqlx::PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .expect("look up a database")
}

async fn migrate_sqlite(url: &str, migrator: &'static Migrator) {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .expect("a SQLite URL")
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    migrator
        .run(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("migrate {url}: {e}"));
    conn.close().await.ok();
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
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]
mod tests {
    use super::*;

    /// Needs the suite's cluster, like every PostgreSQL test.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrated_databases_are_clones_of_a_template_and_dropped_after_the_test() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("0001_probe.sql"),
            "CREATE TABLE testkit_probe (id INTEGER);",
        )
        .unwrap();
        let migrator: &'static Migrator =
            Box::leak(Box::new(Migrator::new(dir.path()).await.unwrap()));
        let schema = Schema {
            sqlite: migrator,
            postgres: migrator,
        };
        for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
            let first = TestDatabase::migrated(backend, &schema).await;
            let second = TestDatabase::migrated(backend, &schema).await;
            assert_ne!(first.url, second.url);
            for db in [&first, &second] {
                let sql = "SELECT COUNT(*) FROM testkit_probe";
                let rows: i64 = match backend {
                    TestBackend::Sqlite => {
                        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
                    }
                    TestBackend::Postgres => {
                        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
                    }
                };
                assert_eq!(rows, 0, "{backend:?}: the schema is there");
            }
        }

        let mut conn = sqlx::PgConnection::connect(&suite_postgres_url())
            .await
            .unwrap();
        let (template, _) = template_name(migrator);
        let (is_template, allows_connections): (bool, bool) = sqlx::query_as(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1",
        )
        .bind(&template)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(is_template && !allows_connections, "{template}");

        let db = TestDatabase::empty(TestBackend::Postgres).await;
        let name = db.postgres.as_ref().unwrap().1.clone();
        assert!(database_exists(&mut conn, &name).await);
        drop(db);
        assert!(
            !database_exists(&mut conn, &name).await,
            "dropped with the test"
        );
        // Also when the test fails.
        let name = std::thread::spawn(|| {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let db = runtime.block_on(TestDatabase::empty(TestBackend::Postgres));
            let name = db.postgres.as_ref().unwrap().1.clone();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _db = db;
                panic!("a failing test");
            }));
            name
        })
        .join()
        .unwrap();
        assert!(!database_exists(&mut conn, &name).await, "dropped on panic");
    }

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5/postgres?sslmode=disable", "x"),
            "postgres://u@127.0.0.1:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }
}
