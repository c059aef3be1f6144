//! The OpenAPI document: it covers exactly the routes the router serves, and it is kept under
//! a snapshot (`docs/openapi.json`), which is also what `GET /api/openapi.json` must serve, so
//! that every API change is a deliberate, reviewed diff.
//! Regenerate the snapshot with `WATCHGRID_UPDATE_SNAPSHOTS=1 cargo test --test openapi`.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod common;

use watchgrid_testkit::TestBackend;

fn snapshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

fn document() -> serde_json::Value {
    serde_json::to_value(watchgrid_server::http::openapi::document()).unwrap()
}

#[test]
fn document_covers_exactly_the_routes_served() {
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<_> = watchgrid_server::http::route_table()
        .routes
        .iter()
        .chain(watchgrid_server::http::agent_route_table().routes.iter())
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in the OpenAPI document: {undocumented:?}"
    );
    assert!(phantom.is_empty(), "documented but not served: {phantom:?}");
}

#[test]
fn document_matches_the_snapshot() {
    let snapshot = snapshot_path();
    let current = format!("{}\n", serde_json::to_string_pretty(&document()).unwrap());
    if std::env::var_os("WATCHGRID_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &current).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert!(
        stored == current,
        "the API changed: review the difference, then regenerate docs/openapi.json with \
         `WATCHGRID_UPDATE_SNAPSHOTS=1 cargo test -p watchgrid-server --test openapi`"
    );
}

/// `GET /api/openapi.json` through the router and its middleware answers the committed
/// snapshot, byte for byte as JSON: not compared with the generator the handler itself calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_the_committed_document() {
    let app = common::TestApp::new(TestBackend::Sqlite).await;
    let reply = app.get("/api/openapi.json").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.headers["content-type"], "application/json",
        "{:?}",
        reply.headers
    );
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snapshot_path()).unwrap()).unwrap();
    assert!(
        reply.json() == committed,
        "GET /api/openapi.json differs from docs/openapi.json; regenerate it with \
         `WATCHGRID_UPDATE_SNAPSHOTS=1 cargo test -p watchgrid-server --test openapi`"
    );
}

/// Every operation of the document with its method and path.
fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            all.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    all
}

#[test]
fn operation_ids_are_unique() {
    let doc = document();
    let mut seen = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap().to_owned();
        assert!(
            seen.insert(id.clone()),
            "{method} {path}: operationId {id} repeats"
        );
    }
}

#[test]
fn every_operation_lists_the_statuses_its_layers_answer() {
    use watchgrid_server::auth::Access;
    let doc = document();
    let table = watchgrid_server::http::route_table();
    let agent = watchgrid_server::http::agent_route_table();
    for (method, path, op) in operations(&doc) {
        let route = table
            .routes
            .iter()
            .chain(agent.routes.iter())
            .find(|r| r.path == path && r.method.as_str() == method)
            .unwrap();
        let statuses: BTreeSet<&str> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![];
        match route.access {
            Access::Public(_) | Access::PublicSelfLimited => expected.push("429"),
            Access::Authenticated | Access::Device => expected.push("401"),
            Access::Superadmin => expected.extend(["401", "403"]),
            Access::Tenant(_) => expected.extend(["400", "401", "403", "404"]),
        }
        if op.get("requestBody").is_some() {
            expected.extend(["400", "413", "415", "422"]);
        }
        for status in expected {
            assert!(
                statuses.contains(status),
                "{method} {path} does not list {status}: {statuses:?}"
            );
        }
        // Error statuses are described by the envelope.
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                let is_health = path == "/healthz" || path == "/readyz";
                assert!(
                    is_health || schema == "#/components/schemas/ErrorBody",
                    "{method} {path} {status} has no envelope"
                );
            }
        }
        if matches!(route.access, Access::Tenant(_)) {
            let header = op["parameters"].as_array().unwrap().iter().any(|p| {
                p["in"] == "header"
                    && p["name"]
                        .as_str()
                        .unwrap()
                        .eq_ignore_ascii_case("x-watchgrid-tenant")
            });
            assert!(
                header,
                "{method} {path} does not declare X-Watchgrid-Tenant"
            );
        }
    }
}

#[test]
fn parameters_carry_their_real_constraints() {
    let doc = document();
    let mut limits = 0;
    for (method, path, op) in operations(&doc) {
        for param in op["parameters"].as_array().into_iter().flatten() {
            if param["in"] == "query" && param["name"] == "limit" {
                limits += 1;
                assert_eq!(param["schema"]["minimum"], 1, "{method} {path}");
                assert_eq!(param["schema"]["maximum"], 500, "{method} {path}");
            }
        }
    }
    assert!(limits >= 4, "{limits} paged lists");
    let devices = &doc["paths"]["/api/devices"]["get"]["parameters"];
    let status = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "status")
        .unwrap();
    assert_eq!(
        status["schema"]["enum"],
        serde_json::json!(["online", "offline", "pending", "unknown"])
    );
    let slug = &doc["components"]["schemas"]["CreateTenant"]["properties"]["slug"];
    assert_eq!(slug["maxLength"], 63, "{slug}");
    assert!(slug["pattern"].is_string(), "{slug}");
}

#[test]
fn agent_operations_are_marked_as_served_on_the_agent_listener() {
    let doc = document();
    let agent: BTreeSet<_> = watchgrid_server::http::agent_route_table()
        .routes
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    for (method, path, op) in operations(&doc) {
        let marked = op["x-watchgrid-listener"] == "agent";
        let tagged = op["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "agent-api");
        let on_agent = agent.contains(&(method.clone(), path.clone()));
        assert_eq!(marked, on_agent, "{method} {path}");
        assert_eq!(tagged, on_agent, "{method} {path}");
        if on_agent {
            assert!(op["servers"][0]["url"]
                .as_str()
                .unwrap()
                .contains("agent_listen"));
        }
    }
}
