//! OpenSSH key revocation lists (`Krl`): the binary format of OpenSSH's `PROTOCOL.krl`, which
//! `sshd`'s `RevokedKeys`, `ssh`'s `RevokedHostKeys` and `ssh-keygen -Q` read.
//!
//! The file is a header (magic `SSHKRL\n\0`, format version 1, the KRL's version, generation
//! time, flags, reserved, comment) and sections. This writer emits, in order: one certificate
//! section per CA (a serial-list subsection with the single serials, one serial-range
//! subsection per range of two or more, a key-ID subsection), then one explicit-key section.
//! Output is canonical: the same revocations give the same bytes (for a fixed generation time).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::key::PublicKey;
use crate::Error;

const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_KEY_ID: u8 = 0x23;

/// A key revocation list being built. Revocations only accumulate; a server rebuilds the list
/// from its records, with a higher `version`, whenever one changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Krl {
    version: u64,
    comment: String,
    generated_at: Option<u64>,
    /// Revoked certificates by the CA's public key blob.
    certs: BTreeMap<Vec<u8>, CertRevocations>,
    /// Revoked plain keys, as public key blobs.
    keys: BTreeSet<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct CertRevocations {
    /// Disjoint, non-adjacent serial ranges: first serial to last serial, inclusive.
    serials: BTreeMap<u64, u64>,
    key_ids: BTreeSet<String>,
}

impl CertRevocations {
    fn insert_range(&mut self, mut lo: u64, mut hi: u64) {
        // Ranges that overlap or abut [lo, hi] start at or before hi + 1 and end at or after
        // lo - 1; ranges are disjoint and sorted, so their ends are sorted too.
        let touching: Vec<u64> = self
            .serials
            .range(..=hi.saturating_add(1))
            .rev()
            .take_while(|(_, &end)| end.saturating_add(1) >= lo)
            .map(|(&start, _)| start)
            .collect();
        for start in touching {
            if let Some(end) = self.serials.remove(&start) {
                lo = lo.min(start);
                hi = hi.max(end);
            }
        }
        self.serials.insert(lo, hi);
    }
}

impl Krl {
    /// An empty list. `version` should grow each time the list changes (OpenSSH shows it but
    /// does not compare it); `comment` is free text without NUL characters.
    pub fn new(version: u64, comment: &str) -> Result<Krl, Error> {
        if comment.contains('\0') {
            return Err(Error::InvalidRevocation(
                "the KRL comment has a NUL character".into(),
            ));
        }
        Ok(Krl {
            version,
            comment: comment.to_owned(),
            generated_at: None,
            certs: BTreeMap::new(),
            keys: BTreeSet::new(),
        })
    }

    /// Sets the generation time written in the header; without it, [`Krl::to_bytes`] uses the
    /// current time.
    pub fn set_generated_at(&mut self, at: SystemTime) {
        self.generated_at = Some(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    }

    /// Revokes the certificate with `serial` issued by `ca`. Serial 0 cannot be revoked by
    /// serial (OpenSSH skips serial checks for it); revoke such a certificate by key ID.
    pub fn revoke_serial(&mut self, ca: &PublicKey, serial: u64) -> Result<(), Error> {
        self.revoke_serial_range(ca, serial, serial)
    }

    /// Revokes every certificate issued by `ca` with a serial from `first` to `last`, both
    /// included.
    pub fn revoke_serial_range(
        &mut self,
        ca: &PublicKey,
        first: u64,
        last: u64,
    ) -> Result<(), Error> {
        if first == 0 {
            return Err(Error::InvalidRevocation(
                "serial 0 cannot be revoked by serial".into(),
            ));
        }
        if first > last {
            return Err(Error::InvalidRevocation(format!(
                "empty serial range {first}..={last}"
            )));
        }
        self.certs
            .entry(ca.blob())
            .or_default()
            .insert_range(first, last);
        Ok(())
    }

    /// Revokes every certificate issued by `ca` with this key ID.
    pub fn revoke_key_id(&mut self, ca: &PublicKey, key_id: &str) -> Result<(), Error> {
        if key_id.is_empty() || key_id.contains('\0') {
            return Err(Error::InvalidRevocation(format!(
                "key id {key_id:?} is empty or has a NUL character"
            )));
        }
        self.certs
            .entry(ca.blob())
            .or_default()
            .key_ids
            .insert(key_id.to_owned());
        Ok(())
    }

    /// Revokes a plain public key, and with it every certificate for that key, whoever
    /// signed it.
    pub fn revoke_key(&mut self, key: &PublicKey) {
        self.keys.insert(key.blob());
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty() && self.keys.is_empty()
    }

    /// The KRL file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let generated_at = self.generated_at.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&generated_at.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes()); // flags: none defined
        put_string(&mut out, b""); // reserved
        put_string(&mut out, self.comment.as_bytes());

        for (ca, revoked) in &self.certs {
            let mut section = Vec::new();
            put_string(&mut section, ca);
            put_string(&mut section, b""); // reserved

            let mut singles = Vec::new();
            let mut ranges = Vec::new();
            for (&lo, &hi) in &revoked.serials {
                if lo == hi {
                    singles.extend_from_slice(&lo.to_be_bytes());
                } else {
                    ranges.push((lo, hi));
                }
            }
            if !singles.is_empty() {
                section.push(CERT_SERIAL_LIST);
                put_string(&mut section, &singles);
            }
            for (lo, hi) in ranges {
                let mut sub = Vec::with_capacity(16);
                sub.extend_from_slice(&lo.to_be_bytes());
                sub.extend_from_slice(&hi.to_be_bytes());
                section.push(CERT_SERIAL_RANGE);
                put_string(&mut section, &sub);
            }
            if !revoked.key_ids.is_empty() {
                let mut sub = Vec::new();
                for key_id in &revoked.key_ids {
                    put_string(&mut sub, key_id.as_bytes());
                }
                section.push(CERT_KEY_ID);
                put_string(&mut section, &sub);
            }

            out.push(SECTION_CERTIFICATES);
            put_string(&mut out, &section);
        }

        if !self.keys.is_empty() {
            let mut section = Vec::new();
            for blob in &self.keys {
                put_string(&mut section, blob);
            }
            out.push(SECTION_EXPLICIT_KEY);
            put_string(&mut out, &section);
        }
        out
    }
}

