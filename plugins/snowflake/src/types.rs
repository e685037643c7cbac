//! `rowType` to Sluice values (the table in README.md).

use crate::client::RowType;
use sluice_sdk::{FieldType, PluginError, Value};

/// How one result column is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// FIXED with scale 0: an integer (a decimal when it does not fit in i64).
    Integer,
    /// FIXED with scale > 0: an exact decimal.
    Decimal,
    Float,
    Text,
    Boolean,
    Date,
    /// TIME: text `HH:MM:SS[.fraction]`.
    Time,
    /// TIMESTAMP_NTZ/LTZ, and TIMESTAMP_TZ (its offset dropped: the instant is kept).
    Timestamp,
    TimestampTz,
    Json,
    Bytes,
}

impl Decode {
    pub fn of(column: &RowType) -> Decode {
        match column.kind.to_ascii_lowercase().as_str() {
            "fixed" if column.scale.unwrap_or(0) == 0 => Decode::Integer,
            "fixed" => Decode::Decimal,
            "real" => Decode::Float,
            "boolean" => Decode::Boolean,
            "date" => Decode::Date,
            "time" => Decode::Time,
            "timestamp_ntz" | "timestamp_ltz" => Decode::Timestamp,
            "timestamp_tz" => Decode::TimestampTz,
            "variant" | "object" | "array" => Decode::Json,
            "binary" => Decode::Bytes,
            _ => Decode::Text,
        }
    }

    /// The field type `discover` reports for an INFORMATION_SCHEMA `DATA_TYPE`.
    pub fn field_type(data_type: &str, scale: Option<i64>) -> FieldType {
        match data_type.to_ascii_uppercase().as_str() {
            "NUMBER" | "DECIMAL" | "NUMERIC" if scale.unwrap_or(0) == 0 => FieldType::Integer,
            "NUMBER" | "DECIMAL" | "NUMERIC" => FieldType::Decimal,
            "FLOAT" | "DOUBLE" | "REAL" => FieldType::Float,
            "BOOLEAN" => FieldType::Boolean,
            "DATE" => FieldType::Date,
            "TIMESTAMP_NTZ" | "TIMESTAMP_LTZ" | "TIMESTAMP_TZ" => FieldType::Timestamp,
            "VARIANT" | "OBJECT" | "ARRAY" => FieldType::Json,
            "BINARY" => FieldType::Bytes,
            _ => FieldType::Text,
        }
    }

    /// One wire value as a Sluice value.
    pub fn value(self, text: &str) -> Result<Value, String> {
        Ok(match self {
            Decode::Integer => match text.parse::<i64>() {
                Ok(i) => Value::Integer(i),
                Err(_) if is_decimal(text) => Value::Decimal(text.to_string()),
                Err(_) => return Err(format!("{text:?} is not a FIXED value")),
            },
            Decode::Decimal if is_decimal(text) => Value::Decimal(text.to_string()),
            Decode::Decimal => return Err(format!("{text:?} is not a FIXED value")),
            Decode::Float => Value::Float(match text {
                "inf" | "Infinity" => f64::INFINITY,
                "-inf" | "-Infinity" => f64::NEG_INFINITY,
                other => other
                    .parse()
                    .map_err(|_| format!("{other:?} is not a REAL value"))?,
            }),
            Decode::Text => Value::Text(text.to_string()),
            Decode::Boolean => Value::Boolean(match text {
                "true" | "TRUE" | "1" => true,
                "false" | "FALSE" | "0" => false,
                other => return Err(format!("{other:?} is not a BOOLEAN value")),
            }),
            Decode::Date => Value::Date(
                text.parse::<i32>()
                    .map_err(|_| format!("{text:?} is not a DATE (days since 1970-01-01)"))?,
            ),
            Decode::Time => Value::Text(time_of_day(text)?),
            Decode::Timestamp => Value::Timestamp(epoch_micros(text)?),
            Decode::TimestampTz => {
                let epoch = text.split_whitespace().next().unwrap_or_default();
                Value::Timestamp(epoch_micros(epoch)?)
            }
            Decode::Json => Value::Json(
                serde_json::from_str::<serde_json::Value>(text)
                    .map(|v| v.to_string())
                    .map_err(|e| format!("not JSON: {e}"))?,
            ),
            Decode::Bytes => Value::Bytes(hex(text)?),
        })
    }
}

fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// `S.FFFFFFFFF` seconds since the epoch to microseconds (digits beyond
/// microseconds are dropped, as Sluice timestamps are microseconds).
pub fn epoch_micros(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not epoch seconds");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let seconds: i64 = whole.parse().map_err(|_| bad())?;
    let micros_text: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(6)
        .collect();
    let micros: i64 = micros_text.parse().map_err(|_| bad())?;
    let total = seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(micros))
        .ok_or_else(bad)?;
    Ok(if negative { -total } else { total })
}

/// `45296.123456789` seconds since midnight to `12:34:56.123456789`.
fn time_of_day(text: &str) -> Result<String, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: u32 = whole
        .parse()
        .map_err(|_| format!("{text:?} is not a TIME (seconds since midnight)"))?;
    let fraction = fraction.trim_end_matches('0');
    let clock = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    Ok(if fraction.is_empty() {
        clock
    } else {
        format!("{clock}.{fraction}")
    })
}

fn hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!(
            "BINARY value has an odd number of hex digits ({})",
            text.len()
        ));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|_| format!("BINARY value is not hex at offset {i}"))
        })
        .collect()
}

/// Decodes a wire row, naming the column of a value that does not parse.
pub fn decode_row(
    decoders: &[Decode],
    names: &[String],
    raw: Vec<Option<String>>,
) -> Result<Vec<Value>, PluginError> {
    if raw.len() != decoders.len() {
        return Err(PluginError::Permanent(format!(
            "a result row has {} values for {} columns",
            raw.len(),
            decoders.len()
        )));
    }
    raw.into_iter()
        .zip(decoders)
        .zip(names)
        .map(|((value, decoder), name)| match value {
            None => Ok(Value::Null),
            Some(text) => decoder
                .value(&text)
                .map_err(|e| PluginError::Permanent(format!("column {name}: {e}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: &str, scale: Option<i64>) -> Decode {
        Decode::of(&RowType {
            name: "c".into(),
            kind: kind.into(),
            scale,
            nullable: None,
        })
    }

    #[test]
    fn each_documented_encoding_maps() {
        assert_eq!(
            col("fixed", Some(0)).value("42").unwrap(),
            Value::Integer(42)
        );
        assert_eq!(
            col("fixed", Some(0))
                .value("99999999999999999999999999999999999999")
                .unwrap(),
            Value::Decimal("99999999999999999999999999999999999999".into())
        );
        assert_eq!(
            col("fixed", Some(2)).value("-12.50").unwrap(),
            Value::Decimal("-12.50".into())
        );
        assert!(
            matches!(col("real", None).value("inf").unwrap(), Value::Float(f) if f.is_infinite())
        );
        assert!(matches!(col("real", None).value("NaN").unwrap(), Value::Float(f) if f.is_nan()));
        assert_eq!(
            col("boolean", None).value("true").unwrap(),
            Value::Boolean(true)
        );
        assert_eq!(
            col("date", None).value("20735").unwrap(),
            Value::Date(20735)
        );
        assert_eq!(
            col("time", None).value("45296.123456000").unwrap(),
            Value::Text("12:34:56.123456".into())
        );
        assert_eq!(
            col("timestamp_ntz", None)
                .value("1620151693.299000000")
                .unwrap(),
            Value::Timestamp(1_620_151_693_299_000)
        );
        assert_eq!(
            col("timestamp_ltz", None).value("-1.500000000").unwrap(),
            Value::Timestamp(-1_500_000)
        );
        assert_eq!(
            col("timestamp_tz", None)
                .value("1620151693.000000000 1860")
                .unwrap(),
            Value::Timestamp(1_620_151_693_000_000)
        );
        assert_eq!(
            col("variant", None).value("{\n  \"a\": 1\n}").unwrap(),
            Value::Json("{\"a\":1}".into())
        );
        assert_eq!(
            col("binary", None).value("0AFF").unwrap(),
            Value::Bytes(vec![10, 255])
        );
        assert_eq!(
            col("text", None).value("é").unwrap(),
            Value::Text("é".into())
        );
    }

    #[test]
    fn bad_values_name_their_column() {
        let err =
            decode_row(&[Decode::Date], &["BORN".into()], vec![Some("x".into())]).unwrap_err();
        assert!(matches!(err, PluginError::Permanent(m) if m.contains("BORN")));
    }
}
