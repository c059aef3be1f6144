//! Fixtures for the server's integration tests: an in-process app on a fresh database, and the
//! real `watchgrid-server` binary as a child process with its log captured.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the fixtures"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use watchgrid_server::config::{Config, MapSource, SecretGeneration};
use watchgrid_server::serve::prepare_database;
use watchgrid_server::state::AppState;
use watchgrid_store::migrations::TEST_SCHEMA;
use watchgrid_store::Database;
use watchgrid_testkit::wait::wait_for_or;
use watchgrid_testkit::{TestBackend, TestDatabase};

/// A migrated, in-process application on its own database.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub db: TestDatabase,
}

impl TestApp {
    pub async fn new(backend: TestBackend) -> Self {
        Self::with_config(backend, &[]).await
    }

    /// A migrated app whose configuration adds `pairs`; the bootstrap administrator is
    /// `admin` with [`ADMIN_PASSWORD`].
    pub async fn with_config(backend: TestBackend, pairs: &[(&str, &str)]) -> Self {
        Self::build(backend, ADMIN_PASSWORD, pairs).await
    }

    /// A migrated app whose bootstrap administrator has `password` (which may be weak).
    pub async fn with_admin_password(backend: TestBackend, password: &str) -> Self {
        Self::build(backend, password, &[]).await
    }

    async fn build(backend: TestBackend, password: &str, pairs: &[(&str, &str)]) -> Self {
        let db = TestDatabase::migrated(backend, &TEST_SCHEMA).await;
        let mut all = vec![("ADMIN_PASSWORD", password)];
        all.extend_from_slice(pairs);
        let state = state_for(&db, &all).await;
        assert!(prepare_database(&state).await);
        Self {
            router: app_router(state.clone()),
            state,
            db,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        send(&self.router, request).await
    }
}

/// Application state on `db` with extra configuration `pairs` (not migrated).
pub async fn state_for(db: &TestDatabase, pairs: &[(&str, &str)]) -> AppState {
    let data_dir = db.scratch().join("data");
    // In process there is no WireGuard interface; the namespace tests run the real one.
    let mut all = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("WATCHGRID_DATA_DIR", data_dir.to_str().unwrap()),
        ("WATCHGRID_WG_BACKEND", "none"),
    ];
    all.extend_from_slice(pairs);
    let config = Config::load(&MapSource::new(all), SecretGeneration::Generate).expect("config");
    let database = Database::connect(&config.database, 5)
        .await
        .expect("connect");
    AppState::new(Arc::new(config), database).expect("state")
}

/// The bootstrap administrator's password in test apps (it meets the policy).
pub const ADMIN_PASSWORD: &str = "Bootstrap-Admin-9";

/// The address in-process requests appear to come from.
pub const TEST_CLIENT: ([u8; 4], u16) = ([192, 0, 2, 10], 40000);

/// The application router as `serve` builds it, with a fixed client address for requests
/// that do not go through a socket.
pub fn app_router(state: AppState) -> Router {
    watchgrid_server::http::router(state).layer(axum::extract::connect_info::MockConnectInfo(
        std::net::SocketAddr::from(TEST_CLIENT),
    ))
}

/// A response, its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The real `watchgrid-server` binary, killed when dropped.
pub struct ServerProcess {
    child: Option<tokio::process::Child>,
    pub base: String,
    pub log_path: PathBuf,
    pub client: reqwest::Client,
}

pub fn server_binary() -> &'static str {
    env!("CARGO_BIN_EXE_watchgrid-server")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    /// Start `watchgrid-server serve` in `dir` with a clean environment plus `envs`; listens on
    /// a free loopback port. Does not wait for readiness.
    pub fn spawn(dir: &Path, envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log_path = dir.join(format!("server-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = tokio::process::Command::new(server_binary());
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WATCHGRID_LISTEN", &listen)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn watchgrid-server");
        Self {
            child: Some(child),
            base: format!("http://{listen}"),
            log_path,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET a path; `None` while the server does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// Poll `path` until `accept(status, body)` holds, or panic with the server log after
    /// `timeout`.
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        accept: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let last = std::sync::Mutex::new(None);
        wait_for_or(
            &format!("{path} to reach the expected state"),
            timeout,
            || async {
                let (status, body) = self.get(path).await?;
                let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                if accept(status, &json) {
                    return Some(json);
                }
                *last.lock().unwrap() = Some((status, body));
                None
            },
            || {
                format!(
                    "last answer {:?}\n--- server log ---\n{}",
                    last.lock().unwrap(),
                    self.logs()
                )
            },
        )
        .await
    }

    /// Send SIGTERM and wait for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(40), child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap()
    }

    /// Wait for the process to exit by itself.
    pub async fn exit_status(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::time::timeout(timeout, child.wait())
            .await
            .expect("process exits")
            .unwrap()
    }
}

/// A request builder for the API: method, path, optional bearer token, tenant and JSON body.
pub struct Call<'a> {
    app: &'a TestApp,
    method: &'static str,
    uri: String,
    token: Option<String>,
    tenant: Option<String>,
    body: Option<serde_json::Value>,
}

impl TestApp {
    pub fn call(&self, method: &'static str, uri: impl Into<String>) -> Call<'_> {
        Call {
            app: self,
            method,
            uri: uri.into(),
            token: None,
            tenant: None,
            body: None,
        }
    }

    /// Log in and return the access token (panics on failure).
    pub async fn login(&self, username: &str, password: &str) -> serde_json::Value {
        let reply = self
            .call("POST", "/api/auth/login")
            .json(serde_json::json!({"username": username, "password": password}))
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "login {username}: {}",
            reply.body
        );
        reply.json()
    }

    pub async fn admin_token(&self) -> String {
        self.admin_token_with(ADMIN_PASSWORD).await
    }

    pub async fn admin_token_with(&self, password: &str) -> String {
        self.login("admin", password).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Call<'_> {
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    pub fn tenant(mut self, slug: &str) -> Self {
        self.tenant = Some(slug.to_owned());
        self
    }

    pub fn json(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    pub async fn send(self) -> Reply {
        let mut builder = Request::builder().method(self.method).uri(&self.uri);
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if let Some(tenant) = &self.tenant {
            builder = builder.header("x-watchgrid-tenant", tenant);
        }
        let request = match self.body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        };
        self.app.send(request).await
    }
}
