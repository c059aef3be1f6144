//! The CA's output checked by OpenSSH's `ssh-keygen`: every certificate the tests issue is read
//! back with `ssh-keygen -L` (which also verifies the CA signature), fingerprints are compared
//! with `ssh-keygen -lf`, key files with `ssh-keygen -y`, and KRLs with `ssh-keygen -Q`.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{krl_verdict, list_certificate, new_key, ssh_keygen, ssh_keygen_ok, utc, Listing};
use watchgrid_sshca::{
    CaKey, CriticalOptions, HostCertRequest, Krl, PublicKey, UserCertRequest, Validity,
};

const RSA2048: &str = include_str!("fixtures/rsa2048.pub");
const ECDSA384: &str = include_str!("fixtures/ecdsa384.pub");

/// The subject key of a test certificate.
#[derive(Clone, Copy)]
enum Subject {
    /// Made now by `ssh-keygen -t kind [-b bits]`.
    New(&'static str, Option<u32>),
    /// A public key line from `tests/fixtures`.
    Fixture(&'static str),
}

impl Subject {
    fn line(self, dir: &Path, name: &str) -> String {
        match self {
            Subject::New(kind, bits) => new_key(dir, name, kind, bits).1,
            Subject::Fixture(line) => line.trim().to_owned(),
        }
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `ssh-keygen -lf`'s fingerprint (its second field) of a key line.
fn keygen_fingerprint(dir: &Path, line: &str) -> String {
    let path = common::write_temp(dir, "fp.pub", format!("{line}\n").as_bytes());
    let out = ssh_keygen_ok(&["-lf", path.to_str().unwrap()]);
    out.split_whitespace().nth(1).unwrap().to_owned()
}

/// The listing `ssh-keygen -L` must print for a certificate of `subject` signed by `ca`.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per certificate field"
)]
fn expected_listing(
    dir: &Path,
    ca: &CaKey,
    subject: &str,
    kind: &str,
    key_id: &str,
    serial: u64,
    validity: Validity,
    principals: &[String],
    critical_options: Vec<String>,
    extensions: Vec<String>,
) -> Listing {
    let key_type = subject.split_whitespace().next().unwrap();
    Listing {
        cert_type: format!("{key_type}-cert-v01@openssh.com"),
        kind: kind.to_owned(),
        public_key_fingerprint: keygen_fingerprint(dir, subject),
        signing_ca: ca.fingerprint(),
        key_id: key_id.to_owned(),
        serial,
        valid: format!(
            "from {} to {}",
            utc(secs(validity.valid_after)),
            utc(secs(validity.valid_before))
        ),
        principals: principals.to_vec(),
        critical_options,
        extensions,
    }
}

#[test]
fn utc_formats_like_ssh_keygen() {
    for (secs, want) in [
        (0, "1970-01-01T00:00:00"),
        (951_782_400, "2000-02-29T00:00:00"),
        (1_700_000_000, "2023-11-14T22:13:20"),
        (4_102_444_799, "2099-12-31T23:59:59"),
    ] {
        assert_eq!(utc(secs), want);
    }
}

struct UserCase {
    name: &'static str,
    subject: Subject,
    principals: &'static [&'static str],
    /// `None`: the default set.
    extensions: Option<&'static [&'static str]>,
    critical_options: CriticalOptions,
    serial: u64,
    validity: Validity,
}

