//! Migrations on both backends: applied once, idempotent, atomic when one fails, and safe when
//! several replicas migrate one PostgreSQL database at the same moment.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::path::Path;

use watchgrid_store::{Backend, Database, DatabaseUrl, Migrator, StoreError};
use watchgrid_testkit::{backend_tests, TestBackend, TestDatabase};

async fn open(test_db: &TestDatabase) -> Database {
    let url = DatabaseUrl::parse(&test_db.url).expect("valid test URL");
    Database::connect(&url, 5).await.expect("connect")
}

async fn table_exists(db: &Database, table: &str) -> bool {
    let sql = match db.backend() {
        Backend::Postgres => format!("SELECT to_regclass('{table}') IS NOT NULL"),
        Backend::Sqlite => format!(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type='table' AND name='{table}')"
        ),
    };
    db.query_bool_for_tests(&sql).await.expect("query")
}

backend_tests!(
    fresh_database_is_fully_migrated_once,
    failing_migration_leaves_schema_unchanged
);

async fn fresh_database_is_fully_migrated_once(backend: TestBackend) {
    let test_db = TestDatabase::empty(backend).await;
    let db = open(&test_db).await;
    let all: Vec<i64> = db.migrator().iter().map(|m| m.version).collect();
    assert_eq!(db.pending_migrations().await.unwrap(), all);

    let first = db.migrate().await.expect("migrate");
    assert_eq!(first.applied, all);
    assert!(first.unknown.is_empty());
    assert!(db.pending_migrations().await.unwrap().is_empty());
    assert!(table_exists(&db, "instance").await);

    let second = db.migrate().await.expect("migrate again");
    assert!(second.applied.is_empty(), "nothing left to apply");

    let id = db.installation_id().await.unwrap();
    assert_eq!(db.installation_id().await.unwrap(), id, "stable");
}

async fn failing_migration_leaves_schema_unchanged(backend: TestBackend) {
    let test_db = TestDatabase::empty(backend).await;
    let db = open(&test_db).await;
    db.migrate().await.expect("the real migrations apply");

    // The real migrations plus one that creates a table and then fails.
    let dialect = match backend {
        TestBackend::Sqlite => "sqlite",
        TestBackend::Postgres => "postgres",
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let dir = test_db.scratch().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        dir.join("9999_broken.sql"),
        "CREATE TABLE should_vanish (id INTEGER);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    .unwrap();
    let broken = Migrator::new(dir.as_path()).await.unwrap();

    let err = db.migrate_with(&broken).await.expect_err("must fail");
    assert!(matches!(err, StoreError::Migration(_)), "{err:?}");
    assert!(!table_exists(&db, "should_vanish").await, "rolled back");
    assert!(!db.applied_versions().await.unwrap().contains(&9999));
    assert!(
        table_exists(&db, "instance").await,
        "earlier migrations intact"
    );
}

/// Replicas starting together on one empty database all succeed; each migration runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replicas_migrate_postgres_once() {
    let test_db = TestDatabase::empty(TestBackend::Postgres).await;
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(open(&test_db).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for db in replicas.clone() {
        tasks.spawn(async move { db.migrate().await });
    }
    let mut applied_total = 0;
    while let Some(result) = tasks.join_next().await {
        let report = result
            .unwrap()
            .expect("every replica's migration run succeeds");
        applied_total += report.applied.len();
    }
    let db = &replicas[0];
    let expected = db.migrator().iter().count();
    // Each replica reports what it applied under the lock: together, every migration once.
    assert_eq!(applied_total, expected);
    let rows = db
        .query_i64_for_tests("SELECT COUNT(*) FROM _sqlx_migrations")
        .await
        .unwrap();
    assert_eq!(rows, expected as i64);
    assert!(db.pending_migrations().await.unwrap().is_empty());
}
