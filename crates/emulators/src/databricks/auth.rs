//! Who is calling: a personal access token, or an OAuth M2M access token from
//! `POST /oidc/v1/token` (client credentials, scope `all-apis`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::handle::Shared;

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
}

/// Accepts a known personal access token or an unexpired M2M token.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthenticated("No access token: send `Authorization: Bearer <token>`."))?;
    if shared
        .databricks
        .settings
        .lock()
        .tokens
        .iter()
        .any(|t| t == token)
    {
        return Ok(());
    }
    match shared.databricks.issued.lock().get(token) {
        Some(expires) if *expires > Instant::now() => Ok(()),
        Some(_) => Err(unauthenticated(
            "Invalid access token: the OAuth token has expired.",
        )),
        None => Err(unauthenticated("Invalid access token.")),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    grant_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `client_id:client_secret` from HTTP Basic auth.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `POST /oidc/v1/token`: the client-credentials grant.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    let credentials = basic_credentials(&headers)
        .or_else(|| form.client_id.clone().zip(form.client_secret.clone()));
    let settings = shared.databricks.settings.lock().clone();
    let known = credentials.is_some_and(|(id, secret)| {
        settings
            .oauth_clients
            .iter()
            .any(|c| c.client_id == id && c.client_secret == secret)
    });
    if !known {
        shared.record_unauthorized();
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let scope = form.scope.unwrap_or_else(|| "all-apis".into());
    if !scope.split_whitespace().any(|s| s == "all-apis") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the emulator grants only the scope all-apis",
        );
    }
    let access_token = format!("eyJemulated.{}", shared.random_alnum(40));
    shared.databricks.issued.lock().insert(
        access_token.clone(),
        Instant::now() + settings.oauth_token_lifetime,
    );
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": settings.oauth_token_lifetime.as_secs(),
        "scope": scope,
    }))
    .into_response()
}

/// `GET /oidc/.well-known/oauth-authorization-server`.
pub(crate) async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let base = &shared.base_url;
    Json(json!({
        "issuer": format!("{base}/oidc"),
        "authorization_endpoint": format!("{base}/oidc/v1/authorize"),
        "token_endpoint": format!("{base}/oidc/v1/token"),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["all-apis"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
    .into_response()
}

/// The workspace id the emulator reports.
pub const WORKSPACE_ID: &str = "1234567890123456";

/// `GET /.well-known/databricks-config`: the host metadata databricks-sdk
/// reads to find the OIDC discovery document (`{oidc_endpoint}/.well-known/
/// oauth-authorization-server`).
pub(crate) async fn host_metadata(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({
        "oidc_endpoint": format!("{}/oidc", shared.base_url),
        "workspace_id": WORKSPACE_ID,
    }))
    .into_response()
}
