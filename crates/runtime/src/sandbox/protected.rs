//! Sluice's own files, which no directory grant may reach: the compile cache
//! (a plugin that could write there could plant code the host runs as
//! another plugin), and a project's `.sluice` directory (delivery state,
//! installed plugins) and `sluice.lock`. A grant overlaps a protected path
//! when it contains it or lies inside it; both are refused.
//!
//! The runtime refuses grants that reach its compile cache when it creates
//! an instance; the registry adds the project's paths when it checks a
//! project's grants (`sluice validate` and every run).

use super::policy::DirGrant;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A path no grant may reach, and what it is (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub path: PathBuf,
    pub what: String,
}

impl Protected {
    pub fn new(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Protected {
            path: path.into(),
            what: what.into(),
        }
    }
}

/// A directory grant that reaches a protected path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The granted host directory, resolved.
    pub grant: PathBuf,
    pub protected: Protected,
    /// The grant contains the protected path (rather than lying inside it).
    pub contains: bool,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let relation = if self.contains {
            "contains"
        } else {
            "lies inside"
        };
        write!(
            f,
            "{} {relation} {}, {}, which no grant may reach",
            self.grant.display(),
            self.protected.path.display(),
            self.protected.what
        )
    }
}

/// Where `path` really is: absolute, `.` and `..` resolved by name (as the
/// sandbox opens it, see [`dirs`](crate::sandbox::dirs)), then symbolic
/// links resolved in the longest part that exists, the rest appended.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut lexical = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// Whether granting `dir` reaches `protected`.
pub fn overlap(dir: &Path, protected: &Protected) -> Option<Overlap> {
    let grant = resolve(dir);
    let target = resolve(&protected.path);
    let contains = if target.starts_with(&grant) {
        true
    } else if grant.starts_with(&target) {
        false
    } else {
        return None;
    };
    Some(Overlap {
        grant,
        protected: protected.clone(),
        contains,
    })
}

/// Every overlap of `dirs` with `protected`.
pub fn overlaps(dirs: &[DirGrant], protected: &[Protected]) -> Vec<Overlap> {
    dirs.iter()
        .flat_map(|d| protected.iter().filter_map(|p| overlap(&d.host, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_may_neither_contain_nor_lie_inside_a_protected_path() {
        let tmp = tempfile::tempdir().unwrap();
        let proj = tmp.path().join("proj");
        std::fs::create_dir_all(proj.join(".sluice/plugins")).unwrap();
        std::fs::create_dir_all(proj.join("data")).unwrap();
        let state = Protected::new(proj.join(".sluice"), "the project's state");
        let lock = Protected::new(proj.join("sluice.lock"), "the lock file");

        let o = overlap(&proj, &state).unwrap();
        assert!(o.contains);
        assert!(o.to_string().contains("contains"), "{o}");
        assert!(
            overlap(&proj, &lock).unwrap().contains,
            "even before it exists"
        );
        assert!(
            !overlap(&proj.join(".sluice/plugins"), &state)
                .unwrap()
                .contains
        );
        assert!(overlap(&proj.join("data"), &state).is_none());
        assert!(overlap(&proj.join("data"), &lock).is_none());
        // Names that merely share a prefix are not inside.
        assert!(overlap(&proj.join(".sluice-old"), &state).is_none());
        // `..` is resolved.
        assert!(overlap(&proj.join("data/.."), &state).is_some());
        assert!(overlap(Path::new("/"), &state).unwrap().contains);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_protected_path_is_seen_through() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::os::unix::fs::symlink(&cache, tmp.path().join("alias")).unwrap();
        let protected = Protected::new(&cache, "the compile cache");
        assert!(overlap(&tmp.path().join("alias"), &protected).is_some());
        assert!(overlap(&tmp.path().join("alias/sub"), &protected).is_some());
    }

    #[test]
    fn overlaps_lists_each_grant_and_path() {
        let grants = [
            DirGrant {
                host: "/p".into(),
                guest: "/p".into(),
                writable: true,
            },
            DirGrant {
                host: "/elsewhere".into(),
                guest: "/e".into(),
                writable: false,
            },
        ];
        let protected = [
            Protected::new("/p/.sluice", "state"),
            Protected::new("/p/sluice.lock", "lock"),
        ];
        let found = overlaps(&grants, &protected);
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|o| o.grant == Path::new("/p")));
    }
}
