//! `ApiClient`: the Watchgrid REST API over reqwest, one typed method per endpoint. It adds
//! the credentials and the tenant header, maps failures into [`CliError`], and refreshes an
//! expired login session once (storing the rotated tokens) before retrying a refused request.

use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use watchgrid_clientkit::http::{client, transport_reason, ClientOptions, ErrorAnswer};
use watchgrid_wire::{
    ApiToken, AuditEntry, ChangePassword, CreateApiToken, CreateDnsRecord, CreateOnboardingToken,
    CreatePlainDevice, CreateTenant, CreateUser, CreatedApiToken, CreatedOnboardingToken,
    CreatedPlainDevice, Device, DeviceStatus, DnsRecord, DnsRecordType, LoginRequest,
    LoginResponse, OnboardingToken, Page, PrincipalGrant, RefreshRequest, SignRequest,
    SignedCertificate, SshCaKeys, Tenant, UpdateDevice, UpdateTenant, UpdateUser, User,
    VersionInfo, Whoami,
};

use crate::args::ServerUrl;
use crate::error::CliError;
use crate::session::{Session, SessionStore};

/// Selects the tenant to act in; without it the server uses the session's tenant.
pub const TENANT_HEADER: &str = "x-watchgrid-tenant";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// An SSH session through the relay may last this long.
const RELAY_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The relay's `Upgrade` protocol (the server's `RELAY_PROTOCOL`).
pub const RELAY_PROTOCOL: &str = "watchgrid-tcp";

/// The credentials requests carry. Its `Debug` output never shows a token.
pub enum Auth {
    /// None. `stored_for` names the server of a stored session that is not this server's, so
    /// that "not logged in" can say why.
    Anonymous { stored_for: Option<String> },
    /// An API token (`wgt_...`) or any other bearer token; never refreshed.
    Token(String),
    /// The stored login session; refreshed on 401, and the file updated.
    Session {
        session: Session,
        store: SessionStore,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous { stored_for } => f
                .debug_struct("Anonymous")
                .field("stored_for", stored_for)
                .finish(),
            Auth::Token(_) => f.write_str("Token(***)"),
            Auth::Session { session, store } => f
                .debug_struct("Session")
                .field("session", session)
                .field("store", store)
                .finish(),
        }
    }
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("server", &self.server.as_str())
            .field("tenant", &self.tenant)
            .field("auth", &self.auth)
            .finish()
    }
}

/// The filters of `GET /api/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub user: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub success: Option<bool>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// `scope=all`: every tenant (superadmins).
    pub all_tenants: bool,
}

impl AuditQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut add = |key, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key, value));
            }
        };
        add("limit", self.limit.map(|n| n.to_string()));
        add("cursor", self.cursor.clone());
        add("user", self.user.clone());
        add("action", self.action.clone());
        add("resource_type", self.resource_type.clone());
        add("success", self.success.map(|b| b.to_string()));
        add("since", self.since.clone());
        add("until", self.until.clone());
        add("scope", self.all_tenants.then(|| "all".to_string()));
        pairs
    }
}

/// The filters of `GET /api/devices`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub status: Option<DeviceStatus>,
    pub tag: Option<String>,
    /// Devices whose name contains this.
    pub name: Option<String>,
}

impl DeviceQuery {
    /// The query string's pairs, absent filters left out.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut add = |key: &'static str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key, value));
            }
        };
        add("limit", self.limit.map(|n| n.to_string()));
        add("cursor", self.cursor.clone());
        add(
            "status",
            self.status.map(|s| crate::args::status_name(s).to_string()),
        );
        add("tag", self.tag.clone());
        add("name", self.name.clone());
        pairs
    }
}

/// `GET /api/dns/records`'s query.
#[derive(Debug, Clone, Default)]
pub struct DnsRecordQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Records at exactly this name.
    pub name: Option<String>,
    pub record_type: Option<DnsRecordType>,
}

impl DnsRecordQuery {
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("limit", self.limit.map(|n| n.to_string())),
            ("cursor", self.cursor.clone()),
            ("name", self.name.clone()),
            ("type", self.record_type.map(|t| t.as_str().to_string())),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect()
    }
}

pub struct ApiClient {
    http: reqwest::Client,
    server: ServerUrl,
    tenant: Option<String>,
    auth: Auth,
}

