//! The agent protocol: registration with an onboarding token (public, rate-limited per
//! address, per token and by an all-clients ceiling; a known key needs its credential), the
//! server's identity for key pinning (public), and heartbeats (agent API, through the tunnel).

use std::net::Ipv4Addr;

use axum::extract::{Extension, State};
use axum::Json;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use watchgrid_store::devices::{self, DeviceRow, Json as DbJson, OnboardingTokenRow, TokenProblem};
use watchgrid_store::{audit as audit_store, tenants, Constraint, DeviceKind, StoreError};
use watchgrid_wire::{
    ErrorBody, FieldError, Heartbeat, HeartbeatAck, RegisterRequest, RegisterResponse, ServerInfo,
};

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::middleware::RequestId;
use crate::audit::{record_failure, AuditContext};
use crate::auth::tokens::{random_secret, secret_hash};
use crate::auth::{ClientAddr, DeviceCaller};
use crate::fleet::heartbeats::Facts;
use crate::fleet::{dns_label, unique_name, DeviceEntry};
use crate::ratelimit::Limiter;
use crate::state::AppState;

/// Prefix of device credentials.
pub const CREDENTIAL_PREFIX: &str = "wgd_";
/// How often a registration retries after losing a race for a name or an address.
const REGISTRATION_ATTEMPTS: usize = 8;

#[utoipa::path(get, path = "/api/agent/server-info", tag = "agent", responses((status = 200, body = ServerInfo),
    (status = 503, description = "The server's WireGuard key is not available (its file is missing while devices are enrolled)", body = ErrorBody)))]
/// The server's WireGuard identity, which agents compare with the key they pinned.
pub async fn server_info(State(state): State<AppState>) -> ApiResult<Json<ServerInfo>> {
    let fleet = &state.fleet;
    Ok(Json(ServerInfo {
        server_public_key: fleet.hub.public_key()?.to_string(),
        server_endpoint: fleet.config.endpoint.clone(),
        server_overlay_ip: fleet.config.server_ip().to_string(),
        overlay_cidr: fleet.config.overlay.to_string(),
    }))
}

