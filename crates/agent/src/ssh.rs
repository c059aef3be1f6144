//! The device's sshd, kept in step with the tenant's SSH CA: a host certificate for this host's
//! key (renewed at half-life, and at once when the tenant's host CA changes), the tenant's user
//! CA keys (`TrustedUserCAKeys`) and KRL (`RevokedKeys`), and the sshd drop-in the agent owns
//! that names them. sshd is reloaded (SIGHUP to the process in its pid file) only when the
//! drop-in or the host certificate changed: sshd reads the other two files at each login.
//!
//! Log lines a test can wait for: `ssh synced`, `sshd reloaded`, `ssh sync failed`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use watchgrid_clientkit::files::PrivateDir;
use watchgrid_wire::{HostCertificate, SshCaKeys};

use crate::api::AgentApiClient;
use crate::config::SshConfig;
use crate::error::AgentError;

/// The files in `<state dir>/ssh`.
pub const HOST_CERT_FILE: &str = "ssh_host_key-cert.pub";
pub const HOST_CERT_META_FILE: &str = "host-cert.json";
pub const TRUSTED_USER_CA_FILE: &str = "trusted_user_ca_keys";
pub const KRL_FILE: &str = "revoked_keys";

/// How soon a failed sync is retried (at most the poll interval).
pub const RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the agent remembers about its host certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCertMeta {
    pub public_key: String,
    pub valid_after: String,
    pub valid_before: String,
    pub ca_fingerprint: String,
    /// The names it carries.
    #[serde(default)]
    pub principals: Vec<String>,
}

/// The sshd state the agent manages.
#[derive(Debug)]
pub struct SshManager {
    config: SshConfig,
    files: PrivateDir,
    /// Whether the missing host key was already reported (once per run, not every poll).
    warned_no_host_key: std::sync::atomic::AtomicBool,
}

/// What one sync changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub host_cert: bool,
    pub trusted_user_ca: bool,
    pub krl: bool,
    pub dropin: bool,
}

