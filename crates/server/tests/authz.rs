//! Authorization over the whole route table: every route is checked, so a route added later
//! without the right policy fails here. Another tenant's resources are 404, never 403 or 200.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::json;
use watchgrid_server::auth::Access;
use watchgrid_testkit::{backend_tests, TestBackend};
use watchgrid_wire::Role;

backend_tests!(
    every_route_enforces_its_policy,
    forwarded_for_is_believed_only_from_trusted_proxies,
    every_agent_route_needs_a_device,
);

/// Ids of one tenant's resources, for requests that name them.
struct Fixture {
    token: String,
    user: String,
    api_token: String,
    device: String,
    onboarding_token: String,
    dns_record: String,
}

/// Tenant `slug` with an admin, an API token, a device and an onboarding token.
async fn tenant_with_admin(app: &TestApp, root: &str, slug: &str) -> Fixture {
    let created = app
        .call("POST", "/api/tenants")
        .token(root)
        .json(json!({"slug": slug, "name": slug}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let password = format!("{}-Admin-Pass-1", slug.to_uppercase());
    let user = app
        .call("POST", "/api/users")
        .token(root)
        .tenant(slug)
        .json(json!({"username": format!("{slug}-admin"), "password": password, "role": "admin"}))
        .send()
        .await
        .json();
    let login = app
        .call("POST", "/api/auth/login")
        .json(json!({"username": format!("{slug}-admin"), "password": password}))
        .send()
        .await
        .json();
    let token = login["access_token"].as_str().unwrap().to_owned();
    assert_eq!(login["tenant"]["slug"], slug);
    let api_token = app
        .call("POST", "/api/tokens")
        .token(&token)
        .json(json!({"name": "automation", "role": "viewer"}))
        .send()
        .await
        .json();
    let device = app
        .call("POST", "/api/devices")
        .token(&token)
        .json(json!({"name": "phone"}))
        .send()
        .await
        .json();
    let onboarding = app
        .call("POST", "/api/onboarding-tokens")
        .token(&token)
        .json(json!({"description": "batch"}))
        .send()
        .await
        .json();
    let record = app
        .call("POST", "/api/dns/records")
        .token(&token)
        .json(json!({"name": "www", "type": "A", "value": "192.0.2.1"}))
        .send()
        .await;
    assert_eq!(record.status, StatusCode::CREATED, "{}", record.body);
    let record = record.json();
    Fixture {
        dns_record: record["id"].as_str().unwrap().to_owned(),
        token,
        user: user["id"].as_str().unwrap().to_owned(),
        api_token: api_token["token"]["id"].as_str().unwrap().to_owned(),
        device: device["device"]["id"].as_str().unwrap().to_owned(),
        onboarding_token: onboarding["token"]["id"].as_str().unwrap().to_owned(),
    }
}

async fn every_route_enforces_its_policy(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let root = app.admin_token().await;
    let a = tenant_with_admin(&app, &root, "tenant-a").await;
    let b = tenant_with_admin(&app, &root, "tenant-b").await;
    let a_token = a.token.clone();
    let (b_user, b_api) = (b.user.clone(), b.api_token.clone());
    let viewer = app
        .call("POST", "/api/users")
        .token(&a_token)
        .json(json!({"username": "a-viewer", "password": "Viewer-Pass-word-1", "role": "viewer"}))
        .send()
        .await;
    assert_eq!(viewer.status, StatusCode::CREATED);
    let viewer_token = app.login("a-viewer", "Viewer-Pass-word-1").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let table = watchgrid_server::http::route_table();
    assert!(table.routes.len() >= 20);
    for route in &table.routes {
        // A path whose parameters point at tenant B's resources (or a tenant slug).
        let mut b_path = route.path.replace("{slug}", "tenant-b");
        if b_path.contains("{id}") {
            let id = match route.path {
                p if p.starts_with("/api/users/") => &b_user,
                p if p.starts_with("/api/tokens/") => &b_api,
                p if p.starts_with("/api/devices/") => &b.device,
                p if p.starts_with("/api/onboarding-tokens/") => &b.onboarding_token,
                p if p.starts_with("/api/dns/records/") => &b.dns_record,
                other => panic!("no fixture for the parameter of {other}: add one to this test"),
            };
            b_path = b_path.replace("{id}", id);
        }
        assert!(!b_path.contains('{'), "unknown parameter in {}", route.path);
        let method = route.method.as_str();
        let method: &'static str = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "PUT" => "PUT",
            other => panic!("unexpected method {other}"),
        };
        let body = json!({});
        let label = format!("{method} {}", route.path);
        match route.access {
            Access::Public(_) | Access::PublicSelfLimited => {
                let reply = app.call(method, &b_path).json(body.clone()).send().await;
                assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{label} is public");
                continue;
            }
            _ => {}
        }
        // Without credentials: 401, for every non-public route.
        let anonymous = app.call(method, &b_path).json(body.clone()).send().await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{label} without credentials"
        );
        assert_eq!(anonymous.json()["error"]["code"], "unauthorized");
        let forged = app
            .call(method, &b_path)
            .token("eyJhbGciOiJub25lIn0.e30.")
            .json(body.clone())
            .send()
            .await;
        assert_eq!(
            forged.status,
            StatusCode::UNAUTHORIZED,
            "{label} with a forged token"
        );

        match route.access {
            Access::Tenant(required) => {
                // Tenant A's admin naming tenant B: B does not exist for them.
                let cross = app
                    .call(method, &b_path)
                    .token(&a_token)
                    .tenant("tenant-b")
                    .json(body.clone())
                    .send()
                    .await;
                assert_eq!(
                    cross.status,
                    StatusCode::NOT_FOUND,
                    "{label} across tenants: {}",
                    cross.body
                );
                // Tenant A's admin in their own tenant, with B's resource ids.
                if route.path.contains('{') {
                    let reply = app
                        .call(method, &b_path)
                        .token(&a_token)
                        .json(body.clone())
                        .send()
                        .await;
                    assert_eq!(
                        reply.status,
                        StatusCode::NOT_FOUND,
                        "{label} with B's id: {}",
                        reply.body
                    );
                }
                // A viewer is refused where more is required.
                if required > Role::Viewer {
                    let reply = app
                        .call(method, &b_path)
                        .token(&viewer_token)
                        .json(body.clone())
                        .send()
                        .await;
                    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{label} as viewer");
                }
            }
            Access::Superadmin => {
                let reply = app
                    .call(method, &b_path)
                    .token(&a_token)
                    .json(body.clone())
                    .send()
                    .await;
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{label} as a tenant admin"
                );
            }
            Access::Authenticated
            | Access::Public(_)
            | Access::PublicSelfLimited
            | Access::Device => {}
        }
    }

    // B's resources survived all of that.
    let b_users = app
        .call("GET", "/api/users")
        .token(&root)
        .tenant("tenant-b")
        .send()
        .await
        .json();
    assert!(b_users["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == b_user.as_str()));
    let b_tokens = app
        .call("GET", "/api/tokens")
        .token(&root)
        .tenant("tenant-b")
        .send()
        .await
        .json();
    assert!(b_tokens
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == b_api.as_str() && t["revoked"] == false));
}

