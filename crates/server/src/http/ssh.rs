//! `/api/ssh/...`: user certificates, the tenant's CA public keys, validity settings, principal
//! grants, revocations and the KRL; and the agent API's `/api/agent/ssh/...`.

use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use watchgrid_sshca::{HostCertRequest, UserCertRequest, Validity};
use watchgrid_store::devices::Json as DbJson;
use watchgrid_store::ssh::{self as store, CertRow, GrantSubject, RevokeTarget};
use watchgrid_store::tenants::{self, TenantRow};
use watchgrid_store::users;
use watchgrid_store::CertKind;
use watchgrid_wire::{
    CaPublicKey, ErrorBody, FieldError, HostCertificate, HostCertificateRequest, IssuedCertificate,
    PrincipalGrant, RevokeRequest, RevokeResult, SignRequest, SignedCertificate, SshCaKeys,
    SshSettings,
};

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery};
use super::middleware::RequestId;
use crate::audit::{audited, AuditContext, Outcome};
use crate::auth::{ClientAddr, DeviceCaller, Principal, Scope};
use crate::ssh::{ActiveCaError, CaKind, KrlError, VALIDITY_CEILING_SECS};
use crate::state::AppState;

impl From<ActiveCaError> for ApiError {
    fn from(err: ActiveCaError) -> Self {
        match err {
            ActiveCaError::Store(e) => e.into(),
            ActiveCaError::Unavailable(detail) => {
                // The detail names server paths: it goes to the log and /healthz, not to the
                // tenant's users.
                tracing::error!(%detail, "SSH CA unavailable");
                ApiError::Unavailable(
                    "the tenant's SSH certificate authority is unavailable (its key file is \
                     missing or does not match the recorded key); the server's /healthz \
                     `ssh_ca` check names the problem and an operator must restore the key \
                     from the SSH CA backup"
                        .into(),
                )
            }
        }
    }
}

impl From<KrlError> for ApiError {
    fn from(err: KrlError) -> Self {
        match err {
            KrlError::Store(e) => e.into(),
            KrlError::NoCa => ApiError::Unavailable(
                "the tenant has no SSH certificate authority yet; retry shortly".into(),
            ),
            KrlError::Corrupt(detail) => ApiError::Internal(detail),
        }
    }
}

fn secs(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A Unix account name a certificate may carry: 1-64 of letters, digits, `.`, `_`, `-`, not
/// starting with `-`.
pub fn check_principal(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a Unix account name: use 1-64 letters, digits, '.', '_' and '-', \
             not starting with '-'"
        ))
    }
}

#[utoipa::path(post, path = "/api/ssh/certificates", tag = "ssh", security(("bearer" = [])), request_body = SignRequest,
    responses((status = 201, body = SignedCertificate), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody, description = "The tenant's user CA key is missing or does not match its record")))]
