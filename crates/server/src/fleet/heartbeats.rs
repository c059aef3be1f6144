//! Heartbeat ingestion: heartbeats are coalesced in memory and `last_seen_at` is written in
//! batches, a bounded number of statements per flush whatever the number of devices.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;
use watchgrid_store::{devices, Database};

/// What an agent last reported about its host; written only when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Facts {
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
}

#[derive(Debug, Default)]
struct Pending {
    /// Devices heard from since the last flush.
    seen: HashSet<Uuid>,
    /// Devices whose facts changed since the last flush.
    facts: HashMap<Uuid, Facts>,
}

/// The coalescing buffer.
#[derive(Debug, Default)]
pub struct Heartbeats {
    pending: Mutex<Pending>,
    /// Devices heard from since this server started (their first heartbeat is logged at info).
    heard: Mutex<HashSet<Uuid>>,
    /// The facts last written per device, to write only changes.
    known_facts: Mutex<HashMap<Uuid, Facts>>,
}

/// How often the buffer is written out.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

impl Heartbeats {
    /// Note a heartbeat; returns whether it is the device's first since the server started.
    pub fn record(&self, device: Uuid, facts: Facts) -> bool {
        let changed = {
            let mut known = self.known_facts.lock().unwrap_or_else(|p| p.into_inner());
            if known.get(&device) == Some(&facts) {
                false
            } else {
                known.insert(device, facts.clone());
                true
            }
        };
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.seen.insert(device);
            if changed {
                pending.facts.insert(device, facts);
            }
        }
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device)
    }

    /// Forget a deleted device.
    pub fn forget(&self, device: Uuid) {
        self.known_facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&device);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.seen.remove(&device);
        pending.facts.remove(&device);
    }

    /// Write what accumulated since the last flush. On failure the heartbeats are put back so
    /// the next flush retries them.
    pub async fn flush(&self, db: &Database) -> Result<u64, watchgrid_store::StoreError> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.seen.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = batch.seen.iter().copied().collect();
        let result = async {
            for (id, facts) in &batch.facts {
                devices::update_facts(db, *id, &facts.hostname, &facts.os, &facts.agent_version)
                    .await?;
            }
            devices::touch_last_seen(db, &ids, Utc::now()).await
        }
        .await;
        if result.is_err() {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.seen.extend(batch.seen);
            for (id, facts) in batch.facts {
                pending.facts.entry(id).or_insert(facts);
            }
        }
        result
    }

    /// Flush every [`FLUSH_INTERVAL`] for as long as the server runs.
    pub async fn run_flusher(&self, db: Database) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.flush(&db).await {
                tracing::warn!(error = %err, "writing heartbeats failed; will retry");
            }
        }
    }
}
