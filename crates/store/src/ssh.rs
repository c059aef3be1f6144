//! The SSH certificate authority's records: CA keys (fingerprints; the keys are files the
//! server keeps), per-tenant settings and serial counter, principal grants, issued
//! certificates and revocations.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::tenants::{found, TenantRow};
use crate::tx::Conn;
use crate::StoreError;

/// One CA key of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CaRow {
    pub tenant_id: Uuid,
    /// `user` or `host`.
    pub kind: String,
    pub generation: i32,
    /// The private key's file name in the CA directory (`ca_<slug>_<kind>`, later generations
    /// with a `_g<n>` suffix).
    pub file_name: String,
    pub fingerprint: String,
    pub public_key: String,
    pub state: crate::CaState,
    pub created_at: DateTime<Utc>,
    pub retire_at: Option<DateTime<Utc>>,
}

const CA_COLUMNS: &str =
    "tenant_id, kind, generation, file_name, fingerprint, public_key, state, created_at, retire_at";

/// Record a CA key; an existing (tenant, kind, generation) is [`StoreError::Conflict`].
pub async fn insert_ca<'a>(conn: impl Into<Conn<'a>>, row: &CaRow) -> Result<(), StoreError> {
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO ssh_cas (tenant_id, kind, generation, file_name, fingerprint, public_key, \
             state, created_at, retire_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(row.tenant_id)
        .bind(&row.kind)
        .bind(row.generation)
        .bind(&row.file_name)
        .bind(&row.fingerprint)
        .bind(&row.public_key)
        .bind(row.state)
        .bind(row.created_at)
        .bind(row.retire_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// The CA keys of `tenant` trusted at `now`: not retired, and not retiring with their grace
/// period over. By kind and generation.
pub async fn cas_of_tenant<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<CaRow>, StoreError> {
    let sql = format!(
        "SELECT {CA_COLUMNS} FROM ssh_cas WHERE tenant_id = $1 AND state <> 'retired' \
         AND (retire_at IS NULL OR retire_at > $2) ORDER BY kind, generation"
    );
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, CaRow>(&sql).bind(tenant).bind(now).fetch_all(&mut *c).await?
    }))
}

/// Start a rotation: the active CA of `kind` becomes `retiring` until `retire_at` (those
/// already retiring keep their earlier end). Insert the new one with [`insert_ca`].
pub async fn retire_active<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    kind: &str,
    retire_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    with_conn!(conn, c => {
        sqlx::query(
            "UPDATE ssh_cas SET state = 'retiring', retire_at = $1 WHERE tenant_id = $2 \
             AND kind = $3 AND state = 'active'",
        )
        .bind(retire_at)
        .bind(tenant)
        .bind(kind)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// The highest generation of `kind` a tenant ever had (0 if none).
pub async fn max_generation<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    kind: &str,
) -> Result<i32, StoreError> {
    let max: Option<i32> = with_conn!(conn, c => {
        sqlx::query_scalar("SELECT MAX(generation) FROM ssh_cas WHERE tenant_id = $1 AND kind = $2")
            .bind(tenant)
            .bind(kind)
            .fetch_one(&mut *c)
            .await?
    });
    Ok(max.unwrap_or(0))
}

/// Every CA key trusted at `now`, with its tenant's slug: what the health check verifies.
pub async fn all_live_cas<'a>(
    conn: impl Into<Conn<'a>>,
    now: DateTime<Utc>,
) -> Result<Vec<(String, CaRow)>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Joined {
        slug: String,
        #[sqlx(flatten)]
        ca: CaRow,
    }
    let sql = "SELECT t.slug, c.tenant_id, c.kind, c.generation, c.file_name, c.fingerprint, \
               c.public_key, c.state, c.created_at, c.retire_at FROM ssh_cas c \
               JOIN tenants t ON t.id = c.tenant_id WHERE c.state <> 'retired' \
               AND (c.retire_at IS NULL OR c.retire_at > $1) \
               ORDER BY t.slug, c.kind, c.generation";
    let rows: Vec<Joined> = with_conn!(conn, c => {
        sqlx::query_as::<_, Joined>(sql).bind(now).fetch_all(&mut *c).await?
    });
    Ok(rows.into_iter().map(|j| (j.slug, j.ca)).collect())
}