/// Sign the caller's public key as a user certificate for principals they are allowed.
pub async fn sign(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ApiJson(body): ApiJson<SignRequest>,
) -> ApiResult<(StatusCode, Json<SignedCertificate>)> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let tenant = &scope.tenant;
    // What needs no lock, outside the transaction: who may be which principal, the active CA
    // and its key (a rotation committing meanwhile only means the previous key signs, which
    // stays trusted through the grace period), the subject key's fingerprint.
    let prepared = async {
        let allowed =
            store::principals_for(&state.db, tenant.id, principal.user_id, scope.role.as_str())
                .await?;
        let principals = choose_principals(
            &allowed,
            body.principals.as_deref(),
            tenant,
            &grant_hint(&principal, &scope, body.principals.as_deref()),
        )?;
        let key_fingerprint = watchgrid_sshca::PublicKey::from_openssh(body.public_key.trim())
            .map_err(sign_error)?
            .fingerprint();
        let (ca, key) = state.ssh.active(&state.db, tenant, CaKind::User).await?;
        // PostgreSQL reserves the serial before the transaction: check the requested
        // validity first, so that a refused request uses none (the transaction checks again).
        if state.db.backend() == watchgrid_store::Backend::Postgres {
            let settings = store::settings(&state.db, tenant.id)
                .await?
                .ok_or(KrlError::NoCa)?;
            validity_for(
                body.validity_secs,
                settings.default_validity_secs,
                settings.max_validity_secs,
            )?;
        }
        let reserved = state
            .ssh
            .next_serial(&state.db, tenant.id)
            .await
            .map_err(no_ca_if_missing)?;
        Ok::<_, ApiError>((principals, key_fingerprint, ca, key, reserved))
    }
    .await;
    let (principals, key_fingerprint, ca, key, reserved) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            crate::audit::record_failure(
                &state.db,
                &ctx,
                "ssh.certificate.sign",
                "ssh_certificate",
                None,
                &err,
            )
            .await;
            return Err(err);
        }
    };
    let _turn = state.ssh.write_turn(&state.db).await;
    audited(
        &state.db,
        &ctx,
        "ssh.certificate.sign",
        "ssh_certificate",
        None,
        async |tx| {
            // The write first: it takes the tenant's serial row (PostgreSQL) or the database's
            // write lock (SQLite) before any read, so concurrent signings queue instead of
            // failing on a stale read snapshot. A refused request rolls the serial back.
            let settings = match reserved {
                // PostgreSQL: a serial reserved outside; only the bounds are read here.
                Some(serial) => {
                    let settings = store::settings(&mut *tx, tenant.id)
                        .await?
                        .ok_or(KrlError::NoCa)?;
                    store::Allocated {
                        serial,
                        default_validity_secs: settings.default_validity_secs,
                        max_validity_secs: settings.max_validity_secs,
                    }
                }
                None => allocate_serial(tx, tenant.id).await?,
            };
            let serial = settings.serial;
            let validity_secs = validity_for(
                body.validity_secs,
                settings.default_validity_secs,
                settings.max_validity_secs,
            )?;
            // Server-chosen: the serial, never the client-chosen request id.
            let key_id = format!("{}@{}#{}", principal.name, tenant.slug, serial);
            let now = std::time::SystemTime::now();
            let validity = Validity::starting_at(now, Duration::from_secs(validity_secs));
            let request = UserCertRequest::new(
                body.public_key.trim(),
                key_id.clone(),
                principals.clone(),
                validity,
                secs(serial),
            );
            let certificate = key.sign_user(&request).map_err(sign_error)?;
            let row = CertRow {
                tenant_id: tenant.id,
                serial,
                kind: CertKind::User,
                key_id: key_id.clone(),
                user_id: principal.user_id,
                subject: principal.name.clone(),
                device_id: None,
                principals: DbJson(principals.clone()),
                key_fingerprint: key_fingerprint.clone(),
                ca_generation: ca.generation,
                valid_after: DateTime::<Utc>::from(validity.valid_after),
                valid_before: DateTime::<Utc>::from(validity.valid_before),
                request_id: request_id.clone(),
                created_at: Utc::now(),
                revoked_at: None,
            };
            store::insert_certificate(&mut *tx, &row).await?;
            let signed = SignedCertificate {
                certificate,
                serial: secs(serial),
                key_id: key_id.clone(),
                principals: principals.clone(),
                valid_after: convert::time(row.valid_after),
                valid_before: convert::time(row.valid_before),
                ca_fingerprint: ca.fingerprint.clone(),
            };
            Ok(Outcome::new(
                signed,
                serial,
                json!({"key_id": key_id, "principals": principals, "key_fingerprint": key_fingerprint,
                       "valid_before": convert::time(row.valid_before), "ca_generation": ca.generation}),
            ))
        },
    )
    .await
    .map(|signed| {
        state.metrics.ssh_certificate_issued("user");
        (StatusCode::CREATED, Json(signed))
    })
}

/// The tenant's next serial; a tenant without SSH settings has no CA yet.
async fn allocate_serial(
    tx: &mut watchgrid_store::Tx,
    tenant: Uuid,
) -> ApiResult<store::Allocated> {
    store::allocate_serial(tx, tenant)
        .await
        .map_err(no_ca_if_missing)
}

/// The validity a user certificate gets: the requested one within the tenant's maximum, or
/// the tenant's default.
fn validity_for(requested: Option<u64>, default_secs: i64, max_secs: i64) -> ApiResult<u64> {
    match requested {
        None => Ok(secs(default_secs)),
        Some(0) => Err(ApiError::invalid("validity_secs", "must be at least 1")),
        Some(n) if n > secs(max_secs) => Err(ApiError::invalid(
            "validity_secs",
            format!("must be at most {max_secs} (the tenant's maximum)"),
        )),
        Some(n) => Ok(n),
    }
}

