//! The HTTP surface: the route table, the middleware stack and the handlers.

mod agent;
mod api_tokens;
mod audit_log;
pub mod convert;
mod devices;
mod dns_records;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
mod ops;
mod session;
mod ssh;
mod tenants;
mod users;
/// The input rules live in the domain core; handlers reach them here.
pub use watchgrid_core::validate;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use watchgrid_wire::Role;

pub use error::{ApiError, ApiResult};

use crate::auth::{Access, ApiRouter, AuthLayer, ClientAddr, RouteTable};
use crate::ratelimit::Limiter;
use crate::state::AppState;

/// Largest request body accepted, in bytes. Larger bodies get 413 with the error envelope.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A request that takes longer than this is answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Every route and who may call it. Adding a route anywhere else leaves it without a policy,
/// and the authorization layer refuses it.
pub fn routes() -> ApiRouter {
    use Method as M;
    let public = Access::Public(Limiter::Unauthenticated);
    ApiRouter::new()
        // Operations
        .route(M::GET, "/healthz", public, ops::healthz)
        .route(M::GET, "/readyz", public, ops::readyz)
        .route(M::GET, "/metrics", public, ops::metrics)
        .route(M::GET, "/api/version", public, ops::version)
        .route(M::GET, "/api/openapi.json", public, openapi::openapi_json)
        // Sessions
        .route(
            M::POST,
            "/api/auth/login",
            Access::PublicSelfLimited,
            session::login,
        )
        .route(M::POST, "/api/auth/refresh", public, session::refresh)
        .route(
            M::POST,
            "/api/auth/logout",
            Access::Authenticated,
            session::logout,
        )
        .route(
            M::GET,
            "/api/auth/whoami",
            Access::Authenticated,
            session::whoami,
        )
        .route(
            M::POST,
            "/api/auth/password",
            Access::Authenticated,
            session::change_password,
        )
        // Tenants (global administration)
        .route(M::GET, "/api/tenants", Access::Superadmin, tenants::list)
        .route(M::POST, "/api/tenants", Access::Superadmin, tenants::create)
        .route(
            M::GET,
            "/api/tenants/{slug}",
            Access::Superadmin,
            tenants::get,
        )
        .route(
            M::PATCH,
            "/api/tenants/{slug}",
            Access::Superadmin,
            tenants::update,
        )
        .route(
            M::DELETE,
            "/api/tenants/{slug}",
            Access::Superadmin,
            tenants::delete,
        )
        // Users of the request's tenant
        .route(
            M::GET,
            "/api/users",
            Access::Tenant(Role::Admin),
            users::list,
        )
        .route(
            M::POST,
            "/api/users",
            Access::Tenant(Role::Admin),
            users::create,
        )
        .route(
            M::GET,
            "/api/users/{id}",
            Access::Tenant(Role::Admin),
            users::get,
        )
        .route(
            M::PATCH,
            "/api/users/{id}",
            Access::Tenant(Role::Admin),
            users::update,
        )
        .route(
            M::DELETE,
            "/api/users/{id}",
            Access::Tenant(Role::Admin),
            users::delete,
        )
        // API tokens of the request's tenant
        .route(
            M::GET,
            "/api/tokens",
            Access::Tenant(Role::Admin),
            api_tokens::list,
        )
        .route(
            M::POST,
            "/api/tokens",
            Access::Tenant(Role::Admin),
            api_tokens::create,
        )
        .route(
            M::DELETE,
            "/api/tokens/{id}",
            Access::Tenant(Role::Admin),
            api_tokens::revoke,
        )
        // Audit log
        .route(
            M::GET,
            "/api/audit",
            Access::Tenant(Role::Admin),
            audit_log::list,
        )
        // Devices and onboarding
        .route(
            M::POST,
            "/api/agent/register",
            // Limited in the handler: per address, then (for a valid body) per token and
            // by the all-clients ceiling.
            Access::PublicSelfLimited,
            agent::register,
        )
        .route(M::GET, "/api/agent/server-info", public, agent::server_info)
        .route(
            M::GET,
            "/api/devices",
            Access::Tenant(Role::Viewer),
            devices::list,
        )
        .route(
            M::POST,
            "/api/devices",
            Access::Tenant(Role::Admin),
            devices::create_plain,
        )
        .route(
            M::GET,
            "/api/devices/{id}",
            Access::Tenant(Role::Viewer),
            devices::get,
        )
        .route(
            M::PATCH,
            "/api/devices/{id}",
            Access::Tenant(Role::Operator),
            devices::update,
        )
        .route(
            M::DELETE,
            "/api/devices/{id}",
            Access::Tenant(Role::Admin),
            devices::delete,
        )
        .route(
            M::GET,
            "/api/devices/{id}/wireguard-config",
            Access::Tenant(Role::Admin),
            devices::wireguard_config,
        )
        .route(
            M::GET,
            "/api/onboarding-tokens",
            Access::Tenant(Role::Admin),
            devices::list_onboarding,
        )
        .route(
            M::POST,
            "/api/onboarding-tokens",
            Access::Tenant(Role::Admin),
            devices::create_onboarding,
        )
        .route(
            M::DELETE,
            "/api/onboarding-tokens/{id}",
            Access::Tenant(Role::Admin),
            devices::revoke_onboarding,
        )
        // Magic DNS custom records
        .route(
            M::GET,
            "/api/dns/records",
            Access::Tenant(Role::Viewer),
            dns_records::list,
        )
        .route(
            M::POST,
            "/api/dns/records",
            Access::Tenant(Role::Admin),
            dns_records::create,
        )
        .route(
            M::GET,
            "/api/dns/records/{id}",
            Access::Tenant(Role::Viewer),
            dns_records::get,
        )
        .route(
            M::PATCH,
            "/api/dns/records/{id}",
            Access::Tenant(Role::Admin),
            dns_records::update,
        )
        .route(
            M::DELETE,
            "/api/dns/records/{id}",
            Access::Tenant(Role::Admin),
            dns_records::delete,
        )
        // SSH certificate authority
        .route(
            M::POST,
            "/api/ssh/certificates",
            Access::Tenant(Role::Viewer),
            ssh::sign,
        )
        .route(
            M::GET,
            "/api/ssh/certificates",
            Access::Tenant(Role::Admin),
            ssh::list_certificates,
        )
        .route(
            M::GET,
            "/api/ssh/ca",
            Access::Tenant(Role::Viewer),
            ssh::get_ca,
        )
        .route(
            M::GET,
            "/api/ssh/krl",
            Access::Tenant(Role::Viewer),
            ssh::krl,
        )
        .route(
            M::GET,
            "/api/ssh/settings",
            Access::Tenant(Role::Admin),
            ssh::get_settings,
        )
        .route(
            M::PUT,
            "/api/ssh/settings",
            Access::Tenant(Role::Admin),
            ssh::put_settings,
        )
        .route(
            M::GET,
            "/api/ssh/principals",
            Access::Tenant(Role::Admin),
            ssh::list_principals,
        )
        .route(
            M::PUT,
            "/api/ssh/principals",
            Access::Tenant(Role::Admin),
            ssh::put_principals,
        )
        .route(
            M::GET,
            "/api/devices/{id}/ssh-relay",
            Access::Tenant(Role::Viewer),
            ssh::ssh_relay,
        )
        .route(
            M::POST,
            "/api/ssh/revocations",
            Access::Tenant(Role::Admin),
            ssh::revoke,
        )
}