/// Tenants that have no CA record at all (created before the SSH CA existed, or by the
/// bootstrap).
pub async fn tenants_without_ca<'a>(
    conn: impl Into<Conn<'a>>,
) -> Result<Vec<TenantRow>, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, TenantRow>(
            "SELECT id, slug, name, created_at FROM tenants t WHERE NOT EXISTS \
             (SELECT 1 FROM ssh_cas c WHERE c.tenant_id = t.id) ORDER BY slug",
        )
        .fetch_all(&mut *c)
        .await?
    }))
}

/// A tenant's SSH settings and counters.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SettingsRow {
    pub tenant_id: Uuid,
    pub default_validity_secs: i64,
    pub max_validity_secs: i64,
    pub next_serial: i64,
    pub krl_version: i64,
    pub updated_at: DateTime<Utc>,
}

/// Create a tenant's settings row unless it exists.
pub async fn ensure_settings<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    default_validity_secs: i64,
    max_validity_secs: i64,
) -> Result<(), StoreError> {
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO ssh_settings (tenant_id, default_validity_secs, max_validity_secs, \
             next_serial, krl_version, updated_at) VALUES ($1, $2, $3, 1, 0, $4) \
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(default_validity_secs)
        .bind(max_validity_secs)
        .bind(Utc::now())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

pub async fn settings<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
) -> Result<Option<SettingsRow>, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, SettingsRow>(
            "SELECT tenant_id, default_validity_secs, max_validity_secs, next_serial, krl_version, \
             updated_at FROM ssh_settings WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_optional(&mut *c)
        .await?
    }))
}

/// Set a tenant's validity bounds. `NotFound` if the tenant has no settings row.
pub async fn set_validity<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    default_validity_secs: i64,
    max_validity_secs: i64,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query(
            "UPDATE ssh_settings SET default_validity_secs = $1, max_validity_secs = $2, \
             updated_at = $3 WHERE tenant_id = $4",
        )
        .bind(default_validity_secs)
        .bind(max_validity_secs)
        .bind(Utc::now())
        .bind(tenant)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    found(affected)
}

/// A serial taken from a tenant's counter, with the tenant's validity bounds read in the
/// same statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Allocated {
    pub serial: i64,
    pub default_validity_secs: i64,
    pub max_validity_secs: i64,
}

/// Take the tenant's next certificate serial. Inside a transaction the row stays locked until
/// commit, so concurrent signings get distinct serials and a rolled-back one is reused.
/// `NotFound` when the tenant has no SSH settings (no CA).
pub async fn allocate_serial<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
) -> Result<Allocated, StoreError> {
    let allocated: Option<Allocated> = with_conn!(conn, c => {
        sqlx::query_as(
            "UPDATE ssh_settings SET next_serial = next_serial + 1 WHERE tenant_id = $1 \
             RETURNING next_serial - 1 AS serial, default_validity_secs, max_validity_secs",
        )
        .bind(tenant)
        .fetch_optional(&mut *c)
        .await?
    });
    allocated.ok_or(StoreError::NotFound)
}

/// Reserve `count` consecutive serials of a tenant in one short statement of its own and
/// return the first. Used on PostgreSQL so that signings do not queue on the tenant's serial
/// row until their commit (see `SshAuthority::next_serial`). `NotFound` without settings.
pub async fn reserve_serials<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    count: i64,
) -> Result<i64, StoreError> {
    let first: Option<(i64,)> = with_conn!(conn, c => {
        sqlx::query_as(
            "UPDATE ssh_settings SET next_serial = next_serial + $2 WHERE tenant_id = $1 \
             RETURNING next_serial - $2",
        )
        .bind(tenant)
        .bind(count)
        .fetch_optional(&mut *c)
        .await?
    });
    first.map(|(first,)| first).ok_or(StoreError::NotFound)
}

/// Count a change to the tenant's revocations: the KRL's version.
pub async fn bump_krl_version<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("UPDATE ssh_settings SET krl_version = krl_version + 1 WHERE tenant_id = $1")
            .bind(tenant)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}

/// Who may be which principals: a user (`user_id`) or every member with `role`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GrantRow {
    pub user_id: Option<Uuid>,
    pub role: Option<String>,
    pub principals: Json<Vec<String>>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Whose grant: one user's, or one role's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantSubject<'s> {
    User(Uuid),
    Role(&'s str),
}

