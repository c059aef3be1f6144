//! Store rows to wire types.

use chrono::{DateTime, SecondsFormat, Utc};
use watchgrid_store::audit::AuditRow;
use watchgrid_store::sessions::ApiTokenRow;
use watchgrid_store::tenants::TenantRow;
use watchgrid_store::users::UserRow;
use watchgrid_wire::{ApiToken, AuditEntry, Role, Tenant, User};

pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn tenant(row: &TenantRow) -> Tenant {
    Tenant {
        id: row.id.to_string(),
        slug: row.slug.clone(),
        name: row.name.clone(),
        created_at: time(row.created_at),
    }
}

pub fn user(row: &UserRow, role: Option<Role>) -> User {
    User {
        id: row.id.to_string(),
        username: row.username.clone(),
        is_superadmin: row.is_superadmin,
        must_change_password: row.must_change_password,
        disabled: row.disabled,
        role,
        created_at: time(row.created_at),
    }
}

pub fn api_token(row: &ApiTokenRow) -> ApiToken {
    ApiToken {
        id: row.id.to_string(),
        name: row.name.clone(),
        role: row.role,
        tenant: row.tenant_slug.clone(),
        created_by: row.created_by.clone(),
        created_at: time(row.created_at),
        expires_at: row.expires_at.map(time),
        last_used_at: row.last_used_at.map(time),
        revoked: row.revoked_at.is_some(),
    }
}

pub fn audit_entry(row: AuditRow) -> AuditEntry {
    AuditEntry {
        id: row.id,
        timestamp: time(row.timestamp),
        admin_user: row.admin_user,
        action: row.action,
        resource_type: row.resource_type,
        resource_id: row.resource_id,
        tenant: row.tenant,
        client_addr: row.client_addr,
        success: row.success,
        details: row.details.0,
    }
}
