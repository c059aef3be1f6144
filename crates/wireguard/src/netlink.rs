//! Generic netlink to the kernel's `wireguard` family: the transport (request/ack, dumps,
//! kernel errors, a reply time limit) and the WireGuard messages on top of it
//! (`WG_CMD_SET_DEVICE` split to the size `wg(8)` uses, `WG_CMD_GET_DEVICE` dumps merged).
//!
//! The attribute encoding is `netlink-packet-wireguard`'s, checked by that crate against
//! captures of `wg`. What is ours is the framing: which attributes a request carries, how a
//! large peer set (or one peer with many allowed IPs) is cut into messages the kernel accepts,
//! and how a dump that cuts a peer across messages is put back together. Those are the parts
//! the unit tests below pin down; the transport is tested against the running kernel with the
//! always-present `nlctrl` family.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use ipnet::IpNet;
use netlink_packet_core::{
    Emitable as _, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};
use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::{Socket, SocketAddr};
use zeroize::Zeroize as _;

use crate::{Error, Peer, PeerStats, PrivateKey, PublicKey};

/// How long a reply may be awaited once a request is sent. The kernel does the work of a
/// request inside `send()` (under its RTNL lock, so a kernel stuck there blocks `send` itself,
/// which no socket option bounds); this limit covers a reply that never comes.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest `WG_CMD_SET_DEVICE` message we send, headers included: one page, as `wg(8)`
/// (libmnl's `MNL_SOCKET_BUFFER_SIZE`) does, a size every kernel with the module accepts.
pub(crate) const SET_MESSAGE_MAX: usize = 4096;

/// How often a dump the kernel reports as interrupted is read again (`wg` retries too).
const DUMP_ATTEMPTS: u32 = 5;

/// `nlmsghdr` (16 bytes) plus `genlmsghdr` (4 bytes).
const HEADERS_LEN: usize = 20;

/// A failed netlink exchange, before it is given the context of what was asked.
#[derive(Debug)]
pub(crate) enum NetlinkError {
    /// The socket itself failed (or timed out: `ErrorKind::WouldBlock`/`TimedOut`).
    Io(io::Error),
    /// The kernel refused the request with this (positive) errno.
    Kernel(i32),
    /// The kernel answered something we cannot parse.
    Decode(String),
    /// The device changed while a dump was read (`NLM_F_DUMP_INTR`): the answer may be
    /// inconsistent; ask again.
    Interrupted,
}

impl NetlinkError {
    fn describe(&self) -> String {
        match self {
            NetlinkError::Io(err) => err.to_string(),
            NetlinkError::Kernel(errno) => {
                format!("{} (errno {errno})", io::Error::from_raw_os_error(*errno))
            }
            NetlinkError::Decode(message) => format!("unreadable reply: {message}"),
            NetlinkError::Interrupted => {
                "the device kept changing while it was read (dump interrupted)".into()
            }
        }
    }
}

/// What a request asks of the kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ask {
    /// Do it and acknowledge (answers, if any, come before the ack).
    Ack,
    /// List everything (several messages, then `NLMSG_DONE`).
    Dump,
}

/// A generic netlink socket, bound in the network namespace of the thread that opened it (the
/// kernel ties a netlink socket to the namespace it was created in, so later calls from any
/// thread reach the same interfaces).
#[derive(Debug)]
pub(crate) struct GenlSocket {
    /// One request in flight at a time: replies are matched to requests by sequence number,
    /// and a second caller reading the socket would take the first one's replies.
    inner: Mutex<SocketState>,
}

#[derive(Debug)]
struct SocketState {
    socket: Socket,
    next_sequence: u32,
}

