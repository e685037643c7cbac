//! Granted directories, opened without following symbolic links.
//!
//! A directory grant, and a plugin's request narrowed to a sub-directory of
//! one ([`intersect`](crate::sandbox::intersect)), name a host path. That
//! path is opened here one component at a time from `/`, each component
//! relative to the directory opened before it and never through a symbolic
//! link. Otherwise a plugin with a writable grant could plant a link inside
//! it (`esc -> /`) and have a later instance that requests `dir:/in/esc`
//! opened at `/`. Inside the opened directory, wasmtime-wasi's capability
//! sandbox (cap-std) keeps the plugin from following links out of it.
//!
//! The directory handed to wasmtime-wasi is the one opened here: on Linux
//! through `/proc/self/fd`, so nothing can swap the path between the check
//! and the open. Elsewhere the checked path is opened again by name.

use cap_primitives::fs::{open_ambient_dir, open_dir_nofollow, stat, FollowSymlinks};
use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// Why a granted directory could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirRefusal {
    /// A component of the path is a symbolic link.
    Symlink { link: PathBuf },
    /// The directory does not exist or cannot be opened.
    Unusable { path: PathBuf, reason: String },
}

impl std::fmt::Display for DirRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirRefusal::Symlink { link } => write!(
                f,
                "{} is a symbolic link, and directory grants never follow links \
                 (grant the directory it points to instead)",
                link.display()
            ),
            DirRefusal::Unusable { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

/// An open granted directory.
#[derive(Debug)]
pub struct OpenDir {
    file: File,
    path: PathBuf,
}

impl OpenDir {
    /// The path to hand to wasmtime-wasi's `preopened_dir`, which opens
    /// directories by name: this very directory while `self` lives.
    pub fn preopen_path(&self) -> PathBuf {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let by_fd = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
            if by_fd.exists() {
                return by_fd;
            }
        }
        self.path.clone()
    }
}

/// Open `path` (absolute, or relative to the working directory) without
/// following a symbolic link in any component. `..` and `.` are resolved
/// by name first, as the operator wrote them.
pub fn open_no_follow(path: &Path) -> Result<OpenDir, DirRefusal> {
    let unusable = |path: &Path, e: std::io::Error| DirRefusal::Unusable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| unusable(path, e))?
            .join(path)
    };
    let mut names = Vec::new();
    for component in absolute.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::ParentDir => {
                names.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let root = Path::new("/");
    let mut dir = open_ambient_dir(root, cap_primitives::ambient_authority())
        .map_err(|e| unusable(root, e))?;
    let mut reached = PathBuf::from("/");
    for name in names {
        reached.push(name);
        let name = Path::new(name);
        dir = match open_dir_nofollow(&dir, name) {
            Ok(next) => next,
            Err(e) => {
                let is_link =
                    stat(&dir, name, FollowSymlinks::No).is_ok_and(|m| m.file_type().is_symlink());
                return Err(if is_link {
                    DirRefusal::Symlink { link: reached }
                } else {
                    unusable(&reached, e)
                });
            }
        };
    }
    Ok(OpenDir {
        file: dir,
        path: reached,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_symlink_in_any_component_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("grant/real/deeper")).unwrap();
        std::fs::create_dir_all(root.join("outside/sub")).unwrap();
        symlink("/", root.join("grant/esc")).unwrap();
        symlink(root.join("outside"), root.join("grant/out")).unwrap();

        assert!(open_no_follow(&root.join("grant/real/deeper")).is_ok());
        assert!(open_no_follow(&root.join("grant/real/../real")).is_ok());
        assert_eq!(
            open_no_follow(&root.join("grant/esc")).unwrap_err(),
            DirRefusal::Symlink {
                link: root.join("grant/esc")
            }
        );
        // A link in the middle is refused as well as one at the end.
        let refusal = open_no_follow(&root.join("grant/out/sub")).unwrap_err();
        assert_eq!(
            refusal,
            DirRefusal::Symlink {
                link: root.join("grant/out")
            }
        );
        assert!(
            refusal.to_string().contains("never follow links"),
            "{refusal}"
        );
        assert!(matches!(
            open_no_follow(&root.join("grant/missing")),
            Err(DirRefusal::Unusable { .. })
        ));
    }

    #[test]
    fn the_preopen_path_is_the_opened_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("marker"), "here").unwrap();
        let dir = open_no_follow(tmp.path()).unwrap();
        let by = dir.preopen_path();
        assert_eq!(std::fs::read_to_string(by.join("marker")).unwrap(), "here");
    }
}
