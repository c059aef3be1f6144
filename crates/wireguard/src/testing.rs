//! Test fixtures for real WireGuard (feature `test-util`): network namespaces, veth pairs, a
//! thread that runs code inside a namespace, helper processes killed on drop, unique names.
//!
//! Every fixture cleans up in `Drop`, so a failing test leaves no namespace, link, process or
//! socket behind. Fixtures panic with a message saying what to install or how to run when the
//! host lacks something: tests that need root fail rather than skip.
//!
//! Why a thread per namespace: `open` must run inside the namespace, and boringtun's device
//! threads inherit the namespace of the thread that creates them. A thread that has called
//! `setns(2)` (safe through `nix`) does that in-process, so the test can call every `Backend`
//! method directly; a helper binary under `ip netns exec` would need its own RPC for that.

#![allow(
    clippy::unwrap_used,
    reason = "fixtures panic with a message on a broken host"
)]
#![allow(
    clippy::expect_used,
    reason = "fixtures panic with a message on a broken host"
)]

use std::fs::File;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A name unique on this host for this process: `prefix`, the pid and a counter, in base 36.
/// Fits an interface name (15 characters) for a prefix of up to 6.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{}", base36(std::process::id()), base36(n));
    assert!(
        name.len() <= 15,
        "name {name:?} is longer than an interface name may be"
    );
    name
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// Panics unless the process runs as root (effective uid 0).
#[track_caller]
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "this test needs root (network namespaces, veth pairs, TUN devices); run it as root, as CI does with scripts/test.sh"
    );
}

/// Panics, naming the Debian package to install, unless `program` can be started.
#[track_caller]
pub fn require_tool(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{program}` is not installed: `apt-get install {package}` (scripts/test.sh installs it)"
    );
}

/// Runs a command and returns its output, panicking if it cannot start.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command and panics with its stderr unless it succeeds.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop (with every link inside it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add` with a unique name starting with `prefix`, and `lo` up inside.
    pub fn new(prefix: &str) -> Netns {
        require_root();
        let name = unique_name(prefix);
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (under `/run/netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS`, panicking on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    /// `ip netns exec NS PROGRAM ARGS`, returning the output whatever the status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ping -c COUNT` from inside the namespace; true if every packet came back.
    pub fn ping(&self, address: &str, count: u32) -> bool {
        let count = count.to_string();
        self.exec(
            "ping",
            &["-n", "-q", "-c", &count, "-i", "0.2", "-W", "2", address],
        )
        .status
        .success()
    }

    /// Starts `program` inside the namespace; it is stopped when the guard drops.
    pub fn spawn(&self, program: &str, args: &[&str]) -> ChildGuard {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        let child = Command::new("ip")
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} in {}: {e}", self.name));
        ChildGuard {
            child,
            cleanup: Vec::new(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A veth pair joining two namespaces, with an address on each end and both ends up. It goes
/// away with the namespaces.
pub fn veth_pair(a: &Netns, a_address: &str, b: &Netns, b_address: &str) {
    let a_end = unique_name("va");
    let b_end = unique_name("vb");
    run_ok(
        "ip",
        &[
            "link",
            "add",
            &a_end,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b_end,
            "netns",
            b.name(),
        ],
    );
    a.ip(&["address", "add", a_address, "dev", &a_end]);
    b.ip(&["address", "add", b_address, "dev", &b_end]);
    a.ip(&["link", "set", &a_end, "up"]);
    b.ip(&["link", "set", &b_end, "up"]);
}

/// A child process, sent SIGTERM (then SIGKILL) on drop; files named with `also_remove` are
/// removed afterwards (e.g. the UAPI socket of a killed wireguard-go).
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    cleanup: Vec<PathBuf>,
}

impl ChildGuard {
    /// Removes `path` after the process has stopped.
    pub fn also_remove(mut self, path: impl Into<PathBuf>) -> Self {
        self.cleanup.push(path.into());
        self
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.is_running() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.is_running() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if self.is_running() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        for path in &self.cleanup {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Waits until `condition` holds, polling, for at most `timeout`; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread inside a network namespace that runs closures for the test: open interfaces there,
/// call `check()` there, drop them there.
#[derive(Debug)]
pub struct NsThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    namespace: String,
}

impl NsThread {
    /// A thread that has entered `netns`.
    pub fn enter(netns: &Netns) -> NsThread {
        let path = format!("/run/netns/{}", netns.name());
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread = thread::Builder::new()
            .name(format!("ns-{}", netns.name()))
            .spawn(move || {
                let entered = File::open(&path)
                    .map_err(|e| format!("open {path}: {e}"))
                    .and_then(|f| {
                        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| format!("setns {path}: {e}"))
                    });
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    for job in inbox {
                        job();
                    }
                }
            })
            .expect("spawning a namespace thread");
        ready_rx
            .recv()
            .expect("namespace thread died")
            .unwrap_or_else(|e| panic!("{e}"));
        NsThread {
            jobs: Some(jobs),
            thread: Some(thread),
            namespace: netns.name().to_owned(),
        }
    }

    /// Runs `f` on the thread (inside the namespace) and returns its result; a panic in `f` is
    /// resumed here.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
        });
        self.jobs
            .as_ref()
            .expect("thread running")
            .send(job)
            .expect("namespace thread gone");
        match rx
            .recv()
            .unwrap_or_else(|_| panic!("namespace thread {} died", self.namespace))
        {
            Ok(value) => value,
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_interface_names() {
        let a = unique_name("wgtest");
        let b = unique_name("wgtest");
        assert_ne!(a, b);
        assert!(a.len() <= 15);
        crate::validate_interface_name(&a).unwrap();
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