pub async fn grants<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
) -> Result<Vec<GrantRow>, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, GrantRow>(
            "SELECT user_id, role, principals, updated_by, updated_at FROM ssh_principal_grants \
             WHERE tenant_id = $1 ORDER BY role, user_id",
        )
        .bind(tenant)
        .fetch_all(&mut *c)
        .await?
    }))
}

/// Replace a subject's grant; an empty list removes it.
pub async fn set_grant<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    subject: GrantSubject<'_>,
    principals: &[String],
    by: &str,
) -> Result<(), StoreError> {
    let (user, role) = match subject {
        GrantSubject::User(id) => (Some(id), None),
        GrantSubject::Role(role) => (None, Some(role)),
    };
    with_conn!(conn, c => {
        sqlx::query(
            "DELETE FROM ssh_principal_grants WHERE tenant_id = $1 AND (user_id = $2 OR role = $3)",
        )
        .bind(tenant)
        .bind(user)
        .bind(role)
        .execute(&mut *c)
        .await?;
        if !principals.is_empty() {
            sqlx::query(
                "INSERT INTO ssh_principal_grants (tenant_id, user_id, role, principals, \
                 updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant)
            .bind(user)
            .bind(role)
            .bind(Json(principals))
            .bind(by)
            .bind(Utc::now())
            .execute(&mut *c)
            .await?;
        }
    });
    Ok(())
}

/// The principals a caller may get in `tenant`: their own grant (if a user) and their role's.
pub async fn principals_for<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    user: Option<Uuid>,
    role: &str,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<Json<Vec<String>>> = with_conn!(conn, c => {
        sqlx::query_scalar(
            "SELECT principals FROM ssh_principal_grants WHERE tenant_id = $1 \
             AND (user_id = $2 OR role = $3)",
        )
        .bind(tenant)
        .bind(user)
        .bind(role)
        .fetch_all(&mut *c)
        .await?
    });
    let mut all: Vec<String> = rows.into_iter().flat_map(|j| j.0).collect();
    all.sort();
    all.dedup();
    Ok(all)
}

/// A certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CertRow {
    pub tenant_id: Uuid,
    pub serial: i64,
    /// `user` or `host`.
    pub kind: crate::CertKind,
    pub key_id: String,
    pub user_id: Option<Uuid>,
    /// The user name (or API token) for user certificates, the device name for host ones.
    pub subject: String,
    pub device_id: Option<Uuid>,
    pub principals: Json<Vec<String>>,
    pub key_fingerprint: String,
    pub ca_generation: i32,
    pub valid_after: DateTime<Utc>,
    pub valid_before: DateTime<Utc>,
    pub request_id: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const CERT_COLUMNS: &str = "tenant_id, serial, kind, key_id, user_id, subject, device_id, \
    principals, key_fingerprint, ca_generation, valid_after, valid_before, request_id, \
    created_at, revoked_at";

pub async fn insert_certificate<'a>(
    conn: impl Into<Conn<'a>>,
    row: &CertRow,
) -> Result<(), StoreError> {
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO ssh_certificates (tenant_id, serial, kind, key_id, user_id, subject, \
             device_id, principals, key_fingerprint, ca_generation, valid_after, valid_before, \
             request_id, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(row.tenant_id)
        .bind(row.serial)
        .bind(row.kind)
        .bind(&row.key_id)
        .bind(row.user_id)
        .bind(&row.subject)
        .bind(row.device_id)
        .bind(&row.principals)
        .bind(&row.key_fingerprint)
        .bind(row.ca_generation)
        .bind(row.valid_after)
        .bind(row.valid_before)
        .bind(&row.request_id)
        .bind(row.created_at)
        .bind(row.revoked_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// The newest certificates of `tenant` (optionally one user's), newest first.
pub async fn list_certificates<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    user: Option<Uuid>,
    limit: i64,
) -> Result<Vec<CertRow>, StoreError> {
    let sql = format!(
        "SELECT {CERT_COLUMNS} FROM ssh_certificates WHERE tenant_id = $1 \
         AND ($2 IS NULL OR user_id = $2) ORDER BY serial DESC LIMIT $3"
    );
    // PostgreSQL cannot type a bare `$2 IS NULL`; the cast is harmless on SQLite's side only
    // when absent, so the statement differs by backend.
    let conn = conn.into();
    let sql = match &conn {
        Conn::Db(crate::Database::Postgres(_)) | Conn::Tx(crate::Tx::Postgres(_)) => {
            sql.replace("$2 IS NULL", "$2::uuid IS NULL")
        }
        _ => sql,
    };
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, CertRow>(&sql)
            .bind(tenant)
            .bind(user)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
    }))
}

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    Serial(i64),
    KeyId(String),
    /// Every current certificate of a user (also one deleted since: the column keeps the id).
    User(Uuid),
    /// Every current host certificate of a device (deleted devices keep theirs listed).
    Device(Uuid),
}

