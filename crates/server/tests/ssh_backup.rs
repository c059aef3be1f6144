//! The SSH CA backup and restore scripts against a running `watchgrid-server`: wiping the CA
//! directory turns `/healthz` into 503 naming `ssh_ca` and the tenant; a backup with one
//! flipped byte, or truncated, or read with another passphrase is refused with nothing
//! written; the real backup, restored with `scripts/restore-ssh-ca.sh`, brings `/healthz`
//! back to 200 without a restart, and certificates issued before the wipe verify against the
//! restored CA.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ServerProcess;
use serde_json::{json, Value};

const STARTUP: Duration = Duration::from_secs(30);
const PASSWORD: &str = "Backup-Test-Admin-7";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

/// Run a script with the CA directory and passphrase file; returns (success, stderr).
fn run(name: &str, args: &[&str], ca_dir: &Path, passphrase: &Path) -> (bool, String) {
    let out = Command::new(script(name))
        .args(args)
        .env("WATCHGRID_SSH_CA_DIR", ca_dir)
        .env("WATCHGRID_SSH_CA_BACKUP_PASSPHRASE_FILE", passphrase)
        // Fewer PBKDF2 rounds than the default keep the test fast; the format records them.
        .env("WATCHGRID_SSH_CA_BACKUP_ITER", "20000")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ca_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ca_"))
        .collect();
    names.sort();
    names
}

