//! `/api/devices` and `/api/onboarding-tokens`: the tenant's fleet.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use watchgrid_store::devices::{self, DeviceFilter, DeviceRow, OnboardingTokenRow, StatusFilter};
use watchgrid_store::{Constraint, DeviceKind as StoredKind, StoreError};
use watchgrid_wire::{
    CreateOnboardingToken, CreatePlainDevice, CreatedOnboardingToken, CreatedPlainDevice, Device,
    DeviceKind, DeviceStatus, ErrorBody, FieldError, OnboardingToken, Page, UpdateDevice,
};

use super::agent::{check_tags, tags_json};
use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery};
use super::users::page_limit;
use crate::audit::{audited, Outcome};
use crate::auth::tokens::{random_secret, secret_hash};
use crate::auth::{ClientAddr, Principal, Scope};
use crate::fleet::hub::KeyUnavailable;
use crate::fleet::{DeviceEntry, Fleet};
use crate::state::AppState;
use watchgrid_core::validate;

/// Prefix of onboarding token secrets.
pub const ONBOARDING_PREFIX: &str = "wgo_";

pub fn device_wire(row: &DeviceRow, fleet: &Fleet) -> Device {
    let kind = match row.kind {
        StoredKind::Plain => DeviceKind::Plain,
        StoredKind::Agent => DeviceKind::Agent,
    };
    let status = match (kind, row.last_seen_at) {
        (DeviceKind::Plain, _) => DeviceStatus::Unknown,
        (_, None) => DeviceStatus::Pending,
        (_, Some(at)) if at >= fleet.online_since(Utc::now()) => DeviceStatus::Online,
        (_, Some(_)) => DeviceStatus::Offline,
    };
    Device {
        id: row.id.to_string(),
        name: row.name.clone(),
        hostname: row.hostname.clone(),
        kind,
        os: row.os.clone(),
        agent_version: row.agent_version.clone(),
        overlay_ip: row.overlay_ip.clone(),
        public_key: row.wg_public_key.clone(),
        tags: row.tags.0.clone(),
        status,
        last_seen_at: row.last_seen_at.map(convert::time),
        created_at: convert::time(row.created_at),
    }
}

#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// `online`, `offline`, `pending` or `unknown`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    /// Devices whose name contains this.
    #[serde(default)]
    pub name: Option<String>,
}

#[utoipa::path(get, path = "/api/devices", tag = "devices", security(("bearer" = [])),
    params(("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query), ("status" = Option<String>, Query, description = "online, offline, pending or unknown"), ("tag" = Option<String>, Query), ("name" = Option<String>, Query, description = "Substring of the name")),
    responses((status = 200, body = Page<Device>), (status = 422, body = ErrorBody)))]
