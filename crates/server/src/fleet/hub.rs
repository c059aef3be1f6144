//! The WireGuard hub: the server's interface, whose peers the reconcile loop keeps equal to
//! the device index. Changes are applied incrementally as they happen (O(changes)); a full diff
//! runs every minute to repair any drift. Without the privileges or TUN device to create the
//! interface the server keeps running: the `wireguard` health check reports why, and the hub
//! retries.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use tokio::sync::Notify;
use watchgrid_wireguard::config::{InterfaceSection, WgQuickConfig};
use watchgrid_wireguard::key::{PrivateKey, PublicKey};
use watchgrid_wireguard::{Backend, BackendKind, InterfaceSpec, Peer};

use super::index::DeviceIndex;
use crate::config::{FleetConfig, WgBackendChoice};
use crate::metrics::Metrics;

/// A full diff against the interface this often.
pub const FULL_RECONCILE_EVERY: Duration = Duration::from_secs(60);
/// Most peers one `set_peers` call carries. boringtun forwards no packet while it applies a
/// transaction (~60 µs per new peer): loading 100,000 peers at once stalled the interface for
/// ~6 s. In batches of this size every stall is ~0.3 s and traffic flows in between, at the
/// price of one extra `get` per batch (docs/wireguard.md).
pub const PEER_BATCH: usize = 5_000;
/// Retry creating a missing interface this often.
const REOPEN_EVERY: Duration = Duration::from_secs(30);

/// Where the hub stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubStatus {
    /// `WATCHGRID_WG_BACKEND=none`: this replica drives no interface.
    Disabled,
    Starting,
    Up,
    /// The interface could not be created or is gone; the reason.
    Failed(String),
}

#[derive(Debug)]
enum Change {
    Upsert(Peer),
    Remove(PublicKey),
}

#[derive(Debug)]
pub struct Hub {
    config: FleetConfig,
    private_key: PrivateKey,
    public_key: PublicKey,
    backend: Mutex<Option<Arc<dyn Backend>>>,
    status: RwLock<HubStatus>,
    changes: Mutex<Vec<Change>>,
    wake: Notify,
    last_reconcile: Mutex<Option<Instant>>,
    /// Set when the index was replaced wholesale: the next loop turn runs a full diff.
    full_requested: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
}

/// Load the server's key from `path` (wg-quick format), or create the file (mode 0600) with a
/// new key on first start.
pub fn load_or_create_key(path: &Path, config: &FleetConfig) -> Result<PrivateKey, String> {
    if path.exists() {
        let file = WgQuickConfig::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(file.interface.private_key);
    }
    let private_key = PrivateKey::generate();
    let file = WgQuickConfig {
        interface: InterfaceSection {
            private_key: private_key.clone(),
            listen_port: Some(config.listen_port),
            addresses: vec![IpNet::V4(server_net(config))],
            dns: vec![],
            mtu: None,
        },
        peers: vec![],
    };
    file.save(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "created the server's WireGuard key");
    Ok(private_key)
}

/// The server's address with the overlay's prefix: `100.64.0.1/10`.
fn server_net(config: &FleetConfig) -> Ipv4Net {
    Ipv4Net::new(config.server_ip(), config.overlay.prefix_len()).unwrap_or(config.overlay)
}

/// The peer for a device: its overlay address alone.
pub fn device_peer(public_key: &str, ip: Ipv4Addr) -> Option<Peer> {
    Some(Peer {
        public_key: public_key.parse().ok()?,
        allowed_ips: vec![IpNet::V4(Ipv4Net::new(ip, 32).ok()?)],
        endpoint: None,
        persistent_keepalive: None,
    })
}

