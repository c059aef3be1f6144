//! The refresh-and-retry logic of `ApiClient`, against a tiny in-process axum stub that knows
//! only `/api/auth/whoami`, `/api/auth/refresh` and an always-refusing `/api/tokens`.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use watchgrid_wire::{ErrorBody, ErrorDetail, LoginResponse, RefreshRequest, User, Whoami};

use super::*;

const GOOD_REFRESH: &str = "good-refresh";
const NEW_ACCESS: &str = "new-access";
const ROTATED_REFRESH: &str = "rotated-refresh";

#[derive(Default)]
struct Counts {
    whoami: AtomicUsize,
    refresh: AtomicUsize,
    tokens: AtomicUsize,
    /// Written to the store while a refresh is being refused: another process that rotated
    /// the same refresh token a moment earlier.
    race: std::sync::Mutex<Option<(SessionStore, Session)>>,
}

fn unauthorized() -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "unauthorized".into(),
            message: "the access token is invalid or expired".into(),
            request_id: Some("r1".into()),
            fields: vec![],
        },
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

async fn whoami(State(counts): State<Arc<Counts>>, headers: HeaderMap) -> Response {
    counts.whoami.fetch_add(1, Ordering::SeqCst);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {NEW_ACCESS}")) {
        return unauthorized();
    }
    Json(Whoami {
        username: "alice".into(),
        via: "session".into(),
        is_superadmin: false,
        tenant: None,
        role: None,
        must_change_password: false,
    })
    .into_response()
}

async fn refresh(State(counts): State<Arc<Counts>>, Json(body): Json<RefreshRequest>) -> Response {
    counts.refresh.fetch_add(1, Ordering::SeqCst);
    if body.refresh_token != GOOD_REFRESH {
        if let Some((store, winner)) = counts.race.lock().unwrap().take() {
            store.save(&winner).unwrap();
        }
        return unauthorized();
    }
    Json(LoginResponse {
        access_token: NEW_ACCESS.into(),
        token_type: "Bearer".into(),
        expires_in: 900,
        refresh_token: ROTATED_REFRESH.into(),
        user: User {
            id: "u1".into(),
            username: "alice".into(),
            is_superadmin: false,
            must_change_password: false,
            disabled: false,
            role: None,
            created_at: "2025-01-01T00:00:00Z".into(),
        },
        tenant: None,
    })
    .into_response()
}

async fn tokens(State(counts): State<Arc<Counts>>) -> Response {
    counts.tokens.fetch_add(1, Ordering::SeqCst);
    unauthorized()
}

/// Serve the stub on a free loopback port; returns its URL and request counts.
async fn stub() -> (ServerUrl, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let app = Router::new()
        .route("/api/auth/whoami", get(whoami))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/tokens", get(tokens))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = crate::args::server_url(&format!("http://{addr}")).unwrap();
    (url, counts)
}

fn session(server: &ServerUrl, access: &str, refresh: &str) -> Session {
    Session {
        server: server.to_string(),
        username: "alice".into(),
        tenant: Some("acme".into()),
        access_token: access.into(),
        refresh_token: refresh.into(),
        access_expires_at: "2000-01-01T00:00:00Z".into(),
    }
}

/// A client on the stored session `stored`, the file written as a login would.
fn session_client(server: &ServerUrl, stored: Session, dir: &std::path::Path) -> ApiClient {
    let store = SessionStore::new(dir);
    store.save(&stored).unwrap();
    let auth = Auth::Session {
        session: stored,
        store,
    };
    ApiClient::new(server.clone(), None, auth).unwrap()
}

