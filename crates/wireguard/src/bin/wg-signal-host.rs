//! A stand-in for a program that runs a userspace WireGuard interface and shuts down on SIGTERM
//! or SIGINT, as the server and the agent do. `tests/signals.rs` runs it many times and signals
//! it: every signal must reach this program's own handling, none boringtun's.
//!
//! Usage: `wg-signal-host NETNS IFACE SIGNALS` (root). It enters network namespace NETNS, blocks
//! SIGTERM and SIGINT before any other thread exists (so every thread inherits the mask) and
//! takes them with `sigwait(2)` on a thread of its own, brings up userspace interface IFACE,
//! prints `ready`, then for each of SIGNALS signals prints `got SIGTERM alive` (or `... dead:
//! WHY` when the interface stopped with it). After the last one it drops the interface, checks
//! that the link and the UAPI socket are gone, prints `clean` and exits 0. Anything unexpected
//! ends it with a line starting `error:` and exit status 2.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper: any failure ends it with a message"
)]

use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use watchgrid_wireguard::{Backend as _, InterfaceSpec, PrivateKey, UserspaceInterface};

/// How long to wait for each signal the test sends.
const SIGNAL_WAIT: Duration = Duration::from_secs(20);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(message: &str) -> ExitCode {
    say(&format!("error: {message}"));
    ExitCode::from(2)
}

/// File descriptors of this process that are signalfds (their fdinfo has a `sigmask:` line).
fn signalfds() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return vec!["cannot read /proc/self/fdinfo".into()];
    };
    dir.filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path())
                .is_ok_and(|info| info.lines().any(|l| l.starts_with("sigmask:")))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [netns, name, signals] = args.as_slice() else {
        return fail("usage: wg-signal-host NETNS IFACE SIGNALS");
    };
    let Ok(signals) = signals.parse::<u32>() else {
        return fail("SIGNALS is not a number");
    };

    // First, while this is the only thread: every thread started later inherits the mask.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    if let Err(e) = mask.thread_block() {
        return fail(&format!("blocking SIGTERM and SIGINT: {e}"));
    }
    let entered = std::fs::File::open(format!("/run/netns/{netns}"))
        .map_err(|e| e.to_string())
        .and_then(|f| {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
        });
    if let Err(e) = entered {
        return fail(&format!("entering network namespace {netns}: {e}"));
    }
    let (got_tx, got_rx) = mpsc::channel::<Signal>();
    thread::Builder::new()
        .name("sigwait".into())
        .spawn(move || {
            while let Ok(signal) = mask.wait() {
                if got_tx.send(signal).is_err() {
                    break;
                }
            }
        })
        .unwrap();

    let spec = InterfaceSpec {
        name: name.clone(),
        private_key: PrivateKey::generate(),
        listen_port: None,
        addresses: vec!["10.99.0.1/24".parse().unwrap()],
        mtu: None,
    };
    let iface = match UserspaceInterface::open(&spec) {
        Ok(iface) => iface,
        Err(e) => return fail(&format!("open: {e}")),
    };
    let stolen = signalfds();
    if !stolen.is_empty() {
        say(&format!("signalfd open: fds {}", stolen.join(",")));
    }
    say("ready");

    for _ in 0..signals {
        match got_rx.recv_timeout(SIGNAL_WAIT) {
            Ok(signal) => match iface.check() {
                Ok(()) => say(&format!("got {signal} alive")),
                Err(e) => say(&format!("got {signal} dead: {e}")),
            },
            Err(_) => {
                return fail(&format!(
                "no signal reached this program within {}s (boringtun took it?); interface: {:?}",
                SIGNAL_WAIT.as_secs(),
                iface.check()
            ))
            }
        }
    }

    let socket = iface.socket_path().to_owned();
    drop(iface);
    if socket.exists() {
        return fail(&format!("{} left behind", socket.display()));
    }
    let link = Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if link.is_ok_and(|s| s.success()) {
        return fail(&format!("link {name} left behind"));
    }
    say("clean");
    ExitCode::SUCCESS
}