impl GenlSocket {
    /// Opens and binds a `NETLINK_GENERIC` socket with a receive time limit.
    pub(crate) fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended acks make the kernel's error replies carry its message; harmless if absent.
        let _ = socket.set_ext_ack(true);
        nix::sys::socket::setsockopt(
            &socket.as_fd(),
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0),
        )
        .map_err(io::Error::from)?;
        Ok(GenlSocket {
            inner: Mutex::new(SocketState {
                socket,
                next_sequence: 1,
            }),
        })
    }

    /// The numeric id of a generic netlink family, or `Kernel(ENOENT)` when the kernel has no
    /// family of that name (for `wireguard`: the module is not loaded).
    pub(crate) fn family_id(&self, name: &str) -> Result<u16, NetlinkError> {
        let request = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
        });
        let mut id = None;
        self.exchange(&request, Ask::Ack, |reply: GenlCtrl| {
            id = id.or_else(|| {
                reply.nlas.iter().find_map(|nla| match nla {
                    GenlCtrlAttrs::FamilyId(id) => Some(*id),
                    _ => None,
                })
            });
        })?;
        id.ok_or_else(|| NetlinkError::Decode(format!("no id in the reply for family {name}")))
    }

    /// Sends `message` and hands every reply to `on_reply`: for [`Ask::Ack`], until the
    /// acknowledgement; for [`Ask::Dump`], until the end of the dump.
    ///
    /// The message is borrowed, so the caller can wipe the key material it holds afterwards.
    /// A dump the kernel marks `NLM_F_DUMP_INTR` (the device changed while it was being read)
    /// is read to its end and reported as [`NetlinkError::Interrupted`], for the caller to retry.
    pub(crate) fn exchange<F>(
        &self,
        message: &GenlMessage<F>,
        ask: Ask,
        mut on_reply: impl FnMut(F),
    ) -> Result<(), NetlinkError>
    where
        F: GenlFamily + netlink_packet_core::Emitable + std::fmt::Debug,
        GenlMessage<F>: NetlinkDeserializable,
    {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let sequence = state.next_sequence;
        state.next_sequence = state.next_sequence.wrapping_add(1).max(1);

        let mut header = NetlinkHeader::default();
        header.flags = match ask {
            Ask::Ack => NLM_F_REQUEST | NLM_F_ACK,
            Ask::Dump => NLM_F_REQUEST | NLM_F_DUMP,
        };
        header.sequence_number = sequence;
        header.message_type = message.family_id();
        let length = header.buffer_len() + netlink_packet_core::Emitable::buffer_len(message);
        header.length = u32::try_from(length)
            .map_err(|_| NetlinkError::Decode(format!("a request of {length} bytes")))?;
        let mut buffer = vec![0u8; length];
        let (head, body) = buffer.split_at_mut(header.buffer_len());
        header.emit(head);
        netlink_packet_core::Emitable::emit(message, body);
        let sent = state.socket.send(&buffer, 0);
        // SET_DEVICE may carry the private key.
        buffer.zeroize();
        sent.map_err(NetlinkError::Io)?;
        let mut interrupted = false;

        loop {
            let mut datagram = match state.socket.recv_from_full() {
                Ok((datagram, _)) => datagram,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Err(NetlinkError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from the kernel within {REPLY_TIMEOUT:?}"),
                    )))
                }
                Err(err) => return Err(NetlinkError::Io(err)),
            };
            let replies = split_datagram::<GenlMessage<F>>(&datagram, sequence);
            // GET_DEVICE answers carry the private key.
            datagram.zeroize();
            if let Some(outcome) = take_replies(replies?, &mut interrupted, &mut on_reply) {
                return outcome;
            }
        }
    }
}

/// Hands the answers in `replies` to `on_reply` and says whether the exchange is over: the
/// ack or error of a request, the end of a dump (an error if any message of it was marked
/// `NLM_F_DUMP_INTR`), or `None` to read on.
fn take_replies<F>(
    replies: Vec<NetlinkMessage<GenlMessage<F>>>,
    interrupted: &mut bool,
    on_reply: &mut impl FnMut(F),
) -> Option<Result<(), NetlinkError>> {
    for reply in replies {
        if reply.header.flags & NLM_F_DUMP_INTR != 0 {
            *interrupted = true;
        }
        match reply.payload {
            NetlinkPayload::InnerMessage(genl) => on_reply(genl.payload),
            NetlinkPayload::Error(error) => {
                return Some(match error.code {
                    None => Ok(()),
                    Some(code) => Err(NetlinkError::Kernel(-code.get())),
                })
            }
            NetlinkPayload::Done(done) => {
                return Some(match done.code {
                    0 if *interrupted => Err(NetlinkError::Interrupted),
                    0 => Ok(()),
                    code => Err(NetlinkError::Kernel(-code)),
                })
            }
            NetlinkPayload::Overrun(_) => {
                return Some(Err(NetlinkError::Decode(
                    "the kernel reported an overrun".into(),
                )))
            }
            _ => {}
        }
    }
    None
}

/// The netlink messages of one datagram (a dump packs several) that answer request
/// `sequence`; others (a late answer to an earlier request that timed out) are skipped
/// unparsed.
fn split_datagram<M>(datagram: &[u8], sequence: u32) -> Result<Vec<NetlinkMessage<M>>, NetlinkError>
where
    M: NetlinkDeserializable + NetlinkSerializable,
{
    let mut messages = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let buffer =
            NetlinkBuffer::new_checked(rest).map_err(|e| NetlinkError::Decode(e.to_string()))?;
        let length = buffer.length() as usize;
        let (one, _) = rest.split_at(length.min(rest.len()));
        if buffer.sequence_number() == sequence {
            messages.push(
                NetlinkMessage::<M>::deserialize(one)
                    .map_err(|e| NetlinkError::Decode(e.to_string()))?,
            );
        }
        // Messages are 4-byte aligned.
        let aligned = length.div_ceil(4) * 4;
        rest = rest.get(aligned..).unwrap_or_default();
    }
    Ok(messages)
}

/// The kernel's `wireguard` family on one socket.
#[derive(Debug)]
pub(crate) struct WireguardNetlink {
    socket: GenlSocket,
    family: u16,
}

/// What one `set_device` call changes.
#[derive(Debug, Default)]
pub(crate) struct DeviceUpdate<'a> {
    pub private_key: Option<&'a PrivateKey>,
    /// Some(0) asks the kernel for a random port.
    pub listen_port: Option<u16>,
    /// Peers to create or update; their allowed IPs replace the current ones.
    pub peers: &'a [Peer],
    /// Peers to remove.
    pub remove: &'a [PublicKey],
}

/// What `get_device` read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DeviceInfo {
    pub public_key: Option<PublicKey>,
    pub listen_port: u16,
    pub peers: Vec<PeerStats>,
}

