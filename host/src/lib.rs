//! Sluice: a reverse-ETL runtime whose connectors and transforms are
//! sandboxed WebAssembly components.
//!
//! - [`runtime`]: the wasmtime host, the sandbox and plugin instances.
//! - [`plugins`]: the first-party plugins embedded in the binary.
//! - [`cli`]: the `sluice` command line.

pub mod cli;
pub mod plugins;
pub mod runtime;

pub use runtime::bindings::types::{Batch, PluginError, PluginSpec, Row, RowResult, Value};
