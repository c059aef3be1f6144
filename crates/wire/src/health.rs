//! `/healthz` and `/readyz` bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Overall verdict: `ok` only when every check is `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Error,
}

/// A check's value: `"ok"`, `"pending"`, or `"error: <what is wrong>"`.
pub type CheckValue = String;

/// `{"status":"ok","checks":{"db":"ok",...}}`; `/readyz` adds `"migrations"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthReport {
    pub status: HealthStatus,
    pub checks: BTreeMap<String, CheckValue>,
    /// Present on `/readyz` only: `ok`, `pending`, or `error: ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<CheckValue>,
}

impl HealthReport {
    /// Is every value `ok`?
    pub fn is_ok(&self) -> bool {
        self.status == HealthStatus::Ok
    }
}
