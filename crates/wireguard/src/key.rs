//! WireGuard keys: Curve25519 private and public keys and preshared keys, base64 as in `wg`.
//!
//! Private and preshared keys are wiped from memory on drop and never printed: their `Debug`
//! says `***`, and they have no `Display`; `to_base64()` is the one explicit way out.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use boringtun::x25519;
use zeroize::Zeroize;

use crate::Error;

/// Length of every WireGuard key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a key in base64, as `wg` prints it (with one `=` of padding).
pub const KEY_BASE64_LEN: usize = 44;

/// A Curve25519 private key (32 bytes). Generated clamped, like `wg genkey`.
#[derive(Clone)]
pub struct PrivateKey([u8; KEY_LEN]);

/// A Curve25519 public key (32 bytes); `Display` and `FromStr` use base64 (44 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

/// A symmetric preshared key (32 bytes), an optional extra layer in a peer's handshake.
#[derive(Clone)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PrivateKey {
    /// A new random key from the operating system's generator, clamped as `wg genkey` does.
    pub fn generate() -> Self {
        let mut bytes = random_bytes();
        bytes[0] &= 248;
        bytes[31] = (bytes[31] & 127) | 64;
        PrivateKey(bytes)
    }

    /// The key with these bytes (as they are; Curve25519 clamps when it uses them).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PrivateKey(bytes)
    }

    /// The public key that peers configure for this private key.
    pub fn public_key(&self) -> PublicKey {
        let secret = x25519::StaticSecret::from(self.0);
        PublicKey(x25519::PublicKey::from(&secret).to_bytes())
    }

    /// The key in base64, as in a wg-quick file. Handle the result as a secret.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// The raw 32 bytes, for the kernel's netlink attribute. Handle them as a secret.
    pub(crate) fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key in lowercase hex, as the UAPI socket wants it.
    pub(crate) fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

impl FromStr for PrivateKey {
    type Err = Error;

    /// Parses base64; the error never repeats the text, which may be a real key.
    fn from_str(s: &str) -> Result<Self, Error> {
        decode_base64(s.trim())
            .map(PrivateKey)
            .map_err(|reason| Error::InvalidKey(format!("private key: {reason}")))
    }
}

impl PresharedKey {
    /// A new random preshared key, like `wg genpsk`.
    pub fn generate() -> Self {
        PresharedKey(random_bytes())
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PresharedKey(bytes)
    }

    /// The key in base64, as in a wg-quick file. Handle the result as a secret.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
}

impl Drop for PresharedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for PresharedKey {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for PresharedKey {}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(***)")
    }
}

impl FromStr for PresharedKey {
    type Err = Error;

    /// Parses base64; the error never repeats the text.
    fn from_str(s: &str) -> Result<Self, Error> {
        decode_base64(s.trim())
            .map(PresharedKey)
            .map_err(|reason| Error::InvalidKey(format!("preshared key: {reason}")))
    }
}

impl PublicKey {
    /// The key with these bytes. Every 32-byte string is a usable Curve25519 public key.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key in base64 (the same as `to_string()`).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// The key in lowercase hex, as the UAPI socket writes it.
    pub(crate) fn to_hex(self) -> String {
        hex_encode(&self.0)
    }

    /// Parses the UAPI's 64 hex digits.
    pub(crate) fn from_hex(s: &str) -> Result<Self, Error> {
        hex_decode(s)
            .map(PublicKey)
            .ok_or_else(|| Error::InvalidKey(format!("not 64 hex digits: {s:?}")))
    }
}

impl From<[u8; KEY_LEN]> for PublicKey {
    fn from(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        decode_base64(s)
            .map(PublicKey)
            .map_err(|reason| Error::InvalidKey(format!("public key {s:?}: {reason}")))
    }
}

fn decode_base64(s: &str) -> Result<[u8; KEY_LEN], &'static str> {
    if s.len() != KEY_BASE64_LEN {
        return Err("expected 44 characters of base64");
    }
    let mut out = [0u8; KEY_LEN];
    // A 32-byte buffer for a 44-character input: decode_slice needs room for 33 bytes before it
    // has seen the padding, so decode into a larger scratch buffer and copy.
    let mut scratch = [0u8; KEY_LEN + 3];
    let result = match BASE64.decode_slice(s, &mut scratch) {
        Ok(KEY_LEN) => {
            out.copy_from_slice(&scratch[..KEY_LEN]);
            Ok(out)
        }
        Ok(_) => Err("does not decode to 32 bytes"),
        Err(_) => Err("not valid base64"),
    };
    scratch.zeroize();
    result
}

fn random_bytes() -> [u8; KEY_LEN] {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; KEY_LEN];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}

fn constant_time_eq(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

pub(crate) fn hex_decode(s: &str) -> Option<[u8; KEY_LEN]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != KEY_LEN * 2 {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use super::*;

    // The example key from wg(8); `echo KEY | wg pubkey` (wireguard-tools v1.0.20210914) prints
    // the public key below.
    const WG_PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const WG_PUBLIC: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

    #[test]
    fn public_key_matches_wg_pubkey() {
        let private: PrivateKey = WG_PRIVATE.parse().unwrap();
        assert_eq!(private.public_key().to_string(), WG_PUBLIC);
        assert_eq!(private.to_base64(), WG_PRIVATE);
    }

    #[test]
    fn generated_keys_are_clamped_distinct_and_round_trip() {
        let a = PrivateKey::generate();
        let b = PrivateKey::generate();
        assert_ne!(a, b);
        assert_ne!(a.public_key(), b.public_key());
        assert_eq!(a.0[0] & 7, 0);
        assert_eq!(a.0[31] & 0xc0, 0x40);
        let text = a.to_base64();
        assert_eq!(text.len(), KEY_BASE64_LEN);
        let back: PrivateKey = text.parse().unwrap();
        assert_eq!(back, a);
        assert_eq!(back.public_key(), a.public_key());

        let public = a.public_key();
        let parsed: PublicKey = public.to_string().parse().unwrap();
        assert_eq!(parsed, public);
        assert_eq!(PublicKey::from_hex(&public.to_hex()).unwrap(), public);

        let psk = PresharedKey::generate();
        assert_eq!(psk.to_base64().parse::<PresharedKey>().unwrap(), psk);
    }

    #[test]
    fn secrets_do_not_print() {
        let key: PrivateKey = WG_PRIVATE.parse().unwrap();
        assert_eq!(format!("{key:?}"), "PrivateKey(***)");
        assert_eq!(
            format!("{:?}", PresharedKey::generate()),
            "PresharedKey(***)"
        );
        assert_eq!(
            format!("{:?}", key.public_key()),
            format!("PublicKey({WG_PUBLIC})")
        );
    }

    #[test]
    fn bad_keys_are_rejected_without_echoing_secrets() {
        for bad in [
            "",
            "abc",
            "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm=", // 43 characters
            "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk==", // 45 characters
            "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm!=", // not base64
        ] {
            let err = bad.parse::<PrivateKey>().unwrap_err();
            assert!(matches!(err, Error::InvalidKey(_)), "{bad:?}: {err}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
            assert!(bad.parse::<PublicKey>().is_err());
        }
        assert!(PublicKey::from_hex("00").is_err());
        assert!(PublicKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn hex_matches_the_uapi_form() {
        let key = PublicKey::from_bytes([0xab; 32]);
        assert_eq!(key.to_hex(), "ab".repeat(32));
        assert_eq!(PublicKey::from_hex(&"AB".repeat(32)).unwrap(), key);
    }
}
