//! Service-account auth: an RS256 JWT grant (`iss` = the key's client_email,
//! `aud` = the token URI, scope BigQuery read-only) exchanged at the token URI
//! for an access token.

use crate::config::ServiceAccountKey;
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use sha2::Sha256;
use sluice_sdk::PluginError;

/// The grant type of a JWT assertion (RFC 7523).
pub const JWT_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Reading tables and running query jobs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// Google accepts assertions valid for at most an hour.
pub const JWT_LIFETIME_SECS: u64 = 3600;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn private_key(pem: &str) -> Result<RsaPrivateKey, PluginError> {
    RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| {
            PluginError::Config(format!(
                "`credentials_json`: private_key is not an RSA private key in PEM: {e}"
            ))
        })
}

/// The signed assertion for `key`, valid from `now_secs`, for `audience`.
pub fn assertion(
    key: &ServiceAccountKey,
    audience: &str,
    now_secs: u64,
) -> Result<String, PluginError> {
    let signing_key = private_key(&key.private_key)?;
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = serde_json::json!(kid);
    }
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": audience,
        "iat": now_secs,
        "exp": now_secs + JWT_LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = SigningKey::<Sha256>::new(signing_key).sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64url(&signature.to_vec())))
}

/// The form body that exchanges `assertion` for an access token.
pub fn token_request_body(assertion: &str) -> String {
    format!(
        "grant_type={}&assertion={assertion}",
        form_escape(JWT_GRANT_TYPE)
    )
}

/// `application/x-www-form-urlencoded` escaping (a JWT needs none: base64url and dots).
fn form_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_key_is_a_config_error() {
        let key = ServiceAccountKey {
            kind: "service_account".into(),
            client_email: "a@b".into(),
            private_key: "nope".into(),
            private_key_id: None,
            project_id: None,
            token_uri: None,
        };
        assert!(
            matches!(assertion(&key, "aud", 0), Err(PluginError::Config(m)) if m.contains("private_key"))
        );
    }

    #[test]
    fn the_grant_type_is_form_escaped() {
        assert_eq!(
            token_request_body("a.b.c"),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c"
        );
    }
}
