//! The first-party plugins, compiled to components by build.rs and embedded
//! in the binary, so `sluice demo` and a first run need no other files.
//! build.rs generates `embedded(name)`, `EMBEDDED` and a `NAME` / `NAME_PATH`
//! constant per plugin from its one list of plugins.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// Load a built-in plugin, or say which ones exist.
pub fn load_builtin(
    runtime: &sluice_runtime::Runtime,
    name: &str,
) -> anyhow::Result<sluice_runtime::Plugin> {
    let bytes = embedded(name).ok_or_else(|| {
        anyhow::anyhow!(
            "`{name}` is not a built-in plugin ({})",
            EMBEDDED.join(", ")
        )
    })?;
    sluice_runtime::Plugin::from_bytes(runtime, name, bytes)
}
