//! `watchgrid-agent status`: the enrollment (never its secrets), the tunnel as the running
//! interface reports it (or as `run` last recorded it), and the heartbeat status. Exit status 0
//! when enrolled, 1 when not.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::error::AgentError;
use crate::state::{Enrollment, HeartbeatStatus, Phase, StateDir, TunnelSnapshot};
use crate::tunnel;

/// The enrollment without the private key and the credential.
#[derive(Debug, Serialize)]
struct PublicEnrollment<'a> {
    device_id: &'a str,
    device_name: &'a str,
    tenant: &'a str,
    overlay_address: &'a str,
    public_key: &'a str,
    server_url: &'a str,
    server_endpoint: &'a str,
    server_overlay_ip: &'a str,
    agent_api: &'a str,
    pinned_server_key: &'a str,
    enrolled_at: &'a str,
}

impl<'a> From<&'a Enrollment> for PublicEnrollment<'a> {
    fn from(e: &'a Enrollment) -> Self {
        PublicEnrollment {
            device_id: &e.device_id,
            device_name: &e.device_name,
            tenant: &e.tenant,
            overlay_address: &e.overlay_address,
            public_key: &e.public_key,
            server_url: &e.server_url,
            server_endpoint: &e.server_endpoint,
            server_overlay_ip: &e.server_overlay_ip,
            agent_api: &e.agent_api,
            pinned_server_key: &e.server_public_key,
            enrolled_at: &e.enrolled_at,
        }
    }
}

/// Where the tunnel figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum TunnelSource {
    /// The interface answered just now.
    Live,
    /// The interface did not answer; these are the figures `run` wrote last.
    StatusFile,
}

#[derive(Debug, Serialize)]
struct TunnelReport {
    interface: String,
    /// Whether the interface answered just now.
    up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<TunnelSource>,
    /// Why the interface could not be asked, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The server peer's endpoint, latest handshake and byte counters.
    #[serde(rename = "server_peer", skip_serializing_if = "Option::is_none")]
    peer: Option<TunnelSnapshot>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    enrolled: bool,
    state_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    enrollment: Option<PublicEnrollment<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<TunnelReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat: Option<HeartbeatStatus>,
}

pub async fn status(config: &Config, json: bool) -> Result<(), AgentError> {
    let store = StateDir::new(&config.state_dir);
    let state_dir = store.path().display().to_string();
    let Some(enrollment) = store.load_enrollment()? else {
        if json {
            print_json(&Report {
                enrolled: false,
                state_dir,
                enrollment: None,
                tunnel: None,
                heartbeat: None,
            })?;
        }
        return Err(AgentError::NotEnrolled {
            state_file: store.state_path().display().to_string(),
        });
    };
    // A damaged status file should not hide the enrollment.
    let heartbeat = store.load_status().unwrap_or_else(|e| {
        tracing::warn!(error = %e.one_line(), "ignoring the status file");
        None
    });
    let tunnel = match tunnel::inspect(&config.interface, &enrollment.server_public_key).await {
        Ok(peer) => TunnelReport {
            interface: config.interface.clone(),
            up: true,
            source: Some(TunnelSource::Live),
            error: None,
            peer,
        },
        Err(reason) => {
            let recorded = heartbeat
                .as_ref()
                .filter(|h| h.phase == Phase::Running)
                .and_then(|h| h.tunnel.clone());
            TunnelReport {
                interface: config.interface.clone(),
                up: false,
                source: recorded.as_ref().map(|_| TunnelSource::StatusFile),
                error: Some(reason),
                peer: recorded,
            }
        }
    };
    let report = Report {
        enrolled: true,
        state_dir,
        enrollment: Some(PublicEnrollment::from(&enrollment)),
        tunnel: Some(tunnel),
        heartbeat,
    };
    if json {
        print_json(&report)
    } else {
        print!("{}", text(&report, Utc::now()));
        Ok(())
    }
}

fn print_json(report: &Report<'_>) -> Result<(), AgentError> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| AgentError::Failed(format!("cannot encode the status: {e}")))?;
    println!("{text}");
    Ok(())
}

