//! `/api/users`: tenant administrators manage the users of their tenant.
//!
//! Every query is filtered by the request's tenant, so another tenant's user ids are 404.
//! A tenant's admins control only the accounts that are theirs alone:
//!
//! - Only a superadmin adds an *existing* account to a tenant (a join hands the adder the
//!   account's membership, never its password). Anyone else is refused alike whether or not
//!   the name exists, and a taken name when creating an account gets the same answer whether
//!   it is taken here or elsewhere: the call reveals nothing about other tenants' users.
//! - Any change to a superadmin's account (including its removal from the tenant), and
//!   account-wide changes (disable, password reset) of an account that also belongs to other
//!   tenants, are superadmin-only.
//! - "A tenant always keeps an owner" spans rows: changes that could break it lock the
//!   tenant first ([`tenants::lock_for_owner_change`]), so concurrent ones are serialised.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use watchgrid_store::users::{self, Member, NewUser};
use watchgrid_store::{sessions, tenants, Constraint, StoreError, Tx};
use watchgrid_wire::{CreateUser, ErrorBody, FieldError, Page, Role, UpdateUser, User};

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery};
use crate::audit::{audited, Outcome};
use crate::auth::{ClientAddr, Principal, Scope};
use crate::state::AppState;
use watchgrid_core::validate;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = [])), params(("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query, description = "1-500, default 100"), ("x-watchgrid-tenant" = Option<String>, Header)), responses((status = 200, body = Page<User>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<User>>> {
    let limit = page_limit(query.limit)?;
    let members = users::list_members(
        &state.db,
        scope.tenant.id,
        query.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    let more = members.len() > limit as usize;
    let items: Vec<User> = members
        .iter()
        .take(limit as usize)
        .map(|m| convert::user(&m.user, Some(m.role)))
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|u| u.username.clone()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

pub fn page_limit(limit: Option<u32>) -> Result<i64, ApiError> {
    match limit.unwrap_or(100) {
        n @ 1..=500 => Ok(i64::from(n)),
        _ => Err(ApiError::invalid("limit", "must be from 1 to 500")),
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    // A malformed id names nothing: the same 404 as a missing one.
    id.parse().map_err(|_| ApiError::NotFound)
}

async fn member_in(tx: &mut Tx, scope: &Scope, id: Uuid) -> Result<Member, ApiError> {
    users::member(tx, scope.tenant.id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = String, Path)), responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let id = parse_id(&id)?;
    let member = users::member(&state.db, scope.tenant.id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(convert::user(&member.user, Some(member.role))))
}

/// Only an owner (or superadmin) may grant or change owner and admin roles beyond their own.
fn may_grant(scope: &Scope, role: Role) -> Result<(), ApiError> {
    if scope.role.allows(role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

#[utoipa::path(post, path = "/api/users", tag = "users", security(("bearer" = [])), request_body = CreateUser, responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    // ASCII folding only: `to_lowercase` turns the Kelvin sign (U+212A) into `k`, so a
    // look-alike would pass the ASCII-only rule below.
    let username = body.username.trim().to_ascii_lowercase();
    // Validate and hash before the transaction: hashing is slow and needs no lock.
    let prepared = async || -> Result<Option<String>, ApiError> {
        let mut problems = Vec::new();
        if let Err(reason) = validate::username(&username) {
            problems.push(FieldError::new("username", reason));
        }
        if let Some(password) = &body.password {
            problems.extend(
                state
                    .password_policy
                    .violations(password)
                    .into_iter()
                    .map(|r| FieldError::new("password", r)),
            );
        }
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        may_grant(&scope, body.role)?;
        if body.password.is_none() && !principal.is_superadmin {
            // Refused before any look-up, so the answer is the same whether the name exists.
            return Err(ApiError::invalid(
                "password",
                "is required: only a superadmin can add an existing account to a tenant",
            ));
        }
        match &body.password {
            Some(password) => Ok(Some(
                state
                    .hasher
                    .hash(password)
                    .await
                    .map_err(ApiError::Internal)?,
            )),
            None => Ok(None),
        }
    };
    let hash = match prepared().await {
        Ok(hash) => hash,
        Err(err) => {
            crate::audit::record_failure(
                &state.db,
                &ctx,
                "user.create",
                "user",
                Some(username),
                &err,
            )
            .await;
            return Err(err);
        }
    };
    let user = audited(&state.db, &ctx, "user.create", "user", Some(username.clone()), async |tx| {
        let user = match &hash {
            Some(hash) => users::create_user(
                &mut *tx,
                NewUser {
                    username: &username,
                    password_hash: hash,
                    is_superadmin: false,
                    must_change_password: false,
                },
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(Constraint::Username) if principal.is_superadmin => ApiError::Conflict(format!(
                    "username {username:?} is taken; add the existing account without a password"
                )),
                // The same answer whether the name is taken here or in another tenant.
                StoreError::Conflict(Constraint::Username) => {
                    ApiError::invalid("username", "is not available; choose another")
                }
                other => other.into(),
            })?,
            None => users::user_by_name(&mut *tx, &username).await?.ok_or_else(|| {
                ApiError::invalid("password", "is required to create a new account")
            })?,
        };
        if tenants::role_of(&mut *tx, scope.tenant.id, user.id).await?.is_some() {
            // Only a superadmin reaches this (anyone else's join is refused above, and a new
            // account is no member yet).
            return Err(ApiError::Conflict(format!("{username:?} is already a member of this tenant")));
        }
        tenants::set_membership(&mut *tx, scope.tenant.id, user.id, body.role).await?;
        Ok(Outcome::new(
            convert::user(&user, Some(body.role)),
            user.id,
            json!({"username": user.username, "role": body.role, "new_account": hash.is_some()}),
        ))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = String, Path)), request_body = UpdateUser, responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<Json<User>> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let target = Some(id.clone());
    let new_hash = match &body.password {
        Some(password) => {
            let problems: Vec<_> = state
                .password_policy
                .violations(password)
                .into_iter()
                .map(|r| FieldError::new("password", r))
                .collect();
            if !problems.is_empty() {
                let err = ApiError::Validation(problems);
                crate::audit::record_failure(&state.db, &ctx, "user.update", "user", target, &err)
                    .await;
                return Err(err);
            }
            Some(
                state
                    .hasher
                    .hash(password)
                    .await
                    .map_err(ApiError::Internal)?,
            )
        }
        None => None,
    };
    let user = audited(&state.db, &ctx, "user.update", "user", target, async |tx| {
        let id = parse_id(&id)?;
        // Before any read: a demotion or a disable may take away an owner.
        tenants::lock_for_owner_change(tx, scope.tenant.id, id).await?;
        let member = member_in(tx, &scope, id).await?;
        // Changing an owner, or making one, takes an owner.
        may_grant(&scope, member.role)?;
        let account_wide = body.disabled.is_some() || new_hash.is_some();
        if !principal.is_superadmin
            && (member.user.is_superadmin
                || (account_wide && users::membership_count(&mut *tx, id).await? > 1))
        {
            return Err(not_theirs_alone());
        }
        let mut role = member.role;
        let mut changes = serde_json::Map::new();
        if let Some(new_role) = body.role {
            may_grant(&scope, new_role)?;
            if member.role == Role::Owner && new_role != Role::Owner {
                ensure_other_owner(tx, &scope).await?;
            }
            tenants::set_membership(&mut *tx, scope.tenant.id, id, new_role).await?;
            changes.insert("role".into(), json!({"from": member.role, "to": new_role}));
            role = new_role;
        }
        if let Some(disabled) = body.disabled {
            if disabled && principal.user_id == Some(id) {
                return Err(ApiError::Conflict(
                    "you cannot disable your own account".into(),
                ));
            }
            if disabled && member.role == Role::Owner {
                ensure_other_owner(tx, &scope).await?;
            }
            if disabled {
                // The account is disabled everywhere: no other tenant may lose its last owner.
                let orphaned = tenants::sole_owner_elsewhere(&mut *tx, id, scope.tenant.id).await?;
                if !orphaned.is_empty() {
                    return Err(ApiError::Conflict(format!(
                        "the account is the last owner of {}; it cannot be disabled",
                        orphaned.join(", ")
                    )));
                }
            }
            users::set_disabled(&mut *tx, id, disabled).await?;
            if disabled {
                sessions::revoke_user_sessions(&mut *tx, id).await?;
            }
            changes.insert("disabled".into(), json!(disabled));
        }
        if let Some(hash) = &new_hash {
            users::set_password(&mut *tx, id, hash, true).await?;
            sessions::revoke_user_sessions(&mut *tx, id).await?;
            changes.insert("password_reset".into(), json!(true));
        }
        let user = users::user_by_id(&mut *tx, id)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(Outcome::new(
            convert::user(&user, Some(role)),
            id,
            json!(changes),
        ))
    })
    .await?;
    Ok(Json(user))
}

/// The refusal of a change a tenant's admin may not make to an account that is not theirs
/// alone: the plain 403, which does not say whether the account is a superadmin's or belongs
/// to other tenants.
fn not_theirs_alone() -> ApiError {
    ApiError::Forbidden
}

/// Refuse a change that would leave the tenant without an active owner.
async fn ensure_other_owner(tx: &mut Tx, scope: &Scope) -> Result<(), ApiError> {
    if tenants::count_owners(tx, scope.tenant.id).await? <= 1 {
        return Err(ApiError::Conflict(
            "the tenant's last owner cannot be removed, demoted or disabled".into(),
        ));
    }
    Ok(())
}

/// `DELETE /api/users/{id}`: remove the user from this tenant; an account left in no tenant
/// (and not a superadmin) is deleted.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = String, Path)), responses((status = 204, description = "Removed from the tenant"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
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
        "user.delete",
        "user",
        Some(id.clone()),
        async |tx| {
            let id = parse_id(&id)?;
            tenants::lock_for_owner_change(tx, scope.tenant.id, id).await?;
            let member = member_in(tx, &scope, id).await?;
            may_grant(&scope, member.role)?;
            if member.user.is_superadmin && !principal.is_superadmin {
                return Err(not_theirs_alone());
            }
            if member.role == Role::Owner {
                ensure_other_owner(tx, &scope).await?;
            }
            tenants::remove_membership(&mut *tx, scope.tenant.id, id).await?;
            crate::ssh::revoke_removed_member(tx, scope.tenant.id, id, &ctx.actor).await?;
            let account_deleted =
                !member.user.is_superadmin && users::membership_count(&mut *tx, id).await? == 0;
            if account_deleted {
                users::delete_user(&mut *tx, id).await?;
            }
            Ok(Outcome::new(
                (),
                id,
                json!({"username": member.user.username, "account_deleted": account_deleted}),
            ))
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
