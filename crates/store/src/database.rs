//! The connection pool over either backend, and the [`with_pool!`] dispatch macro.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;

/// Run one block of query code against whichever backend `$db` holds.
///
/// The block is compiled once per backend with `$pool` bound to that backend's pool, so a query
/// is written once and each driver binds its parameters natively (`$1` placeholders work on both).
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Database::Sqlite($pool) => $body,
            $crate::Database::Postgres($pool) => $body,
        }
    };
}

/// Which database engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A validated `DATABASE_URL`. Its `Debug` output never contains the password.
#[derive(Clone)]
pub enum DatabaseUrl {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

impl DatabaseUrl {
    /// Parse and check a URL: `sqlite://PATH` or `postgres://...` (`sslmode` and `sslrootcert`
    /// are honoured). The error says what is wrong without echoing a password.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("sqlite") => {
                let path = &url["sqlite://".len()..];
                let path = path.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(StoreError::InvalidUrl(
                        "sqlite:// needs a file path, e.g. sqlite:///var/lib/watchgrid/watchgrid.db"
                            .into(),
                    ));
                }
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidUrl(redact(&e.to_string())))?;
                Ok(DatabaseUrl::Sqlite(options))
            }
            Some("postgres" | "postgresql") => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidUrl(redact(&e.to_string())))?;
                if matches!(
                    options.get_ssl_mode(),
                    PgSslMode::VerifyCa | PgSslMode::VerifyFull
                ) {
                    // Fail at start-up, not at the first connection, when the CA file is missing.
                    if let Some(root) = query_param(url, "sslrootcert") {
                        if !std::path::Path::new(&root).is_file() {
                            return Err(StoreError::InvalidUrl(format!(
                                "sslrootcert file {root} does not exist"
                            )));
                        }
                    }
                }
                Ok(DatabaseUrl::Postgres(options))
            }
            _ => Err(StoreError::InvalidUrl(
                "must start with postgres:// or sqlite://".into(),
            )),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(options) => f
                .debug_struct("Sqlite")
                .field("file", &options.get_filename())
                .finish(),
            DatabaseUrl::Postgres(options) => f
                .debug_struct("Postgres")
                .field("host", &options.get_host())
                .field("port", &options.get_port())
                .field("database", &options.get_database())
                .field("username", &options.get_username())
                .field("ssl_mode", &options.get_ssl_mode())
                .finish_non_exhaustive(),
        }
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// sqlx's parse errors may quote the URL; never let a password reach a log.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_inclusive(char::is_whitespace) {
        match (word.find("://"), word.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                out.push_str(&word[..scheme_end + 3]);
                out.push_str("***");
                out.push_str(&word[at..]);
            }
            _ => out.push_str(word),
        }
    }
    out
}

/// The database holds password hashes and credentials: create it (and so, as SQLite copies the
/// main file's mode, its `-wal` and `-shm` files) readable by the owner only.
fn create_private_file(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let unavailable =
        |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)
                .map_err(unavailable)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(unavailable)?;
            }
            Ok(())
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// Pool occupancy, exported as `watchgrid_db_open_connections` / `watchgrid_db_in_use_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub open: u32,
    pub in_use: u32,
}

/// A connection pool on one of the two backends. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// How long a caller waits for a pooled connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl Database {
    /// Open a pool. PostgreSQL pools connect lazily, so the server starts (and reports the
    /// database as unhealthy) while PostgreSQL is still down; SQLite creates its file if needed.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Sqlite(options) => {
                if let Some(parent) = options.get_filename().parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent).map_err(|e| {
                            StoreError::Unavailable(format!(
                                "cannot create directory {}: {e}",
                                parent.display()
                            ))
                        })?;
                    }
                }
                create_private_file(options.get_filename())?;
                let options = options
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await?;
                Ok(Database::Sqlite(pool))
            }
            DatabaseUrl::Postgres(options) => {
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .idle_timeout(Duration::from_secs(300))
                    .connect_lazy_with(options.clone());
                Ok(Database::Postgres(pool))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Database::Sqlite(_) => Backend::Sqlite,
            Database::Postgres(_) => Backend::Postgres,
        }
    }

    /// A round trip to the database: the `db` health check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool).await?;
        });
        Ok(())
    }

    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle) = with_pool!(self, pool => (pool.size(), pool.num_idle()));
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        PoolStats {
            open: size,
            in_use: size.saturating_sub(idle),
        }
    }

    /// Close every connection; pending acquires fail.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap().backend(),
            Backend::Sqlite
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u:p@localhost/db?sslmode=require")
                .unwrap()
                .backend(),
            Backend::Postgres
        );
        for bad in ["mysql://x/y", "localhost:5432", "sqlite://", ""] {
            assert!(
                matches!(DatabaseUrl::parse(bad), Err(StoreError::InvalidUrl(_))),
                "{bad} should be rejected"
            );
        }
        let missing_ca = DatabaseUrl::parse(
            "postgres://u@localhost/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
        );
        assert!(
            matches!(&missing_ca, Err(StoreError::InvalidUrl(m)) if m.contains("/nonexistent/ca.crt")),
            "{missing_ca:?}"
        );
    }

    #[test]
    fn debug_output_has_no_password() {
        let url = DatabaseUrl::parse("postgres://bob:hunter2@db:5433/wg?sslmode=require").unwrap();
        let debug = format!("{url:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("db") && debug.contains("5433"), "{debug}");
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redact("bad url postgres://bob:hunter2@db/x here"),
            "bad url postgres://***@db/x here"
        );
        assert_eq!(redact("no url at all"), "no url at all");
    }
}
