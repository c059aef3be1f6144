//! The start-up sequence of `watchgrid-server serve`, migrations in the background, and
//! graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use watchgrid_core::runtime::{until_cancelled, Leadership, Placement, Supervisor};
use watchgrid_store::Migrator;
use watchgrid_store::{Database, StoreError};

use crate::config::Config;
use crate::health::{MigrationState, MigrationStatus};
use crate::listener::ConnectionPolicy;
use crate::state::AppState;

/// How long in-flight requests may run on after SIGTERM before the server exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Start everything and serve until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    tracing::info!(
        version = crate::VERSION,
        commit = crate::BUILD_COMMIT,
        mode = ?config.mode,
        listen = %config.listen,
        database = %config.database_display,
        data_dir = %config.data_dir.display(),
        "watchgrid-server starting"
    );
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let db = Database::connect(&config.database, config.db_max_connections)
        .await
        .with_context(|| format!("opening the database {}", config.database_display))?;
    let listener = crate::listener::bind(config.listen)
        .with_context(|| format!("listening on {} (WATCHGRID_LISTEN)", config.listen))?;
    let state = AppState::new(config, db.clone())?;
    let supervisor = Arc::new(Supervisor::new(Leadership::always()));
    let limits = state.limits.clone();
    supervisor.spawn("rate_limit_cleanup", Placement::EveryReplica, move |stop| {
        let limits = limits.clone();
        until_cancelled(stop, async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                limits.forget_idle();
            }
        })
    });
    let (background, tasks) = (state.clone(), supervisor.clone());
    let preparing = tokio::spawn(async move {
        if prepare_database(&background).await {
            start_background(&background, &tasks);
        }
    });
    run_http(listener, state, shutdown_signal()).await?;
    // Start-up that has not finished by now never will: nothing more is started.
    preparing.abort();
    // The last started stops first: Magic DNS, device sync, the agent API (its requests
    // finish), then the heartbeat flusher with its last flush, so no heartbeat arrives after
    // it; then the hub and the rest.
    supervisor.shutdown(TASK_STOP_LIMIT).await;
    db.close().await;
    tracing::info!("watchgrid-server stopped");
    Ok(())
}

/// How long each background task may take to stop at shutdown before it is aborted: the
/// agent API's last requests, the last heartbeat flush.
const TASK_STOP_LIMIT: Duration = Duration::from_secs(10);

/// Write the heartbeats still in the coalescing buffer (up to a second's worth), so a clean
/// stop loses no `last_seen_at`. A periodic flush in progress finishes first; none starts
/// after. The agent API has stopped by then.
async fn flush_last_heartbeats(fleet: &crate::fleet::Fleet, db: &Database) {
    match fleet.heartbeats.flush_final(db).await {
        Ok(0) => {}
        Ok(devices) => tracing::info!(devices, "wrote the last heartbeats before stopping"),
        Err(err) => {
            tracing::warn!(error = %err, "cannot write the last heartbeats before stopping")
        }
    }
}

/// Run `work` until `stop` is cancelled; work that ends by itself (a disabled feature, a
/// backend with nothing to follow) idles until then instead of counting as a failure.
async fn idle_after<F: Future<Output = ()>>(
    stop: CancellationToken,
    work: F,
) -> anyhow::Result<()> {
    tokio::select! {
        () = stop.cancelled() => {}
        () = work => stop.cancelled().await,
    }
    Ok(())
}

/// The background work, once the database and the device index are ready, in start order
/// (they stop in reverse): audit retention (leader only), the WireGuard hub, the heartbeat
/// flusher, the agent API listener, device sync between replicas and Magic DNS.
pub fn start_background(state: &AppState, supervisor: &Supervisor) {
    let (db, days) = (state.db.clone(), state.config.audit_retention_days);
    supervisor.spawn("audit_retention", Placement::LeaderOnly, move |stop| {
        idle_after(stop, crate::audit::run_sweeper(db.clone(), days))
    });
    let fleet = state.fleet.clone();
    supervisor.spawn("wireguard_hub", Placement::EveryReplica, move |stop| {
        idle_after(stop, fleet.hub.clone().run(fleet.clone()))
    });
    let (fleet, db) = (state.fleet.clone(), state.db.clone());
    supervisor.spawn("heartbeat_flusher", Placement::EveryReplica, move |stop| {
        let (fleet, db) = (fleet.clone(), db.clone());
        async move {
            idle_after(stop, fleet.heartbeats.run_flusher(db.clone())).await?;
            flush_last_heartbeats(&fleet, &db).await;
            Ok(())
        }
    });
    let agents = state.clone();
    supervisor.spawn("agent_api", Placement::EveryReplica, move |stop| {
        let state = agents.clone();
        async move {
            serve_agent_api(state, stop).await;
            Ok(())
        }
    });
    let (db, fleet) = (state.db.clone(), state.fleet.clone());
    supervisor.spawn("device_sync", Placement::EveryReplica, move |stop| {
        idle_after(
            stop,
            crate::fleet::sync::follow_device_changes(db.clone(), fleet.clone()),
        )
    });
    let dns = state.clone();
    supervisor.spawn("magic_dns", Placement::EveryReplica, move |stop| {
        idle_after(stop, serve_dns(dns.clone()))
    });
}