/// A tenant without SSH settings has no CA yet.
fn no_ca_if_missing(err: watchgrid_store::StoreError) -> ApiError {
    match err {
        watchgrid_store::StoreError::NotFound => KrlError::NoCa.into(),
        other => other.into(),
    }
}

/// The command a tenant admin runs to let the caller log in as the requested accounts (or
/// `<account>`): what a fresh install needs before the first `watchgrid ssh`.
fn grant_hint(principal: &Principal, scope: &Scope, requested: Option<&[String]>) -> String {
    let accounts = match requested {
        Some(accounts)
            if !accounts.is_empty() && accounts.iter().all(|a| check_principal(a).is_ok()) =>
        {
            accounts.join(" ")
        }
        _ => "<account>".to_owned(),
    };
    // A user's own grant; an API token has no account of its own, so its role's.
    let subject = match principal.user_id {
        Some(_) => format!("--user {}", principal.name),
        None => format!("--role {}", scope.role.as_str()),
    };
    format!(
        "watchgrid --tenant {} ssh-grants add {subject} {accounts}",
        scope.tenant.slug
    )
}

/// The principals to certify: the requested ones if all are allowed, else all allowed ones.
/// `hint` is the command that grants what was asked, for the refusal when nothing is granted.
fn choose_principals(
    allowed: &[String],
    requested: Option<&[String]>,
    tenant: &TenantRow,
    hint: &str,
) -> Result<Vec<String>, ApiError> {
    if allowed.is_empty() {
        return Err(ApiError::invalid(
            "principals",
            format!(
                "you may not log in as any account in tenant {}: no SSH principal is granted to \
                 you or your role; a tenant admin grants one with `{hint}` \
                 (PUT /api/ssh/principals)",
                tenant.slug
            ),
        ));
    }
    let Some(requested) = requested else {
        return Ok(allowed.to_vec());
    };
    if requested.is_empty() {
        return Err(ApiError::invalid(
            "principals",
            "must name at least one account (or be left out for all you are allowed)",
        ));
    }
    let denied: Vec<&str> = requested
        .iter()
        .filter(|p| !allowed.contains(p))
        .map(String::as_str)
        .collect();
    if !denied.is_empty() {
        return Err(ApiError::invalid(
            "principals",
            format!(
                "not allowed for you in tenant {}: {} (allowed: {})",
                tenant.slug,
                denied.join(", "),
                allowed.join(", ")
            ),
        ));
    }
    let mut chosen = requested.to_vec();
    chosen.sort();
    chosen.dedup();
    Ok(chosen)
}

/// The CA refused the request: the caller's key or principals.
fn sign_error(err: watchgrid_sshca::Error) -> ApiError {
    use watchgrid_sshca::Error as E;
    match err {
        E::InvalidPublicKey(_) | E::UnsupportedKey { .. } => {
            ApiError::invalid("public_key", err.to_string())
        }
        E::NoPrincipals | E::InvalidPrincipal { .. } => {
            ApiError::invalid("principals", err.to_string())
        }
        other => ApiError::Internal(format!("signing failed: {other}")),
    }
}

#[derive(Debug, Deserialize)]
pub struct CertificatesQuery {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/ssh/certificates", tag = "ssh", security(("bearer" = [])),
    params(("user_id" = Option<String>, Query), ("limit" = Option<u32>, Query, description = "1-500, default 100")),
    responses((status = 200, body = Vec<IssuedCertificate>), (status = 403, body = ErrorBody)))]
/// The newest certificates the tenant's CAs issued.
pub async fn list_certificates(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(query): ApiQuery<CertificatesQuery>,
) -> ApiResult<Json<Vec<IssuedCertificate>>> {
    let limit = super::users::page_limit(query.limit)?;
    let user = match &query.user_id {
        Some(id) => Some(
            id.parse::<Uuid>()
                .map_err(|_| ApiError::invalid("user_id", "must be a user id"))?,
        ),
        None => None,
    };
    let rows = store::list_certificates(&state.db, scope.tenant.id, user, limit).await?;
    Ok(Json(rows.iter().map(issued).collect()))
}

fn issued(row: &CertRow) -> IssuedCertificate {
    IssuedCertificate {
        serial: secs(row.serial),
        kind: row.kind.to_string(),
        key_id: row.key_id.clone(),
        subject: row.subject.clone(),
        principals: row.principals.0.clone(),
        key_fingerprint: row.key_fingerprint.clone(),
        ca_generation: u32::try_from(row.ca_generation).unwrap_or(0),
        valid_after: convert::time(row.valid_after),
        valid_before: convert::time(row.valid_before),
        created_at: convert::time(row.created_at),
        revoked_at: row.revoked_at.map(convert::time),
    }
}

