//! Rendering, tag arithmetic, and name-or-id resolution against a small in-process axum stub
//! of `GET /api/devices` (substring `name` filter, pages of one device, cursor = last name)
//! and `GET /api/devices/{id}`.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use watchgrid_wire::{DeviceStatus, ErrorBody, ErrorDetail, Page};

use super::*;
use crate::args::ServerUrl;
use crate::client::Auth;

const LAPTOP_ID: &str = "0b6e1f7e-5d3c-4b8e-9f0a-2a1c3d4e5f60";
/// A device whose *name* looks like an id.
const UUID_NAME: &str = "7a21f4d2-0c9b-4e3a-8f65-1d2e3c4b5a69";

fn device(id: &str, name: &str) -> Device {
    Device {
        id: id.into(),
        name: name.into(),
        hostname: name.into(),
        kind: DeviceKind::Agent,
        os: "linux".into(),
        agent_version: "0.1.0".into(),
        overlay_ip: "100.64.0.2".into(),
        public_key: "x".repeat(43) + "=",
        tags: vec![],
        status: DeviceStatus::Online,
        last_seen_at: Some("2025-01-31T09:00:00Z".into()),
        created_at: "2025-01-30T09:00:00Z".into(),
    }
}

fn change(set: Option<&[&str]>, add: &[&str], remove: &[&str]) -> TagChange {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    TagChange {
        set: set.map(|s| TagList(strings(s))),
        add: strings(add),
        remove: strings(remove),
    }
}

#[test]
fn the_table_shows_status_kind_tags_and_last_seen() {
    let mut laptop = device(LAPTOP_ID, "laptop");
    laptop.tags = vec!["dev".into(), "site:fra".into()];
    let mut new = device("d2", "build-7");
    new.status = DeviceStatus::Pending;
    new.last_seen_at = None;
    new.overlay_ip = "100.64.0.13".into();
    let mut phone = device("d3", "phone");
    phone.kind = DeviceKind::Plain;
    phone.status = DeviceStatus::Unknown;
    phone.last_seen_at = None;
    phone.overlay_ip = "100.64.0.3".into();
    assert_eq!(
        table(&[new, laptop, phone]),
        "NAME     STATUS   OVERLAY IP   KIND   TAGS          LAST SEEN             ID\n\
         build-7  pending  100.64.0.13  agent  -             never                 d2\n\
         laptop   online   100.64.0.2   agent  dev,site:fra  2025-01-31 09:00:00Z  0b6e1f7e-5d3c-4b8e-9f0a-2a1c3d4e5f60\n\
         phone    unknown  100.64.0.3   plain  -             -                     d3\n"
    );
    assert_eq!(
        table(&[]),
        "NAME  STATUS  OVERLAY IP  KIND  TAGS  LAST SEEN  ID\n"
    );
}

#[test]
fn details_fill_empty_fields_with_a_dash() {
    let mut phone = device("d3", "phone");
    phone.kind = DeviceKind::Plain;
    phone.status = DeviceStatus::Unknown;
    phone.os = String::new();
    phone.agent_version = String::new();
    phone.last_seen_at = None;
    let text = details(&phone);
    assert!(
        text.starts_with("id             d3\nname           phone\n"),
        "{text}"
    );
    assert!(text.contains("\nos             -\n"), "{text}");
    assert!(text.contains("\nagent version  -\n"), "{text}");
    assert!(text.contains("\nkind           plain\n"), "{text}");
    assert!(text.contains("\nlast seen      -\n"), "{text}");
    assert!(
        text.ends_with("created        2025-01-30 09:00:00Z\n"),
        "{text}"
    );
}

#[test]
fn tag_changes() {
    let current = vec!["b".to_string(), "site:fra".to_string()];
    assert_eq!(
        changed_tags(&current, &change(None, &["a", "b"], &[])),
        ["a", "b", "site:fra"]
    );
    assert_eq!(
        changed_tags(&current, &change(None, &["c"], &["site:fra", "nope"])),
        ["b", "c"]
    );
    assert_eq!(
        changed_tags(&current, &change(Some(&["z", "y", "z"]), &[], &[])),
        ["y", "z"]
    );
    assert!(changed_tags(&current, &change(Some(&[]), &[], &[])).is_empty());
}

#[test]
fn a_private_key_line_is_told_from_the_placeholder() {
    assert!(has_private_key(
        "[Interface]\nPrivateKey = abc=\nAddress = 100.64.0.3/32\n"
    ));
    assert!(has_private_key("[Interface]\n  PrivateKey=abc=\n"));
    assert!(!has_private_key(
        "[Interface]\n# PrivateKey = <the private key of this device>\nAddress = 100.64.0.3/32\n"
    ));
    assert!(!has_private_key("[Interface]\nPrivateKeyFile = /x\n"));
}

