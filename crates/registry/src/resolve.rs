//! Resolving a project's plugin reference to a loaded [`Plugin`], and the
//! sandbox the project grants it. The run and the CLI both come here.

use crate::{builtin, store};
use anyhow::{anyhow, bail, Context, Result};
use sluice_config::grant::GrantKind;
use sluice_config::{PluginInstance, PluginRef};
use sluice_runtime::sandbox::intersect::intersect;
use sluice_runtime::sandbox::protected::{overlaps, Protected};
use sluice_runtime::sandbox::scrub::Scrubber;
use sluice_runtime::{Plugin, PluginSpec, Runtime, Sandbox};
use std::path::Path;

/// Resolve a plugin reference: a file; an installed plugin (bare name or
/// pinned `name@version` / `name@sha256:…`), its digest checked against
/// `sluice.lock`; or, for a bare name that is not installed, the plugin built
/// into the binary.
pub fn load_plugin(runtime: &Runtime, project_dir: &Path, cfg: &PluginInstance) -> Result<Plugin> {
    let mut plugin = match &cfg.plugin {
        PluginRef::Path(path) => Plugin::load(runtime, path)?,
        PluginRef::Installed(name) => {
            match store::load_installed(runtime, project_dir, name, None)? {
                Some(p) => p,
                None => builtin::load_builtin(runtime, name).with_context(|| {
                    format!(
                        "`{}` uses plugin `{name}`, which is neither installed in this project \
                         (sluice plugin install) nor a file",
                        cfg.name
                    )
                })?,
            }
        }
        PluginRef::Pinned { name, pin } => {
            store::load_installed(runtime, project_dir, name, Some(pin))?
                .ok_or_else(|| anyhow!("plugin `{name}@{pin}` is not installed in this project"))?
        }
        PluginRef::Uploaded { name, sha256 } => {
            load_uploaded(runtime, project_dir, name, sha256)
                .with_context(|| format!("`{}` uses uploaded component `{name}`", cfg.name))?
        }
    };
    plugin.set_name(&cfg.name);
    Ok(plugin)
}

/// Where a server writes an uploaded component into a project before a
/// run (inside `.sluice`, which no upload and no grant may reach).
pub fn uploaded_path(project_dir: &Path, sha256: &str) -> std::path::PathBuf {
    project_dir
        .join(".sluice")
        .join("uploaded")
        .join(format!("{sha256}.wasm"))
}

/// Loads an uploaded component, refusing bytes whose SHA-256 is not the
/// pinned one before anything is compiled.
fn load_uploaded(
    runtime: &Runtime,
    project_dir: &Path,
    name: &str,
    sha256: &str,
) -> Result<Plugin> {
    let path = uploaded_path(project_dir, sha256);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "component `{name}@sha256:{sha256}` is not uploaded for this project ({} is missing)",
            path.display()
        )
    })?;
    let found = sluice_runtime::cache::digest(&bytes);
    if found != sha256 {
        bail!("component `{name}` has SHA-256 {found}, but the project pins {sha256}; refused before compiling");
    }
    Plugin::from_bytes(runtime, name, &bytes)
}

/// Sluice's own files in a project, which no directory grant may reach: the
/// runtime's compile cache, the project's `.sluice` directory (delivery
/// state, installed plugins) and `sluice.lock`.
pub fn protected_paths(runtime: &Runtime, project_dir: &Path) -> Vec<Protected> {
    let mut paths = runtime.protected_paths();
    paths.push(Protected::new(
        project_dir.join(".sluice"),
        "the project's state and plugin store (.sluice)",
    ));
    paths.push(Protected::new(
        project_dir.join(store::LOCK_FILE),
        "the project's plugin lock file",
    ));
    paths
}

/// The directory grants of `cfg` that reach Sluice's own files, one message
/// each, naming the grant as written and what it overlaps.
pub fn refused_grants(runtime: &Runtime, project_dir: &Path, cfg: &PluginInstance) -> Vec<String> {
    let protected = protected_paths(runtime, project_dir);
    let mut refused = Vec::new();
    for grant in &cfg.grants {
        let GrantKind::Dir(dir) = &grant.kind else {
            continue;
        };
        for overlap in overlaps(std::slice::from_ref(dir), &protected) {
            refused.push(format!(
                "`{}` is granted `{}`, but {overlap}; grant a directory beside it instead",
                cfg.name, grant.text
            ));
        }
    }
    refused
}