/// The tenant's CA public keys and the lines devices and clients install.
pub async fn ca_keys(state: &AppState, tenant: &TenantRow) -> ApiResult<SshCaKeys> {
    let cas = store::cas_of_tenant(&state.db, tenant.id, Utc::now()).await?;
    if cas.is_empty() {
        return Err(KrlError::NoCa.into());
    }
    let host_pattern = format!("*.{}.{}", tenant.slug, state.config.ssh.dns_domain);
    let wire = |kind: &str| -> Vec<CaPublicKey> {
        cas.iter()
            .filter(|c| c.kind == kind)
            .map(|c| CaPublicKey {
                kind: c.kind.clone(),
                generation: u32::try_from(c.generation).unwrap_or(0),
                state: c.state.to_string(),
                public_key: c.public_key.clone(),
                fingerprint: c.fingerprint.clone(),
                retire_at: c.retire_at.map(convert::time),
            })
            .collect()
    };
    let (user, host) = (wire("user"), wire("host"));
    let trusted_user_ca_keys: String = user.iter().map(|k| format!("{}\n", k.public_key)).collect();
    let known_hosts: String = host
        .iter()
        .map(|k| format!("@cert-authority {host_pattern} {}\n", k.public_key))
        .collect();
    Ok(SshCaKeys {
        tenant: tenant.slug.clone(),
        user,
        host,
        trusted_user_ca_keys,
        known_hosts,
        host_pattern,
        host_principals: None,
    })
}

#[utoipa::path(get, path = "/api/ssh/ca", tag = "ssh", security(("bearer" = [])),
    responses((status = 200, body = SshCaKeys), (status = 401, body = ErrorBody)))]
/// The tenant's user and host CA public keys (public: every member may read them).
pub async fn get_ca(State(state): State<AppState>, scope: Scope) -> ApiResult<Json<SshCaKeys>> {
    Ok(Json(ca_keys(&state, &scope.tenant).await?))
}

#[utoipa::path(get, path = "/api/ssh/settings", tag = "ssh", security(("bearer" = [])),
    responses((status = 200, body = SshSettings), (status = 403, body = ErrorBody)))]
pub async fn get_settings(
    State(state): State<AppState>,
    scope: Scope,
) -> ApiResult<Json<SshSettings>> {
    let row = store::settings(&state.db, scope.tenant.id)
        .await?
        .ok_or_else(|| ApiError::from(KrlError::NoCa))?;
    Ok(Json(SshSettings {
        default_validity_secs: secs(row.default_validity_secs),
        max_validity_secs: secs(row.max_validity_secs),
    }))
}

#[utoipa::path(put, path = "/api/ssh/settings", tag = "ssh", security(("bearer" = [])), request_body = SshSettings,
    responses((status = 200, body = SshSettings), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
/// Set the tenant's default and maximum validity for user certificates.
pub async fn put_settings(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    ApiJson(body): ApiJson<SshSettings>,
) -> ApiResult<Json<SshSettings>> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let ceiling = secs(VALIDITY_CEILING_SECS);
    audited(
        &state.db,
        &ctx,
        "ssh.settings.update",
        "ssh_settings",
        Some(scope.tenant.slug.clone()),
        async |tx| {
            let mut problems = Vec::new();
            if !(60..=ceiling).contains(&body.max_validity_secs) {
                problems.push(FieldError::new(
                    "max_validity_secs",
                    format!("must be from 60 to {ceiling} seconds"),
                ));
            }
            if body.default_validity_secs < 60 || body.default_validity_secs > body.max_validity_secs
            {
                problems.push(FieldError::new(
                    "default_validity_secs",
                    "must be at least 60 seconds and at most max_validity_secs",
                ));
            }
            if !problems.is_empty() {
                return Err(ApiError::Validation(problems));
            }
            let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            store::set_validity(
                &mut *tx,
                scope.tenant.id,
                as_i64(body.default_validity_secs),
                as_i64(body.max_validity_secs),
            )
            .await?;
            Ok(Outcome::new(
                body,
                &scope.tenant.slug,
                json!({"default_validity_secs": body.default_validity_secs, "max_validity_secs": body.max_validity_secs}),
            ))
        },
    )
    .await
    .map(Json)
}

