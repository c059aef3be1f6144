//! The in-memory index of every device: what heartbeats authenticate against, what the
//! WireGuard hub reconciles to, where overlay addresses are allocated, and what Magic DNS
//! answers from (through an [`IndexObserver`]). Built from the database at start-up and updated
//! on every change, so no hot path queries the database.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use ipnet::Ipv4Net;
use uuid::Uuid;
use watchgrid_store::devices::DeviceRow;

/// What the hot paths need to know about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub overlay_ip: Ipv4Addr,
    pub public_key: String,
    /// SHA-256 of the agent credential; `None` for plain devices.
    pub credential_hash: Option<[u8; 32]>,
}

impl DeviceEntry {
    pub fn from_row(row: &DeviceRow) -> Option<Self> {
        Some(Self {
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name.clone(),
            overlay_ip: row.overlay_ip.parse().ok()?,
            public_key: row.wg_public_key.clone(),
            credential_hash: row
                .credential_hash
                .as_deref()
                .and_then(|h| <[u8; 32]>::try_from(h).ok()),
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<Uuid, Arc<DeviceEntry>>,
    by_ip: HashMap<Ipv4Addr, Uuid>,
    names: HashSet<(Uuid, String)>,
    /// Host offsets (from the network address) below `high_water` that are free again.
    free: BTreeSet<u32>,
    /// One past the highest offset ever handed out.
    high_water: u32,
    /// Offsets handed out but not yet committed (a registration in flight).
    reserved: HashSet<u32>,
}

/// Told of every change to the index, under its write lock, so it sees changes in the order
/// they happen (Magic DNS keeps its zone in step this way).
pub trait IndexObserver: Send + Sync + std::fmt::Debug {
    /// A device was added or replaced; `old` is what it replaced.
    fn upserted(&self, old: Option<&DeviceEntry>, new: &DeviceEntry);
    fn removed(&self, old: &DeviceEntry);
    /// The whole index was replaced.
    fn loaded(&self, all: &mut dyn Iterator<Item = &DeviceEntry>);
}

/// Every device, by id and by overlay address.
#[derive(Debug)]
pub struct DeviceIndex {
    overlay: Ipv4Net,
    inner: RwLock<Inner>,
    observer: Option<Arc<dyn IndexObserver>>,
}

/// The first offset a device may get: `.0` is the network, `.1` the server.
const FIRST_DEVICE_OFFSET: u32 = 2;

impl DeviceIndex {
    pub fn new(overlay: Ipv4Net) -> Self {
        Self {
            overlay,
            inner: RwLock::new(Inner {
                high_water: FIRST_DEVICE_OFFSET,
                ..Inner::default()
            }),
            observer: None,
        }
    }

    /// An index that tells `observer` of every change.
    pub fn with_observer(overlay: Ipv4Net, observer: Arc<dyn IndexObserver>) -> Self {
        Self {
            observer: Some(observer),
            ..Self::new(overlay)
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn offset_of(&self, ip: Ipv4Addr) -> Option<u32> {
        self.overlay
            .contains(&ip)
            .then(|| u32::from(ip) - u32::from(self.overlay.network()))
    }

    /// The last usable offset (the broadcast address is not handed out).
    fn last_offset(&self) -> u32 {
        u32::from(self.overlay.broadcast()) - u32::from(self.overlay.network()) - 1
    }

    /// Replace the whole index (start-up and periodic reloads).
    pub fn load(&self, rows: &[DeviceRow]) {
        let mut inner = self.write();
        let reserved = std::mem::take(&mut inner.reserved);
        *inner = Inner {
            high_water: FIRST_DEVICE_OFFSET,
            reserved,
            ..Inner::default()
        };
        for row in rows {
            match DeviceEntry::from_row(row) {
                Some(entry) => {
                    Self::insert_locked(&mut inner, self.offset_of(entry.overlay_ip), entry);
                }
                None => {
                    tracing::warn!(device = %row.id, ip = %row.overlay_ip, "device with an unreadable overlay address skipped")
                }
            }
        }
        let high_water = inner.high_water;
        let used: HashSet<u32> = inner
            .by_ip
            .keys()
            .filter_map(|ip| self.offset_of(*ip))
            .collect();
        inner.free = (FIRST_DEVICE_OFFSET..high_water)
            .filter(|o| !used.contains(o))
            .collect();
        if let Some(observer) = &self.observer {
            observer.loaded(&mut inner.by_id.values().map(|e| e.as_ref()));
        }
    }

    /// Tell the observer about every device again, as after a load (the observer learned
    /// something that changes how it sees them: a tenant another replica created).
    pub fn renotify(&self) {
        let inner = self.write();
        if let Some(observer) = &self.observer {
            observer.loaded(&mut inner.by_id.values().map(|e| e.as_ref()));
        }
    }

    fn insert_locked(
        inner: &mut Inner,
        offset: Option<u32>,
        entry: DeviceEntry,
    ) -> Option<Arc<DeviceEntry>> {
        let old = inner.by_id.remove(&entry.id);
        if let Some(old) = &old {
            inner.by_ip.remove(&old.overlay_ip);
            inner.names.remove(&(old.tenant_id, old.name.clone()));
        }
        if let Some(offset) = offset {
            inner.free.remove(&offset);
            inner.reserved.remove(&offset);
            inner.high_water = inner.high_water.max(offset + 1);
        }
        inner.by_ip.insert(entry.overlay_ip, entry.id);
        inner.names.insert((entry.tenant_id, entry.name.clone()));
        inner.by_id.insert(entry.id, Arc::new(entry));
        old
    }

    /// Add or replace a device.
    pub fn upsert(&self, entry: DeviceEntry) {
        let offset = self.offset_of(entry.overlay_ip);
        let mut inner = self.write();
        let id = entry.id;
        let old = Self::insert_locked(&mut inner, offset, entry);
        if let (Some(observer), Some(new)) = (&self.observer, inner.by_id.get(&id)) {
            observer.upserted(old.as_deref(), new);
        }
    }

    /// Remove a device and free its address.
    pub fn remove(&self, id: Uuid) -> Option<Arc<DeviceEntry>> {
        let mut inner = self.write();
        let entry = inner.by_id.remove(&id)?;
        inner.by_ip.remove(&entry.overlay_ip);
        inner.names.remove(&(entry.tenant_id, entry.name.clone()));
        if let Some(offset) = self.offset_of(entry.overlay_ip) {
            inner.free.insert(offset);
        }
        if let Some(observer) = &self.observer {
            observer.removed(&entry);
        }
        Some(entry)
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<DeviceEntry>> {
        self.read().by_id.get(&id).cloned()
    }

    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<Arc<DeviceEntry>> {
        let inner = self.read();
        inner
            .by_ip
            .get(&ip)
            .and_then(|id| inner.by_id.get(id))
            .cloned()
    }

    pub fn name_taken(&self, tenant: Uuid, name: &str) -> bool {
        self.read().names.contains(&(tenant, name.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every device, for the hub's full reconcile.
    pub fn all(&self) -> Vec<Arc<DeviceEntry>> {
        self.read().by_id.values().cloned().collect()
    }

    /// Hand out the lowest free overlay address, reserved until [`DeviceIndex::upsert`] or
    /// [`DeviceIndex::release`]; `None` when the range is exhausted. The database's unique
    /// constraint stays the final arbiter (another replica may have taken it): on a conflict
    /// the caller marks it with [`DeviceIndex::mark_taken`] and asks again.
    pub fn reserve(&self) -> Option<Ipv4Addr> {
        let last = self.last_offset();
        let mut inner = self.write();
        let offset = loop {
            let candidate = match inner.free.pop_first() {
                Some(offset) => offset,
                None => {
                    let offset = inner.high_water;
                    if offset > last {
                        return None;
                    }
                    inner.high_water += 1;
                    offset
                }
            };
            if !inner.reserved.contains(&candidate) {
                break candidate;
            }
        };
        inner.reserved.insert(offset);
        Some(Ipv4Addr::from(u32::from(self.overlay.network()) + offset))
    }

    /// Give back an address whose registration failed.
    pub fn release(&self, ip: Ipv4Addr) {
        if let Some(offset) = self.offset_of(ip) {
            let mut inner = self.write();
            if inner.reserved.remove(&offset) && !inner.by_ip.contains_key(&ip) {
                inner.free.insert(offset);
            }
        }
    }

    /// An address another replica took: neither free nor reserved here any more.
    pub fn mark_taken(&self, ip: Ipv4Addr) {
        if let Some(offset) = self.offset_of(ip) {
            let mut inner = self.write();
            inner.reserved.remove(&offset);
            inner.free.remove(&offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, ip: &str) -> DeviceEntry {
        DeviceEntry {
            id: Uuid::from_bytes([n; 16]),
            tenant_id: Uuid::nil(),
            name: format!("d{n}"),
            overlay_ip: ip.parse().unwrap(),
            public_key: format!("key{n}"),
            credential_hash: None,
        }
    }

    #[test]
    fn addresses_are_lowest_first_reused_and_bounded() {
        let index = DeviceIndex::new("10.9.0.0/29".parse().unwrap());
        // .0 network, .1 server, .7 broadcast: .2 to .6 are for devices.
        let mut got = Vec::new();
        while let Some(ip) = index.reserve() {
            got.push(ip.to_string());
        }
        assert_eq!(
            got,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
        );
        for (n, ip) in got.iter().enumerate() {
            index.upsert(entry(n as u8, ip));
        }
        assert_eq!(index.reserve(), None, "exhausted");
        index.remove(Uuid::from_bytes([1; 16]));
        assert_eq!(
            index.reserve().unwrap().to_string(),
            "10.9.0.3",
            "freed address reused"
        );
    }

    #[test]
    fn load_finds_gaps_and_failed_reservations_come_back() {
        let index = DeviceIndex::new("10.9.0.0/24".parse().unwrap());
        let rows: Vec<DeviceRow> = [(1u8, "10.9.0.2"), (2, "10.9.0.5")]
            .iter()
            .map(|(n, ip)| DeviceRow {
                id: Uuid::from_bytes([*n; 16]),
                tenant_id: Uuid::nil(),
                name: format!("d{n}"),
                hostname: String::new(),
                kind: watchgrid_store::DeviceKind::Agent,
                os: String::new(),
                agent_version: String::new(),
                wg_public_key: format!("k{n}"),
                overlay_ip: (*ip).into(),
                credential_hash: None,
                tags: watchgrid_store::devices::Json(vec![]),
                onboarding_token_id: None,
                created_at: chrono::Utc::now(),
                last_seen_at: None,
            })
            .collect();
        index.load(&rows);
        assert_eq!(index.len(), 2);
        assert!(index.by_ip("10.9.0.5".parse().unwrap()).is_some());
        assert!(index.name_taken(Uuid::nil(), "d2"));
        let first = index.reserve().unwrap();
        assert_eq!(first.to_string(), "10.9.0.3");
        assert_eq!(index.reserve().unwrap().to_string(), "10.9.0.4");
        index.release(first);
        assert_eq!(index.reserve().unwrap().to_string(), "10.9.0.3");
        assert_eq!(index.reserve().unwrap().to_string(), "10.9.0.6");
    }
}