/// One page of the tenant's devices by name: one query per page.
pub async fn list(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<Json<Page<Device>>> {
    let limit = page_limit(query.limit)?;
    let status = match query.status.as_deref() {
        None => None,
        Some("online") => Some(StatusFilter::Online),
        Some("offline") => Some(StatusFilter::Offline),
        Some("pending") => Some(StatusFilter::Pending),
        Some("unknown") => Some(StatusFilter::Unknown),
        Some(_) => {
            return Err(ApiError::invalid(
                "status",
                "must be online, offline, pending or unknown",
            ))
        }
    };
    let filter = DeviceFilter {
        status,
        online_since: Some(state.fleet.online_since(Utc::now())),
        tag: query.tag,
        name: query.name,
        after_name: query.cursor,
    };
    let rows = devices::list_devices(&state.db, scope.tenant.id, &filter, limit + 1).await?;
    let more = rows.len() > limit as usize;
    let items: Vec<Device> = rows
        .iter()
        .take(limit as usize)
        .map(|r| device_wire(r, &state.fleet))
        .collect();
    let next_cursor = more.then(|| items.last().map(|d| d.name.clone())).flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// Why a device cannot take `name`: a custom CNAME of the tenant holds it (a CNAME must be the
/// only data at its name).
fn cname_holds(state: &AppState, scope: &Scope, name: &str) -> Option<String> {
    state
        .fleet
        .dns
        .zone
        .has_cname(&scope.tenant.slug, name)
        .then(|| cname_reason(name))
}

fn cname_reason(name: &str) -> String {
    format!("{name:?} is a CNAME in Magic DNS; delete that record first or pick another name")
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> ApiResult<Json<Device>> {
    let row = devices::device(&state.db, scope.tenant.id, parse_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(device_wire(&row, &state.fleet)))
}

#[utoipa::path(patch, path = "/api/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = UpdateDevice,
    responses((status = 200, body = Device), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
/// Rename (the Magic DNS name follows) and retag.
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateDevice>,
) -> ApiResult<Json<Device>> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let row = audited(
        &state.db,
        &ctx,
        "device.update",
        "device",
        Some(id.clone()),
        async |tx| {
            let id = parse_id(&id)?;
            let mut problems = Vec::new();
            if let Some(name) = &body.name {
                if let Err(reason) = validate::slug(name) {
                    problems.push(FieldError::new("name", reason));
                }
            }
            if let Some(tags) = &body.tags {
                check_tags(&mut problems, "tags", tags);
            }
            if !problems.is_empty() {
                return Err(ApiError::Validation(problems));
            }
            if let Some(name) = &body.name {
                // Under the tenant's name lock, against the database: a CNAME created at this
                // moment is either seen here or sees this device (the zone learns both only
                // after commit).
                watchgrid_store::dns::lock_tenant_records(&mut *tx, scope.tenant.id).await?;
                if watchgrid_store::dns::cname_at(&mut *tx, scope.tenant.id, name).await? {
                    return Err(ApiError::Conflict(cname_reason(name)));
                }
            }
            let mut row = devices::device(&mut *tx, scope.tenant.id, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            let old_name = row.name.clone();
            if let Some(name) = &body.name {
                row.name = name.clone();
            }
            if let Some(tags) = &body.tags {
                row.tags = tags_json(tags);
            }
            devices::update_device(&mut *tx, scope.tenant.id, id, &row.name, &row.tags.0)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(Constraint::DeviceName) => ApiError::Conflict(format!(
                        "another device of this tenant is named {:?}",
                        row.name
                    )),
                    other => other.into(),
                })?;
            let details = json!({"name": row.name, "previous_name": old_name, "tags": row.tags.0});
            Ok(Outcome::new(row.clone(), id, details))
        },
    )
    .await?;
    if let Some(entry) = DeviceEntry::from_row(&row) {
        state.fleet.index.upsert(entry);
    }
    Ok(Json(device_wire(&row, &state.fleet)))
}

#[utoipa::path(delete, path = "/api/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "Deleted: its peer leaves the interface and its credential stops working at once"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let row = audited(&state.db, &ctx, "device.delete", "device", Some(id.clone()), async |tx| {
        let id = parse_id(&id)?;
        let row = devices::device(&mut *tx, scope.tenant.id, id).await?.ok_or(ApiError::NotFound)?;
        let revoked = crate::ssh::revoke_deleted_device(tx, scope.tenant.id, id, &ctx.actor).await?;
        devices::delete_device(&mut *tx, scope.tenant.id, id).await?;
        let details = json!({"name": row.name, "overlay_ip": row.overlay_ip, "public_key": row.wg_public_key, "revoked_host_certificates": revoked});
        Ok(Outcome::new(row, id, details))
    })
    .await?;
    let fleet = &state.fleet;
    fleet.index.remove(row.id);
    fleet.heartbeats.forget(row.id);
    fleet.hub.remove(&row.wg_public_key);
    Ok(StatusCode::NO_CONTENT)
}

/// A wg-quick file for a plain device: its address and the server as its one peer, allowed
/// only the server's overlay address (devices do not reach each other; docs/security.md, "Data
/// plane"). Without the private key the line is a placeholder.
pub fn plain_config(
    fleet: &Fleet,
    overlay_ip: &str,
    private_key: Option<&str>,
) -> Result<String, KeyUnavailable> {
    let server = fleet.hub.public_key()?;
    let key_line = match private_key {
        Some(key) => format!("PrivateKey = {key}"),
        None => "# PrivateKey = <the private key of this device; it is not stored on the server>"
            .to_owned(),
    };
    Ok(format!(
        "[Interface]\n{key_line}\nAddress = {overlay_ip}/32\n\n[Peer]\nPublicKey = {server}\nEndpoint = {endpoint}\nAllowedIPs = {server_ip}/32\nPersistentKeepalive = 25\n",
        endpoint = fleet.config.endpoint,
        server_ip = fleet.config.server_ip(),
    ))
}

