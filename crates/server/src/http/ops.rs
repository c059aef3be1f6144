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
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Every check passes", body = HealthReport), (status = 503, description = "A check failed; its value names the problem", body = HealthReport)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    health_response(state.health.health().await)
}

/// Readiness: `/healthz` plus `"migrations"`; 503 while migrations are pending.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready: checks pass and migrations are done", body = HealthReport), (status = 503, description = "Not ready (migrations pending or failed, or a check failed)", body = HealthReport)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    health_response(state.health.readiness(&state.migrations).await)
}

/// The running release.
#[utoipa::path(get, path = "/api/version", tag = "operations", responses((status = 200, body = VersionInfo)))]
pub async fn version(State(state): State<AppState>) -> Json<VersionInfo> {
    Json(crate::version_info(state.db.backend()))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus/OpenMetrics text exposition", content_type = "application/openmetrics-text")))]
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