impl Hub {
    pub fn new(config: FleetConfig, private_key: PrivateKey, metrics: Arc<Metrics>) -> Self {
        let public_key = private_key.public_key();
        let status = if config.backend == WgBackendChoice::None {
            HubStatus::Disabled
        } else {
            HubStatus::Starting
        };
        Self {
            config,
            private_key,
            public_key,
            backend: Mutex::new(None),
            status: RwLock::new(status),
            changes: Mutex::new(Vec::new()),
            wake: Notify::new(),
            last_reconcile: Mutex::new(None),
            full_requested: std::sync::atomic::AtomicBool::new(false),
            metrics,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    pub fn status(&self) -> HubStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_status(&self, status: HubStatus) {
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = status;
    }

    fn backend(&self) -> Option<Arc<dyn Backend>> {
        self.backend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A device was added or changed its key: make it a peer.
    pub fn upsert(&self, public_key: &str, ip: Ipv4Addr) {
        if let Some(peer) = device_peer(public_key, ip) {
            self.push(Change::Upsert(peer));
        }
    }

    /// A device was deleted: its peer leaves the interface.
    pub fn remove(&self, public_key: &str) {
        if let Ok(key) = public_key.parse() {
            self.push(Change::Remove(key));
        }
    }

    /// The index was replaced: diff the whole interface against it on the next turn.
    pub fn request_full_reconcile(&self) {
        self.full_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn push(&self, change: Change) {
        if self.status() == HubStatus::Disabled {
            return;
        }
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
        self.wake.notify_one();
    }

    /// The `wireguard` health check.
    pub fn check(&self) -> Result<(), String> {
        match self.status() {
            HubStatus::Disabled | HubStatus::Up => {}
            HubStatus::Starting => return Err("the interface is being created".into()),
            HubStatus::Failed(reason) => return Err(reason),
        }
        if let Some(backend) = self.backend() {
            backend.check().map_err(|e| e.to_string())?;
            let stale = self
                .last_reconcile
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none_or(|at| at.elapsed() > 3 * FULL_RECONCILE_EVERY);
            if stale {
                return Err("the peer reconcile loop has not completed recently".into());
            }
        }
        Ok(())
    }

    fn open(&self) -> Result<Arc<dyn Backend>, String> {
        let kind = match self.config.backend {
            WgBackendChoice::Kernel => BackendKind::Kernel,
            WgBackendChoice::Userspace => BackendKind::Userspace,
            WgBackendChoice::Auto | WgBackendChoice::None => BackendKind::Auto,
        };
        let spec = InterfaceSpec {
            name: self.config.interface.clone(),
            private_key: self.private_key.clone(),
            listen_port: Some(self.config.listen_port),
            addresses: vec![IpNet::V4(server_net(&self.config))],
            mtu: None,
        };
        watchgrid_wireguard::open(&spec, kind)
            .map(Arc::from)
            .map_err(|e| format!("cannot bring up {}: {e}", self.config.interface))
    }

    /// Bring the interface up and keep its peers equal to `index`, until the process ends.
    pub async fn run(self: Arc<Self>, fleet: Arc<super::Fleet>) {
        let index = &fleet.index;
        if self.status() == HubStatus::Disabled {
            tracing::warn!("WATCHGRID_WG_BACKEND=none: this server drives no WireGuard interface");
            return;
        }
        let mut last_full = Instant::now() - FULL_RECONCILE_EVERY;
        loop {
            if self.backend().is_none() {
                let hub = self.clone();
                let opened = tokio::task::spawn_blocking(move || hub.open())
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                match opened {
                    Ok(backend) => {
                        tracing::info!(interface = %self.config.interface, public_key = %self.public_key, "WireGuard interface up");
                        *self.backend.lock().unwrap_or_else(|p| p.into_inner()) = Some(backend);
                        self.set_status(HubStatus::Up);
                        last_full = Instant::now() - FULL_RECONCILE_EVERY;
                    }
                    Err(reason) => {
                        tracing::error!(%reason, "WireGuard interface unavailable; the wireguard health check fails until it comes up");
                        self.set_status(HubStatus::Failed(reason));
                        tokio::time::sleep(REOPEN_EVERY).await;
                        continue;
                    }
                }
            }
            let requested = self
                .full_requested
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            if requested || last_full.elapsed() >= FULL_RECONCILE_EVERY {
                // Changes queued before the full diff are covered by it.
                self.changes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                match self.full_reconcile(index).await {
                    Ok(()) => last_full = Instant::now(),
                    Err(reason) => {
                        tracing::error!(%reason, "WireGuard reconcile failed; recreating the interface");
                        *self.backend.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        self.set_status(HubStatus::Failed(reason));
                        continue;
                    }
                }
            }
            let wait = FULL_RECONCILE_EVERY.saturating_sub(last_full.elapsed());
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
            if self
                .full_requested
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                continue;
            }
            if let Err(reason) = self.apply_changes().await {
                tracing::warn!(%reason, "applying peer changes failed; a full reconcile follows");
                last_full = Instant::now() - FULL_RECONCILE_EVERY;
            }
        }
    }

    /// Apply the queued changes: one UAPI transaction for the upserts, one for the removals.
    async fn apply_changes(&self) -> Result<(), String> {
        let changes = std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()));
        if changes.is_empty() {
            return Ok(());
        }
        let Some(backend) = self.backend() else {
            return Ok(());
        };
        let (mut upserts, mut removals) = (Vec::new(), Vec::new());
        for change in changes {
            match change {
                Change::Upsert(peer) => {
                    removals.retain(|k| *k != peer.public_key);
                    upserts.push(peer);
                }
                Change::Remove(key) => {
                    upserts.retain(|p: &Peer| p.public_key != key);
                    removals.push(key);
                }
            }
        }
        let delta = upserts.len() as i64 - removals.len() as i64;
        tokio::task::spawn_blocking(move || {
            for batch in upserts.chunks(PEER_BATCH) {
                backend.set_peers(batch)?;
            }
            if !removals.is_empty() {
                backend.remove_peers(&removals)?;
            }
            Ok::<_, watchgrid_wireguard::Error>(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.metrics.wireguard_peers_add(delta);
        Ok(())
    }

    /// Make the interface's peers exactly the index's devices.
    async fn full_reconcile(&self, index: &DeviceIndex) -> Result<(), String> {
        let Some(backend) = self.backend() else {
            return Ok(());
        };
        let desired: Vec<Peer> = index
            .all()
            .iter()
            .filter_map(|d| device_peer(&d.public_key, d.overlay_ip))
            .collect();
        let count = tokio::task::spawn_blocking(move || {
            let actual = backend.peers()?;
            let diff = watchgrid_wireguard::diff(&desired, &actual);
            for batch in diff.upsert.chunks(PEER_BATCH) {
                backend.set_peers(batch)?;
            }
            if !diff.remove.is_empty() {
                backend.remove_peers(&diff.remove)?;
            }
            if !diff.upsert.is_empty() || !diff.remove.is_empty() {
                tracing::info!(
                    added_or_updated = diff.upsert.len(),
                    removed = diff.remove.len(),
                    "WireGuard peers reconciled"
                );
            }
            Ok::<_, watchgrid_wireguard::Error>(desired.len())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.metrics.wireguard_peers_set(count as i64);
        *self
            .last_reconcile
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(())
    }
}
