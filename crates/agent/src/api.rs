//! The agent's HTTP calls: registration and server info over the server's public URL, and the
//! heartbeat to the agent API through the tunnel. Non-2xx answers become [`AgentError::Api`]
//! with the server's error envelope.

use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use watchgrid_clientkit::http::{client, transport_reason, ClientOptions, ErrorAnswer};
use watchgrid_wire::{
    Heartbeat, HeartbeatAck, HostCertificate, HostCertificateRequest, RegisterRequest,
    RegisterResponse, ServerInfo, SshCaKeys,
};

use crate::args::ServerUrl;
use crate::error::AgentError;

/// How long a connection to the public URL may take to open.
const PUBLIC_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request to the public URL may take in all.
const PUBLIC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection to the agent API may take: short, as a dead tunnel shows up here.
const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a heartbeat may take in all.
const TUNNEL_TIMEOUT: Duration = Duration::from_secs(20);

const USER_AGENT: &str = concat!("watchgrid-agent/", env!("CARGO_PKG_VERSION"));

pub const REGISTER_PATH: &str = "/api/agent/register";
pub const SERVER_INFO_PATH: &str = "/api/agent/server-info";
pub const HEARTBEAT_PATH: &str = "/api/agent/heartbeat";
pub const SSH_CA_PATH: &str = "/api/agent/ssh/ca";
pub const SSH_KRL_PATH: &str = "/api/agent/ssh/krl";
pub const SSH_HOST_CERT_PATH: &str = "/api/agent/ssh/host-certificate";

/// Calls to the server's public URL (the system's HTTPS proxy settings apply).
#[derive(Debug, Clone)]
pub struct PublicClient {
    http: Client,
    server: ServerUrl,
}

impl PublicClient {
    pub fn new(server: ServerUrl) -> Result<PublicClient, AgentError> {
        // The client follows no redirect: one would resend the token somewhere else.
        let http = client(&ClientOptions {
            user_agent: USER_AGENT,
            connect_timeout: PUBLIC_CONNECT_TIMEOUT,
            timeout: PUBLIC_TIMEOUT,
            system_proxy: true,
        })
        .map_err(AgentError::Failed)?;
        Ok(PublicClient { http, server })
    }

    /// `POST /api/agent/register`.
    pub async fn register(
        &self,
        request: &RegisterRequest,
    ) -> Result<RegisterResponse, AgentError> {
        let url = self.server.join(REGISTER_PATH);
        send(self.http.post(&url).json(request), &url, "enrollment").await
    }

    /// `GET /api/agent/server-info`.
    pub async fn server_info(&self) -> Result<ServerInfo, AgentError> {
        let url = self.server.join(SERVER_INFO_PATH);
        send(self.http.get(&url), &url, "the server-info request").await
    }
}

/// Calls to the agent API, through the tunnel, with the device credential. Proxies never
/// apply: the request must leave through the WireGuard interface.
#[derive(Clone)]
pub struct AgentApiClient {
    http: Client,
    base: String,
    heartbeat_url: String,
    credential: String,
}

impl std::fmt::Debug for AgentApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentApiClient")
            .field("heartbeat_url", &self.heartbeat_url)
            .field("credential", &"***")
            .finish()
    }
}

impl AgentApiClient {
    pub fn new(agent_api: &str, credential: &str) -> Result<AgentApiClient, AgentError> {
        let http = client(&ClientOptions {
            user_agent: USER_AGENT,
            connect_timeout: TUNNEL_CONNECT_TIMEOUT,
            timeout: TUNNEL_TIMEOUT,
            system_proxy: false,
        })
        .map_err(AgentError::Failed)?;
        Ok(AgentApiClient {
            http,
            base: agent_api.trim_end_matches('/').to_string(),
            heartbeat_url: format!("{}{HEARTBEAT_PATH}", agent_api.trim_end_matches('/')),
            credential: credential.to_string(),
        })
    }

    pub fn heartbeat_url(&self) -> &str {
        &self.heartbeat_url
    }

    /// `POST /api/agent/heartbeat` with `Authorization: Bearer <credential>`.
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatAck, AgentError> {
        let request = self
            .http
            .post(&self.heartbeat_url)
            .bearer_auth(&self.credential)
            .json(beat);
        send(request, &self.heartbeat_url, "heartbeat").await
    }
}

impl AgentApiClient {
    /// `GET /api/agent/ssh/ca`: the tenant's CA keys.
    pub async fn ssh_ca(&self) -> Result<SshCaKeys, AgentError> {
        let url = format!("{}{SSH_CA_PATH}", self.base);
        let request = self.http.get(&url).bearer_auth(&self.credential);
        send(request, &url, "the SSH CA request").await
    }

    /// `GET /api/agent/ssh/krl`: the tenant's KRL, binary.
    pub async fn ssh_krl(&self) -> Result<Vec<u8>, AgentError> {
        let url = format!("{}{SSH_KRL_PATH}", self.base);
        let request = self.http.get(&url).bearer_auth(&self.credential);
        let response = request.send().await.map_err(|e| AgentError::Unreachable {
            url: url.clone(),
            reason: transport_reason(&e),
        })?;
        if !response.status().is_success() {
            return Err(AgentError::api(
                "the SSH KRL request",
                ErrorAnswer::read(response).await,
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AgentError::Unreachable {
                url: url.clone(),
                reason: transport_reason(&e),
            })?;
        if !bytes.starts_with(b"SSHKRL\n\0") {
            return Err(AgentError::InvalidAnswer {
                url,
                reason: "not an OpenSSH KRL".into(),
            });
        }
        Ok(bytes.to_vec())
    }

    /// `POST /api/agent/ssh/host-certificate`: certify this host's SSH key.
    pub async fn host_certificate(&self, public_key: &str) -> Result<HostCertificate, AgentError> {
        let url = format!("{}{SSH_HOST_CERT_PATH}", self.base);
        let request =
            self.http
                .post(&url)
                .bearer_auth(&self.credential)
                .json(&HostCertificateRequest {
                    public_key: public_key.to_string(),
                });
        send(request, &url, "the SSH host certificate request").await
    }
}

/// Send, and decode a 2xx JSON body or turn the answer into an error.
async fn send<T: DeserializeOwned>(
    request: RequestBuilder,
    url: &str,
    action: &'static str,
) -> Result<T, AgentError> {
    let response = request.send().await.map_err(|e| AgentError::Unreachable {
        url: url.to_string(),
        reason: transport_reason(&e),
    })?;
    decode(response, url, action).await
}

async fn decode<T: DeserializeOwned>(
    response: Response,
    url: &str,
    action: &'static str,
) -> Result<T, AgentError> {
    let status = response.status();
    if status.is_success() {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AgentError::Unreachable {
                url: url.to_string(),
                reason: transport_reason(&e),
            })?;
        return serde_json::from_slice(&bytes).map_err(|e| AgentError::InvalidAnswer {
            url: url.to_string(),
            reason: e.to_string(),
        });
    }
    Err(AgentError::api(action, ErrorAnswer::read(response).await))
}

#[cfg(test)]
mod tests;
