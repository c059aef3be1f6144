//! Plain SSH public keys (`PublicKey`), parsed from OpenSSH lines, and the policy for which
//! keys the CA certifies.

use std::fmt;

use ssh_key::public::KeyData;
use ssh_key::HashAlg;

use crate::Error;

/// The smallest RSA modulus the CA certifies, in bits.
pub(crate) const MIN_RSA_BITS: usize = 2048;

const ACCEPTED: &str =
    "the CA certifies ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa keys \
                        of at least 2048 bits";

/// A plain (not certificate) SSH public key of any type OpenSSH knows: a device's or user's key,
/// or a CA's public key named in a KRL.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(pub(crate) ssh_key::PublicKey);

impl PublicKey {
    /// Parses one OpenSSH public key line, `<type> <base64> [comment]`, as found in `.pub`
    /// files and `authorized_keys` (without options). Certificates are refused: this is a key.
    pub fn from_openssh(line: &str) -> Result<PublicKey, Error> {
        let line = line.trim();
        let kind = line.split_whitespace().next().unwrap_or("");
        if kind.is_empty() {
            return Err(Error::InvalidPublicKey("empty".into()));
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Error::InvalidPublicKey(
                "line breaks or control characters in the key line".into(),
            ));
        }
        if kind.ends_with("-cert-v01@openssh.com") {
            return Err(Error::InvalidPublicKey(format!(
                "{kind} is a certificate, not a public key"
            )));
        }
        let key = ssh_key::PublicKey::from_openssh(line)
            .map_err(|e| Error::InvalidPublicKey(format!("{kind}: {e}")))?;
        Ok(PublicKey(key))
    }

    /// The key as one OpenSSH line, `<type> <base64> [comment]`.
    pub fn to_openssh(&self) -> String {
        // Encoding a key that was decoded or generated cannot fail.
        self.0.to_openssh().unwrap_or_default()
    }

    /// The SHA-256 fingerprint as `ssh-keygen -lf` prints it: `SHA256:` and unpadded base64.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The OpenSSH name of the key's type, e.g. `ssh-ed25519`.
    pub fn algorithm(&self) -> String {
        self.0.algorithm().as_str().to_owned()
    }

    /// The comment of the line the key was parsed from (may be empty).
    pub fn comment(&self) -> &str {
        self.0.comment()
    }

    /// The key's wire encoding (the blob inside the base64), as KRLs list keys.
    pub(crate) fn blob(&self) -> Vec<u8> {
        self.0.to_bytes().unwrap_or_default()
    }

    /// Refuses keys the CA does not certify: anything but Ed25519, ECDSA on the NIST curves,
    /// and RSA of at least [`MIN_RSA_BITS`] bits.
    pub(crate) fn check_certifiable(&self) -> Result<(), Error> {
        let refuse = |reason: String| Error::UnsupportedKey {
            algorithm: self.algorithm(),
            reason,
        };
        match self.0.key_data() {
            KeyData::Ed25519(_) | KeyData::Ecdsa(_) => Ok(()),
            KeyData::Rsa(rsa) => {
                let bits = rsa_bits(rsa.n.as_positive_bytes().unwrap_or(&[]));
                if bits >= MIN_RSA_BITS {
                    Ok(())
                } else {
                    Err(refuse(format!(
                        "RSA key of {bits} bits is too short (at least {MIN_RSA_BITS})"
                    )))
                }
            }
            KeyData::Dsa(_) => Err(refuse(format!("DSA keys are obsolete; {ACCEPTED}"))),
            KeyData::SkEd25519(_) | KeyData::SkEcdsaSha2NistP256(_) => Err(refuse(format!(
                "FIDO security-key keys are not certified; {ACCEPTED}"
            ))),
            _ => Err(refuse(ACCEPTED.to_owned())),
        }
    }
}

/// The bit length of a big-endian unsigned integer without leading zero bytes.
fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm(), self.fingerprint())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_openssh())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        PublicKey::from_openssh(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test should fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn rsa_bit_lengths() {
        for (n, bits) in [
            (&[][..], 0),
            (&[0x01][..], 1),
            (&[0x80, 0][..], 16),
            (&[0x7f, 0, 0][..], 23),
        ] {
            assert_eq!(rsa_bits(n), bits, "{n:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_public_key_line() {
        for (line, expect) in [
            ("", "invalid public key: empty"),
            ("   ", "invalid public key: empty"),
            ("ssh-ed25519", "invalid public key: ssh-ed25519: "),
            ("ssh-ed25519 !!!", "invalid public key: ssh-ed25519: "),
            (
                "ssh-ed25519 AAAA a\nssh-ed25519 AAAA b",
                "invalid public key: line breaks or control characters in the key line",
            ),
            (
                "ssh-ed25519-cert-v01@openssh.com AAAA",
                "invalid public key: ssh-ed25519-cert-v01@openssh.com is a certificate, not a public key",
            ),
        ] {
            let err = PublicKey::from_openssh(line).unwrap_err().to_string();
            assert!(err.starts_with(expect), "{line:?}: {err}");
        }
    }
}
