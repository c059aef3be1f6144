//! `watchgrid-agent down`: stop this device's tunnel and undo what `run` set up, whether `run`
//! is still running or died without cleaning up. It stops a running `run` (SIGTERM; it then
//! tears its interface down and removes split DNS itself), removes the split DNS settings of
//! the interface, deletes an interface left behind, and records `stopped` in status.json.
//! The enrollment is kept: `run` brings everything back. Under systemd, stop the unit first
//! (`systemctl stop watchgrid-agent`), or it restarts `run`.

use std::path::Path;
use std::time::{Duration, Instant};

use tracing::info;

use crate::config::Config;
use crate::dns;
use crate::error::AgentError;
use crate::state::{Phase, StateDir};

/// How long `run` gets to stop after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// What `down` did, for the summary line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DownReport {
    pub stopped_pid: Option<u32>,
    pub interface_removed: bool,
}

pub async fn down(config: &Config) -> Result<(), AgentError> {
    let report = down_in(config, Path::new("/proc"), Path::new("/sys/class/net")).await?;
    let mut parts = Vec::new();
    match report.stopped_pid {
        Some(pid) => parts.push(format!("stopped watchgrid-agent run (pid {pid})")),
        None => parts.push("no watchgrid-agent run was running".to_string()),
    }
    if report.interface_removed {
        parts.push(format!("removed the interface {}", config.interface));
    }
    parts.push("split DNS removed".to_string());
    println!("{}", parts.join("; "));
    Ok(())
}

/// [`down`] with `/proc` and `/sys/class/net` given, so tests can use a stand-in tree.
pub async fn down_in(
    config: &Config,
    proc_root: &Path,
    net_root: &Path,
) -> Result<DownReport, AgentError> {
    let store = StateDir::new(&config.state_dir);
    let mut report = DownReport::default();
    let status = store.load_status()?;
    if let Some(status) = status.as_ref().filter(|s| s.phase == Phase::Running) {
        if is_agent(proc_root, status.pid) {
            stop(proc_root, status.pid).await?;
            report.stopped_pid = Some(status.pid);
        }
    }
    let resolver = dns::detect_host(config.search_path.as_deref());
    dns::revert(&resolver, &config.interface)
        .await
        .map_err(|reason| AgentError::Failed(format!("cannot remove split DNS: {reason}")))?;
    if net_root.join(&config.interface).exists() {
        delete_link(&config.interface).await?;
        report.interface_removed = true;
    }
    if let Some(mut status) = status {
        if status.phase == Phase::Running {
            status.phase = Phase::Stopped;
            status.next_attempt_at = None;
            status.updated_at =
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            store.save_status(&status)?;
        }
    }
    info!(?report, "down");
    Ok(report)
}

/// Whether `pid` is a live `watchgrid-agent` (not a recycled pid of another program, and not
/// a zombie that exited and waits for its parent).
fn is_agent(proc_root: &Path, pid: u32) -> bool {
    let dir = proc_root.join(pid.to_string());
    let named = std::fs::read_to_string(dir.join("comm"))
        .is_ok_and(|comm| comm.trim_end() == "watchgrid-agent");
    // `pid (comm) S ...`: the state follows the last `)`.
    let zombie = std::fs::read_to_string(dir.join("stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    });
    named && !zombie
}

async fn stop(proc_root: &Path, pid: u32) -> Result<(), AgentError> {
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .map_err(|e| AgentError::Failed(format!("cannot run kill: {e}")))?;
    if !status.success() {
        return Err(AgentError::Failed(format!(
            "cannot stop watchgrid-agent run (pid {pid}): kill failed"
        )));
    }
    let deadline = Instant::now() + STOP_WAIT;
    while is_agent(proc_root, pid) {
        if Instant::now() > deadline {
            return Err(AgentError::Failed(format!(
                "watchgrid-agent run (pid {pid}) did not stop within {}s",
                STOP_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn delete_link(interface: &str) -> Result<(), AgentError> {
    let output = tokio::process::Command::new("ip")
        .args(["link", "delete", "dev", interface])
        .output()
        .await
        .map_err(|e| AgentError::Failed(format!("cannot run ip: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(AgentError::Failed(format!(
            "cannot delete the interface {interface}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    #[test]
    fn only_a_live_watchgrid_agent_is_stopped() {
        let proc_root = tempfile::tempdir().unwrap();
        let process = |pid: u32, comm: &str, state: char| {
            let dir = proc_root.path().join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(dir.join("stat"), format!("{pid} ({comm}) {state} 1 1 1")).unwrap();
        };
        process(10, "watchgrid-agent", 'S');
        process(11, "watchgrid-agent", 'Z');
        process(12, "sshd", 'S');
        process(13, "odd) name", 'R');
        assert!(is_agent(proc_root.path(), 10));
        assert!(!is_agent(proc_root.path(), 11), "a zombie has exited");
        assert!(!is_agent(proc_root.path(), 12), "a recycled pid");
        assert!(!is_agent(proc_root.path(), 13));
        assert!(!is_agent(proc_root.path(), 99), "no such process");
    }
}
