//! Key-pair authentication: an RS256 JWT with `iss = ACCOUNT.USER.SHA256:<fp>`,
//! `sub = ACCOUNT.USER`, where `<fp>` is the base64 SHA-256 of the public key's DER.

use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use sluice_sdk::PluginError;

/// A JWT lives 59 minutes (Snowflake accepts at most one hour).
pub const JWT_LIFETIME_SECS: u64 = 59 * 60;

pub fn private_key(pem: &str) -> Result<RsaPrivateKey, PluginError> {
    RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| {
            PluginError::Config(format!(
                "`private_key` is not an RSA private key in PEM: {e}"
            ))
        })
}

/// `SHA256:` fingerprint of the public half, as Snowflake shows it in `RSA_PUBLIC_KEY_FP`.
pub fn fingerprint(key: &RsaPrivateKey) -> Result<String, PluginError> {
    let der = RsaPublicKey::from(key).to_public_key_der().map_err(|e| {
        PluginError::Config(format!("`private_key`: cannot encode its public key: {e}"))
    })?;
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(der.as_bytes()))
    ))
}

/// The account part of the claims: uppercase, without a region or cloud suffix
/// (`xy12345.us-east-1` → `XY12345`); an org-account name keeps its hyphen.
pub fn claim_account(account: &str) -> String {
    account
        .split('.')
        .next()
        .unwrap_or(account)
        .to_ascii_uppercase()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signed key-pair JWT valid from `now_secs`.
pub fn jwt(pem: &str, account: &str, user: &str, now_secs: u64) -> Result<String, PluginError> {
    let key = private_key(pem)?;
    let subject = format!("{}.{}", claim_account(account), user.to_ascii_uppercase());
    let claims = serde_json::json!({
        "iss": format!("{subject}.{}", fingerprint(&key)?),
        "sub": subject,
        "iat": now_secs,
        "exp": now_secs + JWT_LIFETIME_SECS,
    });
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let signing_input = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let signature = SigningKey::<Sha256>::new(key).sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64url(&signature.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_suffixes_are_dropped() {
        assert_eq!(claim_account("xy12345.us-east-1"), "XY12345");
        assert_eq!(claim_account("myorg-acct"), "MYORG-ACCT");
    }

    #[test]
    fn a_bad_key_is_a_config_error() {
        assert!(
            matches!(jwt("nope", "a", "u", 0), Err(PluginError::Config(m)) if m.contains("private_key"))
        );
    }
}
