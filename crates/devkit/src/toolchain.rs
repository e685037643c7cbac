//! The toolchains that turn Python and JavaScript plugins into components
//! (componentize-py, componentize-js), installed by `sluice plugin build`
//! into the user's cache, never into a project or a sluice checkout.
//!
//! They live in `$SLUICE_TOOLCHAIN_DIR`, else `$XDG_CACHE_HOME/sluice/toolchains`,
//! else `~/.cache/sluice/toolchains`. Each toolchain lives in a folder named after what
//! pins it (the `componentize-py==X` line; a digest of the resolved npm
//! packages of `package-lock.json`), so projects pinning the same versions
//! share one install and a project pinning others gets its own. An install
//! holds a lock file while it runs and marks its folder complete last, so
//! builds running at the same time install once and a half-finished
//! install (a killed build) is redone, not used.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Written into a toolchain folder once its install has finished.
const COMPLETE: &str = ".complete";

/// Where the toolchains are installed (see the module's documentation).
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_TOOLCHAIN_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir()
        .map(|d| d.join("sluice").join("toolchains"))
        .context(
            "no cache directory for the plugin toolchains: set SLUICE_TOOLCHAIN_DIR, \
             XDG_CACHE_HOME or HOME",
        )
}

/// The Python that creates toolchain venvs and checks syntax:
/// `$SLUICE_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The componentize-py version a `requirements.txt` pins
/// (`componentize-py==X`), or why it pins none.
pub fn componentize_py_pin(requirements: &str) -> Result<&str> {
    requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("componentize-py=="))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .context("requirements.txt pins no `componentize-py==VERSION`")
}

/// A venv with the componentize-py that `requirements` pins; returns its
/// `componentize-py` executable.
pub fn python_toolchain(requirements: &str) -> Result<PathBuf> {
    let version = componentize_py_pin(requirements)?;
    let dir = cache_root()?
        .join("python")
        .join(format!("componentize-py-{version}"));
    install_once(&dir, "componentize-py", |dir| {
        std::fs::write(dir.join("requirements.txt"), requirements)
            .with_context(|| format!("writing {}", dir.join("requirements.txt").display()))?;
        let python = python();
        run(
            Command::new(&python).args(["-m", "venv"]).arg(dir),
            &format!("{python} -m venv {}", dir.display()),
        )?;
        run(
            Command::new(dir.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(dir.join("requirements.txt")),
            &format!("pip install componentize-py=={version}"),
        )
    })?;
    Ok(dir.join("bin/componentize-py"))
}

/// The folder of an npm install of `package.json` + `package-lock.json`
/// (with `node_modules/`), named by the packages the lock resolves.
pub fn js_toolchain(package_json: &str, package_lock: &str) -> Result<PathBuf> {
    let key = lock_key(package_lock)?;
    let dir = cache_root()?.join("js").join(key);
    install_once(&dir, "componentize-js", |dir| {
        for (name, text) in [
            ("package.json", package_json),
            ("package-lock.json", package_lock),
        ] {
            std::fs::write(dir.join(name), text)
                .with_context(|| format!("writing {}", dir.join(name).display()))?;
        }
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(dir),
            &format!("npm ci (in {})", dir.display()),
        )
    })?;
    Ok(dir)
}

/// `componentize-js-VERSION-DIGEST`: the version for people, and a digest
/// of every resolved package (not the project's own name) so two locks
/// that install the same tree share a folder.
fn lock_key(package_lock: &str) -> Result<String> {
    let lock: serde_json::Value =
        serde_json::from_str(package_lock).context("package-lock.json is not valid JSON")?;
    let Some(packages) = lock.get("packages").and_then(|p| p.as_object()) else {
        bail!("package-lock.json has no `packages` (npm 7 or later writes them)");
    };
    let version = packages
        .get("node_modules/@bytecodealliance/componentize-js")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .context("package-lock.json does not resolve @bytecodealliance/componentize-js")?;
    let mut resolved: Vec<(&String, &serde_json::Value)> =
        packages.iter().filter(|(k, _)| !k.is_empty()).collect();
    resolved.sort_by(|a, b| a.0.cmp(b.0));
    let mut digest = Sha256::new();
    for (name, entry) in resolved {
        digest.update(name.as_bytes());
        digest.update(entry.to_string().as_bytes());
    }
    Ok(format!(
        "componentize-js-{version}-{}",
        &hex::encode(digest.finalize())[..12]
    ))
}

/// Run `install` into `dir` unless a finished install is already there,
/// holding `dir.lock` so concurrent builds install once.
fn install_once(dir: &Path, what: &str, install: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if dir.join(COMPLETE).is_file() {
        return Ok(());
    }
    let parent = dir.parent().context("a toolchain folder has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("creating the lock {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    // Another build may have finished the install while this one waited.
    if dir.join(COMPLETE).is_file() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the unfinished install {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("sluice: installing {what} into {} (once)", dir.display());
    install(dir).with_context(|| format!("installing {what} into {}", dir.display()))?;
    std::fs::write(dir.join(COMPLETE), "")
        .with_context(|| format!("marking {} complete", dir.display()))?;
    Ok(())
}

/// Run a command, its output going to the user; fail naming `what`.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {what} (is it installed and on PATH?)"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Write `text` to `path` unless it already holds exactly that, through a
/// temporary file and a rename so a concurrent reader never sees half.
pub fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