#[test]
fn only_an_exact_name_matches() {
    let page = vec![
        device("1", "a-laptop"),
        device("2", "laptop"),
        device("3", "laptop-2"),
    ];
    assert_eq!(exact_match(page.clone(), "laptop").unwrap().id, "2");
    assert!(exact_match(page, "lap").is_none());
}

// --- resolution against a stub -----------------------------------------------------------

#[derive(Default)]
struct Stub {
    devices: Vec<Device>,
    by_id: AtomicUsize,
    lists: AtomicUsize,
}

#[derive(Deserialize)]
struct ListQuery {
    name: Option<String>,
    cursor: Option<String>,
}

fn not_found() -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "not_found".into(),
            message: "not found".into(),
            request_id: None,
            fields: vec![],
        },
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn list(State(stub): State<Arc<Stub>>, Query(q): Query<ListQuery>) -> Json<Page<Device>> {
    stub.lists.fetch_add(1, Ordering::SeqCst);
    let mut matches: Vec<&Device> = stub
        .devices
        .iter()
        .filter(|d| q.name.as_deref().is_none_or(|n| d.name.contains(n)))
        .filter(|d| q.cursor.as_deref().is_none_or(|c| d.name.as_str() > c))
        .collect();
    matches.sort_by(|a, b| a.name.cmp(&b.name));
    // Pages of one device, whatever the limit, so that resolution must follow cursors.
    let items: Vec<Device> = matches.iter().take(1).map(|d| (*d).clone()).collect();
    let next_cursor = (matches.len() > 1).then(|| items[0].name.clone());
    Json(Page { items, next_cursor })
}

async fn by_id(State(stub): State<Arc<Stub>>, UrlPath(id): UrlPath<String>) -> Response {
    stub.by_id.fetch_add(1, Ordering::SeqCst);
    match stub.devices.iter().find(|d| d.id == id) {
        Some(d) => Json(d.clone()).into_response(),
        None => not_found(),
    }
}

async fn stub() -> (ApiClient, Arc<Stub>) {
    let stub = Arc::new(Stub {
        devices: vec![
            device(LAPTOP_ID, "laptop"),
            device("d2", "laptop-2"),
            device("d3", "a-web"),
            device("d4", "b-web"),
            device("d5", "web"),
            device("d6", UUID_NAME),
        ],
        ..Stub::default()
    });
    let app = Router::new()
        .route("/api/devices", get(list))
        .route("/api/devices/{id}", get(by_id))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url: ServerUrl = args::server_url(&format!("http://{addr}")).unwrap();
    let client = ApiClient::new(url, None, Auth::Token("wgt_test".into())).unwrap();
    (client, stub)
}

#[tokio::test]
async fn an_id_is_fetched_directly() {
    let (mut client, stub) = stub().await;
    let found = resolve(&mut client, LAPTOP_ID).await.unwrap().unwrap();
    assert_eq!(found.name, "laptop");
    assert_eq!(stub.by_id.load(Ordering::SeqCst), 1);
    assert_eq!(stub.lists.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_must_match_exactly() {
    let (mut client, stub) = stub().await;
    let found = resolve(&mut client, "laptop").await.unwrap().unwrap();
    assert_eq!(found.id, LAPTOP_ID);
    assert_eq!(stub.by_id.load(Ordering::SeqCst), 0);
    // "lap" is part of two names but the name of none.
    assert!(resolve(&mut client, "lap").await.unwrap().is_none());
}

#[tokio::test]
async fn a_name_on_a_later_page_is_found() {
    let (mut client, stub) = stub().await;
    let found = resolve(&mut client, "web").await.unwrap().unwrap();
    assert_eq!(found.id, "d5");
    // a-web, b-web, then web.
    assert_eq!(stub.lists.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_device_named_like_an_id_is_found_by_name() {
    let (mut client, stub) = stub().await;
    let found = resolve(&mut client, UUID_NAME).await.unwrap().unwrap();
    assert_eq!(found.id, "d6");
    assert_eq!(stub.by_id.load(Ordering::SeqCst), 1);
    assert_eq!(stub.lists.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unknown_device_is_a_one_line_failure_naming_it() {
    let (mut client, _stub) = stub().await;
    let ctx = Ctx {
        server: None,
        tenant: None,
        json: false,
        token: None,
        config_dir: Err("unused".into()),
    };
    let err = find(&ctx, &mut client, "ghost").await.unwrap_err();
    assert_eq!(
        err.one_line(),
        "device ghost not found in the current tenant"
    );
    assert_eq!(err.exit_code(), 1);

    let acme = Ctx {
        tenant: Some("acme".into()),
        ..ctx
    };
    let err = find(&acme, &mut client, "0b6e1f7e-0000-4b8e-9f0a-2a1c3d4e5f60")
        .await
        .unwrap_err();
    assert_eq!(
        err.one_line(),
        "device 0b6e1f7e-0000-4b8e-9f0a-2a1c3d4e5f60 not found in tenant acme"
    );
}
