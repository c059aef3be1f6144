//! A Watchgrid fleet in network namespaces: the server (userspace WireGuard) on a LAN, and
//! agents in their own namespaces, run from the built programs. Shared by the fleet and Magic
//! DNS end-to-end tests.

use std::path::{Path, PathBuf};

use serde_json::Value;
use watchgrid_testkit::netns::{NetNs, Process};

use crate::program;

/// The bootstrap administrator's password of [`start_server`].
pub const ADMIN_PASSWORD: &str = "E2e-Admin-Pass-1";
/// The server's address on the LAN the agents share.
pub const SERVER_LAN: &str = "10.77.0.1";

/// Removes `/var/run/wireguard/<name>.sock` of each name on drop: userspace interfaces keep
/// their UAPI socket in the host's directory whatever the namespace.
#[derive(Debug)]
pub struct SocketCleanup(pub Vec<String>);

impl Drop for SocketCleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{name}.sock"));
        }
    }
}

/// `watchgrid-server` in `ns` with a userspace WireGuard `interface`, the API on :8080,
/// heartbeats every 5 s, and `extra` variables.
pub fn start_server(
    ns: &NetNs,
    data: &Path,
    interface: &str,
    log: &Path,
    extra: &[(&str, &str)],
) -> Process {
    let data_dir = data.to_str().unwrap_or_default();
    let endpoint = format!("{SERVER_LAN}:51820");
    let mut envs = vec![
        ("WATCHGRID_DATA_DIR", data_dir),
        ("WATCHGRID_LISTEN", "0.0.0.0:8080"),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("WATCHGRID_WG_INTERFACE", interface),
        ("WATCHGRID_WG_BACKEND", "userspace"),
        ("WATCHGRID_WG_ENDPOINT", &endpoint),
        ("WATCHGRID_HEARTBEAT_INTERVAL_SECS", "5"),
        ("WATCHGRID_LOG_LEVEL", "info"),
    ];
    envs.extend_from_slice(extra);
    ns.spawn(&program("watchgrid-server"), &[], &envs, log)
        .expect("watchgrid-server starts")
}

/// An agent in its own namespace with its own state directory and interface `wga<tag>`.
#[derive(Debug)]
pub struct Agent {
    pub ns: NetNs,
    pub state: tempfile::TempDir,
    pub interface: String,
    pub log: PathBuf,
    pub process: Option<Process>,
}

impl Agent {
    pub fn new(ns: NetNs, tag: &str, dir: &Path) -> Self {
        Self {
            ns,
            state: tempfile::tempdir().expect("state directory"),
            interface: format!("wga{tag}"),
            log: dir.join(format!("agent-{tag}.log")),
            process: None,
        }
    }

    /// The global options (state directory, interface, `--no-ssh`) followed by `rest`. These
    /// agents run on the host's filesystem: `--no-ssh` keeps them away from its /etc/ssh
    /// (`tests/ssh.rs` runs the agent's sshd management against a throwaway sshd).
    pub fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--state-dir",
            self.state.path().to_str().unwrap_or_default(),
            "--interface",
            &self.interface,
            "--no-ssh",
        ];
        args.extend_from_slice(rest);
        args
    }

    /// `watchgrid-agent <rest>` in the agent's namespace, waiting for it.
    pub fn command(&self, rest: &[&str]) -> std::process::Output {
        let agent = program("watchgrid-agent");
        let mut command = vec![agent.to_str().unwrap_or_default()];
        command.extend(self.args(rest));
        self.ns.exec(&command).expect("ip netns exec")
    }

    /// Enroll with `token`; the stored `state.json`.
    pub fn enroll(&self, token: &str) -> Value {
        let server = format!("http://{SERVER_LAN}:8080");
        let out = self.command(&["enroll", "--server", &server, "--token", token]);
        assert!(
            out.status.success(),
            "enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = std::fs::read_to_string(self.state.path().join("state.json"))
            .expect("state.json after enroll");
        serde_json::from_str(&state).expect("state.json is JSON")
    }

    /// Start `watchgrid-agent run` in the background.
    pub fn run(&mut self) {
        let args = self.args(&["run"]);
        self.process = Some(
            self.ns
                .spawn(&program("watchgrid-agent"), &args, &[], &self.log)
                .expect("watchgrid-agent run starts"),
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
