//! The Watchgrid server as a library: configuration, HTTP surface, health, metrics and the
//! start-up sequence. `main.rs` is a thin command-line shell around [`serve`].
//!
//! Architecture invariant: this is the only crate that knows both HTTP and SQL; it wires the
//! storage layer, the WireGuard and DNS crates (and later the SSH CA crate) to the API.

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod dns;
pub mod fleet;
pub mod health;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod ratelimit;
pub mod serve;
pub mod ssh;
pub mod state;
pub mod telemetry;

use watchgrid_store::Backend;
use watchgrid_wire::VersionInfo;

/// The release version (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit the binary was built from.
pub const BUILD_COMMIT: &str = env!("WATCHGRID_BUILD_COMMIT");
/// When the binary was built.
pub const BUILD_DATE: &str = env!("WATCHGRID_BUILD_DATE");

/// `/api/version`'s body.
pub fn version_info(backend: Backend) -> VersionInfo {
    VersionInfo {
        version: VERSION.to_owned(),
        commit: BUILD_COMMIT.to_owned(),
        built: BUILD_DATE.to_owned(),
        database: backend.as_str().to_owned(),
    }
}
