//! Devices on SQLite and PostgreSQL, in process: onboarding tokens, registration (idempotent,
//! race-free addresses, every token state), heartbeats through the agent API's device
//! authentication, listing with filters, rename, delete, and plain WireGuard peers.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use common::{send, Reply, TestApp};
use serde_json::{json, Value};
use watchgrid_testkit::{backend_tests, TestBackend};

backend_tests!(
    registration_and_heartbeats,
    token_states_are_enforced,
    reregistration_needs_the_current_credential,
    concurrent_registrations_get_distinct_addresses,
    concurrent_registrations_of_one_key_enroll_it_once,
    listing_filters_and_pages,
    plain_devices_get_a_wireguard_config,
    devices_survive_a_restart,
    deleting_a_tenant_removes_its_devices_from_the_fleet,
    the_last_flush_writes_everything_and_closes_the_buffer,
);

const NO_WG: &[(&str, &str)] = &[
    ("WATCHGRID_WG_BACKEND", "none"),
    ("WATCHGRID_HEARTBEAT_INTERVAL_SECS", "30"),
];

fn fresh_key() -> String {
    watchgrid_wireguard::key::PrivateKey::generate()
        .public_key()
        .to_string()
}

async fn onboarding_token(app: &TestApp, admin: &str, body: Value) -> String {
    let reply = app
        .call("POST", "/api/onboarding-tokens")
        .token(admin)
        .json(body)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let secret = reply.json()["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("wgo_"));
    secret
}

async fn register(app: &TestApp, token: &str, hostname: &str, key: &str) -> Reply {
    app.call("POST", "/api/agent/register")
        .json(json!({"token": token, "hostname": hostname, "os": "Debian 12", "agent_version": "0.1.0", "wg_public_key": key}))
        .send()
        .await
}

/// A registration of an already enrolled key, showing `credential`.
async fn register_again(
    app: &TestApp,
    token: &str,
    hostname: &str,
    key: &str,
    credential: &str,
) -> Reply {
    app.call("POST", "/api/agent/register")
        .json(json!({"token": token, "hostname": hostname, "os": "Debian 12", "agent_version": "0.1.0", "wg_public_key": key, "credential": credential}))
        .send()
        .await
}

/// A heartbeat on the agent API, as if from `from` (the device's overlay address).
async fn heartbeat(app: &TestApp, from: &str, credential: &str) -> Reply {
    heartbeat_to(&app.state, from, credential).await
}

async fn heartbeat_to(
    state: &watchgrid_server::state::AppState,
    from: &str,
    credential: &str,
) -> Reply {
    let router = watchgrid_server::http::agent_router(state.clone()).layer(MockConnectInfo(
        SocketAddr::new(from.parse().unwrap(), 40000),
    ));
    send(
        &router,
        Request::post("/api/agent/heartbeat")
            .header("authorization", format!("Bearer {credential}"))
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"agent_version": "0.1.1", "uptime_secs": 42, "hostname": "web-01", "os": "Debian 12"}).to_string(),
            ))
            .unwrap(),
    )
    .await
}

