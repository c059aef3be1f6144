//! `/api/auth/*`: login, refresh, logout, whoami, password change.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::json;
use watchgrid_store::{audit as audit_store, sessions, tenants, users};
use watchgrid_wire::{
    ChangePassword, ErrorBody, LoginRequest, LoginResponse, RefreshRequest, Whoami,
};

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::audit::{audited, record_failure, AuditContext, Outcome};
use crate::auth::tokens::{self, ACCESS_TOKEN_TTL, REFRESH_PREFIX, SESSION_TTL};
use crate::auth::{ClientAddr, Credential, MaybeScope, Principal};
use crate::metrics::LoginFailure;
use crate::state::AppState;
use watchgrid_core::validate;

/// `POST /api/auth/login`. Every attempt is audited; failures take the same time and get the
/// same answer whether or not the user exists, and log `invalid credentials` with the client
/// address. Rate-limited per client address and per account name and address (IPv6 by /64), so
/// a flood from elsewhere never locks the owner out; shed with 429 when the password-check
/// queue is full.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, responses((status = 200, body = LoginResponse), (status = 401, description = "invalid credentials", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let attempted = if validate::username(&body.username).is_ok() {
        body.username.to_lowercase()
    } else {
        "<invalid username>".to_owned()
    };
    let mut ctx = AuditContext {
        actor: attempted.clone(),
        tenant_id: None,
        tenant: None,
        client_addr: Some(client.to_string()),
    };
    let fail = async |ctx: &AuditContext, reason: LoginFailure, err: ApiError| {
        state.metrics.login_failed(reason);
        record_failure(&state.db, ctx, "auth.login", "session", None, &err).await;
        Err(err)
    };

    let limited = state
        .limits
        .check_addr(crate::ratelimit::Limiter::Login, client)
        .and_then(|()| state.limits.check_account(&attempted, client));
    if let Err(retry) = limited {
        tracing::warn!(client = %client, username = %attempted, "login refused: rate limited");
        let err = ApiError::RateLimited {
            retry_after_secs: retry.seconds(),
        };
        return fail(&ctx, LoginFailure::RateLimited, err).await;
    }

    let user = if attempted.starts_with('<') {
        None
    } else {
        users::user_by_name(&state.db, &attempted).await?
    };
    let matched = state
        .hasher
        .verify(
            &body.password,
            user.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await;
    let Ok(matched) = matched else {
        // Shed rather than queue: a long queue would delay every real login behind the flood.
        state.limits.shed_password_check();
        tracing::warn!(client = %client, username = %attempted, "login refused: password checks busy");
        let err = ApiError::RateLimited {
            retry_after_secs: 1,
        };
        return fail(&ctx, LoginFailure::RateLimited, err).await;
    };
    let user = match (user, matched) {
        (Some(user), true) if !user.disabled => user,
        (user, _) => {
            let reason = match user {
                None => LoginFailure::UnknownUser,
                Some(u) if u.disabled && matched => LoginFailure::Disabled,
                Some(_) => LoginFailure::BadPassword,
            };
            tracing::warn!(client = %client, username = %attempted, reason = reason.label(), "invalid credentials");
            return fail(&ctx, reason, ApiError::InvalidCredentials).await;
        }
    };

    let tenant = match &body.tenant {
        Some(slug) => {
            let tenant = tenants::tenant_by_slug(&state.db, slug).await?;
            let visible = match &tenant {
                Some(t) if user.is_superadmin => Some(t.clone()),
                Some(t) => tenants::role_of(&state.db, t.id, user.id)
                    .await?
                    .map(|_| t.clone()),
                None => None,
            };
            match visible {
                Some(t) => Some(t),
                None => {
                    let err = ApiError::invalid(
                        "tenant",
                        "no such tenant, or you are not a member of it",
                    );
                    return fail(&ctx, LoginFailure::InvalidRequest, err).await;
                }
            }
        }
        None => tenants::first_tenant_of(&state.db, user.id).await?,
    };
    ctx.tenant_id = tenant.as_ref().map(|t| t.id);
    ctx.tenant = tenant.as_ref().map(|t| t.slug.clone());

    let refresh = tokens::random_secret(REFRESH_PREFIX);
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    let session = sessions::create_session(
        &mut tx,
        user.id,
        tenant.as_ref().map(|t| t.id),
        &tokens::secret_hash(&refresh),
        Some(&client.to_string()),
        now + SESSION_TTL,
    )
    .await?;
    audit_store::record(
        &mut tx,
        &ctx.entry(
            "auth.login",
            "session",
            Some(session.id.to_string()),
            true,
            json!({"must_change_password": user.must_change_password}),
        ),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(client = %client, username = %user.username, "login succeeded");

    let access_token = state
        .jwt
        .issue(user.id, session.id, session.tenant_id, now)
        .map_err(ApiError::Internal)?;
    let role = match &tenant {
        Some(t) if user.is_superadmin => Some(watchgrid_wire::Role::Owner),
        Some(t) => tenants::role_of(&state.db, t.id, user.id).await?,
        None => None,
    };
    Ok(Json(LoginResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: ACCESS_TOKEN_TTL.num_seconds().unsigned_abs(),
        refresh_token: refresh,
        user: convert::user(&user, role),
        tenant: tenant.as_ref().map(convert::tenant),
    }))
}

