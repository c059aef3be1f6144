//! Certificate requests (`UserCertRequest`, `HostCertRequest`), their validity windows and
//! critical options, and the checks a request must pass before the CA signs it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::key::PublicKey;
use crate::Error;

/// How far before "now" [`Validity::starting_now`] starts a certificate, so that a device whose
/// clock runs a little behind the server's still accepts it.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The extensions OpenSSH's `ssh-keygen` puts in a user certificate by default; each grants a
/// permission on the server the user logs in to.
pub const DEFAULT_USER_EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// [`DEFAULT_USER_EXTENSIONS`] as an extensions map (names to empty values).
pub fn default_user_extensions() -> BTreeMap<String, String> {
    DEFAULT_USER_EXTENSIONS
        .iter()
        .map(|name| ((*name).to_owned(), String::new()))
        .collect()
}

/// When a certificate is valid: from `valid_after` (inclusive) to `valid_before` (exclusive),
/// at one-second resolution (sub-second parts are dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// The first instant the certificate is valid.
    pub valid_after: SystemTime,
    /// The instant the certificate stops being valid.
    pub valid_before: SystemTime,
}

impl Validity {
    /// A window from `valid_after` to `valid_before`; checked when a certificate is signed.
    pub fn new(valid_after: SystemTime, valid_before: SystemTime) -> Validity {
        Validity {
            valid_after,
            valid_before,
        }
    }

    /// Valid from [`DEFAULT_CLOCK_SKEW`] ago until `duration` from now.
    pub fn starting_now(duration: Duration) -> Validity {
        Validity::starting_at(SystemTime::now(), duration)
    }

    /// Valid from [`DEFAULT_CLOCK_SKEW`] before `now` until `duration` after `now`.
    pub fn starting_at(now: SystemTime, duration: Duration) -> Validity {
        Validity {
            valid_after: now
                .checked_sub(DEFAULT_CLOCK_SKEW)
                .filter(|t| *t >= UNIX_EPOCH)
                .unwrap_or(UNIX_EPOCH),
            valid_before: now + duration,
        }
    }

    /// The window as Unix seconds, refusing an empty one.
    pub(crate) fn unix_seconds(&self) -> Result<(u64, u64), Error> {
        let secs = |t: SystemTime, what: &str| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .map_err(|_| Error::InvalidValidity(format!("{what} is before 1970")))
        };
        let after = secs(self.valid_after, "valid_after")?;
        let before = secs(self.valid_before, "valid_before")?;
        if before <= after {
            return Err(Error::InvalidValidity(format!(
                "valid_before ({before}) must be later than valid_after ({after}), in whole seconds"
            )));
        }
        if before > i64::MAX as u64 {
            return Err(Error::InvalidValidity(
                "valid_before is too far in the future".into(),
            ));
        }
        Ok((after, before))
    }
}

/// Critical options of a user certificate: restrictions that a server which does not know
/// them must refuse the certificate over. Empty by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CriticalOptions {
    /// `force-command`: the only command the certificate may run, whatever the client asks.
    pub force_command: Option<String>,
    /// `source-address`: the client addresses (`192.0.2.7`) or CIDR blocks (`10.0.0.0/8`,
    /// `2001:db8::/32`) the certificate may be used from. Empty means no restriction.
    pub source_address: Vec<String>,
}

impl CriticalOptions {
    /// The options as OpenSSH names and values, checked.
    pub(crate) fn to_pairs(&self) -> Result<Vec<(&'static str, String)>, Error> {
        let mut pairs = Vec::new();
        if let Some(command) = &self.force_command {
            let bad = |reason: &str| Error::InvalidCriticalOption {
                name: "force-command",
                reason: reason.to_owned(),
            };
            if command.trim().is_empty() {
                return Err(bad("the command is empty"));
            }
            if command.chars().any(char::is_control) {
                return Err(bad("the command has control characters"));
            }
            pairs.push(("force-command", command.clone()));
        }
        if !self.source_address.is_empty() {
            for entry in &self.source_address {
                check_source_address(entry).map_err(|reason| Error::InvalidCriticalOption {
                    name: "source-address",
                    reason: format!("{entry:?}: {reason}"),
                })?;
            }
            pairs.push(("source-address", self.source_address.join(",")));
        }
        Ok(pairs)
    }
}

/// One `source-address` entry: an IPv4 or IPv6 address, optionally with a prefix length.
fn check_source_address(entry: &str) -> Result<(), &'static str> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "not an IP address or CIDR block")?;
    if let Some(prefix) = prefix {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(len) if len <= max && !prefix.starts_with('+') => {}
            _ => return Err("the prefix length is not a number within the address family"),
        }
    }
    Ok(())
}

