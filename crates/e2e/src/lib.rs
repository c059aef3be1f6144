//! Fixtures for end-to-end tests: the built programs, a server in a network namespace with a
//! link from the test's own namespace, and a blocking API client.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub mod fleet;

/// A program built by `cargo build --workspace` (which `scripts/test.sh` runs first), found
/// next to the test executable's `deps` directory.
pub fn program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// Fail clearly when a system tool the test needs is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is missing: apt-get install {package} (scripts/test.sh does this)"
    );
}

/// A JSON client for the server's API.
#[derive(Debug)]
pub struct Api {
    pub base: String,
    client: reqwest::blocking::Client,
    token: Option<String>,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            token: None,
        }
    }

    /// Log in and keep the access token for later calls.
    pub fn login(&mut self, username: &str, password: &str) -> Result<()> {
        let (status, body) = self.call(
            "POST",
            "/api/auth/login",
            Some(serde_json::json!({"username": username, "password": password})),
        )?;
        if status != 200 {
            bail!("login failed: {status} {body}");
        }
        self.token = body["access_token"].as_str().map(str::to_owned);
        Ok(())
    }

    /// One request; the status and the JSON body (`Null` when the body is not JSON).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        self.request(None, method, path, body)
    }

    /// [`Api::call`] in tenant `tenant` (the `X-Watchgrid-Tenant` header).
    pub fn call_in(
        &self,
        tenant: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        self.request(Some(tenant), method, path, body)
    }

    fn request(
        &self,
        tenant: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let method: reqwest::Method = method.parse().context("method")?;
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(tenant) = tenant {
            request = request.header("X-Watchgrid-Tenant", tenant);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send()?;
        let status = response.status().as_u16();
        let text = response.text()?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Raw text of a GET (for `/metrics`).
    pub fn text(&self, path: &str) -> Result<String> {
        Ok(self
            .client
            .get(format!("{}{path}", self.base))
            .send()?
            .text()?)
    }
}

/// Polling with a deadline: testkit's, for the synchronous tests here.
pub use watchgrid_testkit::wait::blocking::{wait_for, wait_for_or};
