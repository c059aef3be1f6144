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
use serde_json::json;
use watchgrid_server::health::MigrationStatus;
use watchgrid_server::serve::migrate_until_done_with;
use watchgrid_store::Migrator;
use watchgrid_testkit::{backend_tests, TestBackend, TestDatabase};

backend_tests!(
    health_and_readiness_are_ok,
    version_names_release_and_backend,
    metrics_expose_the_runbook_series,
    errors_use_the_envelope,
    oversized_bodies_are_refused,
    invented_methods_keep_metrics_bounded,
    unmatched_routes_are_rate_limited,
    nul_bytes_are_refused_alike_on_both_backends,
    failed_attempts_are_audited_bounded,
    bodies_must_be_json_objects,
    invalid_input_is_not_echoed_whole,
    names_refuse_hidden_characters,
    bearer_scheme_is_case_insensitive,
    dns_records_refuse_duplicates_and_self_aliases,
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
    assert_eq!(body["error"]["code"], "unknown_endpoint");
    assert_eq!(
        body["error"]["message"],
        "no such API endpoint: /api/nothing-here"
    );
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
    let db = TestDatabase::empty(backend).await;
    let state = state_for(&db, &[]).await;
    let dir = db.scratch().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001_broken.sql"), "SELECT * FROM no_such_table;").unwrap();
    let broken: &'static Migrator =
        Box::leak(Box::new(Migrator::new(dir.as_path()).await.unwrap()));
    assert!(!migrate_until_done_with(state.db.clone(), state.migrations.clone(), broken).await);
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

async fn invented_methods_keep_metrics_bounded(backend: TestBackend) {
    let app = TestApp::with_config(
        backend,
        &[("WATCHGRID_RATELIMIT_UNAUTHENTICATED_CAPACITY", "1000")],
    )
    .await;
    for i in 0..200 {
        let method = format!("INVENTED{i}{}", "X".repeat(2000));
        for path in ["/healthz", "/no/such/path"] {
            let reply = app
                .send(
                    Request::builder()
                        .method(method.as_str())
                        .uri(path)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert!(
                matches!(reply.status.as_u16(), 404 | 405),
                "{path}: {}",
                reply.status
            );
        }
    }
    let text = app.get("/metrics").await.body;
    assert!(!text.contains("INVENTED"), "a raw method became a label");
    assert!(
        text.contains(
            r#"watchgrid_http_requests_total{route="unmatched",method="other",status="404"} 200"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"watchgrid_http_requests_total{route="/healthz",method="other",status="405"} 200"#
    ));
    // A few dozen series, whatever the 400 requests sent.
    assert!(text.len() < 64 * 1024, "{} bytes of metrics", text.len());
}

async fn unmatched_routes_are_rate_limited(backend: TestBackend) {
    let app = TestApp::with_config(
        backend,
        &[("WATCHGRID_RATELIMIT_UNAUTHENTICATED_CAPACITY", "3")],
    )
    .await;
    for path in ["/nope/1", "/nope/2", "/nope/3"] {
        assert_eq!(app.get(path).await.status, StatusCode::NOT_FOUND);
    }
    let limited = app.get("/nope/4").await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert_eq!(limited.json()["error"]["code"], "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // An unknown method on a known route is charged too.
    let wrong_method = app
        .send(Request::delete("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(wrong_method.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(wrong_method.headers.contains_key("retry-after"));
}

async fn nul_bytes_are_refused_alike_on_both_backends(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let check = |reply: common::Reply, field: &str| {
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
        let body = reply.json();
        assert_eq!(body["error"]["fields"][0]["field"], field, "{body}");
    };
    // Query parameters (filters and cursors) of every list.
    for uri in [
        "/api/devices?name=%00",
        "/api/devices?tag=a%00b",
        "/api/devices?cursor=%00",
        "/api/users?cursor=%00",
        "/api/audit?user=%00",
        "/api/audit?action=x%00",
        "/api/dns/records?name=%00",
    ] {
        let field = uri.split(['?', '=']).nth(1).unwrap();
        check(app.call("GET", uri).token(&admin).send().await, field);
    }
    // Path segments.
    check(
        app.call("GET", "/api/tenants/a%00b")
            .token(&admin)
            .send()
            .await,
        "slug",
    );
    check(
        app.call("DELETE", "/api/devices/%00")
            .token(&admin)
            .send()
            .await,
        "id",
    );
    // Body strings, nested ones included.
    for (method, uri, body, field) in [
        (
            "POST",
            "/api/tenants",
            json!({"slug": "a\u{0}", "name": "A"}),
            "slug",
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "a\u{0}b", "role": "viewer"}),
            "username",
        ),
        (
            "POST",
            "/api/devices",
            json!({"name": "web", "tags": ["x\u{0}"]}),
            "tags[0]",
        ),
        (
            "POST",
            "/api/dns/records",
            json!({"name": "www", "type": "TXT", "value": "\u{0}"}),
            "value",
        ),
        (
            "POST",
            "/api/auth/login",
            json!({"username": "admin\u{0}", "password": "x"}),
            "username",
        ),
    ] {
        check(
            app.call(method, uri).token(&admin).json(body).send().await,
            field,
        );
    }
    // The server is still sound, and nothing half-written shows up.
    let users = app.call("GET", "/api/users").token(&admin).send().await;
    assert_eq!(users.status, StatusCode::OK);
    assert!(!users.body.contains("\\u0000"));
}

async fn failed_attempts_are_audited_bounded(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    // A failed attempt whose target quotes hostile input: long, with a NUL escaped by nobody
    // before the audit insert (the extractors refuse NULs, the audit row must not depend on it).
    let ctx = watchgrid_server::audit::AuditContext::system();
    let target = format!("evil\u{0}{}", "x".repeat(900_000));
    watchgrid_server::audit::record_failure(
        &app.state.db,
        &ctx,
        "user.create",
        "user",
        Some(target),
        &watchgrid_server::http::ApiError::invalid("username", "bad\u{0}reason"),
    )
    .await;
    // And one through the API: an invalid username of 900 KB.
    let long = "a".repeat(900_000) + "!";
    let reply = app
        .call("POST", "/api/users")
        .token(&admin)
        .json(json!({"username": long, "password": "Long-enough-pw-1", "role": "viewer"}))
        .send()
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        &reply.body[..200]
    );
    let rows = app
        .call(
            "GET",
            "/api/audit?action=user.create&success=false&scope=all",
        )
        .token(&admin)
        .send()
        .await;
    assert_eq!(rows.status, StatusCode::OK, "{}", rows.body);
    let items = rows.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{items:?}");
    for item in &items {
        let target = item["resource_id"].as_str().unwrap();
        // At most MAX_QUOTED_CHARS characters, a NUL taking six (`\u0000`).
        assert!(
            target.chars().count() <= 512 + 5 + 1,
            "{} chars",
            target.len()
        );
        assert!(!target.contains('\u{0}'));
    }
    assert!(items.iter().any(|i| i["resource_id"]
        .as_str()
        .unwrap()
        .starts_with("evil\\u0000x")));
    assert!(rows.body.len() < 8 * 1024, "{} bytes", rows.body.len());
}

async fn bodies_must_be_json_objects(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    for body in [
        json!(["admin", "password"]),
        json!("admin"),
        json!(5),
        json!(null),
    ] {
        let reply = app
            .call("POST", "/api/auth/login")
            .json(body.clone())
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.body
        );
        assert_eq!(reply.json()["error"]["fields"][0]["field"], "body");
    }
    let array = app
        .call("POST", "/api/tenants")
        .token(&admin)
        .json(json!(["acme", "Acme"]))
        .send()
        .await;
    assert_eq!(array.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A chunked body (no content-length) over the limit is 413, like a declared one.
    let chunks = futures_chunks(watchgrid_server::http::MAX_BODY_BYTES + 1);
    let reply = app
        .send(
            Request::post("/api/auth/login")
                .header("content-type", "application/json")
                .body(chunks)
                .unwrap(),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    assert_eq!(reply.json()["error"]["code"], "payload_too_large");
}

/// A streamed body of `len` bytes with no declared length, as a chunked request has.
fn futures_chunks(len: usize) -> Body {
    let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
    let count = len.div_ceil(chunk.len());
    let stream = tokio_stream::iter(
        (0..count).map(move |_| Ok::<_, std::convert::Infallible>(chunk.clone())),
    );
    Body::from_stream(stream)
}

async fn invalid_input_is_not_echoed_whole(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let huge = "z".repeat(900_000);
    for (uri, body) in [
        ("/api/users", json!({"username": huge, "role": "viewer"})),
        ("/api/users", json!({"username": "x", "role": huge})),
        ("/api/tenants", json!({"slug": huge, "name": "x"})),
        (
            "/api/dns/records",
            json!({"name": "www", "type": "A", "value": huge}),
        ),
    ] {
        let reply = app.call("POST", uri).token(&admin).json(body).send().await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert!(reply.body.len() < 4096, "{uri}: {} bytes", reply.body.len());
    }
}

async fn names_refuse_hidden_characters(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    for name in ["evil\u{202E}gnp.exe", "a\u{200B}b", "tab\there"] {
        for (uri, body) in [
            ("/api/tenants", json!({"slug": "acme", "name": name})),
            ("/api/tokens", json!({"name": name, "role": "viewer"})),
        ] {
            let reply = app.call("POST", uri).token(&admin).json(body).send().await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{uri} {name:?}: {}",
                reply.body
            );
            assert_eq!(reply.json()["error"]["fields"][0]["field"], "name");
        }
    }
    // The Kelvin sign is not a `k`: it is refused, not folded into `kelvin`.
    let kelvin = app
        .call("POST", "/api/users")
        .token(&admin)
        .json(
            json!({"username": "\u{212A}elvin", "password": "Long-enough-pw-1", "role": "viewer"}),
        )
        .send()
        .await;
    assert_eq!(
        kelvin.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        kelvin.body
    );
    assert_eq!(kelvin.json()["error"]["fields"][0]["field"], "username");
    let users = app
        .call("GET", "/api/users")
        .token(&admin)
        .send()
        .await
        .body;
    assert!(!users.contains("kelvin"), "{users}");
}

async fn bearer_scheme_is_case_insensitive(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let reply = app
            .send(
                Request::get("/api/auth/whoami")
                    .header("authorization", format!("{scheme} {admin}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}: {}", reply.body);
    }
    let basic = app
        .send(
            Request::get("/api/auth/whoami")
                .header("authorization", format!("Basic {admin}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
}

async fn dns_records_refuse_duplicates_and_self_aliases(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let create = |body: serde_json::Value| {
        app.call("POST", "/api/dns/records")
            .token(&admin)
            .json(body)
            .send()
    };
    let first = create(json!({"name": "www", "type": "A", "value": "192.0.2.10"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    // The same record again, spelt differently: the canonical values are equal.
    let again = create(json!({"name": "WWW", "type": "A", "value": " 192.0.2.10 "})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.json()["error"]["code"], "conflict");
    let other = create(json!({"name": "www", "type": "A", "value": "192.0.2.11"})).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    // Changing a record into a copy of its neighbour is the same conflict.
    let id = other.json()["id"].as_str().unwrap().to_owned();
    let copy = app
        .call("PATCH", format!("/api/dns/records/{id}"))
        .token(&admin)
        .json(json!({"value": "192.0.2.10"}))
        .send()
        .await;
    assert_eq!(copy.status, StatusCode::CONFLICT, "{}", copy.body);
    let zone = first.json()["fqdn"]
        .as_str()
        .unwrap()
        .trim_start_matches("www.")
        .to_owned();
    for target in ["loop", &format!("loop.{zone}")] {
        let reply = create(json!({"name": "loop", "type": "CNAME", "value": target})).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{target}: {}",
            reply.body
        );
        let body = reply.json();
        assert_eq!(body["error"]["fields"][0]["field"], "value", "{body}");
    }
    let listed = app
        .call("GET", "/api/dns/records")
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
}
