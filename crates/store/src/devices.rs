//! Devices and onboarding tokens.

use chrono::{DateTime, Utc};
/// Device tags and other JSON columns.
pub use sqlx::types::Json;
use uuid::Uuid;

use crate::tenants::found;
use crate::tx::{Conn, Tx};
use crate::{Backend, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub hostname: String,
    pub kind: crate::DeviceKind,
    pub os: String,
    pub agent_version: String,
    pub wg_public_key: String,
    pub overlay_ip: String,
    pub credential_hash: Option<Vec<u8>>,
    pub tags: Json<Vec<String>>,
    pub onboarding_token_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

const DEVICE_COLUMNS: &str = "id, tenant_id, name, hostname, kind, os, agent_version, \
    wg_public_key, overlay_ip, credential_hash, tags, onboarding_token_id, created_at, last_seen_at";

fn backend_of(conn: &Conn<'_>) -> Backend {
    match conn {
        Conn::Db(db) => db.backend(),
        Conn::Tx(Tx::Sqlite(_)) => Backend::Sqlite,
        Conn::Tx(Tx::Postgres(_)) => Backend::Postgres,
    }
}

/// Insert a device; a taken name (in the tenant), address or key is [`StoreError::Conflict`].
pub async fn insert_device<'a>(
    conn: impl Into<Conn<'a>>,
    row: &DeviceRow,
) -> Result<(), StoreError> {
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, name, hostname, kind, os, agent_version, \
             wg_public_key, overlay_ip, credential_hash, tags, onboarding_token_id, created_at, \
             last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(row.id)
        .bind(row.tenant_id)
        .bind(&row.name)
        .bind(&row.hostname)
        .bind(row.kind)
        .bind(&row.os)
        .bind(&row.agent_version)
        .bind(&row.wg_public_key)
        .bind(&row.overlay_ip)
        .bind(&row.credential_hash)
        .bind(&row.tags)
        .bind(row.onboarding_token_id)
        .bind(row.created_at)
        .bind(row.last_seen_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// What [`insert_device_within`] did. On anything but `Inserted` the caller rolls `tx` back,
/// taking the insert with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceInsert {
    Inserted,
    /// The tenant would have more than `max` devices.
    OverLimit,
    /// A custom CNAME of the tenant holds the device's name (a CNAME stands alone at its name).
    NameHeldByCname,
}

/// Insert a device, checking under the tenant's lock that its tenant then has at most `max`
/// devices and that no CNAME of the tenant sits at its name. Both answers are exact under
/// concurrency: on PostgreSQL the tenant's row is locked first (`FOR UPDATE`, which also
/// excludes [`crate::dns::lock_tenant_records`], so a CNAME written at this moment is either
/// seen here or sees this device); on SQLite a transaction that has written is the only
/// writer, so the checks follow the insert.
pub async fn insert_device_within(
    tx: &mut Tx,
    row: &DeviceRow,
    max: u32,
) -> Result<DeviceInsert, StoreError> {
    if let Tx::Postgres(tx) = &mut *tx {
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(row.tenant_id)
            .fetch_optional(&mut **tx)
            .await?;
    }
    if crate::dns::cname_at(&mut *tx, row.tenant_id, &row.name).await? {
        return Ok(DeviceInsert::NameHeldByCname);
    }
    insert_device(&mut *tx, row).await?;
    let count: i64 = with_conn!(&mut *tx, c => {
        sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE tenant_id = $1")
            .bind(row.tenant_id)
            .fetch_one(&mut *c)
            .await?
    });
    Ok(if count <= i64::from(max) {
        DeviceInsert::Inserted
    } else {
        DeviceInsert::OverLimit
    })
}

/// A device of `tenant`; another tenant's device is `None`, like a missing one.
pub async fn device<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<DeviceRow>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND id = $2");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, DeviceRow>(&sql).bind(tenant).bind(id).fetch_optional(&mut *c).await?
    }))
}

pub async fn device_by_public_key<'a>(
    conn: impl Into<Conn<'a>>,
    key: &str,
) -> Result<Option<DeviceRow>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE wg_public_key = $1");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, DeviceRow>(&sql).bind(key).fetch_optional(&mut *c).await?
    }))
}

/// Every device: the server's in-memory index is built from this at start-up.
pub async fn all_devices<'a>(conn: impl Into<Conn<'a>>) -> Result<Vec<DeviceRow>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices");
    Ok(with_conn!(conn, c => sqlx::query_as::<_, DeviceRow>(&sql).fetch_all(&mut *c).await?))
}

/// The devices among `ids` that still exist (a replica re-reads what another changed).
pub async fn devices_by_ids(
    db: &crate::Database,
    ids: &[Uuid],
) -> Result<Vec<DeviceRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match db {
        crate::Database::Postgres(pool) => {
            let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ANY($1)");
            Ok(sqlx::query_as::<_, DeviceRow>(&sql)
                .bind(ids)
                .fetch_all(pool)
                .await?)
        }
        crate::Database::Sqlite(pool) => {
            let mut rows = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(SQLITE_TOUCH_CHUNK) {
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE id IN ({})",
                    parameter_list(1, chunk.len())
                );
                let mut query = sqlx::query_as::<_, DeviceRow>(&sql);
                for id in chunk {
                    query = query.bind(id);
                }
                rows.extend(query.fetch_all(pool).await?);
            }
            Ok(rows)
        }
    }
}

