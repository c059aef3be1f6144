//! Watchgrid's SSH certificate authority: Ed25519 CA keys, OpenSSH user and host certificates,
//! and OpenSSH key revocation lists (KRLs).
//!
//! Architecture invariant: this crate knows nothing of HTTP, SQL, tenants or async runtimes.
//! It turns requests into OpenSSH text and bytes; the server decides who may ask, keeps serials
//! unique per tenant, stores the keys and distributes the KRL. Everything it produces is checked
//! in its tests by OpenSSH itself (`ssh-keygen -L`, `ssh-keygen -lf`, `ssh-keygen -Q`, `sshd`).
//!
//! API boundary: callers see [`CaKey`], [`PublicKey`], [`Validity`], [`UserCertRequest`],
//! [`HostCertRequest`], [`CriticalOptions`], [`Krl`] and [`Error`], and exchange keys and
//! certificates as OpenSSH text lines. The `ssh-key` crate stays inside: none of its types
//! appear in this API.
//!
//! ```
//! use std::time::Duration;
//! use watchgrid_sshca::{CaKey, Krl, UserCertRequest, Validity};
//!
//! let ca = CaKey::generate("ca_acme_user")?;
//! let user_key = CaKey::generate("alice's laptop")?.public_key_openssh(); // any Ed25519 key
//! let req = UserCertRequest::new(
//!     user_key,
//!     "alice@acme",
//!     vec!["alice".into()],
//!     Validity::starting_now(Duration::from_secs(8 * 3600)),
//!     1, // serial
//! );
//! let cert = ca.sign_user(&req)?; // "ssh-ed25519-cert-v01@openssh.com AAAA... alice's laptop"
//! assert!(cert.starts_with("ssh-ed25519-cert-v01@openssh.com "));
//!
//! let mut krl = Krl::new(1, "acme users")?;
//! krl.revoke_serial(&ca.public_key(), 1)?;
//! let bytes = krl.to_bytes(); // the file sshd's RevokedKeys names
//! assert!(bytes.starts_with(b"SSHKRL\n\0"));
//! # Ok::<(), watchgrid_sshca::Error>(())
//! ```

#![forbid(unsafe_code)]

mod ca;
mod cert;
mod error;
mod fs;
mod key;
mod krl;

pub use ca::CaKey;
pub use cert::{
    default_user_extensions, CriticalOptions, HostCertRequest, UserCertRequest, Validity,
    DEFAULT_CLOCK_SKEW, DEFAULT_USER_EXTENSIONS,
};
pub use error::Error;
pub use key::PublicKey;
pub use krl::Krl;
