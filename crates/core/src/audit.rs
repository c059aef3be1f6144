//! Writing the audit log from any entry point (a handler, an operator command, a worker):
//! every change records its row in the change's own transaction, a failed change records a
//! failed attempt, and the retention sweeper ages rows out.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;
use watchgrid_store::audit::{self, NewAuditEntry};
use watchgrid_store::{Database, StoreError, Tx};

use crate::validate;

/// Who acts, where and from which address: the fixed part of an audit row.
#[derive(Debug, Clone)]
pub struct AuditContext {
    pub actor: String,
    pub tenant_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub client_addr: Option<String>,
}

impl AuditContext {
    /// `actor` acting in `tenant` (id and slug), from `client_addr`.
    pub fn acting(
        actor: impl Into<String>,
        tenant: Option<(Uuid, String)>,
        client_addr: Option<String>,
    ) -> Self {
        let (tenant_id, tenant) = tenant.unzip();
        Self {
            actor: actor.into(),
            tenant_id,
            tenant,
            client_addr,
        }
    }

    /// For the server's own actions (bootstrap, retention).
    pub fn system() -> Self {
        Self::acting("system", None, None)
    }

    pub fn entry(
        &self,
        action: &str,
        resource_type: &str,
        resource_id: Option<String>,
        success: bool,
        details: Value,
    ) -> NewAuditEntry {
        // The target and details may quote the request (a failed attempt's invalid name): bound
        // them and escape NULs, so the row is written on both backends and stays small.
        NewAuditEntry {
            admin_user: self.actor.clone(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.as_deref().map(validate::bounded),
            tenant_id: self.tenant_id,
            tenant: self.tenant.clone(),
            client_addr: self.client_addr.clone(),
            success,
            details: validate::bounded_json(details),
        }
    }
}

/// What a successful change reports for its audit row.
#[derive(Debug)]
pub struct Outcome<T> {
    pub value: T,
    pub resource_id: Option<String>,
    pub details: Value,
}

impl<T> Outcome<T> {
    pub fn new(value: T, resource_id: impl ToString, details: Value) -> Self {
        Self {
            value,
            resource_id: Some(resource_id.to_string()),
            details,
        }
    }
}

/// An error that can be recorded as a failed attempt: what the row's `details` say of it
/// (never a secret; typically the error's code and its public message).
pub trait AuditedFailure {
    fn failure_details(&self) -> Value;
}

/// Run `change` in a transaction and record `action` on `resource_type` in the same
/// transaction. If the change fails, it is rolled back and a failed attempt is recorded on its
/// own (naming `target` when the caller named one), then the error is returned. Any error
/// type that a [`StoreError`] converts into can be used.
pub async fn audited<T, E>(
    db: &Database,
    ctx: &AuditContext,
    action: &str,
    resource_type: &str,
    target: Option<String>,
    change: impl AsyncFnOnce(&mut Tx) -> Result<Outcome<T>, E>,
) -> Result<T, E>
where
    E: From<StoreError> + AuditedFailure,
{
    let mut tx = db.begin().await?;
    match change(&mut tx).await {
        Ok(outcome) => {
            let entry = ctx.entry(
                action,
                resource_type,
                outcome.resource_id.or(target),
                true,
                outcome.details,
            );
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
            Ok(outcome.value)
        }
        Err(err) => {
            drop(tx);
            record_failure(db, ctx, action, resource_type, target, &err).await;
            Err(err)
        }
    }
}

/// Record a failed attempt outside any transaction. A failure to record is logged, not
/// returned: the caller's own error is what the client must hear.
pub async fn record_failure(
    db: &Database,
    ctx: &AuditContext,
    action: &str,
    resource_type: &str,
    target: Option<String>,
    err: &impl AuditedFailure,
) {
    let entry = ctx.entry(action, resource_type, target, false, err.failure_details());
    if let Err(store_err) = audit::record(db, &entry).await {
        tracing::error!(error = %store_err, action, "could not record a failed attempt in the audit log");
    }
}

/// Rows deleted per statement: small enough that no statement holds locks for long.
pub const RETENTION_BATCH: i64 = 1000;

/// Delete audit rows older than `days`, in batches; returns how many went.
pub async fn sweep(db: &Database, days: u32) -> Result<u64, StoreError> {
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let mut total = 0;
    loop {
        let deleted = audit::delete_before(db, cutoff, RETENTION_BATCH).await?;
        total += deleted;
        if deleted < RETENTION_BATCH as u64 {
            return Ok(total);
        }
        // Let other writers in between batches.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sweep once an hour (and once at start) for as long as the server runs.
pub async fn run_sweeper(db: Database, days: u32) {
    let mut interval = tokio::time::interval(Duration::from_secs(3600));
    loop {
        interval.tick().await;
        match sweep(&db, days).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                deleted,
                retention_days = days,
                "audit retention: deleted old rows"
            ),
            Err(err) => tracing::warn!(error = %err, "audit retention sweep failed; will retry"),
        }
    }
}
