//! `/api/version` body.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionInfo {
    /// The release version, e.g. `0.1.0`.
    pub version: String,
    /// The git commit the binary was built from, or `unknown`.
    pub commit: String,
    /// When the binary was built (RFC 3339, UTC), or `unknown`.
    pub built: String,
    /// The storage backend in use: `sqlite` or `postgres`.
    pub database: String,
}
