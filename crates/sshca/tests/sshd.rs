//! End to end with OpenSSH: a throwaway `sshd` on 127.0.0.1 trusts the CA's host certificate,
//! user CA and KRL, and `ssh` logs in with the CA's certificates (or is refused).
//!
//! Needs root (sshd's privilege separation; the login is as root, so no user is created) and
//! the `openssh-server` and `openssh-client` packages. All traffic stays on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use common::new_key;
use watchgrid_sshca::{CaKey, HostCertRequest, Krl, UserCertRequest, Validity};
use watchgrid_testkit::wait::blocking::wait_for_or;

const SSHD: &str = "/usr/sbin/sshd";

fn require_root() {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "this test needs root to run sshd and log in as root; run it as root, as CI does"
    );
}

/// A running `sshd -D -e`, killed on drop. Its log (stderr) goes to `log`.
struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Sshd {
    fn start(dir: &Path, config_body: &str) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is not installed: `apt-get install openssh-server`"
        );
        // sshd's privilege-separation directory; the Debian package makes it only when its
        // service starts.
        fs::create_dir_all("/run/sshd").unwrap();

        // A free port on the loopback address: bind port 0, note it, let it go.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!("Port {port}\nListenAddress 127.0.0.1\nPidFile none\n{config_body}"),
        )
        .unwrap();
        // Refuse a config sshd would not run with, with its own message.
        let check = Command::new(SSHD)
            .args(["-t", "-f"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "sshd -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );

        let log = dir.join("sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let sshd = Sshd { child, port, log };
        sshd.wait_ready();
        sshd
    }

    /// Waits until the port answers with an SSH banner.
    fn wait_ready(&self) {
        wait_for_or(
            &format!("sshd to listen on 127.0.0.1:{}", self.port),
            Duration::from_secs(10),
            || {
                let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).ok()?;
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut banner = [0u8; 8];
                (stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0-").then_some(())
            },
            || format!("its log:\n{}", self.log_text()),
        );
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 5 s: sshd's log is written as it goes) until the log has `needle`.
    fn assert_logged(&self, needle: &str, context: &str) {
        wait_for_or(
            &format!("{needle:?} in sshd's log ({context})"),
            Duration::from_secs(5),
            || self.log_text().contains(needle).then_some(()),
            || self.log_text(),
        );
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of `ssh ... root@127.0.0.1 true`.
struct Login {
    ok: bool,
    stderr: String,
}

fn ssh_true(port: u16, identity: &Path, cert: &Path, known_hosts: &Path) -> Login {
    ssh_true_with(port, identity, cert, known_hosts, &[])
}

/// [`ssh_true`] with extra `-o` options.
fn ssh_true_with(
    port: u16,
    identity: &Path,
    cert: &Path,
    known_hosts: &Path,
    options: &[String],
) -> Login {
    common::require_tool("ssh", "openssh-client");
    let mut command = Command::new("ssh");
    for option in options {
        command.arg("-o").arg(option);
    }
    let out = command
        .args(["-F", "/dev/null", "-i"])
        .arg(identity)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=yes",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "KbdInteractiveAuthentication=no",
            "-o",
            "ConnectTimeout=10",
            "-p",
        ])
        .arg(port.to_string())
        .args(["root@127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Login {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write_line(path: &Path, line: &str) -> PathBuf {
    fs::write(path, format!("{line}\n")).unwrap();
    path.to_owned()
}

#[test]
fn sshd_accepts_our_certificates_and_honours_the_krl() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The tenant's two CAs, as the server will keep them.
    let user_ca = CaKey::generate("ca_acme_user").unwrap();
    let host_ca = CaKey::generate("ca_acme_host").unwrap();
    user_ca.save(dir, "ca_acme_user").unwrap();
    host_ca.save(dir, "ca_acme_host").unwrap();

    // The host: its own key, certified by the host CA for the address clients use.
    let (host_key, host_pub) = new_key(dir, "ssh_host_ed25519_key", "ed25519", None);
    let host_cert = host_ca
        .sign_host(&HostCertRequest {
            public_key: host_pub,
            key_id: "device-1".into(),
            principals: vec!["127.0.0.1".into(), "dev-1.acme.watchgrid".into()],
            validity: Validity::starting_now(Duration::from_secs(3600)),
            serial: 1,
        })
        .unwrap();
    let host_cert_path = write_line(&dir.join("ssh_host_ed25519_key-cert.pub"), &host_cert);

    // The user's key and certificates: one good, one revoked, one expired, one for another
    // account.
    let (user_key, user_pub) = new_key(dir, "id_ed25519", "ed25519", None);
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let user_cert = |name: &str, principal: &str, serial: u64, validity: Validity| {
        let cert = user_ca
            .sign_user(&UserCertRequest::new(
                user_pub.clone(),
                format!("{name}@acme"),
                vec![principal.to_owned()],
                validity,
                serial,
            ))
            .unwrap();
        write_line(&dir.join(format!("{name}-cert.pub")), &cert)
    };
    let good = user_cert("good", "root", 1, Validity::starting_now(hour));
    let revoked = user_cert("revoked", "root", 2, Validity::starting_now(hour));
    let expired = user_cert(
        "expired",
        "root",
        3,
        Validity::new(now - 2 * hour, now - hour),
    );
    let wrong_principal = user_cert("stranger", "someone-else", 4, Validity::starting_now(hour));

    let mut krl = Krl::new(1, "acme users").unwrap();
    krl.revoke_serial(&user_ca.public_key(), 2).unwrap();
    let krl_path = dir.join("revoked.krl");
    fs::write(&krl_path, krl.to_bytes()).unwrap();

    let sshd = Sshd::start(
        dir,
        &format!(
            "HostKey {host_key}\n\
             HostCertificate {host_cert}\n\
             TrustedUserCAKeys {user_ca}\n\
             RevokedKeys {krl}\n\
             AuthorizedKeysFile none\n\
             AuthorizedPrincipalsFile none\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             UsePAM no\n\
             StrictModes no\n\
             LogLevel VERBOSE\n",
            host_key = host_key.display(),
            host_cert = host_cert_path.display(),
            user_ca = dir.join("ca_acme_user.pub").display(),
            krl = krl_path.display(),
        ),
    );

    // The client trusts the host CA for this host (known_hosts names a non-default port as
    // `[host]:port`), and nothing else.
    let known_hosts = write_line(
        &dir.join("known_hosts"),
        &format!(
            "@cert-authority [127.0.0.1]:{} {}",
            sshd.port,
            host_ca.public_key_openssh()
        ),
    );

    let login = ssh_true(sshd.port, &user_key, &good, &known_hosts);
    assert!(
        login.ok,
        "the good certificate logs in: {}\nsshd:\n{}",
        login.stderr,
        sshd.log_text()
    );
    sshd.assert_logged("ID good@acme (serial 1)", "good certificate");

    for (name, cert, logged) in [
        ("revoked", &revoked, "revoked by file"),
        ("expired", &expired, "expired"),
        (
            "principal not allowed",
            &wrong_principal,
            "name is not a listed principal",
        ),
    ] {
        let login = ssh_true(sshd.port, &user_key, cert, &known_hosts);
        assert!(!login.ok, "{name}: logged in\nsshd:\n{}", sshd.log_text());
        assert!(
            login.stderr.contains("Permission denied"),
            "{name}: refused for another reason: {}",
            login.stderr
        );
        sshd.assert_logged(logged, name);
    }

    // The host certificate is what let the client in: trusting another CA, it refuses the host.
    let other_ca = CaKey::generate("ca_other_host").unwrap();
    let wrong_known_hosts = write_line(
        &dir.join("known_hosts_other"),
        &format!(
            "@cert-authority [127.0.0.1]:{} {}",
            sshd.port,
            other_ca.public_key_openssh()
        ),
    );
    let login = ssh_true(sshd.port, &user_key, &good, &wrong_known_hosts);
    assert!(
        !login.ok,
        "logged in to a host certified by an untrusted CA"
    );
    assert!(
        login.stderr.contains("Host key verification failed"),
        "refused for another reason: {}",
        login.stderr
    );

    // The client's RevokedHostKeys KRL (what `watchgrid ssh` gives ssh) is what makes a host
    // certificate's revocation count, although known_hosts trusts its CA.
    let mut host_krl = Krl::new(1, "acme hosts").unwrap();
    let host_krl_path = dir.join("revoked_host_keys");
    fs::write(&host_krl_path, host_krl.to_bytes()).unwrap();
    let revoked_host_keys = [format!("RevokedHostKeys={}", host_krl_path.display())];
    let login = ssh_true_with(
        sshd.port,
        &user_key,
        &good,
        &known_hosts,
        &revoked_host_keys,
    );
    assert!(
        login.ok,
        "an empty host KRL refused the host: {}",
        login.stderr
    );
    host_krl.revoke_serial(&host_ca.public_key(), 1).unwrap();
    fs::write(&host_krl_path, host_krl.to_bytes()).unwrap();
    let login = ssh_true_with(
        sshd.port,
        &user_key,
        &good,
        &known_hosts,
        &revoked_host_keys,
    );
    assert!(
        !login.ok,
        "logged in to a host whose certificate is revoked"
    );
    assert!(
        login.stderr.contains("revoked by file"),
        "refused for another reason: {}",
        login.stderr
    );

    // A KRL rewritten while sshd runs takes effect at the next login: revoke the good one.
    krl.revoke_key_id(&user_ca.public_key(), "good@acme")
        .unwrap();
    let mut krl2 = krl.clone();
    krl2.set_generated_at(SystemTime::now());
    fs::write(&krl_path, krl2.to_bytes()).unwrap();
    let login = ssh_true(sshd.port, &user_key, &good, &known_hosts);
    assert!(!login.ok, "a certificate revoked by key id still logs in");
    wait_for_or(
        "the rewritten KRL to be what refused the login",
        Duration::from_secs(5),
        || (sshd.log_text().matches("revoked by file").count() >= 2).then_some(()),
        || sshd.log_text(),
    );
}
