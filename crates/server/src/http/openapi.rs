//! The OpenAPI document, generated from the handlers' annotations and the wire types, served
//! at `/api/openapi.json` and kept under a snapshot test (`docs/openapi.json`).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use watchgrid_wire as wire;

use super::agent;
use super::api_tokens;
use super::audit_log;
use super::devices;
use super::dns_records;
use super::ops;
use super::session;
use super::ssh;
use super::tenants;
use super::users;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Watchgrid API",
        description = "The REST API of the Watchgrid server. Every error response carries the \
                       envelope `ErrorBody`; see docs/api.md. Authenticate with \
                       `Authorization: Bearer <access token or wgt_ API token>`; select a tenant \
                       with `X-Watchgrid-Tenant: <slug>`."
    ),
    paths(
        ops::healthz, ops::readyz, ops::version, ops::metrics, openapi_json,
        session::login, session::refresh, session::logout, session::whoami, session::change_password,
        tenants::list, tenants::create, tenants::get, tenants::update, tenants::delete,
        users::list, users::create, users::get, users::update, users::delete,
        api_tokens::list, api_tokens::create, api_tokens::revoke,
        audit_log::list,
        agent::register, agent::server_info, agent::heartbeat,
        devices::list, devices::create_plain, devices::get, devices::update, devices::delete,
        devices::wireguard_config, devices::list_onboarding, devices::create_onboarding,
        devices::revoke_onboarding,
        dns_records::list, dns_records::create, dns_records::get, dns_records::update,
        dns_records::delete,
        ssh::sign, ssh::list_certificates, ssh::get_ca, ssh::krl, ssh::get_settings,
        ssh::put_settings, ssh::list_principals, ssh::put_principals, ssh::revoke,
        ssh::agent_ca, ssh::agent_krl, ssh::agent_host_certificate, ssh::ssh_relay,
    ),
    components(schemas(
        wire::ErrorBody, wire::ErrorDetail, wire::FieldError, wire::HealthReport,
        wire::HealthStatus, wire::VersionInfo, wire::Role, wire::Tenant, wire::CreateTenant,
        wire::UpdateTenant, wire::User, wire::CreateUser, wire::UpdateUser, wire::LoginRequest,
        wire::LoginResponse, wire::RefreshRequest, wire::ChangePassword, wire::Whoami,
        wire::ApiToken, wire::CreateApiToken, wire::CreatedApiToken, wire::AuditEntry,
        wire::Device, wire::DeviceKind, wire::DeviceStatus, wire::UpdateDevice,
        wire::CreatePlainDevice, wire::CreatedPlainDevice, wire::OnboardingToken,
        wire::CreateOnboardingToken, wire::CreatedOnboardingToken, wire::RegisterRequest,
        wire::RegisterResponse, wire::ServerInfo, wire::Heartbeat, wire::HeartbeatAck,
        wire::DnsRecord, wire::DnsRecordType, wire::CreateDnsRecord, wire::UpdateDnsRecord,
        wire::DnsSettings,
        wire::SignRequest, wire::SignedCertificate, wire::CaPublicKey, wire::SshCaKeys,
        wire::SshSettings, wire::PrincipalGrant, wire::IssuedCertificate, wire::RevokeRequest,
        wire::RevokeResult, wire::HostCertificateRequest, wire::HostCertificate,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness, version, metrics"),
        (name = "auth", description = "Login sessions"),
        (name = "tenants", description = "Tenants (superadmins)"),
        (name = "users", description = "Users of the request's tenant"),
        (name = "tokens", description = "API tokens of the request's tenant"),
        (name = "audit", description = "The audit log"),
        (name = "devices", description = "Devices and onboarding tokens of the request's tenant"),
        (name = "dns", description = "Magic DNS custom records of the request's tenant"),
        (name = "ssh", description = "The tenant's SSH certificate authority: user certificates, CA keys, principals, revocation"),
        (name = "agent", description = "The agent protocol: registration (public), heartbeats (agent API on the overlay address)"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "device",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wgd_ device credential, from the device's overlay address")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token, or a wgt_ API token")
                    .build(),
            ),
        );
    }
}

/// The document, with the release version, completed from the route table (see [`complete`]).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_owned();
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    complete(&mut value);
    serde_json::from_value(value).unwrap_or(doc)
}

/// The tag of the operations served only on the agent listener.
pub const AGENT_API_TAG: &str = "agent-api";

/// Closed value sets of query parameters that the handlers take as strings.
const QUERY_ENUMS: &[(&str, &str, &[&str])] = &[
    (
        "/api/devices",
        "status",
        &["online", "offline", "pending", "unknown"],
    ),
    (
        "/api/dns/records",
        "type",
        &["A", "AAAA", "CNAME", "TXT", "SRV"],
    ),
    ("/api/audit", "scope", &["tenant", "all"]),
];