/// What a user certificate says: who may log in as which accounts, when, and with which
/// permissions. Serials are the caller's; the server keeps them unique per CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserCertRequest {
    /// The user's public key, one OpenSSH line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
    /// Free text that sshd logs on every login with the certificate and that a KRL can revoke,
    /// e.g. `alice@acme`. Not empty.
    pub key_id: String,
    /// The accounts the certificate may log in as. At least one.
    pub principals: Vec<String>,
    /// When the certificate is valid.
    pub validity: Validity,
    /// The serial number, not 0 (see [`Error::ZeroSerial`]).
    pub serial: u64,
    /// Extensions by name, values usually empty; [`default_user_extensions`] by default.
    pub extensions: BTreeMap<String, String>,
    /// Critical options; none by default.
    pub critical_options: CriticalOptions,
}

impl UserCertRequest {
    /// A request with OpenSSH's default user extensions and no critical options.
    pub fn new(
        public_key: impl Into<String>,
        key_id: impl Into<String>,
        principals: Vec<String>,
        validity: Validity,
        serial: u64,
    ) -> UserCertRequest {
        UserCertRequest {
            public_key: public_key.into(),
            key_id: key_id.into(),
            principals,
            validity,
            serial,
            extensions: default_user_extensions(),
            critical_options: CriticalOptions::default(),
        }
    }
}

/// What a host certificate says: which names and addresses a host's key answers for, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCertRequest {
    /// The host's public key, one OpenSSH line (`/etc/ssh/ssh_host_ed25519_key.pub`).
    pub public_key: String,
    /// Free text identifying the host, e.g. its device id. Not empty.
    pub key_id: String,
    /// The host names and addresses clients may reach it by. At least one.
    pub principals: Vec<String>,
    /// When the certificate is valid.
    pub validity: Validity,
    /// The serial number, not 0.
    pub serial: u64,
}

/// A request reduced to what goes into the certificate, checked.
#[derive(Debug)]
pub(crate) struct Checked {
    pub key: PublicKey,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    pub serial: u64,
    pub critical_options: Vec<(&'static str, String)>,
    pub extensions: Vec<(String, String)>,
}

impl UserCertRequest {
    pub(crate) fn check(&self) -> Result<Checked, Error> {
        let mut checked = check_common(
            &self.public_key,
            &self.key_id,
            &self.principals,
            &self.validity,
            self.serial,
        )?;
        for (name, value) in &self.extensions {
            let bad = |reason| Error::InvalidExtension {
                name: name.clone(),
                reason,
            };
            if name.is_empty() {
                return Err(bad("the name is empty"));
            }
            if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad("the name has white space or control characters"));
            }
            if value.contains('\0') {
                return Err(bad("the value has a NUL character"));
            }
            checked.extensions.push((name.clone(), value.clone()));
        }
        checked.critical_options = self.critical_options.to_pairs()?;
        Ok(checked)
    }
}

impl HostCertRequest {
    pub(crate) fn check(&self) -> Result<Checked, Error> {
        check_common(
            &self.public_key,
            &self.key_id,
            &self.principals,
            &self.validity,
            self.serial,
        )
    }
}