fn check_text(
    problems: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) {
    if required && value.trim().is_empty() {
        problems.push(FieldError::new(field, "must not be empty"));
    } else if value.chars().count() > max {
        problems.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    } else if value.chars().any(char::is_control) {
        problems.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn token_error(problem: TokenProblem) -> (&'static str, ApiError) {
    let (result, message) = match problem {
        TokenProblem::Revoked => ("revoked_token", "the onboarding token was revoked"),
        TokenProblem::Expired => ("expired_token", "the onboarding token has expired"),
        TokenProblem::UsedUp => ("used_up_token", "the onboarding token has been used up"),
    };
    (result, ApiError::InvalidOnboardingToken(message.into()))
}

#[utoipa::path(
    post, path = "/api/agent/register", tag = "agent", request_body = RegisterRequest,
    responses(
        (status = 200, body = RegisterResponse),
        (status = 401, description = "The token is unknown, revoked, expired or used up", body = ErrorBody),
        (status = 409, description = "The key belongs to another device or is enrolled (send its current `credential`), or no overlay address is free", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 409, description = "The tenant has reached WATCHGRID_MAX_DEVICES_PER_TENANT", body = ErrorBody),
        (status = 429, description = "A registration rate limit (per address, per token, all clients); see Retry-After", body = ErrorBody),
        (status = 503, description = "The server's WireGuard key is not available (its file is missing while devices are enrolled)", body = ErrorBody),
    )
)]
/// `POST /api/agent/register`: enroll a device with an onboarding token. Registering again
/// with the same WireGuard key returns the same device (with a new credential) only with the
/// device's current credential.
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> ApiResult<Json<RegisterResponse>> {
    let rate_limited = |retry: crate::ratelimit::RetryAfter| {
        state.metrics.registration("rate_limited");
        ApiError::RateLimited {
            retry_after_secs: retry.seconds(),
        }
    };
    // Per address first: whatever one client sends spends only its own budget.
    state
        .limits
        .check_addr(Limiter::Registration, client)
        .map_err(rate_limited)?;
    // A device must never pin a key the server cannot keep (a replaced, lost key file).
    let server_key = state.fleet.hub.public_key()?;
    let mut problems = Vec::new();
    check_text(&mut problems, "hostname", &body.hostname, 253, true);
    check_text(&mut problems, "os", &body.os, 200, false);
    check_text(
        &mut problems,
        "agent_version",
        &body.agent_version,
        100,
        false,
    );
    let key_ok = body
        .wg_public_key
        .parse::<watchgrid_wireguard::key::PublicKey>()
        .is_ok();
    if !key_ok {
        problems.push(FieldError::new(
            "wg_public_key",
            "must be a base64 WireGuard public key",
        ));
    }
    if let Some(key) = &body.ssh_host_key {
        if let Err(err) = watchgrid_sshca::PublicKey::from_openssh(key.trim()) {
            problems.push(FieldError::new("ssh_host_key", err.to_string()));
        }
    }
    if !problems.is_empty() {
        state.metrics.registration("invalid_request");
        return Err(ApiError::Validation(problems));
    }
    let token =
        devices::onboarding_token_by_hash(&state.db, &secret_hash(body.token.trim())).await?;
    let Some(token) = token else {
        state.metrics.registration("invalid_token");
        tracing::warn!(client = %client, "registration with an unknown onboarding token");
        return Err(ApiError::InvalidOnboardingToken(
            "the onboarding token is not valid".into(),
        ));
    };
    // A valid request for a known token: that token's budget and the shared ceiling.
    state
        .limits
        .check_registration(token.id)
        .map_err(rate_limited)?;
    let tenant = tenants::tenant_by_id(&state.db, token.tenant_id)
        .await?
        .ok_or_else(|| {
            ApiError::InvalidOnboardingToken("the onboarding token is not valid".into())
        })?;
    let ctx = AuditContext {
        actor: format!("onboarding-token:{}", token.id),
        tenant_id: Some(tenant.id),
        tenant: Some(tenant.slug.clone()),
        client_addr: Some(client.to_string()),
    };
    // Successful registrations are audited inside `enroll`, in the transaction that inserts the device.
    let result = enroll(&state, &ctx, &token, &body).await;
    match result {
        Ok((row, credential, again)) => {
            state.metrics.registration("ok");
            tracing::info!(device = %row.name, tenant = %tenant.slug, overlay_ip = %row.overlay_ip, again, "device registered");
            let fleet = &state.fleet;
            let ssh_host_certificate = match &body.ssh_host_key {
                Some(key) => {
                    let subject = super::ssh::HostSubject {
                        tenant: &tenant,
                        device_id: row.id,
                        name: &row.name,
                        overlay_ip: &row.overlay_ip,
                    };
                    // Enrollment does not depend on the CA: the agent asks again later.
                    super::ssh::issue_host_certificate(&state, &ctx, &subject, key, &request_id)
                        .await
                        .inspect_err(|err| tracing::warn!(device = %row.name, error = %err, "no SSH host certificate at enrollment"))
                        .ok()
                }
                None => None,
            };
            Ok(Json(RegisterResponse {
                device_id: row.id.to_string(),
                device_name: row.name,
                tenant: tenant.slug,
                overlay_address: format!(
                    "{}/{}",
                    row.overlay_ip,
                    fleet.config.overlay.prefix_len()
                ),
                server_public_key: server_key.to_string(),
                server_endpoint: fleet.config.endpoint.clone(),
                server_overlay_ip: fleet.config.server_ip().to_string(),
                agent_api: format!("http://{}", fleet.config.agent_listen),
                credential,
                heartbeat_interval_secs: fleet.config.heartbeat_interval_secs,
                dns: fleet.dns.settings(),
                ssh_host_certificate,
            }))
        }
        Err((result, err)) => {
            state.metrics.registration(result);
            record_failure(&state.db, &ctx, "device.register", "device", None, &err).await;
            Err(err)
        }
    }
}

