//! The state directory: `state.json` (the enrollment, with the private key and the device
//! credential) and `status.json` (the heartbeat loop's latest outcome). Both files are 0600 and
//! replaced atomically (a temporary file in the same directory, fsync, rename, fsync of the
//! directory); a directory the agent creates is 0700 (see `watchgrid_clientkit::files`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use watchgrid_clientkit::files::PrivateDir;

use crate::error::AgentError;

/// The enrollment, in the state directory.
pub const STATE_FILE: &str = "state.json";
/// The heartbeat status, in the state directory.
pub const STATUS_FILE: &str = "status.json";
/// The version of `state.json`'s layout; a newer one is refused rather than misread.
pub const STATE_FORMAT: u32 = 1;

/// What `enroll` stores and `run` uses. Its `Debug` output never shows the private key or the
/// credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// [`STATE_FORMAT`].
    pub format: u32,
    pub device_id: String,
    pub device_name: String,
    pub tenant: String,
    /// The device's WireGuard private key (base64).
    pub private_key: String,
    /// The device's WireGuard public key (base64), for `status`.
    pub public_key: String,
    /// The device's secret for the agent API (`wgd_...`).
    pub credential: String,
    /// The server's WireGuard public key (base64) as it was at enrollment: the pin.
    pub server_public_key: String,
    /// The server's public base URL, without a trailing slash.
    pub server_url: String,
    /// `host:port` of the server's WireGuard listener.
    pub server_endpoint: String,
    /// The device's overlay address with the overlay's prefix length: `100.64.0.7/10`.
    pub overlay_address: String,
    pub server_overlay_ip: String,
    /// Base URL of the agent API, reached through the tunnel.
    pub agent_api: String,
    pub heartbeat_interval_secs: u32,
    /// When `enroll` stored this (RFC 3339, UTC).
    pub enrolled_at: String,
    /// Magic DNS for split DNS, as the server announced it at enrollment (heartbeats may
    /// update it while `run` runs); absent from servers without DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<watchgrid_wire::DnsSettings>,
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment")
            .field("format", &self.format)
            .field("device_id", &self.device_id)
            .field("device_name", &self.device_name)
            .field("tenant", &self.tenant)
            .field("private_key", &"***")
            .field("public_key", &self.public_key)
            .field("credential", &"***")
            .field("server_public_key", &self.server_public_key)
            .field("server_url", &self.server_url)
            .field("server_endpoint", &self.server_endpoint)
            .field("overlay_address", &self.overlay_address)
            .field("server_overlay_ip", &self.server_overlay_ip)
            .field("agent_api", &self.agent_api)
            .field("heartbeat_interval_secs", &self.heartbeat_interval_secs)
            .field("enrolled_at", &self.enrolled_at)
            .field("dns", &self.dns)
            .finish()
    }
}

/// What the agent is doing, as of the last write of `status.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `run` is heartbeating.
    Running,
    /// `run` stopped on a signal (or on an error other than a changed key).
    Stopped,
    /// `run` refused the server: its WireGuard key is not the pinned one.
    KeyChanged,
}

/// The tunnel's peer (the server) as the WireGuard backend reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSnapshot {
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The latest handshake (RFC 3339, UTC); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake_at: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `status.json`: written by `run` after every heartbeat attempt, read by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatStatus {
    pub phase: Phase,
    /// The process that wrote this file.
    pub pid: u32,
    /// When `run` started (RFC 3339, UTC).
    pub started_at: String,
    /// When this file was written.
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The interval the server asked for, before jitter.
    pub heartbeat_interval_secs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSnapshot>,
}

