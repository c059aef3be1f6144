//! The host program keeps its signals: a process that runs a userspace interface and handles
//! SIGTERM and SIGINT itself (as the server and the agent do through tokio) must receive every
//! one of them, however often it is started and signalled. boringtun's own UAPI socket handling
//! took them through a signalfd and won that race most of the time; this crate now gives
//! boringtun a socketpair instead, which installs no signal handling. Needs root.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use watchgrid_wireguard::testing::{require_root, unique_name, Netns};

/// Fresh processes to start; each is sent three signals.
const RUNS: usize = 20;
/// What each run sends, in order.
const SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGTERM];
/// How long one step of a run may take.
const STEP: Duration = Duration::from_secs(30);

/// Kills the host (if still running) and removes its socket file, also when the test fails.
struct Host {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[test]
fn host_process_receives_every_sigterm_and_sigint() {
    require_root();
    let ns = Netns::new("wgsig");
    for run in 0..RUNS {
        let name = unique_name("wgsig");
        let child = Command::new(env!("CARGO_BIN_EXE_wg-signal-host"))
            .args([ns.name(), name.as_str(), &SIGNALS.len().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut host = Host {
            child,
            socket: format!("/var/run/wireguard/{name}.sock").into(),
        };
        let pid = Pid::from_raw(i32::try_from(host.child.id()).unwrap());
        let (lines_tx, lines) = mpsc::channel::<String>();
        let stdout = host.child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut transcript = Vec::new();
        let mut next = |what: &str| -> String {
            match lines.recv_timeout(STEP) {
                Ok(line) => {
                    transcript.push(line.clone());
                    line
                }
                Err(_) => {
                    let _ = kill(pid, Signal::SIGKILL);
                    panic!(
                        "run {run}: no `{what}` from the host within {STEP:?}; it said: {transcript:?}"
                    )
                }
            }
        };

        let mut line = next("ready");
        if line.starts_with("signalfd open") {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("run {run}: {line}: the device takes signals from a signalfd");
        }
        assert_eq!(line, "ready", "run {run}");
        for signal in SIGNALS {
            kill(pid, signal).unwrap();
            line = next("got ...");
            assert_eq!(
                line,
                format!("got {signal} alive"),
                "run {run}: the host did not get {signal}, or the interface stopped with it"
            );
        }
        line = next("clean");
        assert_eq!(line, "clean", "run {run}");
        let status = host.child.wait().unwrap();
        assert!(status.success(), "run {run}: host exited with {status}");
        reader.join().unwrap();
    }
}
