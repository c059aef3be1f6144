//! The agent's side of the data plane, and the only module that uses `watchgrid-wireguard`:
//! key generation, the interface with the server as its one peer, and a read-only look at an
//! interface another process runs (for `status`). The wireguard crate blocks; every call here
//! runs on tokio's blocking pool.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;
use tokio::sync::oneshot;
use watchgrid_wireguard::{
    self as wg, Backend, BackendKind, InterfaceSpec, Peer, PeerStats, PrivateKey, PublicKey,
};

use crate::error::AgentError;
use crate::net;
use crate::state::{Enrollment, TunnelSnapshot};

/// Seconds between keepalives to the server: holds NAT mappings open so the server can reach
/// the device at any time.
pub const PERSISTENT_KEEPALIVE: u16 = 25;

/// A fresh WireGuard key pair, base64. `Debug` hides the private key.
#[derive(Clone)]
pub struct KeyPair {
    pub private_key: String,
    pub public_key: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_key", &"***")
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// A new key pair from the operating system's random generator, as `wg genkey | wg pubkey`.
pub fn generate_keypair() -> KeyPair {
    let private = PrivateKey::generate();
    KeyPair {
        public_key: private.public_key().to_base64(),
        private_key: private.to_base64(),
    }
}

/// Whether `text` is a WireGuard public key (32 bytes of base64).
pub fn is_public_key(text: &str) -> bool {
    text.trim().parse::<PublicKey>().is_ok()
}

/// The public key of a base64 private key.
#[cfg(test)]
pub fn public_key_of(private_key: &str) -> Result<String, String> {
    private_key
        .parse::<PrivateKey>()
        .map(|key| key.public_key().to_base64())
        .map_err(|e| e.to_string())
}

/// Check an interface name as the wireguard crate will (for the argument parser).
pub fn check_interface_name(name: &str) -> Result<(), String> {
    wg::validate_interface_name(name).map_err(|e| e.to_string())
}

/// How often the watchdog checks that the interface still runs.
const WATCHDOG_PERIOD: Duration = Duration::from_secs(1);
/// Failed checks in a row that mean the interface is gone (deleted by someone, or its
/// device stopped).
const WATCHDOG_FAILURES: u32 = 2;
/// How long a configuration call or a counter read may take (the wireguard crate has its own
/// UAPI timeouts; this bounds everything else, such as a stuck `ip` command).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent's interface, up, with the server as its one peer. Dropping it without
/// [`Tunnel::close`] also tears the interface down, but blocks the calling thread.
#[derive(Debug)]
pub struct Tunnel {
    backend: Arc<dyn Backend>,
    interface: String,
    server_key: PublicKey,
    /// The server's overlay address as a host route (/32 or /128): all the server peer is
    /// allowed, so nothing of the overlay but the server is reached through the tunnel.
    server_address: IpNet,
    watchdog: Option<tokio::task::JoinHandle<()>>,
}

impl Tunnel {
    /// Bring up `interface` with the enrollment's key and overlay address, and set the server
    /// as its peer at `endpoint`, allowed the server's overlay address only (devices do not
    /// reach each other; the server's address carries the agent API, Magic DNS and the SSH
    /// relay).
    pub async fn open(
        interface: &str,
        enrollment: &Enrollment,
        endpoint: SocketAddr,
    ) -> Result<Tunnel, AgentError> {
        let damaged = |what: &str, reason: String| {
            AgentError::Failed(format!(
                "the enrollment's {what} is unusable ({reason}); re-enroll with --force"
            ))
        };
        let private_key: PrivateKey = enrollment
            .private_key
            .parse()
            .map_err(|e: wg::Error| damaged("private key", e.to_string()))?;
        let server_key: PublicKey = enrollment
            .server_public_key
            .parse()
            .map_err(|e: wg::Error| damaged("server key", e.to_string()))?;
        let address = net::interface_address(&enrollment.overlay_address)
            .map_err(|e| damaged("overlay address", e))?;
        let server_address = server_host_route(&enrollment.server_overlay_ip)
            .map_err(|e| damaged("server overlay address", e))?;
        let spec = InterfaceSpec {
            name: interface.to_string(),
            private_key,
            listen_port: None,
            addresses: vec![address],
            mtu: None,
        };
        let name = interface.to_string();
        let backend = blocking(move || {
            let backend: Arc<dyn Backend> = Arc::from(wg::open(&spec, BackendKind::Auto)?);
            Ok(backend)
        })
        .await
        .map_err(|e| tunnel_error(&name, "cannot bring up", &e))?;
        let tunnel = Tunnel {
            backend,
            interface: interface.to_string(),
            server_key,
            server_address,
            watchdog: None,
        };
        if let Err(err) = tunnel.set_endpoint(endpoint).await {
            tunnel.close().await;
            return Err(err);
        }
        Ok(tunnel)
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// A receiver that completes when the interface stops on its own (deleted by someone, or
    /// its device stopped), so that `run` ends instead of heartbeating into nothing.
    pub fn watch(&mut self) -> oneshot::Receiver<()> {
        let (gone_tx, gone_rx) = oneshot::channel();
        let backend = Arc::clone(&self.backend);
        let interface = self.interface.clone();
        self.watchdog = Some(tokio::spawn(async move {
            let mut failures = 0;
            loop {
                tokio::time::sleep(WATCHDOG_PERIOD).await;
                let probe = Arc::clone(&backend);
                match with_timeout(blocking(move || probe.check())).await {
                    Ok(()) => failures = 0,
                    Err(err) => {
                        failures += 1;
                        if failures >= WATCHDOG_FAILURES {
                            tracing::debug!(interface = %interface, error = %err, "WireGuard interface gone");
                            let _ = gone_tx.send(());
                            return;
                        }
                    }
                }
            }
        }));
        gone_rx
    }

    /// (Re)configure the server peer with this endpoint.
    pub async fn set_endpoint(&self, endpoint: SocketAddr) -> Result<(), AgentError> {
        let peer = Peer {
            public_key: self.server_key,
            allowed_ips: vec![self.server_address],
            endpoint: Some(endpoint),
            persistent_keepalive: Some(PERSISTENT_KEEPALIVE),
        };
        let backend = Arc::clone(&self.backend);
        with_timeout(blocking(move || backend.set_peer(&peer)))
            .await
            .map_err(|e| tunnel_error(&self.interface, "cannot configure the server peer on", &e))
    }

    /// The server peer's counters; `None` when the interface cannot say.
    pub async fn snapshot(&self) -> Option<TunnelSnapshot> {
        let backend = Arc::clone(&self.backend);
        match with_timeout(blocking(move || backend.peers())).await {
            Ok(peers) => Some(server_snapshot(&self.interface, &self.server_key, &peers)),
            Err(err) => {
                tracing::warn!(interface = %self.interface, error = %err, "cannot read the tunnel's state");
                None
            }
        }
    }

    /// Tear the interface down (userspace: up to a second or two while boringtun's threads
    /// stop; kernel: the link is deleted).
    pub async fn close(self) {
        let Tunnel {
            backend, watchdog, ..
        } = self;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        let _ = tokio::task::spawn_blocking(move || drop(backend)).await;
    }
}

/// `ip` as a host route: `/32` for IPv4, `/128` for IPv6.
fn server_host_route(ip: &str) -> Result<IpNet, String> {
    let ip: std::net::IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok(IpNet::from(ip))
}

/// The server peer among `peers`, as a snapshot (zeros when it is not configured).
fn server_snapshot(interface: &str, server_key: &PublicKey, peers: &[PeerStats]) -> TunnelSnapshot {
    let peer = peers.iter().find(|p| &p.public_key == server_key);
    TunnelSnapshot {
        interface: interface.to_string(),
        endpoint: peer.and_then(|p| p.endpoint).map(|e| e.to_string()),
        last_handshake_at: peer.and_then(|p| p.last_handshake).and_then(rfc3339),
        rx_bytes: peer.map_or(0, |p| p.rx_bytes),
        tx_bytes: peer.map_or(0, |p| p.tx_bytes),
    }
}

fn rfc3339(time: SystemTime) -> Option<String> {
    let time: DateTime<Utc> = time.into();
    Some(time.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Look at `interface` as another process runs it (its UAPI socket for userspace, `wg` for
/// the kernel). `Ok(None)` when the interface answers but has no server peer; `Err` says why
/// it could not be asked.
pub async fn inspect(interface: &str, server_key: &str) -> Result<Option<TunnelSnapshot>, String> {
    let server_key: PublicKey = server_key
        .parse()
        .map_err(|e: wg::Error| format!("the pinned key is unusable: {e}"))?;
    let name = interface.to_string();
    let peers = with_timeout(blocking(move || wg::attach(&name)?.peers()))
        .await
        .map_err(|e| e.to_string())?;
    let snapshot = server_snapshot(interface, &server_key, &peers);
    Ok(peers
        .iter()
        .any(|p| p.public_key == server_key)
        .then_some(snapshot))
}

/// Run a blocking wireguard call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, wg::Error> + Send + 'static,
) -> Result<T, wg::Error> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(wg::Error::Device(format!("the WireGuard call failed: {e}"))))
}

/// [`CALL_TIMEOUT`] around a wireguard call.
async fn with_timeout<T>(
    call: impl std::future::Future<Output = Result<T, wg::Error>>,
) -> Result<T, wg::Error> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(wg::Error::Uapi(format!(
                "no answer within {} s",
                CALL_TIMEOUT.as_secs()
            )))
        })
}

