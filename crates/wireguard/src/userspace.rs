//! The userspace backend: boringtun's `DeviceHandle` on a TUN device. The interface's UAPI
//! socket `/var/run/wireguard/<name>.sock` is served by this crate (`userspace/proxy.rs`) and
//! forwarded to boringtun over a socketpair (`userspace/channel.rs`), so `wg show <name>` and
//! [`UserspaceInterface::attach`] from another process work as with any userspace WireGuard.
//!
//! Why not boringtun's own socket: with `uapi_fd: -1`, boringtun 0.7.1 also blocks SIGINT and
//! SIGTERM in the creating thread and reads them from a signalfd in its event loop, where it
//! wins the race for process-directed signals against the host program's own handler (tokio's
//! in the server and the agent): the host never sees its shutdown signal and the device stops
//! instead. Given a descriptor (`DeviceConfig::uapi_fd`), boringtun installs no signal
//! handling at all, and it stops its device threads as soon as that descriptor reaches end of
//! file, which is how the interface is torn down.
//!
//! boringtun 0.7.1 has more sharp edges that this module works around:
//! - Updating an existing peer in place panics inside a device thread (and leaves the device's
//!   lock taken, so the whole interface stops). Every upsert therefore removes the peer first
//!   and adds it again in the same transaction; unchanged peers are skipped, so a repeated
//!   `set_peer` keeps the session, and a re-added peer keeps the endpoint it had learned. The
//!   socket this crate serves refuses such updates from other tools (`wg set`) instead of
//!   passing them on. An attached interface that is not boringtun (wireguard-go reports
//!   `private_key=` where boringtun reports `own_public_key=`) refuses `remove=false` and gets
//!   plain in-place updates instead.
//! - Within one `set` transaction it carries a peer's `endpoint` and keepalive over to the
//!   following peer sections. Every section states its keepalive, and peers without an
//!   endpoint are sent before any peer with one.

mod channel;
mod proxy;
mod request;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use boringtun::device::{DeviceConfig, DeviceHandle};
use ipnet::IpNet;
use zeroize::Zeroize as _;

use crate::diff::same_networks;
use crate::error::{os_error, EBUSY, EINVAL, ENODEV, ENOENT, ENXIO};
use crate::uapi::{self, errno_error, Client, DeviceState, PeerState};
use crate::{ip, Backend, Error, InterfaceSpec, Peer, PeerStats, PublicKey, DEFAULT_MTU};

use channel::{Channel, LOCK_WAIT};
use proxy::{SocketFile, Supervisor};
use request::SetRequest;

/// How long `Drop` waits for the teardown (it takes milliseconds unless the device is hung,
/// and then about two seconds).
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A userspace WireGuard interface: run by boringtun in this process ([`open`](Self::open)),
/// or run by another process and reached through its UAPI socket ([`attach`](Self::attach)).
pub struct UserspaceInterface {
    name: String,
    link: Link,
    /// Serialises an attached handle's read-modify-write transactions (`set_peers` reads
    /// first). An owned interface holds its channel for the whole transaction instead.
    transactions: Mutex<()>,
}

enum Link {
    /// Run by this process: boringtun behind a channel, and the socket served for others.
    Owned {
        channel: Arc<Channel>,
        supervisor: Supervisor,
        socket: SocketFile,
        public_key: PublicKey,
    },
    /// Run by someone else: one UAPI connection per request; nothing to tear down.
    Attached { client: Client },
}

impl fmt::Debug for UserspaceInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UserspaceInterface");
        d.field("name", &self.name)
            .field("socket", &self.socket_path());
        match &self.link {
            Link::Owned { public_key, .. } => d.field("public_key", public_key),
            Link::Attached { .. } => d.field("attached", &true),
        };
        d.finish_non_exhaustive()
    }
}

