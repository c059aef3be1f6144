//! `watchgrid-agent enroll`: generate a WireGuard key pair, register with the server using an
//! onboarding token, check the answer, and store the enrollment in `state.json`.

use chrono::{SecondsFormat, Utc};
use watchgrid_wire::{RegisterRequest, RegisterResponse};

use crate::api::{PublicClient, REGISTER_PATH};
use crate::args::ServerUrl;
use crate::config::Config;
use crate::error::AgentError;
use crate::host::{HostFacts, AGENT_VERSION};
use crate::net;
use crate::state::{Enrollment, StateDir, STATE_FORMAT};
use crate::tunnel::{self, KeyPair};

/// The arguments of `enroll`.
#[derive(Debug)]
pub struct EnrollOptions {
    pub server: ServerUrl,
    pub token: String,
    pub force: bool,
}

pub async fn enroll(config: &Config, options: EnrollOptions) -> Result<(), AgentError> {
    let store = StateDir::new(&config.state_dir);
    let replaced = match store.load_enrollment() {
        Ok(Some(existing)) if !options.force => {
            return Err(AgentError::AlreadyEnrolled {
                device_name: existing.device_name,
                tenant: existing.tenant,
                state_file: store.state_path().display().to_string(),
            })
        }
        Ok(existing) => existing,
        // A damaged file is what --force is for.
        Err(_) if options.force => None,
        Err(e) => return Err(e),
    };
    // Fail on an unwritable directory before the token is spent.
    store.prepare()?;

    let keys = tunnel::generate_keypair();
    let facts = HostFacts::read();
    let ssh = config
        .ssh
        .clone()
        .map(|ssh| crate::ssh::SshManager::new(ssh, &config.state_dir));
    let ssh_host_key = match &ssh {
        Some(manager) => manager.host_key()?,
        None => None,
    };
    let client = PublicClient::new(options.server.clone())?;
    tracing::debug!(server = %options.server, hostname = %facts.hostname, "registering");
    let answer = client
        .register(&RegisterRequest {
            token: options.token,
            hostname: facts.hostname,
            os: facts.os,
            agent_version: AGENT_VERSION.to_string(),
            wg_public_key: keys.public_key.clone(),
            ssh_host_key: ssh_host_key.clone(),
            // Every enrollment registers a new key pair, so there is no current credential
            // to show: the server asks for one only when a key is registered again.
            credential: None,
        })
        .await?;
    let host_cert = answer.ssh_host_certificate.clone();

    let enrolled_at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let enrollment =
        enrollment_from(&options.server, &keys, answer, enrolled_at).map_err(|reason| {
            AgentError::InvalidAnswer {
                url: options.server.join(REGISTER_PATH),
                reason,
            }
        })?;
    store.save_enrollment(&enrollment).map_err(|e| {
        AgentError::Failed(format!(
            "{}; the server has registered this device as {} ({}): ask an admin to delete it \
             before enrolling again",
            e.one_line(),
            enrollment.device_name,
            enrollment.device_id
        ))
    })?;
    if let (Some(manager), Some(key), Some(cert)) = (&ssh, &ssh_host_key, &host_cert) {
        // run installs it in sshd's configuration; a failure here only delays that.
        if let Err(err) = manager.store_host_cert(key, cert) {
            tracing::warn!(error = %err.one_line(), "cannot store the SSH host certificate; run asks again");
        }
    }
    // The heartbeat status of an earlier enrollment says nothing about this one.
    let _ = std::fs::remove_file(store.status_path());

    println!(
        "enrolled as {} ({}) in tenant {}",
        enrollment.device_name, enrollment.device_id, enrollment.tenant
    );
    println!(
        "overlay address {}; server key {} pinned",
        enrollment.overlay_address, enrollment.server_public_key
    );
    println!("state saved in {}", store.state_path().display());
    if let Some(cert) = &host_cert {
        println!(
            "SSH host certificate for {} (valid until {})",
            cert.principals.join(", "),
            cert.valid_before
        );
    }
    match replaced {
        Some(old) => println!(
            "replaced the enrollment as {} ({}); restart the agent: systemctl restart \
             watchgrid-agent",
            old.device_name, old.device_id
        ),
        None => println!("start the agent: systemctl enable --now watchgrid-agent"),
    }
    Ok(())
}

