//! Authentication and authorization that a handler cannot forget.
//!
//! Routes are added only through [`ApiRouter::route`], which requires an [`Access`] policy for
//! each. The [`authorize`] middleware looks the matched route up in that table and, before the
//! handler runs, rate-limits public routes, authenticates the caller and resolves the tenant
//! scope. A route that reached the router some other way has no policy and is refused (500),
//! so a missing check fails loudly instead of opening a hole. Handlers receive the outcome as
//! the [`Principal`] and [`Scope`] extractors, and every tenant-scoped query filters by
//! `scope.tenant.id`: another tenant's resources are indistinguishable from missing ones (404).

pub mod password;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;
use chrono::Utc;
use uuid::Uuid;
use watchgrid_store::tenants::TenantRow;
use watchgrid_store::{sessions, tenants, users};
use watchgrid_wire::Role;

use crate::http::error::ApiError;
use crate::http::extract::bearer_credential;
use crate::ratelimit::Limiter;
use crate::state::AppState;

/// Header naming the tenant (by slug) a request acts in; defaults to the credential's tenant.
pub const TENANT_HEADER: &str = "x-watchgrid-tenant";

/// The client's address: the TCP peer, or for requests through `WATCHGRID_TRUSTED_PROXIES`
/// the last untrusted hop of `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials; rate-limited per client by the named limiter.
    Public(Limiter),
    /// No credentials; the handler applies its own rate limits so that refusals are audited
    /// (the login endpoint).
    PublicSelfLimited,
    /// Any authenticated caller — also one who must change their password first.
    Authenticated,
    /// Global administrators only.
    Superadmin,
    /// At least this role in the request's tenant.
    Tenant(Role),
    /// An enrolled device: its credential, from its own overlay address (agent API only).
    Device,
}

/// One row of the route table.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// Every API route with its access policy.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub routes: Vec<RouteSpec>,
}

impl RouteTable {
    fn lookup(&self, method: &Method, path: &str) -> Option<Access> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.routes
            .iter()
            .find(|r| r.path == path && r.method == method)
            .map(|r| r.access)
    }

    fn has_path(&self, path: &str) -> bool {
        self.routes.iter().any(|r| r.path == path)
    }
}

/// Builds the router and its route table together.
#[derive(Debug, Default)]
pub struct ApiRouter {
    router: Router<AppState>,
    table: RouteTable,
}

impl ApiRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `method path` with `access`.
    pub fn route<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let method_router: MethodRouter<AppState> = match method {
            Method::GET => get(handler),
            Method::POST => post(handler),
            Method::PATCH => patch(handler),
            Method::PUT => put(handler),
            Method::DELETE => delete(handler),
            ref other => panic!("unsupported method {other} for {path}"),
        };
        assert!(
            self.table.lookup(&method, path).is_none(),
            "{method} {path} registered twice"
        );
        self.router = self.router.route(path, method_router);
        self.table.routes.push(RouteSpec {
            method,
            path,
            access,
        });
        self
    }

    pub fn finish(self) -> (Router<AppState>, Arc<RouteTable>) {
        (self.router, Arc::new(self.table))
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session {
        session_id: Uuid,
    },
    /// `role` is the token's role capped at its creator's current role in the token's
    /// tenant, as of this request.
    ApiToken {
        token_id: Uuid,
        role: Role,
        creator: Uuid,
    },
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user; `None` for API tokens, which act on their own.
    pub user_id: Option<Uuid>,
    /// For audit rows: the username, or `token:<name>`.
    pub name: String,
    pub is_superadmin: bool,
    pub must_change_password: bool,
    pub credential: Credential,
    /// The tenant the credential works in unless a request names another.
    pub home_tenant: Option<Uuid>,
}

/// The tenant a request acts in and the caller's role there.
#[derive(Debug, Clone)]
pub struct Scope {
    pub tenant: TenantRow,
    pub role: Role,
}

/// State of the [`authorize`] layer.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    pub app: AppState,
    pub table: Arc<RouteTable>,
}

