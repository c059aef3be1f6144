//! The WireGuard hub: the server's interface, whose peers the reconcile loop keeps equal to
//! the device index. Changes are applied incrementally as they happen (O(changes)); a full diff
//! runs every minute to repair any drift. Without the privileges or TUN device to create the
//! interface the server keeps running: the `wireguard` health check reports why, and the hub
//! retries.
//!
//! Isolation: the hub turns forwarding off on its interface as it brings it up, and checks
//! every [`ISOLATION_CHECK_EVERY`] that it stays off, so devices reach the server's own
//! addresses and never each other, whatever the host's `ip_forward` (docs/security.md, "Data
//! plane").
//!
//! The key: devices pin the server's public key, so a server with enrolled devices never
//! creates a new key on its own. A missing `WATCHGRID_WG_CONFIG` is replaced only on a server
//! without devices; otherwise the `wireguard` check fails naming the file, and the hub brings
//! up nothing until the file is restored (or `watchgrid-server wireguard rekey` is run).

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
/// Check this often that forwarding is still off on the interface: writing the host's
/// `net.ipv4.ip_forward` resets every interface's own setting.
pub const ISOLATION_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Where the server's WireGuard key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyState {
    /// Read from `WATCHGRID_WG_CONFIG`.
    Loaded,
    /// The file was missing at start; the hub's key is a candidate, written only once the
    /// device index shows that no device pins an older key.
    Missing,
    /// The file is missing and devices are enrolled: the reason, for the health check.
    Refused(String),
}

/// The server's WireGuard key cannot be handed out (it is being settled at start-up, or its
/// file is missing while devices are enrolled). Public message only; the health check and the
/// log carry the detail.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the server's WireGuard key is not available (see the wireguard health check); try again later"
)]
pub struct KeyUnavailable;

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
    /// Replaced only by [`Hub::settle_key`], when another replica sharing the data directory
    /// wrote the first key while this one started.
    keys: RwLock<(PrivateKey, PublicKey)>,
    key_state: RwLock<KeyState>,
    backend: Mutex<Option<Arc<dyn Backend>>>,
    status: RwLock<HubStatus>,
    changes: Mutex<Vec<Change>>,
    wake: Notify,
    last_reconcile: Mutex<Option<Instant>>,
    /// Set when the index was replaced wholesale: the next loop turn runs a full diff.
    full_requested: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
}

/// Read the server's key from `path` (wg-quick format); `None` when there is no such file. A
/// new key is never created here: see [`Hub::settle_key`].
pub fn load_key(path: &Path) -> Result<Option<PrivateKey>, String> {
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("{}: {err}", path.display())),
        Ok(_) => {}
    }
    let file = WgQuickConfig::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(file.interface.private_key))
}