/// The enrollment to store, after checking every field of the server's answer the agent
/// relies on. The error is the reason the answer is unusable.
pub fn enrollment_from(
    server: &ServerUrl,
    keys: &KeyPair,
    answer: RegisterResponse,
    enrolled_at: String,
) -> Result<Enrollment, String> {
    let required = [
        ("device_id", &answer.device_id),
        ("device_name", &answer.device_name),
        ("tenant", &answer.tenant),
        ("credential", &answer.credential),
    ];
    for (field, value) in required {
        if value.trim().is_empty() {
            return Err(format!("{field} is empty"));
        }
    }
    let overlay = net::overlay_network(&answer.overlay_address)?;
    if !tunnel::is_public_key(&answer.server_public_key) {
        return Err(format!(
            "server_public_key {:?} is not a WireGuard key",
            answer.server_public_key
        ));
    }
    net::split_endpoint(&answer.server_endpoint)?;
    let server_ip: std::net::IpAddr = answer.server_overlay_ip.parse().map_err(|_| {
        format!(
            "server_overlay_ip {:?} is not an IP address",
            answer.server_overlay_ip
        )
    })?;
    if !overlay.contains(&server_ip) {
        return Err(format!(
            "server_overlay_ip {server_ip} is outside the overlay {overlay}"
        ));
    }
    net::check_agent_api(&answer.agent_api, &overlay)?;
    Ok(Enrollment {
        format: STATE_FORMAT,
        device_id: answer.device_id,
        device_name: answer.device_name,
        tenant: answer.tenant,
        private_key: keys.private_key.clone(),
        public_key: keys.public_key.clone(),
        credential: answer.credential,
        server_public_key: answer.server_public_key.trim().to_string(),
        server_url: server.to_string(),
        server_endpoint: answer.server_endpoint.trim().to_string(),
        overlay_address: answer.overlay_address.trim().to_string(),
        server_overlay_ip: server_ip.to_string(),
        agent_api: answer.agent_api.trim_end_matches('/').to_string(),
        heartbeat_interval_secs: answer.heartbeat_interval_secs,
        enrolled_at,
        dns: answer.dns,
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;
    use crate::args::server_url;

    pub(crate) fn answer() -> RegisterResponse {
        RegisterResponse {
            device_id: "dev_1".into(),
            device_name: "laptop-7".into(),
            tenant: "acme".into(),
            overlay_address: "100.64.0.7/10".into(),
            server_public_key: tunnel::generate_keypair().public_key,
            server_endpoint: "wg.example.com:51820".into(),
            server_overlay_ip: "100.64.0.1".into(),
            agent_api: "http://100.64.0.1:8081/".into(),
            credential: "wgd_secret".into(),
            heartbeat_interval_secs: 60,
            dns: None,
            ssh_host_certificate: None,
        }
    }

    fn check(change: impl FnOnce(&mut RegisterResponse), expected: Result<(), &str>) {
        let mut answer = answer();
        change(&mut answer);
        let server = server_url("https://wg.example.com/").unwrap();
        let keys = tunnel::generate_keypair();
        let result = enrollment_from(&server, &keys, answer.clone(), "t".into());
        match expected {
            Ok(()) => {
                let enrollment = result.unwrap();
                assert_eq!(enrollment.server_url, "https://wg.example.com");
                assert_eq!(enrollment.private_key, keys.private_key);
                assert_eq!(enrollment.server_public_key, answer.server_public_key);
                assert_eq!(enrollment.agent_api, "http://100.64.0.1:8081");
            }
            Err(reason) => assert_eq!(result.unwrap_err(), reason),
        }
    }

    #[test]
    fn answers_are_checked() {
        check(|_| {}, Ok(()));
        check(|a| a.credential = String::new(), Err("credential is empty"));
        check(
            |a| a.overlay_address = "100.64.0.7".into(),
            Err(
                "overlay address \"100.64.0.7\" has no prefix length (expected e.g. 100.64.0.7/10)",
            ),
        );
        check(
            |a| a.server_public_key = "not-a-key".into(),
            Err("server_public_key \"not-a-key\" is not a WireGuard key"),
        );
        check(
            |a| a.server_endpoint = "wg.example.com".into(),
            Err("server endpoint \"wg.example.com\" is not host:port"),
        );
        check(
            |a| a.server_overlay_ip = "10.0.0.1".into(),
            Err("server_overlay_ip 10.0.0.1 is outside the overlay 100.64.0.0/10"),
        );
        check(
            |a| a.agent_api = "http://192.0.2.1:8081".into(),
            Err(
                "agent API \"http://192.0.2.1:8081\" is plain http outside the overlay \
                 100.64.0.0/10: the device credential would cross the network in clear text",
            ),
        );
    }
}