pub async fn authorize(
    State(layer): State<AuthLayer>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        // No route matched: the fallback answers 404.
        return next.run(request).await;
    };
    let access = match layer.table.lookup(request.method(), &path) {
        Some(access) => access,
        // The path exists with other methods: let the router answer 405.
        None if layer.table.has_path(&path) => return next.run(request).await,
        None => {
            return ApiError::Internal(format!("route {path} has no access policy; refusing"))
                .into_response()
        }
    };
    if access == Access::Device {
        return match authenticate_device(&layer.app, &request) {
            Ok(device) => {
                request.extensions_mut().insert(DeviceCaller(device));
                next.run(request).await
            }
            Err(err) => err.into_response(),
        };
    }
    let client = request
        .extensions()
        .get::<ClientAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0);
    match check(&layer.app, access, client, request.headers()).await {
        Ok((principal, scope)) => {
            if let Some(principal) = principal {
                request.extensions_mut().insert(principal);
            }
            if let Some(scope) = scope {
                request.extensions_mut().insert(scope);
            }
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

async fn check(
    app: &AppState,
    access: Access,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<(Option<Principal>, Option<Scope>), ApiError> {
    match access {
        Access::Public(limiter) => {
            app.limits
                .check_addr(limiter, client)
                .map_err(|retry| ApiError::RateLimited {
                    retry_after_secs: retry.seconds(),
                })?;
            return Ok((None, None));
        }
        Access::PublicSelfLimited => return Ok((None, None)),
        Access::Device => {
            return Err(ApiError::Internal(
                "device routes are checked by authorize".into(),
            ))
        }
        _ => {}
    }
    let principal = authenticate(app, headers).await?;
    if principal.must_change_password && access != Access::Authenticated {
        return Err(ApiError::PasswordChangeRequired);
    }
    let scope = match access {
        Access::Public(_) | Access::PublicSelfLimited | Access::Device => None,
        Access::Authenticated => resolve_scope(app, &principal, headers).await.ok(),
        Access::Superadmin => {
            if !principal.is_superadmin {
                return Err(ApiError::Forbidden);
            }
            resolve_scope(app, &principal, headers).await.ok()
        }
        Access::Tenant(required) => {
            let scope = resolve_scope(app, &principal, headers).await?;
            if !scope.role.allows(required) {
                return Err(ApiError::Forbidden);
            }
            Some(scope)
        }
    };
    Ok((Some(principal), scope))
}

/// Check the bearer credential: an API token (`wgt_...`) or a session's access token.
pub async fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer_credential(headers).ok_or(ApiError::Unauthorized)?;
    let now = Utc::now();
    if token.starts_with(tokens::API_TOKEN_PREFIX) {
        let found = sessions::api_token_by_hash(&app.db, &tokens::secret_hash(token))
            .await?
            .filter(|found| found.token.is_active(now))
            .ok_or(ApiError::Unauthorized)?;
        let (creator, role) = token_authority(&found).ok_or(ApiError::Unauthorized)?;
        let row = found.token;
        if row
            .last_used_at
            .is_none_or(|at| now - at > chrono::Duration::minutes(1))
        {
            if let Err(err) = sessions::touch_api_token(&app.db, row.id, now).await {
                tracing::warn!(error = %err, "could not record API token use");
            }
        }
        return Ok(Principal {
            user_id: None,
            name: format!("token:{}", row.name),
            is_superadmin: false,
            must_change_password: false,
            credential: Credential::ApiToken {
                token_id: row.id,
                role,
                creator,
            },
            home_tenant: Some(row.tenant_id),
        });
    }
    let claims = app.jwt.verify(token).ok_or(ApiError::Unauthorized)?;
    let session = sessions::session_by_id(&app.db, claims.sid)
        .await?
        .filter(|s| s.is_active(now) && s.user_id == claims.sub)
        .ok_or(ApiError::Unauthorized)?;
    let user = users::user_by_id(&app.db, claims.sub)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(ApiError::Unauthorized)?;
    Ok(Principal {
        user_id: Some(user.id),
        name: user.username,
        is_superadmin: user.is_superadmin,
        must_change_password: user.must_change_password,
        credential: Credential::Session {
            session_id: session.id,
        },
        home_tenant: session.tenant_id,
    })
}

/// What an API token may do now: its role, capped at what its creator may do in the token's
/// tenant today, so that removing, deleting, disabling or demoting the creator takes the
/// token's power with it. `None` (refused) when the creator holds no role there any more.
fn token_authority(found: &sessions::TokenWithCreator) -> Option<(Uuid, Role)> {
    let creator_id = found.token.creator_id?;
    let creator = found.creator.as_ref().filter(|c| !c.disabled)?;
    let creator_role = if creator.is_superadmin {
        Role::Owner
    } else {
        creator.role?
    };
    Some((creator_id, found.token.role.min(creator_role)))
}

/// The tenant a request acts in: the `X-Watchgrid-Tenant` header's, else the credential's.
/// A tenant the caller may not see is `NotFound`, exactly like one that does not exist.
pub async fn resolve_scope(
    app: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<Scope, ApiError> {
    let requested = headers
        .get(TENANT_HEADER)
        .map(|v| v.to_str().map(str::trim).map_err(|_| ApiError::NotFound))
        .transpose()?;
    let tenant = match requested {
        Some(slug) => tenants::tenant_by_slug(&app.db, slug).await?,
        None => match principal.home_tenant {
            Some(id) => tenants::tenant_by_id(&app.db, id).await?,
            None => return Err(ApiError::TenantRequired),
        },
    }
    .ok_or(ApiError::NotFound)?;
    let role = match (&principal.credential, principal.user_id) {
        (Credential::ApiToken { role, .. }, _) => {
            if principal.home_tenant != Some(tenant.id) {
                return Err(ApiError::NotFound);
            }
            *role
        }
        _ if principal.is_superadmin => Role::Owner,
        (Credential::Session { .. }, Some(user)) => tenants::role_of(&app.db, tenant.id, user)
            .await?
            .ok_or(ApiError::NotFound)?,
        (Credential::Session { .. }, None) => return Err(ApiError::Unauthorized),
    };
    Ok(Scope { tenant, role })
}

/// The device calling the agent API.
#[derive(Debug, Clone)]
pub struct DeviceCaller(pub Arc<crate::fleet::DeviceEntry>);

/// A device proves itself twice: the request comes from its overlay address (the TCP peer,
/// never a forwarded header: the agent API is reached only through the tunnel), and it carries
/// that device's credential, compared with the stored hash in constant time.
fn authenticate_device(
    app: &AppState,
    request: &Request,
) -> Result<Arc<crate::fleet::DeviceEntry>, ApiError> {
    use subtle::ConstantTimeEq;
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    // In-process tests supply the peer address through `MockConnectInfo` (feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    let peer = peer.or_else(|| {
        request
            .extensions()
            .get::<axum::extract::connect_info::MockConnectInfo<std::net::SocketAddr>>()
            .map(|m| m.0.ip())
    });
    let credential = bearer_credential(request.headers()).ok_or(ApiError::Unauthorized)?;
    let presented = tokens::secret_hash(credential);
    let device = match peer {
        Some(IpAddr::V4(ip)) => app.fleet.index.by_ip(ip),
        _ => None,
    };
    // Compare against something even when no device matches, so timing says nothing.
    let expected = device
        .as_ref()
        .and_then(|d| d.credential_hash)
        .unwrap_or([0u8; 32]);
    let matches: bool = presented.ct_eq(&expected[..]).into();
    match device {
        Some(device) if matches && device.credential_hash.is_some() => Ok(device),
        _ => Err(ApiError::Unauthorized),
    }
}

macro_rules! from_extensions {
    ($ty:ty, $what:literal) => {
        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = ApiError;
            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
                parts.extensions.get::<$ty>().cloned().ok_or_else(|| {
                    ApiError::Internal(
                        concat!($what, " missing: route access policy too weak").into(),
                    )
                })
            }
        }
    };
}

/// The tenant scope when the route does not require one (`Access::Authenticated`).
#[derive(Debug, Clone)]
pub struct MaybeScope(pub Option<Scope>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeScope {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeScope(parts.extensions.get::<Scope>().cloned()))
    }
}

from_extensions!(Principal, "principal");
from_extensions!(DeviceCaller, "device");
from_extensions!(Scope, "tenant scope");
from_extensions!(ClientAddr, "client address");
