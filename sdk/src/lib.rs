//! # sluice-sdk: write Sluice plugins in Rust
//!
//! A Sluice plugin is a WebAssembly component that exports one of the worlds
//! of `wit/plugin.wit`: a source, a transform or a destination. This crate
//! hides the WIT bindings: implement one trait and call one macro.
//!
//! ```
//! use sluice_sdk::prelude::*;
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn spec() -> PluginSpec {
//!         PluginSpec::new("upper", env!("CARGO_PKG_VERSION"), "Uppercases every text value")
//!     }
//!     fn open(_config: &str) -> Result<Self, PluginError> {
//!         Ok(Upper)
//!     }
//!     fn transform(&mut self, mut batch: Batch) -> Result<Transformed, PluginError> {
//!         for row in &mut batch.rows {
//!             for value in row.iter_mut() {
//!                 if let Value::Text(s) = value {
//!                     *s = s.to_uppercase();
//!                 }
//!             }
//!         }
//!         Ok(Transformed::all(batch))
//!     }
//! }
//!
//! sluice_sdk::export_transform!(Upper);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type
//! `cdylib`), or with `sluice plugin build`.

#[doc(hidden)]
pub mod bindings;
pub mod columns;
pub mod config;
pub mod http;
pub mod log;
mod plugin;
pub mod quota;
pub mod value;

pub use bindings::source::sluice::plugin::types::{
    Batch, Column, ColumnBatch, ColumnValues, ColumnsTransformed, Field, FieldType, ObjectInfo,
    Packed, PluginError, PluginSpec, RateLimit, RateLimitedInfo, ReadRequest, Row, RowError,
    RowResult, Transformed, Value, WriteMode, WriteTarget,
};
pub use bindings::warehouse_diff::exports::sluice::plugin::warehouse_diff_api::{
    DeliveredRow, DiffRequest,
};
pub use plugin::{
    ColumnarTransform, Destination, Estimate, Lookup, Reader, Source, Transform, WarehouseDiff,
    Writer,
};
/// The canonical form the warehouse diff hashes (`docs/warehouse-diff.md`).
pub use sluice_values::canonical;
pub use value::{
    format_date, format_timestamp, is_json_number, parse_date, parse_timestamp,
    write_timestamp_json,
};

impl PluginError {
    /// The same error, its message prefixed with `context` (which source,
    /// which call), its kind and any retry hint kept.
    pub fn context(self, context: &str) -> PluginError {
        match self {
            PluginError::Config(m) => PluginError::Config(format!("{context}: {m}")),
            PluginError::Auth(m) => PluginError::Auth(format!("{context}: {m}")),
            PluginError::RateLimited(r) => PluginError::RateLimited(RateLimitedInfo {
                retry_after_ms: r.retry_after_ms,
                message: format!("{context}: {}", r.message),
            }),
            PluginError::Retryable(m) => PluginError::Retryable(format!("{context}: {m}")),
            PluginError::Permanent(m) => PluginError::Permanent(format!("{context}: {m}")),
        }
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::adapters::*;
}

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::config::parse_config;
    pub use crate::{
        Batch, Column, ColumnBatch, ColumnValues, ColumnarTransform, ColumnsTransformed,
        Destination, Estimate, Field, FieldType, Lookup, ObjectInfo, Packed, PluginError,
        PluginSpec, RateLimit, ReadRequest, Reader, Row, RowError, RowResult, Source, Transform,
        Transformed, Value, WarehouseDiff, WriteMode, WriteTarget, Writer,
    };
}