/// An SSH `string`: a big-endian u32 length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every string here is far below 4 GiB: keys, key IDs, comments, sections of them.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test should fail loudly")]
mod tests {
    use super::*;

    fn ranges(ops: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut r = CertRevocations::default();
        for &(lo, hi) in ops {
            r.insert_range(lo, hi);
        }
        r.serials.into_iter().collect()
    }

    #[test]
    fn serial_ranges_merge_when_they_overlap_or_touch() {
        for (ops, expect) in [
            (&[(5, 5)][..], &[(5, 5)][..]),
            (&[(5, 5), (5, 5)], &[(5, 5)]),
            (&[(5, 5), (7, 7)], &[(5, 5), (7, 7)]),
            (&[(5, 5), (6, 6)], &[(5, 6)]),
            (&[(6, 6), (5, 5)], &[(5, 6)]),
            (&[(1, 1), (3, 3), (5, 5), (2, 4)], &[(1, 5)]),
            (&[(1, 1), (10, 20), (15, 30)], &[(1, 1), (10, 30)]),
            (&[(10, 20), (1, 9)], &[(1, 20)]),
            (&[(10, 20), (12, 13)], &[(10, 20)]),
            (
                &[(u64::MAX, u64::MAX), (u64::MAX - 1, u64::MAX - 1)],
                &[(u64::MAX - 1, u64::MAX)],
            ),
            (&[(1, u64::MAX), (7, 8)], &[(1, u64::MAX)]),
        ] {
            assert_eq!(ranges(ops), expect, "{ops:?}");
        }
    }

    #[test]
    fn refuses_what_openssh_would_refuse() {
        let ca = crate::CaKey::generate("").unwrap().public_key();
        let mut krl = Krl::new(1, "").unwrap();
        for (result, expect) in [
            (krl.revoke_serial(&ca, 0), "serial 0 cannot be revoked"),
            (
                krl.revoke_serial_range(&ca, 0, 5),
                "serial 0 cannot be revoked",
            ),
            (
                krl.revoke_serial_range(&ca, 6, 5),
                "empty serial range 6..=5",
            ),
            (krl.revoke_key_id(&ca, ""), "is empty or has a NUL"),
            (krl.revoke_key_id(&ca, "a\0b"), "is empty or has a NUL"),
        ] {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
        assert!(krl.is_empty());
        assert!(Krl::new(1, "a\0").is_err());
    }

    #[test]
    fn header_layout() {
        let mut krl = Krl::new(7, "hi").unwrap();
        krl.set_generated_at(UNIX_EPOCH + std::time::Duration::from_secs(0x0102));
        let bytes = krl.to_bytes();
        let mut want = b"SSHKRL\n\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 2, b'h', b'i']);
        assert_eq!(bytes, want);
    }

    #[test]
    fn certificate_section_layout() {
        let ca = crate::CaKey::generate("").unwrap().public_key();
        let mut krl = Krl::new(1, "").unwrap();
        krl.set_generated_at(UNIX_EPOCH);
        krl.revoke_serial(&ca, 9).unwrap();
        krl.revoke_serial(&ca, 3).unwrap();
        krl.revoke_serial_range(&ca, 20, 29).unwrap();
        krl.revoke_key_id(&ca, "bob").unwrap();
        let bytes = krl.to_bytes();
        let header_len = 8 + 4 + 8 + 8 + 8 + 4 + 4;
        let body = &bytes[header_len..];
        assert_eq!(body[0], SECTION_CERTIFICATES);

        let mut want = Vec::new();
        put_string(&mut want, &ca.blob());
        put_string(&mut want, b"");
        want.push(CERT_SERIAL_LIST);
        put_string(&mut want, &[0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9]);
        want.push(CERT_SERIAL_RANGE);
        put_string(
            &mut want,
            &[0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 29],
        );
        want.push(CERT_KEY_ID);
        put_string(&mut want, &[0, 0, 0, 3, b'b', b'o', b'b']);
        let mut section = vec![SECTION_CERTIFICATES];
        put_string(&mut section, &want);
        assert_eq!(body, section);
    }
}
