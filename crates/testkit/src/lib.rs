//! Test fixtures for Watchgrid: throwaway PostgreSQL clusters, per-test databases on both
//! backends, a macro that runs one test body on SQLite and on PostgreSQL, and polling with a
//! deadline ([`wait`]).
//!
//! The suite's shared cluster is started by `scripts/test.sh` through the `watchgrid-test-pg`
//! binary and handed to tests as `WATCHGRID_TEST_DATABASE_URL`; tests that need to stop
//! PostgreSQL under a running server start a private [`PgCluster`] of their own.

#![forbid(unsafe_code)]

pub mod dig;
pub mod netns;
mod pg;
mod test_db;
pub mod wait;

pub use pg::PgCluster;
pub use test_db::{Schema, TestBackend, TestDatabase, TEST_DATABASE_URL_VAR};

/// Expand `backend_tests!(name)` into a module `name` with two tests, `sqlite` and `postgres`,
/// each calling `async fn name(backend: TestBackend)` from the enclosing module.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::TestBackend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::TestBackend::Postgres).await
                }
            }
        )+
    };
}