/// Whether a request carries the credentials (login, refresh and version do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    Send,
    Omit,
}

impl ApiClient {
    pub fn new(server: ServerUrl, tenant: Option<String>, auth: Auth) -> Result<Self, CliError> {
        // The client follows no redirect: one would resend credentials and bodies somewhere
        // else; the error says so instead.
        let http = client(&ClientOptions {
            user_agent: concat!("watchgrid-cli/", env!("CARGO_PKG_VERSION")),
            connect_timeout: CONNECT_TIMEOUT,
            timeout: REQUEST_TIMEOUT,
            system_proxy: true,
        })
        .map_err(CliError::Failed)?;
        Ok(ApiClient {
            http,
            server,
            tenant,
            auth,
        })
    }

    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// The login session in use (after any refresh), if the client uses one.
    pub fn session(&self) -> Option<&Session> {
        match &self.auth {
            Auth::Session { session, .. } => Some(session),
            _ => None,
        }
    }

    // --- endpoints ------------------------------------------------------------------------

    /// `GET /api/version` (no credentials).
    pub async fn version(&self) -> Result<VersionInfo, CliError> {
        let resp = self
            .send_checked(
                Method::GET,
                &["api", "version"],
                &[],
                None,
                Credentials::Omit,
            )
            .await?;
        self.decode(resp).await
    }

    /// `POST /api/auth/login` (no credentials).
    pub async fn login(&self, request: &LoginRequest) -> Result<LoginResponse, CliError> {
        let body = to_body(request)?;
        let resp = self
            .send_checked(
                Method::POST,
                &["api", "auth", "login"],
                &[],
                Some(&body),
                Credentials::Omit,
            )
            .await?;
        self.decode(resp).await
    }

    /// `POST /api/auth/logout`.
    pub async fn logout(&mut self) -> Result<(), CliError> {
        self.call(Method::POST, &["api", "auth", "logout"], &[], None)
            .await
            .map(drop)
    }

    pub async fn whoami(&mut self) -> Result<Whoami, CliError> {
        self.get(&["api", "auth", "whoami"], &[]).await
    }

    /// `POST /api/auth/password`; the server then revokes every session of the user.
    pub async fn change_password(&mut self, request: &ChangePassword) -> Result<(), CliError> {
        let body = to_body(request)?;
        self.call(Method::POST, &["api", "auth", "password"], &[], Some(&body))
            .await
            .map(drop)
    }

    pub async fn tenants(&mut self) -> Result<Vec<Tenant>, CliError> {
        self.get(&["api", "tenants"], &[]).await
    }

    pub async fn create_tenant(&mut self, request: &CreateTenant) -> Result<Tenant, CliError> {
        self.send_json(Method::POST, &["api", "tenants"], request)
            .await
    }

    pub async fn tenant(&mut self, slug: &str) -> Result<Tenant, CliError> {
        self.get(&["api", "tenants", slug], &[]).await
    }

    pub async fn update_tenant(
        &mut self,
        slug: &str,
        request: &UpdateTenant,
    ) -> Result<Tenant, CliError> {
        self.send_json(Method::PATCH, &["api", "tenants", slug], request)
            .await
    }

    pub async fn delete_tenant(&mut self, slug: &str) -> Result<(), CliError> {
        self.delete(&["api", "tenants", slug]).await
    }

    pub async fn users(
        &mut self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<User>, CliError> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        self.get(&["api", "users"], &query).await
    }

    pub async fn create_user(&mut self, request: &CreateUser) -> Result<User, CliError> {
        self.send_json(Method::POST, &["api", "users"], request)
            .await
    }

    pub async fn user(&mut self, id: &str) -> Result<User, CliError> {
        self.get(&["api", "users", id], &[]).await
    }

    pub async fn update_user(&mut self, id: &str, request: &UpdateUser) -> Result<User, CliError> {
        self.send_json(Method::PATCH, &["api", "users", id], request)
            .await
    }

    /// Remove the user from the current tenant.
    pub async fn remove_user(&mut self, id: &str) -> Result<(), CliError> {
        self.delete(&["api", "users", id]).await
    }

    pub async fn tokens(&mut self) -> Result<Vec<ApiToken>, CliError> {
        self.get(&["api", "tokens"], &[]).await
    }