/// Which devices a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Agents heard from since the cut-off.
    Online,
    /// Agents heard from before the cut-off, not since.
    Offline,
    /// Agents never heard from.
    Pending,
    /// Plain WireGuard peers (they send no heartbeats).
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub status: Option<StatusFilter>,
    /// A heartbeat after this counts as online.
    pub online_since: Option<DateTime<Utc>>,
    pub tag: Option<String>,
    /// Devices whose name contains this.
    pub name: Option<String>,
    /// Names after this one (the previous page's cursor).
    pub after_name: Option<String>,
}

/// One page of `tenant`'s devices by name, in one query whatever the filters.
pub async fn list_devices<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    filter: &DeviceFilter,
    limit: i64,
) -> Result<Vec<DeviceRow>, StoreError> {
    let conn = conn.into();
    // The two dialects spell "array contains" and "substring" differently; nothing else differs.
    let (tags_of, contains, ts) = match backend_of(&conn) {
        Backend::Postgres => (
            "jsonb_array_elements_text(devices.tags) AS t(value)",
            "strpos(name, $4) > 0",
            "::timestamptz",
        ),
        Backend::Sqlite => ("json_each(devices.tags) AS t", "instr(name, $4) > 0", ""),
    };
    let status = match filter.status {
        None => "TRUE",
        Some(StatusFilter::Online) => "kind = 'agent' AND last_seen_at >= $2",
        Some(StatusFilter::Offline) => "kind = 'agent' AND last_seen_at < $2",
        Some(StatusFilter::Pending) => "kind = 'agent' AND last_seen_at IS NULL",
        Some(StatusFilter::Unknown) => "kind = 'plain'",
    };
    // `$2 IS NULL OR TRUE` only mentions the cut-off, so PostgreSQL can type it when the status
    // filter does not use it.
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND ({status}) \
         AND ($2{ts} IS NULL OR TRUE) \
         AND ($3{text} IS NULL OR EXISTS (SELECT 1 FROM {tags_of} WHERE t.value = $3)) \
         AND ($4{text} IS NULL OR {contains}) \
         AND name > $5 ORDER BY name LIMIT $6",
        text = if ts.is_empty() { "" } else { "::text" },
    );
    let after = filter.after_name.clone().unwrap_or_default();
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, DeviceRow>(&sql)
            .bind(tenant)
            .bind(filter.online_since)
            .bind(&filter.tag)
            .bind(&filter.name)
            .bind(&after)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
    }))
}

/// Rename and/or retag a device of `tenant`.
pub async fn update_device<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
    name: &str,
    tags: &[String],
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("UPDATE devices SET name = $1, tags = $2 WHERE tenant_id = $3 AND id = $4")
            .bind(name)
            .bind(Json(tags))
            .bind(tenant)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}

/// Replace a device's agent credential (re-registration with the same key).
pub async fn set_credential<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
    credential_hash: &[u8],
    hostname: &str,
    os: &str,
    agent_version: &str,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query(
            "UPDATE devices SET credential_hash = $1, hostname = $2, os = $3, agent_version = $4 \
             WHERE id = $5",
        )
        .bind(credential_hash)
        .bind(hostname)
        .bind(os)
        .bind(agent_version)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    found(affected)
}

