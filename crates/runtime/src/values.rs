//! A plugin [`Value`] in the forms people read (JSON, RFC 3339 text),
//! through `sluice-values`, which the guest SDK shares, so host and guest
//! render and parse every value the same way.

use crate::Value;
/// The canonical form the warehouse diff hashes (`docs/warehouse-diff.md`).
pub use sluice_values::canonical;
pub use sluice_values::{
    date_micros, format_date, format_timestamp, parse_date, parse_timestamp, ValueRef,
};

sluice_values::impl_value_view!(Value);

/// A value as JSON, for plan samples and fixtures.
pub fn value_json(v: &Value) -> serde_json::Value {
    sluice_values::to_json(v.view())
}
