//! The agent's HTTP calls and `enroll`'s handling of answers, against a tiny in-process axum
//! stub that knows `/api/agent/register`, `/api/agent/server-info` and `/api/agent/heartbeat`
//! and answers what each test tells it to.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use watchgrid_wire::{ErrorBody, ErrorDetail, HeartbeatAck, RegisterResponse, ServerInfo};

use super::*;
use crate::args::server_url;
use crate::commands::enroll::{enroll, EnrollOptions};
use crate::config::{Config, LogFormat};
use crate::error::AgentError;
use crate::state::{tests::enrollment, StateDir};
use crate::tunnel;

/// What the stub answers, and what it saw.
#[derive(Default)]
struct Stub {
    /// Status and body for every route; `None` answers the happy path.
    refusal: Mutex<Option<(StatusCode, String, Option<&'static str>)>>,
    registered: Mutex<Vec<RegisterRequest>>,
    heartbeats: Mutex<Vec<(Option<String>, Heartbeat)>>,
    server_key: String,
}

fn envelope(code: &str, message: &str) -> String {
    serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: message.into(),
            request_id: Some("req-1".into()),
            fields: vec![],
        },
    })
    .unwrap()
}

fn refused(stub: &Stub) -> Option<Response> {
    let refusal = stub.refusal.lock().unwrap().clone();
    refusal.map(|(status, body, retry_after)| {
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static(seconds));
        }
        response
    })
}

fn answer(stub: &Stub) -> RegisterResponse {
    RegisterResponse {
        device_id: "dev_42".into(),
        device_name: "build-box".into(),
        tenant: "acme".into(),
        overlay_address: "100.64.0.7/10".into(),
        server_public_key: stub.server_key.clone(),
        server_endpoint: "127.0.0.1:51820".into(),
        server_overlay_ip: "100.64.0.1".into(),
        agent_api: "http://100.64.0.1:8081".into(),
        credential: "wgd_secret".into(),
        heartbeat_interval_secs: 30,
        dns: None,
        ssh_host_certificate: None,
    }
}

async fn register(State(stub): State<Arc<Stub>>, Json(body): Json<RegisterRequest>) -> Response {
    stub.registered.lock().unwrap().push(body);
    refused(&stub).unwrap_or_else(|| Json(answer(&stub)).into_response())
}

async fn server_info(State(stub): State<Arc<Stub>>) -> Response {
    refused(&stub).unwrap_or_else(|| {
        Json(ServerInfo {
            server_public_key: stub.server_key.clone(),
            server_endpoint: "127.0.0.1:51820".into(),
            server_overlay_ip: "100.64.0.1".into(),
            overlay_cidr: "100.64.0.0/10".into(),
        })
        .into_response()
    })
}

async fn heartbeat(
    State(stub): State<Arc<Stub>>,
    headers: HeaderMap,
    Json(body): Json<Heartbeat>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    stub.heartbeats.lock().unwrap().push((auth, body));
    refused(&stub).unwrap_or_else(|| {
        Json(HeartbeatAck {
            heartbeat_interval_secs: 30,
            server_time: "2025-01-31T09:00:00Z".into(),
            dns: None,
        })
        .into_response()
    })
}

/// Start the stub on a loopback port; returns its base URL.
async fn start() -> (Arc<Stub>, String) {
    let stub = Arc::new(Stub {
        server_key: tunnel::generate_keypair().public_key,
        ..Stub::default()
    });
    let app = Router::new()
        .route(REGISTER_PATH, post(register))
        .route(SERVER_INFO_PATH, get(server_info))
        .route(HEARTBEAT_PATH, post(heartbeat))
        .with_state(Arc::clone(&stub));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (stub, format!("http://{addr}"))
}

fn refuse(stub: &Stub, status: u16, body: String, retry_after: Option<&'static str>) {
    *stub.refusal.lock().unwrap() =
        Some((StatusCode::from_u16(status).unwrap(), body, retry_after));
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        state_dir: dir.to_path_buf(),
        interface: "wgtest0".into(),
        log_format: LogFormat::Text,
        log_level: "info".into(),
        search_path: None,
        ssh: None,
    }
}

fn options(base: &str, force: bool) -> EnrollOptions {
    EnrollOptions {
        server: server_url(base).unwrap(),
        token: "wgo_token".into(),
        force,
    }
}

#[tokio::test]
async fn enroll_registers_and_stores_the_enrollment() {
    let (stub, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("agent");
    enroll(&config(&state_dir), options(&format!("{base}/"), false))
        .await
        .unwrap();

    let sent = stub.registered.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].token, "wgo_token");
    assert_eq!(sent[0].agent_version, env!("CARGO_PKG_VERSION"));
    assert!(!sent[0].hostname.is_empty() && !sent[0].os.is_empty());

    let stored = StateDir::new(&state_dir).require_enrollment().unwrap();
    assert_eq!(stored.device_id, "dev_42");
    assert_eq!(stored.server_url, base);
    assert_eq!(stored.server_public_key, stub.server_key);
    assert_eq!(stored.credential, "wgd_secret");
    // The key pair is the one whose public half was sent.
    assert_eq!(stored.public_key, sent[0].wg_public_key);
    assert_eq!(
        tunnel::public_key_of(&stored.private_key).unwrap(),
        stored.public_key
    );
}

