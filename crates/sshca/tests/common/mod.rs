//! Helpers for the tests that check the CA's output with OpenSSH itself: running `ssh-keygen`,
//! making keys, reading `ssh-keygen -L` listings and `ssh-keygen -Q` verdicts.

#![allow(dead_code, reason = "each test binary uses a part of the helpers")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Panics, naming the Debian package to install, unless `program` can be started.
#[track_caller]
pub fn require_tool(program: &str, package: &str) {
    let found = Command::new(program).arg("-V").output().is_ok();
    assert!(
        found,
        "`{program}` is not installed: `apt-get install {package}`"
    );
}

/// Runs `ssh-keygen` with `args` in UTC (it prints validity times in local time).
pub fn ssh_keygen(args: &[&str]) -> Output {
    require_tool("ssh-keygen", "openssh-client");
    Command::new("ssh-keygen")
        .args(args)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .output()
        .expect("running ssh-keygen")
}

/// Runs `ssh-keygen` and returns its stdout, panicking with its stderr unless it succeeds.
#[track_caller]
pub fn ssh_keygen_ok(args: &[&str]) -> String {
    let out = ssh_keygen(args);
    assert!(
        out.status.success(),
        "ssh-keygen {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ssh-keygen prints UTF-8")
}

/// A new key pair made by `ssh-keygen -t kind [-b bits]` in `dir/name` (no passphrase).
/// Returns the private key's path and the public key line.
pub fn new_key(dir: &Path, name: &str, kind: &str, bits: Option<u32>) -> (PathBuf, String) {
    let path = dir.join(name);
    let path_str = path.to_str().expect("UTF-8 temp path");
    let bits = bits.map(|b| b.to_string());
    let mut args = vec!["-q", "-t", kind, "-N", "", "-C", name, "-f", path_str];
    if let Some(bits) = &bits {
        args.extend(["-b", bits.as_str()]);
    }
    ssh_keygen_ok(&args);
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).expect("reading .pub");
    (path, public.trim().to_owned())
}

/// Writes `contents` to a new file in `dir` and returns its path.
pub fn write_temp(dir: &Path, stem: &str, contents: &[u8]) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = dir.join(format!("{stem}-{}", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, contents).expect("writing a temp file");
    path
}

/// What `ssh-keygen -L` prints about a certificate, field by field.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The certificate's key type, e.g. `ssh-ed25519-cert-v01@openssh.com`.
    pub cert_type: String,
    /// `user` or `host`.
    pub kind: String,
    /// The certified key's fingerprint.
    pub public_key_fingerprint: String,
    /// The signing CA's fingerprint.
    pub signing_ca: String,
    pub key_id: String,
    pub serial: u64,
    /// `from <time> to <time>` in UTC, or `forever`.
    pub valid: String,
    pub principals: Vec<String>,
    /// `name value` (or `name` alone), one per option, as printed.
    pub critical_options: Vec<String>,
    pub extensions: Vec<String>,
}

/// Runs `ssh-keygen -L` on a certificate line (written to a temp file in `dir`) and parses
/// what it prints. `ssh-keygen` checks the CA's signature while loading the certificate.
pub fn list_certificate(dir: &Path, cert_line: &str) -> Listing {
    let path = write_temp(dir, "cert.pub", format!("{cert_line}\n").as_bytes());
    let text = ssh_keygen_ok(&["-L", "-f", path.to_str().expect("UTF-8 temp path")]);
    parse_listing(&text)
}

fn parse_listing(text: &str) -> Listing {
    let mut l = Listing::default();
    let mut list: Option<&str> = None;
    for line in text.lines().skip(1) {
        if line.starts_with("                ") {
            let item = line.trim().to_owned();
            match list {
                Some("Principals") => l.principals.push(item),
                Some("Critical Options") => l.critical_options.push(item),
                Some("Extensions") => l.extensions.push(item),
                other => panic!("list item {item:?} outside a list ({other:?}) in:\n{text}"),
            }
            continue;
        }
        let (field, value) = line
            .trim()
            .split_once(':')
            .unwrap_or_else(|| panic!("unexpected line {line:?} in:\n{text}"));
        let value = value.trim();
        list = None;
        match field {
            "Type" => {
                let mut words = value.split_whitespace();
                l.cert_type = words.next().unwrap_or_default().to_owned();
                l.kind = words.next().unwrap_or_default().to_owned();
            }
            "Public key" => {
                l.public_key_fingerprint =
                    value.split_whitespace().nth(1).unwrap_or_default().into()
            }
            "Signing CA" => {
                l.signing_ca = value.split_whitespace().nth(1).unwrap_or_default().into()
            }
            "Key ID" => l.key_id = value.trim_matches('"').to_owned(),
            "Serial" => l.serial = value.parse().expect("numeric serial"),
            "Valid" => l.valid = value.to_owned(),
            "Principals" | "Critical Options" | "Extensions" => {
                if value != "(none)" {
                    list = Some(field);
                }
            }
            other => panic!("unexpected field {other:?} in:\n{text}"),
        }
    }
    l
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC for Unix seconds, as `ssh-keygen -L` prints times with TZ=UTC.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).expect("a date before year 25 million");
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What `ssh-keygen -Q -f krl` says about a key or certificate line: `REVOKED` or `ok`.
pub fn krl_verdict(dir: &Path, krl: &Path, line: &str) -> String {
    let path = write_temp(dir, "query.pub", format!("{line}\n").as_bytes());
    let out = ssh_keygen(&[
        "-Q",
        "-f",
        krl.to_str().expect("UTF-8 temp path"),
        path.to_str().expect("UTF-8 temp path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = stdout
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    // `ssh-keygen -Q` exits 1 when something is revoked and 0 when not; anything else (or
    // output without a verdict) means it could not read the KRL or the key.
    let expected_status = match verdict.as_str() {
        "REVOKED" => 1,
        "ok" => 0,
        _ => -1,
    };
    assert_eq!(
        out.status.code(),
        Some(expected_status),
        "ssh-keygen -Q: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    verdict
}
