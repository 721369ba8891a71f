//! The JSON error answers of the public listener: `{"error": "<code>"}`, never cached, with
//! `Retry-After` when trying again later can help.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(crate) fn json_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": error })),
    )
        .into_response()
}

pub(crate) fn retry_later(status: StatusCode, error: &str, retry_after: &'static str) -> Response {
    let mut response = json_error(status, error);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    response
}
