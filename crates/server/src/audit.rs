//! The HTTP side of the audit log: an audit context from the request's principal, scope and
//! address, and `audited` specialised to `ApiError` (the engine is `watchgrid_core::audit`).

use serde_json::{json, Value};
use watchgrid_store::{Database, Tx};

pub use watchgrid_core::audit::{
    record_failure, run_sweeper, sweep, AuditContext, AuditedFailure, Outcome, RETENTION_BATCH,
};

use crate::auth::{ClientAddr, Principal, Scope};
use crate::http::error::ApiError;

/// The audit context of a request: its principal, acting in `scope`'s tenant, from `client`.
pub fn context(principal: &Principal, scope: Option<&Scope>, client: ClientAddr) -> AuditContext {
    AuditContext::acting(
        principal.name.clone(),
        scope.map(|s| (s.tenant.id, s.tenant.slug.clone())),
        Some(client.0.to_string()),
    )
}

impl AuditedFailure for ApiError {
    fn failure_details(&self) -> Value {
        let mut details = json!({"error": self.code(), "message": self.public_message()});
        if let ApiError::Validation(fields) = self {
            details["fields"] = json!(fields);
        }
        details
    }
}

/// [`watchgrid_core::audit::audited`] for handlers: the change's error is an [`ApiError`].
pub async fn audited<T>(
    db: &Database,
    ctx: &AuditContext,
    action: &str,
    resource_type: &str,
    target: Option<String>,
    change: impl AsyncFnOnce(&mut Tx) -> Result<Outcome<T>, ApiError>,
) -> Result<T, ApiError> {
    watchgrid_core::audit::audited(db, ctx, action, resource_type, target, change).await
}