/// Shutdown's flush (`flush_final`) writes what is buffered, without pacing, and turns later
/// periodic flushes into no-ops (the pool is about to close under them).
async fn the_last_flush_writes_everything_and_closes_the_buffer(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let admin = app.admin_token().await;
    let token = onboarding_token(&app, &admin, json!({"max_uses": 2})).await;
    let first = register(&app, &token, "first", &fresh_key()).await.json();
    let second = register(&app, &token, "second", &fresh_key()).await.json();
    let heartbeats = &app.state.fleet.heartbeats;
    let ok = heartbeat(&app, "100.64.0.2", first["credential"].as_str().unwrap()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(heartbeats.flush_final(&app.state.db).await.unwrap(), 1);
    let status = |id: &Value| {
        let id = id.as_str().unwrap().to_owned();
        let admin = admin.clone();
        let app = &app;
        async move {
            app.call("GET", format!("/api/devices/{id}"))
                .token(&admin)
                .send()
                .await
                .json()["status"]
                .clone()
        }
    };
    assert_eq!(status(&first["device_id"]).await, "online");
    // Heard after the last flush: a periodic flush writes nothing any more.
    let late = heartbeat(&app, "100.64.0.3", second["credential"].as_str().unwrap()).await;
    assert_eq!(late.status, StatusCode::OK, "{}", late.body);
    assert_eq!(heartbeats.flush(&app.state.db).await.unwrap(), 0);
    assert_ne!(status(&second["device_id"]).await, "online");
}

async fn registration_and_heartbeats(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let admin = app.admin_token().await;
    let token = onboarding_token(
        &app,
        &admin,
        json!({"description": "rack 4", "max_uses": 2, "tags": ["rack-4"]}),
    )
    .await;
    let key = fresh_key();
    let reply = register(&app, &token, "web-01.example.com", &key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let enrolled = reply.json();
    assert_eq!(enrolled["device_name"], "web-01");
    assert_eq!(enrolled["tenant"], "default");
    assert_eq!(enrolled["overlay_address"], "100.64.0.2/10");
    assert_eq!(enrolled["server_overlay_ip"], "100.64.0.1");
    assert_eq!(enrolled["agent_api"], "http://100.64.0.1:8081");
    assert_eq!(
        enrolled["server_public_key"],
        app.state.fleet.hub.public_key().unwrap().to_string()
    );
    let credential = enrolled["credential"].as_str().unwrap().to_owned();
    assert!(credential.starts_with("wgd_"));

    // Registering again with the same key and the current credential: the same device, a new
    // credential, no extra use.
    let again = register_again(&app, &token, "web-01", &key, &credential)
        .await
        .json();
    assert_eq!(again["device_id"], enrolled["device_id"]);
    assert_eq!(again["overlay_address"], enrolled["overlay_address"]);
    let new_credential = again["credential"].as_str().unwrap().to_owned();
    assert_ne!(new_credential, credential);
    let tokens = app
        .call("GET", "/api/onboarding-tokens")
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(tokens[0]["uses"], 1);

    // Heartbeats: the right credential from the right address only.
    assert_eq!(
        heartbeat(&app, "100.64.0.2", &credential).await.status,
        StatusCode::UNAUTHORIZED,
        "old credential"
    );
    let ok = heartbeat(&app, "100.64.0.2", &new_credential).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["heartbeat_interval_secs"], 30);
    assert_eq!(
        heartbeat(&app, "100.64.0.9", &new_credential).await.status,
        StatusCode::UNAUTHORIZED,
        "wrong address"
    );
    assert_eq!(
        heartbeat(&app, "100.64.0.2", "wgd_guess").await.status,
        StatusCode::UNAUTHORIZED
    );
    app.state
        .fleet
        .heartbeats
        .flush(&app.state.db)
        .await
        .unwrap();

    let id = enrolled["device_id"].as_str().unwrap();
    let device = app
        .call("GET", format!("/api/devices/{id}"))
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(device["status"], "online", "{device}");
    assert_eq!(device["agent_version"], "0.1.1", "facts from the heartbeat");
    assert_eq!(device["tags"], json!(["rack-4"]), "the token's tags");
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("watchgrid_agent_heartbeats_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"watchgrid_registrations_total{result="ok"} 2"#));

    // Rename moves the name; a clash is refused.
    let second = register(&app, &token, "web-01", &fresh_key()).await.json();
    assert_eq!(
        second["device_name"], "web-01-2",
        "a clash gets a stable suffix"
    );
    let renamed = app
        .call("PATCH", format!("/api/devices/{id}"))
        .token(&admin)
        .json(json!({"name": "frontend"}))
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let clash = app
        .call("PATCH", format!("/api/devices/{id}"))
        .token(&admin)
        .json(json!({"name": "web-01-2"}))
        .send()
        .await;
    assert_eq!(clash.status, StatusCode::CONFLICT);

    // Delete: the credential stops working at once and the address is free again.
    let deleted = app
        .call("DELETE", format!("/api/devices/{id}"))
        .token(&admin)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        heartbeat(&app, "100.64.0.2", &new_credential).await.status,
        StatusCode::UNAUTHORIZED
    );
    let token2 = onboarding_token(&app, &admin, json!({})).await;
    let reused = register(&app, &token2, "db-01", &fresh_key()).await.json();
    assert_eq!(
        reused["overlay_address"], "100.64.0.2/10",
        "the freed address is reused"
    );

    let audit = app
        .call("GET", "/api/audit?action=device.")
        .token(&admin)
        .send()
        .await
        .json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"device.register")
            && actions.contains(&"device.delete")
            && actions.contains(&"device.update"),
        "{actions:?}"
    );
}

