//! Login sessions (rotating refresh tokens) and scoped API tokens. Only SHA-256 hashes of the
//! secrets are stored.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use watchgrid_wire::Role;

use crate::tenants::{found, parse_role};
use crate::tx::{Conn, Tx};
use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub client_addr: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const SESSION_COLUMNS: &str =
    "id, user_id, tenant_id, client_addr, created_at, last_used_at, expires_at, revoked_at";

impl SessionRow {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

pub async fn create_session<'a>(
    conn: impl Into<Conn<'a>>,
    user: Uuid,
    tenant: Option<Uuid>,
    refresh_hash: &[u8],
    client_addr: Option<&str>,
    expires_at: DateTime<Utc>,
) -> Result<SessionRow, StoreError> {
    let now = Utc::now();
    let row = SessionRow {
        id: Uuid::new_v4(),
        user_id: user,
        tenant_id: tenant,
        client_addr: client_addr.map(str::to_owned),
        created_at: now,
        last_used_at: now,
        expires_at,
        revoked_at: None,
    };
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, tenant_id, refresh_hash, client_addr, created_at, \
             last_used_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.id)
        .bind(row.user_id)
        .bind(row.tenant_id)
        .bind(refresh_hash)
        .bind(&row.client_addr)
        .bind(row.created_at)
        .bind(row.last_used_at)
        .bind(row.expires_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(row)
}

pub async fn session_by_id<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
) -> Result<Option<SessionRow>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, SessionRow>(&sql).bind(id).fetch_optional(&mut *c).await?
    }))
}

pub async fn session_by_refresh_hash<'a>(
    conn: impl Into<Conn<'a>>,
    refresh_hash: &[u8],
) -> Result<Option<SessionRow>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE refresh_hash = $1");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, SessionRow>(&sql).bind(refresh_hash).fetch_optional(&mut *c).await?
    }))
}