#[tokio::test]
async fn a_refused_access_token_is_refreshed_once_and_the_request_retried() {
    let (server, counts) = stub().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = session_client(
        &server,
        session(&server, "old-access", GOOD_REFRESH),
        dir.path(),
    );

    let me = client.whoami().await.unwrap();
    assert_eq!(me.username, "alice");
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 1);
    assert_eq!(counts.whoami.load(Ordering::SeqCst), 2);

    // The rotated pair is stored, and the tenant of the old session kept.
    let stored = SessionStore::new(dir.path()).load().unwrap().unwrap();
    assert_eq!(stored.access_token, NEW_ACCESS);
    assert_eq!(stored.refresh_token, ROTATED_REFRESH);
    assert_eq!(stored.tenant.as_deref(), Some("acme"));
    assert_eq!(client.session(), Some(&stored));

    // The next request uses the new token directly.
    client.whoami().await.unwrap();
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 1);
    assert_eq!(counts.whoami.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_refresh_deletes_the_session() {
    let (server, counts) = stub().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = session_client(
        &server,
        session(&server, "old-access", "revoked"),
        dir.path(),
    );

    let err = client.whoami().await.unwrap_err();
    assert!(matches!(err, CliError::SessionExpired), "{err:?}");
    assert_eq!(err.one_line(), "session expired: run watchgrid login");
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 1);
    assert_eq!(counts.whoami.load(Ordering::SeqCst), 1);
    assert_eq!(SessionStore::new(dir.path()).load().unwrap(), None);
}

#[tokio::test]
async fn a_second_refusal_is_not_retried_again() {
    let (server, counts) = stub().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = session_client(
        &server,
        session(&server, "old-access", GOOD_REFRESH),
        dir.path(),
    );

    let err = client.tokens().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.one_line(), "the access token is invalid or expired");
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 1);
    assert_eq!(counts.tokens.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tokens_rotated_by_another_process_are_used_without_refreshing() {
    let (server, counts) = stub().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = session_client(
        &server,
        session(&server, "old-access", "old-refresh"),
        dir.path(),
    );
    // Meanwhile another watchgrid process refreshed and stored the new pair.
    SessionStore::new(dir.path())
        .save(&session(&server, NEW_ACCESS, ROTATED_REFRESH))
        .unwrap();

    client.whoami().await.unwrap();
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 0);
    assert_eq!(counts.whoami.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refresh_lost_to_another_process_uses_the_winners_tokens() {
    let (server, counts) = stub().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = session_client(
        &server,
        session(&server, "old-access", "raced-refresh"),
        dir.path(),
    );
    *counts.race.lock().unwrap() = Some((
        SessionStore::new(dir.path()),
        session(&server, NEW_ACCESS, ROTATED_REFRESH),
    ));

    client.whoami().await.unwrap();
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 1);
    assert_eq!(counts.whoami.load(Ordering::SeqCst), 2);
    let stored = SessionStore::new(dir.path()).load().unwrap().unwrap();
    assert_eq!(stored.refresh_token, ROTATED_REFRESH);
}

#[tokio::test]
async fn a_refused_refresh_leaves_another_login_alone() {
    let (server, counts) = stub().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = session_client(
        &server,
        session(&server, "old-access", "revoked"),
        dir.path(),
    );
    let mut bob = session(&server, "bob-access", "bob-refresh");
    bob.username = "bob".into();
    *counts.race.lock().unwrap() = Some((SessionStore::new(dir.path()), bob.clone()));

    let err = client.whoami().await.unwrap_err();
    assert!(matches!(err, CliError::SessionExpired), "{err:?}");
    assert_eq!(SessionStore::new(dir.path()).load().unwrap(), Some(bob));
}

#[tokio::test]
async fn an_api_token_is_never_refreshed() {
    let (server, counts) = stub().await;
    let mut client = ApiClient::new(server, None, Auth::Token("wgt_bad".into())).unwrap();

    let err = client.whoami().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 0);
    assert_eq!(counts.whoami.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_credentials_a_refusal_means_not_logged_in() {
    let (server, counts) = stub().await;
    let mut client = ApiClient::new(
        server.clone(),
        None,
        Auth::Anonymous {
            stored_for: Some("https://other.example".into()),
        },
    )
    .unwrap();

    let err = client.whoami().await.unwrap_err();
    assert_eq!(
        err.one_line(),
        format!(
            "not logged in to {server} (the stored session is for https://other.example): \
             run watchgrid login (or set WATCHGRID_TOKEN)"
        )
    );
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 0);
}