#[utoipa::path(get, path = "/api/ssh/principals", tag = "ssh", security(("bearer" = [])),
    responses((status = 200, body = Vec<PrincipalGrant>), (status = 403, body = ErrorBody)))]
/// Every principal grant of the tenant.
pub async fn list_principals(
    State(state): State<AppState>,
    scope: Scope,
) -> ApiResult<Json<Vec<PrincipalGrant>>> {
    let rows = store::grants(&state.db, scope.tenant.id).await?;
    let mut grants = Vec::with_capacity(rows.len());
    for row in rows {
        let username = match row.user_id {
            Some(id) => users::member(&state.db, scope.tenant.id, id)
                .await?
                .map(|m| m.user.username),
            None => None,
        };
        grants.push(PrincipalGrant {
            user_id: row.user_id.map(|id| id.to_string()),
            username,
            role: row.role.as_deref().and_then(|r| r.parse().ok()),
            principals: row.principals.0,
        });
    }
    Ok(Json(grants))
}

#[utoipa::path(put, path = "/api/ssh/principals", tag = "ssh", security(("bearer" = [])), request_body = PrincipalGrant,
    responses((status = 200, body = PrincipalGrant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
/// Set the principals one user, or every member with a role, may get certificates for.
pub async fn put_principals(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    ApiJson(body): ApiJson<PrincipalGrant>,
) -> ApiResult<Json<PrincipalGrant>> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let target = body
        .user_id
        .clone()
        .or_else(|| body.role.map(|r| format!("role:{}", r.as_str())));
    audited(
        &state.db,
        &ctx,
        "ssh.principals.update",
        "ssh_principals",
        target,
        async |tx| {
            let mut problems = Vec::new();
            for p in &body.principals {
                if let Err(reason) = check_principal(p) {
                    problems.push(FieldError::new("principals", reason));
                }
            }
            if body.principals.len() > 64 {
                problems.push(FieldError::new("principals", "at most 64 principals"));
            }
            let subject = match (&body.user_id, body.role) {
                (Some(_), Some(_)) | (None, None) => {
                    problems.push(FieldError::new(
                        "user_id",
                        "give exactly one of user_id and role",
                    ));
                    None
                }
                (Some(id), None) => match id.parse::<Uuid>() {
                    Ok(id) => Some(GrantSubject::User(id)),
                    Err(_) => return Err(ApiError::NotFound),
                },
                (None, Some(role)) => Some(GrantSubject::Role(role.as_str())),
            };
            let Some(subject) = subject.filter(|_| problems.is_empty()) else {
                return Err(ApiError::Validation(problems));
            };
            let mut username = None;
            if let GrantSubject::User(id) = subject {
                // Another tenant's user is not found, like a missing one.
                let member = users::member(&mut *tx, scope.tenant.id, id)
                    .await?
                    .ok_or(ApiError::NotFound)?;
                username = Some(member.user.username);
            }
            let mut principals = body.principals.clone();
            principals.sort();
            principals.dedup();
            store::set_grant(&mut *tx, scope.tenant.id, subject, &principals, &ctx.actor).await?;
            let grant = PrincipalGrant {
                user_id: body.user_id.clone(),
                username,
                role: body.role,
                principals: principals.clone(),
            };
            Ok(Outcome::new(
                grant,
                body.user_id
                    .clone()
                    .or_else(|| body.role.map(|r| format!("role:{}", r.as_str())))
                    .unwrap_or_default(),
                json!({"principals": principals}),
            ))
        },
    )
    .await
    .map(Json)
}

#[utoipa::path(post, path = "/api/ssh/revocations", tag = "ssh", security(("bearer" = [])), request_body = RevokeRequest,
    responses((status = 200, body = RevokeResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
/// Revoke certificates by serial, by key id, or all of a user's; the KRL changes at once.
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    ApiJson(body): ApiJson<RevokeRequest>,
) -> ApiResult<Json<RevokeResult>> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let reason = body.reason.clone().unwrap_or_default();
    audited(
        &state.db,
        &ctx,
        "ssh.certificate.revoke",
        "ssh_certificate",
        None,
        async |tx| {
            let target = match (&body.serial, &body.key_id, &body.user_id) {
                (Some(serial), None, None) => RevokeTarget::Serial(
                    i64::try_from(*serial)
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| ApiError::invalid("serial", "must be from 1 to 2^63-1"))?,
                ),
                (None, Some(key_id), None) => {
                    if key_id.is_empty() || key_id.len() > 256 || key_id.chars().any(char::is_control)
                    {
                        return Err(ApiError::invalid(
                            "key_id",
                            "must be 1-256 characters without control characters",
                        ));
                    }
                    RevokeTarget::KeyId(key_id.clone())
                }
                (None, None, Some(user)) => {
                    let id = user.parse::<Uuid>().map_err(|_| ApiError::NotFound)?;
                    // A user removed from the tenant (or deleted) since keeps their certificates
                    // listed, and revocable, by user.
                    let known = users::member(&mut *tx, scope.tenant.id, id).await?.is_some()
                        || store::has_certificates_of_user(&mut *tx, scope.tenant.id, id).await?;
                    if !known {
                        return Err(ApiError::NotFound);
                    }
                    RevokeTarget::User(id)
                }
                _ => {
                    return Err(ApiError::invalid(
                        "serial",
                        "give exactly one of serial, key_id and user_id",
                    ))
                }
            };
            if reason.len() > 500 || reason.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "reason",
                    "must be at most 500 characters without control characters",
                ));
            }
            let marked = store::revoke(&mut *tx, scope.tenant.id, &target, &reason, &ctx.actor)
                .await?;
            if marked == 0 && matches!(target, RevokeTarget::Serial(_)) {
                return Err(ApiError::NotFound);
            }
            Ok(Outcome::new(
                RevokeResult {
                    revoked_certificates: marked,
                },
                format!("{}:{}", target.kind(), target.value()),
                json!({"kind": target.kind(), "value": target.value(), "reason": reason, "certificates": marked}),
            ))
        },
    )
    .await
    .map(Json)
}