async fn token_states_are_enforced(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let admin = app.admin_token().await;
    let once = onboarding_token(&app, &admin, json!({"max_uses": 1})).await;
    assert_eq!(
        register(&app, &once, "a", &fresh_key()).await.status,
        StatusCode::OK
    );
    let used_up = register(&app, &once, "b", &fresh_key()).await;
    assert_eq!(used_up.status, StatusCode::UNAUTHORIZED);
    assert_eq!(used_up.json()["error"]["code"], "invalid_onboarding_token");
    assert!(used_up.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("used up"));

    let revoked = onboarding_token(&app, &admin, json!({})).await;
    let list = app
        .call("GET", "/api/onboarding-tokens")
        .token(&admin)
        .send()
        .await
        .json();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["uses"] == 0)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call("DELETE", format!("/api/onboarding-tokens/{id}"))
        .token(&admin)
        .send()
        .await;
    let refused = register(&app, &revoked, "c", &fresh_key()).await;
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{}",
        refused.body
    );

    let unknown = register(&app, "wgo_not-a-token", "d", &fresh_key()).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid"));

    let bad = register(&app, &once, "", "not-a-key").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = bad.json();
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["hostname", "wg_public_key"]);

    let metrics = app.get("/metrics").await.body;
    for (result, n) in [
        ("used_up_token", 1),
        ("revoked_token", 1),
        ("invalid_token", 1),
        ("invalid_request", 1),
    ] {
        assert!(
            metrics.contains(&format!(
                r#"watchgrid_registrations_total{{result="{result}"}} {n}"#
            )),
            "{result}: {metrics}"
        );
    }
    // Failed uses of known tokens are audited.
    let audit = app
        .call("GET", "/api/audit?action=device.register&success=false")
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
}

/// The holder of a device's (used-up) onboarding token and its public key cannot take the
/// device over: no new credential, no host certificate, the device keeps working.
async fn reregistration_needs_the_current_credential(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let admin = app.admin_token().await;
    let once = onboarding_token(&app, &admin, json!({"max_uses": 1})).await;
    let key = fresh_key();
    let enrolled = register(&app, &once, "victim", &key).await.json();
    let credential = enrolled["credential"].as_str().unwrap().to_owned();
    let address = enrolled["overlay_address"].as_str().unwrap();
    let address = address.split('/').next().unwrap().to_owned();

    let host_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl attacker";
    for credential_sent in [None, Some("wgd_guess"), Some("")] {
        let mut body = json!({"token": once, "hostname": "victim", "os": "", "agent_version": "", "wg_public_key": key, "ssh_host_key": host_key});
        if let Some(sent) = credential_sent {
            body["credential"] = json!(sent);
        }
        let hijack = app
            .call("POST", "/api/agent/register")
            .json(body)
            .send()
            .await;
        assert_eq!(hijack.status, StatusCode::CONFLICT, "{}", hijack.body);
        assert!(
            hijack.body.contains("current credential") && !hijack.body.contains("wgd_"),
            "{}",
            hijack.body
        );
    }
    assert_eq!(
        heartbeat(&app, &address, &credential).await.status,
        StatusCode::OK,
        "the real device keeps its credential"
    );
    let certificates = app
        .call("GET", "/api/ssh/certificates")
        .token(&admin)
        .send()
        .await;
    assert!(
        !certificates.body.contains("victim"),
        "no host certificate was signed: {}",
        certificates.body
    );

    // The device itself, with its credential, may register again.
    let again = register_again(&app, &once, "victim", &key, &credential).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.json()["device_id"], enrolled["device_id"]);

    // A used-up token enrolls nothing new.
    let used_up = register(&app, &once, "other", &fresh_key()).await;
    assert_eq!(used_up.status, StatusCode::UNAUTHORIZED, "{}", used_up.body);
}

/// No WireGuard, and a registration limit high enough for a burst from one address.
const BURST_OF_REGISTRATIONS: &[(&str, &str)] = &[
    ("WATCHGRID_WG_BACKEND", "none"),
    ("WATCHGRID_RATELIMIT_REGISTRATION_CAPACITY", "1000"),
];

