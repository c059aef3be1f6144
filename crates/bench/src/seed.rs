//! The database under test: a fresh SQLite file or a throwaway PostgreSQL cluster, migrated,
//! with one tenant and N agent devices inserted through `watchgrid-store`, and the check
//! afterwards that the server wrote `last_seen_at` for the devices it heard from.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use watchgrid_store::devices::{self, DeviceRow, Json, OnboardingTokenRow};
use watchgrid_store::{tenants, Database, DatabaseUrl};
use watchgrid_testkit::PgCluster;

use crate::addr::{self, Overlay};
use crate::args::Backend;
use crate::load::Bitset;

/// Devices per insert transaction.
const INSERT_BATCH: usize = 2000;

/// A database for one run; dropping it stops and removes a PostgreSQL cluster.
#[derive(Debug)]
pub struct Fixture {
    pub backend: Backend,
    /// `DATABASE_URL` for the server.
    pub url: String,
    /// Device ids by index.
    pub ids: Vec<Uuid>,
    /// The benchmark's tenant, once seeded.
    pub tenant: Option<Uuid>,
    _cluster: Option<PgCluster>,
}

impl Fixture {
    /// Create the database (SQLite under `dir`) and migrate it.
    pub async fn create(backend: Backend, dir: &std::path::Path) -> Result<(Fixture, Database)> {
        let (url, cluster) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.join("watchgrid.db").display()),
                None,
            ),
            Backend::Postgres => {
                let cluster = tokio::task::spawn_blocking(|| -> Result<PgCluster> {
                    let cluster = PgCluster::temporary()?;
                    cluster.start()?;
                    Ok(cluster)
                })
                .await?
                .context("starting a throwaway PostgreSQL cluster")?;
                (cluster.url("postgres"), Some(cluster))
            }
        };
        let db = open(&url, 4).await?;
        db.migrate()
            .await
            .context("migrating the benchmark database")?;
        Ok((
            Fixture {
                backend,
                url,
                ids: Vec::new(),
                tenant: None,
                _cluster: cluster,
            },
            db,
        ))
    }

    /// The PostgreSQL cluster's data directory, to find its processes.
    pub fn pg_data_dir(&self) -> Option<std::path::PathBuf> {
        self._cluster.as_ref().map(PgCluster::data_dir)
    }

    /// Insert `count` agent devices in a new tenant: device `i` at `overlay.device_ip(i)` with
    /// credential [`addr::credential`]`(run, i)`, host facts equal to what the load sends.
    pub async fn seed(
        &mut self,
        db: &Database,
        overlay: Overlay,
        count: u32,
        run: &str,
    ) -> Result<()> {
        overlay.device_ip(count.saturating_sub(1))?;
        let tenant = tenants::create_tenant(db, "bench", "Benchmark").await?;
        let now = Utc::now();
        let rows: Vec<DeviceRow> = (0..count)
            .map(|i| -> Result<DeviceRow> {
                Ok(DeviceRow {
                    id: Uuid::new_v4(),
                    tenant_id: tenant.id,
                    name: format!("bench-{i}"),
                    hostname: "h".into(),
                    kind: watchgrid_store::DeviceKind::Agent,
                    os: "linux".into(),
                    agent_version: "0.1.0".into(),
                    wg_public_key: addr::public_key(i),
                    overlay_ip: overlay.device_ip(i)?.to_string(),
                    credential_hash: Some(addr::credential_hash(&addr::credential(run, i))),
                    tags: Json(vec![]),
                    onboarding_token_id: None,
                    created_at: now,
                    last_seen_at: None,
                })
            })
            .collect::<Result<_>>()?;
        self.ids = rows.iter().map(|r| r.id).collect();
        self.tenant = Some(tenant.id);
        // SQLite has one writer; PostgreSQL takes a few transactions at once.
        let parallel = match self.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let rows = std::sync::Arc::new(rows);
        let batches: Vec<std::ops::Range<usize>> = (0..rows.len())
            .step_by(INSERT_BATCH)
            .map(|s| s..(s + INSERT_BATCH).min(rows.len()))
            .collect();
        let mut lanes = Vec::new();
        for lane in 0..parallel {
            let (db, rows) = (db.clone(), rows.clone());
            let mine: Vec<_> = batches
                .iter()
                .skip(lane)
                .step_by(parallel)
                .cloned()
                .collect();
            lanes.push(tokio::spawn(async move {
                for batch in mine {
                    let mut tx = db.begin().await?;
                    for row in &rows[batch] {
                        devices::insert_device(&mut tx, row).await?;
                    }
                    tx.commit().await?;
                }
                Ok::<(), watchgrid_store::StoreError>(())
            }));
        }
        for lane in lanes {
            lane.await?.context("inserting devices")?;
        }
        Ok(())
    }
}

/// An onboarding token for one registration in the benchmark's tenant, with secret `secret`
/// (see [`crate::bench`]: registering a device is how a server that did not load its device
/// index at start-up is made to load it).
pub async fn create_token(db: &Database, tenant: Uuid, secret: &str) -> Result<()> {
    let row = OnboardingTokenRow {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        description: "watchgrid-bench".into(),
        max_uses: 1,
        uses: 0,
        tags: Json(vec![]),
        created_by: "watchgrid-bench".into(),
        created_at: Utc::now(),
        expires_at: None,
        revoked_at: None,
    };
    devices::create_onboarding_token(db, &row, &addr::credential_hash(secret)).await?;
    Ok(())
}

/// Open a pool on `url`.
pub async fn open(url: &str, connections: u32) -> Result<Database> {
    let parsed = DatabaseUrl::parse(url)?;
    Ok(Database::connect(&parsed, connections).await?)
}

/// What the database says after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    /// Rows with `last_seen_at` set at all.
    pub rows_seen: u64,
    /// Devices the load got a 200 for.
    pub heard: u64,
    /// Of those, how many have `last_seen_at` at or after the run started.
    pub heard_written: u64,
}

/// Compare `last_seen_at` with the devices the load heard from.
pub async fn written(
    db: &Database,
    ids: &[Uuid],
    heard: &Bitset,
    since: DateTime<Utc>,
) -> Result<Written> {
    let rows = devices::all_devices(db).await?;
    let seen: HashMap<Uuid, Option<DateTime<Utc>>> =
        rows.iter().map(|r| (r.id, r.last_seen_at)).collect();
    let mut result = Written {
        rows_seen: rows.iter().filter(|r| r.last_seen_at.is_some()).count() as u64,
        heard: 0,
        heard_written: 0,
    };
    for (i, id) in ids.iter().enumerate() {
        let Ok(i) = u32::try_from(i) else {
            bail!("too many devices")
        };
        if heard.get(i) {
            result.heard += 1;
            if seen
                .get(id)
                .copied()
                .flatten()
                .is_some_and(|at| at >= since)
            {
                result.heard_written += 1;
            }
        }
    }
    Ok(result)
}

/// Poll until every heard device's `last_seen_at` is written or `limit` passes; returns the
/// last answer and how long it took.
pub async fn wait_written(
    db: &Database,
    ids: &[Uuid],
    heard: &Bitset,
    since: DateTime<Utc>,
    limit: std::time::Duration,
) -> Result<(Written, std::time::Duration)> {
    let started = Instant::now();
    loop {
        let now = written(db, ids, heard, since).await?;
        if now.heard_written == now.heard || started.elapsed() >= limit {
            return Ok((now, started.elapsed()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