/// Serve Magic DNS for `state`'s fleet: a query's source address names its device's tenant.
pub async fn serve_dns(state: AppState) {
    let fleet = state.fleet.clone();
    let tenant_of = move |ip| fleet.index.by_ip(ip).map(|device| device.tenant_id);
    crate::dns::serve(
        state.fleet.dns.clone(),
        tenant_of,
        state.metrics.dns.clone(),
    )
    .await;
}

/// Serve the agent API on the server's overlay address. The address exists only once the
/// WireGuard interface is up, so binding is retried until it works.
///
/// It stops (letting requests in progress finish) once `stop` is cancelled.
pub async fn serve_agent_api(state: AppState, stop: CancellationToken) {
    let address = state.fleet.config.agent_listen;
    let mut warned = false;
    let listener = loop {
        match crate::listener::bind(address) {
            Ok(listener) => break listener,
            Err(err) => {
                if !warned {
                    tracing::warn!(%address, error = %err, "agent API cannot listen yet (waiting for the overlay address)");
                    warned = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    };
    tracing::info!(%address, "agent API listening");
    let app = crate::http::agent_router(state);
    crate::listener::serve(listener, app, ConnectionPolicy::AGENT, async move {
        stop.cancelled().await;
    })
    .await;
    tracing::info!(%address, "agent API stopped");
}

/// Serve HTTP until `shutdown` resolves, then let in-flight requests finish (up to
/// [`SHUTDOWN_GRACE`]).
pub async fn run_http(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "HTTP listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = crate::http::router(state);
    let server = crate::listener::serve(listener, app, ConnectionPolicy::API, async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    let mut stop_rx = stop_rx;
    let deadline = async move {
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => Ok(()),
        () = deadline => {
            tracing::warn!(grace_seconds = SHUTDOWN_GRACE.as_secs(), "in-flight requests did not finish in time; exiting");
            Ok(())
        }
    }
}

/// Migrate, create the bootstrap administrator, load the device index, then mark the server
/// ready. Returns whether it got there.
pub async fn prepare_database(state: &AppState) -> bool {
    if !migrate_until_done(state.db.clone(), state.migrations.clone()).await {
        return false;
    }
    let mut delay = Duration::from_secs(1);
    loop {
        let prepared = async {
            crate::bootstrap::ensure_admin(state).await?;
            state.ssh.ensure_all(&state.db).await?;
            // Tenants first: the zone names devices by their tenant's slug.
            let tenants = watchgrid_store::tenants::list_tenants(&state.db).await?;
            state.fleet.dns.load_tenants(&tenants);
            let rows = watchgrid_store::devices::all_devices(&state.db).await?;
            state.fleet.load_all(&rows);
            tracing::info!(devices = rows.len(), "device index loaded");
            // Only now is it known whether devices pin a key that a missing file held.
            state
                .fleet
                .hub
                .settle_key(rows.len())
                .map_err(|e| anyhow::anyhow!("the server's WireGuard key: {e}"))?;
            let records = watchgrid_store::dns::all_records(&state.db).await?;
            state.fleet.dns.load_records(&records);
            tracing::info!(records = records.len(), "Magic DNS records loaded");
            anyhow::Ok(())
        }
        .await;
        match prepared {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    retry_in_seconds = delay.as_secs(),
                    "preparing the server failed; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    state.migrations.set(MigrationStatus::Ok);
    true
}

/// Apply migrations, retrying while the database is unreachable. Logs exactly
/// `All migrations completed` on success; a failing migration leaves the server not ready
/// (state `Failed`). Returns whether migrations completed; the caller marks readiness.
pub async fn migrate_until_done(db: Database, state: MigrationState) -> bool {
    let migrator = db.migrator();
    migrate_with(db, state, migrator).await
}

/// [`migrate_until_done`] with another migration set: tests pass a broken one.
#[cfg(any(test, feature = "test-util"))]
pub async fn migrate_until_done_with(
    db: Database,
    state: MigrationState,
    migrator: &'static Migrator,
) -> bool {
    migrate_with(db, state, migrator).await
}

async fn migrate_with(db: Database, state: MigrationState, migrator: &'static Migrator) -> bool {
    let mut delay = Duration::from_secs(1);
    loop {
        state.set(MigrationStatus::Pending);
        match db.migrate_with(migrator).await {
            Ok(report) => {
                for version in &report.applied {
                    tracing::info!(version, "applied migration");
                }
                if !report.unknown.is_empty() {
                    tracing::warn!(
                        versions = ?report.unknown,
                        "the database has migrations this release does not know: it was migrated \
                         by a newer release; restore the pre-upgrade dump to roll back safely"
                    );
                }
                tracing::info!(applied = report.applied.len(), "All migrations completed");
                return true;
            }
            Err(StoreError::Unavailable(reason)) => {
                tracing::warn!(%reason, retry_in_seconds = delay.as_secs(), "database unavailable; migrations will be retried");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(err) => {
                tracing::error!(error = %err, "migration failed: the schema is unchanged and the server is not ready");
                state.set(MigrationStatus::Failed(err.to_string()));
                return false;
            }
        }
    }
}

/// `watchgrid-server migrate`: apply migrations and exit.
pub async fn migrate_once(config: &Config) -> anyhow::Result<()> {
    let db = Database::connect(&config.database, 2)
        .await
        .with_context(|| format!("opening the database {}", config.database_display))?;
    let report = db.migrate().await.context("migrating")?;
    for version in &report.applied {
        tracing::info!(version, "applied migration");
    }
    tracing::info!(applied = report.applied.len(), "All migrations completed");
    db.close().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
