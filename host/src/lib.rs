//! Sluice: a reverse-ETL runtime whose connectors and transforms are
//! sandboxed WebAssembly components.
//!
//! - [`runtime`]: the wasmtime host, the sandbox and plugin instances.
//! - [`plugins`]: the first-party plugins embedded in the binary.
//! - [`config`]: the project file, `sluice.yaml`.
//! - [`sync`]: keys, hashes, diffing and field mapping.
//! - [`state`]: what was delivered, the rejected-row ledger, run history.
//! - [`cli`]: the `sluice` command line.

pub mod cli;
pub mod config;
pub mod plugins;
pub mod runtime;
pub mod state;
pub mod sync;

pub use runtime::bindings::types::{Batch, PluginError, PluginSpec, Row, RowResult, Value};
