//! Watchgrid's storage: one repository layer that runs on SQLite (the embedded default) and
//! PostgreSQL (production), plus the embedded, forward-only migrations for both.
//!
//! Architecture invariant: this crate knows SQL and nothing of HTTP. Callers get typed values and
//! [`StoreError`], never `sqlx` types, except the pool statistics the server exports as metrics.
//!
//! One body of query code serves both backends: `with_pool!` expands a block once per backend,
//! so each query is written once and compiled against each driver. Where the dialects must differ
//! the difference is a local `match` on [`Backend`]. Timestamps are always bound from Rust (never
//! `now()` in SQL), so SQLite's text timestamps stay in one format and compare correctly.

#![forbid(unsafe_code)]

#[macro_use]
mod database;
#[macro_use]
pub mod tx;
pub mod audit;
pub mod changes;
pub mod devices;
pub mod dns;
mod error;
mod instance;
pub mod kinds;
pub mod migrations;
pub mod sessions;
pub mod ssh;
pub mod tenants;
#[cfg(any(test, feature = "test-util"))]
mod test_util;
pub mod users;

pub use database::{Backend, Database, DatabaseUrl, PoolStats};
pub use error::{Constraint, StoreError};
pub use kinds::{CaState, CertKind, DeviceKind};
pub use migrations::{MigrationReport, MIGRATION_LOCK_KEY};
/// The migration set type, for callers that run their own (tests exercising failures).
pub use sqlx::migrate::Migrator;
pub use tx::{Conn, Tx};
