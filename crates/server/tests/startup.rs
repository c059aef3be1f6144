//! The real `watchgrid-server` binary: the README's no-configuration start, configuration
//! errors, migrations under a held lock, two replicas on one empty PostgreSQL, a PostgreSQL
//! outage under a running server, and graceful shutdown.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::time::Duration;

use common::ServerProcess;
use sqlx::Connection;
use watchgrid_store::MIGRATION_LOCK_KEY;
use watchgrid_testkit::wait::wait_until;
use watchgrid_testkit::{PgCluster, TestBackend, TestDatabase};

const STARTUP: Duration = Duration::from_secs(30);

fn ok(status: u16, body: &serde_json::Value) -> bool {
    status == 200 && body["status"] == "ok"
}

/// The README's first command: no configuration at all, in an empty directory.
#[tokio::test]
async fn first_run_needs_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let health = server.wait_for("/healthz", STARTUP, ok).await;
    assert_eq!(health["checks"]["db"], "ok");
    let ready = server.wait_for("/readyz", STARTUP, ok).await;
    assert_eq!(ready["migrations"], "ok");
    let (status, version) = server.get("/api/version").await.unwrap();
    assert_eq!(status, 200);
    assert!(version.contains(env!("CARGO_PKG_VERSION")));
    let (status, metrics) = server.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    for series in [
        "watchgrid_http_requests_total",
        "watchgrid_http_request_duration_seconds",
        "watchgrid_db_open_connections",
        "watchgrid_db_in_use_connections",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }

    let data = dir.path().join("watchgrid-data");
    for file in ["jwt_secret", "admin_password", "watchgrid.db"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} must be private, is {mode:o}");
    }
    let secret = std::fs::read_to_string(data.join("jwt_secret")).unwrap();
    let password = std::fs::read_to_string(data.join("admin_password")).unwrap();

    assert!(server.terminate().await.success());
    let logs = server.logs();
    assert!(logs.contains("All migrations completed"), "{logs}");
    assert!(
        logs.contains("JWT_SECRET is not set: generated one"),
        "{logs}"
    );
    assert!(
        !logs.contains(secret.trim()) && !logs.contains(password.trim()),
        "secret logged"
    );
    assert!(logs.contains("watchgrid-server stopped"), "{logs}");
    // Its stderr is a file here, not a terminal: no colour codes in it.
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape codes in a log file: {logs:?}"
    );
}

#[tokio::test]
async fn production_refuses_a_short_jwt_secret_naming_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(
        dir.path(),
        &[("WATCHGRID_MODE", "production"), ("JWT_SECRET", "short")],
    );
    let status = server.exit_status(Duration::from_secs(10)).await;
    assert!(!status.success());
    let logs = server.logs();
    assert!(
        logs.contains("JWT_SECRET: must be at least 32 characters"),
        "{logs}"
    );
    assert!(
        logs.contains("FRONTEND_HOST: is required in production mode"),
        "{logs}"
    );
    assert!(
        logs.contains("ADMIN_PASSWORD: is required in production mode"),
        "{logs}"
    );
}