fn krl_response(bytes: Vec<u8>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes)
}

#[utoipa::path(get, path = "/api/ssh/krl", tag = "ssh", security(("bearer" = [])),
    responses((status = 200, description = "The tenant's OpenSSH KRL (binary), for sshd's RevokedKeys", content_type = "application/octet-stream")))]
/// The tenant's key revocation list.
pub async fn krl(State(state): State<AppState>, scope: Scope) -> ApiResult<impl IntoResponse> {
    let bytes = state.ssh.krl(&state.db, &scope.tenant, Utc::now()).await?;
    Ok(krl_response(bytes))
}

async fn device_tenant(state: &AppState, device: &DeviceCaller) -> ApiResult<TenantRow> {
    tenants::tenant_by_id(&state.db, device.0.tenant_id)
        .await?
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/agent/ssh/krl", tag = "agent", security(("device" = [])),
    responses((status = 200, description = "The device's tenant's OpenSSH KRL (binary)", content_type = "application/octet-stream"), (status = 401, body = ErrorBody)))]
/// `GET /api/agent/ssh/krl` (agent API): the KRL for the device's sshd.
pub async fn agent_krl(
    State(state): State<AppState>,
    device: DeviceCaller,
) -> ApiResult<impl IntoResponse> {
    let tenant = device_tenant(&state, &device).await?;
    let bytes = state.ssh.krl(&state.db, &tenant, Utc::now()).await?;
    Ok(krl_response(bytes))
}

#[utoipa::path(get, path = "/api/agent/ssh/ca", tag = "agent", security(("device" = [])),
    responses((status = 200, body = SshCaKeys), (status = 401, body = ErrorBody)))]
/// `GET /api/agent/ssh/ca` (agent API): the CA keys the device's sshd trusts.
pub async fn agent_ca(
    State(state): State<AppState>,
    device: DeviceCaller,
) -> ApiResult<Json<SshCaKeys>> {
    let tenant = device_tenant(&state, &device).await?;
    let mut keys = ca_keys(&state, &tenant).await?;
    keys.host_principals = Some(host_principals(
        &state,
        &tenant,
        &device.0.name,
        &device.0.overlay_ip.to_string(),
    ));
    Ok(Json(keys))
}

/// What a device's host certificate names: its Magic DNS name and overlay address.
pub fn host_principals(
    state: &AppState,
    tenant: &TenantRow,
    name: &str,
    overlay_ip: &str,
) -> Vec<String> {
    vec![device_fqdn(state, tenant, name), overlay_ip.to_owned()]
}