#[utoipa::path(post, path = "/api/devices", tag = "devices", security(("bearer" = [])), request_body = CreatePlainDevice,
    responses((status = 201, body = CreatedPlainDevice), (status = 409, description = "The name or key is taken, no address is free, or the tenant has reached WATCHGRID_MAX_DEVICES_PER_TENANT", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, description = "The tenant's device-creation rate limit; see Retry-After", body = ErrorBody),
        (status = 503, description = "The server's WireGuard key is not available (its file is missing while devices are enrolled)", body = ErrorBody)))]
/// A device without the agent (a phone, a router): a record and a wg-quick file for it.
/// Limited per tenant in number and in rate, so one tenant cannot take the shared overlay.
pub async fn create_plain(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    ApiJson(body): ApiJson<CreatePlainDevice>,
) -> ApiResult<(StatusCode, Json<CreatedPlainDevice>)> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let fleet = state.fleet.clone();
    // No device is created that would pin a key the server cannot keep.
    fleet.hub.public_key()?;
    let mut reserved = None;
    let result = audited(
        &state.db,
        &ctx,
        "device.create",
        "device",
        Some(body.name.clone()),
        async |tx| {
            let mut problems = Vec::new();
            if let Err(reason) = validate::slug(&body.name) {
                problems.push(FieldError::new("name", reason));
            } else if let Some(reason) = cname_holds(&state, &scope, &body.name) {
                problems.push(FieldError::new("name", reason));
            }
            check_tags(&mut problems, "tags", &body.tags);
            let (public_key, private_key) = match &body.public_key {
                Some(key) => match key.parse::<watchgrid_wireguard::key::PublicKey>() {
                    Ok(key) => (key.to_string(), None),
                    Err(_) => {
                        problems.push(FieldError::new(
                            "public_key",
                            "must be a base64 WireGuard public key",
                        ));
                        (String::new(), None)
                    }
                },
                None => {
                    let private = watchgrid_wireguard::key::PrivateKey::generate();
                    (private.public_key().to_string(), Some(private.to_base64()))
                }
            };
            if !problems.is_empty() {
                return Err(ApiError::Validation(problems));
            }
            state
                .limits
                .check_device_creation(scope.tenant.id)
                .map_err(|retry| ApiError::RateLimited {
                    retry_after_secs: retry.seconds(),
                })?;
            let ip = fleet.index.reserve().ok_or_else(|| {
                ApiError::Conflict(format!(
                    "the overlay network {} has no free address",
                    fleet.config.overlay
                ))
            })?;
            reserved = Some(ip);
            let row = DeviceRow {
                id: Uuid::new_v4(),
                tenant_id: scope.tenant.id,
                name: body.name.clone(),
                hostname: body.name.clone(),
                kind: StoredKind::Plain,
                os: String::new(),
                agent_version: String::new(),
                wg_public_key: public_key,
                overlay_ip: ip.to_string(),
                credential_hash: None,
                tags: tags_json(&body.tags),
                onboarding_token_id: None,
                created_at: Utc::now(),
                last_seen_at: None,
            };
            let max = state.config.max_devices_per_tenant;
            let inserted =
                devices::insert_device_within(tx, &row, max)
                    .await
                    .map_err(|e| match e {
                        StoreError::Conflict(Constraint::DeviceName) => ApiError::Conflict(
                            format!("a device of this tenant is named {:?} already", body.name),
                        ),
                        StoreError::Conflict(Constraint::DeviceKey) => ApiError::Conflict(
                            "this WireGuard public key belongs to another device".into(),
                        ),
                        // Another replica took the address at this moment.
                        StoreError::Conflict(Constraint::DeviceAddress) => ApiError::Conflict(
                            "the overlay address was taken by a concurrent change; try again"
                                .into(),
                        ),
                        other => other.into(),
                    })?;
            match inserted {
                devices::DeviceInsert::Inserted => {}
                devices::DeviceInsert::OverLimit => {
                    return Err(super::agent::device_limit_error(max));
                }
                // The zone had not yet learnt of a CNAME created a moment ago.
                devices::DeviceInsert::NameHeldByCname => {
                    return Err(ApiError::Validation(vec![FieldError::new(
                        "name",
                        cname_reason(&body.name),
                    )]));
                }
            }
            let details = json!({"name": row.name, "overlay_ip": row.overlay_ip, "kind": "plain"});
            let id = row.id;
            Ok(Outcome::new((row, private_key), id, details))
        },
    )
    .await;
    let (row, private_key) = match result {
        Ok(created) => created,
        Err(err) => {
            if let Some(ip) = reserved {
                fleet.index.release(ip);
            }
            return Err(err);
        }
    };
    if let Some(entry) = DeviceEntry::from_row(&row) {
        fleet.index.upsert(entry);
    }
    fleet.hub.upsert(
        &row.wg_public_key,
        reserved.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
    );
    let config = plain_config(&fleet, &row.overlay_ip, private_key.as_deref())?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedPlainDevice {
            device: device_wire(&row, &fleet),
            wireguard_config: config,
        }),
    ))
}

