//! Concurrent changes on SQLite and PostgreSQL: hundreds of PATCH and DELETE requests at once
//! against the in-process app are each a success, a 404 (the row went first) or a 409 — never
//! a 5xx (issue 11, item 12: SQLite answered "database is locked" to half of them).

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::json;
use watchgrid_testkit::{backend_tests, TestBackend};

backend_tests!(concurrent_patches_and_deletes_never_fail_with_5xx);

/// Records and devices to fight over; each record gets a PATCH and a DELETE at once, each
/// device several PATCHes.
const RECORDS: usize = 100;
const DEVICES: usize = 10;
const PATCHES_PER_DEVICE: usize = 6;

async fn concurrent_patches_and_deletes_never_fail_with_5xx(backend: TestBackend) {
    let app = Arc::new(TestApp::with_config(backend, &[("WATCHGRID_DNS_LISTEN", "off")]).await);
    let root = app.admin_token().await;
    let mut records = Vec::new();
    for i in 0..RECORDS {
        let reply = app
            .call("POST", "/api/dns/records")
            .token(&root)
            .json(json!({"name": format!("r{i}"), "type": "TXT", "value": "v=1"}))
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        records.push(reply.json()["id"].as_str().unwrap().to_owned());
    }
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let reply = app
            .call("POST", "/api/devices")
            .token(&root)
            .json(json!({"name": format!("d{i}")}))
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        devices.push(reply.json()["device"]["id"].as_str().unwrap().to_owned());
    }

    let mut requests: Vec<(&'static str, String, Option<serde_json::Value>)> = Vec::new();
    for id in &records {
        let uri = format!("/api/dns/records/{id}");
        requests.push(("PATCH", uri.clone(), Some(json!({"ttl": 120}))));
        requests.push(("DELETE", uri, None));
    }
    for id in &devices {
        for n in 0..PATCHES_PER_DEVICE {
            let body = json!({"tags": [format!("t{n}")]});
            requests.push(("PATCH", format!("/api/devices/{id}"), Some(body)));
        }
    }
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = Vec::new();
    for (method, uri, body) in requests {
        let (app, root, start) = (app.clone(), root.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            let mut call = app.call(method, uri.clone()).token(&root);
            if let Some(body) = body {
                call = call.json(body);
            }
            start.wait().await;
            (method, uri, call.send().await)
        }));
    }
    let mut failures = Vec::new();
    let mut deleted = 0;
    for task in tasks {
        let (method, uri, reply) = task.await.unwrap();
        let allowed = match method {
            "DELETE" => reply.status == StatusCode::NO_CONTENT,
            _ => matches!(
                reply.status,
                StatusCode::OK | StatusCode::NOT_FOUND | StatusCode::CONFLICT
            ),
        };
        if reply.status == StatusCode::NO_CONTENT {
            deleted += 1;
        }
        if !allowed {
            failures.push(format!("{method} {uri}: {} {}", reply.status, reply.body));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        2 * RECORDS + DEVICES * PATCHES_PER_DEVICE,
        &failures[..failures.len().min(3)]
    );
    assert_eq!(deleted, RECORDS);
    let left = app
        .call("GET", "/api/dns/records")
        .token(&root)
        .send()
        .await;
    assert_eq!(left.json()["items"], json!([]), "every record was deleted");
}