#[test]
fn user_certificates_read_back_with_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaKey::generate("ca_acme_user").unwrap();
    let cases = [
        UserCase {
            name: "ed25519, defaults",
            subject: Subject::New("ed25519", None),
            principals: &["alice"],
            extensions: None,
            critical_options: CriticalOptions::default(),
            serial: 1,
            validity: Validity::starting_now(Duration::from_secs(8 * 3600)),
        },
        UserCase {
            name: "rsa 2048, several principals, both critical options, one extension",
            subject: Subject::Fixture(RSA2048),
            principals: &["alice", "deploy", "root"],
            extensions: Some(&["permit-pty"]),
            critical_options: CriticalOptions {
                force_command: Some("/usr/bin/systemctl status".into()),
                source_address: strings(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]),
            },
            serial: 42,
            validity: Validity::new(at(1_700_000_000), at(1_700_086_400)),
        },
        UserCase {
            name: "ecdsa p256, no extensions, source-address only",
            subject: Subject::New("ecdsa", Some(256)),
            principals: &["bob"],
            extensions: Some(&[]),
            critical_options: CriticalOptions {
                force_command: None,
                source_address: strings(&["127.0.0.1"]),
            },
            serial: u64::MAX,
            validity: Validity::new(at(946_684_800), at(4_102_444_799)),
        },
        UserCase {
            name: "ecdsa p384, force-command only, a custom extension",
            subject: Subject::Fixture(ECDSA384),
            principals: &["carol"],
            extensions: Some(&["permit-agent-forwarding", "no-touch-required"]),
            critical_options: CriticalOptions {
                force_command: Some("internal-sftp".into()),
                source_address: Vec::new(),
            },
            serial: 7,
            validity: Validity::starting_at(at(1_750_000_000), Duration::from_secs(60)),
        },
        UserCase {
            name: "ecdsa p521",
            subject: Subject::New("ecdsa", Some(521)),
            principals: &["dave"],
            extensions: None,
            critical_options: CriticalOptions::default(),
            serial: 8,
            validity: Validity::starting_now(Duration::from_secs(300)),
        },
    ];

    for (i, case) in cases.into_iter().enumerate() {
        let subject = case.subject.line(dir.path(), &format!("user{i}"));
        let mut req = UserCertRequest::new(
            subject.clone(),
            format!("{}@acme", case.principals[0]),
            strings(case.principals),
            case.validity,
            case.serial,
        );
        if let Some(ext) = case.extensions {
            req.extensions = ext
                .iter()
                .map(|e| ((*e).to_owned(), String::new()))
                .collect();
        }
        req.critical_options = case.critical_options.clone();

        let cert = ca
            .sign_user(&req)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let comment = subject.split_whitespace().nth(2).unwrap_or_default();
        assert!(
            cert.ends_with(&format!(" {comment}")),
            "{}: the certificate line keeps the key's comment: {cert}",
            case.name
        );

        let mut critical = Vec::new();
        if let Some(cmd) = &case.critical_options.force_command {
            critical.push(format!("force-command {cmd}"));
        }
        if !case.critical_options.source_address.is_empty() {
            critical.push(format!(
                "source-address {}",
                case.critical_options.source_address.join(",")
            ));
        }
        let want = expected_listing(
            dir.path(),
            &ca,
            &subject,
            "user",
            &req.key_id,
            case.serial,
            case.validity,
            &req.principals,
            critical,
            req.extensions.keys().cloned().collect(),
        );
        assert_eq!(
            list_certificate(dir.path(), &cert),
            want,
            "{}: {cert}",
            case.name
        );
    }
}

#[test]
fn default_user_extensions_are_openssh_defaults() {
    // A certificate `ssh-keygen -s` makes without `-O` options carries exactly these.
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, _) = new_key(dir.path(), "keygen_ca", "ed25519", None);
    let (user_path, _) = new_key(dir.path(), "keygen_user", "ed25519", None);
    ssh_keygen_ok(&[
        "-q",
        "-s",
        ca_path.to_str().unwrap(),
        "-I",
        "x",
        "-n",
        "x",
        &format!("{}.pub", user_path.display()),
    ]);
    let cert = fs::read_to_string(format!("{}-cert.pub", user_path.display())).unwrap();
    let listing = list_certificate(dir.path(), cert.trim());
    let ours: Vec<String> = watchgrid_sshca::default_user_extensions()
        .into_keys()
        .collect();
    assert_eq!(listing.extensions, ours);
}

#[test]
fn host_certificates_read_back_with_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaKey::generate("ca_acme_host").unwrap();
    let cases: [(Subject, &[&str], u64, Validity); 3] = [
        (
            Subject::New("ed25519", None),
            &["dev-1.acme.watchgrid", "100.64.0.2"],
            1,
            Validity::starting_now(Duration::from_secs(90 * 86_400)),
        ),
        (
            Subject::Fixture(ECDSA384),
            &["dev-2", "fd00::2"],
            2,
            Validity::new(at(1_700_000_000), at(1_800_000_000)),
        ),
        (
            Subject::Fixture(RSA2048),
            &["dev-3.acme.watchgrid"],
            3,
            Validity::new(at(1_700_000_000), at(1_700_000_001)),
        ),
    ];
    for (i, (subject, principals, serial, validity)) in cases.into_iter().enumerate() {
        let subject = subject.line(dir.path(), &format!("host{i}"));
        let req = HostCertRequest {
            public_key: subject.clone(),
            key_id: format!("device-{i}"),
            principals: strings(principals),
            validity,
            serial,
        };
        let cert = ca.sign_host(&req).unwrap();
        let want = expected_listing(
            dir.path(),
            &ca,
            &subject,
            "host",
            &req.key_id,
            serial,
            validity,
            &req.principals,
            Vec::new(),
            Vec::new(),
        );
        assert_eq!(list_certificate(dir.path(), &cert), want, "{cert}");
    }
}

