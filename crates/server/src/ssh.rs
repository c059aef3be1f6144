//! The per-tenant SSH certificate authorities: the CA key files under `WATCHGRID_SSH_CA_DIR`,
//! checked against the fingerprints the database records, and the KRL built from the
//! database's revocations.
//!
//! Keys are created once per tenant (on tenant creation, and at start-up for tenants that have
//! no CA record yet). A key file that is missing or does not match its recorded fingerprint is
//! never replaced: the `ssh_ca` health check and every signing report it, naming the tenant,
//! until the file is restored from a backup. Loaded keys are cached by the file's identity
//! (device, inode, size, modification time), so a restored file is picked up at the next
//! signing or health probe without a restart.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use watchgrid_core::audit::{audited, AuditContext, AuditedFailure, Outcome};
use watchgrid_sshca::{CaKey, Krl, PublicKey};
use watchgrid_store::ssh::{self as store, CaRow};
use watchgrid_store::tenants::TenantRow;
use watchgrid_store::{CaState, Constraint, Database, StoreError, Tx};

/// A new tenant's default validity for user certificates.
pub const DEFAULT_VALIDITY_SECS: i64 = 3600;
/// A new tenant's longest validity for user certificates.
pub const DEFAULT_MAX_VALIDITY_SECS: i64 = 12 * 3600;
/// The longest validity a tenant may allow at all.
pub const VALIDITY_CEILING_SECS: i64 = 7 * 24 * 3600;

/// The two CAs of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaKind {
    /// Signs users' certificates; devices trust it (`TrustedUserCAKeys`).
    User,
    /// Signs devices' host certificates; clients trust it (`@cert-authority`).
    Host,
}

impl CaKind {
    pub const ALL: [CaKind; 2] = [CaKind::User, CaKind::Host];

    pub fn as_str(self) -> &'static str {
        match self {
            CaKind::User => "user",
            CaKind::Host => "host",
        }
    }
}

/// The file name of a tenant's CA key: `ca_<slug>_<kind>`, and `_g<n>` for rotated
/// generations.
pub fn file_name(slug: &str, kind: CaKind, generation: i32) -> String {
    if generation <= 1 {
        format!("ca_{slug}_{}", kind.as_str())
    } else {
        format!("ca_{slug}_{}_g{generation}", kind.as_str())
    }
}

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

#[derive(Debug)]
struct Cached {
    stamp: FileStamp,
    key: Arc<CaKey>,
}

/// The CA key files of every tenant, and a cache of the loaded keys.
#[derive(Debug)]
pub struct SshAuthority {
    dir: PathBuf,
    cache: Mutex<HashMap<String, Cached>>,
    /// On SQLite, signings wait here for their turn to write rather than in SQLite's busy
    /// handler, which sleeps in growing steps (up to 100 ms) and made the latency tail.
    write_gate: tokio::sync::Mutex<()>,
    /// On PostgreSQL, serials reserved in advance per tenant (see [`Self::next_serial`]).
    serial_blocks: tokio::sync::Mutex<HashMap<Uuid, std::ops::Range<i64>>>,
    /// The CA records the health check read last, with their tenants' slugs: while the
    /// database is unreachable the check verifies the files against these, so that an outage
    /// is reported by the `db` check only and never as a CA problem.
    last_live_cas: Mutex<Option<Vec<(String, CaRow)>>>,
}

/// How long the `ssh_ca` health check waits for the CA records before it checks the files
/// against the records it read last (well within the check's own deadline).
pub const HEALTH_RECORDS_DEADLINE: std::time::Duration = std::time::Duration::from_millis(500);

/// Serials a PostgreSQL replica reserves at once per tenant.
pub const SERIAL_BLOCK: i64 = 64;

impl SshAuthority {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            cache: Mutex::new(HashMap::new()),
            write_gate: tokio::sync::Mutex::new(()),
            serial_blocks: tokio::sync::Mutex::new(HashMap::new()),
            last_live_cas: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A turn to write a certificate: one signing transaction at a time on SQLite (a single
    /// writer anyway), none needed on PostgreSQL (the tenant's serial row orders them).
    pub async fn write_turn(&self, db: &Database) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match db.backend() {
            watchgrid_store::Backend::Sqlite => Some(self.write_gate.lock().await),
            watchgrid_store::Backend::Postgres => None,
        }
    }