impl WireguardNetlink {
    /// Opens a socket and resolves the family. No family means no module:
    /// [`Error::KernelModuleMissing`].
    pub(crate) fn connect() -> Result<Self, Error> {
        let socket = GenlSocket::open()
            .map_err(|e| crate::error::io_context("opening a generic netlink socket", e))?;
        match socket.family_id(WireguardMessage::family_name()) {
            Ok(family) => Ok(WireguardNetlink { socket, family }),
            Err(NetlinkError::Kernel(errno)) if errno == nix::libc::ENOENT => {
                Err(Error::KernelModuleMissing(
                    "the kernel has no generic netlink family `wireguard` (load the wireguard module or use the userspace backend)"
                        .into(),
                ))
            }
            Err(err) => Err(Error::Netlink(format!(
                "resolving the `wireguard` family: {}",
                err.describe()
            ))),
        }
    }

    /// Applies `update` to interface `ifname`, in as many messages as it takes.
    pub(crate) fn set_device(&self, ifname: &str, update: &DeviceUpdate<'_>) -> Result<(), Error> {
        for attributes in set_device_messages(ifname, update) {
            let mut message = GenlMessage::from_payload(WireguardMessage {
                cmd: WireguardCmd::SetDevice,
                attributes,
            });
            message.set_resolved_family_id(self.family);
            let result = self.socket.exchange(&message, Ask::Ack, drop);
            wipe_keys(&mut message.payload.attributes);
            if let Err(err) = result {
                return Err(self.error(ifname, "WG_CMD_SET_DEVICE", update.listen_port, err));
            }
        }
        Ok(())
    }

    /// Reads the interface: its public key, port and peers with their statistics.
    pub(crate) fn get_device(&self, ifname: &str) -> Result<DeviceInfo, Error> {
        let mut message = GenlMessage::from_payload(WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::IfName(ifname.to_owned())],
        });
        message.set_resolved_family_id(self.family);
        let mut attempt = 1;
        loop {
            let mut replies = Vec::new();
            let result = self
                .socket
                .exchange(&message, Ask::Dump, |reply: WireguardMessage| {
                    replies.push(reply)
                });
            match result {
                Ok(()) => return Ok(merge_device_replies(replies)),
                Err(NetlinkError::Interrupted) if attempt < DUMP_ATTEMPTS => {
                    merge_device_replies(replies); // only to wipe the keys
                    attempt += 1;
                }
                Err(err) => {
                    merge_device_replies(replies);
                    return Err(self.error(ifname, "WG_CMD_GET_DEVICE", None, err));
                }
            }
        }
    }

    fn error(&self, ifname: &str, what: &str, port: Option<u16>, err: NetlinkError) -> Error {
        match err {
            NetlinkError::Kernel(errno) if errno == nix::libc::ENODEV => {
                Error::InterfaceGone(format!("interface {ifname} is gone (no such device)"))
            }
            NetlinkError::Kernel(errno) if errno == nix::libc::EADDRINUSE => {
                Error::AddressInUse(port.unwrap_or_default())
            }
            NetlinkError::Kernel(errno)
                if errno == nix::libc::EPERM || errno == nix::libc::EACCES =>
            {
                Error::NoPermission(format!("{what} on {ifname}"))
            }
            NetlinkError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Error::Timeout(format!("{what} on {ifname}: {e}"))
            }
            other => Error::Netlink(format!("{what} on {ifname}: {}", other.describe())),
        }
    }
}

/// The attribute lists of the `WG_CMD_SET_DEVICE` messages that apply `update`, each at most
/// [`SET_MESSAGE_MAX`] bytes on the wire. The first carries the interface settings; removals
/// come before upserts. A peer whose allowed IPs do not fit is continued in the next message
/// under its public key without the replace flag, so the kernel appends (as `wg` does).
pub(crate) fn set_device_messages(
    ifname: &str,
    update: &DeviceUpdate<'_>,
) -> Vec<Vec<WireguardAttribute>> {
    let mut builder = MessageBuilder::new(ifname);
    if let Some(key) = update.private_key {
        builder.push_device(WireguardAttribute::PrivateKey(*key.secret_bytes()));
    }
    if let Some(port) = update.listen_port {
        builder.push_device(WireguardAttribute::ListenPort(port));
    }
    for key in update.remove {
        builder.push_peer(
            vec![
                WireguardPeerAttribute::PublicKey(*key.as_bytes()),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
            ],
            key,
            Vec::new(),
        );
    }
    for peer in update.peers {
        let mut head = vec![
            WireguardPeerAttribute::PublicKey(*peer.public_key.as_bytes()),
            WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
            // Always stated, so an update can also turn keepalive off.
            WireguardPeerAttribute::PersistentKeepalive(peer.persistent_keepalive.unwrap_or(0)),
        ];
        if let Some(endpoint) = peer.endpoint {
            head.push(WireguardPeerAttribute::Endpoint(endpoint));
        }
        let allowed = peer
            .allowed_ips
            .iter()
            .map(|net| allowed_ip(*net))
            .collect();
        builder.push_peer(head, &peer.public_key, allowed);
    }
    builder.finish()
}

