//! Transactions over either backend, and [`Conn`]: "the pool or a transaction", so one
//! repository function serves both a plain read and a step inside a larger change.

use sqlx::{Postgres, Sqlite, Transaction};

use crate::{Database, StoreError};

/// An open transaction. Dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// How a SQLite transaction opens: with the write lock. A deferred transaction reads first and
/// upgrades to a writer later; when another connection committed in between, SQLite refuses
/// the upgrade at once (`SQLITE_BUSY`/`SQLITE_BUSY_SNAPSHOT`, no busy timeout can help), which
/// concurrent changes turned into 500s. Taking the lock up front makes a writer wait its turn
/// (for the pool's busy timeout) instead.
const SQLITE_BEGIN: &str = "BEGIN IMMEDIATE";

impl Database {
    /// Open a transaction. On SQLite it holds the database's write lock until it ends, so
    /// transactions are serialised; on PostgreSQL it is `READ COMMITTED`, and a change whose
    /// checks span rows takes a row lock first (e.g. [`crate::dns::lock_tenant_records`]).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Database::Sqlite(pool) => Tx::Sqlite(pool.begin_with(SQLITE_BEGIN).await?),
            Database::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Where a repository function runs: on the pool (one checked-out connection for the call) or
/// inside a caller's transaction.
#[derive(Debug)]
pub enum Conn<'a> {
    Db(&'a Database),
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Database> for Conn<'a> {
    fn from(db: &'a Database) -> Self {
        Conn::Db(db)
    }
}

impl<'a> From<&'a mut Tx> for Conn<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        Conn::Tx(tx)
    }
}

/// Run a block with `$conn` bound to a `&mut` connection of the right backend, whether `$c`
/// is the pool or a transaction. Like `with_pool!`, the block is written once and compiled
/// per backend; use `&mut *$conn` as each query's executor.
macro_rules! with_conn {
    ($c:expr, $conn:ident => $body:expr) => {
        match Into::<$crate::tx::Conn<'_>>::into($c) {
            $crate::tx::Conn::Db($crate::Database::Sqlite(pool)) => {
                let mut checked_out = pool.acquire().await?;
                let $conn: &mut sqlx::SqliteConnection = &mut checked_out;
                $body
            }
            $crate::tx::Conn::Db($crate::Database::Postgres(pool)) => {
                let mut checked_out = pool.acquire().await?;
                let $conn: &mut sqlx::PgConnection = &mut checked_out;
                $body
            }
            $crate::tx::Conn::Tx($crate::tx::Tx::Sqlite(tx)) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *tx;
                $body
            }
            $crate::tx::Conn::Tx($crate::tx::Tx::Postgres(tx)) => {
                let $conn: &mut sqlx::PgConnection = &mut *tx;
                $body
            }
        }
    };
}
