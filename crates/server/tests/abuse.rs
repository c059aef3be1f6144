//! Abuse of the public and fleet endpoints on SQLite and PostgreSQL, in process, from chosen
//! client addresses: registration limits per address (IPv6 by /64) and per token, login limits
//! that never lock the owner out from a new address, a bounded password-check queue, and the
//! per-tenant device quota and creation rate.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::{send, Reply, TestApp, ADMIN_PASSWORD};
use serde_json::{json, Value};
use watchgrid_testkit::{backend_tests, TestBackend};

backend_tests!(
    registration_limits_are_per_address_and_per_token,
    a_login_flood_does_not_lock_the_owner_out,
    logins_beyond_the_password_queue_are_shed,
    tenants_have_a_device_quota_and_a_creation_rate,
);

/// The application as seen from `addr`.
fn from(app: &TestApp, addr: &str) -> Router {
    let addr: IpAddr = addr.parse().unwrap();
    watchgrid_server::http::router(app.state.clone())
        .layer(MockConnectInfo(SocketAddr::new(addr, 40000)))
}

async fn post(router: &Router, uri: &str, token: Option<&str>, body: Value) -> Reply {
    let mut request = Request::post(uri).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(router, request.body(Body::from(body.to_string())).unwrap()).await
}

fn fresh_key() -> String {
    watchgrid_wireguard::key::PrivateKey::generate()
        .public_key()
        .to_string()
}

