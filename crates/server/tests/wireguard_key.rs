//! The server's WireGuard key, with the real binary: created on a first start without devices;
//! never replaced once devices pin it (the `wireguard` check names the missing file and the
//! restore procedure, and nothing hands out a new key); a restored file is used again; and
//! `watchgrid-server wireguard rekey` replaces it only when confirmed, audited.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::ServerProcess;
use watchgrid_testkit::{backend_tests, TestBackend, TestDatabase};
use watchgrid_wireguard::config::WgQuickConfig;

const STARTUP: Duration = Duration::from_secs(60);

backend_tests!(a_lost_wireguard_key_is_never_replaced_while_devices_pin_it);

fn file_key(path: &Path) -> String {
    WgQuickConfig::load(path)
        .unwrap()
        .interface
        .private_key
        .public_key()
        .to_string()
}

/// `watchgrid-server wireguard rekey [extra]` with the server's environment.
fn rekey(envs: &[(&str, &str)], extra: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(common::server_binary());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["wireguard", "rekey"])
        .args(extra);
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().unwrap()
}

async fn server_key(server: &ServerProcess) -> (u16, serde_json::Value) {
    let (status, body) = server.get("/api/agent/server-info").await.unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

/// One API request; the status and the JSON body.
async fn send(
    server: &ServerProcess,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = server
        .client
        .request(method, format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn admin_token(server: &ServerProcess) -> String {
    let body = serde_json::json!({"username": "admin", "password": common::ADMIN_PASSWORD});
    let (status, login) = send(
        server,
        reqwest::Method::POST,
        "/api/auth/login",
        None,
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    login["access_token"].as_str().unwrap().to_owned()
}

async fn create_plain(server: &ServerProcess, token: &str, name: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "name": name });
    send(
        server,
        reqwest::Method::POST,
        "/api/devices",
        Some(token),
        Some(body),
    )
    .await
}

async fn a_lost_wireguard_key_is_never_replaced_while_devices_pin_it(backend: TestBackend) {
    let db = TestDatabase::migrated(backend, &watchgrid_store::migrations::TEST_SCHEMA).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("wireguard").join("wg0.conf");
    let envs = [
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_PASSWORD", common::ADMIN_PASSWORD),
        ("WATCHGRID_DATA_DIR", data.to_str().unwrap()),
        ("WATCHGRID_WG_CONFIG", key_file.to_str().unwrap()),
        ("WATCHGRID_WG_BACKEND", "none"),
        ("WATCHGRID_DNS_LISTEN", "off"),
    ];
    let ready = |status: u16, body: &serde_json::Value| status == 200 && body["status"] == "ok";

    // First start, no device: the key is created (0600) and served.
    let mut server = ServerProcess::spawn(dir.path(), &envs);
    server.wait_for("/readyz", STARTUP, ready).await;
    server.wait_for("/healthz", STARTUP, ready).await;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is private, is {mode:o}");
    }
    let first_key = file_key(&key_file);
    let (status, info) = server_key(&server).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["server_public_key"], first_key.as_str());
    assert!(server.logs().contains("created the server's WireGuard key"));

    // A device pins it.
    let admin = admin_token(&server).await;
    let (status, plain) = create_plain(&server, &admin, "phone").await;
    assert_eq!(status, 201, "{plain}");
    assert!(server.terminate().await.success());

    // The key file is lost: the server does not replace it. The check names the file, the
    // variable and the way out; nothing hands out a key.
    let backup = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &envs);
    // Migrated, but neither ready nor healthy.
    server
        .wait_for("/readyz", STARTUP, |_, body| body["migrations"] == "ok")
        .await;
    let health = server
        .wait_for("/healthz", STARTUP, |_, body| {
            body["checks"]["wireguard"]
                .as_str()
                .is_some_and(|c| c.starts_with("error"))
        })
        .await;
    assert_ne!(health["status"], "ok", "{health}");
    let check = health["checks"]["wireguard"].as_str().unwrap();
    for part in [
        key_file.to_str().unwrap(),
        "WATCHGRID_WG_CONFIG",
        "restore",
        "watchgrid-server wireguard rekey",
        "1 enrolled device",
    ] {
        assert!(check.contains(part), "{part:?} missing from: {check}");
    }
    assert!(!key_file.exists(), "no new key file was written");
    let (status, refused) = server_key(&server).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{refused}"
    );
    let admin = admin_token(&server).await;
    let (status, plain) = create_plain(&server, &admin, "tablet").await;
    assert_eq!(status, 503, "no device may pin a stranger's key: {plain}");
    assert!(server.logs().contains("A new key is never generated"));
    assert!(server.terminate().await.success());

    // The restore procedure: put the file back and start again.
    std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
    std::fs::write(&key_file, &backup).unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &envs);
    server.wait_for("/healthz", STARTUP, ready).await;
    assert_eq!(
        server_key(&server).await.1["server_public_key"],
        first_key.as_str()
    );
    assert!(server.terminate().await.success());

    // A deliberate re-key: refused without --yes while devices are enrolled, then done.
    let refused = rekey(&envs, &[]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--yes") && stderr.contains("restore"),
        "{stderr}"
    );
    assert_eq!(file_key(&key_file), first_key, "the key is unchanged");
    let done = rekey(&envs, &["--yes"]);
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let new_key = file_key(&key_file);
    assert_ne!(new_key, first_key);
    for part in [new_key.as_str(), first_key.as_str(), "re-enroll", "--force"] {
        assert!(stdout.contains(part), "{part:?} missing from: {stdout}");
    }

    let server = ServerProcess::spawn(dir.path(), &envs);
    server.wait_for("/healthz", STARTUP, ready).await;
    assert_eq!(
        server_key(&server).await.1["server_public_key"],
        new_key.as_str()
    );
    let admin = admin_token(&server).await;
    let (status, audit) = send(
        &server,
        reqwest::Method::GET,
        "/api/audit?action=wireguard.rekey&scope=all",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let rows = audit["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{audit}");
    assert_eq!(rows[0]["resource_id"], new_key.as_str());
    assert_eq!(rows[0]["admin_user"], "watchgrid-server wireguard rekey");
}