/// Send every registration body at once (they start together behind a barrier); the replies
/// come out of the set as they finish.
fn register_all_at_once(
    app: &TestApp,
    bodies: impl ExactSizeIterator<Item = Value>,
) -> tokio::task::JoinSet<Reply> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(bodies.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let (router, start) = (app.router.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            send(
                &router,
                Request::post("/api/agent/register")
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
        });
    }
    tasks
}

async fn concurrent_registrations_get_distinct_addresses(backend: TestBackend) {
    let app = TestApp::with_config(backend, BURST_OF_REGISTRATIONS).await;
    let admin = app.admin_token().await;
    let token = onboarding_token(&app, &admin, json!({"max_uses": 200})).await;
    let bodies = (0..200).map(|n| json!({"token": token, "hostname": format!("node-{n}"), "os": "linux", "agent_version": "0.1.0", "wg_public_key": fresh_key()}));
    let mut tasks = register_all_at_once(&app, bodies);
    let mut addresses = std::collections::HashSet::new();
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(addresses.insert(reply.json()["overlay_address"].as_str().unwrap().to_owned()));
    }
    assert_eq!(addresses.len(), 200);
    // One more exceeds the token's uses.
    assert_eq!(
        register(&app, &token, "extra", &fresh_key()).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Registrations of one new key at the same moment: one enrolls it; the others are told the
/// key is enrolled (409), not retried as if an address had been lost (which ended in 503).
async fn concurrent_registrations_of_one_key_enroll_it_once(backend: TestBackend) {
    let app = TestApp::with_config(backend, BURST_OF_REGISTRATIONS).await;
    let admin = app.admin_token().await;
    let token = onboarding_token(&app, &admin, json!({"max_uses": 20})).await;
    let key = fresh_key();
    let bodies = (0..8).map(|n| json!({"token": token, "hostname": format!("twin-{n}"), "os": "linux", "agent_version": "0.1.0", "wg_public_key": key}));
    let mut tasks = register_all_at_once(&app, bodies);
    let (mut enrolled, mut refused, mut winner) = (0, 0, String::new());
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        match reply.status {
            StatusCode::OK => {
                enrolled += 1;
                winner = reply.json()["overlay_address"].as_str().unwrap().to_owned();
            }
            StatusCode::CONFLICT => {
                assert!(reply.body.contains("already enrolled"), "{}", reply.body);
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!((enrolled, refused), (1, 7));
    let listed = app.call("GET", "/api/devices").token(&admin).send().await;
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);
    // Only the enrollment used the token; the addresses the others reserved are free again.
    let next = register(&app, &token, "next", &fresh_key()).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    let lowest_free = if winner == "100.64.0.2/10" {
        "100.64.0.3/10"
    } else {
        "100.64.0.2/10"
    };
    assert_eq!(
        next.json()["overlay_address"],
        lowest_free,
        "winner {winner}"
    );
}

async fn listing_filters_and_pages(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let admin = app.admin_token().await;
    let prod = onboarding_token(&app, &admin, json!({"max_uses": 10, "tags": ["prod"]})).await;
    let dev = onboarding_token(&app, &admin, json!({"max_uses": 10})).await;
    let mut credentials = Vec::new();
    for n in 0..3 {
        credentials.push(
            register(&app, &prod, &format!("prod-{n}"), &fresh_key())
                .await
                .json(),
        );
    }
    for n in 0..2 {
        register(&app, &dev, &format!("dev-{n}"), &fresh_key()).await;
    }
    let c = &credentials[0];
    let ip = c["overlay_address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    heartbeat(&app, ip, c["credential"].as_str().unwrap()).await;
    app.state
        .fleet
        .heartbeats
        .flush(&app.state.db)
        .await
        .unwrap();

    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let get = |q: &'static str| {
        app.call("GET", format!("/api/devices{q}"))
            .token(&admin)
            .send()
    };
    assert_eq!(
        names(get("?tag=prod").await.json()),
        ["prod-0", "prod-1", "prod-2"]
    );
    assert_eq!(names(get("?status=online").await.json()), ["prod-0"]);
    assert_eq!(
        names(get("?status=pending&name=dev").await.json()),
        ["dev-0", "dev-1"]
    );
    let first = get("?limit=2").await.json();
    assert_eq!(names(first.clone()), ["dev-0", "dev-1"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = app
        .call("GET", format!("/api/devices?limit=10&cursor={cursor}"))
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(names(rest.clone()), ["prod-0", "prod-1", "prod-2"]);
    assert!(rest.get("next_cursor").is_none());
    let bad = get("?status=sleeping").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn plain_devices_get_a_wireguard_config(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let admin = app.admin_token().await;
    let created = app
        .call("POST", "/api/devices")
        .token(&admin)
        .json(json!({"name": "phone", "tags": ["mobile"]}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let created = created.json();
    let config = created["wireguard_config"].as_str().unwrap();
    let parsed =
        watchgrid_wireguard::config::WgQuickConfig::parse(config).expect("a valid wg-quick file");
    assert_eq!(
        parsed.interface.addresses[0].to_string(),
        format!("{}/32", created["device"]["overlay_ip"].as_str().unwrap())
    );
    assert_eq!(
        parsed.peers[0].public_key,
        app.state.fleet.hub.public_key().unwrap()
    );
    // Only the server's overlay address: devices do not reach each other.
    let allowed: Vec<String> = parsed.peers[0]
        .allowed_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(allowed, ["100.64.0.1/32"]);
    assert_eq!(
        parsed.interface.private_key.public_key().to_string(),
        created["device"]["public_key"].as_str().unwrap()
    );
    assert_eq!(created["device"]["status"], "unknown");
    let id = created["device"]["id"].as_str().unwrap();
    let download = app
        .call("GET", format!("/api/devices/{id}/wireguard-config"))
        .token(&admin)
        .send()
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert!(download.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("phone.conf"));
    assert!(
        !download
            .body
            .contains(&parsed.interface.private_key.to_base64()),
        "the private key is not kept"
    );
    let with_key = app
        .call("POST", "/api/devices")
        .token(&admin)
        .json(json!({"name": "router", "public_key": fresh_key()}))
        .send()
        .await
        .json();
    assert!(with_key["wireguard_config"]
        .as_str()
        .unwrap()
        .contains("# PrivateKey"));
}

/// A restarted server knows every device before it is ready: the index is loaded from the
/// database, so heartbeats keep working and the hub would re-add every peer.
async fn devices_survive_a_restart(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let admin = app.admin_token().await;
    let token = onboarding_token(&app, &admin, json!({})).await;
    let enrolled = register(&app, &token, "keeper", &fresh_key()).await.json();

    // A second server process on the same database: a fresh state, prepared as at start-up.
    let restarted = common::state_for(&app.db, &[]).await;
    assert_eq!(restarted.fleet.index.len(), 0);
    assert!(watchgrid_server::serve::prepare_database(&restarted).await);
    assert_eq!(
        restarted.fleet.index.len(),
        1,
        "the index is loaded before readiness"
    );
    let ip: std::net::Ipv4Addr = enrolled["overlay_address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let entry = restarted
        .fleet
        .index
        .by_ip(ip)
        .expect("the device is known");
    assert_eq!(entry.name, "keeper");
    assert!(entry.credential_hash.is_some());
}

/// Two replicas on one PostgreSQL database: what one changes reaches the other's in-memory
/// index through the `devices` trigger's notifications, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_each_others_device_changes() {
    let app = TestApp::with_config(TestBackend::Postgres, NO_WG).await;
    let other = common::state_for(&app.db, NO_WG).await;
    assert!(watchgrid_server::serve::prepare_database(&other).await);
    tokio::spawn(watchgrid_server::fleet::sync::follow_device_changes(
        other.db.clone(),
        other.fleet.clone(),
    ));
    let admin = app.admin_token().await;
    let token = onboarding_token(&app, &admin, json!({"max_uses": 5})).await;

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..100 {
            if check() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("not within 5 s: {what}");
    }

    // Registered on the first replica: the second authenticates its heartbeats.
    let enrolled = register(&app, &token, "edge-1", &fresh_key()).await.json();
    let id: uuid::Uuid = enrolled["device_id"].as_str().unwrap().parse().unwrap();
    let credential = enrolled["credential"].as_str().unwrap().to_owned();
    let ip = enrolled["overlay_address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    eventually("the new device reaches the other replica", || {
        other.fleet.index.get(id).is_some()
    })
    .await;
    assert_eq!(
        heartbeat_to(&other, &ip, &credential).await.status,
        StatusCode::OK
    );

    // Renamed on the first replica.
    let renamed = app
        .call("PATCH", format!("/api/devices/{id}"))
        .token(&admin)
        .json(json!({"name": "edge-renamed"}))
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    eventually("the rename reaches the other replica", || {
        other
            .fleet
            .index
            .get(id)
            .is_some_and(|d| d.name == "edge-renamed")
    })
    .await;

    // Heartbeats (last_seen_at, host facts) notify nothing: they are not index changes.
    let mut changes = watchgrid_store::changes::DeviceChanges::listen(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        heartbeat(&app, &ip, &credential).await.status,
        StatusCode::OK
    );
    app.state
        .fleet
        .heartbeats
        .flush(&app.state.db)
        .await
        .unwrap();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(500), changes.next()).await;
    assert!(
        quiet.is_err(),
        "a heartbeat sent a change notification: {quiet:?}"
    );

    // Deleted on the first replica: the second refuses the credential and frees the address.
    let deleted = app
        .call("DELETE", format!("/api/devices/{id}"))
        .token(&admin)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    eventually("the delete reaches the other replica", || {
        other.fleet.index.get(id).is_none()
    })
    .await;
    assert_eq!(
        heartbeat_to(&other, &ip, &credential).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        other
            .fleet
            .index
            .reserve()
            .map(|a| a.to_string())
            .as_deref(),
        Some(ip.as_str()),
        "the other replica hands the freed address out again"
    );
    // This subscription heard the delete too; take it, or it may come before the resync below.
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), changes.next()).await;
    assert_eq!(
        next.unwrap().unwrap(),
        watchgrid_store::changes::DeviceChange::Changed(vec![id])
    );

    // The subscription's connection is cut: the listener reports a resync, then hears again.
    let cut = app
        .state
        .db
        .query_i64_for_tests(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    assert!(cut >= 1, "the listeners' connections were found");
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), changes.next()).await;
    assert_eq!(
        next.unwrap().unwrap(),
        watchgrid_store::changes::DeviceChange::Resync
    );
    let again = register(&app, &token, "edge-2", &fresh_key()).await.json();
    let id2: uuid::Uuid = again["device_id"].as_str().unwrap().parse().unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), changes.next()).await;
    assert_eq!(
        next.unwrap().unwrap(),
        watchgrid_store::changes::DeviceChange::Changed(vec![id2])
    );
    eventually(
        "the other replica resubscribed and hears new devices",
        || other.fleet.index.get(id2).is_some(),
    )
    .await;
}

