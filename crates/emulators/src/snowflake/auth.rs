//! Who is calling: a key-pair JWT (RS256) or an OAuth bearer token.
//!
//! A key-pair JWT must carry `iss = ACCOUNT.USER.SHA256:<fingerprint>` and
//! `sub = ACCOUNT.USER` (account and user compared case-insensitively), where the
//! fingerprint is the base64 SHA-256 of the DER public key registered for the user;
//! its RS256 signature must verify with that key, `exp` must be in the future and
//! at most an hour after `iat`. Any failure answers 401 `390144` "JWT token is
//! invalid."; an unknown OAuth token answers 401 `390303`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::SfError;
use crate::config::SnowflakeUser;
use crate::handle::Shared;

/// The header naming the token type.
pub const TOKEN_TYPE_HEADER: &str = "x-snowflake-authorization-token-type";
/// Code of an invalid or expired JWT.
pub const INVALID_JWT: &str = "390144";
/// Code of an invalid OAuth access token.
pub const INVALID_OAUTH: &str = "390303";

/// The longest lifetime Snowflake accepts for a key-pair JWT.
const MAX_JWT_LIFETIME_SECS: u64 = 3600;

#[derive(Debug, Deserialize)]
struct JwtHeader {
    alg: String,
}

#[derive(Debug, Deserialize)]
struct JwtClaims {
    iss: String,
    sub: String,
    #[serde(default)]
    iat: Option<u64>,
    exp: u64,
}

fn invalid_jwt(reason: &str) -> SfError {
    SfError::new(
        StatusCode::UNAUTHORIZED,
        INVALID_JWT,
        "08001",
        format!("JWT token is invalid. [{reason}]"),
    )
}

fn invalid_oauth() -> SfError {
    SfError::new(
        StatusCode::UNAUTHORIZED,
        INVALID_OAUTH,
        "08001",
        "Invalid OAuth access token. [the token is not known to this account]",
    )
}

/// The user the request's bearer token identifies.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<SnowflakeUser, SfError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            SfError::new(
                StatusCode::UNAUTHORIZED,
                "390101",
                "08001",
                "Authorization header not found in the request data.",
            )
        })?;
    let declared = headers
        .get(TOKEN_TYPE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_uppercase);
    let settings = shared.snowflake.settings.lock();
    let looks_like_jwt = token.split('.').count() == 3;
    match declared.as_deref() {
        Some("KEYPAIR_JWT") => verify_jwt(token, &settings.account, &settings.users, now_secs()),
        Some("OAUTH") => oauth_user(token, &settings.oauth_tokens, &settings.users),
        Some(other) => Err(SfError::new(
            StatusCode::UNAUTHORIZED,
            "390101",
            "08001",
            format!("Unsupported authorization token type {other}."),
        )),
        None if looks_like_jwt => verify_jwt(token, &settings.account, &settings.users, now_secs()),
        None => oauth_user(token, &settings.oauth_tokens, &settings.users),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn oauth_user(
    token: &str,
    tokens: &[(String, String)],
    users: &[SnowflakeUser],
) -> Result<SnowflakeUser, SfError> {
    let (_, user) = tokens
        .iter()
        .find(|(t, _)| t == token)
        .ok_or_else(invalid_oauth)?;
    Ok(find_user(users, user)
        .cloned()
        .unwrap_or_else(|| SnowflakeUser {
            name: user.to_ascii_uppercase(),
            public_keys: Vec::new(),
            roles: vec!["PUBLIC".into()],
        }))
}

fn find_user<'a>(users: &'a [SnowflakeUser], name: &str) -> Option<&'a SnowflakeUser> {
    users.iter().find(|u| u.name.eq_ignore_ascii_case(name))
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, SfError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| invalid_jwt(&format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| invalid_jwt(&format!("the {what} is not the expected JSON")))
}

/// Verifies a key-pair JWT against the account's registered keys.
pub(crate) fn verify_jwt(
    token: &str,
    account: &str,
    users: &[SnowflakeUser],
    now: u64,
) -> Result<SnowflakeUser, SfError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid_jwt("not a JWT"));
    };
    let jwt_header: JwtHeader = decode_part(header, "header")?;
    if jwt_header.alg != "RS256" {
        return Err(invalid_jwt("alg must be RS256"));
    }
    let claims: JwtClaims = decode_part(payload, "payload")?;
    let (subject_account, user_name) = claims
        .sub
        .split_once('.')
        .ok_or_else(|| invalid_jwt("sub must be ACCOUNT.USER"))?;
    if !subject_account.eq_ignore_ascii_case(account) {
        return Err(invalid_jwt("sub names another account"));
    }
    let fingerprint = claims
        .iss
        .strip_prefix(&claims.sub)
        .filter(|_| claims.iss.len() > claims.sub.len())
        .or_else(|| {
            let upper_sub = claims.sub.to_ascii_uppercase();
            claims
                .iss
                .to_ascii_uppercase()
                .starts_with(&upper_sub)
                .then(|| &claims.iss[upper_sub.len()..])
        })
        .and_then(|rest| rest.strip_prefix(".SHA256:"))
        .ok_or_else(|| invalid_jwt("iss must be ACCOUNT.USER.SHA256:<fingerprint> matching sub"))?;
    let user = find_user(users, user_name).ok_or_else(|| invalid_jwt("unknown user"))?;
    let key = user
        .public_keys
        .iter()
        .filter_map(|pem| RsaPublicKey::from_public_key_pem(pem.trim()).ok())
        .find(|key| public_key_fingerprint(key).as_deref() == Some(fingerprint))
        .ok_or_else(|| {
            invalid_jwt("no public key with this fingerprint is registered for the user")
        })?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature.trim_end_matches('='))
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| invalid_jwt("the signature is not base64url"))?;
    VerifyingKey::<Sha256>::new(key)
        .verify(format!("{header}.{payload}").as_bytes(), &signature)
        .map_err(|_| invalid_jwt("the signature does not verify"))?;
    if claims.exp <= now {
        return Err(invalid_jwt("the token has expired"));
    }
    let issued = claims.iat.unwrap_or(now);
    if claims.exp.saturating_sub(issued) > MAX_JWT_LIFETIME_SECS {
        return Err(invalid_jwt("exp is more than one hour after iat"));
    }
    Ok(user.clone())
}

/// `SHA256:`-less fingerprint: base64 of the SHA-256 of the DER `SubjectPublicKeyInfo`.
pub fn public_key_fingerprint(key: &RsaPublicKey) -> Option<String> {
    let der = key.to_public_key_der().ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(der.as_bytes())))
}
