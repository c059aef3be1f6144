//! `version`: this client's version, then the server's `/api/version`.

use serde_json::json;

use super::Ctx;
use crate::error::CliError;
use crate::output;

const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn run(ctx: &Ctx) -> Result<(), CliError> {
    if !ctx.json {
        // Shown even when the server cannot be asked.
        output::line(&format!("client  watchgrid {CLIENT_VERSION}"))?;
    }
    let client = ctx.anonymous_client()?;
    let server = client.version().await?;
    if ctx.json {
        return output::json(&json!({ "client": CLIENT_VERSION, "server": server }));
    }
    output::line(&output::escape(&format!(
        "server  watchgrid-server {} (commit {}, built {}, database {}) at {}",
        server.version,
        server.commit,
        server.built,
        server.database,
        client.server()
    )))
}
