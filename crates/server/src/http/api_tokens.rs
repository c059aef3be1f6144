//! `/api/tokens`: scoped API tokens for automation, shown once and stored as hashes.
//!
//! A token records its creator, the account on whose authority it acts; `auth::authenticate`
//! caps it at that account's current role in the token's tenant on every request.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use watchgrid_store::sessions::{self, NewApiToken};
use watchgrid_wire::{ApiToken, CreateApiToken, CreatedApiToken, ErrorBody, FieldError};

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::audit::{audited, Outcome};
use crate::auth::tokens::{random_secret, secret_hash, API_TOKEN_PREFIX};
use crate::auth::{ClientAddr, Credential, Principal, Scope};
use crate::state::AppState;
use watchgrid_core::validate;

#[utoipa::path(get, path = "/api/tokens", tag = "tokens", security(("bearer" = [])), responses((status = 200, body = Vec<ApiToken>), (status = 403, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, scope: Scope) -> ApiResult<Json<Vec<ApiToken>>> {
    let rows = sessions::list_api_tokens(&state.db, scope.tenant.id).await?;
    Ok(Json(rows.iter().map(convert::api_token).collect()))
}

#[utoipa::path(post, path = "/api/tokens", tag = "tokens", security(("bearer" = [])), request_body = CreateApiToken, responses((status = 201, description = "The secret is shown only in this response", body = CreatedApiToken), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    ApiJson(body): ApiJson<CreateApiToken>,
) -> ApiResult<(StatusCode, Json<CreatedApiToken>)> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let created = audited(&state.db, &ctx, "token.create", "api_token", None, async |tx| {
        let mut problems = Vec::new();
        if let Err(reason) = validate::display_name(&body.name) {
            problems.push(FieldError::new("name", reason));
        }
        if let Some(days) = body.expires_in_days {
            if !(1..=3650).contains(&days) {
                problems.push(FieldError::new("expires_in_days", "must be from 1 to 3650"));
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        // A token never holds more power than the person who made it.
        if !scope.role.allows(body.role) {
            return Err(ApiError::Forbidden);
        }
        // The person behind it: a token made by a token carries that token's creator, so the
        // new one is capped by the same account's role.
        let creator = match (&principal.credential, principal.user_id) {
            (Credential::ApiToken { creator, .. }, _) => *creator,
            (Credential::Session { .. }, Some(user)) => user,
            (Credential::Session { .. }, None) => return Err(ApiError::Unauthorized),
        };
        let secret = random_secret(API_TOKEN_PREFIX);
        let expires_at = body
            .expires_in_days
            .map(|days| Utc::now() + chrono::Duration::days(i64::from(days)));
        let id = sessions::create_api_token(
            &mut *tx,
            NewApiToken {
                tenant: scope.tenant.id,
                name: body.name.trim(),
                role: body.role,
                token_hash: &secret_hash(&secret),
                created_by: &principal.name,
                creator,
                expires_at,
            },
        )
        .await?;
        let row = sessions::api_token(&mut *tx, scope.tenant.id, id)
            .await?
            .ok_or_else(|| ApiError::Internal("created token vanished".into()))?;
        Ok(Outcome::new(
            CreatedApiToken { token: convert::api_token(&row), secret },
            id,
            json!({"name": row.name, "role": row.role, "expires_at": row.expires_at.map(convert::time)}),
        ))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens", security(("bearer" = [])), params(("id" = String, Path)), responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    audited(
        &state.db,
        &ctx,
        "token.revoke",
        "api_token",
        Some(id.clone()),
        async |tx| {
            let id: Uuid = id.parse().map_err(|_| ApiError::NotFound)?;
            let row = sessions::api_token(&mut *tx, scope.tenant.id, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            if !scope.role.allows(row.role) {
                return Err(ApiError::Forbidden);
            }
            sessions::revoke_api_token(&mut *tx, scope.tenant.id, id).await?;
            Ok(Outcome::new((), id, json!({"name": row.name})))
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
