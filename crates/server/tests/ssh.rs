//! The SSH certificate authority in the server, on SQLite and PostgreSQL, checked with OpenSSH's
//! own tools: per-tenant CA files and their records, user certificates for granted principals
//! (`ssh-keygen -L` parses each), validity bounds, revocation and the KRL (`ssh-keygen -Q`
//! agrees), the agent API's CA and KRL, and a wiped or swapped key file failing `/healthz` and
//! signing until it is restored — never replaced.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use common::{Reply, TestApp};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use watchgrid_testkit::{backend_tests, TestBackend};

backend_tests!(
    tenants_get_their_own_cas,
    certificates_for_granted_principals_only,
    revocations_reach_the_krl,
    a_wiped_ca_fails_health_and_signing_until_restored,
    devices_get_host_certificates,
    rotation_trusts_old_and_new_keys_until_the_grace_ends,
    concurrent_signings_all_succeed_with_distinct_serials,
    removing_a_user_revokes_their_certificates,
    deleting_a_device_revokes_its_host_certificates,
    the_first_refusal_names_the_grant_command,
);

const NO_WG: &[(&str, &str)] = &[("WATCHGRID_WG_BACKEND", "none")];

fn ca_dir(app: &TestApp) -> PathBuf {
    app.state.config.ssh.ca_dir.clone()
}

