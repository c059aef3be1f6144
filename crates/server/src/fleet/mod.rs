//! The fleet: the in-memory device index, heartbeat ingestion and the WireGuard hub.

pub mod heartbeats;
pub mod hub;
pub mod index;
pub mod sync;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::FleetConfig;
pub use heartbeats::Heartbeats;
pub use hub::Hub;
pub use index::{DeviceEntry, DeviceIndex};

/// Everything device-related the handlers reach through `AppState`.
#[derive(Debug)]
pub struct Fleet {
    pub config: FleetConfig,
    pub index: DeviceIndex,
    pub heartbeats: Heartbeats,
    pub hub: Arc<Hub>,
    /// Magic DNS; the index tells it of every device change.
    pub dns: Arc<crate::dns::MagicDnsService>,
}

impl Fleet {
    /// Make the in-memory state (index and WireGuard peer) match a device row as the database
    /// now holds it. A device whose key or address changed loses its old peer.
    pub fn apply_row(&self, row: &watchgrid_store::devices::DeviceRow) {
        let Some(entry) = DeviceEntry::from_row(row) else {
            tracing::warn!(device = %row.id, ip = %row.overlay_ip, "device with an unreadable overlay address skipped");
            return;
        };
        if let Some(old) = self.index.get(row.id) {
            if *old == entry {
                // This replica made the change itself (or it was already applied).
                return;
            }
            if old.public_key != entry.public_key {
                self.hub.remove(&old.public_key);
            }
        }
        let (public_key, ip) = (entry.public_key.clone(), entry.overlay_ip);
        self.index.upsert(entry);
        self.hub.upsert(&public_key, ip);
    }

    /// Forget a device that no longer exists: its address is free, its peer leaves.
    pub fn apply_removed(&self, id: uuid::Uuid) {
        if let Some(old) = self.index.remove(id) {
            self.hub.remove(&old.public_key);
        }
        self.heartbeats.forget(id);
    }

    /// Replace the in-memory state with `rows` (every device), and have the hub diff its
    /// interface against it at once.
    pub fn load_all(&self, rows: &[watchgrid_store::devices::DeviceRow]) {
        self.index.load(rows);
        self.heartbeats.seed(rows);
        self.hub.request_full_reconcile();
    }

    /// A device is online when it was heard from within three heartbeat intervals.
    pub fn online_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::seconds(3 * i64::from(self.config.heartbeat_interval_secs))
    }
}

/// A DNS-safe label from a host name: its first label, lower-cased, with every character
/// other than `a-z`, `0-9` and `-` turned into `-`, runs of `-` collapsed, no leading or
/// trailing `-`, at most 56 characters (room for a `-NNNNNN` suffix); `device` if nothing is
/// left.
pub fn dns_label(hostname: &str) -> String {
    let first = hostname
        .split('.')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let mut label = String::with_capacity(first.len());
    for c in first.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (label.is_empty() || label.ends_with('-'))) {
            label.push(c);
        }
    }
    let mut label: String = label.trim_matches('-').chars().take(56).collect();
    while label.ends_with('-') {
        label.pop();
    }
    if label.is_empty() {
        "device".to_owned()
    } else {
        label
    }
}

/// `base`, or the first of `base-2`, `base-3`, ... that `taken` does not hold: the same host
/// name always gets the same suffix while the earlier devices exist.
pub fn unique_name(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_owned();
    }
    (2u32..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_dns_safe() {
        for (input, expected) in [
            ("web-01.example.com", "web-01"),
            ("Laptop_Of Bob", "laptop-of-bob"),
            ("--x--", "x"),
            ("ÜBER", "ber"),
            ("", "device"),
            ("...", "device"),
            (&"a".repeat(80), &"a".repeat(56)),
        ] {
            assert_eq!(dns_label(input), expected, "{input:?}");
        }
    }

    #[test]
    fn clashes_get_the_lowest_free_suffix() {
        let taken = ["web", "web-2", "web-4"];
        assert_eq!(unique_name("web", |n| taken.contains(&n)), "web-3");
        assert_eq!(unique_name("db", |n| taken.contains(&n)), "db");
    }
}
