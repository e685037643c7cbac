//! The on-disk cache of compiled components. A component is compiled once;
//! later loads deserialize the native code. Entries are keyed by the
//! component's SHA-256 and the engine's compatibility hash, so a different
//! wasmtime version or different engine settings never load stale code.
//!
//! Deserializing is running native code, so an entry is trusted only if
//! this host wrote it: each carries an HMAC-SHA256 (in `ENTRY.mac`) over its
//! name and its bytes, keyed by a random per-installation key in the cache
//! directory's `key` file (created 0600, refused if anyone else could read
//! or replace it). The MAC is checked on the very bytes that are then
//! deserialized. A missing or wrong MAC (a flipped byte, another entry's
//! artifact and MAC swapped in) logs a warning and the component is
//! recompiled. No directory grant may reach the cache
//! ([`protected`](crate::sandbox::protected)), so no plugin can write here.

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// `$SLUICE_CACHE_DIR`, else the user's cache directory + `sluice/components`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("sluice").join("components"))
}

/// The hex SHA-256 of a component's bytes.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Where a component's compiled form lives.
pub fn entry_path(dir: &Path, engine: &Engine, digest: &str) -> PathBuf {
    dir.join(format!("{digest}-{}.cwasm", engine_key(engine)))
}

/// Where an entry's MAC lives.
pub fn mac_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.mac")
}

/// The file holding the key that authenticates entries.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("key")
}

/// Whether a load came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Compiled,
    Disabled,
}

/// Load the compiled component from the cache, or compile and store it.
pub fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    bytes: &[u8],
    digest: &str,
) -> Result<(Component, CacheOutcome)> {
    let Some(dir) = dir else {
        return Ok((compile(engine, bytes)?, CacheOutcome::Disabled));
    };
    let key = match CacheKey::load_or_create(dir) {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "compile cache disabled: {e:#}");
            return Ok((compile(engine, bytes)?, CacheOutcome::Disabled));
        }
    };
    let path = entry_path(dir, engine, digest);
    if let Ok(artifact) = std::fs::read(&path) {
        match key.verify(&path, &artifact) {
            Ok(()) => {
                // SAFETY: these bytes carry a MAC under this installation's
                // key, so this host serialized them (`store` below) from a
                // component of this engine configuration (the entry name
                // includes the compatibility hash). The MAC was checked on
                // these very bytes. wasmtime still validates the header.
                match unsafe { Component::deserialize(engine, &artifact) } {
                    Ok(component) => return Ok((component, CacheOutcome::Hit)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "discarding unusable cache entry: {e}")
                    }
                }
            }
            // An entry without a MAC is what an older sluice left: expected
            // once after an upgrade. A MAC that does not match is tampering.
            Err(why) if why.starts_with("no readable MAC") => tracing::info!(
                path = %path.display(),
                "cache entry has no MAC (written before MACs, or not by this host: {why}); recompiling"
            ),
            Err(why) => tracing::warn!(
                path = %path.display(),
                "cache entry was not written by this host ({why}); recompiling"
            ),
        }
    }
    let component = compile(engine, bytes)?;
    if let Err(e) = store(&component, &path, &key) {
        tracing::warn!(path = %path.display(), "could not cache the compiled component: {e:#}");
    }
    Ok((component, CacheOutcome::Compiled))
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("compiling the component")
}