impl UserspaceInterface {
    /// Creates the TUN device and its boringtun device threads in the calling thread's network
    /// namespace, starts serving its UAPI socket, sets the key and port, then assigns the
    /// addresses, sets the MTU and sets the link up with `ip`. On any failure the device is
    /// torn down. Installs no signal handling: SIGTERM and SIGINT stay the caller's.
    pub fn open(spec: &InterfaceSpec) -> Result<Self, Error> {
        let name = spec.name.as_str();
        crate::validate_interface_name(name)?;
        if name.parse::<i32>().is_ok() {
            // boringtun opens no TUN device for such a name: it takes it as a file descriptor.
            return Err(Error::InvalidName {
                name: name.to_owned(),
                reason: "a number, which boringtun would take for a file descriptor",
            });
        }
        if ip::link_state(name)?.is_some() {
            return Err(Error::InterfaceExists {
                name: name.to_owned(),
                detail: "a link with this name exists".into(),
            });
        }
        let path = uapi::socket_path(name);
        if Client::is_live(&path) {
            return Err(Error::InterfaceExists {
                name: name.to_owned(),
                detail: format!(
                    "another WireGuard process answers on {} (socket paths are shared by all network namespaces)",
                    path.display()
                ),
            });
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err(Error::TunUnavailable("/dev/net/tun does not exist".into()));
        }
        // Checked here because boringtun leaks descriptors when it fails for lack of it.
        require_net_admin()?;
        if let Some(port) = spec.listen_port.filter(|&p| p != 0) {
            ensure_port_free(port)?;
        }

        let (listener, socket) = SocketFile::bind(&path)?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| {
            socket.remove();
            crate::error::io_context("creating the UAPI socketpair", e)
        })?;
        let config = DeviceConfig {
            n_threads: thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4)),
            // One connected UDP socket per peer costs a file descriptor per peer: with 100,000
            // peers that exceeds the usual limits. All peers share the listening sockets.
            use_connected_socket: false,
            use_multi_queue: true,
            // boringtun owns this end from here (and closes it with the device). With a
            // descriptor it installs no signal handling and serves no socket of its own.
            uapi_fd: theirs.into_raw_fd(),
        };
        let device = DeviceHandle::new(name, config).map_err(|e| {
            socket.remove();
            device_error(name, e)
        })?;
        let channel = match Channel::new(name, ours) {
            Ok(channel) => Arc::new(channel),
            Err(e) => {
                // `ours` is closed: boringtun sees end of file and its threads exit.
                drop(device);
                socket.remove();
                return Err(crate::error::io_context("setting up the UAPI channel", e));
            }
        };
        let supervisor =
            match proxy::start(name, listener, socket.clone(), Arc::clone(&channel), device) {
                Ok(supervisor) => supervisor,
                Err(e) => {
                    channel.close();
                    socket.remove();
                    return Err(e);
                }
            };

        // From here on, dropping `iface` tears everything down.
        let iface = UserspaceInterface {
            name: name.to_owned(),
            link: Link::Owned {
                channel,
                supervisor,
                socket,
                public_key: spec.private_key.public_key(),
            },
            transactions: Mutex::new(()),
        };

        let port = spec.listen_port.filter(|&p| p != 0);
        let mut body = format!("private_key={}\n", spec.private_key.to_hex());
        if let Some(port) = port {
            let _ = writeln!(body, "listen_port={port}");
        }
        let result = iface.send(&body, port);
        body.zeroize();
        result?;

        ip::configure(name, &spec.addresses, spec.mtu.unwrap_or(DEFAULT_MTU))?;

        let state = iface.get()?;
        if state.public_key != Some(spec.private_key.public_key()) {
            return Err(Error::Uapi(format!(
                "interface {name} did not take its private key"
            )));
        }
        tracing::info!(
            interface = name,
            listen_port = state.listen_port,
            public_key = %spec.private_key.public_key(),
            "userspace WireGuard interface up"
        );
        Ok(iface)
    }

    /// Manages a userspace interface that another process runs (boringtun behind this crate,
    /// wireguard-go, ...) through its UAPI socket: every [`Backend`] method works, and dropping
    /// the handle leaves the interface alone. Fails with [`Error::InterfaceGone`] if no
    /// socket answers for `name`, and [`Error::Timeout`] if the process behind it is stuck.
    ///
    /// The socket path is the same in every network namespace, so this works from any of them;
    /// [`Backend::check`] still looks for the link in the calling thread's namespace.
    pub fn attach(name: &str) -> Result<Self, Error> {
        crate::validate_interface_name(name)?;
        let client = Client::new(name);
        if !client.path().exists() {
            return Err(Error::InterfaceGone(format!(
                "interface {name}: no UAPI socket at {} (no userspace WireGuard interface of this name runs)",
                client.path().display()
            )));
        }
        client.probe()?;
        Ok(UserspaceInterface {
            name: name.to_owned(),
            link: Link::Attached { client },
            transactions: Mutex::new(()),
        })
    }

    /// The UAPI socket this interface answers on.
    pub fn socket_path(&self) -> &Path {
        match &self.link {
            Link::Owned { socket, .. } => socket.path(),
            Link::Attached { client } => client.path(),
        }
    }

    /// Whether this handle runs the interface (from [`open`](Self::open)) rather than being
    /// [attached](Self::attach) to another process's.
    pub fn is_owned(&self) -> bool {
        matches!(self.link, Link::Owned { .. })
    }

    /// Sends a `set` body to boringtun without the checks that keep it from crashing the device,
    /// waiting at most `limit` for the answer: tests use it to hang a device on purpose.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn send_unchecked_for_tests(&self, body: &str, limit: Duration) -> Result<(), Error> {
        match &self.link {
            Link::Owned { channel, .. } => {
                let request = self.request(body)?;
                let errno = channel.lock(LOCK_WAIT)?.set_within(&request, limit)?;
                self.answer(errno, None)
            }
            Link::Attached { client } => client.set(body, None),
        }
    }

    /// `get=1`.
    fn get(&self) -> Result<DeviceState, Error> {
        match &self.link {
            Link::Owned { channel, .. } => channel.get(),
            Link::Attached { client } => client.get(),
        }
    }

    /// Sends a `set` body (`key=value\n` lines).
    fn send(&self, body: &str, listen_port: Option<u16>) -> Result<(), Error> {
        match &self.link {
            Link::Owned { channel, .. } => {
                let request = self.request(body)?;
                let errno = channel.set(&request)?;
                self.answer(errno, listen_port)
            }
            Link::Attached { client } => client.set(body, listen_port),
        }
    }

    fn request<'a>(&self, body: &'a str) -> Result<SetRequest<'a>, Error> {
        SetRequest::parse(body).map_err(|r| {
            Error::Uapi(format!(
                "set on interface {}: boringtun would refuse the request ({})",
                self.name, r.reason
            ))
        })
    }

    fn answer(&self, errno: i32, listen_port: Option<u16>) -> Result<(), Error> {
        if errno == 0 {
            Ok(())
        } else {
            Err(errno_error(&self.name, "set", errno, listen_port))
        }
    }

    /// Reads the device and applies the transaction `plan` makes of its state, with nothing
    /// else changing the device in between.
    fn read_modify_write(
        &self,
        plan: impl FnOnce(&DeviceState) -> Transaction,
    ) -> Result<(), Error> {
        match &self.link {
            Link::Owned { channel, .. } => {
                let mut session = channel.lock(LOCK_WAIT)?;
                let tx = plan(&session.get_state()?);
                if tx.body.is_empty() {
                    return Ok(());
                }
                self.log(&tx);
                let request = self.request(&tx.body)?;
                let errno = session.set(&request)?;
                self.answer(errno, None)
            }
            Link::Attached { client } => {
                let _guard = self
                    .transactions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let tx = plan(&client.get()?);
                if tx.body.is_empty() {
                    return Ok(());
                }
                self.log(&tx);
                client.set(&tx.body, None)
            }
        }
    }

    fn log(&self, tx: &Transaction) {
        tracing::debug!(
            interface = %self.name,
            upserted = tx.upserted,
            removed = tx.removed,
            rebuild = tx.rebuild,
            "UAPI set transaction"
        );
        if tx.rebuild {
            tracing::info!(interface = %self.name, "re-adding all peers in one transaction (cheaper in boringtun than removing peers one by one); their sessions restart");
        }
    }
}

