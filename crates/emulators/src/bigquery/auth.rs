//! Google OAuth for service accounts: `POST /token` with
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`.
//!
//! The assertion must be RS256, its `iss` a configured service account whose
//! public key verifies the signature, its `aud` this endpoint (or Google's
//! `https://oauth2.googleapis.com/token`), `exp` in the future and at most an
//! hour after `iat`. Failures answer 400 `invalid_grant` as Google does; a
//! success issues a bearer token valid for `expires_in` seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use parking_lot::Mutex;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::BqError;
use crate::config::ServiceAccount;
use crate::handle::Shared;

/// The grant type of a JWT assertion (RFC 7523).
pub const JWT_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's token endpoint, which real key files name as `token_uri`.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// How long an issued access token lives.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Google refuses assertions valid for longer than this.
const MAX_ASSERTION_LIFETIME_SECS: u64 = 3600;

/// Issued access tokens: token -> (service account, expiry).
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    issued: Mutex<HashMap<String, (String, Instant)>>,
}

impl Tokens {
    pub fn expire_all(&self) {
        self.issued.lock().clear();
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    assertion: String,
}

#[derive(Debug, Deserialize)]
struct JwtHeader {
    alg: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    #[serde(default)]
    iat: Option<u64>,
    exp: u64,
}

/// Google's OAuth error body.
fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `POST /token`.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<TokenForm>,
) -> Response {
    if form.grant_type != JWT_GRANT_TYPE {
        return oauth_error(
            "unsupported_grant_type",
            &format!("Invalid grant_type: {}", form.grant_type),
        );
    }
    let (accounts, audience) = {
        let settings = shared.bigquery.settings.lock();
        (
            settings.service_accounts.clone(),
            format!("{}/token", shared.base_url),
        )
    };
    let email = match verify_assertion(&form.assertion, &accounts, &audience, now_secs()) {
        Ok(email) => email,
        Err(description) => {
            shared.record_unauthorized();
            return oauth_error("invalid_grant", &description);
        }
    };
    let token = format!("ya29.emulator-{}", shared.random_alnum(40));
    shared
        .bigquery
        .tokens
        .issued
        .lock()
        .insert(token.clone(), (email, Instant::now() + TOKEN_LIFETIME));
    Json(json!({
        "access_token": token,
        "expires_in": TOKEN_LIFETIME.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The service account an assertion proves, or Google's description of why not.
pub(crate) fn verify_assertion(
    assertion: &str,
    accounts: &[ServiceAccount],
    audience: &str,
    now: u64,
) -> Result<String, String> {
    let mut parts = assertion.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid JWT: the assertion is not a JWS".into());
    };
    let jwt_header: JwtHeader =
        decode_part(header).ok_or("Invalid JWT: the header is not base64url JSON")?;
    if jwt_header.alg != "RS256" {
        return Err(format!("Invalid JWT: unsupported alg {}", jwt_header.alg));
    }
    let claims: Claims =
        decode_part(payload).ok_or("Invalid JWT: the claims are not base64url JSON")?;
    let account = accounts
        .iter()
        .find(|a| a.email == claims.iss)
        .ok_or("Invalid grant: account not found")?;
    let key = RsaPublicKey::from_public_key_pem(account.public_key.trim())
        .map_err(|_| "Invalid grant: the account's public key is not usable".to_owned())?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature.trim_end_matches('='))
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .ok_or("Invalid JWT Signature.")?;
    VerifyingKey::<Sha256>::new(key)
        .verify(format!("{header}.{payload}").as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    if claims.aud != audience && claims.aud != GOOGLE_TOKEN_URI {
        return Err(format!(
            "Invalid JWT: audience {} is not this token endpoint ({audience})",
            claims.aud
        ));
    }
    let issued = claims.iat.unwrap_or(now);
    if claims.exp <= now || claims.exp.saturating_sub(issued) > MAX_ASSERTION_LIFETIME_SECS {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".into());
    }
    Ok(account.email.clone())
}

fn unauthenticated(message: &str) -> BqError {
    BqError {
        location: Some("Authorization".into()),
        ..BqError::new(StatusCode::UNAUTHORIZED, "authError", message)
    }
}

/// Checks the request's bearer token: one this emulator issued and that has
/// not expired (or none at all, when anonymous requests are allowed).
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(), BqError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        if shared.bigquery.settings.lock().allow_anonymous {
            return Ok(());
        }
        return Err(BqError {
            reason: "required".into(),
            ..unauthenticated(
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )
        });
    };
    match shared.bigquery.tokens.issued.lock().get(token) {
        Some((_, expiry)) if *expiry > Instant::now() => Ok(()),
        _ => Err(unauthenticated(
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )),
    }
}
