//! The OpenAPI document: it covers exactly the routes the router serves, and it is kept under
//! a snapshot (`docs/openapi.json`) so that every API change is a deliberate, reviewed diff.
//! Regenerate the snapshot with `WATCHGRID_UPDATE_SNAPSHOTS=1 cargo test --test openapi`.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::collections::BTreeSet;
use std::path::Path;

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
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
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

#[test]
fn the_server_serves_the_same_document() {
    // The served document is the generated one (checked in process through the handler).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let served = runtime.block_on(watchgrid_server::http::openapi::openapi_json());
    assert_eq!(serde_json::to_value(served.0).unwrap(), document());
}
