//! Devices, onboarding tokens, and the agent protocol (registration and heartbeats).

use serde::{Deserialize, Serialize};

/// How a device joined: through `watchgrid-agent`, or as a plain WireGuard peer (a phone, a
/// router) configured with a downloaded wg-quick file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Agent,
    Plain,
}

/// `online` when a heartbeat arrived within three heartbeat intervals; `offline` after;
/// `pending` before the first; plain devices are `unknown` (they send no heartbeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Online,
    Offline,
    Pending,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: String,
    /// DNS-safe and unique within the tenant; the Magic DNS label.
    pub name: String,
    pub hostname: String,
    pub kind: DeviceKind,
    pub os: String,
    pub agent_version: String,
    pub overlay_ip: String,
    pub public_key: String,
    pub tags: Vec<String>,
    pub status: DeviceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
    pub created_at: String,
}

/// Change a device; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
            min_length = 1,
            max_length = 63
        )
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// A device record for a peer without the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatePlainDevice {
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
            min_length = 1,
            max_length = 63
        )
    )]
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The device's WireGuard public key; when absent the server generates a key pair and
    /// returns the private key once, inside `wireguard_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedPlainDevice {
    pub device: Device,
    /// A complete wg-quick file; it contains the private key only in this response.
    pub wireguard_config: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OnboardingToken {
    pub id: String,
    pub description: String,
    pub max_uses: u32,
    pub uses: u32,
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub revoked: bool,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateOnboardingToken {
    #[serde(default)]
    pub description: String,
    /// How many devices may enroll with it (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    /// Lifetime in hours (default 24, at most 8760).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_hours: Option<u32>,
    /// Tags given to every device it enrolls.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedOnboardingToken {
    pub token: OnboardingToken,
    pub secret: String,
}

/// `POST /api/agent/register`, sent by `watchgrid-agent enroll` over the public URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// The onboarding token's secret (`wgo_...`).
    pub token: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    /// The device's WireGuard public key (base64).
    pub wg_public_key: String,
    /// The device's SSH host public key (an OpenSSH line, e.g. the content of
    /// `/etc/ssh/ssh_host_ed25519_key.pub`); the answer then carries a host certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<String>,
    /// The device's current credential (`wgd_...`): required to register a WireGuard key that
    /// is already enrolled (it proves the caller is that device, not a holder of its token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterResponse {
    pub device_id: String,
    pub device_name: String,
    pub tenant: String,
    /// The device's overlay address and the overlay's prefix length: `100.64.0.7/10`.
    pub overlay_address: String,
    /// The server's WireGuard public key: the agent pins it.
    pub server_public_key: String,
    /// `host:port` the agent dials for WireGuard.
    pub server_endpoint: String,
    pub server_overlay_ip: String,
    /// Base URL of the agent API, reached through the tunnel.
    pub agent_api: String,
    /// The device's secret for the agent API (`wgd_...`); the server keeps only its hash.
    pub credential: String,
    pub heartbeat_interval_secs: u32,
    /// Magic DNS for split DNS; absent when the server runs no DNS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<crate::dns::DnsSettings>,
    /// A host certificate for `ssh_host_key`, when one was sent and the tenant's host CA is
    /// available (otherwise the agent asks again through the agent API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_certificate: Option<crate::ssh::HostCertificate>,
}

/// `GET /api/agent/server-info`: what an agent checks its pinned key against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerInfo {
    pub server_public_key: String,
    pub server_endpoint: String,
    pub server_overlay_ip: String,
    pub overlay_cidr: String,
}

/// `POST /api/agent/heartbeat`, through the tunnel, with the device credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    pub agent_version: String,
    pub uptime_secs: u64,
    pub hostname: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatAck {
    /// The interval the server expects; the agent adds jitter.
    pub heartbeat_interval_secs: u32,
    pub server_time: String,
    /// Magic DNS for split DNS; absent when the server runs no DNS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<crate::dns::DnsSettings>,
}
