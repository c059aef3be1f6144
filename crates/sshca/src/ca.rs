//! The CA key (`CaKey`): an Ed25519 key in OpenSSH's private-key format that signs user and
//! host certificates.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::cert::{Checked, HostCertRequest, UserCertRequest};
use crate::fs::write_atomic;
use crate::key::PublicKey;
use crate::Error;

/// An Ed25519 certificate authority key. Its `Debug` shows the fingerprint, never the key.
pub struct CaKey {
    key: PrivateKey,
}

impl CaKey {
    /// A new random Ed25519 key from the operating system's generator. `comment` is kept in
    /// the key files (e.g. `watchgrid ca_acme_user`).
    pub fn generate(comment: &str) -> Result<CaKey, Error> {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|e| Error::internal("generating the CA key", e))?;
        key.set_comment(comment);
        Ok(CaKey { key })
    }

    /// Parses an unencrypted Ed25519 private key in OpenSSH format
    /// (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn from_openssh(text: &str) -> Result<CaKey, Error> {
        let key = PrivateKey::from_openssh(text)
            .map_err(|e| Error::CaKey(format!("not an OpenSSH private key: {e}")))?;
        if key.is_encrypted() {
            return Err(Error::CaKey(
                "the private key is encrypted with a passphrase".into(),
            ));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(Error::CaKey(format!(
                "the private key is {}; CA keys are ssh-ed25519",
                key.algorithm().as_str()
            )));
        }
        Ok(CaKey { key })
    }

    /// The private key in OpenSSH format; the returned text is wiped from memory on drop.
    pub fn to_openssh(&self) -> Result<zeroize::Zeroizing<String>, Error> {
        self.key
            .to_openssh(LineEnding::LF)
            .map_err(|e| Error::internal("encoding the CA key", e))
    }

    /// Reads the private key file at `path`, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<CaKey, Error> {
        let meta = fs::metadata(path).map_err(Error::io(path))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(Error::io(path))?);
        CaKey::from_openssh(&text).map_err(|e| match e {
            Error::CaKey(msg) => Error::CaKey(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Writes `dir/name` (the private key, mode 0600) and `dir/name.pub` (the public key line,
    /// 0644), each atomically (temporary file, fsync, rename, fsync of `dir`), replacing files
    /// of those names. `dir` must exist. Returns the private key's path.
    pub fn save(&self, dir: &Path, name: &str) -> Result<PathBuf, Error> {
        if name.is_empty()
            || name.starts_with('.')
            || name.contains('/')
            || name.contains('\0')
            || name.ends_with(".pub")
        {
            return Err(Error::CaKey(format!(
                "{name:?} is not a plain file name for a key"
            )));
        }
        let private = dir.join(name);
        let public = dir.join(format!("{name}.pub"));
        write_atomic(&private, self.to_openssh()?.as_bytes(), 0o600)?;
        write_atomic(
            &public,
            format!("{}\n", self.public_key_openssh()).as_bytes(),
            0o644,
        )?;
        Ok(private)
    }

    /// The CA's public key, e.g. for a KRL or `TrustedUserCAKeys`.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.public_key().clone())
    }

    /// The public key as one OpenSSH line, `ssh-ed25519 AAAA... comment`, as in the `.pub`
    /// file, `TrustedUserCAKeys` and (after `@cert-authority <hosts>`) `known_hosts`.
    pub fn public_key_openssh(&self) -> String {
        self.public_key().to_openssh()
    }

    /// The SHA-256 fingerprint exactly as `ssh-keygen -lf` prints it: `SHA256:` and 43
    /// characters of unpadded base64.
    pub fn fingerprint(&self) -> String {
        self.public_key().fingerprint()
    }

    /// Signs a user certificate and returns it as one OpenSSH line
    /// (`ssh-ed25519-cert-v01@openssh.com AAAA... comment`, the key's comment), the content of
    /// an `id_*-cert.pub` file.
    pub fn sign_user(&self, req: &UserCertRequest) -> Result<String, Error> {
        self.sign(CertType::User, req.check()?)
    }

    /// Signs a host certificate (no extensions, no critical options) and returns it as one
    /// OpenSSH line, the content of an `ssh_host_*_key-cert.pub` file.
    pub fn sign_host(&self, req: &HostCertRequest) -> Result<String, Error> {
        self.sign(CertType::Host, req.check()?)
    }

    fn sign(&self, cert_type: CertType, c: Checked) -> Result<String, Error> {
        let build = || -> ssh_key::Result<String> {
            let mut b = Builder::new_with_random_nonce(
                &mut OsRng,
                c.key.0.key_data().clone(),
                c.valid_after,
                c.valid_before,
            )?;
            b.serial(c.serial)?
                .key_id(c.key_id.as_str())?
                .cert_type(cert_type)?
                .comment(c.key.comment())?;
            for principal in &c.principals {
                b.valid_principal(principal.as_str())?;
            }
            for (name, value) in &c.critical_options {
                b.critical_option(*name, value.as_str())?;
            }
            for (name, value) in &c.extensions {
                b.extension(name.as_str(), value.as_str())?;
            }
            b.sign(&self.key)?.to_openssh()
        };
        build().map_err(|e| Error::internal("signing the certificate", e))
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaKey({})", self.fingerprint())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test should fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaKey::generate("watchgrid ca_acme_user").unwrap();
        let path = ca.save(dir.path(), "ca_acme_user").unwrap();
        assert_eq!(path, dir.path().join("ca_acme_user"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        let pub_path = dir.path().join("ca_acme_user.pub");
        assert_eq!(mode(&pub_path), 0o644);
        assert_eq!(
            fs::read_to_string(&pub_path).unwrap(),
            format!("{}\n", ca.public_key_openssh())
        );
        assert!(ca.public_key_openssh().ends_with(" watchgrid ca_acme_user"));

        let loaded = CaKey::load(&path).unwrap();
        assert_eq!(loaded.fingerprint(), ca.fingerprint());
        assert_eq!(
            format!("{loaded:?}"),
            format!("CaKey({})", ca.fingerprint())
        );
        assert!(ca.fingerprint().starts_with("SHA256:"));
        assert_eq!(ca.fingerprint().len(), "SHA256:".len() + 43);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = CaKey::load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "permissions 0640 are too open for a CA private key (must be 0600 or stricter)"
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_bad_names_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaKey::generate("").unwrap();
        for name in ["", ".hidden", "a/b", "x.pub"] {
            let err = ca.save(dir.path(), name).unwrap_err().to_string();
            assert!(err.contains("is not a plain file name"), "{name:?}: {err}");
        }
        for (text, expect) in [
            ("", "CA key: not an OpenSSH private key"),
            ("ssh-ed25519 AAAA", "CA key: not an OpenSSH private key"),
        ] {
            let err = CaKey::from_openssh(text).unwrap_err().to_string();
            assert!(err.starts_with(expect), "{err}");
        }
        let err = CaKey::load(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
