//! Object names to paths inside the granted directory, and listing it.
//!
//! Inside the sandbox the directory is a WASI preopen, and the runtime itself
//! refuses any path that leaves it. The checks here make the refusal precise
//! (and hold natively, where there is no sandbox): a name is relative, made of
//! plain components only, and must resolve to a regular file under the root.

use sluice_sdk::PluginError;
use std::io;
use std::path::{Component, Path, PathBuf};

/// How deep `discover` walks into subdirectories.
const MAX_DEPTH: usize = 8;

/// The path of object `name` under `root`, refusing names that could escape.
pub fn resolve(root: &str, name: &str) -> Result<PathBuf, PluginError> {
    let bad = |why: &str| {
        PluginError::Config(format!(
            "object `{name}`: {why}; name a file relative to `{root}`"
        ))
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.contains('\0') {
        return Err(bad("the name contains a NUL byte"));
    }
    if name.starts_with('/') || name.starts_with('\\') || Path::new(name).is_absolute() {
        return Err(bad("absolute paths are not allowed"));
    }
    let mut relative = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("`..` is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad("absolute paths are not allowed"))
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(bad("the name does not name a file"));
    }
    let path = Path::new(root).join(&relative);
    ensure_inside(root, name, &path)?;
    let meta = std::fs::metadata(&path).map_err(|e| io_error(name, root, &e))?;
    if !meta.is_file() {
        return Err(PluginError::Permanent(format!(
            "`{name}` in `{root}` is not a regular file"
        )));
    }
    Ok(path)
}

/// Refuse symlinks that lead out of the root. `canonicalize` is unsupported
/// under WASI, where the preopen already confines every lookup.
fn ensure_inside(root: &str, name: &str, path: &Path) -> Result<(), PluginError> {
    let (real_root, real_path) = match (std::fs::canonicalize(root), std::fs::canonicalize(path)) {
        (Ok(r), Ok(p)) => (r, p),
        (Err(e), _) | (_, Err(e)) if e.kind() == io::ErrorKind::Unsupported => return Ok(()),
        (Err(e), _) => return Err(dir_error(root, &e)),
        (_, Err(e)) => return Err(io_error(name, root, &e)),
    };
    if real_path.starts_with(&real_root) {
        Ok(())
    } else {
        Err(PluginError::Config(format!(
            "object `{name}`: it resolves outside `{root}` (through a symbolic link); name a file inside the directory"
        )))
    }
}

pub fn io_error(name: &str, root: &str, e: &io::Error) -> PluginError {
    match e.kind() {
        io::ErrorKind::NotFound => PluginError::Permanent(format!("no file `{name}` in `{root}`")),
        _ => PluginError::Permanent(format!("cannot open `{name}` in `{root}`: {e}")),
    }
}

pub fn dir_error(root: &str, e: &io::Error) -> PluginError {
    PluginError::Config(format!(
        "`path` {root:?}: cannot read the directory ({e}); is it granted to the plugin as `dir:{root}`?"
    ))
}

/// Every regular, non-hidden file under `root`, as names relative to it
/// (with `/` separators), sorted; subdirectories up to [`MAX_DEPTH`] deep.
pub fn list_files(root: &str) -> Result<Vec<String>, PluginError> {
    let mut names = Vec::new();
    walk(Path::new(root), "", 0, &mut names).map_err(|e| dir_error(root, &e))?;
    names.sort();
    Ok(names)
}

fn walk(dir: &Path, prefix: &str, depth: usize, names: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
            continue; // a name that is not UTF-8 cannot be an object name
        };
        if file_name.starts_with('.') {
            continue;
        }
        let name = format!("{prefix}{file_name}");
        // Follows symlinks, so a link to a file lists like the file.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            names.push(name);
        } else if meta.is_dir() && depth < MAX_DEPTH {
            walk(&entry.path(), &format!("{name}/"), depth + 1, names)?;
        }
    }
    Ok(())
}
