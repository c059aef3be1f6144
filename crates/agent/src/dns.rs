//! Split DNS for Magic DNS: queries for the Watchgrid domain (and only those) go to the
//! server's DNS listener through the tunnel. With systemd-resolved this is two per-link
//! settings on the WireGuard interface, `resolvectl dns <if> <server>` and
//! `resolvectl domain <if> ~<domain>` (the `~` makes it a routing-only domain: no search
//! suffix, nothing else routed there). Without systemd-resolved the agent changes nothing and
//! logs how to set it up by hand (docs/agent.md, "Magic DNS").

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};
use watchgrid_wire::DnsSettings;

/// systemd-resolved's varlink socket: it exists while resolved runs.
const RESOLVED_SOCKET: &str = "run/systemd/resolve/io.systemd.Resolve";

/// How long one `resolvectl` call may take.
const RESOLVECTL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server told the agent, checked: an address and a DNS-safe domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitDns {
    pub server: SocketAddr,
    pub domain: String,
}

impl SplitDns {
    pub fn from_wire(settings: &DnsSettings) -> Result<SplitDns, String> {
        let ip: IpAddr = settings
            .server
            .parse()
            .map_err(|_| format!("the DNS server {:?} is not an address", settings.server))?;
        let domain = settings.domain.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if domain.is_empty() || !domain.split('.').all(label_ok) {
            return Err(format!(
                "the DNS domain {:?} is not a domain name",
                settings.domain
            ));
        }
        Ok(SplitDns {
            server: SocketAddr::new(ip, settings.port),
            domain,
        })
    }

    /// The `resolvectl` argument lists that route `domain` to `server` on `interface`.
    pub fn resolvectl_commands(&self, interface: &str) -> Vec<Vec<String>> {
        // resolvectl takes `ip` or `ip:port` (`[ip6]:port`); plain when the port is 53.
        let server = if self.server.port() == 53 {
            self.server.ip().to_string()
        } else {
            self.server.to_string()
        };
        vec![
            vec!["dns".into(), interface.into(), server],
            vec![
                "domain".into(),
                interface.into(),
                format!("~{}", self.domain),
            ],
        ]
    }
}

/// The `resolvectl` arguments that drop every per-link setting of `interface`.
pub fn revert_command(interface: &str) -> Vec<String> {
    vec!["revert".into(), interface.into()]
}

/// Which resolver the device uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolver {
    /// systemd-resolved runs and `resolvectl` is at this path.
    Resolved(PathBuf),
    /// Not configurable here; the reason, for the log.
    Unsupported(String),
}

/// Detect systemd-resolved under `root` (`/` in production; tests pass a temporary tree) with
/// `resolvectl` looked up in `path` (the `PATH` variable's value).
pub fn detect(root: &Path, path: Option<&str>) -> Resolver {
    if !root.join(RESOLVED_SOCKET).exists() {
        return Resolver::Unsupported(format!(
            "systemd-resolved is not running (no {})",
            Path::new("/").join(RESOLVED_SOCKET).display()
        ));
    }
    let found = path
        .unwrap_or_default()
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join("resolvectl"))
        .find(|candidate| candidate.is_file());
    match found {
        Some(resolvectl) => Resolver::Resolved(resolvectl),
        None => {
            Resolver::Unsupported("systemd-resolved runs but resolvectl is not on PATH".to_string())
        }
    }
}

/// The resolver of this host; `search_path` is `PATH` (`Config::search_path`).
pub fn detect_host(search_path: Option<&str>) -> Resolver {
    detect(Path::new("/"), search_path)
}

/// How to do by hand what the agent could not: for the log line.
pub fn fallback_hint(split: &SplitDns) -> String {
    format!(
        "names under {domain} will not resolve through the system resolver; query {server} \
         directly (dig @{ip} -p {port} NAME), or route the domain to it in your resolver, e.g. \
         dnsmasq `server=/{domain}/{ip}#{port}` or unbound `forward-zone: name: {domain} \
         forward-addr: {ip}@{port}` (see docs/agent.md, Magic DNS)",
        domain = split.domain,
        server = split.server,
        ip = split.server.ip(),
        port = split.server.port(),
    )
}