impl Backend for UserspaceInterface {
    fn interface(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> Result<PublicKey, Error> {
        self.get()?
            .public_key
            .ok_or_else(|| Error::Uapi(format!("interface {} reports no key", self.name)))
    }

    fn listen_port(&self) -> Result<u16, Error> {
        self.get()?
            .listen_port
            .ok_or_else(|| Error::Uapi(format!("interface {} reports no listen port", self.name)))
    }

    fn set_peer(&self, peer: &Peer) -> Result<(), Error> {
        self.set_peers(std::slice::from_ref(peer))
    }

    fn set_peers(&self, peers: &[Peer]) -> Result<(), Error> {
        if peers.is_empty() {
            return Ok(());
        }
        self.read_modify_write(|state| plan(state, peers, &[]))
    }

    fn remove_peer(&self, key: &PublicKey) -> Result<(), Error> {
        self.remove_peers(std::slice::from_ref(key))
    }

    fn remove_peers(&self, keys: &[PublicKey]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        if keys.len() < DIRECT_REMOVE_MAX {
            return self.send(&remove_body(keys), None);
        }
        self.read_modify_write(|state| plan(state, &[], keys))
    }

    fn peers(&self) -> Result<Vec<PeerStats>, Error> {
        Ok(self.get()?.peers.into_iter().map(|p| p.stats).collect())
    }

    fn check(&self) -> Result<(), Error> {
        match ip::link_state(&self.name)? {
            None => {
                return Err(Error::InterfaceGone(format!(
                    "interface {} is gone (no such link in this network namespace)",
                    self.name
                )))
            }
            Some(state) if !state.up => {
                return Err(Error::InterfaceGone(format!(
                    "interface {} is down",
                    self.name
                )))
            }
            Some(_) => {}
        }
        match &self.link {
            Link::Owned {
                channel,
                supervisor,
                socket,
                ..
            } => {
                if !supervisor.is_running() {
                    return Err(Error::InterfaceGone(format!(
                        "interface {}: the thread serving its UAPI socket has stopped",
                        self.name
                    )));
                }
                if !socket.is_ours() {
                    return Err(Error::InterfaceGone(format!(
                        "interface {}: its UAPI socket {} was removed or replaced, so `wg` cannot reach it",
                        self.name,
                        socket.path().display()
                    )));
                }
                // A full `get` would list every peer (0.2 s at 100,000): probe the event loop.
                channel.health(uapi::PROBE_TIMEOUT)
            }
            Link::Attached { client } => client.probe(),
        }
    }
}

impl Drop for UserspaceInterface {
    fn drop(&mut self) {
        if let Link::Owned { supervisor, .. } = &mut self.link {
            supervisor.stop(TEARDOWN_TIMEOUT);
        }
    }
}

/// Fails with [`Error::NoPermission`] unless the process has `CAP_NET_ADMIN` (in its user
/// namespace), which creating a TUN device needs. Unknown when `/proc` cannot say: then passes.
fn require_net_admin() -> Result<(), Error> {
    const CAP_NET_ADMIN: u32 = 12;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Ok(());
    };
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    match effective {
        Some(caps) if caps & (1 << CAP_NET_ADMIN) == 0 => Err(Error::NoPermission(
            "creating a TUN device: the process lacks CAP_NET_ADMIN".into(),
        )),
        _ => Ok(()),
    }
}

