//! Accounts, tokens and sessions stay within the authority that made them, on SQLite and
//! PostgreSQL: a tenant admin cannot take over accounts of other tenants or a superadmin, API
//! tokens follow their creator's current role, a reused refresh token ends its session, the
//! SSH key id is the server's choice, and concurrent owner changes always leave an owner.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Reply, TestApp, ADMIN_PASSWORD};
use serde_json::{json, Value};
use watchgrid_testkit::{backend_tests, TestBackend};

backend_tests!(
    tenant_admins_cannot_join_existing_accounts,
    accounts_beyond_the_tenant_are_superadmin_only,
    api_tokens_follow_their_creators_current_role,
    reusing_a_rotated_refresh_token_revokes_the_session,
    ssh_key_id_is_chosen_by_the_server,
    concurrent_owner_changes_always_leave_an_owner,
);

/// Create `username` with `role` in `tenant` (as `token`); returns the user's id.
async fn add_user(app: &TestApp, token: &str, tenant: &str, username: &str, role: &str) -> String {
    let reply = app
        .call("POST", "/api/users")
        .token(token)
        .tenant(tenant)
        .json(json!({"username": username, "password": password_of(username), "role": role}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_owned()
}

fn password_of(username: &str) -> String {
    format!("{}-Pass-word-7", username.to_uppercase())
}

async fn token_of(app: &TestApp, username: &str) -> String {
    app.login(username, &password_of(username)).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn create_tenant(app: &TestApp, root: &str, slug: &str) {
    let reply = app
        .call("POST", "/api/tenants")
        .token(root)
        .json(json!({"slug": slug, "name": slug}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

/// The parts of an error answer a client can tell apart.
fn refusal(reply: &Reply) -> (StatusCode, Value) {
    let mut error = reply.json()["error"].clone();
    error.as_object_mut().unwrap().remove("request_id");
    (reply.status, error)
}

async fn tenant_admins_cannot_join_existing_accounts(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let root = app.admin_token().await;
    create_tenant(&app, &root, "acme").await;
    add_user(&app, &root, "acme", "amy", "owner").await;
    add_user(&app, &root, "default", "bob", "viewer").await;
    let amy = token_of(&app, "amy").await;

    // Joining an account without its password: refused alike for the superadmin, another
    // tenant's user and a name that exists nowhere.
    let mut answers = Vec::new();
    for username in ["admin", "bob", "nobody-at-all"] {
        let reply = app
            .call("POST", "/api/users")
            .token(&amy)
            .tenant("acme")
            .json(json!({"username": username, "role": "viewer"}))
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{username}: {}",
            reply.body
        );
        assert_eq!(reply.json()["error"]["fields"][0]["field"], "password");
        answers.push(refusal(&reply));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // Creating an account under a taken name: the same answer whether the name is taken in
    // this tenant or elsewhere.
    let mut taken = Vec::new();
    for username in ["amy", "bob", "admin"] {
        let reply = app
            .call("POST", "/api/users")
            .token(&amy)
            .tenant("acme")
            .json(json!({"username": username, "password": "Fresh-Pass-word-3", "role": "viewer"}))
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{username}: {}",
            reply.body
        );
        assert_eq!(reply.json()["error"]["fields"][0]["field"], "username");
        taken.push(refusal(&reply));
    }
    assert!(taken.windows(2).all(|w| w[0] == w[1]), "{taken:?}");

    let members = app
        .call("GET", "/api/users")
        .token(&amy)
        .tenant("acme")
        .send()
        .await
        .json();
    let names: Vec<_> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["amy"], "nobody joined acme");

    // The superadmin still adds an existing account.
    let joined = app
        .call("POST", "/api/users")
        .token(&root)
        .tenant("acme")
        .json(json!({"username": "bob", "role": "viewer"}))
        .send()
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
}

async fn accounts_beyond_the_tenant_are_superadmin_only(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let root = app.admin_token().await;
    let admin_id = app.login("admin", ADMIN_PASSWORD).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A co-owner of `default` may not touch the superadmin's account.
    add_user(&app, &root, "default", "olive", "owner").await;
    let olive = token_of(&app, "olive").await;
    for (method, body) in [
        ("PATCH", Some(json!({"password": "Taken-Over-Pass-1"}))),
        ("PATCH", Some(json!({"disabled": true}))),
        ("PATCH", Some(json!({"role": "viewer"}))),
        ("DELETE", None),
    ] {
        let mut call = app
            .call(method, format!("/api/users/{admin_id}"))
            .token(&olive);
        if let Some(body) = &body {
            call = call.json(body.clone());
        }
        let reply = call.send().await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {body:?}: {}",
            reply.body
        );
    }
    // The superadmin's password still works, and it is still an owner of `default`.
    let again = app.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(again["user"]["role"], "owner");

    // An account in two tenants: acme's owner cannot disable it or reset its password (that
    // would lock it out of `default`), but may remove it from acme.
    create_tenant(&app, &root, "acme").await;
    add_user(&app, &root, "acme", "amy", "owner").await;
    let mia = add_user(&app, &root, "default", "mia", "viewer").await;
    let joined = app
        .call("POST", "/api/users")
        .token(&root)
        .tenant("acme")
        .json(json!({"username": "mia", "role": "operator"}))
        .send()
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
    let amy = token_of(&app, "amy").await;
    for body in [
        json!({"password": "Taken-Over-Pass-1"}),
        json!({"disabled": true}),
    ] {
        let reply = app
            .call("PATCH", format!("/api/users/{mia}"))
            .token(&amy)
            .tenant("acme")
            .json(body.clone())
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{body}: {}",
            reply.body
        );
    }
    let role = app
        .call("PATCH", format!("/api/users/{mia}"))
        .token(&amy)
        .tenant("acme")
        .json(json!({"role": "viewer"}))
        .send()
        .await;
    assert_eq!(role.status, StatusCode::OK, "{}", role.body);
    let removed = app
        .call("DELETE", format!("/api/users/{mia}"))
        .token(&amy)
        .tenant("acme")
        .send()
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let still = app.login("mia", &password_of("mia")).await;
    assert_eq!(still["tenant"]["slug"], "default");

    // Refusals are audited as failed attempts.
    let audit = app
        .call(
            "GET",
            "/api/audit?action=user.update&success=false&scope=all",
        )
        .token(&root)
        .send()
        .await
        .json();
    assert_eq!(audit["items"].as_array().unwrap().len(), 5, "{audit}");
}

async fn whoami(app: &TestApp, token: &str) -> Reply {
    app.call("GET", "/api/auth/whoami")
        .token(token)
        .send()
        .await
}

async fn set_role(app: &TestApp, root: &str, user: &str, role: &str) {
    let reply = app
        .call("PATCH", format!("/api/users/{user}"))
        .token(root)
        .json(json!({"role": role}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn new_token(app: &TestApp, creator: &str, role: &str) -> String {
    let reply = app
        .call("POST", "/api/tokens")
        .token(creator)
        .json(json!({"name": format!("{role}-token"), "role": role}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()["secret"].as_str().unwrap().to_owned()
}

async fn api_tokens_follow_their_creators_current_role(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let root = app.admin_token().await;
    let tom = add_user(&app, &root, "default", "tom", "admin").await;
    let tom_session = token_of(&app, "tom").await;
    let token = new_token(&app, &tom_session, "admin").await;
    // A token made by that token carries tom's authority too.
    let child = new_token(&app, &token, "operator").await;
    let users = async |secret: &str| {
        app.call("GET", "/api/users")
            .token(secret)
            .send()
            .await
            .status
    };
    assert_eq!(users(&token).await, StatusCode::OK);

    // Demoted: the token is capped at the creator's new role.
    set_role(&app, &root, &tom, "viewer").await;
    assert_eq!(users(&token).await, StatusCode::FORBIDDEN);
    assert_eq!(whoami(&app, &token).await.json()["role"], "viewer");
    assert_eq!(whoami(&app, &child).await.json()["role"], "viewer");
    // Promoted back: the token has its own role again, never more.
    set_role(&app, &root, &tom, "owner").await;
    assert_eq!(users(&token).await, StatusCode::OK);
    assert_eq!(whoami(&app, &token).await.json()["role"], "admin");
    assert_eq!(whoami(&app, &child).await.json()["role"], "operator");

    // Disabled: refused; enabled again: back.
    let disable = async |disabled: bool| {
        let reply = app
            .call("PATCH", format!("/api/users/{tom}"))
            .token(&root)
            .json(json!({"disabled": disabled}))
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    };
    disable(true).await;
    assert_eq!(whoami(&app, &token).await.status, StatusCode::UNAUTHORIZED);
    disable(false).await;
    assert_eq!(whoami(&app, &token).await.status, StatusCode::OK);

    // Removed from the tenant while the account lives on elsewhere: refused.
    create_tenant(&app, &root, "acme").await;
    let joined = app
        .call("POST", "/api/users")
        .token(&root)
        .tenant("acme")
        .json(json!({"username": "tom", "role": "viewer"}))
        .send()
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
    let remove = app
        .call("DELETE", format!("/api/users/{tom}"))
        .token(&root)
        .send()
        .await;
    assert_eq!(remove.status, StatusCode::NO_CONTENT);
    for secret in [&token, &child] {
        let reply = whoami(&app, secret).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    }

    // Deleted: refused (a second creator, whose only tenant was `default`).
    let uma = add_user(&app, &root, "default", "uma", "admin").await;
    let uma_token = new_token(&app, &token_of(&app, "uma").await, "viewer").await;
    assert_eq!(whoami(&app, &uma_token).await.status, StatusCode::OK);
    let deleted = app
        .call("DELETE", format!("/api/users/{uma}"))
        .token(&root)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        whoami(&app, &uma_token).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A superadmin's token acts as its role in any tenant's membership or none.
    let root_token = new_token(&app, &root, "owner").await;
    assert_eq!(whoami(&app, &root_token).await.json()["role"], "owner");
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Reply {
    app.call("POST", "/api/auth/refresh")
        .json(json!({"refresh_token": refresh_token}))
        .send()
        .await
}

async fn reusing_a_rotated_refresh_token_revokes_the_session(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let login = app.login("admin", ADMIN_PASSWORD).await;
    let other_session = app.admin_token().await;
    let first = login["refresh_token"].as_str().unwrap().to_owned();

    // The thief uses the token first; the next use of it (by its owner) is reuse.
    let stolen = refresh(&app, &first).await;
    assert_eq!(stolen.status, StatusCode::OK, "{}", stolen.body);
    let stolen = stolen.json();
    let thief_refresh = stolen["refresh_token"].as_str().unwrap().to_owned();
    let thief_access = stolen["access_token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&app, &thief_access).await.status, StatusCode::OK);

    let reused = refresh(&app, &first).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{}", reused.body);
    // The whole session is gone: the rotated refresh token and its access token.
    assert_eq!(
        refresh(&app, &thief_refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        whoami(&app, &thief_access).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Other sessions of the user are untouched.
    assert_eq!(whoami(&app, &other_session).await.status, StatusCode::OK);

    let audit = app
        .call("GET", "/api/audit?action=auth.refresh_reuse")
        .token(&other_session)
        .send()
        .await
        .json();
    let rows = audit["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{audit}");
    assert_eq!(rows[0]["admin_user"], "admin");
    assert_eq!(rows[0]["success"], false);

    // An unknown refresh token is a plain 401 and revokes nothing.
    assert_eq!(
        refresh(&app, "wgr_not-a-token").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(whoami(&app, &other_session).await.status, StatusCode::OK);
}

/// A valid Ed25519 public key (made by ssh-keygen; only its shape matters here).
const USER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIBdXF+EJZ5smo1bg/RfOZeMLltjOjAENf5MXE3xmA+O test";

async fn ssh_key_id_is_chosen_by_the_server(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let root = app.admin_token().await;
    let granted = app
        .call("PUT", "/api/ssh/principals")
        .token(&root)
        .json(json!({"role": "owner", "principals": ["deploy"]}))
        .send()
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    let request = Request::post("/api/ssh/certificates")
        .header("authorization", format!("Bearer {root}"))
        .header("content-type", "application/json")
        .header("x-request-id", "forged.key-id_1")
        .body(Body::from(json!({"public_key": USER_KEY}).to_string()))
        .unwrap();
    let signed = app.send(request).await;
    assert_eq!(signed.status, StatusCode::CREATED, "{}", signed.body);
    let signed = signed.json();
    let serial = signed["serial"].as_u64().unwrap();
    assert_eq!(signed["key_id"], format!("admin@default#{serial}"));
}

/// A request as the in-process router takes it, for concurrent sends.
fn request(
    method: &str,
    uri: &str,
    token: &str,
    tenant: &str,
    body: Option<Value>,
) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("x-watchgrid-tenant", tenant);
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

async fn owners_of(app: &TestApp, root: &str, tenant: &str) -> Vec<String> {
    let page = app
        .call("GET", "/api/users")
        .token(root)
        .tenant(tenant)
        .send()
        .await
        .json();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "owner")
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn concurrent_owner_changes_always_leave_an_owner(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let root = app.admin_token().await;
    create_tenant(&app, &root, "acme").await;
    // Both owners also belong to `default`, so that removal from acme keeps their accounts.
    let owners = [
        add_user(&app, &root, "default", "oona", "viewer").await,
        add_user(&app, &root, "default", "otto", "viewer").await,
    ];
    let demote = |id: &str| {
        (
            "PATCH",
            format!("/api/users/{id}"),
            Some(json!({"role": "admin"})),
        )
    };
    let remove = |id: &str| ("DELETE", format!("/api/users/{id}"), None);
    for round in 0..12 {
        // Both owners of acme again (the superadmin joins existing accounts).
        for (id, name) in owners.iter().zip(["oona", "otto"]) {
            let reply = app
                .call("POST", "/api/users")
                .token(&root)
                .tenant("acme")
                .json(json!({"username": name, "role": "owner"}))
                .send()
                .await;
            if reply.status == StatusCode::CONFLICT {
                let promoted = app
                    .call("PATCH", format!("/api/users/{id}"))
                    .token(&root)
                    .tenant("acme")
                    .json(json!({"role": "owner"}))
                    .send()
                    .await;
                assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
            } else {
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            }
        }
        assert_eq!(owners_of(&app, &root, "acme").await.len(), 2);
        let changes = match round % 3 {
            0 => [demote(&owners[0]), demote(&owners[1])],
            1 => [remove(&owners[0]), remove(&owners[1])],
            _ => [demote(&owners[0]), remove(&owners[1])],
        };
        let sends: Vec<_> = changes
            .into_iter()
            .map(|(method, uri, body)| {
                let router = app.router.clone();
                let request = request(method, &uri, &root, "acme", body);
                tokio::spawn(async move { common::send(&router, request).await })
            })
            .collect();
        let mut replies = Vec::new();
        for send in sends {
            replies.push(send.await.unwrap());
        }
        let refused: Vec<_> = replies
            .iter()
            .map(|r| r.status == StatusCode::CONFLICT)
            .collect();
        for reply in &replies {
            assert!(
                reply.status.is_success() || reply.status == StatusCode::CONFLICT,
                "round {round}: {} {}",
                reply.status,
                reply.body
            );
        }
        assert_eq!(
            refused.iter().filter(|r| **r).count(),
            1,
            "round {round}: exactly one change refused: {replies:?}"
        );
        // The one left as owner is the one whose change was refused.
        let left = owners_of(&app, &root, "acme").await;
        let kept = &owners[refused.iter().position(|r| *r).unwrap()];
        assert_eq!(left, std::slice::from_ref(kept), "round {round}");
    }
}
