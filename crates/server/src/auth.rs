//! API tokens and who is calling.
//!
//! A token is `slk_` and 32 random bytes in unpadded base64url (43
//! characters). Its first [`ID_LEN`] characters after the prefix are its
//! id, which is stored in clear to find the row; the whole token is stored
//! only as its SHA-256, compared in constant time. The operator token
//! (given at startup) administers tenants; every other token belongs to one
//! tenant.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every token starts with (so secret scanners can recognise one).
pub const PREFIX: &str = "slk_";
/// Random bytes in a token.
const SECRET_BYTES: usize = 32;
/// Characters of base64url the 32 bytes become.
const SECRET_CHARS: usize = 43;
/// Characters of the secret that are the token's id.
pub const ID_LEN: usize = 12;

/// A new token: what is shown once, and what is stored.
pub struct NewToken {
    pub token: String,
    pub id: String,
    pub sha256: [u8; 32],
}

/// Makes a token from the operating system's randomness (through the
/// thread generator, seeded from it).
pub fn generate() -> NewToken {
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    NewToken {
        id: token_id(&token).expect("a token made here has the expected shape"),
        sha256: digest(&token),
        token,
    }
}

/// The SHA-256 of the whole token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The id of a token of the right shape; `None` for anything else.
pub fn token_id(token: &str) -> Option<String> {
    let secret = token.strip_prefix(PREFIX)?;
    let well_formed = secret.len() == SECRET_CHARS
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| secret[..ID_LEN].to_owned())
}

/// Whether `token` hashes to `stored`, in time independent of where they
/// differ.
pub fn matches(token: &str, stored: &[u8]) -> bool {
    digest(token).ct_eq(stored).into()
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Tenant(String),
}

/// Whether `name` may name a tenant: 1 to 63 of `a-z 0-9 _ -`, starting
/// with a letter or digit (it appears in paths and in the state's keys).
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_has_the_prefix_its_id_and_its_hash() {
        let t = generate();
        assert!(t.token.starts_with("slk_"));
        assert_eq!(t.token.len(), PREFIX.len() + SECRET_CHARS);
        assert_eq!(token_id(&t.token).as_deref(), Some(t.id.as_str()));
        assert!(matches(&t.token, &t.sha256));
        assert!(!matches(&t.token, &digest("slk_other")));
        assert_ne!(generate().token, t.token);
    }

    #[test]
    fn malformed_tokens_have_no_id() {
        assert_eq!(token_id("slk_short"), None);
        assert_eq!(token_id(&format!("xyz_{}", "a".repeat(43))), None);
        assert_eq!(token_id(&format!("slk_{}!", "a".repeat(42))), None);
        assert!(token_id(&format!("slk_{}", "a".repeat(43))).is_some());
    }

    #[test]
    fn bearer_headers_and_tenant_names() {
        assert_eq!(bearer("Bearer slk_x"), Some("slk_x"));
        assert_eq!(bearer("bearer  slk_x "), Some("slk_x"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert!(valid_tenant_name("acme-1"));
        assert!(!valid_tenant_name("-acme"));
        assert!(!valid_tenant_name("Acme"));
        assert!(!valid_tenant_name(""));
        assert!(!valid_tenant_name(&"a".repeat(64)));
    }
}
