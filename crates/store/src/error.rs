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
    /// A concurrent change held the lock past the busy timeout, or made this transaction's
    /// view stale (SQLite busy or locked; PostgreSQL serialization failure, deadlock or lock
    /// timeout). Nothing was written; the same request may succeed when retried.
    #[error("contended: {0}")]
    Contended(String),
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
                } else if db.code().as_deref().is_some_and(is_contention_code) {
                    StoreError::Contended(db.message().to_owned())
                } else {
                    StoreError::Other(err.to_string())
                }
            }
            _ => StoreError::Other(err.to_string()),
        }
    }
}

/// SQLite result codes (extended codes carry the primary one in their low byte) and PostgreSQL
/// SQLSTATEs that mean "another transaction is in the way", not "this request is wrong".
fn is_contention_code(code: &str) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    // A SQLSTATE is always five characters (and may be all digits, as 40001 is); SQLite's
    // extended result codes have at most four digits.
    if code.len() == 5 {
        // serialization_failure, deadlock_detected, lock_not_available
        return matches!(code, "40001" | "40P01" | "55P03");
    }
    code.parse::<i64>()
        .is_ok_and(|sqlite| matches!(sqlite & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
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

#[cfg(test)]
mod tests {
    use super::is_contention_code;

    #[test]
    fn busy_locked_and_serialization_failures_are_contention() {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED_SHAREDCACHE (262)
        for code in ["5", "6", "517", "262", "40001", "40P01", "55P03"] {
            assert!(is_contention_code(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_ERROR, unique_violation, syntax error
        for code in ["2067", "1", "23505", "42601"] {
            assert!(!is_contention_code(code), "{code}");
        }
    }
}