    pub async fn create_token(
        &mut self,
        request: &CreateApiToken,
    ) -> Result<CreatedApiToken, CliError> {
        self.send_json(Method::POST, &["api", "tokens"], request)
            .await
    }

    pub async fn revoke_token(&mut self, id: &str) -> Result<(), CliError> {
        self.delete(&["api", "tokens", id]).await
    }

    pub async fn audit(&mut self, query: &AuditQuery) -> Result<Page<AuditEntry>, CliError> {
        self.get(&["api", "audit"], &query.pairs()).await
    }

    pub async fn devices(&mut self, query: &DeviceQuery) -> Result<Page<Device>, CliError> {
        self.get(&["api", "devices"], &query.pairs()).await
    }

    /// `POST /api/devices`: a plain WireGuard peer, without the agent.
    pub async fn create_plain_device(
        &mut self,
        request: &CreatePlainDevice,
    ) -> Result<CreatedPlainDevice, CliError> {
        self.send_json(Method::POST, &["api", "devices"], request)
            .await
    }

    pub async fn device(&mut self, id: &str) -> Result<Device, CliError> {
        self.get(&["api", "devices", id], &[]).await
    }

    pub async fn update_device(
        &mut self,
        id: &str,
        request: &UpdateDevice,
    ) -> Result<Device, CliError> {
        self.send_json(Method::PATCH, &["api", "devices", id], request)
            .await
    }

    pub async fn delete_device(&mut self, id: &str) -> Result<(), CliError> {
        self.delete(&["api", "devices", id]).await
    }

    /// `GET /api/devices/{id}/wireguard-config`: the device's wg-quick file (`text/plain`,
    /// without the private key).
    pub async fn device_wireguard_config(&mut self, id: &str) -> Result<String, CliError> {
        let resp = self
            .call(
                Method::GET,
                &["api", "devices", id, "wireguard-config"],
                &[],
                None,
            )
            .await?;
        let body = self.body(resp).await?;
        String::from_utf8(body).map_err(|_| {
            CliError::Failed(format!(
                "unexpected answer from {}: the configuration is not UTF-8 text",
                self.server
            ))
        })
    }

    pub async fn onboarding_tokens(&mut self) -> Result<Vec<OnboardingToken>, CliError> {
        self.get(&["api", "onboarding-tokens"], &[]).await
    }

    pub async fn create_onboarding_token(
        &mut self,
        request: &CreateOnboardingToken,
    ) -> Result<CreatedOnboardingToken, CliError> {
        self.send_json(Method::POST, &["api", "onboarding-tokens"], request)
            .await
    }

    pub async fn revoke_onboarding_token(&mut self, id: &str) -> Result<(), CliError> {
        self.delete(&["api", "onboarding-tokens", id]).await
    }

    pub async fn dns_records(
        &mut self,
        query: &DnsRecordQuery,
    ) -> Result<Page<DnsRecord>, CliError> {
        self.get(&["api", "dns", "records"], &query.pairs()).await
    }

    pub async fn create_dns_record(
        &mut self,
        request: &CreateDnsRecord,
    ) -> Result<DnsRecord, CliError> {
        self.send_json(Method::POST, &["api", "dns", "records"], request)
            .await
    }

    pub async fn delete_dns_record(&mut self, id: &str) -> Result<(), CliError> {
        self.delete(&["api", "dns", "records", id]).await
    }

    /// `GET /api/ssh/ca`: the tenant's CA keys and known_hosts line.
    pub async fn ssh_ca(&mut self) -> Result<SshCaKeys, CliError> {
        self.get(&["api", "ssh", "ca"], &[]).await
    }

    /// `GET /api/ssh/krl`: the tenant's KRL (binary), which also lists revoked host
    /// certificates: ssh's `RevokedHostKeys`.
    pub async fn ssh_krl(&mut self) -> Result<Vec<u8>, CliError> {
        let resp = self
            .call(Method::GET, &["api", "ssh", "krl"], &[], None)
            .await?;
        self.body(resp).await
    }

    /// `GET /api/ssh/principals`: the tenant's principal grants.
    pub async fn ssh_grants(&mut self) -> Result<Vec<PrincipalGrant>, CliError> {
        self.get(&["api", "ssh", "principals"], &[]).await
    }