async fn resolvectl(program: &Path, args: &[String]) -> Result<(), String> {
    let output = tokio::time::timeout(
        RESOLVECTL_TIMEOUT,
        tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("resolvectl {} timed out", args.join(" ")))?
    .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "resolvectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Point `interface` at Magic DNS for `split.domain`. Never fails the run: what happened, and
/// what to do instead, is logged.
pub async fn configure(resolver: &Resolver, interface: &str, split: &SplitDns) {
    match resolver {
        Resolver::Resolved(program) => {
            for args in split.resolvectl_commands(interface) {
                if let Err(reason) = resolvectl(program, &args).await {
                    warn!(error = %reason, hint = %fallback_hint(split), "split DNS not configured");
                    return;
                }
            }
            info!(interface, server = %split.server, domain = %split.domain, "split DNS configured (systemd-resolved)");
        }
        Resolver::Unsupported(reason) => {
            warn!(reason = %reason, hint = %fallback_hint(split), "split DNS not configured");
        }
    }
}

/// Undo [`configure`]. Quietly does nothing without systemd-resolved or without the link.
pub async fn revert(resolver: &Resolver, interface: &str) -> Result<(), String> {
    match resolver {
        Resolver::Resolved(program) => {
            match resolvectl(program, &revert_command(interface)).await {
                Ok(()) => {
                    info!(interface, "split DNS removed");
                    Ok(())
                }
                // The link is already gone with its settings.
                Err(reason) if reason.contains("not found") || reason.contains("No such") => Ok(()),
                Err(reason) => Err(reason),
            }
        }
        Resolver::Unsupported(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn settings(server: &str, port: u16, domain: &str) -> DnsSettings {
        DnsSettings {
            server: server.into(),
            port,
            domain: domain.into(),
        }
    }

    #[test]
    fn commands_route_only_the_domain_to_the_server() {
        let split =
            SplitDns::from_wire(&settings("100.64.0.1", 53, "Watchgrid.Internal.")).unwrap();
        assert_eq!(
            split.resolvectl_commands("wg-watchgrid"),
            [
                ["dns", "wg-watchgrid", "100.64.0.1"],
                ["domain", "wg-watchgrid", "~watchgrid.internal"],
            ]
        );
        let odd_port = SplitDns::from_wire(&settings("100.64.0.1", 5353, "corp.example")).unwrap();
        assert_eq!(odd_port.resolvectl_commands("wg0")[0][2], "100.64.0.1:5353");
        assert_eq!(revert_command("wg0"), ["revert", "wg0"]);
        assert!(SplitDns::from_wire(&settings("not-an-ip", 53, "x.internal")).is_err());
        assert!(SplitDns::from_wire(&settings("100.64.0.1", 53, "bad domain")).is_err());
        assert!(SplitDns::from_wire(&settings("100.64.0.1", 53, "")).is_err());
        let hint = fallback_hint(&split);
        assert!(
            hint.contains("server=/watchgrid.internal/100.64.0.1#53"),
            "{hint}"
        );
    }

    #[test]
    fn resolved_is_detected_by_its_socket_and_resolvectl() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let path = bin.to_str().unwrap().to_owned();
        let Resolver::Unsupported(reason) = detect(root.path(), Some(&path)) else {
            panic!("no socket: not resolved");
        };
        assert!(reason.contains("not running"), "{reason}");

        let socket = root.path().join(RESOLVED_SOCKET);
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        std::fs::write(&socket, "").unwrap();
        let Resolver::Unsupported(reason) = detect(root.path(), Some(&path)) else {
            panic!("no resolvectl: unsupported");
        };
        assert!(reason.contains("resolvectl is not on PATH"), "{reason}");

        let resolvectl = bin.join("resolvectl");
        std::fs::write(&resolvectl, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&resolvectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            detect(root.path(), Some(&format!("/nonexistent:{path}"))),
            Resolver::Resolved(resolvectl)
        );
    }

    /// A stand-in `resolvectl` records its arguments: the real program runs them in order, and
    /// a failing one is reported (not fatal). This host has no systemd-resolved to test against.
    #[tokio::test]
    async fn configure_and_revert_run_resolvectl() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let program = dir.path().join("resolvectl");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n[ \"$1\" = revert ] && [ \"$2\" = gone ] && {{ echo 'Failed to resolve interface \"gone\", ignoring: No such device' >&2; exit 1; }}\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let resolver = Resolver::Resolved(program);
        let split = SplitDns::from_wire(&settings("100.64.0.1", 53, "watchgrid.internal")).unwrap();
        configure(&resolver, "wg0", &split).await;
        revert(&resolver, "wg0").await.unwrap();
        revert(&resolver, "gone").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "dns wg0 100.64.0.1\ndomain wg0 ~watchgrid.internal\nrevert wg0\nrevert gone\n"
        );
        assert!(revert(&Resolver::Unsupported("x".into()), "wg0")
            .await
            .is_ok());
    }
}
