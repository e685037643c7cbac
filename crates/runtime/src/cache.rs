//! The on-disk cache of compiled components. A component is compiled once;
//! later loads deserialize the native code. Entries are keyed by the
//! component's SHA-256 and the engine's compatibility hash, so a different
//! wasmtime version or different engine settings never load stale code.

use anyhow::{Context, Result};
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
    let path = entry_path(dir, engine, digest);
    if path.exists() {
        // SAFETY: the file was written by `store` below from
        // `Component::serialize` of this engine configuration (the key
        // includes the compatibility hash), into a directory owned by the
        // operator. wasmtime still validates the header and engine settings.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok((component, CacheOutcome::Hit)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "discarding unusable cache entry: {e}")
            }
        }
    }
    let component = compile(engine, bytes)?;
    if let Err(e) = store(&component, dir, &path) {
        tracing::warn!(path = %path.display(), "could not cache the compiled component: {e:#}");
    }
    Ok((component, CacheOutcome::Compiled))
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("compiling the component")
}

/// Write atomically (temp file + rename) so a concurrent reader never sees a
/// half-written entry.
fn store(component: &Component, dir: &Path, path: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
