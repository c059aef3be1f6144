//! Test hosts in network namespaces: namespaces, veth links, a bridge, and processes started
//! inside them. Everything is removed on drop, also when a test fails, and every name carries
//! the test process's id so parallel runs do not collide.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// Run a command, failing with its output when it does not succeed.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("could not run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Fail clearly unless the test can create namespaces (root with iproute2).
pub fn require_root() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    assert_eq!(
        uid.as_deref().unwrap_or(""),
        "0",
        "this test creates network namespaces and must run as root (CI does)"
    );
    assert!(
        Command::new("ip").arg("-V").output().is_ok(),
        "iproute2 (`ip`) is missing: apt-get install iproute2"
    );
}

/// A unique short tag for names: the low digits of the process id plus a counter.
pub fn unique_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace, deleted (with every process still in it) on drop.
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(prefix: &str) -> Result<Self> {
        let name = format!("wgt-{prefix}-{}", unique_tag());
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip netns exec <ns> args...`, waiting for it.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        Ok(Command::new("ip").args(&full).output()?)
    }

    /// Like [`NetNs::exec`], failing unless it succeeds.
    pub fn exec_ok(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Start `program` inside the namespace with a clean environment plus `envs`, its output
    /// appended to `log`. The process is killed when the returned guard drops.
    pub fn spawn(
        &self,
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Result<Process> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        for (k, v) in envs {
            command.env(k, v);
        }
        Ok(Process {
            child: Some(command.spawn()?),
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Kill what still runs inside, then remove the namespace (its links go with it).
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process, killed on drop.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
}

impl Process {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send SIGTERM and wait up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let pid = self.pid()?.to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait(timeout)
    }

    /// Wait up to `timeout` for the process to exit by itself.
    pub fn wait(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kill at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bridge in `host` with veth links to other namespaces: a small LAN.
#[derive(Debug)]
pub struct Lan {
    pub bridge: String,
}

impl Lan {
    /// A bridge in `host` with `address` (e.g. `10.77.0.1/24`) on it.
    pub fn new(host: &NetNs, address: &str) -> Result<Self> {
        let bridge = format!("br{}", unique_tag());
        host.exec_ok(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        host.exec_ok(&["ip", "addr", "add", address, "dev", &bridge])?;
        host.exec_ok(&["ip", "link", "set", &bridge, "up"])?;
        Ok(Self { bridge })
    }

    /// Plug `guest` into the LAN with `address` (e.g. `10.77.0.2/24`).
    pub fn attach(&self, host: &NetNs, guest: &NetNs, address: &str) -> Result<()> {
        let tag = unique_tag();
        let (outer, inner) = (format!("vh{tag}"), format!("vg{tag}"));
        run(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
        )?;
        run("ip", &["link", "set", &outer, "netns", &host.name])?;
        run("ip", &["link", "set", &inner, "netns", &guest.name])?;
        host.exec_ok(&["ip", "link", "set", &outer, "master", &self.bridge])?;
        host.exec_ok(&["ip", "link", "set", &outer, "up"])?;
        guest.exec_ok(&["ip", "addr", "add", address, "dev", &inner])?;
        guest.exec_ok(&["ip", "link", "set", &inner, "up"])?;
        Ok(())
    }
}

/// A veth link between the test's own namespace and `guest`, so the test process can reach
/// a server inside it. Removed on drop (deleting one end removes both).
#[derive(Debug)]
pub struct RootLink {
    outer: String,
}

impl RootLink {
    /// `root_address` on the test's side (e.g. `10.77.9.2/30`), `guest_address` inside.
    pub fn new(guest: &NetNs, root_address: &str, guest_address: &str) -> Result<Self> {
        let tag = unique_tag();
        let (outer, inner) = (format!("vr{tag}"), format!("vi{tag}"));
        run(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
        )?;
        let link = Self { outer };
        run("ip", &["link", "set", &inner, "netns", &guest.name])?;
        run("ip", &["addr", "add", root_address, "dev", &link.outer])?;
        run("ip", &["link", "set", &link.outer, "up"])?;
        guest.exec_ok(&["ip", "addr", "add", guest_address, "dev", &inner])?;
        guest.exec_ok(&["ip", "link", "set", &inner, "up"])?;
        Ok(link)
    }
}

impl Drop for RootLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.outer])
            .status();
    }
}
