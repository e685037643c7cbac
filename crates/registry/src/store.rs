//! The project's plugin store and its lock file.
//!
//! `sluice plugin install` copies a component to
//! `<project>/.sluice/plugins/<name>/<version>/<sha256>.wasm` and records it
//! in `<project>/sluice.lock` (JSON, entries sorted by name, version and
//! digest, so a diff shows exactly what changed). Several versions of one
//! plugin live side by side; a `plugin:` reference picks one:
//!
//! - `webhook`: the one installed version, or the built-in `webhook` when
//!   none is installed; several installed versions must be pinned;
//! - `webhook@0.1.0`: that installed version;
//! - `webhook@sha256:3f2a…`: the installed component with that digest
//!   (a unique prefix of 12 or more hex digits).
//!
//! At load the component's bytes are hashed and compared with the digest in
//! the lock; a mismatch is refused before anything is compiled.

use crate::builtin as plugins;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sluice_config::PluginPin;
use sluice_runtime::plugin::Plugin;
use sluice_runtime::PluginSpec;
use sluice_runtime::{cache, Runtime, Sandbox, WIT_PACKAGE};
use std::path::{Path, PathBuf};

/// The lock file's name inside a project directory.
pub const LOCK_FILE: &str = "sluice.lock";
/// The store, relative to the project directory.
pub const STORE_DIR: &str = ".sluice/plugins";
const LOCK_FORMAT: u32 = 1;

/// `sluice.lock`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lock {
    /// The format of this file.
    pub lock_version: u32,
    pub plugins: Vec<LockedPlugin>,
}

impl Default for Lock {
    fn default() -> Self {
        Lock {
            lock_version: LOCK_FORMAT,
            plugins: Vec::new(),
        }
    }
}

/// One installed component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockedPlugin {
    /// The name the project uses (the spec's name unless `--name` said otherwise).
    pub name: String,
    /// The version from the plugin's spec.
    pub version: String,
    /// `source`, `transform` or `destination`.
    pub world: String,
    /// The contract it was built against, e.g. `sluice:plugin@0.1.0`.
    pub wit: String,
    /// Hex SHA-256 of the component bytes.
    pub sha256: String,
    /// The component, relative to the project directory.
    pub path: String,
    /// Where it was installed from: `builtin:NAME` or the file's path.
    pub source: String,
    /// What the plugin requests (its spec's capabilities, unresolved).
    pub capabilities: Vec<String>,
}

impl LockedPlugin {
    /// `name@version (sha256:12 digits)`, for messages.
    pub fn label(&self) -> String {
        format!(
            "{}@{} (sha256:{})",
            self.name,
            self.version,
            &self.sha256[..12.min(self.sha256.len())]
        )
    }
}

impl Lock {
    /// Reads `<project>/sluice.lock`; a project without one has an empty lock.
    pub fn load(project_dir: &Path) -> Result<Lock> {
        let path = project_dir.join(LOCK_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let lock: Lock = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid lock file", path.display()))?;
        if lock.lock_version != LOCK_FORMAT {
            bail!(
                "{} has lock_version {}, but this sluice reads version {LOCK_FORMAT}",
                path.display(),
                lock.lock_version
            );
        }
        Ok(lock)
    }

    /// Writes the lock atomically, entries in a stable order.
    pub fn save(&mut self, project_dir: &Path) -> Result<()> {
        self.plugins.sort_by(|a, b| {
            (&a.name, version_key(&a.version), &a.sha256).cmp(&(
                &b.name,
                version_key(&b.version),
                &b.sha256,
            ))
        });
        let path = project_dir.join(LOCK_FILE);
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        let tmp = project_dir.join(format!(".{LOCK_FILE}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// The installed plugin a reference names. `Ok(None)` means "not
    /// installed, and the reference allows a built-in" (a bare name).
    pub fn resolve(&self, name: &str, pin: Option<&PluginPin>) -> Result<Option<&LockedPlugin>> {
        let same_name: Vec<&LockedPlugin> =
            self.plugins.iter().filter(|p| p.name == name).collect();
        let installed = || {
            if same_name.is_empty() {
                "none is installed".to_string()
            } else {
                let list: Vec<String> = same_name.iter().map(|p| p.label()).collect();
                format!("installed: {}", list.join(", "))
            }
        };
        let matches: Vec<&LockedPlugin> = match pin {
            None => match same_name.len() {
                0 => return Ok(None),
                1 => return Ok(Some(same_name[0])),
                _ => bail!(
                    "plugin `{name}` has several installed versions ({}); pin one, e.g. `{name}@{}`",
                    installed(),
                    same_name[same_name.len() - 1].version
                ),
            },
            Some(PluginPin::Version(v)) => {
                same_name.iter().copied().filter(|p| &p.version == v).collect()
            }
            Some(PluginPin::Digest(d)) => same_name
                .iter()
                .copied()
                .filter(|p| p.sha256.starts_with(d.as_str()))
                .collect(),
        };
        let pin = pin.map(|p| p.to_string()).unwrap_or_default();
        match matches.as_slice() {
            [one] => Ok(Some(one)),
            [] => bail!(
                "plugin `{name}@{pin}` is not installed in this project ({}); install it with \
                 `sluice plugin install PATH`",
                installed()
            ),
            many => {
                let list: Vec<String> = many.iter().map(|p| p.label()).collect();
                bail!(
                    "`{name}@{pin}` matches several installed components ({}); pin by digest",
                    list.join(", ")
                )
            }
        }
    }
}

/// Orders `0.10.0` after `0.9.0`: numeric parts compare as numbers.
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-', '+'])
        .map(|p| (p.parse::<u64>().unwrap_or(u64::MAX), p.to_string()))
        .collect()
}

/// Reads an installed component and checks its digest against the lock.
pub fn read_verified(project_dir: &Path, entry: &LockedPlugin) -> Result<Vec<u8>> {
    let path = project_dir.join(&entry.path);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "plugin {} is recorded in {LOCK_FILE} but its component {} cannot be read; \
             reinstall it with `sluice plugin install`",
            entry.label(),
            path.display()
        )
    })?;
    let actual = cache::digest(&bytes);
    if actual != entry.sha256 {
        bail!(
            "plugin `{}@{}`: the component {} has sha256 {actual}, but {LOCK_FILE} records {}; \
             it changed after it was installed. Refusing to load it: restore the file or \
             reinstall the plugin with `sluice plugin install`",
            entry.name,
            entry.version,
            path.display(),
            entry.sha256
        );
    }
    Ok(bytes)
}

