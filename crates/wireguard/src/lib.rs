//! Watchgrid's WireGuard data plane: keys, wg-quick files, and WireGuard interfaces behind one
//! [`Backend`] trait, in the kernel or in userspace (boringtun on a TUN device).
//!
//! Architecture invariant: this crate knows nothing of HTTP, SQL or async runtimes. Every call
//! blocks (UAPI socket round trips, netlink requests, `ip` commands), each under a time limit; async
//! callers use `spawn_blocking`. It uses std threads only: boringtun's device threads and, per
//! userspace interface, one thread serving its UAPI socket (plus one per open connection).
//!
//! Signals: nothing here installs signal handlers or changes a signal mask. SIGTERM and SIGINT
//! stay the host program's (boringtun's own signal handling is never enabled; see
//! [`UserspaceInterface`]).
//!
//! API boundary: callers see [`Backend`], [`Peer`], [`PeerStats`], [`diff`], the key and
//! config types and [`Error`]; boringtun, the UAPI text protocol, the netlink messages and the
//! command lines of `ip` stay inside.
//!
//! Network namespaces: [`open`] and [`Backend::check`] act in the network namespace of the
//! calling thread (they run `ip`), and a userspace interface's device threads stay in the
//! namespace it was opened in. The UAPI socket path `/var/run/wireguard/<name>.sock` is the same
//! in every namespace, so interface names must be unique across all namespaces of a host.

#![forbid(unsafe_code)]

pub mod config;
mod diff;
mod error;
mod forwarding;
mod ip;
mod kernel;
pub mod key;
mod netlink;
#[cfg(feature = "test-util")]
pub mod testing;
mod tool;
mod uapi;
mod userspace;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::SystemTime;

use ipnet::IpNet;

pub use config::{InterfaceSection, PeerSection, WgQuickConfig};
pub use diff::{diff, PeerDiff};
pub use error::Error;
pub use forwarding::{disable_forwarding, forwarding_enabled};
pub use ip::{add_route, delete_route};
pub use kernel::KernelInterface;
pub use key::{PresharedKey, PrivateKey, PublicKey};
pub use userspace::UserspaceInterface;

/// The MTU an interface gets when the spec names none: wg-quick's default for an IPv6
/// underlay (1500 minus 80 bytes of WireGuard, UDP and IPv6 headers).
pub const DEFAULT_MTU: u16 = 1420;

/// A peer as the caller wants it configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's public key: its identity.
    pub public_key: PublicKey,
    /// Source addresses accepted from the peer and destinations routed to it.
    pub allowed_ips: Vec<IpNet>,
    /// Where to send the first handshake; none for a peer that connects to us (the interface
    /// then learns its address from its packets).
    pub endpoint: Option<SocketAddr>,
    /// Seconds between keepalives (to hold NAT mappings open); none for off.
    pub persistent_keepalive: Option<u16>,
}

/// A peer as the interface reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// The configured or last learned endpoint.
    pub endpoint: Option<SocketAddr>,
    /// The allowed IPs, with host bits masked.
    pub allowed_ips: Vec<IpNet>,
    /// The last completed handshake; none if there has been none.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

/// A live WireGuard interface. Every method blocks; none takes long except `set_peers` and
/// `peers` on very many peers (see `docs/wireguard.md` for measured times).
pub trait Backend: Send + Sync + fmt::Debug {
    /// The interface name.
    fn interface(&self) -> &str;
    /// The interface's public key, as the interface reports it.
    fn public_key(&self) -> Result<PublicKey, Error>;
    /// The UDP port the interface listens on.
    fn listen_port(&self) -> Result<u16, Error>;
    /// Adds the peer or updates it, replacing its allowed IPs.
    fn set_peer(&self, peer: &Peer) -> Result<(), Error>;
    /// Adds or updates many peers in one configuration transaction.
    fn set_peers(&self, peers: &[Peer]) -> Result<(), Error>;
    /// Removes the peer; removing an unknown peer is not an error.
    fn remove_peer(&self, key: &PublicKey) -> Result<(), Error>;
    /// Removes many peers in one transaction.
    fn remove_peers(&self, keys: &[PublicKey]) -> Result<(), Error>;
    /// Every peer with its counters.
    fn peers(&self) -> Result<Vec<PeerStats>, Error>;
    /// Health: the interface still exists, is up and answers. The error says what is wrong,
    /// e.g. "interface wg0 is gone".
    fn check(&self) -> Result<(), Error>;
}

/// What [`open`] brings up.
#[derive(Debug, Clone)]
pub struct InterfaceSpec {
    /// Interface name: 1 to 15 of `[A-Za-z0-9_=+.-]`, unique on the host (see the crate docs).
    pub name: String,
    /// The interface's private key.
    pub private_key: PrivateKey,
    /// The UDP listen port; none (or 0) for a random one.
    pub listen_port: Option<u16>,
    /// Addresses to assign, with their prefix (which also adds the connected route).
    pub addresses: Vec<IpNet>,
    /// The MTU; none for [`DEFAULT_MTU`].
    pub mtu: Option<u16>,
}

