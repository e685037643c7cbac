//! Values as SQL literals. The session runs with `NO_BACKSLASH_ESCAPES`
//! (see [`crate::session`]): inside quotes only a quote is special, and it
//! is doubled. Numbers and dates that arrive as text are quoted too; the
//! server converts them to the column's type (exactly, for DECIMAL) and,
//! in strict mode, refuses what does not fit.

use sluice_sdk::{format_date, format_timestamp, Value};
use std::fmt::Write as _;

/// The literal of `value`, or why MySQL cannot hold it.
pub fn literal(value: &Value) -> Result<String, String> {
    Ok(match value {
        Value::Null => "NULL".to_owned(),
        Value::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) if f.is_finite() => format!("{f:e}"),
        Value::Float(f) => {
            return Err(format!(
                "MySQL has no {f} in its floating-point types; the value cannot be written"
            ))
        }
        Value::Decimal(s) | Value::Text(s) | Value::Json(s) => quote(s),
        Value::Bytes(b) => hex(b),
        Value::Timestamp(us) => quote(&datetime(*us)),
        Value::Date(days) => quote(&format_date(*days)),
    })
}

/// `'text'`, quotes doubled.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// `X'dead'`: a binary string.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(3 + bytes.len() * 2);
    out.push_str("X'");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\'');
    out
}

/// `YYYY-MM-DD hh:mm:ss[.ffffff]` in UTC, the session's time zone: the
/// instant for TIMESTAMP, the UTC wall clock for DATETIME (as the source
/// reads them). MariaDB refuses an RFC 3339 offset, so there is none.
fn datetime(micros: i64) -> String {
    format_timestamp(micros)
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_has_a_literal() {
        let cases = [
            (Value::Null, "NULL"),
            (Value::Boolean(false), "FALSE"),
            (Value::Integer(-42), "-42"),
            (Value::Float(0.5), "5e-1"),
            (Value::Float(1e300), "1e300"),
            (Value::Decimal("-12.50".into()), "'-12.50'"),
            (Value::Text("it's \\ \"q\"".into()), "'it''s \\ \"q\"'"),
            (Value::Json(r#"{"a":"'"}"#.into()), r#"'{"a":"''"}'"#),
            (Value::Bytes(vec![0, 0xab]), "X'00ab'"),
            (Value::Bytes(vec![]), "X''"),
            (
                Value::Timestamp(1_714_566_600_000_001),
                "'2024-05-01 12:30:00.000001'",
            ),
            (Value::Timestamp(0), "'1970-01-01 00:00:00'"),
            (Value::Date(19_782), "'2024-02-29'"),
        ];
        for (value, expected) in cases {
            assert_eq!(literal(&value).unwrap(), expected, "{value:?}");
        }
        assert!(literal(&Value::Float(f64::NAN))
            .unwrap_err()
            .contains("MySQL has no NaN"));
    }
}
