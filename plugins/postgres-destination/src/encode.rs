//! Values to the text form of a parameter. Every parameter is sent as
//! text typed with its column's OID, so the server parses it with the
//! column's own input function: the same text works for `int4`, `numeric`
//! or `text`, and a value the column cannot hold is the server's error,
//! about that row.

use sluice_sdk::{format_date, format_timestamp, Value};
use std::fmt::Write as _;

/// The text of a parameter, `None` for NULL.
pub fn param(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Boolean(b) => if *b { "t" } else { "f" }.to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => float(*f),
        Value::Decimal(s) | Value::Text(s) | Value::Json(s) => s.clone(),
        Value::Bytes(b) => bytea(b),
        // RFC 3339 in UTC: an instant for timestamptz; timestamp (without
        // time zone) ignores the offset and keeps the UTC wall clock, as
        // the source reads it.
        Value::Timestamp(us) => format_timestamp(*us),
        Value::Date(days) => format_date(*days),
    })
}

/// float8's and numeric's spellings of the values that are not numbers;
/// plain notation otherwise, which every numeric input function reads.
fn float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f == f64::INFINITY {
        "Infinity".to_owned()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".to_owned()
    } else {
        f.to_string()
    }
}

/// bytea's hex input format: `\x` and two lowercase digits per byte.
fn bytea(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_has_a_text_form_the_server_parses() {
        let cases = [
            (Value::Boolean(true), "t"),
            (Value::Integer(-42), "-42"),
            (Value::Float(0.1), "0.1"),
            (Value::Float(f64::NEG_INFINITY), "-Infinity"),
            (Value::Decimal("-12.50".into()), "-12.50"),
            (Value::Text("a'b\"c".into()), "a'b\"c"),
            (Value::Json(r#"{"a":[1]}"#.into()), r#"{"a":[1]}"#),
            (Value::Bytes(vec![0, 0xab]), "\\x00ab"),
            (
                Value::Timestamp(1_714_566_600_000_001),
                "2024-05-01T12:30:00.000001Z",
            ),
            (Value::Date(19_782), "2024-02-29"),
        ];
        for (value, text) in cases {
            assert_eq!(param(&value).as_deref(), Some(text), "{value:?}");
        }
        assert_eq!(param(&Value::Float(f64::NAN)).as_deref(), Some("NaN"));
        assert_eq!(param(&Value::Null), None);
    }
}