/// The sandbox a project grants one plugin: the intersection of what its
/// spec requests and what the project grants (see [`sluice_runtime::sandbox::intersect`]).
/// Requests the grants do not cover are left out here, logged, and refused
/// by `sluice validate`. A directory grant that reaches Sluice's own files
/// ([`protected_paths`]) is an error.
pub fn sandbox_for(
    runtime: &Runtime,
    project_dir: &Path,
    cfg: &PluginInstance,
    spec: &PluginSpec,
) -> Result<Sandbox> {
    let refused = refused_grants(runtime, project_dir, cfg);
    if !refused.is_empty() {
        bail!("{}", refused.join("; "));
    }
    let granted = cfg.granted();
    let intersection = intersect(spec, &cfg.config_json(), &granted);
    for request in intersection
        .uncovered
        .iter()
        .chain(&intersection.unresolved)
    {
        tracing::warn!(plugin = %cfg.name, request = %request, "plugin request not granted");
    }
    let mut sandbox = Sandbox::new(intersection.grants);
    // A CA bundle for the plugin's TLS may come from any directory granted
    // to it, requested or not (the host reads it, not the plugin).
    sandbox.tls_ca_dirs = granted.dirs.clone();
    // The project's and the plugin's `limits:` over the runtime's defaults.
    if !cfg.limits.is_empty() {
        sandbox.limits = Some(cfg.limits.apply(&runtime.options().limits));
    }
    // Secrets of this plugin's config are hidden in every line it logs.
    sandbox.secrets = Scrubber::new(cfg.secret_values());
    Ok(sandbox)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::{Grant, Location, Str};
    use sluice_runtime::RuntimeOptions;
    use std::sync::Arc;

    fn instance(project: &Path, grants: &[&str]) -> PluginInstance {
        PluginInstance {
            name: "files".into(),
            plugin: PluginRef::Installed("files".into()),
            config: Default::default(),
            grants: grants
                .iter()
                .map(|g| Grant {
                    text: Str::plain(*g),
                    kind: GrantKind::parse(g, project).unwrap(),
                })
                .collect(),
            limits: Default::default(),
            location: Location {
                file: Arc::from(project.join("sluice.yaml")),
                line: 1,
                column: 1,
            },
        }
    }

    fn spec() -> PluginSpec {
        PluginSpec {
            name: "files".into(),
            version: "0.1.0".into(),
            description: String::new(),
            capabilities: vec![],
            config_schema: "{}".into(),
            rate_limit: None,
            batch_size: 100,
        }
    }

    #[test]
    fn grants_reaching_sluices_own_files_are_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("proj");
        let cache = tmp.path().join("cache");
        std::fs::create_dir_all(project.join("data")).unwrap();
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(cache.clone()),
            ..Default::default()
        })
        .unwrap();
        let refused =
            |grants: &[&str]| refused_grants(&runtime, &project, &instance(&project, grants));

        assert!(refused(&["dir:data:/data:rw", "https://api.example.com"]).is_empty());
        let whole = refused(&["dir:.:/p:rw"]);
        assert_eq!(whole.len(), 2, "{whole:?}");
        assert!(
            whole[0].starts_with("`files` is granted `dir:.:/p:rw`, but"),
            "{whole:?}"
        );
        assert!(whole[0].contains(".sluice"), "{whole:?}");
        assert!(whole[1].contains("sluice.lock"), "{whole:?}");
        let store = refused(&["dir:.sluice/plugins"]);
        assert!(store[0].contains("lies inside"), "{store:?}");
        let cached = refused(&[&format!("dir:{}", tmp.path().display())]);
        assert!(
            cached.iter().any(|m| m.contains("the compile cache")),
            "{cached:?}"
        );

        let err = sandbox_for(
            &runtime,
            &project,
            &instance(&project, &["dir:.:rw"]),
            &spec(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("which no grant may reach"), "{err}");
        assert!(sandbox_for(
            &runtime,
            &project,
            &instance(&project, &["dir:data"]),
            &spec()
        )
        .is_ok());
    }
}