    /// A serial for a user certificate on PostgreSQL, taken from a block of [`SERIAL_BLOCK`]
    /// this replica reserved in one short statement. Taking serials inside the signing
    /// transaction would hold the tenant's counter row locked until each commit, so signings
    /// of one tenant could only run one commit at a time (1,150/s on this machine). Serials stay
    /// unique per tenant across replicas (blocks are disjoint); a refused request or a restart
    /// leaves gaps, which OpenSSH does not mind. `None` on SQLite, whose single writer takes
    /// the serial in the transaction.
    pub async fn next_serial(
        &self,
        db: &Database,
        tenant: Uuid,
    ) -> Result<Option<i64>, StoreError> {
        if db.backend() != watchgrid_store::Backend::Postgres {
            return Ok(None);
        }
        // Held across the reservation so that concurrent signings share one block.
        let mut blocks = self.serial_blocks.lock().await;
        let block = blocks.entry(tenant).or_insert(0..0);
        if block.is_empty() {
            let first = watchgrid_store::ssh::reserve_serials(db, tenant, SERIAL_BLOCK).await?;
            *block = first..first + SERIAL_BLOCK;
        }
        let serial = block.start;
        block.start += 1;
        Ok(Some(serial))
    }

    /// The key a CA record names, loaded from its file (or the cache while the file is
    /// unchanged) and checked against the recorded fingerprint. The error names the tenant and
    /// the file and says what to do.
    pub fn key(&self, slug: &str, ca: &CaRow) -> Result<Arc<CaKey>, String> {
        let path = self.dir.join(&ca.file_name);
        let problem = |what: String| {
            format!(
                "tenant {slug}: {} CA key {} {what}; restore it from the SSH CA backup \
                 (docs/ssh-ca.md#backup--restore) — a new key is never generated in its place",
                ca.kind,
                path.display()
            )
        };
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.forget(&ca.file_name);
                return Err(problem("is missing".into()));
            }
            Err(err) => return Err(problem(format!("cannot be read ({err})"))),
        };
        let stamp = FileStamp::of(&meta);
        if let Some(cached) = self.cached(&ca.file_name, stamp) {
            if cached.fingerprint() == ca.fingerprint {
                return Ok(cached);
            }
        }
        let key = CaKey::load(&path).map_err(|e| problem(format!("cannot be loaded ({e})")))?;
        let fingerprint = key.fingerprint();
        if fingerprint != ca.fingerprint {
            self.forget(&ca.file_name);
            return Err(problem(format!(
                "does not match the recorded fingerprint (file {fingerprint}, recorded {})",
                ca.fingerprint
            )));
        }
        let key = Arc::new(key);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                ca.file_name.clone(),
                Cached {
                    stamp,
                    key: key.clone(),
                },
            );
        }
        Ok(key)
    }

    fn cached(&self, name: &str, stamp: FileStamp) -> Option<Arc<CaKey>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(name)
            .filter(|c| c.stamp == stamp)
            .map(|c| c.key.clone())
    }

    fn forget(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(name);
        }
    }

    /// Check a CA's private key and its `.pub` file.
    pub fn check(&self, slug: &str, ca: &CaRow) -> Result<(), String> {
        self.key(slug, ca)?;
        let pub_path = self.dir.join(format!("{}.pub", ca.file_name));
        let text = std::fs::read_to_string(&pub_path).map_err(|e| {
            format!(
                "tenant {slug}: {} CA public key {} cannot be read ({e}); restore it from the \
                 SSH CA backup (docs/ssh-ca.md#backup--restore)",
                ca.kind,
                pub_path.display()
            )
        })?;
        match PublicKey::from_openssh(text.trim()) {
            Ok(key) if key.fingerprint() == ca.fingerprint => Ok(()),
            _ => Err(format!(
                "tenant {slug}: {} CA public key {} does not match the recorded fingerprint {}",
                ca.kind,
                pub_path.display(),
                ca.fingerprint
            )),
        }
    }

    /// Create the key file `name` unless it exists; if it exists, adopt it. Two replicas racing
    /// end with the same key: the private key reaches its final name with a hard link, which
    /// fails if the name is taken, and the loser loads the winner's key.
    pub fn create_or_adopt(&self, name: &str) -> Result<CaKey, String> {
        let dir = &self.dir;
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .and_then(|()| {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| {
                    format!("cannot create the SSH CA directory {}: {e}", dir.display())
                })?;
        }
        let path = dir.join(name);
        let key = if path.exists() {
            tracing::warn!(file = %path.display(), "adopting an existing SSH CA key file that the database did not record");
            CaKey::load(&path)
                .map_err(|e| format!("existing SSH CA key {}: {e}", path.display()))?
        } else {
            let staging = dir.join(format!(".staging-{}", Uuid::new_v4()));
            std::fs::create_dir(&staging)
                .and_then(|()| {
                    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
            let result = (|| {
                let fresh = CaKey::generate(name).map_err(|e| e.to_string())?;
                fresh
                    .save(&staging, name)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                match std::fs::hard_link(staging.join(name), &path) {
                    Ok(()) => {
                        sync_dir(dir);
                        Ok(fresh)
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                        CaKey::load(&path).map_err(|e| e.to_string())
                    }
                    Err(err) => Err(format!("cannot create {}: {err}", path.display())),
                }
            })();
            let _ = std::fs::remove_dir_all(&staging);
            result?
        };
        write_public(dir, name, &key.public_key_openssh())?;
        Ok(key)
    }

    /// The key file of a tenant's CA generation, created (or adopted) off the async
    /// threads, and the active record for it.
    async fn new_key(
        self: &Arc<Self>,
        tenant: &TenantRow,
        kind: CaKind,
        generation: i32,
    ) -> Result<CaRow, CaSetupError> {
        let name = file_name(&tenant.slug, kind, generation);
        let this = self.clone();
        let key = tokio::task::spawn_blocking({
            let name = name.clone();
            move || this.create_or_adopt(&name)
        })
        .await
        .map_err(|e| CaSetupError::Files(e.to_string()))?
        .map_err(CaSetupError::Files)?;
        Ok(CaRow {
            tenant_id: tenant.id,
            kind: kind.as_str().to_owned(),
            generation,
            file_name: name,
            fingerprint: key.fingerprint(),
            public_key: key.public_key_openssh(),
            state: CaState::Active,
            created_at: Utc::now(),
            retire_at: None,
        })
    }

    /// Create (or adopt) both CAs of a tenant that has none, record them and its settings, in
    /// `tx`.
    pub async fn create_tenant_cas(
        self: &Arc<Self>,
        tx: &mut Tx,
        tenant: &TenantRow,
    ) -> Result<Vec<CaRow>, CaSetupError> {
        let mut rows = Vec::new();
        for kind in CaKind::ALL {
            let row = self.new_key(tenant, kind, 1).await?;
            store::insert_ca(&mut *tx, &row).await?;
            rows.push(row);
        }
        store::ensure_settings(
            &mut *tx,
            tenant.id,
            DEFAULT_VALIDITY_SECS,
            DEFAULT_MAX_VALIDITY_SECS,
        )
        .await?;
        tracing::info!(tenant = %tenant.slug, user_ca = %rows[0].fingerprint, host_ca = %rows[1].fingerprint, "created the tenant's SSH CAs");
        Ok(rows)
    }

    /// At start-up: give every tenant without a CA record its CAs. Another replica doing the
    /// same at the same moment is fine (its records win; the files are the same).
    pub async fn ensure_all(self: &Arc<Self>, db: &Database) -> Result<(), CaSetupError> {
        for tenant in store::tenants_without_ca(db).await? {
            let mut tx = db.begin().await?;
            match self.create_tenant_cas(&mut tx, &tenant).await {
                Ok(_) => tx.commit().await?,
                Err(CaSetupError::Store(StoreError::Conflict(Constraint::SshCaGeneration))) => {}
                Err(err) => return Err(err),
            }
        }
        // The health check knows the records from the start, so that a database outage right
        // after start-up still leaves it something to check the files against.
        let cas = store::all_live_cas(db, Utc::now()).await?;
        self.remember_live_cas(cas);
        Ok(())
    }

    fn remember_live_cas(&self, cas: Vec<(String, CaRow)>) {
        match self.last_live_cas.lock() {
            Ok(mut last) => *last = Some(cas),
            Err(poisoned) => *poisoned.into_inner() = Some(cas),
        }
    }

    /// The `ssh_ca` health check: every live CA's files exist and match their records. If the
    /// records cannot be read within [`HEALTH_RECORDS_DEADLINE`] (the database is down), the
    /// files are checked against the records read last, or not at all before any read: the
    /// `db` check reports the outage, and this one only the CA's own problems.
    pub async fn health(self: &Arc<Self>, db: &Database) -> Result<(), String> {
        let now = Utc::now();
        let read =
            tokio::time::timeout(HEALTH_RECORDS_DEADLINE, store::all_live_cas(db, now)).await;
        let cas = match read {
            Ok(Ok(cas)) => {
                self.remember_live_cas(cas.clone());
                cas
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "SSH CA health: records unreadable; checking the last ones read");
                self.last_read_live_cas(now)
            }
            Err(_) => self.last_read_live_cas(now),
        };
        let this = self.clone();
        let problems = tokio::task::spawn_blocking(move || {
            cas.iter()
                .filter_map(|(slug, ca)| this.check(slug, ca).err())
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| e.to_string())?;
        match problems.len() {
            0 => Ok(()),
            1..=3 => Err(problems.join("; ")),
            n => Err(format!("{}; and {} more", problems[..3].join("; "), n - 3)),
        }
    }

    /// The CA records the health check read last that are still trusted at `now`.
    fn last_read_live_cas(&self, now: DateTime<Utc>) -> Vec<(String, CaRow)> {
        let last = match self.last_live_cas.lock() {
            Ok(last) => last.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        last.unwrap_or_default()
            .into_iter()
            .filter(|(_, ca)| ca.retire_at.is_none_or(|at| at > now))
            .collect()
    }

    /// The active CA of `kind` for a tenant and its key.
    pub async fn active(
        &self,
        db: impl Into<watchgrid_store::Conn<'_>>,
        tenant: &TenantRow,
        kind: CaKind,
    ) -> Result<(CaRow, Arc<CaKey>), ActiveCaError> {
        let cas = store::cas_of_tenant(db, tenant.id, Utc::now()).await?;
        let ca = cas
            .into_iter()
            .filter(|c| c.kind == kind.as_str() && c.state == CaState::Active)
            .max_by_key(|c| c.generation)
            .ok_or_else(|| {
                ActiveCaError::Unavailable(format!(
                    "tenant {} has no active SSH {} CA",
                    tenant.slug,
                    kind.as_str()
                ))
            })?;
        let key = self
            .key(&tenant.slug, &ca)
            .map_err(ActiveCaError::Unavailable)?;
        Ok((ca, key))
    }

    /// The tenant's KRL: every revoked certificate still within its validity, by serial under
    /// the CA that signed it, and every revoked key id under each user CA. Needs no key files.
    pub async fn krl(
        &self,
        db: &Database,
        tenant: &TenantRow,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, KrlError> {
        let settings = store::settings(db, tenant.id)
            .await?
            .ok_or(KrlError::NoCa)?;
        let cas = store::cas_of_tenant(db, tenant.id, now).await?;
        let (certs, key_ids) = store::revocations_for_krl(db, tenant.id, now).await?;
        let keys: HashMap<(String, i32), PublicKey> = cas
            .iter()
            .map(|c| {
                PublicKey::from_openssh(&c.public_key)
                    .map(|k| ((c.kind.clone(), c.generation), k))
                    .map_err(|e| KrlError::Corrupt(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let version = u64::try_from(settings.krl_version).unwrap_or(0);
        let mut krl = Krl::new(version, &format!("watchgrid tenant {}", tenant.slug))
            .map_err(|e| KrlError::Corrupt(e.to_string()))?;
        for cert in &certs {
            // A certificate of a retired CA is not trusted anywhere any more.
            if let Some(ca) = keys.get(&(cert.kind.clone(), cert.ca_generation)) {
                let serial = u64::try_from(cert.serial).unwrap_or(0);
                krl.revoke_serial(ca, serial)
                    .map_err(|e| KrlError::Corrupt(e.to_string()))?;
            }
        }
        for ((kind, _), ca) in &keys {
            if kind == "user" {
                for key_id in &key_ids {
                    krl.revoke_key_id(ca, key_id)
                        .map_err(|e| KrlError::Corrupt(e.to_string()))?;
                }
            }
        }
        krl.set_generated_at(SystemTime::from(now));
        Ok(krl.to_bytes())
    }
}

/// Removing `user` from `tenant`, in the caller's transaction: every current certificate of
/// theirs in the tenant is revoked (the KRL lists it at once) and their own principal grant
/// there removed. Returns how many certificates were revoked.
pub async fn revoke_removed_member(
    tx: &mut Tx,
    tenant: Uuid,
    user: Uuid,
    by: &str,
) -> Result<u64, StoreError> {
    store::set_grant(&mut *tx, tenant, store::GrantSubject::User(user), &[], by).await?;
    let target = store::RevokeTarget::User(user);
    store::revoke(&mut *tx, tenant, &target, "removed from the tenant", by).await
}

/// Deleting a device, in the caller's transaction: every current host certificate of it is
/// revoked, so clients that fetch the KRL (`RevokedHostKeys`) refuse its host key at once.
pub async fn revoke_deleted_device(
    tx: &mut Tx,
    tenant: Uuid,
    device: Uuid,
    by: &str,
) -> Result<u64, StoreError> {
    let target = store::RevokeTarget::Device(device);
    store::revoke(&mut *tx, tenant, &target, "device deleted", by).await
}

/// What a rotation did, per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub kind: CaKind,
    pub generation: i32,
    pub fingerprint: String,
    pub previous: Vec<String>,
}

impl SshAuthority {
    /// Rotate a tenant's CAs of `kinds`: a new key (file `ca_<slug>_<kind>_g<n>`) becomes the
    /// active one; the current ones stay trusted (TrustedUserCAKeys, known_hosts) until
    /// `now + grace`, then drop out everywhere. Recorded and audited in one transaction.
    pub async fn rotate(
        self: &Arc<Self>,
        db: &Database,
        slug: &str,
        kinds: &[CaKind],
        grace: std::time::Duration,
    ) -> Result<Vec<Rotated>, CaSetupError> {
        let tenant = watchgrid_store::tenants::tenant_by_slug(db, slug)
            .await?
            .ok_or_else(|| CaSetupError::Files(format!("no tenant {slug:?}")))?;
        let now = Utc::now();
        let retire_at = now
            + chrono::Duration::from_std(grace)
                .map_err(|_| CaSetupError::Files("the grace period is too long".into()))?;
        let ctx = AuditContext::acting(
            "watchgrid-server ssh-ca rotate",
            Some((tenant.id, tenant.slug.clone())),
            None,
        );
        audited(
            db,
            &ctx,
            "ssh.ca.rotate",
            "ssh_ca",
            Some(tenant.slug.clone()),
            async |tx| {
                let current = store::cas_of_tenant(&mut *tx, tenant.id, now).await?;
                let mut done = Vec::new();
                for &kind in kinds {
                    let generation =
                        store::max_generation(&mut *tx, tenant.id, kind.as_str()).await? + 1;
                    let row = self.new_key(&tenant, kind, generation).await?;
                    store::retire_active(&mut *tx, tenant.id, kind.as_str(), retire_at).await?;
                    store::insert_ca(&mut *tx, &row).await?;
                    done.push(Rotated {
                        kind,
                        generation,
                        fingerprint: row.fingerprint.clone(),
                        previous: current
                            .iter()
                            .filter(|c| c.kind == kind.as_str())
                            .map(|c| c.fingerprint.clone())
                            .collect(),
                    });
                }
                let details = serde_json::json!({
                    "grace_secs": grace.as_secs(),
                    "retire_at": retire_at.to_rfc3339(),
                    "new": done.iter().map(|r| serde_json::json!({"kind": r.kind.as_str(), "generation": r.generation, "fingerprint": r.fingerprint, "previous": r.previous})).collect::<Vec<_>>(),
                });
                let slug = tenant.slug.clone();
                Ok(Outcome::new(done, slug, details))
            },
        )
        .await
    }
}

impl AuditedFailure for CaSetupError {
    fn failure_details(&self) -> serde_json::Value {
        // Both kinds name files or database errors, never key material.
        serde_json::json!({"error": "rotation_failed", "message": self.to_string()})
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Write `name.pub` (0644) atomically unless it already holds `line`.
fn write_public(dir: &Path, name: &str, line: &str) -> Result<(), String> {
    let path = dir.join(format!("{name}.pub"));
    let content = format!("{line}\n");
    if std::fs::read_to_string(&path).is_ok_and(|existing| existing == content) {
        return Ok(());
    }
    let temp = dir.join(format!(".{name}.pub.{}", Uuid::new_v4()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("cannot write {}: {err}", path.display()));
    }
    sync_dir(dir);
    Ok(())
}

/// Creating a tenant's CAs failed.
#[derive(Debug, thiserror::Error)]
pub enum CaSetupError {
    #[error("{0}")]
    Files(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// No usable active CA.
#[derive(Debug, thiserror::Error)]
pub enum ActiveCaError {
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum KrlError {
    #[error("the tenant has no SSH CA")]
    NoCa,
    #[error("corrupt SSH CA record: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