/// Loads the installed plugin a reference names, digest verified, or
/// `Ok(None)` when a bare name is not installed (the caller falls back to the
/// built-in plugin).
pub fn load_installed(
    runtime: &Runtime,
    project_dir: &Path,
    name: &str,
    pin: Option<&PluginPin>,
) -> Result<Option<Plugin>> {
    let lock = Lock::load(project_dir)?;
    let Some(entry) = lock.resolve(name, pin)? else {
        return Ok(None);
    };
    let bytes = read_verified(project_dir, entry)?;
    let plugin = Plugin::from_bytes(runtime, name, &bytes)
        .with_context(|| format!("loading installed plugin {}", entry.label()))?;
    if plugin.world() != entry.world {
        bail!(
            "plugin {} exports the {} world, but {LOCK_FILE} records {}",
            entry.label(),
            plugin.world(),
            entry.world
        );
    }
    Ok(Some(plugin))
}

/// What `install` did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub entry: LockedPlugin,
    pub spec: PluginSpec,
    /// The plugin was already installed with the same digest.
    pub unchanged: bool,
    /// An entry with the same name and version but another digest was replaced.
    pub replaced: Option<LockedPlugin>,
}

/// Where a component to install comes from.
fn read_source(source: &str) -> Result<(Vec<u8>, String)> {
    let path = PathBuf::from(source);
    if path.is_file() {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let shown = std::fs::canonicalize(&path).unwrap_or(path);
        return Ok((bytes, shown.display().to_string()));
    }
    if source.contains("://") {
        bail!(
            "installing from a URL is not supported: download the component and run \
             `sluice plugin install FILE.wasm`"
        );
    }
    if let Some(bytes) = plugins::embedded(source) {
        return Ok((bytes.to_vec(), format!("builtin:{source}")));
    }
    if source.ends_with(".wasm") || source.contains('/') {
        bail!("plugin file {source} does not exist");
    }
    bail!(
        "`{source}` is neither a .wasm file nor a built-in plugin ({})",
        plugins::EMBEDDED.join(", ")
    )
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Installs a component (a file or a built-in name) into the project's
/// store and records it in the lock. `force` replaces another component
/// installed under the same name and version.
pub async fn install(
    runtime: &Runtime,
    project_dir: &Path,
    source: &str,
    name: Option<&str>,
    force: bool,
) -> Result<Installed> {
    let (bytes, origin) = read_source(source)?;
    let plugin = Plugin::from_bytes(runtime, "plugin", &bytes)
        .with_context(|| format!("loading {origin}"))?;
    let mut instance = plugin
        .instantiate(&Sandbox::default())
        .await
        .with_context(|| format!("instantiating {origin}"))?;
    let spec = instance
        .spec()
        .await
        .with_context(|| format!("asking {origin} for its spec"))?;
    let name = name.unwrap_or(&spec.name).to_string();
    if !valid_name(&name) {
        bail!(
            "`{name}` cannot name a plugin: use letters, digits, `_`, `-` or `.`, starting with \
             a letter or digit (choose one with --name)"
        );
    }
    if spec.version.is_empty() || spec.version.contains(['/', '\\']) || spec.version == ".." {
        bail!(
            "plugin `{name}` reports version `{}`, which cannot name a directory",
            spec.version
        );
    }
    let digest = plugin.digest().to_string();
    let rel = format!("{STORE_DIR}/{name}/{}/{digest}.wasm", spec.version);
    let entry = LockedPlugin {
        name: name.clone(),
        version: spec.version.clone(),
        world: plugin.world().to_string(),
        wit: format!("{WIT_PACKAGE}@{}", plugin.wit_version()),
        sha256: digest.clone(),
        path: rel.clone(),
        source: origin,
        capabilities: spec.capabilities.clone(),
    };

    let mut lock = Lock::load(project_dir)?;
    let unchanged = lock
        .plugins
        .iter()
        .any(|p| p.name == name && p.sha256 == digest);
    let clash = lock
        .plugins
        .iter()
        .find(|p| p.name == name && p.version == spec.version && p.sha256 != digest)
        .cloned();
    if let Some(old) = &clash {
        if !force {
            bail!(
                "{} is already installed with another component: installed sha256 {}, this \
                 component sha256 {digest}; a version names one component: bump the plugin's \
                 version, or pass --force to replace it",
                old.label(),
                old.sha256
            );
        }
    }

    let dest = project_dir.join(&rel);
    let dir = dest.parent().expect("a store path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{digest}.tmp"));
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &dest).with_context(|| format!("writing {}", dest.display()))?;
    if let Some(old) = &clash {
        let _ = std::fs::remove_file(project_dir.join(&old.path));
    }

    lock.plugins
        .retain(|p| !(p.name == name && (p.sha256 == digest || p.version == spec.version)));
    lock.plugins.push(entry.clone());
    lock.save(project_dir)
        .with_context(|| format!("recording {name} in {LOCK_FILE}"))?;
    Ok(Installed {
        entry,
        spec,
        unchanged,
        replaced: clash,
    })
}

