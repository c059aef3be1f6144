//! Device change notifications between replicas (PostgreSQL only).
//!
//! Every replica keeps an in-memory index of devices. A change one replica makes (a
//! registration behind the load balancer, a rename, a delete) must reach the others' indexes,
//! or the replica driving WireGuard would not add the new peer. A trigger on `devices`
//! (migration 0006) sends `NOTIFY watchgrid_devices, '<device id>'` for every insert, delete and
//! update of the columns the index holds — not for `last_seen_at` or host facts, which change
//! every second. Notifications are delivered on commit, so a listener that reads the row after
//! one sees the committed change.
//!
//! The same subscription carries Magic DNS changes: triggers on `tenants` and `dns_records`
//! (migration 0005) notify [`crate::dns::DNS_CHANNEL`], reported as [`DeviceChange::Dns`], so a
//! replica holds one listening connection for both.
//!
//! SQLite is single-node: there is no other replica to hear from, so [`DeviceChanges::listen`]
//! returns `None`.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use uuid::Uuid;

use crate::{Database, StoreError};

/// The `NOTIFY` channel the `devices` trigger sends to.
pub const DEVICE_CHANNEL: &str = "watchgrid_devices";

/// Most ids one batch carries, so a mass change (a tenant with 100,000 devices deleted) is
/// applied in steps that each read a bounded number of rows.
pub const MAX_BATCH: usize = 5_000;

/// How long re-establishing an interrupted subscription may take.
const RECONNECT_WAIT: Duration = Duration::from_secs(10);

/// How long one attempt to (re)open the listening connection may take.
const LISTEN_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What happened since the last call to [`DeviceChanges::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChange {
    /// These devices changed (or were deleted): read them again.
    Changed(Vec<Uuid>),
    /// The listening connection was lost and has been re-established: notifications may have
    /// been missed, so everything must be read again.
    Resync,
    /// Tenants or Magic DNS records changed: reload them.
    Dns,
}

/// A subscription to [`DEVICE_CHANNEL`]. It holds one connection of the pool.
pub struct DeviceChanges {
    listener: PgListener,
    /// A batch held device and DNS changes: the devices were returned, [`DeviceChange::Dns`]
    /// comes next.
    dns_pending: bool,
}

impl std::fmt::Debug for DeviceChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceChanges").finish_non_exhaustive()
    }
}

impl DeviceChanges {
    /// Subscribe; `None` on SQLite. Changes committed after this returns are all delivered
    /// (or a [`DeviceChange::Resync`] says some may have been lost).
    pub async fn listen(db: &Database) -> Result<Option<Self>, StoreError> {
        let Database::Postgres(pool) = db else {
            return Ok(None);
        };
        // A pool of its own with one connection: the LISTEN session is held for the server's
        // whole life, so from the request pool it would take one of
        // `WATCHGRID_DB_MAX_CONNECTIONS` for good, and during a database outage its reconnect
        // attempts would occupy a slot and show in the request pool's gauges.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(LISTEN_CONNECT_TIMEOUT)
            .connect_lazy_with((*pool.connect_options()).clone());
        let mut listener = PgListener::connect_with(&own).await?;
        listener
            .listen_all([DEVICE_CHANNEL, crate::dns::DNS_CHANNEL])
            .await?;
        Ok(Some(Self {
            listener,
            dns_pending: false,
        }))
    }

    /// Wait for the next change. Notifications that arrive together are merged into one batch
    /// (after the first, those arriving within a few milliseconds are taken too).
    pub async fn next(&mut self) -> Result<DeviceChange, StoreError> {
        if std::mem::take(&mut self.dns_pending) {
            return Ok(DeviceChange::Dns);
        }
        let first = match self.listener.try_recv().await {
            Ok(Some(notification)) => notification,
            // The connection was lost; `try_recv` has reconnected and re-subscribed.
            Ok(None) => return Ok(DeviceChange::Resync),
            // The server ended the session with an error (an administrator's
            // `pg_terminate_backend`, a restart): the next read finds the connection closed
            // and reconnects. Only if that fails is the subscription broken.
            Err(first_err) => {
                tracing::debug!(error = %first_err, "device change subscription interrupted");
                return match tokio::time::timeout(RECONNECT_WAIT, self.listener.try_recv()).await {
                    Ok(Ok(_)) => Ok(DeviceChange::Resync),
                    Ok(Err(err)) => Err(err.into()),
                    Err(_) => Err(first_err.into()),
                };
            }
        };
        let mut ids = HashSet::new();
        let mut resync = false;
        let mut dns = false;
        let mut take = |ids: &mut HashSet<Uuid>, n: &sqlx::postgres::PgNotification| {
            if n.channel() == crate::dns::DNS_CHANNEL {
                dns = true;
            } else {
                collect(ids, n.payload());
            }
        };
        take(&mut ids, &first);
        while ids.len() < MAX_BATCH {
            match tokio::time::timeout(Duration::from_millis(5), self.listener.try_recv()).await {
                Ok(Ok(Some(notification))) => take(&mut ids, &notification),
                Ok(Ok(None)) => {
                    resync = true;
                    break;
                }
                Ok(Err(err)) => return Err(err.into()),
                Err(_quiet) => break,
            }
        }
        if resync {
            return Ok(DeviceChange::Resync);
        }
        if ids.is_empty() {
            return Ok(DeviceChange::Dns);
        }
        self.dns_pending = dns;
        Ok(DeviceChange::Changed(ids.into_iter().collect()))
    }
}

fn collect(ids: &mut HashSet<Uuid>, payload: &str) {
    match payload.parse() {
        Ok(id) => {
            ids.insert(id);
        }
        Err(_) => tracing::warn!(payload, "ignored a malformed device change notification"),
    }
}