/// `ssh-keygen` with `args`, in UTC; returns (success, stdout + stderr).
fn ssh_keygen(args: &[&str]) -> (bool, String) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("ssh-keygen is installed (apt-get install openssh-client)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A new Ed25519 key made by ssh-keygen; returns its public line.
fn user_key(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let (ok, out) = ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        name,
        "-f",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_owned()
}

/// `ssh-keygen -L` of a certificate line; panics unless it parses.
fn listing(dir: &Path, name: &str, certificate: &str) -> String {
    let path = dir.join(format!("{name}-cert.pub"));
    std::fs::write(&path, format!("{certificate}\n")).unwrap();
    let (ok, out) = ssh_keygen(&["-L", "-f", path.to_str().unwrap()]);
    assert!(ok, "ssh-keygen -L refused the certificate: {out}");
    out
}

/// `GET /api/ssh/ca` in `tenant`.
async fn ca_of(app: &TestApp, token: &str, tenant: &str) -> Value {
    let reply = app
        .call("GET", "/api/ssh/ca")
        .token(token)
        .tenant(tenant)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()
}

/// `ssh-keygen -L` of a signed certificate: a `kind` certificate signed by the tenant's
/// first `kind` CA (as `GET /api/ssh/ca` lists it), which the answer names too.
fn signed_by(dir: &Path, name: &str, signed: &Value, ca: &Value, kind: &str) -> String {
    let fingerprint = ca[kind][0]["fingerprint"].as_str().unwrap();
    assert_eq!(signed["ca_fingerprint"], fingerprint);
    let text = listing(dir, name, signed["certificate"].as_str().unwrap());
    assert!(
        text.contains(&format!(
            "Type: ssh-ed25519-cert-v01@openssh.com {kind} certificate"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("Signing CA: ED25519 {fingerprint}")),
        "{text}"
    );
    text
}

async fn create_tenant(app: &TestApp, root: &str, slug: &str) -> Value {
    let reply = app
        .call("POST", "/api/tenants")
        .token(root)
        .json(json!({"slug": slug, "name": slug}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()
}

async fn grant(app: &TestApp, token: &str, tenant: &str, body: Value) -> Reply {
    app.call("PUT", "/api/ssh/principals")
        .token(token)
        .tenant(tenant)
        .json(body)
        .send()
        .await
}

async fn sign(app: &TestApp, token: &str, tenant: &str, body: Value) -> Reply {
    app.call("POST", "/api/ssh/certificates")
        .token(token)
        .tenant(tenant)
        .json(body)
        .send()
        .await
}

/// Let the owners of `tenant` log in as `root`.
async fn owners_may_be_root(app: &TestApp, root: &str, tenant: &str) {
    let granted = grant(
        app,
        root,
        tenant,
        json!({"role": "owner", "principals": ["root"]}),
    )
    .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
}

/// Tenant `acme`, whose owners may log in as `root`.
async fn acme_with_root_principal(app: &TestApp, root: &str) {
    create_tenant(app, root, "acme").await;
    owners_may_be_root(app, root, "acme").await;
}

/// The length of a signed certificate's validity window, in seconds.
fn validity_secs(signed: &Value) -> i64 {
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(signed[field].as_str().unwrap()).unwrap()
    };
    (at("valid_before") - at("valid_after")).num_seconds()
}

/// A second server state on the same database and directories, started like `serve` starts.
async fn restart(app: &TestApp) -> watchgrid_server::state::AppState {
    let state = common::state_for(
        &app.db,
        &[
            ("WATCHGRID_WG_BACKEND", "none"),
            ("ADMIN_PASSWORD", common::ADMIN_PASSWORD),
        ],
    )
    .await;
    assert!(watchgrid_server::serve::prepare_database(&state).await);
    state
}

fn fingerprint_of(path: &Path) -> String {
    let (ok, out) = ssh_keygen(&["-lf", path.to_str().unwrap()]);
    assert!(ok, "{out}");
    out.split_whitespace().nth(1).unwrap().to_owned()
}

async fn tenants_get_their_own_cas(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    create_tenant(&app, &root, "acme").await;
    let dir = ca_dir(&app);
    // The bootstrap tenant got its CAs at start-up, the new tenant on creation.
    for slug in ["default", "acme"] {
        let ca = app
            .call("GET", "/api/ssh/ca")
            .token(&root)
            .tenant(slug)
            .send()
            .await;
        assert_eq!(ca.status, StatusCode::OK, "{}", ca.body);
        let ca = ca.json();
        for kind in ["user", "host"] {
            let file = dir.join(format!("ca_{slug}_{kind}"));
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
            let recorded = &ca[kind][0];
            assert_eq!(recorded["generation"], 1);
            assert_eq!(recorded["state"], "active");
            // ssh-keygen agrees with the recorded fingerprint, for the private and public file.
            assert_eq!(recorded["fingerprint"], fingerprint_of(&file));
            assert_eq!(
                recorded["fingerprint"],
                fingerprint_of(&dir.join(format!("ca_{slug}_{kind}.pub")))
            );
        }
        assert_eq!(ca["host_pattern"], format!("*.{slug}.watchgrid.internal"));
        assert_eq!(
            ca["known_hosts"],
            format!(
                "@cert-authority *.{slug}.watchgrid.internal {}\n",
                ca["host"][0]["public_key"].as_str().unwrap()
            )
        );
        assert_eq!(
            ca["trusted_user_ca_keys"],
            format!("{}\n", ca["user"][0]["public_key"].as_str().unwrap())
        );
    }
    let default_ca = ca_of(&app, &root, "default").await;
    let acme_ca = ca_of(&app, &root, "acme").await;
    assert_ne!(
        default_ca["user"][0]["fingerprint"],
        acme_ca["user"][0]["fingerprint"]
    );

    // A restart finds the records and files and changes nothing.
    let before: Vec<_> = ["user", "host"]
        .iter()
        .map(|k| std::fs::read(dir.join(format!("ca_acme_{k}"))).unwrap())
        .collect();
    let again = restart(&app).await;
    let after: Vec<_> = ["user", "host"]
        .iter()
        .map(|k| std::fs::read(dir.join(format!("ca_acme_{k}"))).unwrap())
        .collect();
    assert_eq!(before, after);
    assert!(again.health.health().await.is_ok());
}

async fn certificates_for_granted_principals_only(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    let keys = tempfile::tempdir().unwrap();
    let key = user_key(keys.path(), "admin-laptop");

    // Nothing granted yet: refused, with the reason.
    let refused = sign(&app, &root, "default", json!({"public_key": key})).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.json()["error"]["fields"][0]["field"], "principals");

    let login = app.login("admin", common::ADMIN_PASSWORD).await;
    let admin_id = login["user"]["id"].as_str().unwrap().to_owned();
    let granted = grant(
        &app,
        &root,
        "default",
        json!({"user_id": admin_id, "principals": ["root", "deploy"]}),
    )
    .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    assert_eq!(granted.json()["username"], "admin");
    let by_role = grant(
        &app,
        &root,
        "default",
        json!({"role": "owner", "principals": ["ops"]}),
    )
    .await;
    assert_eq!(by_role.status, StatusCode::OK, "{}", by_role.body);
    let bad = grant(
        &app,
        &root,
        "default",
        json!({"role": "owner", "principals": ["-oProxyCommand"]}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let both = grant(
        &app,
        &root,
        "default",
        json!({"role": "owner", "user_id": admin_id, "principals": ["x"]}),
    )
    .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);

    // All allowed principals by default; the user's and the role's grants together.
    let all = sign(&app, &root, "default", json!({"public_key": key})).await;
    assert_eq!(all.status, StatusCode::CREATED, "{}", all.body);
    let all = all.json();
    assert_eq!(all["principals"], json!(["deploy", "ops", "root"]));
    assert_eq!(all["serial"], 1);
    let ca = ca_of(&app, &root, "default").await;
    let text = signed_by(keys.path(), "all", &all, &ca, "user");
    assert!(text.contains("Serial: 1"), "{text}");
    let key_id = all["key_id"].as_str().unwrap();
    assert!(key_id.starts_with("admin@default#"), "{key_id}");
    assert!(text.contains(&format!("Key ID: \"{key_id}\"")), "{text}");
    for p in ["root", "deploy", "ops"] {
        assert!(text.contains(&format!("\n                {p}\n")), "{text}");
    }
    assert!(text.contains("permit-pty"), "{text}");

    // One requested principal; the tenant's default validity (an hour, five minutes' skew).
    let one = sign(
        &app,
        &root,
        "default",
        json!({"public_key": key, "principals": ["deploy"]}),
    )
    .await
    .json();
    assert_eq!(one["principals"], json!(["deploy"]));
    assert_eq!(one["serial"], 2);
    assert_eq!(validity_secs(&one), 3600 + 300);
    let text = listing(keys.path(), "one", one["certificate"].as_str().unwrap());
    assert!(!text.contains("                root\n"), "{text}");

    // A principal not granted, a too long validity, a bad key: refused, nothing issued.
    let denied = sign(
        &app,
        &root,
        "default",
        json!({"public_key": key, "principals": ["deploy", "postgres"]}),
    )
    .await;
    assert_eq!(denied.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(denied.body.contains("postgres"), "{}", denied.body);
    let long = sign(
        &app,
        &root,
        "default",
        json!({"public_key": key, "validity_secs": 13 * 3600}),
    )
    .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(long.json()["error"]["fields"][0]["field"], "validity_secs");
    let garbage = sign(
        &app,
        &root,
        "default",
        json!({"public_key": "ssh-ed25519 AAAA"}),
    )
    .await;
    assert_eq!(garbage.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(garbage.json()["error"]["fields"][0]["field"], "public_key");

    // The tenant's bounds are the admin's to set.
    let settings = app
        .call("PUT", "/api/ssh/settings")
        .token(&root)
        .json(json!({"default_validity_secs": 600, "max_validity_secs": 86400}))
        .send()
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    let invalid = app
        .call("PUT", "/api/ssh/settings")
        .token(&root)
        .json(json!({"default_validity_secs": 7200, "max_validity_secs": 3600}))
        .send()
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let long = sign(
        &app,
        &root,
        "default",
        json!({"public_key": key, "validity_secs": 13 * 3600}),
    )
    .await;
    assert_eq!(long.status, StatusCode::CREATED, "{}", long.body);
    assert_eq!(long.json()["serial"], 3, "refused requests used no serial");
    let short = sign(&app, &root, "default", json!({"public_key": key}))
        .await
        .json();
    assert_eq!(validity_secs(&short), 600 + 300);

    // Serials are per tenant: another tenant starts at 1, under its own CA.
    acme_with_root_principal(&app, &root).await;
    let acme = sign(&app, &root, "acme", json!({"public_key": key}))
        .await
        .json();
    assert_eq!(acme["serial"], 1);
    assert_ne!(acme["ca_fingerprint"], all["ca_fingerprint"]);
    listing(keys.path(), "acme", acme["certificate"].as_str().unwrap());

    // Every signing is audited and listed.
    let audit = app
        .call("GET", "/api/audit?action=ssh.certificate.sign")
        .token(&root)
        .send()
        .await
        .json();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(
        items.iter().filter(|e| e["success"] == true).count(),
        4,
        "{audit}"
    );
    assert!(items.iter().any(|e| e["success"] == false));
    let issued = app
        .call("GET", "/api/ssh/certificates")
        .token(&root)
        .send()
        .await
        .json();
    assert_eq!(issued.as_array().unwrap().len(), 4);
    assert_eq!(issued[0]["serial"], 4);
    assert_eq!(issued[0]["subject"], "admin");
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains(r#"watchgrid_ssh_certificates_issued_total{kind="user"} 5"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"watchgrid_ssh_certificates_issued_total{kind="host"} 0"#));
}

fn fresh_wg_key() -> String {
    watchgrid_wireguard::key::PrivateKey::generate()
        .public_key()
        .to_string()
}

/// A device enrolled through the API; returns its overlay address and credential.
async fn enroll(app: &TestApp, admin: &str) -> (String, String) {
    let enrolled = enroll_with(app, admin, None).await;
    let address = enrolled["overlay_address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    (address, enrolled["credential"].as_str().unwrap().to_owned())
}

/// Enroll device `web-01`, sending `ssh_host_key` if given; returns the registration answer.
async fn enroll_with(app: &TestApp, admin: &str, ssh_host_key: Option<&str>) -> Value {
    let token = app
        .call("POST", "/api/onboarding-tokens")
        .token(admin)
        .json(json!({"description": "ssh test"}))
        .send()
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = fresh_wg_key();
    let enrolled = app
        .call("POST", "/api/agent/register")
        .json(json!({"token": token, "hostname": "web-01", "os": "Debian 12", "agent_version": "0.1.0", "wg_public_key": key, "ssh_host_key": ssh_host_key}))
        .send()
        .await;
    assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.body);
    enrolled.json()
}

async fn agent_get(
    app: &TestApp,
    from: &str,
    credential: &str,
    path: &str,
) -> (StatusCode, Vec<u8>) {
    let router = watchgrid_server::http::agent_router(app.state.clone()).layer(MockConnectInfo(
        SocketAddr::new(from.parse().unwrap(), 40000),
    ));
    let request = Request::get(path)
        .header("authorization", format!("Bearer {credential}"))
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

/// The body of a successful response, as bytes (the KRL is binary).
async fn bytes(router: axum::Router, request: Request<Body>) -> Vec<u8> {
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

/// `ssh-keygen -Q -f krl cert`: true when REVOKED.
fn revoked(dir: &Path, krl: &[u8], name: &str) -> bool {
    let krl_path = dir.join("krl");
    std::fs::write(&krl_path, krl).unwrap();
    let cert = dir.join(format!("{name}-cert.pub"));
    let (ok, out) = ssh_keygen(&[
        "-Q",
        "-f",
        krl_path.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert_eq!(ok, out.contains(": ok"), "{out}");
    !ok && out.contains("REVOKED")
}

async fn revocations_reach_the_krl(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    let keys = tempfile::tempdir().unwrap();
    let key = user_key(keys.path(), "k");
    owners_may_be_root(&app, &root, "default").await;
    app.call("POST", "/api/users")
        .token(&root)
        .json(json!({"username": "bob", "password": "Bob-Pass-word-1", "role": "operator"}))
        .send()
        .await;
    let bob = app.login("bob", "Bob-Pass-word-1").await;
    let bob_token = bob["access_token"].as_str().unwrap().to_owned();
    grant(
        &app,
        &root,
        "default",
        json!({"role": "operator", "principals": ["bob"]}),
    )
    .await;

    let mut certs = Vec::new();
    for (name, token) in [
        ("a", &root),
        ("b", &root),
        ("c", &root),
        ("bob1", &bob_token),
        ("bob2", &bob_token),
    ] {
        let signed = sign(&app, token, "default", json!({"public_key": key})).await;
        assert_eq!(signed.status, StatusCode::CREATED, "{}", signed.body);
        let signed = signed.json();
        listing(keys.path(), name, signed["certificate"].as_str().unwrap());
        certs.push((name, signed));
    }
    // A viewer may not revoke; a bob (operator) may not either.
    let refused = app
        .call("POST", "/api/ssh/revocations")
        .token(&bob_token)
        .json(json!({"serial": 1}))
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let krl = || {
        bytes(
            app.router.clone(),
            Request::get("/api/ssh/krl")
                .header("authorization", format!("Bearer {root}"))
                .body(Body::empty())
                .unwrap(),
        )
    };
    let empty = krl().await;
    for (name, _) in &certs {
        assert!(!revoked(keys.path(), &empty, name));
    }

    let revoke = |body: Value| {
        app.call("POST", "/api/ssh/revocations")
            .token(&root)
            .json(body)
            .send()
    };
    let by_serial =
        revoke(json!({"serial": certs[0].1["serial"], "reason": "laptop stolen"})).await;
    assert_eq!(by_serial.status, StatusCode::OK, "{}", by_serial.body);
    assert_eq!(by_serial.json()["revoked_certificates"], 1);
    assert_eq!(
        revoke(json!({"serial": 999})).await.status,
        StatusCode::NOT_FOUND
    );
    let by_key_id = revoke(json!({"key_id": certs[1].1["key_id"]})).await;
    assert_eq!(by_key_id.json()["revoked_certificates"], 1);
    let bob_id = bob["user"]["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("login response has the user id: {bob}"));
    let by_user = revoke(json!({"user_id": bob_id})).await;
    assert_eq!(by_user.status, StatusCode::OK, "{}", by_user.body);
    assert_eq!(by_user.json()["revoked_certificates"], 2);
    assert_eq!(
        revoke(json!({"serial": 1, "key_id": "x"})).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let list = krl().await;
    assert!(revoked(keys.path(), &list, "a"));
    assert!(revoked(keys.path(), &list, "b"));
    assert!(!revoked(keys.path(), &list, "c"));
    assert!(revoked(keys.path(), &list, "bob1"));
    assert!(revoked(keys.path(), &list, "bob2"));
    // ssh-keygen lists what was revoked.
    std::fs::write(keys.path().join("krl"), &list).unwrap();
    let (ok, text) = ssh_keygen(&["-Q", "-l", "-f", keys.path().join("krl").to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains(certs[1].1["key_id"].as_str().unwrap()),
        "{text}"
    );

    // The agent API serves the same KRL and the CA keys to the tenant's devices.
    let (address, credential) = enroll(&app, &root).await;
    let (status, agent_krl) = agent_get(&app, &address, &credential, "/api/agent/ssh/krl").await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked(keys.path(), &agent_krl, "a"));
    assert!(!revoked(keys.path(), &agent_krl, "c"));
    let (status, ca) = agent_get(&app, &address, &credential, "/api/agent/ssh/ca").await;
    assert_eq!(status, StatusCode::OK);
    let ca: Value = serde_json::from_slice(&ca).unwrap();
    assert_eq!(ca["tenant"], "default");
    assert!(ca["trusted_user_ca_keys"]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519 "));

    let audit = app
        .call("GET", "/api/audit?action=ssh.certificate.revoke")
        .token(&root)
        .send()
        .await
        .json();
    assert!(audit["items"].as_array().unwrap().len() >= 3, "{audit}");
}

async fn a_wiped_ca_fails_health_and_signing_until_restored(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    acme_with_root_principal(&app, &root).await;
    let keys = tempfile::tempdir().unwrap();
    let key = user_key(keys.path(), "k");
    let first = sign(&app, &root, "acme", json!({"public_key": key})).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(app.get("/healthz").await.json()["checks"]["ssh_ca"], "ok");

    // Wipe the CA directory's keys (a lost volume).
    let dir = ca_dir(&app);
    let saved = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with("ca_") {
            std::fs::copy(&path, saved.path().join(&name)).unwrap();
            std::fs::remove_file(&path).unwrap();
        }
    }
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let check = health.json()["checks"]["ssh_ca"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(check.starts_with("error: "), "{check}");
    assert!(
        check.contains("tenant acme") && check.contains("tenant default"),
        "{check}"
    );
    assert!(check.contains("is missing"), "{check}");
    let refused = sign(&app, &root, "acme", json!({"public_key": key})).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert!(refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("SSH certificate authority is unavailable"));

    // A restart does not make new keys in their place.
    let again = restart(&app).await;
    assert!(!dir.join("ca_acme_user").exists());
    assert!(!again.health.health().await.is_ok());

    // A different key under the right name is refused as well.
    std::fs::copy(
        saved.path().join("ca_default_user"),
        dir.join("ca_acme_user"),
    )
    .unwrap();
    let check = app.get("/healthz").await.json()["checks"]["ssh_ca"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        check.contains("tenant acme: user CA key") && check.contains("does not match"),
        "{check}"
    );
    assert_eq!(
        sign(&app, &root, "acme", json!({"public_key": key}))
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Restored: healthy again without a restart, and signing works under the same CA.
    for entry in std::fs::read_dir(saved.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    let signed = sign(&app, &root, "acme", json!({"public_key": key})).await;
    assert_eq!(signed.status, StatusCode::CREATED, "{}", signed.body);
    assert_eq!(
        signed.json()["ca_fingerprint"],
        first.json()["ca_fingerprint"]
    );
}

/// A request to the agent API with a device credential.
async fn agent_request(
    router: &axum::Router,
    credential: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {credential}"));
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    };
    common::send(router, request.unwrap()).await
}

async fn devices_get_host_certificates(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    let keys = tempfile::tempdir().unwrap();
    let host_key = user_key(keys.path(), "ssh_host_ed25519_key");
    let enrolled = enroll_with(&app, &root, Some(&host_key)).await;
    let cert = &enrolled["ssh_host_certificate"];
    assert_eq!(
        cert["principals"],
        json!(["web-01.default.watchgrid.internal", "100.64.0.2"])
    );
    let ca = ca_of(&app, &root, "default").await;
    let text = signed_by(keys.path(), "host", cert, &ca, "host");
    assert!(
        text.contains(
            "                web-01.default.watchgrid.internal\n                100.64.0.2\n"
        ),
        "{text}"
    );
    // The key id ends in the certificate's serial, chosen by the server, never in a request
    // id the agent could choose.
    let serial = cert["serial"].as_u64().expect("serial");
    assert!(
        text.contains(&format!("Key ID: \"device:web-01@default#{serial}\"")),
        "{text}"
    );
    // 30 days by default, five minutes' skew before.
    assert_eq!(validity_secs(cert), 30 * 24 * 3600 + 300);

    // A bad host key is refused at enrollment, naming the field.
    let bad = app
        .call("POST", "/api/agent/register")
        .json(json!({"token": "wgo_x", "hostname": "h", "os": "", "agent_version": "", "wg_public_key": fresh_wg_key(), "ssh_host_key": "ssh-ed25519 nope"}))
        .send()
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["error"]["fields"][0]["field"], "ssh_host_key");

    // Renewal through the agent API: a new serial, same names.
    let address = enrolled["overlay_address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let credential = enrolled["credential"].as_str().unwrap();
    let router = watchgrid_server::http::agent_router(app.state.clone()).layer(MockConnectInfo(
        SocketAddr::new(address.parse().unwrap(), 40000),
    ));
    let renew = || {
        agent_request(
            &router,
            credential,
            "POST",
            "/api/agent/ssh/host-certificate",
            Some(json!({"public_key": host_key})),
        )
    };
    let reply = renew().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let renewed = reply.json();
    assert_ne!(renewed["serial"], cert["serial"]);
    assert_eq!(renewed["principals"], cert["principals"]);
    listing(
        keys.path(),
        "renewed",
        renewed["certificate"].as_str().unwrap(),
    );
    let issued = app
        .call("GET", "/api/ssh/certificates")
        .token(&root)
        .send()
        .await
        .json();
    assert_eq!(issued[0]["kind"], "host");
    assert_eq!(issued[0]["subject"], "web-01");

    // The agent API tells the device which names its certificate must carry; after a rename
    // they change (the agent then renews), and a renewal carries the new name.
    let agent_ca = agent_request(&router, credential, "GET", "/api/agent/ssh/ca", None)
        .await
        .json();
    assert_eq!(agent_ca["host_principals"], cert["principals"]);
    let device_id = enrolled["device_id"].as_str().unwrap();
    let renamed = app
        .call("PATCH", format!("/api/devices/{device_id}"))
        .token(&root)
        .json(json!({"name": "db-01"}))
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let agent_ca = agent_request(&router, credential, "GET", "/api/agent/ssh/ca", None)
        .await
        .json();
    assert_eq!(
        agent_ca["host_principals"],
        json!(["db-01.default.watchgrid.internal", "100.64.0.2"])
    );
    let reply = renew().await;
    assert_eq!(reply.json()["principals"], agent_ca["host_principals"]);
    // Users' view of the CA carries no device's names.
    assert!(ca.get("host_principals").is_none(), "{ca}");
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains(r#"watchgrid_ssh_certificates_issued_total{kind="host"} 3"#),
        "{metrics}"
    );

    // The SSH relay: only for callers granted a principal, and only as an upgrade (the
    // upgrade itself runs end to end in crates/e2e/tests/ssh.rs).
    let relay = format!("/api/devices/{device_id}/ssh-relay");
    let refused = app.call("GET", relay.clone()).token(&root).send().await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    owners_may_be_root(&app, &root, "default").await;
    let plain = app.call("GET", relay).token(&root).send().await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST, "{}", plain.body);
    assert!(
        plain.body.contains("Upgrade: watchgrid-tcp"),
        "{}",
        plain.body
    );
}

async fn rotation_trusts_old_and_new_keys_until_the_grace_ends(backend: TestBackend) {
    use watchgrid_server::ssh::CaKind;
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    acme_with_root_principal(&app, &root).await;
    let keys = tempfile::tempdir().unwrap();
    let key = user_key(keys.path(), "k");
    let before = ca_of(&app, &root, "acme").await;
    let old = sign(&app, &root, "acme", json!({"public_key": key}))
        .await
        .json();
    listing(keys.path(), "old", old["certificate"].as_str().unwrap());

    let grace = std::time::Duration::from_secs(3);
    let rotated = app
        .state
        .ssh
        .rotate(&app.state.db, "acme", &CaKind::ALL, grace)
        .await
        .unwrap();
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[0].generation, 2);
    assert_eq!(
        rotated[0].previous,
        [before["user"][0]["fingerprint"].as_str().unwrap()]
    );
    let dir = ca_dir(&app);
    for kind in ["user", "host"] {
        let file = dir.join(format!("ca_acme_{kind}_g2"));
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // During the grace period: both keys trusted, the new one signs.
    let during = ca_of(&app, &root, "acme").await;
    for kind in ["user", "host"] {
        let list = during[kind].as_array().unwrap();
        assert_eq!(list.len(), 2, "{during}");
        assert_eq!(list[0]["state"], "retiring");
        assert!(list[0]["retire_at"].is_string());
        assert_eq!(list[1]["state"], "active");
        assert_eq!(list[1]["generation"], 2);
        assert_eq!(list[0]["fingerprint"], before[kind][0]["fingerprint"]);
    }
    assert_eq!(
        during["trusted_user_ca_keys"]
            .as_str()
            .unwrap()
            .lines()
            .count(),
        2
    );
    assert_eq!(during["known_hosts"].as_str().unwrap().lines().count(), 2);
    let new = sign(&app, &root, "acme", json!({"public_key": key}))
        .await
        .json();
    let text = listing(keys.path(), "new", new["certificate"].as_str().unwrap());
    assert_eq!(new["ca_fingerprint"], during["user"][1]["fingerprint"]);
    assert!(
        text.contains(during["user"][1]["fingerprint"].as_str().unwrap()),
        "{text}"
    );
    assert_eq!(app.get("/healthz").await.json()["checks"]["ssh_ca"], "ok");

    // A certificate of the old CA can still be revoked: the KRL names it under the old key.
    let revoked_reply = app
        .call("POST", "/api/ssh/revocations")
        .token(&root)
        .tenant("acme")
        .json(json!({"serial": old["serial"]}))
        .send()
        .await;
    assert_eq!(revoked_reply.status, StatusCode::OK);
    let krl = bytes(
        app.router.clone(),
        Request::get("/api/ssh/krl")
            .header("authorization", format!("Bearer {root}"))
            .header("x-watchgrid-tenant", "acme")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(revoked(keys.path(), &krl, "old"));
    assert!(!revoked(keys.path(), &krl, "new"));

    // After the grace period only the new keys are trusted anywhere.
    tokio::time::sleep(grace + std::time::Duration::from_millis(500)).await;
    let after = ca_of(&app, &root, "acme").await;
    for kind in ["user", "host"] {
        assert_eq!(after[kind].as_array().unwrap().len(), 1, "{after}");
        assert_eq!(
            after[kind][0]["fingerprint"],
            during[kind][1]["fingerprint"]
        );
    }
    assert_eq!(
        after["trusted_user_ca_keys"]
            .as_str()
            .unwrap()
            .lines()
            .count(),
        1
    );
    let audit = app
        .call("GET", "/api/audit?action=ssh.ca.rotate&scope=all")
        .token(&root)
        .send()
        .await
        .json();
    assert_eq!(audit["items"][0]["tenant"], "acme", "{audit}");
}

/// Many signings at once: none fails (SQLite's single writer included) and every serial is
/// distinct and consecutive.
async fn concurrent_signings_all_succeed_with_distinct_serials(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    owners_may_be_root(&app, &root, "default").await;
    let keys = tempfile::tempdir().unwrap();
    let key = user_key(keys.path(), "k");
    let replies =
        futures_join_all((0..24).map(|_| sign(&app, &root, "default", json!({"public_key": key}))))
            .await;
    let mut serials: Vec<u64> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            r.json()["serial"].as_u64().unwrap()
        })
        .collect();
    serials.sort_unstable();
    assert_eq!(serials, (1..=24).collect::<Vec<u64>>());
}

/// Await every future, concurrently, in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut out = Vec::with_capacity(set.len());
    // Poll them together: each `sign` is a oneshot through the router, so they overlap in the
    // database even on one runtime thread.
    let joined = async {
        let mut results: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (i, f) in set.iter_mut().enumerate() {
                if results[i].is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => results[i] = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        results
    };
    for r in joined.await {
        out.extend(r);
    }
    out
}

/// Two replicas on one PostgreSQL database sign for the same tenant at once: each takes its
/// serials from blocks it reserved, so none is issued twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sign_with_distinct_serials() {
    let app = TestApp::with_config(TestBackend::Postgres, NO_WG).await;
    let other_state = common::state_for(&app.db, NO_WG).await;
    assert!(watchgrid_server::serve::prepare_database(&other_state).await);
    let other = common::app_router(other_state);
    let root = app.admin_token().await;
    owners_may_be_root(&app, &root, "default").await;
    let keys = tempfile::tempdir().unwrap();
    let key = user_key(keys.path(), "k");
    let via_other = |n: usize| {
        let request = Request::post("/api/ssh/certificates")
            .header("authorization", format!("Bearer {root}"))
            .header("x-watchgrid-tenant", "default")
            .header("content-type", "application/json")
            .header("x-request-id", format!("other-{n}"))
            .body(Body::from(json!({"public_key": key}).to_string()))
            .unwrap();
        common::send(&other, request)
    };
    let mut replies =
        futures_join_all((0..20).map(|_| sign(&app, &root, "default", json!({"public_key": key}))))
            .await;
    replies.extend(futures_join_all((0..20).map(via_other)).await);
    replies.extend(
        futures_join_all((0..20).map(|_| sign(&app, &root, "default", json!({"public_key": key}))))
            .await,
    );
    let mut serials: Vec<u64> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            r.json()["serial"].as_u64().unwrap()
        })
        .collect();
    serials.sort_unstable();
    let before = serials.len();
    serials.dedup();
    assert_eq!(
        serials.len(),
        before,
        "a serial was issued twice: {serials:?}"
    );
}

/// Removing a user from the tenant revokes their certificates there in the same request (the
/// KRL the tenant's devices fetch lists them), and a deleted account's certificates stay
/// listed and revocable by user.
async fn removing_a_user_revokes_their_certificates(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    let keys = tempfile::tempdir().unwrap();
    let key = user_key(keys.path(), "k");
    let created = app
        .call("POST", "/api/users")
        .token(&root)
        .json(json!({"username": "bob", "password": "Bob-Pass-word-1", "role": "operator"}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let bob_id = created.json()["id"].as_str().unwrap().to_owned();
    let granted = grant(
        &app,
        &root,
        "default",
        json!({"user_id": bob_id, "principals": ["bob"]}),
    )
    .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    let bob = app.login("bob", "Bob-Pass-word-1").await;
    let bob_token = bob["access_token"].as_str().unwrap().to_owned();
    for name in ["bob1", "bob2"] {
        let signed = sign(&app, &bob_token, "default", json!({"public_key": key})).await;
        assert_eq!(signed.status, StatusCode::CREATED, "{}", signed.body);
        listing(
            keys.path(),
            name,
            signed.json()["certificate"].as_str().unwrap(),
        );
    }
    let (address, credential) = enroll(&app, &root).await;
    let (status, before) = agent_get(&app, &address, &credential, "/api/agent/ssh/krl").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!revoked(keys.path(), &before, "bob1"));

    // Bob's only membership: the account is deleted with it.
    let removed = app
        .call("DELETE", format!("/api/users/{bob_id}"))
        .token(&root)
        .send()
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let (status, after) = agent_get(&app, &address, &credential, "/api/agent/ssh/krl").await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked(keys.path(), &after, "bob1"));
    assert!(revoked(keys.path(), &after, "bob2"));

    // Still listed under the deleted user, revoked; and still revocable by user.
    let listed = app
        .call("GET", format!("/api/ssh/certificates?user_id={bob_id}"))
        .token(&root)
        .send()
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let listed = listed.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.iter().all(|c| c["revoked_at"].is_string()),
        "{listed:?}"
    );
    let again = app
        .call("POST", "/api/ssh/revocations")
        .token(&root)
        .json(json!({"user_id": bob_id, "reason": "left"}))
        .send()
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.json()["revoked_certificates"], 0);
    // A user the tenant never knew is still not found.
    let unknown = app
        .call("POST", "/api/ssh/revocations")
        .token(&root)
        .json(json!({"user_id": uuid::Uuid::new_v4().to_string()}))
        .send()
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    // Their own grant went with the membership.
    let grants = app
        .call("GET", "/api/ssh/principals")
        .token(&root)
        .send()
        .await
        .json();
    assert!(
        !grants.to_string().contains(&bob_id),
        "the removed user's grant is left: {grants}"
    );
}

/// Deleting a device revokes its host certificates: the tenant's KRL (what `watchgrid ssh`
/// and the `ssh-config` block give ssh as `RevokedHostKeys`) lists them, and so does the
/// certificate list.
async fn deleting_a_device_revokes_its_host_certificates(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    let keys = tempfile::tempdir().unwrap();
    let host_key = user_key(keys.path(), "ssh_host_ed25519_key");
    let enrolled = enroll_with(&app, &root, Some(&host_key)).await;
    listing(
        keys.path(),
        "host",
        enrolled["ssh_host_certificate"]["certificate"]
            .as_str()
            .unwrap(),
    );
    let krl = async || {
        bytes(
            app.router.clone(),
            Request::get("/api/ssh/krl")
                .header("authorization", format!("Bearer {root}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    };
    assert!(!revoked(keys.path(), &krl().await, "host"));

    let device_id = enrolled["device_id"].as_str().unwrap();
    let deleted = app
        .call("DELETE", format!("/api/devices/{device_id}"))
        .token(&root)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert!(revoked(keys.path(), &krl().await, "host"));
    let serial = enrolled["ssh_host_certificate"]["serial"].clone();
    let listed = app
        .call("GET", "/api/ssh/certificates")
        .token(&root)
        .send()
        .await
        .json();
    let host = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["serial"] == serial)
        .unwrap_or_else(|| panic!("serial {serial} listed: {listed}"));
    assert!(host["revoked_at"].is_string(), "{host}");
    let audit = app
        .call("GET", "/api/audit?action=device.delete")
        .token(&root)
        .send()
        .await
        .json();
    assert_eq!(
        audit["items"][0]["details"]["revoked_host_certificates"], 1,
        "{audit}"
    );
}

/// On a fresh install nobody is granted a principal: the first signing refusal says exactly
/// which command grants one.
async fn the_first_refusal_names_the_grant_command(backend: TestBackend) {
    let app = TestApp::with_config(backend, NO_WG).await;
    let root = app.admin_token().await;
    let keys = tempfile::tempdir().unwrap();
    let key = user_key(keys.path(), "k");
    let refused = sign(
        &app,
        &root,
        "default",
        json!({"public_key": key, "principals": ["root"]}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = refused.json();
    assert_eq!(body["error"]["fields"][0]["field"], "principals", "{body}");
    assert!(
        body.to_string()
            .contains("watchgrid --tenant default ssh-grants add --user admin root"),
        "{body}"
    );
    let refused = sign(&app, &root, "default", json!({"public_key": key})).await;
    assert!(
        refused
            .body
            .contains("ssh-grants add --user admin <account>"),
        "{}",
        refused.body
    );
}

/// A PostgreSQL outage under the running server is the `db` check's failure only: `ssh_ca`
/// keeps checking the key files (against the records it read last) and stays `ok`, and still
/// reports a missing key file of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_not_an_ssh_ca_failure() {
    let cluster = watchgrid_testkit::PgCluster::temporary().unwrap();
    cluster.start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url("postgres");
    let ca_dir = dir.path().join("ssh-ca");
    let server = common::ServerProcess::spawn(
        dir.path(),
        &[
            ("DATABASE_URL", &url),
            ("WATCHGRID_SSH_CA_DIR", ca_dir.to_str().unwrap()),
        ],
    );
    let ready = |status: u16, body: &Value| status == 200 && body["status"] == "ok";
    let up = server
        .wait_for("/readyz", std::time::Duration::from_secs(30), ready)
        .await;
    assert_eq!(up["checks"]["ssh_ca"], "ok", "{up}");

    cluster.stop().unwrap();
    let down = server
        .wait_for(
            "/healthz",
            std::time::Duration::from_secs(10),
            |status, _| status == 503,
        )
        .await;
    assert!(
        down["checks"]["db"]
            .as_str()
            .unwrap()
            .starts_with("error: "),
        "{down}"
    );
    // Several probes, so that one made while the pool still waits for the database is seen.
    for _ in 0..3 {
        let (status, body) = server.get("/healthz").await.unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["checks"]["ssh_ca"], "ok", "{body}\n{}", server.logs());
    }
    // The CA's own problem is still its own.
    let key = ca_dir.join("ca_default_host");
    let moved = dir.path().join("ca_default_host.away");
    std::fs::rename(&key, &moved).unwrap();
    let (_, body) = server.get("/healthz").await.unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    let ssh_ca = body["checks"]["ssh_ca"].as_str().unwrap();
    assert!(
        ssh_ca.contains("host CA key") && ssh_ca.contains("is missing"),
        "{body}"
    );
    std::fs::rename(&moved, &key).unwrap();

    cluster.start().unwrap();
    let recovered = server
        .wait_for("/healthz", std::time::Duration::from_secs(20), ready)
        .await;
    assert_eq!(recovered["checks"]["ssh_ca"], "ok");
}
