//! Wire types shared by the Watchgrid server, agent and CLI: the JSON bodies that cross the network.
//!
//! Architecture invariant: this crate depends on serde only. It knows nothing of HTTP frameworks,
//! SQL or tokio, so the agent and the CLI can use it without pulling in the server.

#![forbid(unsafe_code)]

pub mod audit;
pub mod devices;
pub mod dns;
pub mod error;
pub mod health;
pub mod identity;
pub mod ssh;
pub mod version;

pub use audit::AuditEntry;
pub use devices::{
    CreateOnboardingToken, CreatePlainDevice, CreatedOnboardingToken, CreatedPlainDevice, Device,
    DeviceKind, DeviceStatus, Heartbeat, HeartbeatAck, OnboardingToken, RegisterRequest,
    RegisterResponse, ServerInfo, UpdateDevice,
};
pub use dns::{CreateDnsRecord, DnsRecord, DnsRecordType, DnsSettings, UpdateDnsRecord};
pub use error::{ErrorBody, ErrorDetail, FieldError};
pub use health::{CheckValue, HealthReport, HealthStatus};
pub use identity::{
    ApiToken, ChangePassword, CreateApiToken, CreateTenant, CreateUser, CreatedApiToken,
    LoginRequest, LoginResponse, Page, RefreshRequest, Role, Tenant, UpdateTenant, UpdateUser,
    User, Whoami,
};
pub use ssh::{
    CaPublicKey, HostCertificate, HostCertificateRequest, IssuedCertificate, PrincipalGrant,
    RevokeRequest, RevokeResult, SignRequest, SignedCertificate, SshCaKeys, SshSettings,
};
pub use version::VersionInfo;
