//! The `type:` coercions of a mapping.
//!
//! Every coercion keeps null as null. A value that cannot be converted is an
//! error whose message says what was expected; the mapping step adds the row
//! key, column and value.

use sluice_config::Coercion;
use sluice_runtime::values::{date_micros, format_date, format_timestamp, parse_timestamp};
use sluice_runtime::Value;

/// Converts `value` as the mapping's `type:` asks.
pub fn coerce(value: Value, to: Coercion) -> Result<Value, String> {
    if value == Value::Null {
        return Ok(Value::Null);
    }
    match to {
        Coercion::Number => to_number(value),
        Coercion::Integer => to_integer(value),
        Coercion::String => to_text(value),
        Coercion::Bool => to_bool(value),
        Coercion::Timestamp => to_timestamp(value),
        Coercion::Json => to_json(value),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Decimal(_) => "a decimal",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Timestamp(_) => "a timestamp",
        Value::Date(_) => "a date",
        Value::Json(_) => "JSON",
    }
}

fn unsupported(v: &Value, target: &str) -> String {
    format!("{} cannot be converted to {target}", kind(v))
}

/// Numbers stay as they are; text becomes an integer, an exact decimal, or a
/// float (for exponent notation), whichever represents it without loss.
fn to_number(v: Value) -> Result<Value, String> {
    match v {
        Value::Integer(_) | Value::Float(_) | Value::Decimal(_) => Ok(v),
        Value::Text(s) => parse_number(s.trim()).ok_or_else(|| "text is not a number".to_owned()),
        other => Err(unsupported(&other, "a number")),
    }
}

fn parse_number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Integer(i));
    }
    if is_plain_decimal(s) {
        return Some(Value::Decimal(s.to_owned()));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::Float)
}

fn is_plain_decimal(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn to_integer(v: Value) -> Result<Value, String> {
    match v {
        Value::Integer(_) => Ok(v),
        Value::Float(f) => float_to_integer(f),
        Value::Decimal(s) => decimal_to_integer(&s),
        Value::Text(s) => {
            let t = s.trim();
            t.parse::<i64>()
                .map(Value::Integer)
                .or_else(|_| {
                    if is_plain_decimal(t) {
                        decimal_to_integer(t)
                    } else {
                        Err(String::new())
                    }
                })
                .map_err(|_| "text is not an integer".to_owned())
        }
        other => Err(unsupported(&other, "an integer")),
    }
}

fn float_to_integer(f: f64) -> Result<Value, String> {
    // 2^63 is exactly representable; anything at or above it overflows i64.
    if f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        Ok(Value::Integer(f as i64))
    } else {
        Err("the float has a fractional part or is out of range for a 64-bit integer".into())
    }
}

fn decimal_to_integer(s: &str) -> Result<Value, String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !frac.bytes().all(|b| b == b'0') {
        return Err("the decimal has a fractional part".into());
    }
    int.parse::<i64>()
        .map(Value::Integer)
        .map_err(|_| "the decimal is out of range for a 64-bit integer".into())
}

fn to_text(v: Value) -> Result<Value, String> {
    let s = match v {
        Value::Text(_) => return Ok(v),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => format_float(f)?,
        Value::Decimal(s) | Value::Json(s) => s,
        Value::Timestamp(t) => format_timestamp(t),
        Value::Date(d) => format_date(d),
        Value::Bytes(b) => {
            String::from_utf8(b).map_err(|e| format!("bytes are not valid UTF-8 text ({e})"))?
        }
        Value::Null => unreachable!("null handled by coerce"),
    };
    Ok(Value::Text(s))
}

fn format_float(f: f64) -> Result<String, String> {
    if f.is_finite() {
        // `{}` on f64 is the shortest representation that round-trips.
        Ok(format!("{f}"))
    } else {
        Err(format!("{f} has no text or JSON representation"))
    }
}

