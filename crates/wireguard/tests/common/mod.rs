//! Shared set-up for the namespace tests: two namespaces joined by a veth pair, with a thread in
//! each to open and check interfaces there.

#![allow(dead_code, reason = "each test file uses a different part")]
#![allow(
    clippy::unwrap_used,
    reason = "fixtures panic with a message on a broken host"
)]

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use watchgrid_wireguard::testing::{
    require_root, require_tool, unique_name, veth_pair, Netns, NsThread,
};
use watchgrid_wireguard::{
    open, Backend, BackendKind, Error, InterfaceSpec, Peer, PeerStats, PrivateKey, PublicKey,
    UserspaceInterface,
};

/// Underlay addresses on the veth pair (inside the test's own namespaces only).
pub const UNDERLAY_A: &str = "10.231.0.1";
pub const UNDERLAY_B: &str = "10.231.0.2";
/// Tunnel addresses.
pub const TUNNEL_A: &str = "10.77.0.1";
pub const TUNNEL_B: &str = "10.77.0.2";

/// One side: a namespace and a thread inside it. Dropped thread first, then namespace.
pub struct Side {
    pub thread: NsThread,
    pub ns: Netns,
}

impl Side {
    /// Opens an interface inside this side's namespace.
    pub fn open(&self, spec: InterfaceSpec, kind: BackendKind) -> Result<Arc<dyn Backend>, Error> {
        self.thread.run(move || open(&spec, kind).map(Arc::from))
    }

    /// Opens a userspace interface inside this side's namespace, as its own type.
    pub fn open_userspace(&self, spec: InterfaceSpec) -> Arc<UserspaceInterface> {
        self.thread
            .run(move || UserspaceInterface::open(&spec).map(Arc::new))
            .unwrap()
    }

    /// Runs `check()` inside the namespace (it looks up the link there).
    pub fn check(&self, iface: &Arc<dyn Backend>) -> Result<(), Error> {
        let iface = Arc::clone(iface);
        self.thread.run(move || iface.check())
    }

    /// Drops the last handle to an interface inside the namespace.
    pub fn close(&self, iface: Arc<dyn Backend>) {
        assert_eq!(
            Arc::strong_count(&iface),
            1,
            "another handle to the interface is still alive"
        );
        self.thread.run(move || drop(iface));
    }

    /// Whether a link of this name exists in the namespace.
    pub fn has_link(&self, name: &str) -> bool {
        self.ns
            .exec("ip", &["link", "show", "dev", name])
            .status
            .success()
    }

    pub fn ping(&self, address: &str, count: u32) -> bool {
        self.ns.ping(address, count)
    }
}

/// Two namespaces joined by a veth pair: `a` has UNDERLAY_A, `b` has UNDERLAY_B.
pub fn pair() -> (Side, Side) {
    require_root();
    require_tool("ping", "iputils-ping");
    let ns_a = Netns::new("wgta");
    let ns_b = Netns::new("wgtb");
    veth_pair(
        &ns_a,
        &format!("{UNDERLAY_A}/24"),
        &ns_b,
        &format!("{UNDERLAY_B}/24"),
    );
    let a = Side {
        thread: NsThread::enter(&ns_a),
        ns: ns_a,
    };
    let b = Side {
        thread: NsThread::enter(&ns_b),
        ns: ns_b,
    };
    assert!(
        a.ping(UNDERLAY_B, 1),
        "the veth pair does not carry traffic"
    );
    (a, b)
}

/// A spec with a fresh key and a unique name.
pub fn spec(prefix: &str, address: &str, port: Option<u16>) -> InterfaceSpec {
    InterfaceSpec {
        name: unique_name(prefix),
        private_key: PrivateKey::generate(),
        listen_port: port,
        addresses: vec![format!("{address}/24").parse().unwrap()],
        mtu: None,
    }
}

/// A peer routed to one tunnel address.
pub fn peer(key: PublicKey, tunnel_ip: &str, endpoint: Option<String>) -> Peer {
    Peer {
        public_key: key,
        allowed_ips: vec![format!("{tunnel_ip}/32").parse().unwrap()],
        endpoint: endpoint.map(|e| e.parse().unwrap()),
        persistent_keepalive: None,
    }
}

/// The stats of one peer, or a panic listing what is there.
pub fn stats_of(iface: &dyn Backend, key: &PublicKey) -> PeerStats {
    let peers = iface.peers().unwrap();
    peers
        .iter()
        .find(|p| p.public_key == *key)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {key} in {peers:?}"))
}

/// Asserts a handshake within the last minute and traffic both ways.
pub fn assert_recent_handshake_and_traffic(stats: &PeerStats) {
    let handshake = stats
        .last_handshake
        .unwrap_or_else(|| panic!("no handshake: {stats:?}"));
    let age = SystemTime::now()
        .duration_since(handshake)
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(60),
        "handshake {age:?} ago: {stats:?}"
    );
    assert!(
        stats.rx_bytes > 0 && stats.tx_bytes > 0,
        "no traffic counted: {stats:?}"
    );
}

/// The UAPI socket path of interface `name`.
pub fn socket_of(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/var/run/wireguard/{name}.sock"))
}

/// Sends one raw request to interface `name`'s UAPI socket and returns the whole answer (the
/// server closes the connection after it).
pub fn raw_uapi(name: &str, request: &str) -> String {
    let mut stream = UnixStream::connect(socket_of(name)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A key in the hex form the UAPI uses.
pub fn hex(key: &PublicKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
