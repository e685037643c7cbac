//! Sluice: a reverse-ETL runtime whose connectors and transforms are
//! sandboxed WebAssembly components.
//!
//! - [`runtime`]: the wasmtime host, the sandbox and plugin instances.
//! - [`plugins`]: the first-party plugins embedded in the binary.
//! - [`config`]: the project file, `sluice.yaml`.
//! - [`sync`]: keys, hashes, diffing and field mapping.
//! - [`state`]: what was delivered, the rejected-row ledger, run history.
//! - [`plugin_store`]: installed plugins and `sluice.lock`.
//! - [`cassette`]: recorded HTTP exchanges for offline plugin tests.
//! - [`harness`]: `sluice plugin test`, fixtures in, diffs out.
//! - [`grants`]: a plugin's requests against the project's grants.
//! - [`scaffold`]: `sluice plugin new` and `sluice plugin build`.
//! - [`cli`]: the `sluice` command line.

pub mod cassette;
pub mod cli;
pub mod config;
pub mod grants;
pub mod harness;
pub mod plugin_store;
pub mod plugins;
pub mod runtime;
pub mod scaffold;
pub mod state;
pub mod sync;

pub use runtime::bindings::types::{Batch, PluginError, PluginSpec, Row, RowResult, Value};
