//! What a component is, read from its bytes before anything is compiled:
//! a server refuses an upload that is not a Sluice plugin of a world and
//! version this host runs without spending a compilation on it (after
//! Zed's extension host, which reads the API version before compiling).
//!
//! The bytes are validated by wasmparser (the parser wasmtime itself
//! uses), then the names of the component's own top-level exports are
//! judged by the rule loading applies after compiling
//! ([`crate::plugin`]: exactly one `sluice:plugin/*-api@0.1.x`).

use crate::plugin::world_of_exports;
use anyhow::{anyhow, bail, Result};
use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};

/// What an uploaded component is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// `source`, `transform`, `columnar-transform` or `destination`.
    pub world: &'static str,
    /// The `sluice:plugin` version it targets, e.g. `0.1.0`.
    pub version: String,
}

/// Reads `bytes` as a component and says which Sluice world and version it
/// exports, or why it is not a plugin this host runs.
pub fn inspect(bytes: &[u8]) -> Result<Inspected> {
    if !bytes.starts_with(b"\0asm") {
        bail!("not a WebAssembly file (it does not start with \\0asm)");
    }
    let exports = top_level_exports(bytes)?;
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| anyhow!("not valid WebAssembly: {e}"))?;
    let (world, version) = world_of_exports(&exports)?;
    Ok(Inspected {
        world: world.name(),
        version,
    })
}

/// The names the outermost component exports (not those of the modules
/// and components nested in it).
fn top_level_exports(bytes: &[u8]) -> Result<Vec<String>> {
    let mut depth = 0usize;
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| anyhow!("not a readable WebAssembly binary: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && matches!(encoding, Encoding::Module) {
                    bail!(
                        "a core WebAssembly module, not a component; build the plugin as a \
                         component (cargo build --target wasm32-wasip2, or wasm-tools component new)"
                    );
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| anyhow!("unreadable export section: {e}"))?;
                    exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_module_and_garbage_are_named() {
        // The smallest core module: magic and version 1.
        let module = b"\0asm\x01\0\0\0";
        let err = inspect(module).unwrap_err().to_string();
        assert!(err.contains("core WebAssembly module"), "{err}");
        let err = inspect(b"PK\x03\x04zip").unwrap_err().to_string();
        assert!(err.contains("does not start with"), "{err}");
        let err = inspect(b"\0asm\x0d\0\x01\0\xff\xff")
            .unwrap_err()
            .to_string();
        assert!(err.contains("WebAssembly"), "{err}");
    }

    #[test]
    fn an_empty_component_is_not_a_plugin() {
        // The component header (version 0xd, layer 1) and nothing else.
        let err = inspect(b"\0asm\x0d\0\x01\0").unwrap_err().to_string();
        assert!(err.contains("not a Sluice plugin"), "{err}");
    }
}