/// For messages about references: `name`, `name@version` or `name@sha256:…`.
pub fn describe_ref(name: &str, pin: Option<&PluginPin>) -> String {
    match pin {
        Some(p) => format!("{name}@{p}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str, sha: &str) -> LockedPlugin {
        LockedPlugin {
            name: name.into(),
            version: version.into(),
            world: "destination".into(),
            wit: "sluice:plugin@0.1.0".into(),
            sha256: sha.into(),
            path: format!("{STORE_DIR}/{name}/{version}/{sha}.wasm"),
            source: "test".into(),
            capabilities: vec![],
        }
    }

    #[test]
    fn resolves_bare_pinned_and_digest_references() {
        let lock = Lock {
            lock_version: 1,
            plugins: vec![
                entry("hook", "0.1.0", "aaaaaaaaaaaaaaaa"),
                entry("hook", "0.2.0", "bbbbbbbbbbbbbbbb"),
                entry("solo", "1.0.0", "cccccccccccccccc"),
            ],
        };
        assert!(lock.resolve("other", None).unwrap().is_none());
        assert_eq!(
            lock.resolve("solo", None).unwrap().unwrap().version,
            "1.0.0"
        );
        let err = lock.resolve("hook", None).unwrap_err().to_string();
        assert!(
            err.contains("several installed versions") && err.contains("hook@0.2.0"),
            "{err}"
        );
        let v = PluginPin::Version("0.1.0".into());
        assert_eq!(
            lock.resolve("hook", Some(&v)).unwrap().unwrap().sha256,
            "aaaaaaaaaaaaaaaa"
        );
        let d = PluginPin::Digest("bbbbbbbbbbbb".into());
        assert_eq!(
            lock.resolve("hook", Some(&d)).unwrap().unwrap().version,
            "0.2.0"
        );
        let missing = PluginPin::Version("9.9.9".into());
        let err = lock
            .resolve("hook", Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`hook@9.9.9` is not installed"), "{err}");
    }

    #[test]
    fn lock_order_is_stable_and_numeric() {
        let dir = tempfile_dir();
        let mut lock = Lock {
            lock_version: 1,
            plugins: vec![
                entry("b", "0.10.0", "2"),
                entry("b", "0.9.0", "1"),
                entry("a", "1.0.0", "3"),
            ],
        };
        lock.save(&dir).unwrap();
        let back = Lock::load(&dir).unwrap();
        let order: Vec<(&str, &str)> = back
            .plugins
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(order, [("a", "1.0.0"), ("b", "0.9.0"), ("b", "0.10.0")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sluice-lock-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn describes_references() {
        assert_eq!(describe_ref("x", None), "x");
        assert_eq!(
            describe_ref("x", Some(&PluginPin::Version("1.0.0".into()))),
            "x@1.0.0"
        );
    }
}