fn tunnel_error(interface: &str, doing: &str, err: &wg::Error) -> AgentError {
    AgentError::Failed(format!("{doing} WireGuard interface {interface}: {err}"))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    #[test]
    fn key_pairs() {
        let keys = generate_keypair();
        assert!(is_public_key(&keys.public_key));
        assert_eq!(public_key_of(&keys.private_key).unwrap(), keys.public_key);
        assert_ne!(generate_keypair().public_key, keys.public_key);
        assert!(!format!("{keys:?}").contains(&keys.private_key));
        assert!(!is_public_key("not-a-key"));
        assert!(!is_public_key("AAAA"));
    }

    #[test]
    fn the_server_peer_is_allowed_its_own_address_only() {
        assert_eq!(
            server_host_route("100.64.0.1").unwrap().to_string(),
            "100.64.0.1/32"
        );
        assert_eq!(
            server_host_route("fd7a::1").unwrap().to_string(),
            "fd7a::1/128"
        );
        assert!(server_host_route("100.64.0.0/10").is_err());
    }

    #[test]
    fn the_server_peer_is_picked_out() {
        let server: PublicKey = generate_keypair().public_key.parse().unwrap();
        let other: PublicKey = generate_keypair().public_key.parse().unwrap();
        let stats = |key, rx| PeerStats {
            public_key: key,
            endpoint: Some("192.0.2.1:51820".parse().unwrap()),
            allowed_ips: vec![],
            last_handshake: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_738_314_000)),
            rx_bytes: rx,
            tx_bytes: 7,
        };
        let snapshot = server_snapshot("wg0", &server, &[stats(other, 1), stats(server, 2)]);
        assert_eq!(
            snapshot,
            TunnelSnapshot {
                interface: "wg0".into(),
                endpoint: Some("192.0.2.1:51820".into()),
                last_handshake_at: Some("2025-01-31T09:00:00Z".into()),
                rx_bytes: 2,
                tx_bytes: 7,
            }
        );
        let none = server_snapshot("wg0", &server, &[stats(other, 1)]);
        assert_eq!((none.endpoint, none.rx_bytes), (None, 0));
    }
}