/// `POST /api/auth/refresh`: trade a refresh token for new access and refresh tokens. The old
/// refresh token stops working; presenting it again means two parties hold it (one of them
/// copied it), so the whole session is revoked and the reuse audited as `auth.refresh_reuse`.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest, responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let old_hash = tokens::secret_hash(body.refresh_token.trim());
    let now = Utc::now();
    let Some(session) = sessions::session_by_refresh_hash(&state.db, &old_hash)
        .await?
        .filter(|s| s.is_active(now))
    else {
        revoke_on_reuse(&state, client, &old_hash).await?;
        return Err(ApiError::Unauthorized);
    };
    let user = users::user_by_id(&state.db, session.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(ApiError::Unauthorized)?;
    let refresh = tokens::random_secret(REFRESH_PREFIX);
    let mut tx = state.db.begin().await?;
    let rotated =
        sessions::rotate_refresh(&mut tx, &session, &old_hash, &tokens::secret_hash(&refresh))
            .await?;
    tx.commit().await?;
    if !rotated {
        // Another refresh with the same token won the race: the token is retired now, and
        // this is its reuse.
        revoke_on_reuse(&state, client, &old_hash).await?;
        return Err(ApiError::Unauthorized);
    }
    let tenant = match session.tenant_id {
        Some(id) => tenants::tenant_by_id(&state.db, id).await?,
        None => None,
    };
    let role = match &tenant {
        Some(_) if user.is_superadmin => Some(watchgrid_wire::Role::Owner),
        Some(t) => tenants::role_of(&state.db, t.id, user.id).await?,
        None => None,
    };
    let access_token = state
        .jwt
        .issue(user.id, session.id, session.tenant_id, now)
        .map_err(ApiError::Internal)?;
    Ok(Json(LoginResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: ACCESS_TOKEN_TTL.num_seconds().unsigned_abs(),
        refresh_token: refresh,
        user: convert::user(&user, role),
        tenant: tenant.as_ref().map(convert::tenant),
    }))
}

/// If `refresh_hash` is a refresh token its session has already rotated away from, revoke
/// that session (every token of it stops working) and record the reuse.
async fn revoke_on_reuse(
    state: &AppState,
    client: std::net::IpAddr,
    refresh_hash: &[u8],
) -> Result<(), ApiError> {
    let Some(session) = sessions::session_of_retired_refresh(&state.db, refresh_hash).await? else {
        return Ok(());
    };
    let actor = users::user_by_id(&state.db, session.user_id)
        .await?
        .map_or_else(|| session.user_id.to_string(), |u| u.username);
    let tenant = match session.tenant_id {
        Some(id) => tenants::tenant_by_id(&state.db, id).await?,
        None => None,
    };
    let ctx = AuditContext {
        actor: actor.clone(),
        tenant_id: tenant.as_ref().map(|t| t.id),
        tenant: tenant.map(|t| t.slug),
        client_addr: Some(client.to_string()),
    };
    let mut tx = state.db.begin().await?;
    sessions::revoke_session(&mut tx, session.id).await?;
    audit_store::record(
        &mut tx,
        &ctx.entry(
            "auth.refresh_reuse",
            "session",
            Some(session.id.to_string()),
            false,
            json!({"session_revoked": true}),
        ),
    )
    .await?;
    tx.commit().await?;
    tracing::warn!(client = %client, username = %actor, session = %session.id, "refresh token reused: session revoked");
    Ok(())
}