#[test]
fn ca_key_files_and_fingerprints_agree_with_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaKey::generate("watchgrid ca_acme_user").unwrap();
    let private = ca.save(dir.path(), "ca_acme_user").unwrap();
    let public = dir.path().join("ca_acme_user.pub");

    // `ssh-keygen -lf` on either file: `256 SHA256:... comment (ED25519)`.
    for path in [&private, &public] {
        let out = ssh_keygen_ok(&["-lf", path.to_str().unwrap()]);
        assert_eq!(
            out.trim(),
            format!("256 {} watchgrid ca_acme_user (ED25519)", ca.fingerprint()),
            "{}",
            path.display()
        );
    }
    // OpenSSH reads the private key file and derives the same public key.
    let derived = ssh_keygen_ok(&["-y", "-f", private.to_str().unwrap()]);
    assert_eq!(derived.trim(), ca.public_key_openssh());
    assert_eq!(
        PublicKey::from_openssh(&ca.public_key_openssh())
            .unwrap()
            .fingerprint(),
        ca.fingerprint()
    );

    // And the other way: a key made by ssh-keygen loads, with the fingerprint it prints.
    let (keygen_ca, keygen_pub) = new_key(dir.path(), "keygen_ca", "ed25519", None);
    let loaded = CaKey::load(&keygen_ca).unwrap();
    assert_eq!(loaded.public_key_openssh(), keygen_pub);
    assert_eq!(
        loaded.fingerprint(),
        keygen_fingerprint(dir.path(), &keygen_pub)
    );

    // Keys a CA must not be: another type, or one with a passphrase.
    let (ecdsa, _) = new_key(dir.path(), "ecdsa_ca", "ecdsa", Some(256));
    let err = CaKey::load(&ecdsa).unwrap_err().to_string();
    assert!(
        err.ends_with("the private key is ecdsa-sha2-nistp256; CA keys are ssh-ed25519"),
        "{err}"
    );
    let encrypted = dir.path().join("encrypted_ca");
    ssh_keygen_ok(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "secret passphrase",
        "-f",
        encrypted.to_str().unwrap(),
    ]);
    let err = CaKey::load(&encrypted).unwrap_err().to_string();
    assert!(err.contains("encrypted"), "{err}");
}

#[test]
fn plain_key_fingerprints_agree_with_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        new_key(dir.path(), "ed", "ed25519", None).1,
        new_key(dir.path(), "ec", "ecdsa", Some(521)).1,
        RSA2048.trim().to_owned(),
        ECDSA384.trim().to_owned(),
        include_str!("fixtures/dsa.pub").trim().to_owned(),
    ];
    for line in lines {
        let key = PublicKey::from_openssh(&line).unwrap();
        assert_eq!(
            key.fingerprint(),
            keygen_fingerprint(dir.path(), &line),
            "{line}"
        );
        assert_eq!(key.to_openssh(), line);
    }
}

/// Certificates from two CAs and plain keys, a KRL that revokes some of them, and for each
/// one what `ssh-keygen -Q` must answer.
#[test]
fn krl_agrees_with_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaKey::generate("ca_acme_user").unwrap();
    let other_ca = CaKey::generate("ca_other_user").unwrap();
    let validity = Validity::starting_now(Duration::from_secs(3600));
    let key = |name: &str| new_key(dir.path(), name, "ed25519", None).1;
    let user_key = key("user");
    let revoked_plain = key("revoked_plain");
    let kept_plain = key("kept_plain");
    let issue = |ca: &CaKey, public_key: &str, key_id: &str, serial: u64| {
        ca.sign_user(&UserCertRequest::new(
            public_key,
            key_id,
            strings(&["alice"]),
            validity,
            serial,
        ))
        .unwrap()
    };

    let mut krl = Krl::new(3, "acme users").unwrap();
    let ca_pub = ca.public_key();
    krl.revoke_serial(&ca_pub, 10).unwrap();
    krl.revoke_serial(&ca_pub, 12).unwrap();
    krl.revoke_serial_range(&ca_pub, 100, 199).unwrap();
    krl.revoke_serial(&ca_pub, 200).unwrap(); // merges with the range
    krl.revoke_key_id(&ca_pub, "bob@acme").unwrap();
    krl.revoke_key(&PublicKey::from_openssh(&revoked_plain).unwrap());
    let krl_path = common::write_temp(dir.path(), "revoked.krl", &krl.to_bytes());

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "revoked serial",
            issue(&ca, &user_key, "alice@acme", 10),
            "REVOKED",
        ),
        (
            "another revoked serial",
            issue(&ca, &user_key, "alice@acme", 12),
            "REVOKED",
        ),
        (
            "serial between revoked ones",
            issue(&ca, &user_key, "alice@acme", 11),
            "ok",
        ),
        (
            "first of a revoked range",
            issue(&ca, &user_key, "alice@acme", 100),
            "REVOKED",
        ),
        (
            "inside a revoked range",
            issue(&ca, &user_key, "alice@acme", 150),
            "REVOKED",
        ),
        (
            "range merged with a single",
            issue(&ca, &user_key, "alice@acme", 200),
            "REVOKED",
        ),
        (
            "after the range",
            issue(&ca, &user_key, "alice@acme", 201),
            "ok",
        ),
        (
            "revoked key id",
            issue(&ca, &user_key, "bob@acme", 13),
            "REVOKED",
        ),
        (
            "key id of another CA's cert",
            issue(&other_ca, &user_key, "bob@acme", 13),
            "ok",
        ),
        (
            "same serial, another CA",
            issue(&other_ca, &user_key, "alice@acme", 10),
            "ok",
        ),
        (
            "range, another CA",
            issue(&other_ca, &user_key, "alice@acme", 150),
            "ok",
        ),
        ("revoked plain key", revoked_plain.clone(), "REVOKED"),
        (
            "certificate for a revoked plain key",
            issue(&ca, &revoked_plain, "carol@acme", 14),
            "REVOKED",
        ),
        ("plain key not revoked", kept_plain.clone(), "ok"),
        (
            "certificate for a kept key",
            issue(&ca, &kept_plain, "dave@acme", 15),
            "ok",
        ),
    ];
    for (name, line, want) in cases {
        assert_eq!(
            krl_verdict(dir.path(), &krl_path, &line),
            want,
            "{name}: {line}"
        );
    }

    // OpenSSH reads the whole file: its dump shows the header and every revocation.
    let dump = ssh_keygen_ok(&["-Q", "-l", "-f", krl_path.to_str().unwrap()]);
    for want in [
        "# KRL version 3".to_owned(),
        "# Comment: acme users".to_owned(),
        format!("# CA key ssh-ed25519 {}", ca.fingerprint()),
        "serial: 10".to_owned(),
        "serial: 12".to_owned(),
        "serial: 100-200".to_owned(),
        "id: bob@acme".to_owned(),
    ] {
        assert!(
            dump.lines().any(|l| l == want),
            "missing {want:?} in:\n{dump}"
        );
    }
}

