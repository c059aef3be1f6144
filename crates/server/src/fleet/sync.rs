//! Keeping this replica's in-memory fleet equal to the database when other replicas change it.
//!
//! On PostgreSQL several replicas share one database; each keeps its own device index (and the
//! leader its WireGuard interface). A trigger notifies every change of a device
//! (`watchgrid_store::changes`); this task re-reads the changed rows and applies them. When the
//! listening connection drops, notifications may have been lost, so it reloads everything once
//! it is back. The same subscription reports tenant and Magic DNS record changes, on which the
//! zone's tenants and records are reloaded (`reload_dns`). On SQLite (one node) there
//! is nothing to follow and the task ends at once.

use std::sync::Arc;
use std::time::Duration;

use watchgrid_store::changes::{DeviceChange, DeviceChanges};
use watchgrid_store::{devices, Database};

use super::Fleet;

/// Follow other replicas' device changes for as long as the server runs.
pub async fn follow_device_changes(db: Database, fleet: Arc<Fleet>) {
    let mut delay = Duration::from_secs(1);
    loop {
        let mut changes = match DeviceChanges::listen(&db).await {
            Ok(Some(changes)) => changes,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, retry_in_seconds = delay.as_secs(), "cannot subscribe to device changes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        // Anything committed between the start-up load (or the lost connection) and the
        // subscription would otherwise be missed.
        if let Err(err) = reload(&db, &fleet).await {
            tracing::warn!(error = %err, "reloading devices after subscribing failed; retrying");
            tokio::time::sleep(delay).await;
            continue;
        }
        delay = Duration::from_secs(1);
        tracing::debug!("following device changes of other replicas");
        loop {
            match changes.next().await {
                Ok(DeviceChange::Changed(ids)) => {
                    if let Err(err) = apply(&db, &fleet, &ids).await {
                        tracing::warn!(error = %err, "re-reading changed devices failed; reloading all");
                        break;
                    }
                }
                Ok(DeviceChange::Dns) => {
                    if let Err(err) = reload_dns(&db, &fleet).await {
                        tracing::warn!(error = %err, "reloading Magic DNS tenants and records failed; reloading all");
                        break;
                    }
                }
                Ok(DeviceChange::Resync) => {
                    tracing::warn!("lost the device change subscription; reloading all devices");
                    if let Err(err) = reload(&db, &fleet).await {
                        tracing::warn!(error = %err, "reloading devices failed; resubscribing");
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "device change subscription failed; resubscribing");
                    break;
                }
            }
        }
        tokio::time::sleep(delay).await;
    }
}

async fn reload(db: &Database, fleet: &Fleet) -> Result<(), watchgrid_store::StoreError> {
    // Tenants first: the zone names devices by their tenant's slug.
    reload_dns(db, fleet).await?;
    let rows = devices::all_devices(db).await?;
    fleet.load_all(&rows);
    Ok(())
}

/// Re-read `ids` and apply what the database holds now: present rows are upserted, absent ones
/// removed. Idempotent, so this replica's own changes coming back as notifications are harmless.
async fn apply(
    db: &Database,
    fleet: &Fleet,
    ids: &[uuid::Uuid],
) -> Result<(), watchgrid_store::StoreError> {
    let rows = devices::devices_by_ids(db, ids).await?;
    let present: std::collections::HashSet<uuid::Uuid> = rows.iter().map(|r| r.id).collect();
    for row in &rows {
        fleet.apply_row(row);
    }
    for id in ids.iter().filter(|id| !present.contains(id)) {
        fleet.apply_removed(*id);
    }
    tracing::debug!(
        changed = rows.len(),
        removed = ids.len() - rows.len(),
        "applied device changes from the database"
    );
    Ok(())
}

/// Reload the tenants and every record from the database (another replica changed them, or
/// notifications may have been missed): tenants that are gone leave the zone, and the devices
/// are announced again when the set of tenants changed, so that devices of a tenant this
/// replica did not know get their names.
pub async fn reload_dns(db: &Database, fleet: &Fleet) -> Result<(), watchgrid_store::StoreError> {
    let tenants = watchgrid_store::tenants::list_tenants(db).await?;
    let records = watchgrid_store::dns::all_records(db).await?;
    let known = fleet.dns.known_tenants();
    fleet.dns.load_tenants(&tenants);
    if tenants.len() != known.len() || tenants.iter().any(|t| !known.contains(&t.id)) {
        // Devices of a tenant this replica did not know yet get their names now.
        fleet.index.renotify();
    }
    fleet.dns.load_records(&records);
    Ok(())
}