/// The text form of an enrolled device's report.
fn text(report: &Report<'_>, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{:<12}{value}", format!("{label}:"));
    };
    if let Some(e) = &report.enrollment {
        line(
            "Device",
            format!("{} ({}) in tenant {}", e.device_name, e.device_id, e.tenant),
        );
        line("Overlay", e.overlay_address.to_string());
        line("Server", e.server_url.to_string());
        line(
            "Endpoint",
            format!(
                "{} (server overlay IP {}, agent API {})",
                e.server_endpoint, e.server_overlay_ip, e.agent_api
            ),
        );
        line("Pinned key", e.pinned_server_key.to_string());
        line("Device key", e.public_key.to_string());
        line("Enrolled", e.enrolled_at.to_string());
    }
    if let Some(t) = &report.tunnel {
        let mut value = if t.up {
            format!("{} up", t.interface)
        } else {
            format!(
                "{} down ({})",
                t.interface,
                t.error.as_deref().unwrap_or("unknown")
            )
        };
        match (&t.peer, t.source) {
            (Some(peer), source) => {
                value.push_str("; ");
                if source == Some(TunnelSource::StatusFile) {
                    value.push_str("as run last recorded it: ");
                }
                if let Some(endpoint) = &peer.endpoint {
                    let _ = write!(value, "endpoint {endpoint}, ");
                }
                let handshake = match &peer.last_handshake_at {
                    Some(at) => format!("{at} ({})", ago(at, now)),
                    None => "never".to_string(),
                };
                let _ = write!(
                    value,
                    "latest handshake {handshake}, received {}, sent {}",
                    bytes(peer.rx_bytes),
                    bytes(peer.tx_bytes)
                );
            }
            (None, _) if t.up => value.push_str("; the server is not configured as a peer"),
            (None, _) => {}
        }
        line("Tunnel", value);
    }
    match &report.heartbeat {
        Some(h) => {
            let phase = match h.phase {
                Phase::Running => format!("running (pid {})", h.pid),
                Phase::Stopped => "stopped".to_string(),
                Phase::KeyChanged => "stopped: the server's key changed".to_string(),
            };
            let when = |t: &Option<String>| match t {
                Some(at) => format!("{at} ({})", ago(at, now)),
                None => "never".to_string(),
            };
            line(
                "Heartbeat",
                format!(
                    "{phase}; last success {}; last attempt {}; {} consecutive failure{}; \
                     interval {} s",
                    when(&h.last_success_at),
                    when(&h.last_attempt_at),
                    h.consecutive_failures,
                    if h.consecutive_failures == 1 { "" } else { "s" },
                    h.heartbeat_interval_secs
                ),
            );
            if let Some(next) = &h.next_attempt_at {
                line("Next", next.clone());
            }
            if let Some(err) = &h.last_error {
                line("Last error", err.clone());
            }
        }
        None => line(
            "Heartbeat",
            "none yet (run has not written status.json)".into(),
        ),
    }
    out
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`; `in the future` for clock skew.
fn ago(at: &str, now: DateTime<Utc>) -> String {
    let Ok(time) = DateTime::parse_from_rfc3339(at) else {
        return "unknown".to_string();
    };
    let secs = (now - time.with_timezone(&Utc)).num_seconds();
    match secs {
        s if s < 0 => "in the future".to_string(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.0 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // Display only: the precision lost above 2^53 bytes does not matter.
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::enrollment;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-31T09:10:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn sizes_and_ages() {
        for (n, expected) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1536, "1.5 KiB"),
            (3 * 1024 * 1024, "3.0 MiB"),
        ] {
            assert_eq!(bytes(n), expected);
        }
        for (at, expected) in [
            ("2025-01-31T09:09:48Z", "12 s ago"),
            ("2025-01-31T09:00:00Z", "10 min ago"),
            ("2025-01-31T06:00:00Z", "3 h ago"),
            ("2025-01-28T09:10:00Z", "3 d ago"),
            ("2025-01-31T09:11:00Z", "in the future"),
            ("garbage", "unknown"),
        ] {
            assert_eq!(ago(at, now()), expected, "{at}");
        }
    }

    #[test]
    fn the_text_report_shows_no_secret() {
        let e = enrollment();
        let report = Report {
            enrolled: true,
            state_dir: "/var/lib/watchgrid-agent".into(),
            enrollment: Some(PublicEnrollment::from(&e)),
            tunnel: Some(TunnelReport {
                interface: "watchgrid0".into(),
                up: true,
                source: Some(TunnelSource::Live),
                error: None,
                peer: Some(TunnelSnapshot {
                    interface: "watchgrid0".into(),
                    endpoint: Some("192.0.2.1:51820".into()),
                    last_handshake_at: Some("2025-01-31T09:09:48Z".into()),
                    rx_bytes: 1536,
                    tx_bytes: 92,
                }),
            }),
            heartbeat: None,
        };
        let shown = text(&report, now());
        assert!(shown.contains("laptop-7 (dev_1) in tenant acme"), "{shown}");
        assert!(
            shown.contains(
                "Tunnel:     watchgrid0 up; endpoint 192.0.2.1:51820, latest handshake \
                 2025-01-31T09:09:48Z (12 s ago), received 1.5 KiB, sent 92 B\n"
            ),
            "{shown}"
        );
        assert!(shown.contains(&e.server_public_key), "{shown}");
        assert!(!shown.contains(&e.private_key), "{shown}");
        assert!(!shown.contains(&e.credential), "{shown}");
        let json = serde_json::to_string(&report).unwrap_or_default();
        assert!(!json.contains(&e.private_key) && !json.contains(&e.credential));
        assert!(json.contains("\"pinned_server_key\""), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(value["tunnel"]["server_peer"]["rx_bytes"], 1536, "{json}");
        assert_eq!(value["tunnel"]["source"], "live", "{json}");
    }
}