#[test]
fn check_config_validates_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut command = std::process::Command::new(common::server_binary());
        command
            .env_clear()
            .current_dir(dir.path())
            .arg("check-config");
        for (k, v) in envs {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let good = run(&[]);
    assert!(good.status.success());
    assert!(String::from_utf8_lossy(&good.stdout).contains("configuration OK"));
    assert!(
        !dir.path().join("watchgrid-data").exists(),
        "check-config wrote files"
    );

    let bad = run(&[
        ("WATCHGRID_LISTEN", "nowhere"),
        ("WATCHGRID_LOG_FORMAT", "xml"),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("invalid configuration (2 problems)"),
        "{stderr}"
    );
    assert!(stderr.contains("WATCHGRID_LISTEN") && stderr.contains("WATCHGRID_LOG_FORMAT"));

    let usage = std::process::Command::new(common::server_binary())
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// While another replica holds the migration lock, `/readyz` says `pending`; once it is
/// released the migrations run and readiness turns green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_pending_while_migrations_wait() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();

    let server = ServerProcess::spawn(db.dir.path(), &[("DATABASE_URL", &db.url)]);
    let pending = server
        .wait_for("/readyz", STARTUP, |status, body| {
            status == 503 && body["migrations"] == "pending"
        })
        .await;
    assert_eq!(pending["status"], "error");
    assert_eq!(pending["checks"]["db"], "ok");
    // Still pending a while later: it is really waiting on the lock.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = server.get("/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(!server.logs().contains("All migrations completed"));

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();
    let ready = server.wait_for("/readyz", STARTUP, ok).await;
    assert_eq!(ready["migrations"], "ok");
    assert!(server.logs().contains("All migrations completed"));
}

/// Two servers started at the same moment on one empty database both come up; the migrations
/// are applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_start_together_on_one_empty_database() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let first = ServerProcess::spawn(db.dir.path(), &[("DATABASE_URL", &db.url)]);
    let second = ServerProcess::spawn(db.dir.path(), &[("DATABASE_URL", &db.url)]);
    first.wait_for("/readyz", STARTUP, ok).await;
    second.wait_for("/readyz", STARTUP, ok).await;

    let applied = |logs: String| logs.matches("applied migration").count();
    let migrations = watchgrid_store::migrations::POSTGRES.iter().count();
    assert_eq!(
        applied(first.logs()) + applied(second.logs()),
        migrations,
        "each migration applied by exactly one replica"
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, migrations as i64);
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// Stopping PostgreSQL under a running server turns `/healthz` red within seconds; starting it
/// again turns it green without restarting the server. The pool gauges follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_and_recovery() {
    let cluster = PgCluster::temporary().unwrap();
    cluster.start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url("postgres");
    let server = ServerProcess::spawn(dir.path(), &[("DATABASE_URL", &url)]);
    server.wait_for("/readyz", STARTUP, ok).await;
    let (_, metrics) = server.get("/metrics").await.unwrap();
    assert!(gauge(&metrics, "watchgrid_db_open_connections") >= 1.0);

    cluster.stop().unwrap();
    let stopped_at = std::time::Instant::now();
    let down = server
        .wait_for("/healthz", Duration::from_secs(10), |status, _| {
            status == 503
        })
        .await;
    assert!(stopped_at.elapsed() < Duration::from_secs(10));
    assert_eq!(down["status"], "error");
    assert!(
        down["checks"]["db"]
            .as_str()
            .unwrap()
            .starts_with("error: "),
        "{down}"
    );
    wait_until(
        "the dead connections to be dropped",
        Duration::from_secs(10),
        || async {
            let (_, metrics) = server.get("/metrics").await.unwrap();
            if gauge(&metrics, "watchgrid_db_open_connections") == 0.0 {
                return true;
            }
            server.get("/healthz").await;
            false
        },
    )
    .await;

    cluster.start().unwrap();
    let up = server
        .wait_for("/healthz", Duration::from_secs(20), ok)
        .await;
    assert_eq!(up["checks"]["db"], "ok");
    let (_, metrics) = server.get("/metrics").await.unwrap();
    assert!(gauge(&metrics, "watchgrid_db_open_connections") >= 1.0);
}

/// SIGTERM writes the heartbeats still in the coalescing buffer before the process exits: a
/// device heard just before a clean stop has its `last_seen_at`. (The flusher also writes
/// once a second; should its tick fall between the heartbeat and the signal, this test passes
/// without the shutdown flush, but not the other way round.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_the_buffered_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wg.db");
    let url = format!("sqlite://{}", db_path.display());
    let agent_listen = format!("127.64.0.1:{}", common::free_port());
    let mut server = ServerProcess::spawn(
        dir.path(),
        &[
            ("DATABASE_URL", &url),
            ("ADMIN_PASSWORD", common::ADMIN_PASSWORD),
            ("WATCHGRID_WG_BACKEND", "none"),
            ("WATCHGRID_OVERLAY_CIDR", "127.64.0.0/10"),
            ("WATCHGRID_AGENT_LISTEN", &agent_listen),
            ("WATCHGRID_DNS_LISTEN", "off"),
        ],
    );
    server.wait_for("/readyz", STARTUP, ok).await;
    let api = |path: &str| format!("{}{path}", server.base);
    let post = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut request = server.client.post(api(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let path = path.to_owned();
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            assert!((200..300).contains(&status), "{path}: {status} {body}");
            body
        }
    };
    let login = post(
        "/api/auth/login",
        None,
        serde_json::json!({"username": "admin", "password": common::ADMIN_PASSWORD}),
    )
    .await;
    let admin = login["access_token"].as_str().unwrap();
    let token = post(
        "/api/onboarding-tokens",
        Some(admin),
        serde_json::json!({"description": "shutdown test"}),
    )
    .await;
    let public_key = watchgrid_wireguard::key::PrivateKey::generate()
        .public_key()
        .to_string();
    let device = post(
        "/api/agent/register",
        None,
        serde_json::json!({"token": token["secret"], "hostname": "late", "os": "Debian 12",
            "agent_version": "0.1.0", "wg_public_key": public_key}),
    )
    .await;
    assert_eq!(device["overlay_address"], "127.64.0.2/10");

    // The agent API is reached from the device's own overlay address.
    let agent = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 64, 0, 2]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let credential = device["credential"].as_str().unwrap();
    let answered = agent
        .post(format!("http://{agent_listen}/api/agent/heartbeat"))
        .bearer_auth(credential)
        .json(
            &serde_json::json!({"agent_version": "0.1.0", "uptime_secs": 5,
            "hostname": "late", "os": "Debian 12"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status().as_u16(), 200);
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}\n{}", server.logs());
    // The agent API stopped before the last flush, so nothing heard can come after it.
    let logs = server.logs();
    let agents_stopped = logs
        .find("agent API stopped")
        .expect("the agent API stopped");
    let stopped = logs.find("watchgrid-server stopped").expect("a clean stop");
    assert!(agents_stopped < stopped, "{logs}");

    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let last_seen: Option<String> =
        sqlx::query_scalar("SELECT CAST(last_seen_at AS TEXT) FROM devices WHERE name = 'late'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(
        last_seen.is_some(),
        "the buffered heartbeat was lost\n{}",
        server.logs()
    );
}

