//! User accounts. Usernames are stored lower-case; look-ups lower-case their input.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use watchgrid_wire::Role;

use crate::tenants::{found, parse_role};
use crate::tx::Conn;
use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub is_superadmin: bool,
    pub must_change_password: bool,
    pub disabled: bool,
    pub password_changed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

const USER_COLUMNS: &str = "id, username, password_hash, is_superadmin, must_change_password, \
                            disabled, password_changed_at, created_at";

/// What a new account needs.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub is_superadmin: bool,
    pub must_change_password: bool,
}

/// Create an account; a taken username is [`StoreError::Conflict`].
pub async fn create_user<'a>(
    conn: impl Into<Conn<'a>>,
    new: NewUser<'_>,
) -> Result<UserRow, StoreError> {
    let now = Utc::now();
    let row = UserRow {
        id: Uuid::new_v4(),
        username: new.username.to_lowercase(),
        password_hash: new.password_hash.to_owned(),
        is_superadmin: new.is_superadmin,
        must_change_password: new.must_change_password,
        disabled: false,
        password_changed_at: now,
        created_at: now,
    };
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, is_superadmin, must_change_password, \
             disabled, password_changed_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.id)
        .bind(&row.username)
        .bind(&row.password_hash)
        .bind(row.is_superadmin)
        .bind(row.must_change_password)
        .bind(row.disabled)
        .bind(row.password_changed_at)
        .bind(row.created_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(row)
}

pub async fn user_by_name<'a>(
    conn: impl Into<Conn<'a>>,
    username: &str,
) -> Result<Option<UserRow>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
    let username = username.to_lowercase();
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, UserRow>(&sql).bind(&username).fetch_optional(&mut *c).await?
    }))
}

pub async fn user_by_id<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
) -> Result<Option<UserRow>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, UserRow>(&sql).bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Replace the password hash; `must_change` forces a change at next login.
pub async fn set_password<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
    password_hash: &str,
    must_change: bool,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let affected = with_conn!(conn, c => {
        sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = $2, \
             password_changed_at = $3 WHERE id = $4",
        )
        .bind(password_hash)
        .bind(must_change)
        .bind(now)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    found(affected)
}

pub async fn set_disabled<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
    disabled: bool,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(disabled)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}

pub async fn delete_user<'a>(conn: impl Into<Conn<'a>>, id: Uuid) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}

/// How many tenants `user` belongs to.
pub async fn membership_count<'a>(conn: impl Into<Conn<'a>>, id: Uuid) -> Result<i64, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM memberships WHERE user_id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?
    }))
}

/// A member of a tenant with their role there.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: UserRow,
    pub role: Role,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    #[sqlx(flatten)]
    user: UserRow,
    role: String,
}

/// Members of `tenant` ordered by username, `limit` after the username `after`: one query per
/// page whatever its size.
pub async fn list_members<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Member>, StoreError> {
    let sql = "SELECT u.id, u.username, u.password_hash, u.is_superadmin, u.must_change_password, \
               u.disabled, u.password_changed_at, u.created_at, m.role \
               FROM memberships m JOIN users u ON u.id = m.user_id \
               WHERE m.tenant_id = $1 AND u.username > $2 ORDER BY u.username LIMIT $3";
    let after = after.unwrap_or("");
    let rows = with_conn!(conn, c => {
        sqlx::query_as::<_, MemberRow>(sql)
            .bind(tenant)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
    });
    rows.into_iter()
        .map(|r| {
            Ok(Member {
                role: parse_role(&r.role)?,
                user: r.user,
            })
        })
        .collect()
}

/// One member of `tenant`: `None` when the user does not exist *or* is not in that tenant, so
/// another tenant's users are indistinguishable from missing ones.
pub async fn member<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    user: Uuid,
) -> Result<Option<Member>, StoreError> {
    let sql = "SELECT u.id, u.username, u.password_hash, u.is_superadmin, u.must_change_password, \
               u.disabled, u.password_changed_at, u.created_at, m.role \
               FROM memberships m JOIN users u ON u.id = m.user_id \
               WHERE m.tenant_id = $1 AND u.id = $2";
    let row = with_conn!(conn, c => {
        sqlx::query_as::<_, MemberRow>(sql)
            .bind(tenant)
            .bind(user)
            .fetch_optional(&mut *c)
            .await?
    });
    row.map(|r| {
        Ok(Member {
            role: parse_role(&r.role)?,
            user: r.user,
        })
    })
    .transpose()
}