/// Swap the refresh token of an active session, only if it still holds `old_hash`: two
/// concurrent refreshes with one token cannot both win. The old token is kept as retired, so
/// that presenting it again is recognised as reuse ([`session_of_retired_refresh`]); retired
/// tokens of expired sessions are dropped on the way.
pub async fn rotate_refresh(
    tx: &mut Tx,
    session: &SessionRow,
    old_hash: &[u8],
    new_hash: &[u8],
) -> Result<bool, StoreError> {
    let now = Utc::now();
    let affected = with_conn!(&mut *tx, c => {
        sqlx::query(
            "UPDATE sessions SET refresh_hash = $1, last_used_at = $2 \
             WHERE id = $3 AND refresh_hash = $4 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(new_hash)
        .bind(now)
        .bind(session.id)
        .bind(old_hash)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if affected != 1 {
        return Ok(false);
    }
    with_conn!(&mut *tx, c => {
        sqlx::query("DELETE FROM retired_refresh_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *c)
            .await?;
        sqlx::query(
            "INSERT INTO retired_refresh_tokens (refresh_hash, session_id, expires_at) \
             VALUES ($1, $2, $3)",
        )
        .bind(old_hash)
        .bind(session.id)
        .bind(session.expires_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(true)
}

/// The session a refresh token belonged to before it was rotated away, if it was one.
pub async fn session_of_retired_refresh<'a>(
    conn: impl Into<Conn<'a>>,
    refresh_hash: &[u8],
) -> Result<Option<SessionRow>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = \
         (SELECT session_id FROM retired_refresh_tokens WHERE refresh_hash = $1)"
    );
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, SessionRow>(&sql).bind(refresh_hash).fetch_optional(&mut *c).await?
    }))
}

pub async fn revoke_session<'a>(conn: impl Into<Conn<'a>>, id: Uuid) -> Result<(), StoreError> {
    let now = Utc::now();
    with_conn!(conn, c => {
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// Revoke every session of `user`; returns how many were active.
pub async fn revoke_user_sessions<'a>(
    conn: impl Into<Conn<'a>>,
    user: Uuid,
) -> Result<u64, StoreError> {
    let now = Utc::now();
    Ok(with_conn!(conn, c => {
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(user)
            .execute(&mut *c)
            .await?
            .rows_affected()
    }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub name: String,
    pub role: Role,
    pub created_by: String,
    /// The account on whose authority the token acts; `None` once that account is deleted
    /// (or, for tokens older than this column, when it could not be traced).
    pub creator_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiTokenRow {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(sqlx::FromRow)]
struct RawApiToken {
    id: Uuid,
    tenant_id: Uuid,
    tenant_slug: String,
    name: String,
    role: String,
    created_by: String,
    creator_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<RawApiToken> for ApiTokenRow {
    type Error = StoreError;
    fn try_from(r: RawApiToken) -> Result<Self, StoreError> {
        Ok(ApiTokenRow {
            id: r.id,
            tenant_id: r.tenant_id,
            tenant_slug: r.tenant_slug,
            name: r.name,
            role: parse_role(&r.role)?,
            created_by: r.created_by,
            creator_id: r.creator_id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

const TOKEN_SELECT: &str = "SELECT a.id, a.tenant_id, t.slug AS tenant_slug, a.name, a.role, \
    a.created_by, a.creator_id, a.created_at, a.expires_at, a.last_used_at, a.revoked_at \
    FROM api_tokens a JOIN tenants t ON t.id = a.tenant_id";

/// What a new API token needs.
#[derive(Debug, Clone)]
pub struct NewApiToken<'a> {
    pub tenant: Uuid,
    pub name: &'a str,
    pub role: Role,
    pub token_hash: &'a [u8],
    pub created_by: &'a str,
    /// The account whose authority the token carries (for a token made by a token, that
    /// token's creator).
    pub creator: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn create_api_token<'a>(
    conn: impl Into<Conn<'a>>,
    new: NewApiToken<'_>,
) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    let now = Utc::now();
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, name, role, token_hash, created_by, creator_id, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(new.tenant)
        .bind(new.name)
        .bind(new.role.as_str())
        .bind(new.token_hash)
        .bind(new.created_by)
        .bind(new.creator)
        .bind(now)
        .bind(new.expires_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(id)
}

/// Where a token's creator stands now in the token's tenant; read with the token itself, so
/// authenticating a token stays one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatorStanding {
    pub is_superadmin: bool,
    pub disabled: bool,
    /// The creator's membership role in the token's tenant; `None` when not a member.
    pub role: Option<Role>,
}

/// A token found by its secret, with its creator's current standing (`None` when the
/// creator's account no longer exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenWithCreator {
    pub token: ApiTokenRow,
    pub creator: Option<CreatorStanding>,
}

#[derive(sqlx::FromRow)]
struct RawTokenWithCreator {
    #[sqlx(flatten)]
    token: RawApiToken,
    creator_superadmin: Option<bool>,
    creator_disabled: Option<bool>,
    creator_role: Option<String>,
}

pub async fn api_token_by_hash<'a>(
    conn: impl Into<Conn<'a>>,
    token_hash: &[u8],
) -> Result<Option<TokenWithCreator>, StoreError> {
    let sql = "SELECT a.id, a.tenant_id, t.slug AS tenant_slug, a.name, a.role, a.created_by, \
               a.creator_id, a.created_at, a.expires_at, a.last_used_at, a.revoked_at, \
               u.is_superadmin AS creator_superadmin, u.disabled AS creator_disabled, \
               m.role AS creator_role \
               FROM api_tokens a JOIN tenants t ON t.id = a.tenant_id \
               LEFT JOIN users u ON u.id = a.creator_id \
               LEFT JOIN memberships m ON m.tenant_id = a.tenant_id AND m.user_id = a.creator_id \
               WHERE a.token_hash = $1";
    let raw = with_conn!(conn, c => {
        sqlx::query_as::<_, RawTokenWithCreator>(sql)
            .bind(token_hash)
            .fetch_optional(&mut *c)
            .await?
    });
    let Some(raw) = raw else { return Ok(None) };
    let creator = match (raw.creator_superadmin, raw.creator_disabled) {
        (Some(is_superadmin), Some(disabled)) => Some(CreatorStanding {
            is_superadmin,
            disabled,
            role: raw.creator_role.as_deref().map(parse_role).transpose()?,
        }),
        _ => None,
    };
    Ok(Some(TokenWithCreator {
        token: ApiTokenRow::try_from(raw.token)?,
        creator,
    }))
}

/// A token of `tenant`; another tenant's token is `None`, like a missing one.
pub async fn api_token<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<ApiTokenRow>, StoreError> {
    let sql = format!("{TOKEN_SELECT} WHERE a.tenant_id = $1 AND a.id = $2");
    let raw = with_conn!(conn, c => {
        sqlx::query_as::<_, RawApiToken>(&sql).bind(tenant).bind(id).fetch_optional(&mut *c).await?
    });
    raw.map(ApiTokenRow::try_from).transpose()
}

pub async fn list_api_tokens<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
) -> Result<Vec<ApiTokenRow>, StoreError> {
    let sql = format!("{TOKEN_SELECT} WHERE a.tenant_id = $1 ORDER BY a.created_at DESC");
    let raw = with_conn!(conn, c => {
        sqlx::query_as::<_, RawApiToken>(&sql).bind(tenant).fetch_all(&mut *c).await?
    });
    raw.into_iter().map(ApiTokenRow::try_from).collect()
}

pub async fn revoke_api_token<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    id: Uuid,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let affected = with_conn!(conn, c => {
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE tenant_id = $2 AND id = $3",
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

/// Record use, at most once a minute per token so that busy automation does not write on
/// every request.
pub async fn touch_api_token<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let stale = now - chrono::Duration::minutes(1);
    with_conn!(conn, c => {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(stale)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}
