//! The storage layer's error type.

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `DATABASE_URL` cannot be used; the message says why.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or the connection broke.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A migration failed; the schema was left as it was before that migration.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A row that must exist does not.
    #[error("not found")]
    NotFound,
    /// A uniqueness or foreign-key constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other database error; the detail is for logs, not for clients.
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Database(db) => {
                if db.is_unique_violation() || db.is_foreign_key_violation() {
                    StoreError::Conflict(db.message().to_owned())
                } else {
                    StoreError::Other(err.to_string())
                }
            }
            _ => StoreError::Other(err.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(inner) => match StoreError::from(inner) {
                StoreError::Unavailable(msg) => StoreError::Unavailable(msg),
                other => StoreError::Migration(other.to_string()),
            },
            other => StoreError::Migration(other.to_string()),
        }
    }
}