pub async fn delete_device<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("DELETE FROM devices WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}

/// `$first, $first+1, ...`: `count` numbered parameters, for an `IN (...)` list on SQLite
/// (PostgreSQL binds the whole list as one array parameter).
fn parameter_list(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most ids one `touch_last_seen` statement carries on SQLite (its bound-parameter limit is
/// 32766; PostgreSQL takes the whole batch as one array parameter).
pub const SQLITE_TOUCH_CHUNK: usize = 500;

/// Set `last_seen_at = at` for `ids`: one statement on PostgreSQL, one per
/// [`SQLITE_TOUCH_CHUNK`] ids on SQLite, all in one transaction. Returns the rows updated.
pub async fn touch_last_seen(
    db: &crate::Database,
    ids: &[Uuid],
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    match db {
        crate::Database::Postgres(pool) => Ok(sqlx::query(
            "UPDATE devices SET last_seen_at = $1 WHERE id = ANY($2) \
             AND (last_seen_at IS NULL OR last_seen_at < $1)",
        )
        .bind(at)
        .bind(ids)
        .execute(pool)
        .await?
        .rows_affected()),
        crate::Database::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let mut updated = 0;
            for chunk in ids.chunks(SQLITE_TOUCH_CHUNK) {
                let sql = format!(
                    "UPDATE devices SET last_seen_at = $1 WHERE id IN ({}) \
                     AND (last_seen_at IS NULL OR last_seen_at < $1)",
                    parameter_list(2, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(at);
                for id in chunk {
                    query = query.bind(id);
                }
                updated += query.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(updated)
        }
    }
}

/// New host facts for one device, as an agent reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsUpdate {
    pub id: Uuid,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
}

/// Write changed host facts: one statement on PostgreSQL (`UPDATE ... FROM unnest(...)`), one
/// transaction with one prepared statement on SQLite. Returns the rows updated (a device
/// deleted meanwhile is skipped).
pub async fn update_facts_batch(
    db: &crate::Database,
    updates: &[FactsUpdate],
) -> Result<u64, StoreError> {
    if updates.is_empty() {
        return Ok(0);
    }
    match db {
        crate::Database::Postgres(pool) => {
            let ids: Vec<Uuid> = updates.iter().map(|u| u.id).collect();
            let hostnames: Vec<&str> = updates.iter().map(|u| u.hostname.as_str()).collect();
            let oses: Vec<&str> = updates.iter().map(|u| u.os.as_str()).collect();
            let versions: Vec<&str> = updates.iter().map(|u| u.agent_version.as_str()).collect();
            Ok(sqlx::query(
                "UPDATE devices AS d SET hostname = v.hostname, os = v.os, \
                 agent_version = v.agent_version \
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) \
                 AS v(id, hostname, os, agent_version) WHERE d.id = v.id",
            )
            .bind(&ids)
            .bind(&hostnames)
            .bind(&oses)
            .bind(&versions)
            .execute(pool)
            .await?
            .rows_affected())
        }
        crate::Database::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let mut updated = 0;
            for update in updates {
                updated += sqlx::query(
                    "UPDATE devices SET hostname = $1, os = $2, agent_version = $3 WHERE id = $4",
                )
                .bind(&update.hostname)
                .bind(&update.os)
                .bind(&update.agent_version)
                .bind(update.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(updated)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OnboardingTokenRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub description: String,
    pub max_uses: i32,
    pub uses: i32,
    pub tags: Json<Vec<String>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str =
    "id, tenant_id, description, max_uses, uses, tags, created_by, created_at, expires_at, revoked_at";

/// Why a token cannot enroll a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Revoked,
    Expired,
    UsedUp,
}

impl OnboardingTokenRow {
    pub fn problem(&self, now: DateTime<Utc>) -> Option<TokenProblem> {
        if self.revoked_at.is_some() {
            Some(TokenProblem::Revoked)
        } else if self.expires_at.is_some_and(|at| at <= now) {
            Some(TokenProblem::Expired)
        } else if self.uses >= self.max_uses {
            Some(TokenProblem::UsedUp)
        } else {
            None
        }
    }
}

pub async fn create_onboarding_token<'a>(
    conn: impl Into<Conn<'a>>,
    row: &OnboardingTokenRow,
    token_hash: &[u8],
) -> Result<(), StoreError> {
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO onboarding_tokens (id, tenant_id, description, token_hash, max_uses, uses, \
             tags, created_by, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(row.id)
        .bind(row.tenant_id)
        .bind(&row.description)
        .bind(token_hash)
        .bind(row.max_uses)
        .bind(row.uses)
        .bind(&row.tags)
        .bind(&row.created_by)
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(row.revoked_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

pub async fn onboarding_token_by_hash<'a>(
    conn: impl Into<Conn<'a>>,
    token_hash: &[u8],
) -> Result<Option<OnboardingTokenRow>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM onboarding_tokens WHERE token_hash = $1");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, OnboardingTokenRow>(&sql).bind(token_hash).fetch_optional(&mut *c).await?
    }))
}

pub async fn onboarding_token<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<OnboardingTokenRow>, StoreError> {
    let sql =
        format!("SELECT {TOKEN_COLUMNS} FROM onboarding_tokens WHERE tenant_id = $1 AND id = $2");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, OnboardingTokenRow>(&sql).bind(tenant).bind(id).fetch_optional(&mut *c).await?
    }))
}

pub async fn list_onboarding_tokens<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
) -> Result<Vec<OnboardingTokenRow>, StoreError> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM onboarding_tokens WHERE tenant_id = $1 ORDER BY created_at DESC"
    );
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, OnboardingTokenRow>(&sql).bind(tenant).fetch_all(&mut *c).await?
    }))
}

pub async fn revoke_onboarding_token<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let affected = with_conn!(conn, c => {
        sqlx::query(
            "UPDATE onboarding_tokens SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE tenant_id = $2 AND id = $3",
        )
        .bind(now)
        .bind(tenant)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    found(affected)
}

/// Take one use of a token, only if it is still valid at `now`: concurrent registrations can
/// never use it more than `max_uses` times. Returns whether a use was taken.
pub async fn consume_onboarding_token<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query(
            "UPDATE onboarding_tokens SET uses = uses + 1 WHERE id = $1 AND uses < max_uses \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(affected == 1)
}