fn check_common(
    public_key: &str,
    key_id: &str,
    principals: &[String],
    validity: &Validity,
    serial: u64,
) -> Result<Checked, Error> {
    let key = PublicKey::from_openssh(public_key)?;
    key.check_certifiable()?;
    if key_id.is_empty() {
        return Err(Error::InvalidKeyId {
            key_id: key_id.to_owned(),
            reason: "it is empty",
        });
    }
    if key_id.chars().any(char::is_control) {
        return Err(Error::InvalidKeyId {
            key_id: key_id.to_owned(),
            reason: "it has control characters",
        });
    }
    if principals.is_empty() {
        return Err(Error::NoPrincipals);
    }
    for principal in principals {
        let bad = |reason| Error::InvalidPrincipal {
            principal: principal.clone(),
            reason,
        };
        if principal.is_empty() {
            return Err(bad("it is empty"));
        }
        if principal.contains(',') {
            return Err(bad("OpenSSH separates principals with commas"));
        }
        if principal
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("it has white space or control characters"));
        }
    }
    if serial == 0 {
        return Err(Error::ZeroSerial);
    }
    let (valid_after, valid_before) = validity.unix_seconds()?;
    Ok(Checked {
        key,
        key_id: key_id.to_owned(),
        principals: principals.to_vec(),
        valid_after,
        valid_before,
        serial,
        critical_options: Vec::new(),
        extensions: Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test should fail loudly")]
mod tests {
    use super::*;

    const DSA: &str = include_str!("../tests/fixtures/dsa.pub");
    const RSA1024: &str = include_str!("../tests/fixtures/rsa1024.pub");
    const RSA2048: &str = include_str!("../tests/fixtures/rsa2048.pub");
    const ECDSA384: &str = include_str!("../tests/fixtures/ecdsa384.pub");
    const SK_ED25519: &str = include_str!("../tests/fixtures/sk-ed25519.pub");

    fn user(key: &str) -> UserCertRequest {
        UserCertRequest::new(
            key,
            "alice@acme",
            vec!["alice".into()],
            Validity::starting_at(
                UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                Duration::from_secs(3600),
            ),
            1,
        )
    }

    fn host(key: &str) -> HostCertRequest {
        HostCertRequest {
            public_key: key.into(),
            key_id: "dev-1".into(),
            principals: vec!["dev-1.acme.watchgrid".into(), "100.64.0.2".into()],
            validity: Validity::starting_at(
                UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                Duration::from_secs(3600),
            ),
            serial: 1,
        }
    }

    /// Each case changes one thing in a valid request and names the error it must give, or
    /// `None` when the request must pass.
    #[test]
    fn requests_are_checked() {
        let ed25519 = crate::CaKey::generate("subject")
            .unwrap()
            .public_key_openssh();
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        type Case = (
            &'static str,
            Box<dyn Fn(&mut UserCertRequest, &mut HostCertRequest)>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("valid as is", Box::new(|_, _| {}), None),
            ("rsa 2048", Box::new(|u, h| { u.public_key = RSA2048.into(); h.public_key = RSA2048.into(); }), None),
            ("ecdsa 384", Box::new(|u, h| { u.public_key = ECDSA384.into(); h.public_key = ECDSA384.into(); }), None),
            (
                "dsa",
                Box::new(|u, h| { u.public_key = DSA.into(); h.public_key = DSA.into(); }),
                Some("unsupported key type ssh-dss: DSA keys are obsolete; the CA certifies ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa keys of at least 2048 bits"),
            ),
            (
                "rsa 1024",
                Box::new(|u, h| { u.public_key = RSA1024.into(); h.public_key = RSA1024.into(); }),
                Some("unsupported key type ssh-rsa: RSA key of 1024 bits is too short (at least 2048)"),
            ),
            (
                "fido",
                Box::new(|u, h| { u.public_key = SK_ED25519.into(); h.public_key = SK_ED25519.into(); }),
                Some("unsupported key type sk-ssh-ed25519@openssh.com: FIDO security-key keys are not certified"),
            ),
            (
                "garbage key",
                Box::new(|u, h| { u.public_key = "ssh-ed25519 AAAA".into(); h.public_key = "ssh-ed25519 AAAA".into(); }),
                Some("invalid public key: ssh-ed25519: "),
            ),
            ("no principals", Box::new(|u, h| { u.principals.clear(); h.principals.clear(); }), Some("a certificate needs at least one principal")),
            ("empty principal", Box::new(|u, h| { u.principals.push(String::new()); h.principals.push(String::new()); }), Some("invalid principal \"\": it is empty")),
            (
                "comma in principal",
                Box::new(|u, h| { u.principals = vec!["a,b".into()]; h.principals = vec!["a,b".into()]; }),
                Some("invalid principal \"a,b\": OpenSSH separates principals with commas"),
            ),
            (
                "space in principal",
                Box::new(|u, h| { u.principals = vec!["a b".into()]; h.principals = vec!["a b".into()]; }),
                Some("invalid principal \"a b\": it has white space or control characters"),
            ),
            ("empty key id", Box::new(|u, h| { u.key_id.clear(); h.key_id.clear(); }), Some("invalid key id \"\": it is empty")),
            ("control in key id", Box::new(|u, h| { u.key_id = "a\nb".into(); h.key_id = "a\nb".into(); }), Some("invalid key id \"a\\nb\": it has control characters")),
            ("serial 0", Box::new(|u, h| { u.serial = 0; h.serial = 0; }), Some("serial 0 is not allowed")),
            (
                "empty window",
                Box::new(move |u, h| { u.validity = Validity::new(t(100), t(100)); h.validity = Validity::new(t(100), t(100)); }),
                Some("invalid validity window: valid_before (100) must be later than valid_after (100)"),
            ),
            (
                "reversed window",
                Box::new(move |u, h| { u.validity = Validity::new(t(100), t(99)); h.validity = Validity::new(t(100), t(99)); }),
                Some("invalid validity window: valid_before (99) must be later than valid_after (100)"),
            ),
        ];
        for (name, change, expect) in cases {
            let mut u = user(&ed25519);
            let mut h = host(&ed25519);
            change(&mut u, &mut h);
            for (kind, got) in [
                ("user", u.check().map(|_| ())),
                ("host", h.check().map(|_| ())),
            ] {
                match (got, expect) {
                    (Ok(()), None) => {}
                    (Err(e), Some(want)) => {
                        assert!(e.to_string().starts_with(want), "{name} ({kind}): {e}")
                    }
                    (got, want) => panic!("{name} ({kind}): got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn user_only_checks() {
        let ed25519 = crate::CaKey::generate("subject")
            .unwrap()
            .public_key_openssh();
        for (change, expect) in [
            (
                Box::new(|u: &mut UserCertRequest| {
                    u.extensions.insert(String::new(), String::new());
                }) as Box<dyn Fn(&mut UserCertRequest)>,
                "invalid extension \"\": the name is empty",
            ),
            (
                Box::new(|u: &mut UserCertRequest| {
                    u.extensions.insert("a b".into(), String::new());
                }),
                "invalid extension \"a b\": the name has white space",
            ),
            (
                Box::new(|u: &mut UserCertRequest| {
                    u.extensions.insert("x@acme".into(), "a\0".into());
                }),
                "invalid extension \"x@acme\": the value has a NUL",
            ),
            (
                Box::new(|u: &mut UserCertRequest| {
                    u.critical_options.source_address = vec!["10.0.0.0/40".into()];
                }),
                "invalid critical option source-address: \"10.0.0.0/40\": the prefix length",
            ),
        ] {
            let mut u = user(&ed25519);
            change(&mut u);
            let err = u.check().unwrap_err().to_string();
            assert!(err.starts_with(expect), "{err}");
        }
    }

    #[test]
    fn starting_at_allows_for_clock_skew() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = Validity::starting_at(now, Duration::from_secs(3600));
        assert_eq!(
            v.unix_seconds().unwrap(),
            (1_700_000_000 - 300, 1_700_003_600)
        );
        // Near the epoch the start is clamped rather than underflowing.
        let v = Validity::starting_at(UNIX_EPOCH + Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(v.unix_seconds().unwrap(), (0, 15));
    }

    #[test]
    fn validity_windows() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        for (after, before, expect) in [
            (t(10), t(11), Ok((10, 11))),
            (
                t(10),
                t(10),
                Err("valid_before (10) must be later than valid_after (10)"),
            ),
            (
                t(11),
                t(10),
                Err("valid_before (10) must be later than valid_after (11)"),
            ),
            // Same second once the fractions are dropped: empty.
            (
                t(10),
                t(10) + Duration::from_millis(900),
                Err("valid_before (10) must be later"),
            ),
            (
                UNIX_EPOCH - Duration::from_secs(1),
                t(10),
                Err("valid_after is before 1970"),
            ),
        ] {
            let got = Validity::new(after, before).unix_seconds();
            match (got, expect) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
                (got, want) => panic!("{after:?}..{before:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn source_addresses() {
        for (entry, ok) in [
            ("192.0.2.7", true),
            ("10.0.0.0/8", true),
            ("0.0.0.0/0", true),
            ("2001:db8::/32", true),
            ("::1", true),
            ("::1/128", true),
            ("10.0.0.0/33", false),
            ("2001:db8::/129", false),
            ("10.0.0.0/", false),
            ("10.0.0.0/+8", false),
            ("example.com", false),
            ("*", false),
            ("", false),
        ] {
            assert_eq!(check_source_address(entry).is_ok(), ok, "{entry:?}");
        }
    }

    #[test]
    fn critical_options_render_in_openssh_form() {
        let opts = CriticalOptions {
            force_command: Some("/usr/bin/true".into()),
            source_address: vec!["10.0.0.0/8".into(), "192.0.2.7".into()],
        };
        assert_eq!(
            opts.to_pairs().unwrap(),
            [
                ("force-command", "/usr/bin/true".to_owned()),
                ("source-address", "10.0.0.0/8,192.0.2.7".to_owned())
            ]
        );
        assert_eq!(CriticalOptions::default().to_pairs().unwrap(), []);
        for (opts, expect) in [
            (
                CriticalOptions {
                    force_command: Some(" ".into()),
                    ..Default::default()
                },
                "invalid critical option force-command: the command is empty",
            ),
            (
                CriticalOptions {
                    force_command: Some("a\nb".into()),
                    ..Default::default()
                },
                "invalid critical option force-command: the command has control characters",
            ),
            (
                CriticalOptions {
                    source_address: vec!["10.0.0.1".into(), "nope".into()],
                    ..Default::default()
                },
                "invalid critical option source-address: \"nope\": not an IP address",
            ),
        ] {
            let err = opts.to_pairs().unwrap_err().to_string();
            assert!(err.starts_with(expect), "{err}");
        }
    }
}