impl SshManager {
    pub fn new(config: SshConfig, state_dir: &Path) -> SshManager {
        SshManager {
            config,
            files: PrivateDir::new(state_dir.join("ssh")),
            warned_no_host_key: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This host's SSH public key, `None` when the file does not exist.
    pub fn host_key(&self) -> Result<Option<String>, AgentError> {
        match std::fs::read_to_string(&self.config.host_key) {
            Ok(text) => Ok(Some(text.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::Failed(format!(
                "cannot read the SSH host key {}: {}",
                self.config.host_key.display(),
                watchgrid_clientkit::text::io_text(&e)
            ))),
        }
    }

    fn write_if_changed(dir: &PrivateDir, name: &str, bytes: &[u8]) -> Result<bool, AgentError> {
        let path = dir.file(name);
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            return Ok(false);
        }
        dir.write(name, bytes)
            .map_err(|e| AgentError::Failed(e.to_string()))?;
        Ok(true)
    }

    /// Store a host certificate the server issued (at enrollment or renewal).
    pub fn store_host_cert(
        &self,
        public_key: &str,
        cert: &HostCertificate,
    ) -> Result<bool, AgentError> {
        let changed = Self::write_if_changed(
            &self.files,
            HOST_CERT_FILE,
            format!("{}\n", cert.certificate).as_bytes(),
        )?;
        let meta = HostCertMeta {
            public_key: public_key.to_string(),
            valid_after: cert.valid_after.clone(),
            valid_before: cert.valid_before.clone(),
            ca_fingerprint: cert.ca_fingerprint.clone(),
            principals: cert.principals.clone(),
        };
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| AgentError::Failed(format!("cannot encode the host cert state: {e}")))?;
        Self::write_if_changed(&self.files, HOST_CERT_META_FILE, &json)?;
        Ok(changed)
    }

    fn host_cert_meta(&self) -> Option<HostCertMeta> {
        let text = self.files.read(HOST_CERT_META_FILE).ok()??;
        serde_json::from_str(&text).ok()
    }

    /// Whether the stored certificate must be replaced: none, another key, past half-life,
    /// signed by a host CA that is no longer the active one, or for other names than the
    /// server now expects (the device was renamed).
    pub fn needs_host_cert(
        &self,
        public_key: &str,
        active_host_ca: Option<&str>,
        expected_principals: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(meta) = self.host_cert_meta() else {
            return true;
        };
        if !self.files.file(HOST_CERT_FILE).exists() || meta.public_key != public_key {
            return true;
        }
        if active_host_ca.is_some_and(|active| active != meta.ca_fingerprint) {
            return true;
        }
        if expected_principals.is_some_and(|expected| expected != meta.principals.as_slice()) {
            return true;
        }
        let parse = |t: &str| DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc));
        match (parse(&meta.valid_after), parse(&meta.valid_before)) {
            (Ok(after), Ok(before)) => now >= after + (before - after) / 2,
            _ => true,
        }
    }

    /// The drop-in's content.
    pub fn dropin(&self, with_host_cert: bool) -> String {
        let mut text = String::from(
            "# Written by watchgrid-agent, which owns this file: changes are overwritten.\n\
             # The Watchgrid SSH CA: see docs/agent.md.\n",
        );
        if with_host_cert {
            text.push_str(&format!(
                "HostCertificate {}\n",
                self.files.file(HOST_CERT_FILE).display()
            ));
        }
        text.push_str(&format!(
            "TrustedUserCAKeys {}\nRevokedKeys {}\n",
            self.files.file(TRUSTED_USER_CA_FILE).display(),
            self.files.file(KRL_FILE).display()
        ));
        text
    }

    /// One round: fetch the CA keys and KRL, renew the host certificate if due, write the
    /// drop-in, reload sshd if needed.
    pub async fn sync(&self, api: &AgentApiClient) -> Result<Changes, AgentError> {
        let mut changes = Changes::default();
        let ca: SshCaKeys = api.ssh_ca().await?;
        let krl = api.ssh_krl().await?;
        // The KRL first: a new user CA must never be trusted before the revocations under it.
        changes.krl = Self::write_if_changed(&self.files, KRL_FILE, &krl)?;
        changes.trusted_user_ca = Self::write_if_changed(
            &self.files,
            TRUSTED_USER_CA_FILE,
            ca.trusted_user_ca_keys.as_bytes(),
        )?;
        let active_host_ca = ca
            .host
            .iter()
            .filter(|k| k.state == "active")
            .max_by_key(|k| k.generation)
            .map(|k| k.fingerprint.as_str());
        let host_key = self.host_key()?;
        let mut with_host_cert = false;
        match &host_key {
            Some(key) => {
                if self.needs_host_cert(
                    key,
                    active_host_ca,
                    ca.host_principals.as_deref(),
                    Utc::now(),
                ) {
                    let cert = api.host_certificate(key).await?;
                    changes.host_cert = self.store_host_cert(key, &cert)?;
                    info!(serial = cert.serial, valid_before = %cert.valid_before, principals = ?cert.principals, "SSH host certificate renewed");
                }
                with_host_cert = true;
            }
            None => {
                if !self
                    .warned_no_host_key
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    warn!(
                        file = %self.config.host_key.display(),
                        "no SSH host key: sshd gets no host certificate"
                    );
                }
            }
        }
        let dropin = self.dropin(with_host_cert);
        let dropin_dir = PrivateDir::new(
            self.config
                .dropin
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        );
        let name = self
            .config
            .dropin
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| AgentError::Failed("--sshd-dropin must name a file".into()))?;
        changes.dropin = Self::write_if_changed(&dropin_dir, name, dropin.as_bytes())?;
        if changes.dropin || changes.host_cert {
            self.reload_sshd();
        }
        Ok(changes)
    }

    /// SIGHUP to sshd, which re-executes itself with the new configuration. A missing pid
    /// file is not an error: sshd reads the drop-in when it starts.
    fn reload_sshd(&self) {
        let pid = match std::fs::read_to_string(&self.config.pid_file) {
            Ok(text) => text.trim().to_string(),
            Err(e) => {
                warn!(pid_file = %self.config.pid_file.display(), error = %watchgrid_clientkit::text::io_text(&e), "sshd is not running (no pid file); it reads the new configuration when it starts");
                return;
            }
        };
        if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_digit()) {
            warn!(pid_file = %self.config.pid_file.display(), "sshd's pid file holds no pid");
            return;
        }
        match std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
        {
            Ok(status) if status.success() => info!(pid = %pid, "sshd reloaded"),
            Ok(status) => warn!(pid = %pid, %status, "sshd reload failed"),
            Err(e) => warn!(error = %e, "cannot run kill to reload sshd"),
        }
    }

    /// Sync every `poll` until the task is dropped.
    pub async fn run(self, api: AgentApiClient) {
        let mut failing = false;
        loop {
            match self.sync(&api).await {
                Ok(changes) => {
                    if changes != Changes::default() || failing {
                        info!(
                            host_cert = changes.host_cert,
                            trusted_user_ca = changes.trusted_user_ca,
                            krl = changes.krl,
                            dropin = changes.dropin,
                            "ssh synced"
                        );
                    }
                    failing = false;
                }
                Err(err) => {
                    failing = true;
                    warn!(error = %err.one_line(), "ssh sync failed");
                }
            }
            // A failed round (the tunnel still coming up, the server restarting) is retried
            // within seconds rather than a whole poll interval later.
            let delay = if failing {
                self.config.poll.min(RETRY_AFTER_FAILURE)
            } else {
                self.config.poll
            };
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    fn manager(dir: &Path) -> SshManager {
        SshManager::new(
            SshConfig {
                host_key: dir.join("host.pub"),
                dropin: dir.join("sshd_config.d/watchgrid.conf"),
                pid_file: dir.join("sshd.pid"),
                poll: std::time::Duration::from_secs(60),
            },
            dir,
        )
    }

    fn cert(after: &str, before: &str, ca: &str) -> HostCertificate {
        HostCertificate {
            certificate: "ssh-ed25519-cert-v01@openssh.com AAAA host".into(),
            serial: 7,
            principals: vec!["web.acme.watchgrid.internal".into()],
            valid_after: after.into(),
            valid_before: before.into(),
            ca_fingerprint: ca.into(),
        }
    }

    #[test]
    fn host_certificates_are_renewed_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        assert!(m.needs_host_cert("key", None, None, at("2026-01-01T00:00:00Z")));
        m.store_host_cert(
            "key",
            &cert("2026-01-01T00:00:00Z", "2026-01-11T00:00:00Z", "SHA256:a"),
        )
        .unwrap();
        // Before half-life: kept; from half-life on: renewed.
        let names = ["web.acme.watchgrid.internal".to_string()];
        assert!(!m.needs_host_cert(
            "key",
            Some("SHA256:a"),
            Some(&names),
            at("2026-01-05T23:59:59Z")
        ));
        assert!(m.needs_host_cert(
            "key",
            Some("SHA256:a"),
            Some(&names),
            at("2026-01-06T00:00:00Z")
        ));
        // Renamed: other names expected.
        let renamed = ["db.acme.watchgrid.internal".to_string()];
        assert!(m.needs_host_cert(
            "key",
            Some("SHA256:a"),
            Some(&renamed),
            at("2026-01-02T00:00:00Z")
        ));
        // Another host key, or another active host CA (a rotation): renewed at once.
        assert!(m.needs_host_cert("other", Some("SHA256:a"), None, at("2026-01-02T00:00:00Z")));
        assert!(m.needs_host_cert("key", Some("SHA256:b"), None, at("2026-01-02T00:00:00Z")));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ssh").join(HOST_CERT_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_dropin_names_the_managed_files() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let ssh = dir.path().join("ssh");
        let text = m.dropin(true);
        assert!(text.contains(&format!(
            "\nHostCertificate {}\n",
            ssh.join(HOST_CERT_FILE).display()
        )));
        assert!(text.contains(&format!(
            "TrustedUserCAKeys {}\nRevokedKeys {}\n",
            ssh.join(TRUSTED_USER_CA_FILE).display(),
            ssh.join(KRL_FILE).display()
        )));
        assert!(!m.dropin(false).contains("HostCertificate"));
    }
}
