//! The crate's one error type, `Error`, and the helpers that classify I/O and command failures.

use std::io;

/// Everything that can go wrong in the data plane.
///
/// Callers that must keep running when WireGuard cannot be brought up on this host (the server
/// reports it as a failed health check instead of exiting) test [`Error::is_environment`]: it is
/// true for a missing privilege, TUN device, kernel module or tool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process lacks root or `CAP_NET_ADMIN` for what it tried (creating a link or a TUN
    /// device, writing the UAPI socket directory, ...).
    #[error("permission denied: {0} (needs root or CAP_NET_ADMIN)")]
    NoPermission(String),
    /// `/dev/net/tun` is missing or unusable, so the userspace backend cannot run.
    #[error("TUN device unavailable: {0}")]
    TunUnavailable(String),
    /// The kernel cannot create a `wireguard` link (no module).
    #[error("the kernel has no WireGuard support: {0}")]
    KernelModuleMissing(String),
    /// An external program this crate needs is not installed.
    #[error("`{tool}` is not installed (Debian package `{package}`)")]
    ToolMissing {
        /// The program, e.g. `wg`.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The interface name is already taken: by a link in this namespace, or by a live UAPI
    /// socket (which may belong to another namespace: socket paths are host-wide).
    #[error("interface {name} already exists: {detail}")]
    InterfaceExists {
        /// The interface name.
        name: String,
        /// What was found.
        detail: String,
    },
    /// The interface has disappeared or stopped answering (from `Backend::check`).
    #[error("{0}")]
    InterfaceGone(String),
    /// Not a usable interface name.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A key that is not 32 bytes of base64 (or hex, on the UAPI socket).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The listen port is taken by another socket.
    #[error("listen port {0} is already in use")]
    AddressInUse(u16),
    /// The UAPI socket refused a request (`errno=N`) or answered something unreadable.
    #[error("UAPI: {0}")]
    Uapi(String),
    /// The interface did not answer a UAPI request in time (a stopped or stuck device, or a
    /// process that accepts connections and never answers). The message names the interface,
    /// the request and the limit.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The kernel's WireGuard module refused a netlink request or answered something
    /// unreadable; the message names the command, the interface and the errno.
    #[error("netlink: {0}")]
    Netlink(String),
    /// An external command (`ip`, `wg`) failed; `stderr` is its last words.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line (never holds a secret: keys go through stdin).
        command: String,
        /// What the command printed on stderr, trimmed.
        stderr: String,
    },
    /// A wg-quick file that does not parse. `line` is 1-based; the message names the key.
    #[error("line {line}: {message}")]
    Config {
        /// The line of the file (1-based).
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// An endpoint (`host:port`) that does not resolve to an address.
    #[error("endpoint {endpoint}: {message}")]
    Endpoint {
        /// The endpoint as written.
        endpoint: String,
        /// Why it did not resolve.
        message: String,
    },
    /// boringtun failed to start the userspace device for another reason.
    #[error("userspace WireGuard device: {0}")]
    Device(String),
    /// File or socket I/O; the message names the path.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// True when the error comes from the host rather than from the request: no privilege, no
    /// TUN device, no kernel module, a missing tool. A server keeps running and reports these.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            Error::NoPermission(_)
                | Error::TunUnavailable(_)
                | Error::KernelModuleMissing(_)
                | Error::ToolMissing { .. }
        )
    }
}

/// An `io::Error` with what was being done prepended, keeping its kind.
pub(crate) fn io_context(context: impl std::fmt::Display, err: io::Error) -> Error {
    Error::Io(io::Error::new(err.kind(), format!("{context}: {err}")))
}

/// Classifies an OS error met while doing `what` to the interface: permission problems become
/// [`Error::NoPermission`], everything else keeps its context as [`Error::Io`].
pub(crate) fn os_error(what: impl std::fmt::Display, err: io::Error) -> Error {
    match err.raw_os_error() {
        Some(code) if code == EPERM || code == EACCES => {
            Error::NoPermission(format!("{what}: {err}"))
        }
        _ => io_context(what, err),
    }
}

// errno values on Linux, named here so the crate needs no libc dependency.
pub(crate) const EPERM: i32 = 1;
pub(crate) const ENOENT: i32 = 2;
pub(crate) const EIO: i32 = 5;
pub(crate) const ENXIO: i32 = 6;
pub(crate) const ENOMEM: i32 = 12;
pub(crate) const EACCES: i32 = 13;
pub(crate) const EBUSY: i32 = 16;
pub(crate) const EEXIST: i32 = 17;
pub(crate) const ENODEV: i32 = 19;
pub(crate) const EINVAL: i32 = 22;
pub(crate) const EPROTO: i32 = 71;
pub(crate) const EADDRINUSE: i32 = 98;
pub(crate) const ENOTSUP: i32 = 95;
pub(crate) const ETIMEDOUT: i32 = 110;

/// A short name for an errno value as the UAPI reports it (wireguard-go sends it negated).
pub(crate) fn errno_name(code: i32) -> &'static str {
    match code.abs() {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        EIO => "EIO",
        ENXIO => "ENXIO",
        EACCES => "EACCES",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        ENOMEM => "ENOMEM",
        ENODEV => "ENODEV",
        EINVAL => "EINVAL",
        EPROTO => "EPROTO",
        EADDRINUSE => "EADDRINUSE",
        ENOTSUP => "ENOTSUP",
        ETIMEDOUT => "ETIMEDOUT",
        _ => "unknown errno",
    }
}