/// The state directory. The path is a parameter so tests use a temporary one.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PrivateDir,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir {
            dir: PrivateDir::new(dir),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.file(STATE_FILE)
    }

    pub fn status_path(&self) -> PathBuf {
        self.dir.file(STATUS_FILE)
    }

    /// The stored enrollment; `None` when there is none.
    pub fn load_enrollment(&self) -> Result<Option<Enrollment>, AgentError> {
        let path = self.state_path();
        let Some(enrollment) = self.read_json::<Enrollment>(STATE_FILE, "the enrollment file")?
        else {
            return Ok(None);
        };
        if enrollment.format != STATE_FORMAT {
            return Err(AgentError::Failed(format!(
                "{} has format {}, which this agent (format {STATE_FORMAT}) does not know: \
                 update the agent",
                path.display(),
                enrollment.format
            )));
        }
        Ok(Some(enrollment))
    }

    /// The stored enrollment, or the error that tells the user to enroll.
    pub fn require_enrollment(&self) -> Result<Enrollment, AgentError> {
        self.load_enrollment()?
            .ok_or_else(|| AgentError::NotEnrolled {
                state_file: self.state_path().display().to_string(),
            })
    }

    pub fn save_enrollment(&self, enrollment: &Enrollment) -> Result<(), AgentError> {
        self.write_json(STATE_FILE, enrollment)
    }

    /// The heartbeat status; `None` before `run` wrote one.
    pub fn load_status(&self) -> Result<Option<HeartbeatStatus>, AgentError> {
        self.read_json(STATUS_FILE, "the status file")
    }

    pub fn save_status(&self, status: &HeartbeatStatus) -> Result<(), AgentError> {
        self.write_json(STATUS_FILE, status)
    }

    /// Create the directory (0700) if it is missing and check that a file can be written in
    /// it: `enroll` does this before it spends a use of the onboarding token.
    pub fn prepare(&self) -> Result<(), AgentError> {
        Ok(self.dir.check_writable()?)
    }

    fn read_json<T: DeserializeOwned>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, AgentError> {
        let Some(text) = self.dir.read(name)? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            AgentError::Failed(format!(
                "{what} {} is damaged: {e}",
                self.dir.file(name).display()
            ))
        })
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), AgentError> {
        let mut text = serde_json::to_string_pretty(value).map_err(|e| {
            AgentError::Failed(format!(
                "cannot encode {}: {e}",
                self.dir.file(name).display()
            ))
        })?;
        text.push('\n');
        Ok(self.dir.write(name, text.as_bytes())?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use std::fs;

    use super::*;

    pub(crate) fn enrollment() -> Enrollment {
        Enrollment {
            format: STATE_FORMAT,
            device_id: "dev_1".into(),
            device_name: "laptop-7".into(),
            tenant: "acme".into(),
            private_key: "cHJpdmF0ZS1zZWNyZXQtcHJpdmF0ZS1zZWNyZXQtMTI=".into(),
            public_key: "ZGV2aWNlLXB1YmxpYy1rZXktZGV2aWNlLXB1YmxpYzE=".into(),
            credential: "wgd_credential-secret".into(),
            server_public_key: "c2VydmVyLXB1YmxpYy1rZXktc2VydmVyLXB1YmxpYzE=".into(),
            server_url: "https://wg.example.com".into(),
            server_endpoint: "wg.example.com:51820".into(),
            overlay_address: "100.64.0.7/10".into(),
            server_overlay_ip: "100.64.0.1".into(),
            agent_api: "http://100.64.0.1:8081".into(),
            heartbeat_interval_secs: 60,
            enrolled_at: "2025-01-31T09:00:00Z".into(),
            dns: None,
        }
    }

    fn status() -> HeartbeatStatus {
        HeartbeatStatus {
            phase: Phase::Running,
            pid: 42,
            started_at: "2025-01-31T09:00:00Z".into(),
            updated_at: "2025-01-31T09:01:00Z".into(),
            last_attempt_at: Some("2025-01-31T09:01:00Z".into()),
            last_success_at: None,
            consecutive_failures: 2,
            last_error: Some("cannot reach http://100.64.0.1:8081: timed out".into()),
            heartbeat_interval_secs: 60,
            next_attempt_at: None,
            tunnel: Some(TunnelSnapshot {
                interface: "watchgrid0".into(),
                endpoint: Some("192.0.2.1:51820".into()),
                last_handshake_at: None,
                rx_bytes: 0,
                tx_bytes: 148,
            }),
        }
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn enrollment_round_trip_with_modes() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("nested").join("watchgrid-agent");
        let store = StateDir::new(&dir);
        assert_eq!(store.load_enrollment().unwrap(), None);
        store.save_enrollment(&enrollment()).unwrap();
        assert_eq!(store.load_enrollment().unwrap(), Some(enrollment()));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&store.state_path()), 0o600);

        // An old file with a loose mode is replaced by a 0600 one.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(store.state_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let mut changed = enrollment();
        changed.device_name = "renamed".into();
        store.save_enrollment(&changed).unwrap();
        assert_eq!(mode(&store.state_path()), 0o600);
        assert_eq!(store.require_enrollment().unwrap(), changed);
    }

    #[test]
    fn status_round_trip() {
        let temp = tempfile::tempdir().unwrap();
        let store = StateDir::new(temp.path());
        assert_eq!(store.load_status().unwrap(), None);
        store.save_status(&status()).unwrap();
        assert_eq!(store.load_status().unwrap(), Some(status()));
        assert_eq!(mode(&store.status_path()), 0o600);
    }

    #[test]
    fn damaged_and_unknown_files_are_reported_with_their_path() {
        let temp = tempfile::tempdir().unwrap();
        let store = StateDir::new(temp.path());
        fs::write(store.state_path(), "{not json").unwrap();
        let err = store.load_enrollment().unwrap_err().one_line();
        assert!(err.contains("state.json is damaged"), "{err}");

        let mut future = serde_json::to_value(enrollment()).unwrap();
        future["format"] = 2.into();
        fs::write(store.state_path(), future.to_string()).unwrap();
        let err = store.load_enrollment().unwrap_err().one_line();
        assert!(err.contains("format 2"), "{err}");
    }

    #[test]
    fn missing_enrollment_says_to_enroll() {
        let temp = tempfile::tempdir().unwrap();
        let err = StateDir::new(temp.path()).require_enrollment().unwrap_err();
        assert!(matches!(err, AgentError::NotEnrolled { .. }));
        assert!(err.one_line().contains("watchgrid-agent enroll"));
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", enrollment());
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("laptop-7"));
    }
}