/// Write `private_key` as the server's wg-quick file (mode 0600, atomically).
pub fn save_key(path: &Path, private_key: &PrivateKey, config: &FleetConfig) -> Result<(), String> {
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
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Why a server refuses to replace its missing key: the file, the restore procedure and the
/// deliberate alternative.
pub fn missing_key_reason(path: &Path, devices: usize) -> String {
    format!(
        "the server's WireGuard key file {} (WATCHGRID_WG_CONFIG) is missing, but {devices} \
         enrolled device(s) pin its key: restore the file from your backup and restart the \
         server (docs/production.md, \"The WireGuard key\"); to re-key on purpose instead, run \
         `watchgrid-server wireguard rekey` (every device must then re-enroll). A new key is \
         never generated in its place",
        path.display()
    )
}

/// What `watchgrid-server wireguard rekey` did.
#[derive(Debug, Clone)]
pub struct Rekeyed {
    /// The key the file held, if it held a readable one.
    pub old_public_key: Option<PublicKey>,
    pub new_public_key: PublicKey,
    /// Devices that pinned the old key: each must re-enroll.
    pub devices: usize,
}

/// A deliberate re-key: a new key replaces `WATCHGRID_WG_CONFIG` (or the missing file), audited
/// as `wireguard.rekey` in the transaction that commits only once the file is written. Every
/// enrolled device pinned the old key and refuses the new one until it re-enrolls.
pub async fn rekey(
    config: &FleetConfig,
    db: &watchgrid_store::Database,
) -> anyhow::Result<Rekeyed> {
    let path = &config.wg_config;
    // A damaged file is replaced like a missing one: re-keying is what repairs it.
    let old_public_key = load_key(path)
        .inspect_err(
            |e| tracing::warn!(error = %e, "the current key file is unreadable; replacing it"),
        )
        .ok()
        .flatten()
        .map(|key| key.public_key());
    let devices = watchgrid_store::devices::all_devices(db).await?.len();
    let private_key = PrivateKey::generate();
    let new_public_key = private_key.public_key();
    let ctx =
        watchgrid_core::audit::AuditContext::acting("watchgrid-server wireguard rekey", None, None);
    let details = serde_json::json!({
        "file": path.display().to_string(),
        "old_public_key": old_public_key.map(|k| k.to_string()),
        "new_public_key": new_public_key.to_string(),
        "devices_to_re_enroll": devices,
    });
    let entry = ctx.entry(
        "wireguard.rekey",
        "wireguard",
        Some(new_public_key.to_string()),
        true,
        details,
    );
    let mut tx = db.begin().await?;
    watchgrid_store::audit::record(&mut tx, &entry).await?;
    save_key(path, &private_key, config).map_err(anyhow::Error::msg)?;
    tx.commit().await?;
    tracing::warn!(path = %path.display(), public_key = %new_public_key, devices, "the server's WireGuard key was replaced on purpose; every device must re-enroll");
    Ok(Rekeyed {
        old_public_key,
        new_public_key,
        devices,
    })
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
    /// A hub with the key read from `WATCHGRID_WG_CONFIG`, or `None` when that file is missing
    /// (then a candidate key waits for [`Hub::settle_key`]).
    pub fn new(config: FleetConfig, key: Option<PrivateKey>, metrics: Arc<Metrics>) -> Self {
        let (private_key, key_state) = match key {
            Some(key) => (key, KeyState::Loaded),
            None => (PrivateKey::generate(), KeyState::Missing),
        };
        let public_key = private_key.public_key();
        let status = if config.backend == WgBackendChoice::None {
            HubStatus::Disabled
        } else {
            HubStatus::Starting
        };
        Self {
            config,
            keys: RwLock::new((private_key, public_key)),
            key_state: RwLock::new(key_state),
            backend: Mutex::new(None),
            status: RwLock::new(status),
            changes: Mutex::new(Vec::new()),
            wake: Notify::new(),
            last_reconcile: Mutex::new(None),
            full_requested: std::sync::atomic::AtomicBool::new(false),
            metrics,
        }
    }

    /// The key devices pin; unavailable until it is settled (a missing file on a server with
    /// devices is never replaced).
    pub fn public_key(&self) -> Result<PublicKey, KeyUnavailable> {
        match self.key_state() {
            KeyState::Loaded => Ok(self.keys().1),
            KeyState::Missing | KeyState::Refused(_) => Err(KeyUnavailable),
        }
    }

    fn keys(&self) -> (PrivateKey, PublicKey) {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn key_state(&self) -> KeyState {
        self.key_state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the key file was missing at start (the `wireguard` check then exists even on a
    /// replica that drives no interface, to report a refusal).
    pub fn key_was_missing(&self) -> bool {
        self.key_state() != KeyState::Loaded
    }

    /// Decide about a key file that was missing at start, once the device index is loaded:
    /// with no device enrolled the candidate key is written (first start); with devices it is
    /// refused, because every one of them pins the lost key. An error (the file cannot be
    /// written) is worth retrying.
    pub fn settle_key(&self, enrolled_devices: usize) -> Result<(), String> {
        if self.key_state() != KeyState::Missing {
            return Ok(());
        }
        let path: &Path = &self.config.wg_config;
        if enrolled_devices > 0 {
            let reason = missing_key_reason(path, enrolled_devices);
            tracing::error!(path = %path.display(), devices = enrolled_devices, "{reason}");
            *self.key_state.write().unwrap_or_else(|p| p.into_inner()) = KeyState::Refused(reason);
            return Ok(());
        }
        // Written meanwhile (another replica on the same data directory, or a restore): adopt
        // it, never overwrite it.
        if let Some(key) = load_key(path)? {
            let public_key = key.public_key();
            *self.keys.write().unwrap_or_else(|p| p.into_inner()) = (key, public_key);
            tracing::info!(path = %path.display(), public_key = %public_key, "adopted the server's WireGuard key written while this server started");
        } else {
            let (private_key, public_key) = self.keys();
            save_key(path, &private_key, &self.config)?;
            tracing::info!(path = %path.display(), public_key = %public_key, "created the server's WireGuard key (no device is enrolled yet)");
        }
        *self.key_state.write().unwrap_or_else(|p| p.into_inner()) = KeyState::Loaded;
        Ok(())
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
        // Nothing applies changes without an interface (no backend, or a refused key).
        if self.status() == HubStatus::Disabled || matches!(self.key_state(), KeyState::Refused(_))
        {
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
        if let KeyState::Refused(reason) = self.key_state() {
            return Err(reason);
        }
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
            private_key: self.keys().0,
            listen_port: Some(self.config.listen_port),
            addresses: vec![IpNet::V4(server_net(&self.config))],
            mtu: None,
        };
        let backend: Arc<dyn Backend> = watchgrid_wireguard::open(&spec, kind)
            .map(Arc::from)
            .map_err(|e| format!("cannot bring up {}: {e}", self.config.interface))?;
        // Fail closed: an interface that might forward between devices is not brought up.
        watchgrid_wireguard::disable_forwarding(&self.config.interface).map_err(|e| {
            format!(
                "cannot turn forwarding off on {} (devices would reach each other): {e}",
                self.config.interface
            )
        })?;
        Ok(backend)
    }

    /// Turn forwarding off again if something turned it on (writing the host's
    /// `net.ipv4.ip_forward` resets every interface's own value).
    async fn enforce_isolation(&self) -> Result<(), String> {
        let interface = self.config.interface.clone();
        let changed = tokio::task::spawn_blocking(move || {
            watchgrid_wireguard::disable_forwarding(&interface)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "cannot keep forwarding off on {} (devices would reach each other): {e}",
                self.config.interface
            )
        })?;
        if changed {
            tracing::warn!(interface = %self.config.interface, "forwarding had been turned on on the WireGuard interface (was net.ipv4.ip_forward written?); turned it off again");
        }
        Ok(())
    }

    /// Bring the interface up and keep its peers equal to `index`, until the process ends.
    pub async fn run(self: Arc<Self>, fleet: Arc<super::Fleet>) {
        let index = &fleet.index;
        if self.status() == HubStatus::Disabled {
            tracing::warn!("WATCHGRID_WG_BACKEND=none: this server drives no WireGuard interface");
            return;
        }
        if self.key_state() != KeyState::Loaded {
            // A refused key (or one never settled) brings up nothing: devices would see a
            // stranger's key. The health check says why.
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
                        tracing::info!(interface = %self.config.interface, public_key = %self.keys().1, "WireGuard interface up");
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
            let wait = FULL_RECONCILE_EVERY
                .saturating_sub(last_full.elapsed())
                .min(ISOLATION_CHECK_EVERY);
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
            if let Err(reason) = self.enforce_isolation().await {
                tracing::error!(%reason, "recreating the WireGuard interface");
                *self.backend.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.set_status(HubStatus::Failed(reason));
                continue;
            }
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
