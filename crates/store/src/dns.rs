//! Magic DNS custom records. The server validates record sets (it owns the DNS rules) and keeps
//! the in-memory zone in step; this module only stores rows.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::tenants::found;
use crate::tx::Conn;
use crate::StoreError;

/// The `NOTIFY` channel the `dns_records` and `tenants` triggers send to (PostgreSQL, migration
/// 0005): a replica that hears it reloads tenants and records into its zone. It is followed on
/// the device changes' subscription ([`crate::changes::DeviceChanges`]).
pub const DNS_CHANNEL: &str = "watchgrid_dns";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DnsRecordRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Relative to the tenant's zone, lower case.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT` or `SRV`.
    pub record_type: String,
    pub ttl: i32,
    /// Zone-file form.
    pub value: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, tenant_id, name, record_type, ttl, value, created_by, created_at, updated_at";

/// Which records a list shows.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    /// Exactly this name.
    pub name: Option<String>,
    /// Exactly this type.
    pub record_type: Option<String>,
    /// Records after this `(name, id)` in list order (the page cursor).
    pub after: Option<(String, Uuid)>,
}

/// Serialize the changes that decide what a tenant's name holds, until `tx` ends: record
/// writes (each checks the whole record set at its name after writing: a CNAME stands alone)
/// and device renames (a device cannot take a CNAME's name, nor a CNAME a device's). Each side
/// checks the other's rows in the database after taking this lock; on PostgreSQL two
/// transactions would otherwise each miss the other's uncommitted row and both pass. Locks the
/// tenant's row (`FOR NO KEY UPDATE`, so inserts that merely reference the tenant are not held
/// up). SQLite needs nothing: every transaction opens with the write lock ([`crate::Database::begin`]).
pub async fn lock_tenant_records(tx: &mut crate::Tx, tenant: Uuid) -> Result<(), StoreError> {
    if let crate::Tx::Postgres(tx) = tx {
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Whether a CNAME of `tenant` sits at `name` (a device cannot take that name). Call it after
/// [`lock_tenant_records`] for an answer that holds until commit.
pub async fn cname_at<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    name: &str,
) -> Result<bool, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, i32>(
            "SELECT 1 FROM dns_records WHERE tenant_id = $1 AND name = $2 AND record_type = 'CNAME' LIMIT 1",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *c)
        .await?
        .is_some()
    }))
}

/// Whether a device of `tenant` is named `name` (a CNAME cannot sit there). Call it after
/// [`lock_tenant_records`] for an answer that holds until commit.
pub async fn device_at<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    name: &str,
) -> Result<bool, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, i32>(
            "SELECT 1 FROM devices WHERE tenant_id = $1 AND name = $2 LIMIT 1",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *c)
        .await?
        .is_some()
    }))
}

pub async fn insert_record<'a>(
    conn: impl Into<Conn<'a>>,
    row: &DnsRecordRow,
) -> Result<(), StoreError> {
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO dns_records (id, tenant_id, name, record_type, ttl, value, created_by, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(row.id)
        .bind(row.tenant_id)
        .bind(&row.name)
        .bind(&row.record_type)
        .bind(row.ttl)
        .bind(&row.value)
        .bind(&row.created_by)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// A record of `tenant`; another tenant's record is `None`, like a missing one.
pub async fn record<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<DnsRecordRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM dns_records WHERE tenant_id = $1 AND id = $2");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, DnsRecordRow>(&sql).bind(tenant).bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Every record of `tenant` at `name`: one record set.
pub async fn records_at<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    name: &str,
) -> Result<Vec<DnsRecordRow>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM dns_records WHERE tenant_id = $1 AND name = $2 ORDER BY id");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, DnsRecordRow>(&sql).bind(tenant).bind(name).fetch_all(&mut *c).await?
    }))
}

/// One page of `tenant`'s records, by name then id.
pub async fn list_records<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    filter: &RecordFilter,
    limit: i64,
) -> Result<Vec<DnsRecordRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM dns_records WHERE tenant_id = $1 \
         AND ($2 IS NULL OR name = $2) AND ($3 IS NULL OR record_type = $3) \
         AND (name > $4 OR (name = $4 AND id > $5)) ORDER BY name, id LIMIT $6"
    );
    let (after_name, after_id) = filter.after.clone().unwrap_or((String::new(), Uuid::nil()));
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, DnsRecordRow>(&sql)
            .bind(tenant)
            .bind(&filter.name)
            .bind(&filter.record_type)
            .bind(&after_name)
            .bind(after_id)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
    }))
}

/// Every record of every tenant: the zone is built from this at start-up.
pub async fn all_records<'a>(conn: impl Into<Conn<'a>>) -> Result<Vec<DnsRecordRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM dns_records ORDER BY tenant_id, name, id");
    Ok(with_conn!(conn, c => sqlx::query_as::<_, DnsRecordRow>(&sql).fetch_all(&mut *c).await?))
}

/// Change a record's TTL and value. `NotFound` if `tenant` has no such record.
pub async fn update_record<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
    ttl: i32,
    value: &str,
    updated_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query(
            "UPDATE dns_records SET ttl = $1, value = $2, updated_at = $3 \
             WHERE tenant_id = $4 AND id = $5",
        )
        .bind(ttl)
        .bind(value)
        .bind(updated_at)
        .bind(tenant)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    found(affected)
}

/// Delete a record. `NotFound` if `tenant` has no such record.
pub async fn delete_record<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("DELETE FROM dns_records WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}