async fn onboarding_token(app: &TestApp, admin: &str) -> String {
    let reply = app
        .call("POST", "/api/onboarding-tokens")
        .token(admin)
        .json(json!({"max_uses": 100}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()["secret"].as_str().unwrap().to_owned()
}

async fn register(app: &TestApp, addr: &str, token: &str, hostname: &str) -> Reply {
    let body = json!({"token": token, "hostname": hostname, "os": "", "agent_version": "", "wg_public_key": fresh_key()});
    post(&from(app, addr), "/api/agent/register", None, body).await
}

fn assert_limited(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: {}",
        reply.body
    );
    assert!(reply.headers.contains_key("retry-after"), "{what}");
    assert_eq!(reply.json()["error"]["code"], "rate_limited", "{what}");
}

async fn registration_limits_are_per_address_and_per_token(backend: TestBackend) {
    let app = TestApp::with_config(
        backend,
        &[("WATCHGRID_RATELIMIT_REGISTRATION_CAPACITY", "3")],
    )
    .await;
    let admin = app.admin_token().await;
    let first = onboarding_token(&app, &admin).await;
    let second = onboarding_token(&app, &admin).await;

    // A flood of invalid bodies from one address spends only that address's budget.
    for n in 0..6 {
        let reply = register(&app, "198.51.100.1", &first, "").await;
        if n < 3 {
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}",
                reply.body
            );
        } else {
            assert_limited(&reply, "the flooding address");
        }
    }
    for (n, addr) in ["198.51.100.2", "198.51.100.3", "198.51.100.4"]
        .into_iter()
        .enumerate()
    {
        let reply = register(&app, addr, &first, &format!("host-{n}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{addr}: {}", reply.body);
    }
    // One token has its own budget, whatever the address; another token is unaffected.
    let reply = register(&app, "198.51.100.5", &first, "host-4").await;
    assert_limited(&reply, "the token's budget");
    let reply = register(&app, "198.51.100.5", &second, "host-5").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // An IPv6 client is limited by its /64, not per address.
    for _ in 0..3 {
        let reply = register(&app, "2001:db8:5:5::1", &second, "").await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let reply = register(&app, "2001:db8:5:5:ffff::2", &second, "").await;
    assert_limited(&reply, "another address of the same /64");
    let reply = register(&app, "2001:db8:5:6::1", &second, "").await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another /64"
    );

    let metrics = app.get("/metrics").await.body;
    for (limiter, n) in [("registration", 4), ("registration_token", 1)] {
        let line = format!(r#"watchgrid_rate_limit_rejections_total{{limiter="{limiter}"}} {n}"#);
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
    assert!(metrics.contains(r#"watchgrid_registrations_total{result="rate_limited"} 5"#));
}

async fn login(router: &Router, username: &str, password: &str) -> Reply {
    let body = json!({"username": username, "password": password});
    post(router, "/api/auth/login", None, body).await
}

async fn a_login_flood_does_not_lock_the_owner_out(backend: TestBackend) {
    let app = TestApp::with_config(backend, &[("WATCHGRID_RATELIMIT_LOGIN_CAPACITY", "5")]).await;
    let attacker = from(&app, "198.51.100.66");
    let mut limited = false;
    for _ in 0..8 {
        let reply = login(&attacker, "admin", "Wrong-Guess-123").await;
        limited |= reply.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the flooding address is limited");
    assert_limited(
        &login(&attacker, "admin", ADMIN_PASSWORD).await,
        "even with the right password, from the flooding address",
    );
    // The owner, from another address, logs in.
    let owner = login(&from(&app, "203.0.113.9"), "admin", ADMIN_PASSWORD).await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);

    // IPv6: the whole /64 of the flooding address is limited, other networks are not.
    for _ in 0..6 {
        login(&from(&app, "2001:db8:7:7::1"), "admin", "Wrong-Guess-123").await;
    }
    assert_limited(
        &login(&from(&app, "2001:db8:7:7::2"), "admin", ADMIN_PASSWORD).await,
        "the same /64",
    );
    let other = login(&from(&app, "2001:db8:7:8::1"), "admin", ADMIN_PASSWORD).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
}

async fn logins_beyond_the_password_queue_are_shed(backend: TestBackend) {
    // Limits out of the way: the flood is spread over many addresses.
    let app = TestApp::with_config(
        backend,
        &[("WATCHGRID_RATELIMIT_LOGIN_CAPACITY", "1000000")],
    )
    .await;
    let hasher = app.state.hasher.clone();
    let bound = hasher.max_admitted();
    let flooding = Arc::new(AtomicBool::new(true));
    let watcher = {
        let hasher = hasher.clone();
        let flooding = flooding.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while flooding.load(Ordering::Acquire) {
                peak = peak.max(hasher.admitted());
                tokio::task::yield_now().await;
            }
            peak
        })
    };
    let attempts: Vec<_> = (0..bound * 6)
        .map(|n| {
            let router = from(&app, &format!("198.18.{}.{}", n / 250, n % 250 + 1));
            tokio::spawn(
                async move { login(&router, &format!("user{n}"), "Wrong-Guess-123").await },
            )
        })
        .collect();
    let mut shed = 0;
    for attempt in attempts {
        let reply = attempt.await.unwrap();
        match reply.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert_limited(&reply, "a shed login");
                shed += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    flooding.store(false, Ordering::Release);
    let peak = watcher.await.unwrap();
    assert!(shed > 0, "logins beyond the queue are shed");
    assert!(peak <= bound, "the queue stays bounded: {peak} > {bound}");
    assert_eq!(hasher.admitted(), 0);

    // Once the flood is over a real login goes through.
    let owner = login(&from(&app, "203.0.113.9"), "admin", ADMIN_PASSWORD).await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    let metrics = app.get("/metrics").await.body;
    let line =
        format!(r#"watchgrid_rate_limit_rejections_total{{limiter="password_queue"}} {shed}"#);
    assert!(metrics.contains(&line), "{line}: {metrics}");
}

async fn tenants_have_a_device_quota_and_a_creation_rate(backend: TestBackend) {
    let app = TestApp::with_config(
        backend,
        &[
            ("WATCHGRID_MAX_DEVICES_PER_TENANT", "3"),
            ("WATCHGRID_RATELIMIT_DEVICE_CREATION_CAPACITY", "4"),
        ],
    )
    .await;
    let admin = app.admin_token().await;
    let create = |name: &'static str| {
        app.call("POST", "/api/devices")
            .token(&admin)
            .json(json!({"name": name}))
            .send()
    };
    for name in ["phone-1", "phone-2"] {
        let reply = create(name).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    // An enrolled agent counts too.
    let token = onboarding_token(&app, &admin).await;
    let agent = register(&app, "198.51.100.1", &token, "agent-1").await;
    assert_eq!(agent.status, StatusCode::OK, "{}", agent.body);

    let refused = create("phone-3").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("WATCHGRID_MAX_DEVICES_PER_TENANT") && message.contains('3'),
        "{message}"
    );
    let enroll = register(&app, "198.51.100.2", &token, "agent-2").await;
    assert_eq!(enroll.status, StatusCode::CONFLICT, "{}", enroll.body);
    assert!(enroll.body.contains("WATCHGRID_MAX_DEVICES_PER_TENANT"));
    let tokens = app
        .call("GET", "/api/onboarding-tokens")
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(tokens[0]["uses"], 1, "a refused enrollment spends no use");
    let devices = app.call("GET", "/api/devices").token(&admin).send().await;
    assert_eq!(devices.json()["items"].as_array().unwrap().len(), 3);

    // Creating is also rate limited per tenant (four attempts a minute here; three spent).
    let id = devices.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = app
        .call("DELETE", format!("/api/devices/{id}"))
        .token(&admin)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(create("phone-4").await.status, StatusCode::CREATED);
    assert_limited(&create("phone-5").await, "the tenant's creation rate");

    let audit = app
        .call("GET", "/api/audit?action=device.create&success=false")
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
}
