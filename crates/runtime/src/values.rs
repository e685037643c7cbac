//! A plugin [`Value`] in the forms people read (JSON, RFC 3339 text),
//! through `sluice-values`, which the guest SDK shares, so host and guest
//! render and parse every value the same way.

use crate::Value;
pub use sluice_values::{
    date_micros, format_date, format_timestamp, parse_date, parse_timestamp, ValueRef,
};

impl Value {
    /// The value borrowed as the shared [`ValueRef`].
    pub fn view(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Boolean(b) => ValueRef::Boolean(*b),
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Float(f) => ValueRef::Float(*f),
            Value::Decimal(s) => ValueRef::Decimal(s),
            Value::Text(s) => ValueRef::Text(s),
            Value::Json(s) => ValueRef::Json(s),
            Value::Bytes(b) => ValueRef::Bytes(b),
            Value::Timestamp(us) => ValueRef::Timestamp(*us),
            Value::Date(d) => ValueRef::Date(*d),
        }
    }
}

/// A value as JSON, for plan samples and fixtures.
pub fn value_json(v: &Value) -> serde_json::Value {
    sluice_values::to_json(v.view())
}
