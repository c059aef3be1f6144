//! The HTTP surface in process, on SQLite and PostgreSQL: health, readiness, version, metrics,
//! and the error envelope on every kind of failure.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{send, state_for, TestApp};
use watchgrid_server::health::MigrationStatus;
use watchgrid_server::serve::migrate_until_done;
use watchgrid_store::Migrator;
use watchgrid_testkit::{backend_tests, TestBackend, TestDatabase};

backend_tests!(
    health_and_readiness_are_ok,
    version_names_release_and_backend,
    metrics_expose_the_runbook_series,
    errors_use_the_envelope,
    oversized_bodies_are_refused,
    failed_migration_keeps_server_not_ready,
    database_outage_turns_health_red,
);

async fn health_and_readiness_are_ok(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    // A fresh data directory has no WireGuard key yet: the `wireguard` check reports the
    // first-start decision (key created, no device enrolled) even with no interface to drive.
    assert_eq!(
        health.json(),
        serde_json::json!({"status": "ok", "checks": {"db": "ok", "ssh_ca": "ok", "wireguard": "ok"}})
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.json(),
        serde_json::json!({"status": "ok", "checks": {"db": "ok", "ssh_ca": "ok", "wireguard": "ok", "migrations": "ok"}, "migrations": "ok"})
    );
}

async fn version_names_release_and_backend(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let version = app.get("/api/version").await.json();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(version["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(version["built"].as_str().is_some_and(|b| !b.is_empty()));
    let expected = match backend {
        TestBackend::Sqlite => "sqlite",
        TestBackend::Postgres => "postgres",
    };
    assert_eq!(version["database"], expected);
}

async fn metrics_expose_the_runbook_series(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    app.get("/healthz").await;
    app.get("/healthz").await;
    // Random paths must not become label values.
    app.get("/no/such/path/8f3a").await;
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.body;
    assert!(
        text.contains(
            r#"watchgrid_http_requests_total{route="/healthz",method="GET",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"watchgrid_http_requests_total{route="unmatched",method="GET",status="404"} 1"#
    ));
    assert!(!text.contains("8f3a"), "raw paths leaked into labels");
    assert!(text.contains(
        r#"watchgrid_http_request_duration_seconds_count{route="/healthz",method="GET"} 2"#
    ));
    assert!(text.contains("watchgrid_http_request_duration_seconds_bucket{le="));
    // The health checks used the pool, so it holds at least one connection.
    let open = gauge(&text, "watchgrid_db_open_connections");
    assert!(open >= 1.0, "{text}");
    let in_use = gauge(&text, "watchgrid_db_in_use_connections");
    assert!((0.0..=open).contains(&in_use));
}

fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

async fn errors_use_the_envelope(backend: TestBackend) {
    let app = TestApp::new(backend).await;

    let missing = app.get("/api/nothing-here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let body = missing.json();
    assert_eq!(body["error"]["code"], "not_found");
    let request_id = body["error"]["request_id"].as_str().unwrap().to_owned();
    assert_eq!(missing.headers["x-request-id"], request_id.as_str());

    let wrong_method = app
        .send(Request::delete("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.json()["error"]["code"], "method_not_allowed");

    // A caller's plain request id is kept; a hostile one is replaced.
    let traced = app
        .send(
            Request::get("/nope")
                .header("x-request-id", "trace-123")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(traced.json()["error"]["request_id"], "trace-123");
    let hostile = app
        .send(
            Request::get("/nope")
                .header("x-request-id", "a b\" injected")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_ne!(hostile.json()["error"]["request_id"], "a b\" injected");
}

async fn oversized_bodies_are_refused(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let big = vec![b'x'; watchgrid_server::http::MAX_BODY_BYTES + 1];
    let reply = app
        .send(
            Request::get("/api/version")
                .header("content-length", big.len())
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"]["code"], "payload_too_large");
}

async fn failed_migration_keeps_server_not_ready(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let state = state_for(&db, &[]).await;
    let dir = db.scratch().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001_broken.sql"), "SELECT * FROM no_such_table;").unwrap();
    let broken: &'static Migrator =
        Box::leak(Box::new(Migrator::new(dir.as_path()).await.unwrap()));
    assert!(!migrate_until_done(state.db.clone(), state.migrations.clone(), broken).await);
    assert!(matches!(state.migrations.get(), MigrationStatus::Failed(_)));

    let router = common::app_router(state);
    let ready = send(
        &router,
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = ready.json();
    assert_eq!(body["status"], "error");
    assert!(
        body["migrations"]
            .as_str()
            .unwrap()
            .starts_with("error: migration failed"),
        "{body}"
    );
    // Liveness is about the dependencies, not the schema: the database itself is fine.
    let health = send(
        &router,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);
}

async fn database_outage_turns_health_red(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    app.state.db.close().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = health.json();
    assert_eq!(body["status"], "error");
    assert!(
        body["checks"]["db"]
            .as_str()
            .unwrap()
            .starts_with("error: "),
        "{body}"
    );
}