#[tokio::test]
async fn an_existing_enrollment_is_kept_without_force() {
    let (stub, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = StateDir::new(dir.path());
    store.save_enrollment(&enrollment()).unwrap();

    let err = enroll(&config(dir.path()), options(&base, false))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::AlreadyEnrolled { .. }), "{err:?}");
    assert_eq!(
        err.one_line(),
        format!(
            "this device is already enrolled as laptop-7 in tenant acme ({}); pass --force to \
             replace that enrollment",
            store.state_path().display()
        )
    );
    // The token was not spent, and the old enrollment is intact.
    assert!(stub.registered.lock().unwrap().is_empty());
    assert_eq!(store.require_enrollment().unwrap(), enrollment());

    enroll(&config(dir.path()), options(&base, true))
        .await
        .unwrap();
    assert_eq!(stub.registered.lock().unwrap().len(), 1);
    assert_eq!(store.require_enrollment().unwrap().device_id, "dev_42");
}

#[tokio::test]
async fn force_replaces_a_damaged_enrollment() {
    let (_stub, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = StateDir::new(dir.path());
    std::fs::write(store.state_path(), "{damaged").unwrap();
    let err = enroll(&config(dir.path()), options(&base, false))
        .await
        .unwrap_err();
    assert!(err.one_line().contains("is damaged"), "{err}");
    enroll(&config(dir.path()), options(&base, true))
        .await
        .unwrap();
    assert_eq!(store.require_enrollment().unwrap().device_id, "dev_42");
}

#[tokio::test]
async fn refusals_are_one_line_and_store_nothing() {
    let (stub, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    for (status, body, retry_after, expected) in [
        (
            401,
            envelope(
                "invalid_token",
                "the onboarding token is invalid or expired",
            ),
            None,
            "enrollment failed: the onboarding token is invalid or expired (HTTP 401)",
        ),
        (
            409,
            envelope("token_used_up", "the onboarding token has been used up"),
            None,
            "enrollment failed: the onboarding token has been used up (HTTP 409)",
        ),
        (
            429,
            envelope("rate_limited", "too many registrations"),
            Some("17"),
            "enrollment failed: too many registrations (HTTP 429); retry after 17 s",
        ),
        (
            502,
            "<html>bad gateway</html>".to_string(),
            None,
            "enrollment failed: the server answered 502 Bad Gateway",
        ),
    ] {
        refuse(&stub, status, body, retry_after);
        let err = enroll(&config(dir.path()), options(&base, false))
            .await
            .unwrap_err();
        assert_eq!(err.one_line(), expected);
        assert_eq!(err.status(), Some(status));
        assert!(!StateDir::new(dir.path()).state_path().exists());
    }
}

#[tokio::test]
async fn an_unusable_answer_is_refused() {
    let (stub, base) = start().await;
    refuse(&stub, 200, "{\"device_id\":\"x\"}".into(), None);
    let dir = tempfile::tempdir().unwrap();
    let err = enroll(&config(dir.path()), options(&base, false))
        .await
        .unwrap_err();
    let line = err.one_line();
    assert!(
        line.starts_with(&format!(
            "the answer of {base}/api/agent/register is not usable: "
        )),
        "{line}"
    );
    assert!(!StateDir::new(dir.path()).state_path().exists());
}

#[tokio::test]
async fn heartbeats_carry_the_credential() {
    let (stub, base) = start().await;
    let client = AgentApiClient::new(&format!("{base}/"), "wgd_secret").unwrap();
    assert_eq!(
        client.heartbeat_url(),
        format!("{base}/api/agent/heartbeat")
    );
    let beat = Heartbeat {
        agent_version: "0.1.0".into(),
        uptime_secs: 5,
        hostname: "h".into(),
        os: "Debian".into(),
        kernel: Some("6.1.0".into()),
    };
    let ack = client.heartbeat(&beat).await.unwrap();
    assert_eq!(ack.heartbeat_interval_secs, 30);
    let seen = stub.heartbeats.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(Some("Bearer wgd_secret".to_string()), beat.clone())]
    );
    assert!(!format!("{client:?}").contains("wgd_secret"));

    refuse(
        &stub,
        401,
        envelope("unauthorized", "unknown device credential"),
        None,
    );
    let err = client.heartbeat(&beat).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_unreachable());
    assert_eq!(
        err.one_line(),
        "heartbeat failed: unknown device credential (HTTP 401)"
    );
}

#[tokio::test]
async fn server_info_and_an_unreachable_server() {
    let (stub, base) = start().await;
    let client = PublicClient::new(server_url(&base).unwrap()).unwrap();
    let info = client.server_info().await.unwrap();
    assert_eq!(info.server_public_key, stub.server_key);

    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    let client = PublicClient::new(server_url("http://127.0.0.1:9").unwrap()).unwrap();
    let err = client.server_info().await.unwrap_err();
    assert!(err.is_unreachable());
    assert_eq!(
        err.one_line(),
        "cannot reach http://127.0.0.1:9/api/agent/server-info: connection refused"
    );
}