/// Write the MAC, then the entry, each atomically (temp file + rename), so
/// a concurrent reader never sees half an entry; one that sees a new entry
/// with an old MAC recompiles.
fn store(component: &Component, path: &Path, key: &CacheKey) -> Result<()> {
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let tag = key.tag(path, &bytes);
    write_atomically(&mac_path(path), hex::encode(tag).as_bytes())?;
    write_atomically(path, &bytes)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

/// The per-installation key that authenticates cache entries.
struct CacheKey([u8; 32]);

impl CacheKey {
    /// Read the cache directory's key, creating the directory (0700) and
    /// the key (0600) if needed. A key another user owns, or that others may
    /// read or write, is refused: whoever can read it could forge entries.
    fn load_or_create(dir: &Path) -> Result<Self> {
        create_private_dir(dir)?;
        let path = key_path(dir);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Self::load(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn load(path: &Path) -> Result<Self> {
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("reading {}", path.display()))?;
        if !meta.file_type().is_file() {
            bail!("{} is not a regular file", path.display());
        }
        check_private(path, &meta)?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
        let Some(bytes) = bytes else {
            bail!("{} does not hold a 32-byte hex key", path.display());
        };
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(CacheKey(key))
    }

    /// Write a fresh key to a private temp file and link it into place, so
    /// that a concurrent process either creates the key or reads a whole one.
    fn create(path: &Path) -> Result<Self> {
        use rand::Rng;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, hex::encode(key).as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(CacheKey(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }

    fn mac(&self, entry: &Path, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        // The entry's name is authenticated too: an artifact is valid only
        // under the name (component digest, engine) it was written for.
        let name = entry
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default();
        mac.update(b"sluice compile cache v1\0");
        mac.update(name);
        mac.update(b"\0");
        mac.update(artifact);
        mac
    }

    fn tag(&self, entry: &Path, artifact: &[u8]) -> [u8; 32] {
        self.mac(entry, artifact).finalize().into_bytes().into()
    }

    /// Check an entry's bytes against its MAC file.
    fn verify(&self, entry: &Path, artifact: &[u8]) -> Result<(), String> {
        let text = std::fs::read_to_string(mac_path(entry))
            .map_err(|e| format!("no readable MAC: {e}"))?;
        let tag = hex::decode(text.trim()).map_err(|_| "the MAC is not hex".to_string())?;
        self.mac(entry, artifact)
            .verify_slice(&tag)
            .map_err(|_| "the MAC does not match".to_string())
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "{} belongs to uid {}, not to this user (uid {me})",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{} has mode {:o}; a cache key must be readable by its owner only (0600)",
            path.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_private_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let key = CacheKey::load_or_create(&dir).unwrap();
        assert_eq!(CacheKey::load_or_create(&dir).unwrap().0, key.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&key_path(&dir)), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        // Another installation has another key.
        let other = CacheKey::load_or_create(&tmp.path().join("other")).unwrap();
        assert_ne!(other.0, key.0);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_could_read_or_a_linked_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        CacheKey::load_or_create(&dir).unwrap();
        let path = key_path(&dir);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let why = CacheKey::load_or_create(&dir).err().unwrap().to_string();
        assert!(why.contains("mode 644"), "{why}");

        let planted = tmp.path().join("planted");
        std::fs::rename(&path, &planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&planted, &path).unwrap();
        let why = CacheKey::load_or_create(&dir).err().unwrap().to_string();
        assert!(why.contains("not a regular file"), "{why}");
    }

    #[test]
    fn a_mac_binds_the_bytes_and_the_entry_name() {
        let tmp = tempfile::tempdir().unwrap();
        let key = CacheKey::load_or_create(tmp.path()).unwrap();
        let a = tmp.path().join("aaaa-1.cwasm");
        let b = tmp.path().join("bbbb-1.cwasm");
        std::fs::write(mac_path(&a), hex::encode(key.tag(&a, b"code"))).unwrap();
        assert_eq!(key.verify(&a, b"code"), Ok(()));
        assert_eq!(
            key.verify(&a, b"codf"),
            Err("the MAC does not match".into())
        );
        // A's artifact and MAC copied under B's name do not verify.
        std::fs::copy(mac_path(&a), mac_path(&b)).unwrap();
        assert_eq!(
            key.verify(&b, b"code"),
            Err("the MAC does not match".into())
        );
        let missing = key.verify(&tmp.path().join("cccc-1.cwasm"), b"code");
        assert!(missing.unwrap_err().starts_with("no readable MAC"));
    }
}
