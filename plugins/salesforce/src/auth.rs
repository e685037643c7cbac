//! OAuth 2.0 token requests: client credentials and JWT bearer (RS256).

use crate::config::{Auth, Config};
use crate::util::{form_encode, truncate};
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde::Deserialize;
use sha2::Sha256;
use sluice_sdk::PluginError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// An access token and the instance it is valid for.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    /// e.g. `https://acme.my.salesforce.com` (no trailing slash).
    pub instance_url: String,
}

/// The RS256 key from a PEM document (PKCS#8 or PKCS#1).
pub fn signing_key(pem: &str) -> Result<SigningKey<Sha256>, PluginError> {
    let key = RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| {
            PluginError::Config(format!(
                "`auth.private_key` is not an RSA private key in PEM: {e}"
            ))
        })?;
    Ok(SigningKey::<Sha256>::new(key))
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signed JWT-bearer assertion valid for three minutes from `now_secs`
/// (Salesforce accepts at most five).
pub fn jwt_assertion(
    key: &SigningKey<Sha256>,
    client_id: &str,
    username: &str,
    audience: &str,
    now_secs: u64,
) -> String {
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({"iss": client_id, "sub": username, "aud": audience, "exp": now_secs + 180});
    let payload = b64url(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let signature = key.sign(signing_input.as_bytes()).to_vec();
    format!("{signing_input}.{}", b64url(&signature))
}

/// The form body of the token request.
pub fn token_form(config: &Config, now_secs: u64) -> Result<String, PluginError> {
    Ok(match &config.auth {
        Auth::ClientCredentials {
            client_id,
            client_secret,
        } => form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ]),
        Auth::JwtBearer {
            client_id,
            username,
            private_key,
            audience,
        } => {
            let key = signing_key(private_key)?;
            let aud = audience.as_deref().unwrap_or(&config.login_url);
            let assertion = jwt_assertion(&key, client_id, username, aud, now_secs);
            form_encode(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)])
        }
    })
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
}

#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Exchange the configured credentials for a session.
pub fn authenticate(config: &Config) -> Result<Session, PluginError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let url = format!("{}/services/oauth2/token", config.login_url);
    let form = token_form(config, now)?;
    let response = sluice_sdk::http::send_call(sluice_sdk::http::Call {
        method: "POST",
        url: &url,
        headers: vec![
            ("accept".into(), "application/json".into()),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
        ],
        body: form.as_bytes(),
        timeout: Duration::from_millis(config.timeout_ms),
    })
    .map_err(|e| crate::util::with_context(e.into(), &format!("token request to {url}")))?;
    match response.status {
        200 => {
            let token: TokenResponse = response.json()?;
            Ok(Session {
                access_token: token.access_token,
                instance_url: token.instance_url.trim_end_matches('/').to_string(),
            })
        }
        400 | 401 | 403 => {
            let err: OAuthError = serde_json::from_slice(&response.body).unwrap_or_default();
            Err(PluginError::Auth(format!(
                "token endpoint {url} refused the credentials (HTTP {}): {}: {}",
                response.status,
                err.error,
                if err.error_description.is_empty() {
                    truncate(&response.text(), 300)
                } else {
                    err.error_description
                }
            )))
        }
        _ => Err(crate::util::with_context(
            response.to_error(),
            &format!("token request to {url}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;

    pub const TEST_KEY: &str = include_str!("../testdata/test_key.pem");

    #[test]
    fn jwt_assertion_is_rs256_signed_with_salesforce_claims() {
        let key = signing_key(TEST_KEY).unwrap();
        let jwt = jwt_assertion(
            &key,
            "cid",
            "user@example.com",
            "https://login.salesforce.com",
            1_000,
        );
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"iss":"cid","sub":"user@example.com","aud":"https://login.salesforce.com","exp":1180})
        );
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(header["alg"], "RS256");
        let verifier = VerifyingKey::<Sha256>::new(key.as_ref().to_public_key());
        let signature = Signature::try_from(decode(parts[2]).as_slice()).unwrap();
        verifier
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn client_credentials_form_is_url_encoded() {
        let config = Config::parse(r#"{"login_url":"https://x","auth":{"flow":"client_credentials","client_id":"a b","client_secret":"s&c=r+t"}}"#).unwrap();
        assert_eq!(
            token_form(&config, 0).unwrap(),
            "grant_type=client_credentials&client_id=a%20b&client_secret=s%26c%3Dr%2Bt"
        );
    }
}