type EnrollError = (&'static str, ApiError);

fn store_err(err: StoreError) -> EnrollError {
    ("invalid_request", ApiError::from(err))
}

/// The registration itself: idempotent for a known key, else a new device with the lowest
/// free address and a unique name, the token's use taken in the same transaction.
async fn enroll(
    state: &AppState,
    ctx: &AuditContext,
    token: &OnboardingTokenRow,
    body: &RegisterRequest,
) -> Result<(DeviceRow, String, bool), EnrollError> {
    let now = Utc::now();
    let fleet = &state.fleet;
    let credential = random_secret(CREDENTIAL_PREFIX);
    let credential_hash = secret_hash(&credential);
    let hostname = body.hostname.trim();

    if let Some(existing) = devices::device_by_public_key(&state.db, &body.wg_public_key)
        .await
        .map_err(store_err)?
    {
        // The same device asking again, with the token that enrolled it (even used up). The
        // token alone proves nothing: whoever held it could otherwise take over the device's
        // credential and get its host key signed, so the caller shows the current credential.
        let same = existing.tenant_id == token.tenant_id
            && existing.kind == DeviceKind::Agent
            && existing.onboarding_token_id == Some(token.id);
        let problem = token.problem(now).filter(|p| *p != TokenProblem::UsedUp);
        if !same {
            return Err((
                "invalid_request",
                ApiError::Conflict("this WireGuard key belongs to another device".into()),
            ));
        }
        if !holds_credential(&existing, body.credential.as_deref()) {
            return Err(("invalid_request", key_enrolled_error()));
        }
        if let Some(problem) = problem {
            return Err(token_error(problem));
        }
        let mut tx = state.db.begin().await.map_err(store_err)?;
        devices::set_credential(
            &mut tx,
            existing.id,
            &credential_hash,
            hostname,
            &body.os,
            &body.agent_version,
        )
        .await
        .map_err(store_err)?;
        audit_store::record(&mut tx, &registration_entry(ctx, token, &existing, true))
            .await
            .map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        let mut row = existing;
        row.credential_hash = Some(credential_hash);
        if let Some(entry) = DeviceEntry::from_row(&row) {
            fleet.index.upsert(entry);
        }
        return Ok((row, credential, true));
    }
    if let Some(problem) = token.problem(now) {
        return Err(token_error(problem));
    }

    let base = dns_label(hostname);
    // Names the database found held by a CNAME the in-memory zone does not show yet.
    let mut held = std::collections::HashSet::new();
    for _ in 0..REGISTRATION_ATTEMPTS {
        let Some(ip) = fleet.index.reserve() else {
            return Err((
                "addresses_exhausted",
                ApiError::Conflict(format!(
                    "the overlay network {} has no free address: delete unused devices or widen WATCHGRID_OVERLAY_CIDR",
                    fleet.config.overlay
                )),
            ));
        };
        // A name held by a custom CNAME counts as taken: the device could not have it in DNS.
        let slug = fleet.dns.slug_of(token.tenant_id).unwrap_or_default();
        let name = unique_name(&base, |n| {
            held.contains(n)
                || fleet.index.name_taken(token.tenant_id, n)
                || fleet.dns.zone.has_cname(&slug, n)
        });
        let row = DeviceRow {
            id: Uuid::new_v4(),
            tenant_id: token.tenant_id,
            name,
            hostname: hostname.to_owned(),
            kind: DeviceKind::Agent,
            os: body.os.clone(),
            agent_version: body.agent_version.clone(),
            wg_public_key: body.wg_public_key.clone(),
            overlay_ip: ip.to_string(),
            credential_hash: Some(credential_hash.clone()),
            tags: token.tags.clone(),
            onboarding_token_id: Some(token.id),
            created_at: now,
            last_seen_at: None,
        };
        match insert_with_token(state, ctx, token, &row).await {
            Ok(()) => {
                if let Some(entry) = DeviceEntry::from_row(&row) {
                    fleet.index.upsert(entry);
                }
                fleet.hub.upsert(&row.wg_public_key, ip);
                return Ok((row, credential, false));
            }
            Err(InsertError::Lost(ip)) => {
                // Another replica took the address or the name: reload the fleet and retry.
                fleet.index.mark_taken(ip);
                if let Ok(rows) = devices::all_devices(&state.db).await {
                    fleet.load_all(&rows);
                }
            }
            Err(InsertError::NameHeld) => {
                fleet.index.release(ip);
                held.insert(row.name);
            }
            Err(InsertError::KeyTaken) => {
                fleet.index.release(ip);
                return Err(("invalid_request", key_enrolled_error()));
            }
            Err(InsertError::Token(problem)) => {
                fleet.index.release(ip);
                return Err(token_error(problem));
            }
            Err(InsertError::DeviceLimit) => {
                fleet.index.release(ip);
                return Err((
                    "device_limit",
                    device_limit_error(state.config.max_devices_per_tenant),
                ));
            }
            Err(InsertError::Store(err)) => {
                fleet.index.release(ip);
                return Err(store_err(err));
            }
        }
    }
    Err((
        "invalid_request",
        ApiError::Unavailable("registration kept conflicting; try again".into()),
    ))
}

/// A registration for a key that is enrolled already, without the device's credential.
fn key_enrolled_error() -> ApiError {
    ApiError::Conflict(
        "this WireGuard key is already enrolled: registering it again needs the device's \
         current credential in `credential`"
            .into(),
    )
}

/// Does `presented` match the device's current credential? Compared in constant time.
fn holds_credential(device: &DeviceRow, presented: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let (Some(presented), Some(expected)) = (presented, device.credential_hash.as_deref()) else {
        return false;
    };
    secret_hash(presented.trim()).ct_eq(expected).into()
}

/// The answer when a tenant already has `max` devices: it names the limit and its variable.
pub fn device_limit_error(max: u32) -> ApiError {
    ApiError::Conflict(format!(
        "device limit reached: a tenant may have at most {max} devices \
         (WATCHGRID_MAX_DEVICES_PER_TENANT); delete unused devices first"
    ))
}

enum InsertError {
    Lost(Ipv4Addr),
    /// A CNAME the zone had not yet learnt of holds the chosen name.
    NameHeld,
    /// The WireGuard key was enrolled meanwhile.
    KeyTaken,
    DeviceLimit,
    Token(TokenProblem),
    Store(StoreError),
}

/// Take a use of the token and insert the device in one transaction.
async fn insert_with_token(
    state: &AppState,
    ctx: &AuditContext,
    token: &OnboardingTokenRow,
    row: &DeviceRow,
) -> Result<(), InsertError> {
    let ip: Ipv4Addr = row
        .overlay_ip
        .parse()
        .map_err(|_| InsertError::Store(StoreError::Other("bad address".into())))?;
    let mut tx = state.db.begin().await.map_err(InsertError::Store)?;
    let now = Utc::now();
    if !devices::consume_onboarding_token(&mut tx, token.id, now)
        .await
        .map_err(InsertError::Store)?
    {
        // Used up (or revoked, or expired) between the check and now.
        let fresh = devices::onboarding_token(&mut tx, token.tenant_id, token.id)
            .await
            .map_err(InsertError::Store)?;
        let problem = fresh
            .and_then(|t| t.problem(now))
            .unwrap_or(TokenProblem::UsedUp);
        return Err(InsertError::Token(problem));
    }
    match devices::insert_device_within(&mut tx, row, state.config.max_devices_per_tenant).await {
        Ok(devices::DeviceInsert::Inserted) => {}
        // Dropping `tx` rolls back the insert and the token's use.
        Ok(devices::DeviceInsert::OverLimit) => return Err(InsertError::DeviceLimit),
        Ok(devices::DeviceInsert::NameHeldByCname) => return Err(InsertError::NameHeld),
        // A concurrent registration of the same key won: retrying cannot help.
        Err(StoreError::Conflict(Constraint::DeviceKey)) => return Err(InsertError::KeyTaken),
        // Another replica took the address or the name: retry with fresh ones.
        Err(StoreError::Conflict(Constraint::DeviceName | Constraint::DeviceAddress)) => {
            return Err(InsertError::Lost(ip))
        }
        Err(err) => return Err(InsertError::Store(err)),
    }
    audit_store::record(&mut tx, &registration_entry(ctx, token, row, false))
        .await
        .map_err(InsertError::Store)?;
    tx.commit().await.map_err(|e| match e {
        StoreError::Conflict(Constraint::DeviceKey) => InsertError::KeyTaken,
        StoreError::Conflict(Constraint::DeviceName | Constraint::DeviceAddress) => {
            InsertError::Lost(ip)
        }
        other => InsertError::Store(other),
    })
}

fn registration_entry(
    ctx: &AuditContext,
    token: &OnboardingTokenRow,
    row: &DeviceRow,
    again: bool,
) -> watchgrid_store::audit::NewAuditEntry {
    ctx.entry(
        "device.register",
        "device",
        Some(row.id.to_string()),
        true,
        json!({
            "name": row.name,
            "hostname": row.hostname,
            "overlay_ip": row.overlay_ip,
            "token": token.id,
            "token_description": token.description,
            "again": again,
        }),
    )
}

#[utoipa::path(
    post, path = "/api/agent/heartbeat", tag = "agent", request_body = Heartbeat,
    security(("device" = [])),
    responses((status = 200, body = HeartbeatAck), (status = 401, body = ErrorBody))
)]
/// `POST /api/agent/heartbeat` (agent API): the device is alive.
pub async fn heartbeat(
    State(state): State<AppState>,
    DeviceCaller(device): DeviceCaller,
    ApiJson(body): ApiJson<Heartbeat>,
) -> Json<HeartbeatAck> {
    let fleet = &state.fleet;
    let first = fleet.heartbeats.record(
        device.id,
        Facts {
            hostname: first_chars(&body.hostname, 253),
            os: first_chars(&body.os, 200),
            agent_version: first_chars(&body.agent_version, 100),
        },
    );
    state.metrics.agent_heartbeats.inc();
    if first {
        tracing::info!(device_id = %device.id, overlay_ip = %device.overlay_ip, "Heartbeat from device {}", device.name);
    } else {
        tracing::debug!(device_id = %device.id, "Heartbeat from device {}", device.name);
    }
    Json(HeartbeatAck {
        heartbeat_interval_secs: fleet.config.heartbeat_interval_secs,
        server_time: convert::time(Utc::now()),
        dns: fleet.dns.settings(),
    })
}

/// The first `max` characters of `text` (the whole of it when shorter), without copying.
fn first_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Tags on devices and tokens: 1–63 of `a-z`, `0-9`, `-`, `_`, `.`, `:`.
pub fn check_tags(problems: &mut Vec<FieldError>, field: &str, tags: &[String]) {
    if tags.len() > 32 {
        problems.push(FieldError::new(field, "at most 32 tags"));
    }
    for tag in tags {
        let ok = !tag.is_empty()
            && tag.len() <= 63
            && tag
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c));
        if !ok {
            problems.push(FieldError::new(
                field,
                format!("{tag:?} must be 1-63 lower-case letters, digits, '-', '_', '.' or ':'"),
            ));
        }
    }
}

/// The tags column from a list.
pub fn tags_json(tags: &[String]) -> DbJson<Vec<String>> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    DbJson(tags)
}