/// The device a host certificate is for.
#[derive(Debug, Clone)]
pub struct HostSubject<'a> {
    pub tenant: &'a TenantRow,
    pub device_id: Uuid,
    pub name: &'a str,
    pub overlay_ip: &'a str,
}

/// A device's Magic DNS name: `<device>.<tenant>.<domain>`.
pub fn device_fqdn(state: &AppState, tenant: &TenantRow, device: &str) -> String {
    format!("{device}.{}.{}", tenant.slug, state.config.ssh.dns_domain)
}

/// Sign a device's host key with the tenant's active host CA, for its Magic DNS name and
/// overlay address; recorded and audited like user certificates.
pub async fn issue_host_certificate(
    state: &AppState,
    ctx: &AuditContext,
    subject: &HostSubject<'_>,
    public_key: &str,
    request_id: &str,
) -> ApiResult<HostCertificate> {
    let tenant = subject.tenant;
    let principals = host_principals(state, tenant, subject.name, subject.overlay_ip);
    let validity_secs = u64::from(state.config.ssh.host_cert_validity_secs);
    let _turn = state.ssh.write_turn(&state.db).await;
    audited(
        &state.db,
        ctx,
        "ssh.host_certificate.sign",
        "ssh_certificate",
        Some(subject.device_id.to_string()),
        async |tx| {
            // The write first (see `sign`).
            let serial = allocate_serial(tx, tenant.id).await?.serial;
            let (ca, key) = state.ssh.active(&mut *tx, tenant, CaKind::Host).await?;
            // Server-chosen like a user certificate's: never the agent's request id.
            let key_id = format!("device:{}@{}#{}", subject.name, tenant.slug, serial);
            let validity = Validity::starting_at(
                std::time::SystemTime::now(),
                Duration::from_secs(validity_secs),
            );
            let request = HostCertRequest {
                public_key: public_key.trim().to_owned(),
                key_id: key_id.clone(),
                principals: principals.clone(),
                validity,
                serial: secs(serial),
            };
            let certificate = key.sign_host(&request).map_err(sign_error)?;
            let key_fingerprint = watchgrid_sshca::PublicKey::from_openssh(public_key.trim())
                .map_err(sign_error)?
                .fingerprint();
            let row = CertRow {
                tenant_id: tenant.id,
                serial,
                kind: CertKind::Host,
                key_id: key_id.clone(),
                user_id: None,
                subject: subject.name.to_owned(),
                device_id: Some(subject.device_id),
                principals: DbJson(principals.clone()),
                key_fingerprint: key_fingerprint.clone(),
                ca_generation: ca.generation,
                valid_after: DateTime::<Utc>::from(validity.valid_after),
                valid_before: DateTime::<Utc>::from(validity.valid_before),
                request_id: request_id.to_owned(),
                created_at: Utc::now(),
                revoked_at: None,
            };
            store::insert_certificate(&mut *tx, &row).await?;
            Ok(Outcome::new(
                HostCertificate {
                    certificate,
                    serial: secs(serial),
                    principals: principals.clone(),
                    valid_after: convert::time(row.valid_after),
                    valid_before: convert::time(row.valid_before),
                    ca_fingerprint: ca.fingerprint.clone(),
                },
                serial,
                json!({"key_id": key_id, "principals": principals, "key_fingerprint": key_fingerprint, "ca_generation": ca.generation}),
            ))
        },
    )
    .await
    .inspect(|_| state.metrics.ssh_certificate_issued("host"))
}

#[utoipa::path(post, path = "/api/agent/ssh/host-certificate", tag = "agent", security(("device" = [])), request_body = HostCertificateRequest,
    responses((status = 200, body = HostCertificate), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
/// `POST /api/agent/ssh/host-certificate` (agent API): a host certificate for the device.
pub async fn agent_host_certificate(
    State(state): State<AppState>,
    device: DeviceCaller,
    ClientAddr(client): ClientAddr,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ApiJson(body): ApiJson<HostCertificateRequest>,
) -> ApiResult<Json<HostCertificate>> {
    let tenant = device_tenant(&state, &device).await?;
    let ctx = AuditContext {
        actor: format!("device:{}", device.0.name),
        tenant_id: Some(tenant.id),
        tenant: Some(tenant.slug.clone()),
        client_addr: Some(client.to_string()),
    };
    let overlay_ip = device.0.overlay_ip.to_string();
    let subject = HostSubject {
        tenant: &tenant,
        device_id: device.0.id,
        name: &device.0.name,
        overlay_ip: &overlay_ip,
    };
    issue_host_certificate(&state, &ctx, &subject, &body.public_key, &request_id)
        .await
        .map(Json)
}

/// The `Upgrade` protocol of the SSH relay.
pub const RELAY_PROTOCOL: &str = "watchgrid-tcp";
/// How long the server waits for a device's sshd to accept the relay's connection.
pub const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The port the relay dials on the device.
pub const SSH_PORT: u16 = 22;

#[utoipa::path(get, path = "/api/devices/{id}/ssh-relay", tag = "ssh", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 101, description = "Switching protocols (`Upgrade: watchgrid-tcp`): the connection now carries the device's SSH port, both ways"),
        (status = 400, body = ErrorBody, description = "Not an upgrade request"), (status = 403, body = ErrorBody, description = "The caller is granted no SSH principal in the tenant"), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody, description = "The device's sshd did not accept the connection")))]