/// Relative cost of adding one peer in boringtun, in units of one allowed-IP table entry visited
/// while removing a peer. Removing a peer scans the whole allowed-IP table (O(entries)); adding
/// one costs a Curve25519 computation. Measured with `examples/set_peers_bench.rs` (release):
/// 60 to 90 us per add, about 20 ns per entry visited.
const ADD_COST: u64 = 4_000;

/// Below this many keys, `remove_peers` sends the removals without reading the device first.
const DIRECT_REMOVE_MAX: usize = 64;

/// One `set` transaction for boringtun, planned from the device's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transaction {
    /// The request body (without `set=1` and the closing blank line); empty if nothing to do.
    pub body: String,
    /// Peers added or re-added because they are new or changed.
    pub upserted: usize,
    /// Existing peers removed.
    pub removed: usize,
    /// Whether the transaction clears every peer (`replace_peers=true`) and re-adds the ones that
    /// stay: chosen when removing peers one by one would cost more (see [`ADD_COST`]).
    pub rebuild: bool,
}

/// A peer section to send: key, keepalive, endpoint, allowed IPs.
type Section<'a> = (PublicKey, u16, Option<SocketAddr>, &'a [IpNet]);

/// Plans the transaction that upserts `upserts` and removes `removals` (see the module docs
/// for boringtun's quirks that shape it). Unchanged peers and absent removals are skipped.
pub(crate) fn plan(state: &DeviceState, upserts: &[Peer], removals: &[PublicKey]) -> Transaction {
    let current: HashMap<PublicKey, &PeerState> = state
        .peers
        .iter()
        .map(|p| (p.stats.public_key, p))
        .collect();
    let mut latest: HashMap<PublicKey, &Peer> = HashMap::with_capacity(upserts.len());
    for peer in upserts {
        latest.insert(peer.public_key, peer);
    }
    let changed: Vec<Section<'_>> = latest
        .into_values()
        .filter_map(|peer| {
            let existing = current.get(&peer.public_key);
            if existing.is_some_and(|e| unchanged(peer, e)) {
                return None;
            }
            // Keep the endpoint the device learned from the peer when the caller names none.
            let endpoint = peer
                .endpoint
                .or_else(|| existing.and_then(|e| e.stats.endpoint));
            Some((
                peer.public_key,
                peer.persistent_keepalive.unwrap_or(0),
                endpoint,
                peer.allowed_ips.as_slice(),
            ))
        })
        .collect();
    let removed: HashSet<PublicKey> = removals
        .iter()
        .copied()
        .filter(|k| current.contains_key(k))
        .collect();
    let replaced = changed
        .iter()
        .filter(|s| current.contains_key(&s.0))
        .count();

    let entries = state
        .peers
        .iter()
        .map(|p| p.stats.allowed_ips.len() as u64)
        .sum::<u64>()
        .max(1);
    let changed_keys: HashSet<PublicKey> = changed.iter().map(|s| s.0).collect();
    let staying: Vec<&PeerState> = state
        .peers
        .iter()
        .filter(|p| {
            !removed.contains(&p.stats.public_key) && !changed_keys.contains(&p.stats.public_key)
        })
        .collect();
    let incremental_cost =
        (removed.len() + replaced) as u64 * entries + changed.len() as u64 * ADD_COST;
    let rebuild_cost = (staying.len() + changed.len()) as u64 * ADD_COST;
    // Rebuilding only pays where an update is a removal (boringtun).
    let rebuild =
        !state.updates_in_place && removed.len() + replaced > 0 && incremental_cost > rebuild_cost;

    let mut body = String::new();
    let mut sections = changed;
    if rebuild {
        body.push_str("replace_peers=true\n");
        sections.extend(staying.iter().map(|p| {
            (
                p.stats.public_key,
                p.persistent_keepalive.unwrap_or(0),
                p.stats.endpoint,
                p.stats.allowed_ips.as_slice(),
            )
        }));
    } else {
        let mut gone: Vec<&PublicKey> = removed.iter().collect();
        gone.sort();
        for key in gone {
            let _ = write!(body, "public_key={}\nremove=true\n", key.to_hex());
        }
    }
    // boringtun carries an endpoint over to later sections: endpoint-less peers go first.
    sections.sort_by_key(|(key, _, endpoint, _)| (endpoint.is_some(), *key));
    body.reserve(sections.len() * 300);
    for (key, keepalive, endpoint, allowed_ips) in &sections {
        let key = key.to_hex();
        if state.updates_in_place {
            let _ = write!(
                body,
                "public_key={key}\nreplace_allowed_ips=true\npersistent_keepalive_interval={keepalive}\n"
            );
        } else {
            let _ = write!(
                body,
                "public_key={key}\nremove=true\npublic_key={key}\nremove=false\npersistent_keepalive_interval={keepalive}\n"
            );
        }
        if let Some(endpoint) = endpoint {
            let _ = writeln!(body, "endpoint={endpoint}");
        }
        for net in *allowed_ips {
            let _ = writeln!(body, "allowed_ip={}", net.trunc());
        }
    }
    Transaction {
        body,
        upserted: sections.len() - if rebuild { staying.len() } else { 0 },
        removed: removed.len(),
        rebuild,
    }
}