fn to_bool(v: Value) -> Result<Value, String> {
    match v {
        Value::Boolean(_) => Ok(v),
        Value::Integer(0) => Ok(Value::Boolean(false)),
        Value::Integer(1) => Ok(Value::Boolean(true)),
        Value::Integer(_) => Err("only the integers 0 and 1 convert to a boolean".into()),
        Value::Text(s) => parse_bool(&s).map(Value::Boolean).ok_or_else(|| {
            "expected one of true/false, yes/no, t/f, y/n, 1/0 (any case)".to_owned()
        }),
        other => Err(unsupported(&other, "a boolean")),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

fn to_timestamp(v: Value) -> Result<Value, String> {
    match v {
        Value::Timestamp(_) => Ok(v),
        Value::Date(d) => Ok(Value::Timestamp(date_micros(d))),
        Value::Text(s) => parse_timestamp(s.trim()).map(Value::Timestamp).ok_or_else(|| {
            "expected an RFC 3339 timestamp such as 2024-01-31T12:00:00Z or a date such as 2024-01-31"
                .to_owned()
        }),
        // Seconds or microseconds? Guessing would silently shift dates by
        // decades, so the operator must convert in the model.
        Value::Integer(_) => Err(
            "an integer is ambiguous as a timestamp (seconds or microseconds?); convert it in the model's query"
                .into(),
        ),
        other => Err(unsupported(&other, "a timestamp")),
    }
}

fn to_json(v: Value) -> Result<Value, String> {
    let text = match v {
        Value::Json(_) => return Ok(v),
        Value::Text(s) => {
            return serde_json::from_str::<serde_json::Value>(&s)
                .map(|_| Value::Json(s))
                .map_err(|e| format!("text is not valid JSON ({e})"));
        }
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => format_float(f)?,
        Value::Decimal(s) => s,
        Value::Timestamp(t) => json_string(&format_timestamp(t)),
        Value::Date(d) => json_string(&format_date(d)),
        other => return Err(unsupported(&other, "JSON")),
    };
    Ok(Value::Json(text))
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercions() {
        use Coercion::*;
        let t = |s: &str| Value::Text(s.into());
        assert_eq!(coerce(t("42"), Number).unwrap(), Value::Integer(42));
        assert_eq!(
            coerce(t("12.50"), Number).unwrap(),
            Value::Decimal("12.50".into())
        );
        assert_eq!(coerce(t("1e3"), Number).unwrap(), Value::Float(1000.0));
        assert!(coerce(t("abc"), Number).is_err());
        assert_eq!(
            coerce(Value::Float(3.0), Integer).unwrap(),
            Value::Integer(3)
        );
        assert!(coerce(Value::Float(3.5), Integer).is_err());
        assert_eq!(
            coerce(Value::Decimal("7.00".into()), Integer).unwrap(),
            Value::Integer(7)
        );
        assert_eq!(coerce(Value::Integer(7), String).unwrap(), t("7"));
        assert_eq!(coerce(Value::Date(0), String).unwrap(), t("1970-01-01"));
        assert!(coerce(Value::Bytes(vec![0xff]), String).is_err());
        assert_eq!(coerce(t("Yes"), Bool).unwrap(), Value::Boolean(true));
        assert!(coerce(Value::Integer(2), Bool).is_err());
        assert_eq!(
            coerce(Value::Date(1), Timestamp).unwrap(),
            Value::Timestamp(date_micros(1))
        );
        assert!(coerce(Value::Integer(1), Timestamp).is_err());
        assert_eq!(
            coerce(t("[1,2]"), Json).unwrap(),
            Value::Json("[1,2]".into())
        );
        assert!(coerce(t("{oops"), Json).is_err());
        assert_eq!(
            coerce(Value::Timestamp(0), Json).unwrap(),
            Value::Json("\"1970-01-01T00:00:00Z\"".into())
        );
        assert_eq!(coerce(Value::Null, Integer).unwrap(), Value::Null);
    }
}