/// Packs device attributes and peers into messages of at most [`SET_MESSAGE_MAX`] bytes.
struct MessageBuilder {
    ifname: String,
    done: Vec<Vec<WireguardAttribute>>,
    /// The message being filled: its device attributes (interface name first) and peers.
    device: Vec<WireguardAttribute>,
    peers: Vec<WireguardPeer>,
    /// Bytes the message takes so far, headers and the peers attribute's own header included.
    used: usize,
}

/// An attribute's header (4 bytes), as for the nested peers list.
const NLA_HEADER_LEN: usize = 4;

impl MessageBuilder {
    fn new(ifname: &str) -> Self {
        let mut builder = MessageBuilder {
            ifname: ifname.to_owned(),
            done: Vec::new(),
            device: Vec::new(),
            peers: Vec::new(),
            used: 0,
        };
        builder.start();
        builder
    }

    fn start(&mut self) {
        let name = WireguardAttribute::IfName(self.ifname.clone());
        self.used = HEADERS_LEN + name.buffer_len() + NLA_HEADER_LEN;
        self.device = vec![name];
        self.peers = Vec::new();
    }

    fn push_device(&mut self, attribute: WireguardAttribute) {
        self.used += attribute.buffer_len();
        self.device.push(attribute);
    }

    fn room(&self) -> usize {
        SET_MESSAGE_MAX.saturating_sub(self.used)
    }

    fn flush(&mut self) {
        let mut attributes = std::mem::take(&mut self.device);
        let peers = std::mem::take(&mut self.peers);
        if !peers.is_empty() {
            attributes.push(WireguardAttribute::Peers(peers));
        }
        self.done.push(attributes);
        self.start();
    }

    /// Adds one peer: `head` (public key first), then as many of `allowed` as fit, continuing
    /// in further messages when they do not.
    fn push_peer(
        &mut self,
        head: Vec<WireguardPeerAttribute>,
        key: &PublicKey,
        allowed: Vec<WireguardAllowedIp>,
    ) {
        let mut fragment = head;
        let mut allowed = allowed.into_iter().peekable();
        loop {
            // The peer's own nest header, its attributes, and the allowed IPs' nest header.
            let mut size = NLA_HEADER_LEN
                + fragment.iter().map(|a| a.buffer_len()).sum::<usize>()
                + NLA_HEADER_LEN;
            let first_ip = allowed.peek().map_or(0, |ip| ip.buffer_len());
            if size + first_ip > self.room() && !self.peers.is_empty() {
                self.flush();
            }
            let mut ips = Vec::new();
            while let Some(ip) = allowed.peek() {
                let grown = size + ip.buffer_len();
                // At least one allowed IP per fragment, or a peer with many would never finish.
                if grown > self.room() && !ips.is_empty() {
                    break;
                }
                size = grown;
                ips.extend(allowed.next());
            }
            if !ips.is_empty() {
                fragment.push(WireguardPeerAttribute::AllowedIps(ips));
            } else {
                size -= NLA_HEADER_LEN;
            }
            self.used += size;
            self.peers.push(WireguardPeer(fragment));
            if allowed.peek().is_none() {
                return;
            }
            // The rest goes to the next message, appended to what this one set.
            self.flush();
            fragment = vec![WireguardPeerAttribute::PublicKey(*key.as_bytes())];
        }
    }

    fn finish(mut self) -> Vec<Vec<WireguardAttribute>> {
        // Always at least one message: a device-only update (key, port) or a no-op.
        if !self.peers.is_empty() || self.device.len() > 1 || self.done.is_empty() {
            self.flush();
        }
        self.done
    }
}

fn allowed_ip(net: IpNet) -> WireguardAllowedIp {
    let net = net.trunc();
    let family = match net.addr() {
        IpAddr::V4(_) => WireguardAddressFamily::Ipv4,
        IpAddr::V6(_) => WireguardAddressFamily::Ipv6,
    };
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(net.addr()),
        WireguardAllowedIpAttr::Cidr(net.prefix_len()),
    ])
}

