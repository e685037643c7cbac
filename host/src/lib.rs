//! Sluice: a reverse-ETL runtime whose connectors and transforms are
//! sandboxed WebAssembly components.

pub mod config;
pub mod runtime;
pub mod state;
pub mod sync;

pub use runtime::bindings::types::{Batch, PluginError, PluginSpec, Row, RowResult, Value};