/// The agent API, served only on the server's overlay address (`WATCHGRID_AGENT_LISTEN`).
pub fn agent_routes() -> ApiRouter {
    ApiRouter::new()
        .route(
            Method::POST,
            "/api/agent/heartbeat",
            Access::Device,
            agent::heartbeat,
        )
        .route(
            Method::GET,
            "/api/agent/ssh/ca",
            Access::Device,
            ssh::agent_ca,
        )
        .route(
            Method::POST,
            "/api/agent/ssh/host-certificate",
            Access::Device,
            ssh::agent_host_certificate,
        )
        .route(
            Method::GET,
            "/api/agent/ssh/krl",
            Access::Device,
            ssh::agent_krl,
        )
}

/// The route table alone, for tests that walk it.
pub fn route_table() -> Arc<RouteTable> {
    routes().finish().1
}

/// The agent API's route table.
pub fn agent_route_table() -> Arc<RouteTable> {
    agent_routes().finish().1
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    with_layers(routes(), state)
}

/// The agent API's router.
pub fn agent_router(state: AppState) -> Router {
    with_layers(agent_routes(), state)
}

fn with_layers(routes: ApiRouter, state: AppState) -> Router {
    let (routes, table) = routes.finish();
    let auth = AuthLayer {
        app: state.clone(),
        table,
    };
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Layers run bottom-up on the way in: `observe` is outermost so it sees (and wraps in
        // the envelope) every response, including timeouts and body-limit rejections;
        // `authorize` runs after routing, on the matched route's policy.
        // After authorization (an anonymous caller learns nothing of the input rules).
        .layer(axum::middleware::from_fn(
            extract::refuse_control_characters,
        ))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::authorize,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state)
}

/// Unknown routes and methods are public answers too: they take a token from the
/// unauthenticated limiter, so a spray of invented paths or methods is refused (429) like any
/// other flood.
fn limit_unmatched(state: &AppState, client: ClientAddr) -> Result<(), ApiError> {
    state
        .limits
        .check_addr(Limiter::Unauthenticated, client.0)
        .map_err(|retry| ApiError::RateLimited {
            retry_after_secs: retry.seconds(),
        })
}

async fn not_found(
    State(state): State<AppState>,
    client: ClientAddr,
    uri: axum::http::Uri,
) -> ApiError {
    limit_unmatched(&state, client).err().unwrap_or_else(|| {
        // Quoted bounded, like every echo of an input.
        ApiError::UnknownEndpoint(validate::bounded(uri.path()))
    })
}

async fn method_not_allowed(State(state): State<AppState>, client: ClientAddr) -> Response {
    match limit_unmatched(&state, client) {
        Ok(()) => axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Err(err) => err.into_response(),
    }
}
