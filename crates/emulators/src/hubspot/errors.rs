//! HubSpot error bodies (saas-apis.md §2.4, §2.5): `{status:"error", message,
//! correlationId, category, errors?, context?}`; 429 bodies carry `policyName`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::handle::Shared;

/// Message of the 401 for a missing or unknown token.
pub const AUTH_NOT_FOUND_MESSAGE: &str = "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview";

/// Builds an error response; `extra` fields (errors, context, policyName…) are merged in.
pub(crate) fn error(
    shared: &Shared,
    status: StatusCode,
    category: &str,
    message: impl Into<String>,
    extra: Map<String, Value>,
) -> Response {
    let mut body = Map::new();
    body.insert("status".to_owned(), json!("error"));
    body.insert("message".to_owned(), Value::String(message.into()));
    body.insert(
        "correlationId".to_owned(),
        Value::String(shared.random_uuid()),
    );
    body.insert("category".to_owned(), Value::String(category.to_owned()));
    body.extend(extra);
    (status, Json(Value::Object(body))).into_response()
}

/// 400 VALIDATION_ERROR with no extra fields.
pub(crate) fn validation(shared: &Shared, message: impl Into<String>) -> Response {
    error(
        shared,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        message,
        Map::new(),
    )
}

/// 400 for a body that is not JSON, in HubSpot's wording.
pub(crate) fn invalid_json(shared: &Shared, err: &serde_json::Error) -> Response {
    validation(
        shared,
        format!(
            "Invalid input JSON on line {}, column {}: {err}",
            err.line(),
            err.column()
        ),
    )
}

/// 401 for a missing or unknown token.
pub(crate) fn unauthenticated(shared: &Shared) -> Response {
    error(
        shared,
        StatusCode::UNAUTHORIZED,
        "INVALID_AUTHENTICATION",
        AUTH_NOT_FOUND_MESSAGE,
        Map::new(),
    )
}

/// 401 for a token that was valid once.
pub(crate) fn expired(shared: &Shared, ago_secs: u64) -> Response {
    error(
        shared,
        StatusCode::UNAUTHORIZED,
        "EXPIRED_AUTHENTICATION",
        format!("The OAuth token used to make this call expired {ago_secs} second(s) ago."),
        Map::new(),
    )
}

/// Which limit a 429 reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    TenSecondlyRolling,
    Daily,
}

/// 429 with the `policyName` body (§2.5), plus `Retry-After` in seconds.
pub(crate) fn rate_limited(shared: &Shared, policy: Policy, retry_after_secs: u64) -> Response {
    let (message, name) = match policy {
        Policy::TenSecondlyRolling => (
            "You have reached your ten_secondly_rolling limit.",
            "TEN_SECONDLY_ROLLING",
        ),
        Policy::Daily => ("You have reached your daily limit.", "DAILY"),
    };
    let body = json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": shared.random_uuid(),
        "policyName": name,
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after_secs.max(1).to_string()) {
        response.headers_mut().insert("Retry-After", value);
    }
    response
}

/// The body of an injected 500/503.
pub(crate) fn injected_server_error(shared: &Shared, status: u16) -> Response {
    let (code, message) = if status == 503 {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    };
    error(shared, code, "INTERNAL_ERROR", message, Map::new())
}