/// Add what every operation answers because of the layers in front of its handler, from the
/// route table (the one source of each route's access policy), so the annotations cannot
/// forget it: 401 on secured operations; 403, and 400/404 for a missing or unknown
/// `X-Watchgrid-Tenant`, on tenant-scoped ones; 429 on public ones and on the login;
/// 400/413/415/422 on bodies; 422 for control characters in parameters; 503 when the database
/// is down. Also: unique operationIds (`<tag>_<handler>` where a handler name repeats), the
/// page `limit` range, the closed sets of [`QUERY_ENUMS`], and the agent API's operations
/// marked as served on `WATCHGRID_AGENT_LISTEN` (tag [`AGENT_API_TAG`], `x-watchgrid-listener`,
/// and a `servers` entry).
fn complete(doc: &mut serde_json::Value) {
    use serde_json::json;
    let main = super::route_table();
    let agent = super::agent_route_table();
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let mut id_counts = std::collections::HashMap::<String, usize>::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(id) = op["operationId"].as_str() {
                *id_counts.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    let error = |description: &str| {
        json!({"description": description,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let method: axum::http::Method = match method.to_uppercase().parse() {
                Ok(method) => method,
                Err(_) => continue,
            };
            let on_agent = agent
                .routes
                .iter()
                .any(|r| r.path == path && r.method == method);
            let access = main
                .routes
                .iter()
                .chain(agent.routes.iter())
                .find(|r| r.path == path && r.method == method)
                .map(|r| r.access);
            let tag = op["tags"][0].as_str().unwrap_or("api").to_owned();
            if let Some(id) = op["operationId"].as_str().map(str::to_owned) {
                if id_counts.get(&id).copied().unwrap_or(0) > 1 {
                    op["operationId"] = json!(format!("{tag}_{id}"));
                }
            }
            let has_body = op.get("requestBody").is_some();
            let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            let mut add = |status: &str, description: &str| {
                if op["responses"].get(status).is_none() {
                    op["responses"][status] = error(description);
                }
            };
            use crate::auth::Access;
            match access {
                Some(Access::Public(_) | Access::PublicSelfLimited) => {
                    add("429", "Rate limited: retry after `Retry-After` seconds");
                }
                Some(Access::Authenticated) => {
                    add("401", "No valid credentials");
                }
                Some(Access::Superadmin) => {
                    add("401", "No valid credentials");
                    add(
                        "403",
                        "Not a superadmin, or the password must be changed first",
                    );
                }
                Some(Access::Tenant(_)) => {
                    add(
                        "400",
                        "No tenant selected (`tenant_required`), or a malformed request",
                    );
                    add("401", "No valid credentials");
                    add(
                        "403",
                        "The role does not allow it, or the password must be changed first",
                    );
                    add(
                        "404",
                        "No such resource, or an unknown `X-Watchgrid-Tenant`",
                    );
                }
                Some(Access::Device) => {
                    add(
                        "401",
                        "Not a device's credential from its own overlay address",
                    );
                }
                None => {}
            }
            if has_body {
                add("400", "The body is not valid JSON");
                add("413", "The body is larger than 1 MiB");
                add("415", "The body is not `application/json`");
                add("422", "A field is invalid; `fields` names it");
            }
            if has_params {
                add("422", "A parameter is invalid; `fields` names it");
            }
            if !matches!(
                path.as_str(),
                "/api/openapi.json" | "/api/version" | "/metrics"
            ) && access.is_some()
            {
                add("503", "The database is unavailable; retry shortly");
            }
            if matches!(access, Some(Access::Tenant(_))) {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let named = params.iter().any(|p| {
                    p["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(crate::auth::TENANT_HEADER))
                });
                if !named {
                    let mut params = params;
                    params.push(json!({
                        "name": "X-Watchgrid-Tenant", "in": "header", "required": false,
                        "description": "The tenant (slug) to act in; default: the credential's",
                        "schema": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
                    }));
                    op["parameters"] = json!(params);
                }
            }
            if let Some(params) = op["parameters"].as_array_mut() {
                for param in params {
                    let name = param["name"].as_str().unwrap_or_default().to_owned();
                    if param["in"] != "query" {
                        continue;
                    }
                    if name == "limit" {
                        param["schema"]["minimum"] = json!(1);
                        param["schema"]["maximum"] = json!(500);
                    }
                    if let Some((_, _, values)) =
                        QUERY_ENUMS.iter().find(|(p, n, _)| p == path && *n == name)
                    {
                        param["schema"]["enum"] = json!(values);
                    }
                }
            }
            if on_agent {
                op["tags"] = json!([tag, AGENT_API_TAG]);
                op["x-watchgrid-listener"] = json!("agent");
                op["servers"] = json!([{
                    "url": "http://{agent_listen}",
                    "description": "The agent API: only on WATCHGRID_AGENT_LISTEN, the server's \
                                    overlay address, reached through the tunnel",
                    "variables": {"agent_listen": {"default": "100.64.0.1:8081"}},
                }]);
            }
        }
    }
    if let Some(tags) = doc["tags"].as_array_mut() {
        tags.push(json!({"name": AGENT_API_TAG,
                         "description": "Served only on the agent listener (WATCHGRID_AGENT_LISTEN)"}));
    }
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
