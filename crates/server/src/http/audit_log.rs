//! `GET /api/audit`: the audit log, filtered and paged newest first.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use watchgrid_store::audit::{self, AuditFilter};
use watchgrid_wire::{AuditEntry, ErrorBody, Page};

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use super::users::page_limit;
use crate::auth::{Principal, Scope};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// An exact action, or a prefix ending in `.` (`auth.`).
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// `all`: every tenant and the rows of no tenant (superadmins only).
    #[serde(default)]
    pub scope: Option<String>,
}

#[utoipa::path(get, path = "/api/audit", tag = "audit", security(("bearer" = [])), params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("user" = Option<String>, Query), ("action" = Option<String>, Query, description = "Exact action, or a prefix ending in `.`"), ("resource_type" = Option<String>, Query), ("success" = Option<bool>, Query), ("since" = Option<String>, Query, description = "RFC 3339"), ("until" = Option<String>, Query, description = "RFC 3339"), ("scope" = Option<String>, Query, description = "`tenant` (default) or `all` (superadmins)")), responses((status = 200, body = Page<AuditEntry>), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let limit = page_limit(query.limit)?;
    let tenant_id = match query.scope.as_deref() {
        None | Some("tenant") => Some(scope.tenant.id),
        Some("all") if principal.is_superadmin => None,
        Some("all") => return Err(ApiError::Forbidden),
        Some(_) => return Err(ApiError::invalid("scope", "must be `tenant` or `all`")),
    };
    let before_id = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor", "is not a cursor this server issued"))
        })
        .transpose()?;
    let filter = AuditFilter {
        tenant_id,
        admin_user: query.user,
        action: query.action,
        resource_type: query.resource_type,
        success: query.success,
        since: query.since,
        until: query.until,
        before_id,
    };
    let rows = audit::list(&state.db, &filter, limit + 1).await?;
    let more = rows.len() > limit as usize;
    let items: Vec<AuditEntry> = rows
        .into_iter()
        .take(limit as usize)
        .map(convert::audit_entry)
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}
