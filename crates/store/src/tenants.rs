//! Tenants and memberships (which user holds which role in which tenant).

use chrono::{DateTime, Utc};
use uuid::Uuid;
use watchgrid_wire::Role;

use crate::tx::{Conn, Tx};
use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

const TENANT_COLUMNS: &str = "id, slug, name, created_at";

/// Create a tenant; a taken slug is [`StoreError::Conflict`].
pub async fn create_tenant<'a>(
    conn: impl Into<Conn<'a>>,
    slug: &str,
    name: &str,
) -> Result<TenantRow, StoreError> {
    let row = TenantRow {
        id: Uuid::new_v4(),
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_at: Utc::now(),
    };
    with_conn!(conn, c => {
        sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(row.id)
            .bind(&row.slug)
            .bind(&row.name)
            .bind(row.created_at)
            .execute(&mut *c)
            .await?;
    });
    Ok(row)
}

pub async fn tenant_by_slug<'a>(
    conn: impl Into<Conn<'a>>,
    slug: &str,
) -> Result<Option<TenantRow>, StoreError> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, TenantRow>(&sql).bind(slug).fetch_optional(&mut *c).await?
    }))
}

pub async fn tenant_by_id<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
) -> Result<Option<TenantRow>, StoreError> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, TenantRow>(&sql).bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Every tenant, by slug.
pub async fn list_tenants<'a>(conn: impl Into<Conn<'a>>) -> Result<Vec<TenantRow>, StoreError> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY slug");
    Ok(with_conn!(conn, c => sqlx::query_as::<_, TenantRow>(&sql).fetch_all(&mut *c).await?))
}

/// Rename a tenant (the slug never changes). `NotFound` if it does not exist.
pub async fn rename_tenant<'a>(
    conn: impl Into<Conn<'a>>,
    id: Uuid,
    name: &str,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("UPDATE tenants SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}

/// Delete a tenant with its memberships, sessions' tenant and API tokens.
pub async fn delete_tenant<'a>(conn: impl Into<Conn<'a>>, id: Uuid) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}

pub(crate) fn found(affected: u64) -> Result<(), StoreError> {
    if affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Give `user` `role` in `tenant`, replacing any role they had there.
pub async fn set_membership<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    user: Uuid,
    role: Role,
) -> Result<(), StoreError> {
    let now = Utc::now();
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(tenant)
        .bind(user)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

pub async fn remove_membership<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    user: Uuid,
) -> Result<(), StoreError> {
    let affected = with_conn!(conn, c => {
        sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    found(affected)
}

/// `user`'s role in `tenant`, if any.
pub async fn role_of<'a>(
    conn: impl Into<Conn<'a>>,
    tenant: Uuid,
    user: Uuid,
) -> Result<Option<Role>, StoreError> {
    let role: Option<String> = with_conn!(conn, c => {
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(&mut *c)
            .await?
    });
    role.map(|r| parse_role(&r)).transpose()
}

/// Serialise changes that could take away a tenant's last owner: lock `tenant` and every
/// tenant where `user` is an owner (a disabled account stops owning them all), before anything
/// is read. Counting owners afterwards in the same transaction then sees every earlier change.
///
/// PostgreSQL locks the tenant rows (`FOR UPDATE`, in id order so two callers cannot
/// deadlock). SQLite has one writer at a time: a write as the transaction's first statement
/// takes that lock up front, waiting out the busy timeout rather than failing later on a stale
/// read.
pub async fn lock_for_owner_change(
    tx: &mut Tx,
    tenant: Uuid,
    user: Uuid,
) -> Result<(), StoreError> {
    match tx {
        Tx::Postgres(tx) => {
            sqlx::query(
                "SELECT id FROM tenants WHERE id = $1 OR id IN \
                 (SELECT tenant_id FROM memberships WHERE user_id = $2 AND role = 'owner') \
                 ORDER BY id FOR UPDATE",
            )
            .bind(tenant)
            .bind(user)
            .fetch_all(&mut **tx)
            .await?;
        }
        Tx::Sqlite(tx) => {
            sqlx::query("UPDATE tenants SET id = id WHERE id = $1")
                .bind(tenant)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Slugs of the tenants whose only active owner is `user`, other than `except`: what
/// disabling the account would leave without an owner.
pub async fn sole_owner_elsewhere<'a>(
    conn: impl Into<Conn<'a>>,
    user: Uuid,
    except: Uuid,
) -> Result<Vec<String>, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, String>(
            "SELECT t.slug FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
             WHERE m.user_id = $1 AND m.role = 'owner' AND m.tenant_id <> $2 \
             AND NOT EXISTS (SELECT 1 FROM memberships o JOIN users u ON u.id = o.user_id \
                 WHERE o.tenant_id = m.tenant_id AND o.role = 'owner' AND o.user_id <> $1 \
                 AND u.disabled = FALSE) \
             ORDER BY t.slug",
        )
        .bind(user)
        .bind(except)
        .fetch_all(&mut *c)
        .await?
    }))
}

/// How many owners `tenant` has.
pub async fn count_owners<'a>(conn: impl Into<Conn<'a>>, tenant: Uuid) -> Result<i64, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant_id = $1 AND m.role = 'owner' AND u.disabled = FALSE",
        )
        .bind(tenant)
        .fetch_one(&mut *c)
        .await?
    }))
}

/// The tenant `user` joined first: where a login lands when it names none.
pub async fn first_tenant_of<'a>(
    conn: impl Into<Conn<'a>>,
    user: Uuid,
) -> Result<Option<TenantRow>, StoreError> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as::<_, TenantRow>(
            "SELECT t.id, t.slug, t.name, t.created_at FROM memberships m \
             JOIN tenants t ON t.id = m.tenant_id WHERE m.user_id = $1 \
             ORDER BY m.created_at, t.slug LIMIT 1",
        )
        .bind(user)
        .fetch_optional(&mut *c)
        .await?
    }))
}

pub(crate) fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|e: String| StoreError::Other(format!("corrupt role in database: {e}")))
}