/// Which WireGuard implementation [`open`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The kernel's if it can create a `wireguard` link, userspace otherwise.
    #[default]
    Auto,
    /// The kernel module, configured with `wg` (wireguard-tools).
    Kernel,
    /// boringtun on a TUN device, configured through its UAPI socket.
    Userspace,
}

impl BackendKind {
    /// The lowercase name: `auto`, `kernel` or `userspace`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Kernel => "kernel",
            BackendKind::Userspace => "userspace",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "kernel" => Ok(BackendKind::Kernel),
            "userspace" => Ok(BackendKind::Userspace),
            other => Err(format!(
                "unknown WireGuard backend {other:?} (expected auto, kernel or userspace)"
            )),
        }
    }
}

/// Brings the interface up in the current network namespace: creates it, sets the key and
/// port, assigns the addresses, sets the MTU and sets the link up.
///
/// `Auto` tries the kernel first and falls back to userspace when the kernel cannot create a
/// `wireguard` link or has no `wireguard` netlink family. Errors for which
/// [`Error::is_environment`] is true mean this host cannot run WireGuard as asked.
pub fn open(spec: &InterfaceSpec, kind: BackendKind) -> Result<Box<dyn Backend>, Error> {
    match kind {
        BackendKind::Kernel => Ok(Box::new(KernelInterface::open(spec)?)),
        BackendKind::Userspace => Ok(Box::new(UserspaceInterface::open(spec)?)),
        BackendKind::Auto => match KernelInterface::open(spec) {
            Ok(kernel) => {
                tracing::info!(interface = %spec.name, "WireGuard in the kernel");
                Ok(Box::new(kernel))
            }
            Err(err @ (Error::KernelModuleMissing(_) | Error::ToolMissing { .. })) => {
                tracing::info!(interface = %spec.name, reason = %err, "kernel WireGuard unavailable; using userspace (boringtun)");
                Ok(Box::new(UserspaceInterface::open(spec)?))
            }
            Err(err) => Err(err),
        },
    }
}

/// Manages an existing interface without owning it (dropping the handle leaves it running): a
/// userspace one through its UAPI socket if `/var/run/wireguard/<name>.sock` exists (as `wg`
/// decides), else a kernel one over netlink. See [`UserspaceInterface::attach`] and
/// [`KernelInterface::attach`].
pub fn attach(name: &str) -> Result<Box<dyn Backend>, Error> {
    validate_interface_name(name)?;
    if uapi::socket_path(name).exists() {
        Ok(Box::new(UserspaceInterface::attach(name)?))
    } else {
        Ok(Box::new(KernelInterface::attach(name)?))
    }
}

/// Checks an interface name: 1 to 15 characters of `[A-Za-z0-9_=+.-]`, as wg-quick requires
/// (15 is the kernel's limit; the set keeps the name safe in paths and command lines).
pub fn validate_interface_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > 15 {
        return invalid("longer than 15 characters");
    }
    if name == "." || name == ".." {
        return invalid("not a file name");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
    {
        return invalid("only letters, digits and _=+.- are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use super::*;

    #[test]
    fn interface_names() {
        for good in ["wg0", "a", "wg-hub.1_x=y+z", "abcdefghijklmno"] {
            validate_interface_name(good).unwrap();
        }
        for bad in [
            "",
            "abcdefghijklmnop",
            "wg 0",
            "wg/0",
            "..",
            ".",
            "wg0\n",
            "wgé",
        ] {
            assert!(
                matches!(validate_interface_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn backend_kind_names() {
        for kind in [
            BackendKind::Auto,
            BackendKind::Kernel,
            BackendKind::Userspace,
        ] {
            assert_eq!(kind.to_string().parse::<BackendKind>().unwrap(), kind);
        }
        assert_eq!(
            " Kernel ".parse::<BackendKind>().unwrap(),
            BackendKind::Kernel
        );
        assert!("wireguard-go".parse::<BackendKind>().is_err());
        assert_eq!(BackendKind::default(), BackendKind::Auto);
    }

    #[test]
    fn environment_errors() {
        assert!(Error::NoPermission("x".into()).is_environment());
        assert!(Error::TunUnavailable("x".into()).is_environment());
        assert!(Error::KernelModuleMissing("x".into()).is_environment());
        assert!(Error::ToolMissing {
            tool: "wg",
            package: "wireguard-tools"
        }
        .is_environment());
        assert!(!Error::Uapi("x".into()).is_environment());
        assert!(!Error::Config {
            line: 1,
            message: "x".into()
        }
        .is_environment());
    }
}