    /// `PUT /api/ssh/principals`: replace one user's or one role's grant (empty: remove it).
    pub async fn set_ssh_grant(
        &mut self,
        grant: &PrincipalGrant,
    ) -> Result<PrincipalGrant, CliError> {
        self.send_json(Method::PUT, &["api", "ssh", "principals"], grant)
            .await
    }

    /// `POST /api/ssh/certificates`: a user certificate for a public key.
    pub async fn sign_ssh_key(
        &mut self,
        request: &SignRequest,
    ) -> Result<SignedCertificate, CliError> {
        self.send_json(Method::POST, &["api", "ssh", "certificates"], request)
            .await
    }

    /// `GET /api/devices/{id}/ssh-relay` with `Upgrade: watchgrid-tcp`: a byte stream to the
    /// device's SSH port. Call an ordinary endpoint first, so that an expired session has been
    /// refreshed.
    pub async fn ssh_relay(&self, device_id: &str) -> Result<reqwest::Upgraded, CliError> {
        // Its own client: an SSH session outlives any request timeout.
        let http = client(&ClientOptions {
            user_agent: concat!("watchgrid-cli/", env!("CARGO_PKG_VERSION")),
            connect_timeout: CONNECT_TIMEOUT,
            timeout: RELAY_TIMEOUT,
            system_proxy: true,
        })
        .map_err(CliError::Failed)?;
        let mut request = http
            .get(self.url(&["api", "devices", device_id, "ssh-relay"]))
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, RELAY_PROTOCOL);
        match &self.auth {
            Auth::Anonymous { .. } => {}
            Auth::Token(token) => request = request.bearer_auth(token),
            Auth::Session { session, .. } => request = request.bearer_auth(&session.access_token),
        }
        if let Some(tenant) = &self.tenant {
            request = request.header(TENANT_HEADER, tenant);
        }
        let resp = request.send().await.map_err(|e| CliError::Unreachable {
            server: self.server.to_string(),
            reason: transport_reason(&e),
        })?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(self.check(resp).await.err().unwrap_or_else(|| {
                CliError::Failed(format!(
                    "{} did not open the SSH relay (no protocol switch)",
                    self.server
                ))
            }));
        }
        resp.upgrade().await.map_err(|e| {
            CliError::Failed(format!(
                "the SSH relay at {} failed: {}",
                self.server,
                transport_reason(&e)
            ))
        })
    }

    // --- plumbing -------------------------------------------------------------------------

    async fn get<T: DeserializeOwned>(
        &mut self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, CliError> {
        let resp = self.call(Method::GET, path, query, None).await?;
        self.decode(resp).await
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &[&str],
        body: &B,
    ) -> Result<T, CliError> {
        let body = to_body(body)?;
        let resp = self.call(method, path, &[], Some(&body)).await?;
        self.decode(resp).await
    }

    async fn delete(&mut self, path: &[&str]) -> Result<(), CliError> {
        self.call(Method::DELETE, path, &[], None).await.map(drop)
    }

    /// An authenticated request. A 401 with the stored session refreshes it once and retries
    /// once; a 401 without credentials means "not logged in".
    async fn call(
        &mut self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, CliError> {
        let resp = self
            .send(method.clone(), path, query, body, Credentials::Send)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return self.check(resp).await;
        }
        match &self.auth {
            Auth::Session { .. } => {
                self.refresh().await?;
                let resp = self
                    .send(method, path, query, body, Credentials::Send)
                    .await?;
                self.check(resp).await
            }
            Auth::Anonymous { stored_for } => Err(CliError::NotLoggedIn {
                server: self.server.to_string(),
                stored_for: stored_for.clone(),
            }),
            Auth::Token(_) => self.check(resp).await,
        }
    }

    /// Replace the session's tokens: `POST /api/auth/refresh`, then store the rotated pair.
    /// A refused refresh deletes the session file.
    async fn refresh(&mut self) -> Result<(), CliError> {
        let (current, store) = match &self.auth {
            Auth::Session { session, store } => (session.clone(), store.clone()),
            _ => return Err(CliError::SessionExpired),
        };

        // Another watchgrid process may have rotated the tokens since this one read the file;
        // refreshing with the old token would then fail.
        if let Some(newer) = rotated_elsewhere(&current, &store)? {
            self.auth = Auth::Session {
                session: newer,
                store,
            };
            return Ok(());
        }

        let body = to_body(&RefreshRequest {
            refresh_token: current.refresh_token.clone(),
        })?;
        let answer = self
            .send_checked(
                Method::POST,
                &["api", "auth", "refresh"],
                &[],
                Some(&body),
                Credentials::Omit,
            )
            .await;
        let resp = match answer {
            Ok(resp) => resp,
            // Revoked, expired, unknown: the session is over. Rate limits, server errors and
            // an unreachable server leave it in place for the next try.
            Err(CliError::Api {
                status: 400 | 401 | 403 | 404 | 422,
                ..
            }) => {
                // Unless another process won the race to rotate the same token meanwhile.
                if let Some(newer) = rotated_elsewhere(&current, &store)? {
                    self.auth = Auth::Session {
                        session: newer,
                        store,
                    };
                    return Ok(());
                }
                store.delete()?;
                return Err(CliError::SessionExpired);
            }
            Err(other) => return Err(other),
        };
        let login: LoginResponse = self.decode(resp).await?;
        let session = Session::from_login(&current.server, &login, current.tenant.clone());
        store.save(&session)?;
        self.auth = Auth::Session { session, store };
        Ok(())
    }

    async fn send_checked(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&[u8]>,
        credentials: Credentials,
    ) -> Result<Response, CliError> {
        let resp = self.send(method, path, query, body, credentials).await?;
        self.check(resp).await
    }

    async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&[u8]>,
        credentials: Credentials,
    ) -> Result<Response, CliError> {
        let mut request: RequestBuilder = self.http.request(method, self.url(path));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.to_vec());
        }
        if credentials == Credentials::Send {
            match &self.auth {
                Auth::Anonymous { .. } => {}
                Auth::Token(token) => request = request.bearer_auth(token),
                Auth::Session { session, .. } => {
                    request = request.bearer_auth(&session.access_token)
                }
            }
            if let Some(tenant) = &self.tenant {
                request = request.header(TENANT_HEADER, tenant);
            }
        }
        request.send().await.map_err(|e| {
            if e.is_builder() {
                CliError::Failed(format!(
                    "cannot build the request: {}",
                    transport_reason(&e)
                ))
            } else {
                CliError::Unreachable {
                    server: self.server.to_string(),
                    reason: transport_reason(&e),
                }
            }
        })
    }

    /// The response if it is a success, else its error envelope as [`CliError::Api`].
    async fn check(&self, resp: Response) -> Result<Response, CliError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(ErrorAnswer::read(resp).await.into())
    }

    async fn decode<T: DeserializeOwned>(&self, resp: Response) -> Result<T, CliError> {
        let body = self.body(resp).await?;
        serde_json::from_slice(&body)
            .map_err(|e| CliError::Failed(format!("unexpected answer from {}: {e}", self.server)))
    }

    async fn body(&self, resp: Response) -> Result<Vec<u8>, CliError> {
        let body = resp.bytes().await.map_err(|e| {
            CliError::Failed(format!(
                "lost the connection to {}: {}",
                self.server,
                transport_reason(&e)
            ))
        })?;
        Ok(body.to_vec())
    }

    /// The server's base URL with `segments` appended, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.server.url().clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

/// The session file's session if another process has rotated `current`'s tokens since it was
/// read; `None` if the file still holds `current`'s tokens (or cannot be read). A file that is
/// gone, or now holds another login, ends this session without touching the file.
fn rotated_elsewhere(current: &Session, store: &SessionStore) -> Result<Option<Session>, CliError> {
    match store.load() {
        Ok(Some(on_disk)) if on_disk.refresh_token == current.refresh_token => Ok(None),
        Ok(Some(on_disk)) => {
            let same_login = on_disk.server == current.server
                && on_disk.username == current.username
                && on_disk.tenant == current.tenant;
            if same_login {
                Ok(Some(on_disk))
            } else {
                Err(CliError::SessionExpired)
            }
        }
        Ok(None) => Err(CliError::SessionExpired),
        Err(_) => Ok(None),
    }
}

fn to_body<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>, CliError> {
    serde_json::to_vec(body)
        .map_err(|e| CliError::Failed(format!("cannot encode the request: {e}")))
}

#[cfg(test)]
mod tests;
