//! Tenant secrets at rest: AES-256-GCM envelope encryption (ring's AEAD).
//!
//! Each value is sealed with a fresh random 256-bit data key; the data key
//! is sealed in turn with the operator's current key-encryption key, whose
//! id is stored beside it. Both seals bind the tenant and the secret's name
//! as associated data, so a row copied to another tenant or name does not
//! open. Rotation: put a new key first in the key file (old keys stay
//! listed so existing secrets still open), restart, call
//! `POST /api/v1/secrets-rewrap` (operator) to re-seal every data key with
//! the new key, then drop the old line. The values themselves are never
//! re-encrypted, and never leave the server except into a run's config.

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// The longest secret value accepted, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

/// One key-encryption key: an id (stored with every secret it seals) and
/// 32 bytes. Debug never prints the key.
#[derive(Clone)]
struct Kek {
    id: String,
    key: [u8; 32],
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

/// The operator's key-encryption keys, the first one current.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<Kek>,
}

/// A sealed secret as stored: the id of the key that sealed its data key,
/// the sealed data key and the sealed value (each `nonce || ciphertext || tag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Keyring {
    /// Parses a key file: one key per line, `ID:BASE64` (32 bytes once
    /// decoded; `openssl rand -base64 32`), the current key first; blank
    /// lines and `#` comments are skipped. Errors name the line, never the
    /// key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<Kek> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("line {}", n + 1);
            let (id, b64) = line
                .split_once(':')
                .ok_or_else(|| format!("{at}: expected `ID:BASE64-KEY`"))?;
            let id = id.trim();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!("{at}: a key id is letters, digits, `-` and `_`"));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(format!("{at}: key id `{id}` appears twice"));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| format!("{at}: key `{id}` is not base64"))?;
            let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                format!("{at}: key `{id}` is {} bytes; AES-256 needs 32", b.len())
            })?;
            keys.push(Kek {
                id: id.to_string(),
                key,
            });
        }
        if keys.is_empty() {
            return Err("no key: add a line `ID:BASE64` (`openssl rand -base64 32`)".into());
        }
        Ok(Self { keys })
    }

    /// The id new secrets are sealed with.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `value` as secret `name` of `tenant` under the current key.
    pub fn seal(&self, tenant: &str, name: &str, value: &str) -> Result<Sealed, String> {
        let kek = &self.keys[0];
        let mut dek = [0u8; 32];
        SystemRandom::new()
            .fill(&mut dek)
            .map_err(|_| "the system random source failed".to_string())?;
        let ciphertext = seal_with(&dek, &value_aad(tenant, name), value.as_bytes())?;
        let wrapped_key = seal_with(&kek.key, &key_aad(tenant, name, &kek.id), &dek)?;
        Ok(Sealed {
            key_id: kek.id.clone(),
            wrapped_key,
            ciphertext,
        })
    }

    /// Opens a sealed secret of `tenant` named `name`.
    pub fn open(&self, tenant: &str, name: &str, sealed: &Sealed) -> Result<String, String> {
        let dek = self.unwrap_key(tenant, name, sealed)?;
        let value = open_with(&dek, &value_aad(tenant, name), &sealed.ciphertext)
            .map_err(|()| format!("secret `{name}` does not open: its value was altered"))?;
        String::from_utf8(value).map_err(|_| format!("secret `{name}` is not UTF-8"))
    }

    /// The same secret with its data key sealed under the current key (the
    /// value's ciphertext is unchanged); `None` when it already is.
    pub fn rewrap(
        &self,
        tenant: &str,
        name: &str,
        sealed: &Sealed,
    ) -> Result<Option<Sealed>, String> {
        let kek = &self.keys[0];
        if sealed.key_id == kek.id {
            return Ok(None);
        }
        let dek = self.unwrap_key(tenant, name, sealed)?;
        Ok(Some(Sealed {
            key_id: kek.id.clone(),
            wrapped_key: seal_with(&kek.key, &key_aad(tenant, name, &kek.id), &dek)?,
            ciphertext: sealed.ciphertext.clone(),
        }))
    }

    fn unwrap_key(&self, tenant: &str, name: &str, sealed: &Sealed) -> Result<Vec<u8>, String> {
        let kek = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| {
                format!(
                    "secret `{name}` was sealed with key `{}`, which the key file no longer lists",
                    sealed.key_id
                )
            })?;
        open_with(&kek.key, &key_aad(tenant, name, &kek.id), &sealed.wrapped_key).map_err(|()| {
            format!(
                "secret `{name}` does not open with key `{}`: a different key under that id, or an altered row",
                kek.id
            )
        })
    }
}

