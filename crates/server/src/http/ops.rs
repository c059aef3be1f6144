//! Operational endpoints: `/healthz`, `/readyz`, `/api/version`, `/metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use watchgrid_wire::{HealthReport, VersionInfo};

use crate::state::AppState;

fn health_response(report: HealthReport) -> impl IntoResponse {
    let status = if report.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(report))
}

/// Liveness: 200 when every registered check passes, else 503 naming the failing check.
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    health_response(state.health.health().await)
}

/// Readiness: `/healthz` plus `"migrations"`; 503 while migrations are pending.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    health_response(state.health.readiness(&state.migrations).await)
}

/// The running release.
pub async fn version(State(state): State<AppState>) -> Json<VersionInfo> {
    Json(crate::version_info(state.db.backend()))
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(state.db.pool_stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