fn ssh_keygen(args: &[&str]) -> String {
    let out = Command::new("ssh-keygen")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn api(
    server: &ServerProcess,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut request = server
        .client
        .request(method.parse().unwrap(), format!("{}{path}", server.base))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}

#[tokio::test]
async fn a_wiped_ca_directory_is_restored_from_the_encrypted_backup() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let backups = dir.path().join("backups");
    let passphrase = dir.path().join("passphrase");
    std::fs::write(
        &passphrase,
        "a long backup passphrase kept in the password manager\n",
    )
    .unwrap();
    std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut server = ServerProcess::spawn(
        dir.path(),
        &[
            ("WATCHGRID_SSH_CA_DIR", ca_dir.to_str().unwrap()),
            ("ADMIN_PASSWORD", PASSWORD),
            ("WATCHGRID_WG_BACKEND", "none"),
        ],
    );
    server
        .wait_for("/readyz", STARTUP, |status, _| status == 200)
        .await;
    assert_eq!(
        ca_files(&ca_dir),
        [
            "ca_default_host",
            "ca_default_host.pub",
            "ca_default_user",
            "ca_default_user.pub"
        ]
    );

    // A certificate issued before the disaster.
    let login = api(
        &server,
        "POST",
        "/api/auth/login",
        None,
        json!({"username": "admin", "password": PASSWORD}),
    )
    .await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    api(
        &server,
        "PUT",
        "/api/ssh/principals",
        Some(&token),
        json!({"role": "owner", "principals": ["root"]}),
    )
    .await;
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("id");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        key_path.to_str().unwrap(),
    ]);
    let public = std::fs::read_to_string(keys.path().join("id.pub")).unwrap();
    let signed = api(
        &server,
        "POST",
        "/api/ssh/certificates",
        Some(&token),
        json!({"public_key": public.trim()}),
    )
    .await;
    let cert_path = keys.path().join("id-cert.pub");
    std::fs::write(
        &cert_path,
        format!("{}\n", signed["certificate"].as_str().unwrap()),
    )
    .unwrap();

    // The backup.
    let (ok, out) = run(
        "backup-ssh-ca.sh",
        &[backups.to_str().unwrap()],
        &ca_dir,
        &passphrase,
    );
    assert!(ok, "{out}");
    let backup = PathBuf::from(out.lines().next().unwrap());
    assert!(backup.starts_with(&backups), "{out}");
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bytes = std::fs::read(&backup).unwrap();
    assert!(bytes.starts_with(b"WATCHGRID-SSH-CA-BACKUP 1\n"));
    // The keys are not readable in the backup.
    let private = std::fs::read_to_string(ca_dir.join("ca_default_user")).unwrap();
    let body_line = private.lines().nth(1).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(body_line));

    // The volume is wiped: /healthz fails, naming ssh_ca and the tenant.
    for name in ca_files(&ca_dir) {
        std::fs::remove_file(ca_dir.join(name)).unwrap();
    }
    let health = server
        .wait_for("/healthz", Duration::from_secs(10), |status, _| {
            status == 503
        })
        .await;
    let check = health["checks"]["ssh_ca"].as_str().unwrap();
    assert!(
        check.starts_with("error: tenant default: ")
            && check.contains("tenant default: user CA key"),
        "{check}"
    );
    assert!(check.contains("is missing"), "{check}");
    // Nothing to back up: the script refuses rather than writing an empty backup.
    let (ok, out) = run(
        "backup-ssh-ca.sh",
        &[backups.to_str().unwrap()],
        &ca_dir,
        &passphrase,
    );
    assert!(
        !ok && out.contains("refusing to write an empty backup"),
        "{out}"
    );

    // Damaged backups are refused before anything is written.
    let damaged = dir.path().join("damaged");
    let mut flipped = bytes.clone();
    let middle = bytes.len() / 2;
    flipped[middle] ^= 0x01;
    let header_flip = {
        let mut b = bytes.clone();
        // The last digit of the iteration count.
        let at = b.iter().position(|&c| c == b'\n').unwrap() + 10;
        b[at] ^= 0x01;
        b
    };
    let wrong_passphrase = dir.path().join("wrong");
    std::fs::write(&wrong_passphrase, "not the passphrase\n").unwrap();
    std::fs::set_permissions(&wrong_passphrase, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (label, content, pass) in [
        ("one flipped byte", flipped, &passphrase),
        ("a flipped header byte", header_flip, &passphrase),
        ("truncated", bytes[..bytes.len() - 7].to_vec(), &passphrase),
        ("another passphrase", bytes.clone(), &wrong_passphrase),
    ] {
        std::fs::write(&damaged, &content).unwrap();
        let (ok, out) = run(
            "restore-ssh-ca.sh",
            &[damaged.to_str().unwrap()],
            &ca_dir,
            pass,
        );
        assert!(!ok, "{label}: restored anyway: {out}");
        assert!(
            out.contains("nothing was restored") || out.contains("damaged header"),
            "{label}: {out}"
        );
        assert!(ca_files(&ca_dir).is_empty(), "{label}: files were written");
        assert_eq!(
            std::fs::read_dir(&ca_dir).unwrap().count(),
            0,
            "{label}: leftovers"
        );
    }
    let (status, _) = server.get("/healthz").await.unwrap();
    assert_eq!(status, 503);

    // The real backup: restored, healthy again without a restart.
    let (ok, out) = run(
        "restore-ssh-ca.sh",
        &[backup.to_str().unwrap()],
        &ca_dir,
        &passphrase,
    );
    assert!(ok, "{out}");
    assert_eq!(ca_files(&ca_dir).len(), 4);
    assert_eq!(
        std::fs::metadata(ca_dir.join("ca_default_user"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let health = server
        .wait_for("/healthz", Duration::from_secs(10), |status, _| {
            status == 200
        })
        .await;
    assert_eq!(health["checks"]["ssh_ca"], "ok");

    // The certificate from before verifies against the restored CA, and new ones use it.
    let listing = ssh_keygen(&["-L", "-f", cert_path.to_str().unwrap()]);
    let restored_ca = ssh_keygen(&["-lf", ca_dir.join("ca_default_user.pub").to_str().unwrap()]);
    let restored_fp = restored_ca.split_whitespace().nth(1).unwrap();
    assert!(
        listing.contains(&format!("Signing CA: ED25519 {restored_fp}")),
        "{listing}"
    );
    let again = api(
        &server,
        "POST",
        "/api/ssh/certificates",
        Some(&token),
        json!({"public_key": public.trim()}),
    )
    .await;
    assert_eq!(again["ca_fingerprint"], restored_fp);
    assert_eq!(again["ca_fingerprint"], signed["ca_fingerprint"]);

    // Restoring over existing, different keys needs --force.
    std::fs::write(ca_dir.join("ca_default_host.pub"), "something else\n").unwrap();
    let (ok, out) = run(
        "restore-ssh-ca.sh",
        &[backup.to_str().unwrap()],
        &ca_dir,
        &passphrase,
    );
    assert!(!ok && out.contains("ca_default_host.pub"), "{out}");
    let (ok, out) = run(
        "restore-ssh-ca.sh",
        &["--force", backup.to_str().unwrap()],
        &ca_dir,
        &passphrase,
    );
    assert!(ok, "{out}");
    server.terminate().await;
}
