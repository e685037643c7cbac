//! Sluice: a reverse-ETL runtime whose connectors and transforms are
//! sandboxed WebAssembly components.

pub mod runtime;

pub use runtime::bindings::types::{Batch, PluginError, PluginSpec, Row, RowResult, Value};