#[utoipa::path(get, path = "/api/devices/{id}/wireguard-config", tag = "devices", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "A wg-quick file (without the private key, which the server does not keep)", content_type = "text/plain"), (status = 404, body = ErrorBody)))]
pub async fn wireguard_config(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let row = devices::device(&state.db, scope.tenant.id, parse_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    let config = plain_config(&state.fleet, &row.overlay_ip, None)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.conf\"", row.name),
            ),
        ],
        config,
    ))
}

pub fn onboarding_wire(row: &OnboardingTokenRow) -> OnboardingToken {
    OnboardingToken {
        id: row.id.to_string(),
        description: row.description.clone(),
        max_uses: row.max_uses.max(0).unsigned_abs(),
        uses: row.uses.max(0).unsigned_abs(),
        tags: row.tags.0.clone(),
        expires_at: row.expires_at.map(convert::time),
        revoked: row.revoked_at.is_some(),
        created_by: row.created_by.clone(),
        created_at: convert::time(row.created_at),
    }
}

#[utoipa::path(get, path = "/api/onboarding-tokens", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Vec<OnboardingToken>)))]
pub async fn list_onboarding(
    State(state): State<AppState>,
    scope: Scope,
) -> ApiResult<Json<Vec<OnboardingToken>>> {
    let rows = devices::list_onboarding_tokens(&state.db, scope.tenant.id).await?;
    Ok(Json(rows.iter().map(onboarding_wire).collect()))
}

#[utoipa::path(post, path = "/api/onboarding-tokens", tag = "devices", security(("bearer" = [])), request_body = CreateOnboardingToken,
    responses((status = 201, description = "The secret is shown only in this response", body = CreatedOnboardingToken), (status = 422, body = ErrorBody)))]
pub async fn create_onboarding(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    ApiJson(body): ApiJson<CreateOnboardingToken>,
) -> ApiResult<(StatusCode, Json<CreatedOnboardingToken>)> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let created = audited(&state.db, &ctx, "onboarding_token.create", "onboarding_token", None, async |tx| {
        let mut problems = Vec::new();
        if body.description.chars().count() > 200 || body.description.chars().any(char::is_control) {
            problems.push(FieldError::new("description", "must be at most 200 characters without control characters"));
        }
        let max_uses = body.max_uses.unwrap_or(1);
        if !(1..=100_000).contains(&max_uses) {
            problems.push(FieldError::new("max_uses", "must be from 1 to 100000"));
        }
        let hours = body.expires_in_hours.unwrap_or(24);
        if !(1..=8760).contains(&hours) {
            problems.push(FieldError::new("expires_in_hours", "must be from 1 to 8760"));
        }
        check_tags(&mut problems, "tags", &body.tags);
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        let now = Utc::now();
        let secret = random_secret(ONBOARDING_PREFIX);
        let row = OnboardingTokenRow {
            id: Uuid::new_v4(),
            tenant_id: scope.tenant.id,
            description: body.description.trim().to_owned(),
            max_uses: i32::try_from(max_uses).unwrap_or(i32::MAX),
            uses: 0,
            tags: tags_json(&body.tags),
            created_by: principal.name.clone(),
            created_at: now,
            expires_at: Some(now + chrono::Duration::hours(i64::from(hours))),
            revoked_at: None,
        };
        devices::create_onboarding_token(&mut *tx, &row, &secret_hash(&secret)).await?;
        let details = json!({"description": row.description, "max_uses": max_uses, "expires_in_hours": hours, "tags": row.tags.0});
        let id = row.id;
        Ok(Outcome::new(CreatedOnboardingToken { token: onboarding_wire(&row), secret }, id, details))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(delete, path = "/api/onboarding-tokens/{id}", tag = "devices", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody)))]
pub async fn revoke_onboarding(
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
        "onboarding_token.revoke",
        "onboarding_token",
        Some(id.clone()),
        async |tx| {
            let id = parse_id(&id)?;
            devices::revoke_onboarding_token(&mut *tx, scope.tenant.id, id).await?;
            Ok(Outcome::new((), id, json!({})))
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