/// `POST /api/auth/logout`: revoke the caller's session (its access and refresh tokens).
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])), responses((status = 204, description = "Session revoked"), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    MaybeScope(scope): MaybeScope,
    client: ClientAddr,
) -> ApiResult<StatusCode> {
    let Credential::Session { session_id } = principal.credential else {
        return Err(ApiError::BadRequest(
            "API tokens do not log out; revoke them with DELETE /api/tokens/{id}".into(),
        ));
    };
    let ctx = crate::audit::context(&principal, scope.as_ref(), client);
    audited(
        &state.db,
        &ctx,
        "auth.logout",
        "session",
        Some(session_id.to_string()),
        async |tx| {
            sessions::revoke_session(tx, session_id).await?;
            Ok(Outcome::new((), session_id, json!({})))
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/auth/whoami`.
#[utoipa::path(get, path = "/api/auth/whoami", tag = "auth", security(("bearer" = [])), params(("x-watchgrid-tenant" = Option<String>, Header, description = "Tenant slug to act in")), responses((status = 200, body = Whoami), (status = 401, body = ErrorBody)))]
pub async fn whoami(principal: Principal, MaybeScope(scope): MaybeScope) -> Json<Whoami> {
    Json(Whoami {
        username: principal.name.clone(),
        via: match principal.credential {
            Credential::Session { .. } => "session",
            Credential::ApiToken { .. } => "api_token",
        }
        .to_owned(),
        is_superadmin: principal.is_superadmin,
        tenant: scope.as_ref().map(|s| convert::tenant(&s.tenant)),
        role: scope.as_ref().map(|s| s.role),
        must_change_password: principal.must_change_password,
    })
}

/// `POST /api/auth/password`: change one's own password. Every session of the user is
/// revoked, this one included: log in again with the new password.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", security(("bearer" = [])), request_body = ChangePassword, responses((status = 204, description = "Changed; every session of the user is revoked"), (status = 401, body = ErrorBody), (status = 422, description = "Each failed rule, per field", body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    MaybeScope(scope): MaybeScope,
    client: ClientAddr,
    ApiJson(body): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    let (Credential::Session { .. }, Some(user_id)) = (&principal.credential, principal.user_id)
    else {
        return Err(ApiError::BadRequest("API tokens have no password".into()));
    };
    let ctx = crate::audit::context(&principal, scope.as_ref(), client);
    let check = async || -> Result<String, ApiError> {
        state
            .limits
            .check_account(&principal.name, client.0)
            .map_err(|retry| ApiError::RateLimited {
                retry_after_secs: retry.seconds(),
            })?;
        let user = users::user_by_id(&state.db, user_id)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let matched = state
            .hasher
            .verify(&body.current_password, Some(&user.password_hash))
            .await
            .map_err(|_| ApiError::RateLimited {
                retry_after_secs: 1,
            })?;
        if !matched {
            return Err(ApiError::invalid(
                "current_password",
                "is not your current password",
            ));
        }
        let mut problems: Vec<_> = state
            .password_policy
            .violations(&body.new_password)
            .into_iter()
            .map(|reason| watchgrid_wire::FieldError::new("new_password", reason))
            .collect();
        if body.new_password == body.current_password {
            problems.push(watchgrid_wire::FieldError::new(
                "new_password",
                "must differ from the current password",
            ));
        }
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        state
            .hasher
            .hash(&body.new_password)
            .await
            .map_err(ApiError::Internal)
    };
    let hash = match check().await {
        Ok(hash) => hash,
        Err(err) => {
            record_failure(
                &state.db,
                &ctx,
                "user.password_change",
                "user",
                Some(user_id.to_string()),
                &err,
            )
            .await;
            return Err(err);
        }
    };
    audited(
        &state.db,
        &ctx,
        "user.password_change",
        "user",
        Some(user_id.to_string()),
        async |tx| {
            users::set_password(&mut *tx, user_id, &hash, false).await?;
            let revoked = sessions::revoke_user_sessions(&mut *tx, user_id).await?;
            Ok(Outcome::new(
                (),
                user_id,
                json!({"sessions_revoked": revoked}),
            ))
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
