//! Logins: `POST /services/oauth2/token` (client-credentials, with the client
//! in the form or in HTTP Basic authentication; username-password; JWT bearer)
//! and the SOAP partner `login` call at `POST /services/Soap/u/{version}`
//! (see [`soap_login`]), which is how simple-salesforce logs in with a
//! username, password and security token.
//!
//! The JWT-bearer grant checks the assertion's structure, that its payload `iss` is
//! a known client id and that `exp` (if present) is in the future. The signature is
//! NOT verified: the emulator has no certificate to check it against, and tests of a
//! connector's signing code belong against a real org.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::handle::{Shared, TokenEntry};

/// The JWT bearer grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Form fields of a token request (all optional; which are needed depends on the grant).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    assertion: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// An OAuth error: `{"error": …, "error_description": …}` with status 400.
fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    let grant = request.grant_type.as_deref().unwrap_or_default();
    let client = match grant {
        "client_credentials" => check_client_credentials(&shared, &headers, &request),
        "password" => check_password_grant(&shared, &headers, &request),
        JWT_BEARER_GRANT => check_jwt_assertion(&shared, request.assertion.as_deref()),
        _ => Err(oauth_error(
            "unsupported_grant_type",
            "grant type not supported",
        )),
    };
    match client {
        Ok(client_id) => issue(&shared, &headers, client_id, grant),
        Err(response) => response,
    }
}

/// `client_id:client_secret` from `Authorization: Basic …` (RFC 6749 §2.3.1
/// client authentication), if the request carries it.
fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The client's id and secret: from the form, else from HTTP Basic.
fn client_of(headers: &HeaderMap, request: &TokenRequest) -> (String, String) {
    match (&request.client_id, basic_client(headers)) {
        (Some(id), _) => (
            id.clone(),
            request.client_secret.clone().unwrap_or_default(),
        ),
        (None, Some(basic)) => basic,
        (None, None) => Default::default(),
    }
}

fn check_client_credentials(
    shared: &Shared,
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Result<String, Response> {
    let (id, secret) = client_of(headers, request);
    check_client(shared, &id, &secret)
}

fn check_client(shared: &Shared, id: &str, secret: &str) -> Result<String, Response> {
    let Some(client) = shared.salesforce.clients.iter().find(|c| c.client_id == id) else {
        return Err(oauth_error(
            "invalid_client_id",
            "client identifier invalid",
        ));
    };
    if client.client_secret != secret {
        return Err(oauth_error("invalid_client", "invalid client credentials"));
    }
    Ok(client.client_id.clone())
}

/// The username-password grant: a known connected app and a user whose
/// password (optionally followed by its security token) matches.
fn check_password_grant(
    shared: &Shared,
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Result<String, Response> {
    let (id, secret) = client_of(headers, request);
    let client = check_client(shared, &id, &secret)?;
    let username = request.username.as_deref().unwrap_or_default();
    let password = request.password.as_deref().unwrap_or_default();
    if find_user(shared, username, password).is_none() {
        return Err(oauth_error("invalid_grant", "authentication failure"));
    }
    Ok(client)
}

/// The configured user `username` if `password` is its password, alone or
/// followed by its security token.
pub(crate) fn find_user<'s>(
    shared: &'s Shared,
    username: &str,
    password: &str,
) -> Option<&'s crate::config::SalesforceUser> {
    shared.salesforce.users.iter().find(|u| {
        u.username.eq_ignore_ascii_case(username)
            && (u.password == password || format!("{}{}", u.password, u.security_token) == password)
    })
}

/// Decodes the assertion's payload and checks `iss` and `exp`; see the module docs.
fn check_jwt_assertion(shared: &Shared, assertion: Option<&str>) -> Result<String, Response> {
    let invalid = |why: &str| oauth_error("invalid_grant", why);
    let assertion = assertion.ok_or_else(|| invalid("invalid assertion"))?;
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return Err(invalid("invalid assertion"));
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .ok_or_else(|| invalid("invalid assertion"))?;
    let iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !shared.salesforce.clients.iter().any(|c| c.client_id == iss) {
        return Err(invalid("invalid client credentials"));
    }
    if let Some(exp) = payload.get("exp").and_then(Value::as_i64) {
        if exp <= chrono::Utc::now().timestamp() {
            return Err(invalid("expired authorization code"));
        }
    }
    Ok(iss.to_owned())
}

/// Records a new access token that lives for the configured lifetime.
pub(crate) fn new_token(shared: &Shared, client_id: String, grant: &str) -> String {
    let org = &shared.salesforce.org_id;
    let token = format!("{}!{}", &org[..15], shared.random_alnum(96));
    let lifetime = *shared.token_lifetime.lock();
    let now = chrono::Utc::now();
    shared.tokens.lock().add(
        token.clone(),
        TokenEntry {
            client_id,
            grant: if grant == JWT_BEARER_GRANT {
                "jwt-bearer"
            } else {
                grant
            }
            .to_owned(),
            issued_at: now,
            expires_at: Some(Instant::now() + lifetime),
        },
    );
    token
}

/// Issues a token and answers with it as the token endpoint does.
fn issue(shared: &Shared, headers: &HeaderMap, client_id: String, grant: &str) -> Response {
    let org = &shared.salesforce.org_id;
    let now = chrono::Utc::now();
    let token = new_token(shared, client_id, grant);
    let instance_url = instance_url(shared, headers);
    let body = json!({
        "access_token": token,
        "instance_url": instance_url,
        "id": format!("{instance_url}/id/{org}/{}", shared.salesforce.user_id),
        "token_type": "Bearer",
        "issued_at": now.timestamp_millis().to_string(),
        "signature": shared.random_alnum(43) + "=",
        "scope": "api",
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// The URL later calls go to: the Host the client used, else the bound address.
pub(crate) fn instance_url(shared: &Shared, headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .map(|h| format!("http://{h}"))
        .unwrap_or_else(|| shared.base_url.clone())
}
