//! Helpers on the contract's data types: building values, reading rows by
//! column name, and specs with sane defaults; dates and timestamps as text.
//! Rendering and parsing are `sluice-values`', shared with the host, so host
//! and guest agree on every value and date.

use crate::{Batch, PluginSpec, RowError, RowResult, Transformed, Value};
pub use sluice_values::{
    format_date, format_timestamp, is_json_number, parse_date, parse_timestamp,
    write_timestamp_json, ValueRef,
};

sluice_values::impl_value_view!(Value);

impl Value {
    /// The text of a `text`, `decimal` or `json` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Decimal(s) | Value::Json(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an i64, if it is an integer (or a whole float/decimal).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            Value::Decimal(s) | Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as an f64, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Decimal(s) | Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Render the value as JSON (timestamps as RFC 3339 UTC, dates as
    /// YYYY-MM-DD, bytes as lowercase hex, decimals as JSON numbers when they
    /// fit, JSON documents inline).
    pub fn to_json(&self) -> serde_json::Value {
        sluice_values::to_json(self.view())
    }

    /// Write the value's plain text form (what a CSV cell or an API string
    /// field would carry) into `out`.
    pub fn write_text(&self, out: &mut String) {
        sluice_values::write_text(self.view(), out)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

impl Batch {
    pub fn new(columns: Vec<String>) -> Self {
        Batch {
            columns,
            rows: Vec::new(),
        }
    }

    /// The position of a column, by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i` as a JSON object keyed by column name.
    pub fn row_json(&self, i: usize) -> serde_json::Map<String, serde_json::Value> {
        self.columns
            .iter()
            .zip(&self.rows[i])
            .map(|(c, v)| (c.clone(), v.to_json()))
            .collect()
    }
}

impl Transformed {
    /// Every input row came through.
    pub fn all(batch: Batch) -> Self {
        Transformed {
            batch,
            errors: Vec::new(),
        }
    }

    /// Record that input row `index` failed; it must not appear in `batch`.
    pub fn reject(&mut self, index: usize, message: impl Into<String>) {
        self.errors.push(RowError {
            index: index as u32,
            message: message.into(),
        });
    }
}

impl RowResult {
    /// Whether the destination accepted the row.
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            RowResult::Created | RowResult::Updated | RowResult::Deleted | RowResult::Accepted
        )
    }
}

impl PluginSpec {
    /// A spec with no capabilities, an empty config schema, no rate limit and
    /// batches of 1,000 rows.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        PluginSpec {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            config_schema: r#"{"type":"object"}"#.into(),
            capabilities: Vec::new(),
            rate_limit: None,
            batch_size: 1000,
        }
    }

    pub fn config_schema(mut self, schema: serde_json::Value) -> Self {
        self.config_schema = schema.to_string();
        self
    }

    pub fn capability(mut self, capability: &str) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows;
        self
    }

    pub fn rate_limit(mut self, requests: u32, per_ms: u32, concurrency: u32) -> Self {
        self.rate_limit = Some(crate::RateLimit {
            requests,
            per_ms,
            concurrency,
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_json() {
        assert_eq!(
            Value::Decimal("12.50".into()).to_json(),
            serde_json::json!(12.5)
        );
        assert_eq!(
            Value::Bytes(vec![0xde, 0xad]).to_json(),
            serde_json::json!("dead")
        );
        assert_eq!(
            Value::Json(r#"{"a":1}"#.into()).to_json(),
            serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn timestamp_json_matches_to_json() {
        for us in [
            0,
            1,
            -1,
            1_714_566_600_000_000,
            1_700_000_000_123_456,
            -62_167_219_200_000_000,
            -62_167_219_200_000_001,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            951_782_400_000_000,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            let expected = serde_json::to_string(&Value::Timestamp(us).to_json()).unwrap();
            if write_timestamp_json(&mut out, us) {
                assert_eq!(String::from_utf8(out).unwrap(), expected, "{us}");
            } else {
                // Only years outside 0..=9999 take the SDK's path.
                assert!(out.is_empty(), "{us}");
                assert!(
                    expected.starts_with("\"-") || expected.split('-').next().unwrap().len() > 5,
                    "{us}: {expected}"
                );
            }
        }
    }
}
