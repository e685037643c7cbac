//! Helpers on the contract's data types: building values, reading rows by
//! column name, and specs with sane defaults.

use crate::{Batch, PluginSpec, RowError, RowResult, Transformed, Value};

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
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Boolean(b) => J::Bool(*b),
            Value::Integer(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Decimal(s) => serde_json::from_str::<serde_json::Number>(s)
                .map(J::Number)
                .unwrap_or_else(|_| J::String(s.clone())),
            Value::Text(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(hex(b)),
            Value::Timestamp(us) => J::String(format_timestamp(*us)),
            Value::Date(days) => J::String(format_date(*days)),
            Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
        }
    }

    /// Write the value's plain text form (what a CSV cell or an API string
    /// field would carry) into `out`.
    pub fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Value::Null => {}
            Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Integer(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Value::Decimal(s) | Value::Text(s) | Value::Json(s) => out.push_str(s),
            Value::Bytes(b) => out.push_str(&hex(b)),
            Value::Timestamp(us) => out.push_str(&format_timestamp(*us)),
            Value::Date(d) => out.push_str(&format_date(*d)),
        }
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

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2024-05-01`
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2024-05-01T12:30:00.000001Z` (fraction only when non-zero)
pub fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:06}Z")
    }
}

/// Append `"2024-05-01T12:30:00[.000001]Z"` (the JSON string of
/// [`format_timestamp`]) to `out` without allocating, for years 0 to 9999.
/// Returns false, writing nothing, outside that range. For destinations that
/// encode many timestamps.
pub fn write_timestamp_json(out: &mut Vec<u8>, micros: i64) -> bool {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        return false;
    }
    let sod = secs.rem_euclid(86_400);
    let digits = |out: &mut Vec<u8>, n: i64, width: u32| {
        for p in (0..width).rev() {
            out.push(b'0' + ((n / 10i64.pow(p)) % 10) as u8);
        }
    };
    out.push(b'"');
    digits(out, y, 4);
    out.push(b'-');
    digits(out, i64::from(m), 2);
    out.push(b'-');
    digits(out, i64::from(d), 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, (sod % 3600) / 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    if frac != 0 {
        out.push(b'.');
        digits(out, frac, 6);
    }
    out.extend_from_slice(b"Z\"");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_and_timestamps() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_844), "2024-05-01");
        assert_eq!(format_date(-1), "1969-12-31");
        assert_eq!(
            format_timestamp(1_714_566_600_000_000),
            "2024-05-01T12:30:00Z"
        );
        assert_eq!(format_timestamp(1), "1970-01-01T00:00:00.000001Z");
    }

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