/// Zeroes the private and preshared keys in `attributes` where they lie (the kernel sends the
/// private key in every `GET_DEVICE` answer; `SET_DEVICE` carries it once).
fn wipe_keys(attributes: &mut [WireguardAttribute]) {
    for attribute in attributes {
        match attribute {
            WireguardAttribute::PrivateKey(key) => key.zeroize(),
            WireguardAttribute::Peers(peers) => {
                for peer in peers.iter_mut() {
                    for part in peer.0.iter_mut() {
                        if let WireguardPeerAttribute::PresharedKey(key) = part {
                            key.zeroize();
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Puts a `WG_CMD_GET_DEVICE` dump back together. The kernel fills each message as far as it
/// goes; a peer whose allowed IPs overflow one message reappears at the head of the next with
/// its public key and the rest of them.
pub(crate) fn merge_device_replies(replies: Vec<WireguardMessage>) -> DeviceInfo {
    let mut device = DeviceInfo::default();
    for mut reply in replies {
        wipe_keys(&mut reply.attributes);
        for attribute in reply.attributes {
            match attribute {
                WireguardAttribute::PublicKey(key) if key != [0; 32] => {
                    device.public_key = Some(PublicKey::from_bytes(key));
                }
                WireguardAttribute::ListenPort(port) => device.listen_port = port,
                WireguardAttribute::Peers(peers) => {
                    for peer in peers {
                        let Some(stats) = peer_stats(peer) else {
                            continue;
                        };
                        match device.peers.last_mut() {
                            Some(last) if last.public_key == stats.public_key => {
                                last.allowed_ips.extend(stats.allowed_ips);
                            }
                            _ => device.peers.push(stats),
                        }
                    }
                }
                _ => {}
            }
        }
    }
    device
}

/// One peer of a dump; none without a public key (the kernel always sends one).
fn peer_stats(peer: WireguardPeer) -> Option<PeerStats> {
    let mut public_key = None;
    let mut stats = PeerStats {
        public_key: PublicKey::from_bytes([0; 32]),
        endpoint: None,
        allowed_ips: Vec::new(),
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: 0,
    };
    for attribute in peer.0 {
        match attribute {
            WireguardPeerAttribute::PublicKey(key) => public_key = Some(PublicKey::from_bytes(key)),
            WireguardPeerAttribute::Endpoint(endpoint) => stats.endpoint = Some(endpoint),
            WireguardPeerAttribute::LastHandshake(time) => {
                // A Unix time; zero is "never".
                stats.last_handshake = (time.seconds > 0 || time.nano_seconds > 0)
                    .then(|| {
                        let seconds = u64::try_from(time.seconds).unwrap_or(0);
                        let nanos =
                            u32::try_from(time.nano_seconds.clamp(0, 999_999_999)).unwrap_or(0);
                        UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
                    })
                    .flatten();
            }
            WireguardPeerAttribute::RxBytes(bytes) => stats.rx_bytes = bytes,
            WireguardPeerAttribute::TxBytes(bytes) => stats.tx_bytes = bytes,
            WireguardPeerAttribute::AllowedIps(ips) => {
                stats.allowed_ips.extend(ips.iter().filter_map(|ip| {
                    let mut addr = None;
                    let mut prefix = None;
                    for part in ip.iter() {
                        match part {
                            WireguardAllowedIpAttr::IpAddr(a) => addr = Some(*a),
                            WireguardAllowedIpAttr::Cidr(c) => prefix = Some(*c),
                            _ => {}
                        }
                    }
                    IpNet::new(addr?, prefix?).ok().map(|n| n.trunc())
                }));
            }
            _ => {}
        }
    }
    stats.public_key = public_key?;
    Some(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use netlink_packet_core::{ParseableParametrized as _, NLM_F_MULTIPART};
    use netlink_packet_generic::GenlHeader;
    use netlink_packet_wireguard::WireguardTimeSpec;

    use super::*;

    fn unix(seconds: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn key(i: u32) -> PublicKey {
        let mut bytes = [7u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        PublicKey::from_bytes(bytes)
    }

    fn peer(i: u32, ips: usize) -> Peer {
        Peer {
            public_key: key(i),
            allowed_ips: (0..ips)
                .map(|n| {
                    let [_, _, c, d] = u32::try_from(n).unwrap().to_be_bytes();
                    format!("10.{}.{c}.{d}/32", i % 250).parse().unwrap()
                })
                .collect(),
            endpoint: (i % 2 == 0).then(|| "192.0.2.1:51820".parse().unwrap()),
            persistent_keepalive: (i % 3 == 0).then_some(25),
        }
    }

    /// Serializes the messages as they would be sent and parses them back: what the kernel
    /// would read, and the size it would receive.
    fn on_the_wire(messages: &[Vec<WireguardAttribute>]) -> Vec<(usize, WireguardMessage)> {
        messages
            .iter()
            .map(|attributes| {
                let mut message = GenlMessage::from_payload(WireguardMessage {
                    cmd: WireguardCmd::SetDevice,
                    attributes: attributes.clone(),
                });
                message.set_resolved_family_id(30);
                let mut nl = NetlinkMessage::from(message);
                nl.finalize();
                let mut buffer = vec![0u8; nl.buffer_len()];
                nl.serialize(&mut buffer);
                let parsed =
                    NetlinkMessage::<GenlMessage<WireguardMessage>>::deserialize(&buffer).unwrap();
                let NetlinkPayload::InnerMessage(genl) = parsed.payload else {
                    panic!("not a generic netlink message");
                };
                assert_eq!(genl.header.cmd, 1, "WG_CMD_SET_DEVICE");
                (buffer.len(), genl.payload)
            })
            .collect()
    }

    /// Replays SET messages the way the kernel applies them, into (key, allowed IPs, removed).
    fn apply(messages: &[(usize, WireguardMessage)]) -> Vec<(PublicKey, Vec<IpNet>, bool)> {
        let mut state: Vec<(PublicKey, Vec<IpNet>, bool)> = Vec::new();
        for (_, message) in messages {
            assert!(
                matches!(message.attributes.first(), Some(WireguardAttribute::IfName(n)) if n == "wg0"),
                "every message names the interface first"
            );
            for attribute in &message.attributes {
                let WireguardAttribute::Peers(peers) = attribute else {
                    continue;
                };
                for peer in peers {
                    let flags = peer.iter().find_map(|a| match a {
                        WireguardPeerAttribute::Flags(f) => Some(*f),
                        _ => None,
                    });
                    let stats = peer_stats(peer.clone()).unwrap();
                    let entry = match state.iter_mut().find(|(k, ..)| *k == stats.public_key) {
                        Some(entry) => entry,
                        None => {
                            state.push((stats.public_key, Vec::new(), false));
                            state.last_mut().unwrap()
                        }
                    };
                    if flags.is_some_and(|f| f.contains(WireguardPeerFlags::RemoveMe)) {
                        entry.2 = true;
                        continue;
                    }
                    if flags.is_some_and(|f| f.contains(WireguardPeerFlags::ReplaceAllowedIps)) {
                        entry.1.clear();
                    }
                    entry.1.extend(stats.allowed_ips);
                }
            }
        }
        state
    }

    #[test]
    fn a_device_update_is_one_message_with_the_key_and_port() {
        let private = PrivateKey::generate();
        let update = DeviceUpdate {
            private_key: Some(&private),
            listen_port: Some(51820),
            ..DeviceUpdate::default()
        };
        let wire = on_the_wire(&set_device_messages("wg0", &update));
        assert_eq!(wire.len(), 1);
        assert_eq!(
            wire[0].1.attributes,
            vec![
                WireguardAttribute::IfName("wg0".into()),
                WireguardAttribute::PrivateKey(*private.secret_bytes()),
                WireguardAttribute::ListenPort(51820),
            ]
        );
    }

    #[test]
    fn a_peer_carries_replace_keepalive_endpoint_and_masked_allowed_ips() {
        let peers = [Peer {
            public_key: key(1),
            allowed_ips: vec![
                "10.0.0.5/24".parse().unwrap(),
                "fd00::2/128".parse().unwrap(),
            ],
            endpoint: Some("[2001:db8::1]:51820".parse().unwrap()),
            persistent_keepalive: None,
        }];
        let update = DeviceUpdate {
            peers: &peers,
            ..DeviceUpdate::default()
        };
        let wire = on_the_wire(&set_device_messages("wg0", &update));
        let [(_, message)] = &wire[..] else {
            panic!("{wire:?}");
        };
        let Some(WireguardAttribute::Peers(sent)) = message.attributes.get(1) else {
            panic!("{message:?}");
        };
        assert_eq!(
            sent[0].0,
            vec![
                WireguardPeerAttribute::PublicKey(*key(1).as_bytes()),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
                WireguardPeerAttribute::PersistentKeepalive(0),
                WireguardPeerAttribute::Endpoint("[2001:db8::1]:51820".parse().unwrap()),
                WireguardPeerAttribute::AllowedIps(vec![
                    allowed_ip("10.0.0.0/24".parse().unwrap()),
                    allowed_ip("fd00::2/128".parse().unwrap()),
                ]),
            ]
        );
    }

    #[test]
    fn a_large_peer_set_is_split_into_page_sized_messages() {
        let peers: Vec<Peer> = (0..2_000).map(|i| peer(i, 2)).collect();
        let remove: Vec<PublicKey> = (5_000..5_300).map(key).collect();
        let private = PrivateKey::generate();
        let update = DeviceUpdate {
            private_key: Some(&private),
            listen_port: Some(51820),
            peers: &peers,
            remove: &remove,
        };
        let wire = on_the_wire(&set_device_messages("wg0", &update));
        assert!(wire.len() > 30, "{} messages", wire.len());
        for (size, _) in &wire {
            assert!(*size <= SET_MESSAGE_MAX, "a message of {size} bytes");
        }
        // Pages are filled, not one peer per message.
        let total: usize = wire.iter().map(|(size, _)| size).sum();
        assert!(
            total / wire.len() > SET_MESSAGE_MAX * 3 / 4,
            "{total} bytes in {} messages",
            wire.len()
        );
        // Only the first message sets the key and the port.
        let with_key = wire
            .iter()
            .filter(|(_, m)| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, WireguardAttribute::PrivateKey(_)))
            })
            .count();
        assert_eq!(with_key, 1);

        let state = apply(&wire);
        assert_eq!(state.len(), 2_300);
        assert_eq!(state.iter().filter(|(.., removed)| *removed).count(), 300);
        for p in &peers {
            let (_, ips, removed) = state.iter().find(|(k, ..)| *k == p.public_key).unwrap();
            assert!(!removed);
            assert_eq!(ips, &p.allowed_ips);
        }
    }

    #[test]
    fn a_peer_with_more_allowed_ips_than_a_page_continues_without_replacing() {
        let big = peer(1, 500);
        let peers = [peer(0, 1), big.clone(), peer(2, 1)];
        let update = DeviceUpdate {
            peers: &peers,
            ..DeviceUpdate::default()
        };
        let wire = on_the_wire(&set_device_messages("wg0", &update));
        assert!(
            wire.len() >= 4,
            "500 IPv4 allowed IPs take 14 KB: {} messages",
            wire.len()
        );
        for (size, _) in &wire {
            assert!(*size <= SET_MESSAGE_MAX, "a message of {size} bytes");
        }
        // Continuations name the peer and carry no flags: the kernel appends.
        let fragments: Vec<&WireguardPeer> = wire
            .iter()
            .flat_map(|(_, m)| m.attributes.iter())
            .filter_map(|a| match a {
                WireguardAttribute::Peers(p) => Some(p.iter()),
                _ => None,
            })
            .flatten()
            .filter(|p| p.first() == Some(&WireguardPeerAttribute::PublicKey(*key(1).as_bytes())))
            .collect();
        assert!(fragments.len() >= 4);
        for continuation in &fragments[1..] {
            assert!(
                !continuation
                    .iter()
                    .any(|a| matches!(a, WireguardPeerAttribute::Flags(_))),
                "{continuation:?}"
            );
        }
        let state = apply(&wire);
        assert_eq!(state.len(), 3);
        assert_eq!(state[1].1, big.allowed_ips, "all 500, in order");
        assert_eq!(state[2].1, peers[2].allowed_ips);
    }

    #[test]
    fn an_empty_update_is_one_message_naming_the_interface() {
        let wire = on_the_wire(&set_device_messages("wg0", &DeviceUpdate::default()));
        assert_eq!(wire.len(), 1);
        assert_eq!(
            wire[0].1.attributes,
            vec![WireguardAttribute::IfName("wg0".into())]
        );
    }

    #[test]
    fn a_dump_that_cuts_a_peer_is_merged() {
        let reply = |attributes| WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes,
        };
        let with_ips = |k: u32, nets: &[&str], extra: Vec<WireguardPeerAttribute>| {
            let mut attrs = vec![WireguardPeerAttribute::PublicKey(*key(k).as_bytes())];
            attrs.extend(extra);
            attrs.push(WireguardPeerAttribute::AllowedIps(
                nets.iter()
                    .map(|n| allowed_ip(n.parse().unwrap()))
                    .collect(),
            ));
            WireguardPeer(attrs)
        };
        let own = PrivateKey::generate();
        let replies = vec![
            reply(vec![
                WireguardAttribute::IfName("wg0".into()),
                WireguardAttribute::PrivateKey(*own.secret_bytes()),
                WireguardAttribute::PublicKey(*own.public_key().as_bytes()),
                WireguardAttribute::ListenPort(51820),
                WireguardAttribute::Peers(vec![
                    with_ips(
                        1,
                        &["10.0.0.2/32"],
                        vec![
                            WireguardPeerAttribute::Endpoint("192.0.2.9:4000".parse().unwrap()),
                            WireguardPeerAttribute::LastHandshake(WireguardTimeSpec {
                                seconds: 1_750_000_000,
                                nano_seconds: 0,
                            }),
                            WireguardPeerAttribute::RxBytes(10),
                            WireguardPeerAttribute::TxBytes(20),
                        ],
                    ),
                    with_ips(2, &["10.0.0.3/32", "10.1.0.0/16"], vec![]),
                ]),
            ]),
            reply(vec![
                WireguardAttribute::IfName("wg0".into()),
                WireguardAttribute::Peers(vec![
                    with_ips(2, &["10.2.0.0/16"], vec![]),
                    with_ips(3, &[], vec![]),
                ]),
            ]),
        ];
        let device = merge_device_replies(replies);
        assert_eq!(device.public_key, Some(own.public_key()));
        assert_eq!(device.listen_port, 51820);
        assert_eq!(device.peers.len(), 3);
        assert_eq!(device.peers[0].last_handshake, Some(unix(1_750_000_000)));
        assert_eq!(
            device.peers[0].endpoint,
            Some("192.0.2.9:4000".parse().unwrap())
        );
        assert_eq!(
            (device.peers[0].rx_bytes, device.peers[0].tx_bytes),
            (10, 20)
        );
        assert_eq!(
            device.peers[1].allowed_ips.len(),
            3,
            "{:?}",
            device.peers[1]
        );
        assert_eq!(device.peers[2].last_handshake, None);
        assert!(device.peers[2].allowed_ips.is_empty());
    }

    #[test]
    fn an_interrupted_dump_is_read_to_its_end_and_reported() {
        let part = |flags: u16, port: u16| {
            let mut header = NetlinkHeader::default();
            header.flags = flags;
            NetlinkMessage::new(
                header,
                NetlinkPayload::InnerMessage(GenlMessage::from_payload(WireguardMessage {
                    cmd: WireguardCmd::GetDevice,
                    attributes: vec![WireguardAttribute::ListenPort(port)],
                })),
            )
        };
        let done = || {
            NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::Done(netlink_packet_core::DoneMessage::default()),
            )
        };
        let mut seen = Vec::new();
        let mut on_reply = |m: WireguardMessage| seen.push(m);
        let mut interrupted = false;
        // The first datagram is marked; the dump goes on; its end reports the interruption.
        let first = vec![part(NLM_F_MULTIPART | NLM_F_DUMP_INTR, 1)];
        assert!(take_replies(first, &mut interrupted, &mut on_reply).is_none());
        let last = vec![part(NLM_F_MULTIPART, 2), done()];
        assert!(matches!(
            take_replies(last, &mut interrupted, &mut on_reply),
            Some(Err(NetlinkError::Interrupted))
        ));
        assert_eq!(seen.len(), 2, "every message was read");
        // An unmarked dump ends well.
        let mut interrupted = false;
        let whole = vec![part(NLM_F_MULTIPART, 3), done()];
        assert!(matches!(
            take_replies(whole, &mut interrupted, &mut |_: WireguardMessage| {}),
            Some(Ok(()))
        ));
    }

    #[test]
    fn keys_are_wiped_where_they_lie() {
        let private = PrivateKey::generate();
        let mut attributes = vec![
            WireguardAttribute::IfName("wg0".into()),
            WireguardAttribute::PrivateKey(*private.secret_bytes()),
            WireguardAttribute::Peers(vec![WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(*key(1).as_bytes()),
                WireguardPeerAttribute::PresharedKey([9; 32]),
            ])]),
        ];
        wipe_keys(&mut attributes);
        assert_eq!(attributes[1], WireguardAttribute::PrivateKey([0; 32]));
        let WireguardAttribute::Peers(peers) = &attributes[2] else {
            panic!("{attributes:?}");
        };
        assert_eq!(peers[0].0[1], WireguardPeerAttribute::PresharedKey([0; 32]));
        assert_eq!(
            peers[0].0[0],
            WireguardPeerAttribute::PublicKey(*key(1).as_bytes()),
            "public keys stay"
        );
    }

    #[test]
    fn a_dump_round_trips_through_the_wire_format() {
        // Parse with the same path exchange() uses, from a serialized reply.
        let message = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::ListenPort(7)],
        };
        let mut buffer = vec![0u8; message.buffer_len()];
        message.emit(&mut buffer);
        let parsed =
            WireguardMessage::parse_with_param(&buffer, GenlHeader { cmd: 0, version: 1 }).unwrap();
        assert_eq!(merge_device_replies(vec![parsed]).listen_port, 7);
    }

    #[test]
    fn a_late_answer_to_an_earlier_request_is_skipped_unparsed() {
        // One datagram: a stale WireGuard answer (sequence 7; not a controller message, so
        // parsing it as one would fail) and the ack of the current request (sequence 8).
        let mut stale_header = NetlinkHeader::default();
        stale_header.sequence_number = 7;
        let mut stale_genl = GenlMessage::from_payload(WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::ListenPort(1)],
        });
        stale_genl.set_resolved_family_id(30);
        let mut stale = NetlinkMessage::new(stale_header, NetlinkPayload::InnerMessage(stale_genl));
        stale.finalize();
        let mut ack_header = NetlinkHeader::default();
        ack_header.sequence_number = 8;
        let mut ack = NetlinkMessage::<GenlMessage<GenlCtrl>>::new(
            ack_header,
            NetlinkPayload::Error(netlink_packet_core::ErrorMessage::default()),
        );
        ack.finalize();
        let mut datagram = vec![0u8; stale.buffer_len() + ack.buffer_len()];
        let (first, second) = datagram.split_at_mut(stale.buffer_len());
        stale.serialize(first);
        ack.serialize(second);
        assert!(
            split_datagram::<GenlMessage<GenlCtrl>>(&datagram, 7).is_err(),
            "the stale message does not parse as a controller message"
        );
        let current = split_datagram::<GenlMessage<GenlCtrl>>(&datagram, 8).unwrap();
        assert_eq!(current.len(), 1);
        assert!(matches!(&current[0].payload, NetlinkPayload::Error(e) if e.code.is_none()));
    }

    #[test]
    fn the_kernel_answers_the_controller_family_and_refuses_unknown_ones() {
        // The real kernel, on the family every kernel has: the request/ack path, a reply
        // parsed, and a kernel error mapped to its errno.
        let socket = GenlSocket::open().unwrap();
        assert_eq!(socket.family_id("nlctrl").unwrap(), 16, "GENL_ID_CTRL");
        match socket.family_id("watchgrid-none") {
            Err(NetlinkError::Kernel(errno)) => assert_eq!(errno, nix::libc::ENOENT),
            other => panic!("an unknown family: {other:?}"),
        }
        // The socket is still in step after an error.
        assert_eq!(socket.family_id("nlctrl").unwrap(), 16);
    }

    #[test]
    fn a_dump_reads_every_message_until_done() {
        // CTRL_CMD_GETFAMILY as a dump lists every family, over several messages.
        let socket = GenlSocket::open().unwrap();
        let mut names = Vec::new();
        socket
            .exchange(
                &GenlMessage::from_payload(GenlCtrl {
                    cmd: GenlCtrlCmd::GetFamily,
                    nlas: Vec::new(),
                }),
                Ask::Dump,
                |reply: GenlCtrl| {
                    names.extend(reply.nlas.into_iter().filter_map(|nla| match nla {
                        GenlCtrlAttrs::FamilyName(name) => Some(name),
                        _ => None,
                    }))
                },
            )
            .unwrap();
        assert!(names.iter().any(|n| n == "nlctrl"), "{names:?}");
        assert!(names.len() > 3, "{names:?}");
        // And the socket still answers a request afterwards.
        assert_eq!(socket.family_id("nlctrl").unwrap(), 16);
    }

    #[test]
    fn without_the_module_connect_says_so() {
        let has_family = GenlSocket::open().unwrap().family_id("wireguard").is_ok();
        match WireguardNetlink::connect() {
            Ok(_) => assert!(has_family),
            Err(Error::KernelModuleMissing(message)) => {
                assert!(!has_family);
                assert!(message.contains("userspace"), "{message}");
            }
            Err(other) => panic!("connect: {other}"),
        }
    }
}
