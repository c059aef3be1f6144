//! The SSH certificate authority: signing requests, CA public keys, settings, principal
//! grants, issued certificates and revocations.

use serde::{Deserialize, Serialize};

use crate::Role;

/// `POST /api/ssh/certificates`: sign the caller's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignRequest {
    /// An OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
    /// The Unix accounts to log in as; all the caller is allowed when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    /// Validity in seconds; the tenant's default when absent, at most its maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_secs: Option<u64>,
}

/// A signed user certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedCertificate {
    /// The `*-cert-v01@openssh.com` line, the content of an `id_*-cert.pub` file.
    pub certificate: String,
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    /// RFC 3339; a few minutes before the request, for clock skew.
    pub valid_after: String,
    pub valid_before: String,
    /// The signing user CA's fingerprint.
    pub ca_fingerprint: String,
}

/// One CA key of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaPublicKey {
    /// `user` or `host`.
    pub kind: String,
    /// Grows with each rotation.
    pub generation: u32,
    /// `active` (signs new certificates) or `retiring` (still trusted until `retire_at`).
    pub state: String,
    /// The OpenSSH public key line.
    pub public_key: String,
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<String>,
}

/// `GET /api/ssh/ca`: what devices and clients must trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshCaKeys {
    pub tenant: String,
    pub user: Vec<CaPublicKey>,
    pub host: Vec<CaPublicKey>,
    /// The content of a `TrustedUserCAKeys` file: every trusted user CA, one per line.
    pub trusted_user_ca_keys: String,
    /// `known_hosts` lines: `@cert-authority <host_pattern> <host CA>` for every trusted host CA.
    pub known_hosts: String,
    /// The host names the host CA vouches for: `*.<tenant>.<domain>`.
    pub host_pattern: String,
    /// On the agent API only: the names the calling device's host certificate must carry
    /// (its Magic DNS name and overlay address); the agent renews when they change (a rename).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_principals: Option<Vec<String>>,
}

/// `GET`/`PUT /api/ssh/settings`: the tenant's validity bounds for user certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshSettings {
    pub default_validity_secs: u64,
    pub max_validity_secs: u64,
}

/// Who may log in as which Unix principals: one user (`user_id`) or every member with `role`.
/// `PUT /api/ssh/principals` replaces the subject's list; an empty list removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrincipalGrant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Filled in on reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub principals: Vec<String>,
}

/// A certificate the CA issued (`GET /api/ssh/certificates`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedCertificate {
    pub serial: u64,
    /// `user` or `host`.
    pub kind: String,
    pub key_id: String,
    /// The user (or API token) for user certificates, the device for host certificates.
    pub subject: String,
    pub principals: Vec<String>,
    pub key_fingerprint: String,
    pub ca_generation: u32,
    pub valid_after: String,
    pub valid_before: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// `POST /api/ssh/revocations`: exactly one of `serial`, `key_id`, `user_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Every certificate the user holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeResult {
    /// Issued certificates newly marked revoked.
    pub revoked_certificates: u64,
}

/// `POST /api/agent/ssh/host-certificate` (agent API): certify the device's SSH host key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostCertificateRequest {
    /// The host's public key, an OpenSSH line.
    pub public_key: String,
}

/// A host certificate for a device: its Magic DNS name and overlay address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostCertificate {
    /// The `*-cert-v01@openssh.com` line for sshd's `HostCertificate` file.
    pub certificate: String,
    pub serial: u64,
    /// `<device>.<tenant>.<domain>` and the overlay address.
    pub principals: Vec<String>,
    pub valid_after: String,
    pub valid_before: String,
    /// The signing host CA's fingerprint.
    pub ca_fingerprint: String,
}
