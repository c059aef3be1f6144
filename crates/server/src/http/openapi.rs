//! The OpenAPI document, generated from the handlers' annotations and the wire types, served
//! at `/api/openapi.json` and kept under a snapshot test (`docs/openapi.json`).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use watchgrid_wire as wire;

use super::{
    agent, api_tokens, audit_log, devices, dns_records, ops, session, ssh, tenants, users,
};

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

/// The document, with the release version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_owned();
    doc
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
