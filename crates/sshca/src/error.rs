//! The crate's one error type, `Error`.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the CA.
///
/// Variants up to [`Error::InvalidRevocation`] are the caller's mistake (a server maps them to
/// 422); [`Error::Io`], [`Error::InsecurePermissions`] and [`Error::CaKey`] are about the CA's
/// files; [`Error::Internal`] is a bug or an exhausted random number generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not an OpenSSH public key line (`<type> <base64> [comment]`).
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    /// A well-formed key of a type or size the CA does not certify. `algorithm` is the OpenSSH
    /// key type (e.g. `ssh-dss`, `ssh-rsa`); `reason` says what would be accepted.
    #[error("unsupported key type {algorithm}: {reason}")]
    UnsupportedKey {
        /// The OpenSSH name of the key's type.
        algorithm: String,
        /// Why it was refused, naming what is accepted.
        reason: String,
    },
    /// A certificate request without principals: OpenSSH would treat the certificate as valid
    /// for every user or host name.
    #[error("a certificate needs at least one principal")]
    NoPrincipals,
    /// A principal that is empty or has characters OpenSSH cannot carry in a principals list.
    #[error("invalid principal {principal:?}: {reason}")]
    InvalidPrincipal {
        /// The rejected principal.
        principal: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An empty key ID, or one with control characters.
    #[error("invalid key id {key_id:?}: {reason}")]
    InvalidKeyId {
        /// The rejected key ID.
        key_id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Serial 0 is OpenSSH's "no serial": such a certificate cannot be revoked by serial.
    #[error("serial 0 is not allowed: a certificate with serial 0 cannot be revoked by serial")]
    ZeroSerial,
    /// A validity window that is empty (`valid_before <= valid_after`) or outside what OpenSSH
    /// can encode (before 1970, or after year 292 billion).
    #[error("invalid validity window: {0}")]
    InvalidValidity(String),
    /// A critical option with an unusable value (e.g. a `source-address` that is not an
    /// address or CIDR block).
    #[error("invalid critical option {name}: {reason}")]
    InvalidCriticalOption {
        /// The option's name, e.g. `source-address`.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// An extension with an unusable name or value.
    #[error("invalid extension {name:?}: {reason}")]
    InvalidExtension {
        /// The extension's name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A KRL entry OpenSSH would refuse (serial 0, an empty range, a key ID with a NUL).
    #[error("invalid revocation: {0}")]
    InvalidRevocation(String),
    /// A file or name for the CA key that cannot be used: not an unencrypted Ed25519 OpenSSH
    /// private key, or a file name with a path in it.
    #[error("CA key: {0}")]
    CaKey(String),
    /// The CA private key file can be read by group or others; OpenSSH refuses such files too.
    #[error("{}: permissions {mode:04o} are too open for a CA private key (must be 0600 or stricter)", path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Encoding or signing failed inside the OpenSSH library: a bug, or no randomness.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn internal(context: &str, err: ssh_key::Error) -> Error {
        Error::Internal(format!("{context}: {err}"))
    }
}