/// A TCP relay to the device's SSH port over the overlay, for `watchgrid ssh-proxy`: send
/// `Connection: upgrade` and `Upgrade: watchgrid-tcp`. Only for callers granted at least one
/// principal in the tenant (403 otherwise). Audited as `ssh.relay.open`.
pub async fn ssh_relay(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    axum::extract::Path(id): axum::extract::Path<String>,
    mut request: axum::extract::Request,
) -> ApiResult<axum::response::Response> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let device_id = id.parse::<Uuid>().map_err(|_| ApiError::NotFound)?;
    let device = watchgrid_store::devices::device(&state.db, scope.tenant.id, device_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Only callers who may get a certificate in this tenant reach its devices' sshd.
    let allowed = store::principals_for(
        &state.db,
        scope.tenant.id,
        principal.user_id,
        scope.role.as_str(),
    )
    .await?;
    if allowed.is_empty() {
        return Err(ApiError::Forbidden);
    }
    let wants_upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(RELAY_PROTOCOL));
    if !wants_upgrade {
        return Err(ApiError::BadRequest(format!(
            "the SSH relay needs `Connection: upgrade` and `Upgrade: {RELAY_PROTOCOL}` (use watchgrid ssh-proxy)"
        )));
    }
    let target = std::net::SocketAddr::new(
        device.overlay_ip.parse().map_err(|_| {
            ApiError::Internal(format!("corrupt overlay address {:?}", device.overlay_ip))
        })?,
        SSH_PORT,
    );
    let connected = tokio::time::timeout(
        RELAY_CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(target),
    )
    .await;
    let failure = match connected {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(format!(
            "device {} does not accept SSH connections on {target}: {err}",
            device.name
        )),
        Err(_) => Err(format!(
            "device {} did not answer on {target} within {} s (is it online?)",
            device.name,
            RELAY_CONNECT_TIMEOUT.as_secs()
        )),
    };
    let stream = match failure {
        Ok(stream) => stream,
        Err(reason) => {
            let err = ApiError::Unavailable(reason);
            crate::audit::record_failure(
                &state.db,
                &ctx,
                "ssh.relay.open",
                "device",
                Some(id),
                &err,
            )
            .await;
            return Err(err);
        }
    };
    audited(
        &state.db,
        &ctx,
        "ssh.relay.open",
        "device",
        Some(id.clone()),
        async |_tx| {
            Ok(Outcome::new(
                (),
                &id,
                json!({"device": device.name, "target": target.to_string()}),
            ))
        },
    )
    .await?;
    state.metrics.ssh_relay_opened();
    let upgrade = hyper::upgrade::on(&mut request);
    let name = device.name.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        match upgrade.await {
            Ok(upgraded) => {
                let mut client = hyper_util::rt::TokioIo::new(upgraded);
                match tokio::io::copy_bidirectional(&mut client, &mut stream).await {
                    Ok((up, down)) => {
                        tracing::info!(device = %name, bytes_to_device = up, bytes_from_device = down, "SSH relay closed")
                    }
                    Err(err) => tracing::debug!(device = %name, error = %err, "SSH relay ended"),
                }
            }
            Err(err) => tracing::warn!(device = %name, error = %err, "SSH relay upgrade failed"),
        }
    });
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("upgrade"),
    );
    response.headers_mut().insert(
        header::UPGRADE,
        axum::http::HeaderValue::from_static(RELAY_PROTOCOL),
    );
    Ok(response)
}
