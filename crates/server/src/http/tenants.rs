//! `/api/tenants`: superadmins manage tenants.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use watchgrid_store::{tenants, Constraint, StoreError};
use watchgrid_wire::{CreateTenant, ErrorBody, FieldError, Tenant, UpdateTenant};

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::audit::{audited, Outcome};
use crate::auth::{ClientAddr, MaybeScope, Principal};
use crate::state::AppState;
use watchgrid_core::validate;

#[utoipa::path(get, path = "/api/tenants", tag = "tenants", security(("bearer" = [])), responses((status = 200, body = Vec<Tenant>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<Tenant>>> {
    let rows = tenants::list_tenants(&state.db).await?;
    Ok(Json(rows.iter().map(convert::tenant).collect()))
}

#[utoipa::path(get, path = "/api/tenants/{slug}", tag = "tenants", security(("bearer" = [])), params(("slug" = String, Path)), responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let row = tenants::tenant_by_slug(&state.db, &slug)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(convert::tenant(&row)))
}

#[utoipa::path(post, path = "/api/tenants", tag = "tenants", security(("bearer" = [])), request_body = CreateTenant, responses((status = 201, body = Tenant), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    MaybeScope(scope): MaybeScope,
    client: ClientAddr,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let ctx = crate::audit::context(&principal, scope.as_ref(), client);
    let tenant = audited(
        &state.db,
        &ctx,
        "tenant.create",
        "tenant",
        Some(body.slug.clone()),
        async |tx| {
            let mut problems = Vec::new();
            if let Err(reason) = validate::tenant_slug(&body.slug) {
                problems.push(FieldError::new("slug", reason));
            }
            if let Err(reason) = validate::display_name(&body.name) {
                problems.push(FieldError::new("name", reason));
            }
            if !problems.is_empty() {
                return Err(ApiError::Validation(problems));
            }
            let row = tenants::create_tenant(&mut *tx, &body.slug, body.name.trim())
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(Constraint::TenantSlug) => ApiError::Conflict(format!(
                        "a tenant with slug {:?} already exists",
                        body.slug
                    )),
                    other => other.into(),
                })?;
            let cas = state
                .ssh
                .create_tenant_cas(tx, &row)
                .await
                .map_err(|e| match e {
                    crate::ssh::CaSetupError::Store(e) => ApiError::from(e),
                    crate::ssh::CaSetupError::Files(detail) => {
                        ApiError::Internal(format!("creating the tenant's SSH CA keys: {detail}"))
                    }
                })?;
            let fingerprints: Vec<_> = cas
                .iter()
                .map(|c| json!({"kind": c.kind, "fingerprint": c.fingerprint}))
                .collect();
            Ok(Outcome::new(
                row.clone(),
                row.slug,
                json!({"name": row.name, "ssh_cas": fingerprints}),
            ))
        },
    )
    .await?;
    state.fleet.dns.tenant_added(tenant.id, &tenant.slug);
    Ok((StatusCode::CREATED, Json(convert::tenant(&tenant))))
}

#[utoipa::path(patch, path = "/api/tenants/{slug}", tag = "tenants", security(("bearer" = [])), params(("slug" = String, Path)), request_body = UpdateTenant, responses((status = 200, body = Tenant), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    MaybeScope(scope): MaybeScope,
    client: ClientAddr,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    let ctx = crate::audit::context(&principal, scope.as_ref(), client);
    let tenant = audited(
        &state.db,
        &ctx,
        "tenant.update",
        "tenant",
        Some(slug.clone()),
        async |tx| {
            validate::display_name(&body.name).map_err(|r| ApiError::invalid("name", r))?;
            let mut row = tenants::tenant_by_slug(&mut *tx, &slug)
                .await?
                .ok_or(ApiError::NotFound)?;
            tenants::rename_tenant(&mut *tx, row.id, body.name.trim()).await?;
            let old = std::mem::replace(&mut row.name, body.name.trim().to_owned());
            Ok(Outcome::new(
                row.clone(),
                &row.slug,
                json!({"name": row.name, "previous_name": old}),
            ))
        },
    )
    .await?;
    Ok(Json(convert::tenant(&tenant)))
}

#[utoipa::path(delete, path = "/api/tenants/{slug}", tag = "tenants", security(("bearer" = [])), params(("slug" = String, Path)), responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    MaybeScope(scope): MaybeScope,
    client: ClientAddr,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    let ctx = crate::audit::context(&principal, scope.as_ref(), client);
    let id = audited(
        &state.db,
        &ctx,
        "tenant.delete",
        "tenant",
        Some(slug.clone()),
        async |tx| {
            let row = tenants::tenant_by_slug(&mut *tx, &slug)
                .await?
                .ok_or(ApiError::NotFound)?;
            if tenants::list_tenants(&mut *tx).await?.len() <= 1 {
                return Err(ApiError::Conflict(
                    "the last tenant cannot be deleted".into(),
                ));
            }
            tenants::delete_tenant(&mut *tx, row.id).await?;
            Ok(Outcome::new(row.id, &row.slug, json!({"id": row.id})))
        },
    )
    .await?;
    // The database dropped the tenant's devices with it (ON DELETE CASCADE); the in-memory
    // fleet must too, or their peers and credentials would live on until a restart.
    for device in state.fleet.index.all() {
        if device.tenant_id == id {
            state.fleet.apply_removed(device.id);
        }
    }
    state.fleet.dns.tenant_removed(id);
    Ok(StatusCode::NO_CONTENT)
}
