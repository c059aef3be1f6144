//! The admin audit log (`admin_audit_log`): append, page through, and age out.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::tx::Conn;
use crate::{Backend, StoreError};

/// A row to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub admin_user: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub client_addr: Option<String>,
    pub success: bool,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub admin_user: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub client_addr: Option<String>,
    pub success: bool,
    pub details: Json<serde_json::Value>,
}

/// Append one row. Call it on the transaction that makes the change it records.
pub async fn record<'a>(
    conn: impl Into<Conn<'a>>,
    entry: &NewAuditEntry,
) -> Result<(), StoreError> {
    let now = Utc::now();
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO admin_audit_log (timestamp, admin_user, action, resource_type, resource_id, \
             tenant_id, tenant, client_addr, success, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(now)
        .bind(&entry.admin_user)
        .bind(&entry.action)
        .bind(&entry.resource_type)
        .bind(&entry.resource_id)
        .bind(entry.tenant_id)
        .bind(&entry.tenant)
        .bind(&entry.client_addr)
        .bind(entry.success)
        .bind(Json(&entry.details))
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Filters for [`list`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows of this tenant. `None` means every tenant (superadmins only).
    pub tenant_id: Option<Uuid>,
    pub admin_user: Option<String>,
    /// An exact action (`user.create`) or a prefix ending in `.` (`auth.`).
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub success: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Rows with an id below this (the previous page's last id).
    pub before_id: Option<i64>,
}

/// Newest first, at most `limit` rows, one query. Filters become bound parameters.
pub async fn list<'a>(
    conn: impl Into<Conn<'a>>,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    // Each optional filter is `($n IS NULL OR column op $n)`, so the SQL text is fixed and
    // every value is bound. PostgreSQL needs the parameter types spelled out for `IS NULL`.
    let conn = conn.into();
    let backend = match &conn {
        Conn::Db(db) => db.backend(),
        Conn::Tx(crate::tx::Tx::Sqlite(_)) => Backend::Sqlite,
        Conn::Tx(crate::tx::Tx::Postgres(_)) => Backend::Postgres,
    };
    let cast = |ty: &str| match backend {
        Backend::Postgres => format!("::{ty}"),
        Backend::Sqlite => String::new(),
    };
    let sql = format!(
        "SELECT id, timestamp, admin_user, action, resource_type, resource_id, tenant_id, tenant, \
         client_addr, success, details FROM admin_audit_log WHERE \
         ($1{uuid} IS NULL OR tenant_id = $1) AND \
         ($2{text} IS NULL OR admin_user = $2) AND \
         ($3{text} IS NULL OR action = $3 OR (substr($3, length($3), 1) = '.' AND substr(action, 1, length($3)) = $3)) AND \
         ($4{text} IS NULL OR resource_type = $4) AND \
         ($5{boolean} IS NULL OR success = $5) AND \
         ($6{ts} IS NULL OR timestamp >= $6) AND \
         ($7{ts} IS NULL OR timestamp < $7) AND \
         ($8{bigint} IS NULL OR id < $8) \
         ORDER BY id DESC LIMIT $9",
        uuid = cast("uuid"),
        text = cast("text"),
        boolean = cast("boolean"),
        ts = cast("timestamptz"),
        bigint = cast("bigint"),
    );
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, AuditRow>(&sql)
            .bind(filter.tenant_id)
            .bind(&filter.admin_user)
            .bind(&filter.action)
            .bind(&filter.resource_type)
            .bind(filter.success)
            .bind(filter.since)
            .bind(filter.until)
            .bind(filter.before_id)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
    }))
}

/// Delete up to `batch` rows older than `cutoff`; returns how many went. Small batches keep
/// each transaction (and its locks) short while the sweeper works through a backlog.
pub async fn delete_before<'a>(
    conn: impl Into<Conn<'a>>,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query(
            "DELETE FROM admin_audit_log WHERE id IN \
             (SELECT id FROM admin_audit_log WHERE timestamp < $1 ORDER BY id LIMIT $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }))
}