fn value_aad(tenant: &str, name: &str) -> String {
    format!("sluice-secret-value\0{tenant}\0{name}")
}

fn key_aad(tenant: &str, name: &str, key_id: &str) -> String {
    format!("sluice-secret-key\0{tenant}\0{name}\0{key_id}")
}

/// `nonce || AES-256-GCM(plaintext) || tag` with a random 96-bit nonce
/// (each key seals one value, or data keys under a KEK: far below the
/// 2^32 random-nonce bound).
fn seal_with(key: &[u8], aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| "bad key length")?);
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| "the system random source failed".to_string())?;
    let mut out = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad.as_bytes()),
        &mut out,
    )
    .map_err(|_| "sealing failed".to_string())?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&out);
    Ok(sealed)
}

fn open_with(key: &[u8], aad: &str, sealed: &[u8]) -> Result<Vec<u8>, ()> {
    if sealed.len() < NONCE_LEN {
        return Err(());
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| ())?);
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
    let mut buf = rest.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
        .map_err(|_| ())?;
    Ok(plain.to_vec())
}

/// Whether `name` can be a secret's name: what `${NAME}` accepts in a
/// project, 1 to 128 of `A-Z a-z 0-9 _`, not starting with a digit.
pub fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn a_sealed_value_opens_only_as_its_tenant_and_name() {
        let ring = Keyring::parse(K1).unwrap();
        let sealed = ring
            .seal("acme", "SF_SECRET", "hunter2-long-secret")
            .unwrap();
        assert_eq!(sealed.key_id, "k1");
        let stored = [&sealed.wrapped_key[..], &sealed.ciphertext[..]].concat();
        assert!(!stored.windows(b"hunter2".len()).any(|w| w == b"hunter2"));
        assert_eq!(
            ring.open("acme", "SF_SECRET", &sealed).unwrap(),
            "hunter2-long-secret"
        );
        assert!(ring.open("bravo", "SF_SECRET", &sealed).is_err());
        assert!(ring.open("acme", "OTHER", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.ciphertext.last_mut().unwrap() ^= 1;
        let err = ring.open("acme", "SF_SECRET", &altered).unwrap_err();
        assert!(err.contains("altered"), "{err}");
        // Two seals of one value differ (fresh data key and nonces).
        assert_ne!(
            ring.seal("acme", "SF_SECRET", "x").unwrap(),
            ring.seal("acme", "SF_SECRET", "x").unwrap()
        );
    }

    #[test]
    fn rotation_rewraps_the_data_key_and_the_old_key_can_then_go() {
        let old = Keyring::parse(K1).unwrap();
        let sealed = old.seal("acme", "TOKEN", "v").unwrap();
        let both = Keyring::parse(&format!("# new first\n{K2}\n\n{K1}\n")).unwrap();
        assert_eq!(both.current_id(), "k2");
        assert_eq!(both.open("acme", "TOKEN", &sealed).unwrap(), "v");
        let rewrapped = both.rewrap("acme", "TOKEN", &sealed).unwrap().unwrap();
        assert_eq!(rewrapped.key_id, "k2");
        assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
        assert!(both.rewrap("acme", "TOKEN", &rewrapped).unwrap().is_none());
        let new_only = Keyring::parse(K2).unwrap();
        assert_eq!(new_only.open("acme", "TOKEN", &rewrapped).unwrap(), "v");
        let err = new_only.open("acme", "TOKEN", &sealed).unwrap_err();
        assert!(err.contains("no longer lists"), "{err}");
    }

    #[test]
    fn key_file_mistakes_name_the_line_and_never_the_key() {
        for (text, expected) in [
            ("", "no key"),
            ("k1 AAEC", "line 1: expected"),
            ("\nk1:AAECAw==", "line 2: key `k1` is 4 bytes"),
            ("k1:not base64!", "not base64"),
            (&format!("{K1}\n{K1}"), "appears twice"),
            ("bad id:AAEC", "key id"),
        ] {
            let err = Keyring::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains("AAEC"), "{err}");
        }
    }

    #[test]
    fn names_are_what_a_project_can_reference() {
        assert!(valid_name("SF_CLIENT_SECRET"));
        assert!(valid_name("token_2"));
        assert!(!valid_name("2FA"));
        assert!(!valid_name("A-B"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"A".repeat(129)));
    }
}