/// Deleting a tenant deletes its devices in the database (cascade); the in-memory fleet drops
/// them at once too: credentials stop working, addresses are free, peers leave.
async fn deleting_a_tenant_removes_its_devices_from_the_fleet(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    let created = app
        .call("POST", "/api/tenants")
        .token(&root)
        .json(json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let token = app
        .call("POST", "/api/onboarding-tokens")
        .token(&root)
        .tenant("acme")
        .json(json!({"description": "acme fleet", "max_uses": 2}))
        .send()
        .await;
    assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
    let token = token.json()["secret"].as_str().unwrap().to_owned();
    let acme = register(&app, &token, "acme-1", &fresh_key()).await.json();
    let default_token = onboarding_token(&app, &root, json!({})).await;
    let kept = register(&app, &default_token, "kept-1", &fresh_key())
        .await
        .json();
    let address = |enrolled: &Value| {
        enrolled["overlay_address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let (acme_ip, kept_ip) = (address(&acme), address(&kept));
    let acme_id: uuid::Uuid = acme["device_id"].as_str().unwrap().parse().unwrap();

    let deleted = app
        .call("DELETE", "/api/tenants/acme")
        .token(&root)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert!(app.state.fleet.index.get(acme_id).is_none());
    assert_eq!(
        heartbeat(&app, &acme_ip, acme["credential"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        heartbeat(&app, &kept_ip, kept["credential"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK,
        "another tenant's device is untouched"
    );
    assert_eq!(
        app.state.fleet.index.reserve().map(|a| a.to_string()),
        Some(acme_ip),
        "the deleted tenant's address is free again"
    );
}