/// Revocations written in another order, or twice, give the same file; an empty KRL is valid.
#[test]
fn krl_output_is_canonical_and_empty_lists_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaKey::generate("").unwrap().public_key();
    let b = CaKey::generate("").unwrap().public_key();
    let keys: Vec<PublicKey> = (0..3)
        .map(|_| CaKey::generate("k").unwrap().public_key())
        .collect();
    let build = |order: &[usize]| {
        let mut krl = Krl::new(1, "x").unwrap();
        krl.set_generated_at(at(1_700_000_000));
        for &i in order {
            match i {
                0 => krl.revoke_serial(&ca, 5).unwrap(),
                1 => krl.revoke_serial(&b, 5).unwrap(),
                2 => krl.revoke_key_id(&ca, "a").unwrap(),
                3 => krl.revoke_key(&keys[0]),
                4 => krl.revoke_key(&keys[1]),
                _ => krl.revoke_serial_range(&ca, 3, 9).unwrap(),
            }
        }
        krl.to_bytes()
    };
    assert_eq!(build(&[0, 1, 2, 3, 4, 5]), build(&[5, 4, 3, 2, 1, 0, 0, 3]));

    let empty = Krl::new(0, "").unwrap();
    assert!(empty.is_empty());
    let path = common::write_temp(dir.path(), "empty.krl", &empty.to_bytes());
    let line = keys[2].to_openssh();
    assert_eq!(krl_verdict(dir.path(), &path, &line), "ok");

    // A file that is not a KRL is an error for ssh-keygen, not a verdict: the helper's exit
    // status check relies on that.
    let bogus = common::write_temp(dir.path(), "bogus.krl", b"SSHKRL\n\0garbage");
    let out = ssh_keygen(&["-Q", "-f", bogus.to_str().unwrap(), "/dev/null"]);
    assert!(!out.status.success());
}

#[test]
fn subject_keys_ssh_keygen_makes_are_accepted_or_refused_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaKey::generate("").unwrap();
    let validity = Validity::starting_now(Duration::from_secs(60));
    for (kind, bits, refusal) in [
        ("ed25519", None, None),
        ("ecdsa", Some(256), None),
        ("rsa", Some(2048), None),
        (
            "rsa",
            Some(1024),
            Some("unsupported key type ssh-rsa: RSA key of 1024 bits is too short (at least 2048)"),
        ),
        (
            "dsa",
            None,
            Some("unsupported key type ssh-dss: DSA keys are obsolete"),
        ),
    ] {
        let name = format!("{kind}{}", bits.unwrap_or(0));
        let line = new_key(dir.path(), &name, kind, bits).1;
        let req = UserCertRequest::new(line, "x", strings(&["x"]), validity, 1);
        match (ca.sign_user(&req), refusal) {
            (Ok(cert), None) => {
                assert_eq!(list_certificate(dir.path(), &cert).kind, "user", "{name}")
            }
            (Err(e), Some(want)) => assert!(e.to_string().starts_with(want), "{name}: {e}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}
