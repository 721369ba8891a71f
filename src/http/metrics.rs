//! The metrics listener's router: the Prometheus text exposition at `/metrics`, a plain 404
//! everywhere else.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

/// The router of the metrics listener.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState>>| async move {
                (
                    [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    state.metrics.render(),
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: metrics are at /metrics\n",
            )
                .into_response()
        })
        .with_state(state)
}