impl RevokeTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            RevokeTarget::Serial(_) => "serial",
            RevokeTarget::KeyId(_) => "key_id",
            RevokeTarget::User(_) => "user",
            RevokeTarget::Device(_) => "device",
        }
    }

    pub fn value(&self) -> String {
        match self {
            RevokeTarget::Serial(serial) => serial.to_string(),
            RevokeTarget::KeyId(id) => id.clone(),
            RevokeTarget::User(id) | RevokeTarget::Device(id) => id.to_string(),
        }
    }
}

/// Mark the certificates `target` names as revoked (those not revoked yet), record the
/// revocation and bump the KRL version. Returns how many certificates it marked.
pub async fn revoke<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    target: &RevokeTarget,
    reason: &str,
    by: &str,
) -> Result<u64, StoreError> {
    let now = Utc::now();
    let column = match target {
        RevokeTarget::Serial(_) => "serial",
        RevokeTarget::KeyId(_) => "key_id",
        RevokeTarget::User(_) => "user_id",
        RevokeTarget::Device(_) => "device_id",
    };
    let update = format!(
        "UPDATE ssh_certificates SET revoked_at = $1 WHERE tenant_id = $2 AND {column} = $3 \
         AND revoked_at IS NULL"
    );
    let marked = with_conn!(conn, c => {
        let query = sqlx::query(&update).bind(now).bind(tenant);
        let query = match target {
            RevokeTarget::Serial(v) => query.bind(*v),
            RevokeTarget::KeyId(v) => query.bind(v.as_str()),
            RevokeTarget::User(v) | RevokeTarget::Device(v) => query.bind(*v),
        };
        let marked = query.execute(&mut *c).await?.rows_affected();
        sqlx::query(
            "INSERT INTO ssh_revocations (id, tenant_id, kind, value, reason, created_by, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::new_v4())
        .bind(tenant)
        .bind(target.kind())
        .bind(target.value())
        .bind(reason)
        .bind(by)
        .bind(now)
        .execute(&mut *c)
        .await?;
        sqlx::query("UPDATE ssh_settings SET krl_version = krl_version + 1 WHERE tenant_id = $1")
            .bind(tenant)
            .execute(&mut *c)
            .await?;
        marked
    });
    Ok(marked)
}

/// Whether the tenant's CA ever issued a certificate to `user`: such a user stays revocable by
/// user after leaving the tenant or being deleted.
pub async fn has_certificates_of_user<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    user: Uuid,
) -> Result<bool, StoreError> {
    let found: Option<i64> = with_conn!(conn, c => {
        sqlx::query_scalar(
            "SELECT serial FROM ssh_certificates WHERE tenant_id = $1 AND user_id = $2 LIMIT 1",
        )
        .bind(tenant)
        .bind(user)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(found.is_some())
}

/// A revoked certificate the KRL must still list (it has not expired).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RevokedCert {
    pub serial: i64,
    pub kind: String,
    pub ca_generation: i32,
}

/// What `tenant`'s KRL lists at `now`: revoked certificates still within their validity, and
/// revoked key ids.
pub async fn revocations_for_krl<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<(Vec<RevokedCert>, Vec<String>), StoreError> {
    Ok(with_conn!(conn, c => {
        let certs = sqlx::query_as::<_, RevokedCert>(
            "SELECT serial, kind, ca_generation FROM ssh_certificates WHERE tenant_id = $1 \
             AND revoked_at IS NOT NULL AND valid_before > $2 ORDER BY serial",
        )
        .bind(tenant)
        .bind(now)
        .fetch_all(&mut *c)
        .await?;
        let key_ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT value FROM ssh_revocations WHERE tenant_id = $1 AND kind = 'key_id' \
             ORDER BY value",
        )
        .bind(tenant)
        .fetch_all(&mut *c)
        .await?;
        (certs, key_ids)
    }))
}