/// SIGTERM lets a request that is still running finish before the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests() {
    // A "database" that accepts connections and never answers makes `/healthz` take its full
    // check deadline (2 s): a request that is reliably in flight when the signal arrives.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = black_hole.local_addr().unwrap().port();
    let _accepted = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in black_hole.incoming().flatten() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://watchgrid@127.0.0.1:{port}/watchgrid?sslmode=disable");
    let mut server = ServerProcess::spawn(dir.path(), &[("DATABASE_URL", &url)]);
    server
        .wait_for("/api/version", STARTUP, |status, _| status == 200)
        .await;

    let client = server.client.clone();
    let in_flight = tokio::spawn({
        let url = format!("{}/healthz", server.base);
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = server.terminate().await;
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completed");
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["checks"]["db"].as_str().unwrap().contains("timed out"),
        "{body}"
    );
    assert!(status.success(), "{status:?}\n{}", server.logs());
    assert!(server.logs().contains("finishing in-flight requests"));
}

/// `check-config` with the reproduction: a misspelled variable is named with the
/// closest known one (and the configuration still passes), an invalid leader-election mode is
/// refused (issue 11, item 20).
#[test]
fn check_config_warns_on_unknown_variables_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut command = std::process::Command::new(common::server_binary());
        command
            .env_clear()
            .current_dir(dir.path())
            .arg("check-config")
            .envs(envs.iter().copied());
        command.output().unwrap()
    };
    let misspelled = run(&[("WATCHGRID_WG_BACKNED", "userspace")]);
    assert!(misspelled.status.success());
    let stdout = String::from_utf8_lossy(&misspelled.stdout);
    assert!(
        stdout.contains(
            "note: unknown variable WATCHGRID_WG_BACKNED is ignored; did you mean WATCHGRID_WG_BACKEND?"
        ),
        "{stdout}"
    );
    let bogus = run(&[("WATCHGRID_LEADER_ELECTION", "bogus")]);
    assert_eq!(bogus.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bogus.stderr);
    assert!(
        stderr.contains("WATCHGRID_LEADER_ELECTION: must be `none`, `postgres` or `kubernetes`"),
        "{stderr}"
    );
}

/// The server's own argument errors are one line on stderr naming the argument, exit status 2,
/// like the CLI's and the agent's (issue 11, item 23).
#[test]
fn argument_errors_are_one_line_naming_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (
            &["ssh-ca", "rotate", "--tenant", "acme", "--grace", "7x"][..],
            "watchgrid-server: invalid value \"7x\" for '--grace': expected a duration such as 90s, 30m, 48h or 7d",
        ),
        (
            &["ssh-ca", "rotate", "--tenant", "acme", "--kind", "guest"][..],
            "watchgrid-server: invalid value \"guest\" for '--kind': expected user, host, both",
        ),
        (
            &["ssh-ca", "rotate"][..],
            "watchgrid-server: missing required argument '--tenant'",
        ),
        (
            &["serve", "--bogus"][..],
            "watchgrid-server: unexpected argument '--bogus' found",
        ),
    ] {
        let out = std::process::Command::new(common::server_binary())
            .env_clear()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().collect::<Vec<_>>(), [expected], "{args:?}");
    }
}
