//! The baseline: a bare axum server with one handler that reads the same JSON body as the
//! heartbeat handler and answers `{"ok":true}` — no middleware, no authentication, no state.
//! It runs in a child process (`watchgrid-bench bare-server`) on the same tokio defaults as the
//! real server, so both are loaded and measured the same way.

use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The baseline's route.
pub const PATH: &str = "/hb";
/// What its answer contains.
pub const EXPECT: &[u8] = br#""ok":true"#;

/// The heartbeat body's shape (as `watchgrid_wire::Heartbeat`).
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // reason: parsed like the real handler does; the values are not used
struct Beat {
    agent_version: String,
    uptime_secs: u64,
    hostname: String,
    os: String,
    #[serde(default)]
    kernel: Option<String>,
}

async fn heartbeat(Json(_beat): Json<Beat>) -> Json<Value> {
    Json(json!({"ok": true}))
}

/// Serve the baseline on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let app = Router::new().route(PATH, post(heartbeat));
    axum::serve(listener, app).await
}