fn unchanged(peer: &Peer, existing: &PeerState) -> bool {
    same_networks(&peer.allowed_ips, &existing.stats.allowed_ips)
        && peer.persistent_keepalive.filter(|&k| k != 0) == existing.persistent_keepalive
        && peer
            .endpoint
            .is_none_or(|want| crate::diff::same_endpoint(want, existing.stats.endpoint))
}

/// Removals sent without reading the device (a removal of an absent peer is a no-op).
pub(crate) fn remove_body(keys: &[PublicKey]) -> String {
    let mut body = String::with_capacity(keys.len() * 90);
    for key in keys {
        let _ = write!(body, "public_key={}\nremove=true\n", key.to_hex());
    }
    body
}

/// boringtun binds its UDP sockets with `SO_REUSEADDR`, so a second boringtun interface on the
/// same port would bind too and share it silently. A plain bind (without the option) fails
/// against any holder of the port, boringtun's sockets included.
pub(crate) fn ensure_port_free(port: u16) -> Result<(), Error> {
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
    let addresses: [SocketAddr; 2] = [
        (Ipv4Addr::UNSPECIFIED, port).into(),
        (Ipv6Addr::UNSPECIFIED, port).into(),
    ];
    for address in addresses {
        // One at a time: the IPv6 socket is dual-stack and would collide with the IPv4 probe.
        match UdpSocket::bind(address) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(Error::AddressInUse(port))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Maps boringtun's errors from creating a device to this crate's.
fn device_error(name: &str, err: boringtun::device::Error) -> Error {
    use boringtun::device::Error as E;
    match err {
        E::Socket(e) => match e.raw_os_error() {
            Some(ENOENT | ENODEV | ENXIO) => {
                Error::TunUnavailable(format!("opening /dev/net/tun: {e}"))
            }
            _ => os_error("opening /dev/net/tun", e),
        },
        E::IOCtl(e) => match e.raw_os_error() {
            Some(EBUSY | EINVAL) => Error::InterfaceExists {
                name: name.to_owned(),
                detail: format!("the kernel refused a TUN device with this name: {e}"),
            },
            _ => os_error(format!("creating TUN device {name}"), e),
        },
        E::InvalidTunnelName => Error::InvalidName {
            name: name.to_owned(),
            reason: "rejected by boringtun",
        },
        E::ApiSocket(e) => os_error(format!("binding UAPI socket for {name}"), e),
        E::IoError(e) => os_error(format!("starting userspace device {name}"), e),
        other => Error::Device(format!("{name}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn peer(n: u8, ips: &[&str], endpoint: Option<&str>, keepalive: Option<u16>) -> Peer {
        Peer {
            public_key: key(n),
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            endpoint: endpoint.map(|e| e.parse().unwrap()),
            persistent_keepalive: keepalive,
        }
    }

    fn device(peers: &[Peer]) -> DeviceState {
        DeviceState {
            public_key: None,
            updates_in_place: false,
            listen_port: Some(51820),
            peers: peers
                .iter()
                .map(|p| PeerState {
                    stats: PeerStats {
                        public_key: p.public_key,
                        endpoint: p.endpoint,
                        allowed_ips: p.allowed_ips.clone(),
                        last_handshake: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    },
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect(),
        }
    }

    /// The peer (re-)add sections of a body, each as its lines from the re-adding `public_key=`.
    fn sections(body: &str) -> Vec<Vec<String>> {
        let lines: Vec<&str> = body.lines().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            if lines[i] == "replace_peers=true" {
                i += 1;
                continue;
            }
            assert!(lines[i].starts_with("public_key="), "{body}");
            assert_eq!(lines[i + 1], "remove=true", "{body}");
            if lines.get(i + 2) != Some(&lines[i]) {
                i += 2; // a plain removal
                continue;
            }
            let mut section = vec![lines[i].to_owned()];
            i += 3;
            while i < lines.len() && !lines[i].starts_with("public_key=") {
                section.push(lines[i].to_owned());
                i += 1;
            }
            out.push(section);
        }
        out
    }

    #[test]
    fn upsert_removes_then_adds_with_explicit_keepalive() {
        let tx = plan(
            &device(&[]),
            &[peer(1, &["10.0.0.5/24", "fd00::1/128"], None, None)],
            &[],
        );
        assert_eq!((tx.upserted, tx.removed, tx.rebuild), (1, 0, false));
        let hex = key(1).to_hex();
        assert_eq!(
            tx.body,
            format!(
                "public_key={hex}\nremove=true\npublic_key={hex}\nremove=false\npersistent_keepalive_interval=0\n\
                 allowed_ip=10.0.0.0/24\nallowed_ip=fd00::1/128\n"
            )
        );
    }

    #[test]
    fn a_device_that_is_not_boringtun_gets_in_place_updates() {
        // wireguard-go: `private_key=` in its `get`, and it refuses `remove=false`.
        let mut state = device(&[peer(1, &["10.0.0.1/32"], None, None)]);
        state.updates_in_place = true;
        let removals: Vec<PublicKey> = (10..200).map(key).collect();
        let tx = plan(
            &state,
            &[peer(1, &["10.0.0.1/32", "10.9.0.0/16"], None, Some(25))],
            &removals,
        );
        let hex = key(1).to_hex();
        assert!(!tx.rebuild, "no rebuild where updates are in place");
        assert!(!tx.body.contains("remove=false"), "{}", tx.body);
        assert!(
            tx.body.ends_with(&format!(
                "public_key={hex}\nreplace_allowed_ips=true\npersistent_keepalive_interval=25\n\
                 allowed_ip=10.0.0.1/32\nallowed_ip=10.9.0.0/16\n"
            )),
            "{}",
            tx.body
        );
        // The same plan for boringtun removes and re-adds.
        state.updates_in_place = false;
        let tx = plan(&state, &[peer(1, &["10.9.0.0/16"], None, None)], &[]);
        assert!(tx.body.contains("remove=false"), "{}", tx.body);
    }

    #[test]
    fn peers_without_endpoint_come_first() {
        let peers = vec![
            peer(1, &["10.0.0.1/32"], Some("192.0.2.1:1"), Some(25)),
            peer(2, &["10.0.0.2/32"], None, None),
            peer(3, &["10.0.0.3/32"], Some("192.0.2.3:3"), None),
            peer(4, &["10.0.0.4/32"], None, None),
        ];
        let tx = plan(&device(&[]), &peers, &[]);
        assert_eq!(tx.upserted, 4);
        let s = sections(&tx.body);
        let order: Vec<String> = s.iter().map(|sec| sec[0].clone()).collect();
        let expect: Vec<String> = [2, 4, 1, 3]
            .iter()
            .map(|&n| format!("public_key={}", key(n).to_hex()))
            .collect();
        assert_eq!(order, expect);
        let mut seen_endpoint = false;
        for sec in &s {
            let has = sec.iter().any(|l| l.starts_with("endpoint="));
            assert!(
                has || !seen_endpoint,
                "an endpoint-less peer after one with an endpoint: {}",
                tx.body
            );
            seen_endpoint |= has;
            assert!(
                sec.iter()
                    .any(|l| l.starts_with("persistent_keepalive_interval=")),
                "{}",
                tx.body
            );
        }
        assert!(
            tx.body
                .contains("persistent_keepalive_interval=25\nendpoint=192.0.2.1:1\n"),
            "{}",
            tx.body
        );
    }

    #[test]
    fn unchanged_peers_are_skipped_and_learned_endpoints_kept() {
        let mut roamed = peer(1, &["10.0.0.1/32"], None, None);
        roamed.endpoint = Some("198.51.100.7:4000".parse().unwrap());
        let endpoint_same = peer(4, &["10.0.0.4/32"], Some("192.0.2.4:4"), None);
        let state = device(&[
            roamed,
            peer(2, &["10.0.0.2/32"], Some("198.51.100.8:4000"), None),
            peer(3, &["10.0.0.3/32"], None, None),
            endpoint_same.clone(),
        ]);
        let want = [
            peer(1, &["10.0.0.1/32"], None, None), // the same, endpoint learned: skipped
            peer(2, &["10.0.0.22/32"], None, None), // allowed IPs changed
            peer(3, &["10.0.0.3/32"], None, Some(25)), // keepalive changed
            endpoint_same,                         // the same: skipped
        ];
        let tx = plan(&state, &want, &[]);
        assert_eq!(
            (tx.upserted, tx.removed, tx.rebuild),
            (2, 0, false),
            "{}",
            tx.body
        );
        assert!(
            !tx.body.contains(&key(1).to_hex()),
            "unchanged peer was sent: {}",
            tx.body
        );
        assert!(
            !tx.body.contains(&key(4).to_hex()),
            "unchanged peer was sent: {}",
            tx.body
        );
        // Peer 2 keeps the endpoint it had.
        assert!(
            tx.body
                .contains("endpoint=198.51.100.8:4000\nallowed_ip=10.0.0.22/32\n"),
            "{}",
            tx.body
        );
        assert!(
            tx.body
                .contains("persistent_keepalive_interval=25\nallowed_ip=10.0.0.3/32\n"),
            "{}",
            tx.body
        );
        assert!(plan(&state, &want[..1], &[]).body.is_empty());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let tx = plan(
            &device(&[]),
            &[
                peer(1, &["10.0.0.1/32"], None, None),
                peer(1, &["10.0.0.9/32"], None, None),
            ],
            &[],
        );
        assert_eq!(tx.upserted, 1);
        assert!(
            tx.body.contains("10.0.0.9/32") && !tx.body.contains("10.0.0.1/32"),
            "{}",
            tx.body
        );
    }

    #[test]
    fn removals() {
        assert_eq!(
            remove_body(&[key(1), key(2)]),
            format!(
                "public_key={}\nremove=true\npublic_key={}\nremove=true\n",
                key(1).to_hex(),
                key(2).to_hex()
            )
        );
        // Planned removals skip absent peers.
        let many: Vec<Peer> = (1..=10)
            .map(|n| peer(n, &[&format!("10.0.0.{n}/32")], None, None))
            .collect();
        let tx = plan(&device(&many), &[], &[key(3), key(99)]);
        assert_eq!((tx.upserted, tx.removed, tx.rebuild), (0, 1, false));
        assert_eq!(
            tx.body,
            format!("public_key={}\nremove=true\n", key(3).to_hex())
        );
    }

    #[test]
    fn mass_changes_rebuild_and_keep_the_rest() {
        // Removing all ten costs 10 x 10 table visits one by one, nothing as a rebuild.
        let many: Vec<Peer> = (1..=10)
            .map(|n| peer(n, &[&format!("10.0.0.{n}/32")], None, None))
            .collect();
        let keys: Vec<PublicKey> = many.iter().map(|p| p.public_key).collect();
        let tx = plan(&device(&many), &[], &keys);
        assert_eq!((tx.upserted, tx.removed, tx.rebuild), (0, 10, true));
        assert_eq!(tx.body, "replace_peers=true\n");

        // 9,000 of 10,000 changed: re-adding the 1,000 others is cheaper than 9,000 table scans.
        let big: Vec<Peer> = (0u32..10_000)
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes[..4].copy_from_slice(&i.to_be_bytes());
                let [_, _, c, d] = i.to_be_bytes();
                Peer {
                    public_key: PublicKey::from_bytes(bytes),
                    allowed_ips: vec![format!("10.1.{c}.{d}/32").parse().unwrap()],
                    endpoint: (i % 2 == 0).then(|| "192.0.2.1:1".parse().unwrap()),
                    persistent_keepalive: None,
                }
            })
            .collect();
        let mut changed = big[..9_000].to_vec();
        for p in &mut changed {
            p.allowed_ips = vec![p.allowed_ips[0]
                .to_string()
                .replace("10.1.", "10.2.")
                .parse()
                .unwrap()];
        }
        let tx = plan(&device(&big), &changed, &[]);
        assert!(tx.rebuild);
        assert_eq!(tx.upserted, 9_000);
        assert!(tx.body.starts_with("replace_peers=true\n"));
        let s = sections(&tx.body);
        assert_eq!(s.len(), 10_000, "everything is re-added");
        // The untouched peers keep their allowed IPs and endpoints.
        let section_of = |p: &Peer| {
            let head = format!("public_key={}", p.public_key.to_hex());
            s.iter().find(|sec| sec[0] == head).cloned().unwrap()
        };
        assert!(section_of(&big[9_999]).contains(&"allowed_ip=10.1.39.15/32".to_owned()));
        assert!(section_of(&big[9_998]).contains(&"endpoint=192.0.2.1:1".to_owned()));

        // A few changes on a big interface stay incremental.
        let tx = plan(&device(&big), &changed[..10], &[]);
        assert!(!tx.rebuild);
        assert_eq!(tx.upserted, 10);
    }
}
