//! Resolving a project's plugin reference to a loaded [`Plugin`], and the
//! sandbox the project grants it. The run and the CLI both come here.

use crate::{builtin, store};
use anyhow::{anyhow, Context, Result};
use sluice_config::{PluginInstance, PluginRef};
use sluice_runtime::sandbox::intersect::intersect;
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
    };
    plugin.set_name(&cfg.name);
    Ok(plugin)
}

/// The sandbox a project grants one plugin: the intersection of what its
/// spec requests and what the project grants (see [`sluice_runtime::sandbox::intersect`]).
/// Requests the grants do not cover are left out here, logged, and refused
/// by `sluice validate`.
pub fn sandbox_for(cfg: &PluginInstance, spec: &PluginSpec) -> Result<Sandbox> {
    let granted = cfg.granted();
    let intersection = intersect(spec, &cfg.config_json(), &granted);
    for request in intersection
        .uncovered
        .iter()
        .chain(&intersection.unresolved)
    {
        tracing::warn!(plugin = %cfg.name, request = %request, "plugin request not granted");
    }
    Ok(Sandbox::new(intersection.grants))
}