async fn forwarded_for_is_believed_only_from_trusted_proxies(backend: TestBackend) {
    // The in-process peer is 192.0.2.10 (see common::TEST_CLIENT).
    for (trusted, expected) in [
        ("192.0.2.0/24", "203.0.113.7"),
        ("10.0.0.0/8", "192.0.2.10"),
    ] {
        let app = TestApp::with_config(backend, &[("WATCHGRID_TRUSTED_PROXIES", trusted)]).await;
        let reply = app
            .send(
                axum::http::Request::post("/api/auth/login")
                    .header("content-type", "application/json")
                    .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
                    .body(axum::body::Body::from(
                        r#"{"username":"admin","password":"Wrong-Pass-word-1"}"#,
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let root = app.admin_token().await;
        let audit = app
            .call(
                "GET",
                "/api/audit?action=auth.login&success=false&scope=all",
            )
            .token(&root)
            .send()
            .await
            .json();
        assert_eq!(
            audit["items"][0]["client_addr"], expected,
            "trusted {trusted}: {audit}"
        );
    }
}

/// The agent API: every route refuses a caller without a device credential, and one with a
/// user's access token, whatever address it comes from.
async fn every_agent_route_needs_a_device(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let root = app.admin_token().await;
    let router = watchgrid_server::http::agent_router(app.state.clone()).layer(
        axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from((
            [100, 64, 0, 2],
            4000,
        ))),
    );
    let table = watchgrid_server::http::agent_route_table();
    assert!(!table.routes.is_empty());
    for route in &table.routes {
        assert_eq!(
            route.access,
            Access::Device,
            "{} must require a device",
            route.path
        );
        for token in [None, Some(root.as_str()), Some("wgd_guess")] {
            let mut request = axum::http::Request::builder()
                .method(route.method.clone())
                .uri(route.path)
                .header("content-type", "application/json");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let reply =
                common::send(&router, request.body(axum::body::Body::from("{}")).unwrap()).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{} with {token:?}",
                route.path
            );
        }
    }
}
