//! Raw queries for tests that inspect the schema (feature `test-util`).

use crate::{Database, StoreError};

impl Database {
    /// Run a query returning one boolean.
    pub async fn query_bool_for_tests(&self, sql: &str) -> Result<bool, StoreError> {
        Ok(with_pool!(self, pool => sqlx::query_scalar::<_, bool>(sql).fetch_one(pool).await?))
    }

    /// Run a query returning one integer.
    pub async fn query_i64_for_tests(&self, sql: &str) -> Result<i64, StoreError> {
        Ok(with_pool!(self, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?))
    }

    /// Run a statement.
    pub async fn execute_for_tests(&self, sql: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query(sql).execute(pool).await?;
        });
        Ok(())
    }
}
