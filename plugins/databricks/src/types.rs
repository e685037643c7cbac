//! The manifest's `type_name` to Sluice values (the table in README.md).

use crate::client::ColumnInfo;
use base64::Engine;
use sluice_sdk::{FieldType, PluginError, Value};

/// How one result column is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// BYTE, SHORT, INT, LONG.
    Integer,
    /// DECIMAL(p,s): exact text.
    Decimal,
    /// FLOAT, DOUBLE.
    Float,
    Boolean,
    Text,
    /// BINARY: base64.
    Bytes,
    /// DATE: `YYYY-MM-DD`.
    Date,
    /// TIMESTAMP: an instant (`…Z` or with an offset).
    Timestamp,
    /// TIMESTAMP_NTZ: a wall clock, read as UTC.
    TimestampNtz,
    /// ARRAY, MAP, STRUCT: JSON text.
    Json,
    /// NULL (VOID): always null.
    Null,
}

impl Decode {
    pub fn of(column: &ColumnInfo) -> Decode {
        let type_name = column
            .type_name
            .clone()
            .or_else(|| column.type_text.clone())
            .unwrap_or_default();
        Decode::from_type_name(&type_name)
    }

    fn from_type_name(type_name: &str) -> Decode {
        let base = type_name
            .split(['(', '<'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_uppercase();
        match base.as_str() {
            "BYTE" | "SHORT" | "INT" | "LONG" | "TINYINT" | "SMALLINT" | "INTEGER" | "BIGINT" => {
                Decode::Integer
            }
            "DECIMAL" | "DEC" | "NUMERIC" => Decode::Decimal,
            "FLOAT" | "DOUBLE" | "REAL" => Decode::Float,
            "BOOLEAN" => Decode::Boolean,
            "BINARY" => Decode::Bytes,
            "DATE" => Decode::Date,
            "TIMESTAMP" | "TIMESTAMP_LTZ" => Decode::Timestamp,
            "TIMESTAMP_NTZ" => Decode::TimestampNtz,
            "ARRAY" | "MAP" | "STRUCT" => Decode::Json,
            "NULL" | "VOID" => Decode::Null,
            _ => Decode::Text,
        }
    }

    /// The field type `discover` reports for an information_schema `data_type`.
    pub fn field_type(data_type: &str) -> FieldType {
        match Decode::from_type_name(data_type) {
            Decode::Integer => FieldType::Integer,
            Decode::Decimal => FieldType::Decimal,
            Decode::Float => FieldType::Float,
            Decode::Boolean => FieldType::Boolean,
            Decode::Bytes => FieldType::Bytes,
            Decode::Date => FieldType::Date,
            Decode::Timestamp | Decode::TimestampNtz => FieldType::Timestamp,
            Decode::Json => FieldType::Json,
            Decode::Text | Decode::Null => FieldType::Text,
        }
    }

    /// One wire value as a Sluice value.
    pub fn value(self, text: &str) -> Result<Value, String> {
        Ok(match self {
            Decode::Integer => Value::Integer(
                text.parse()
                    .map_err(|_| format!("{text:?} is not an integer"))?,
            ),
            Decode::Decimal if is_decimal(text) => Value::Decimal(text.to_string()),
            Decode::Decimal => return Err(format!("{text:?} is not a DECIMAL value")),
            Decode::Float => Value::Float(match text {
                "Infinity" | "inf" => f64::INFINITY,
                "-Infinity" | "-inf" => f64::NEG_INFINITY,
                other => other
                    .parse()
                    .map_err(|_| format!("{other:?} is not a FLOAT/DOUBLE value"))?,
            }),
            Decode::Boolean => Value::Boolean(match text {
                "true" | "TRUE" => true,
                "false" | "FALSE" => false,
                other => return Err(format!("{other:?} is not a BOOLEAN value")),
            }),
            Decode::Text => Value::Text(text.to_string()),
            Decode::Bytes => Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("BINARY value is not base64: {e}"))?,
            ),
            Decode::Date => Value::Date(date(text)?),
            Decode::Timestamp | Decode::TimestampNtz => Value::Timestamp(timestamp_micros(text)?),
            Decode::Json => Value::Json(
                serde_json::from_str::<serde_json::Value>(text)
                    .map(|v| v.to_string())
                    .map_err(|e| format!("not JSON: {e}"))?,
            ),
            Decode::Null => Value::Null,
        })
    }
}

fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` as days since 1970-01-01.
fn date(text: &str) -> Result<i32, String> {
    let bad = || format!("{text:?} is not a DATE (YYYY-MM-DD)");
    let mut parts = text.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let year: i64 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    let day: u32 = d.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    i32::try_from(days_from_civil(year, month, day)).map_err(|_| bad())
}

/// `YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM|±HH]` as microseconds
/// since the epoch (UTC; no zone means UTC; digits past microseconds dropped).
pub fn timestamp_micros(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a TIMESTAMP (YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM])");
    let (day, rest) = text.split_once(['T', ' ']).ok_or_else(bad)?;
    let days = i64::from(date(day).map_err(|_| bad())?);
    let (clock, offset_seconds) = split_zone(rest).ok_or_else(bad)?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut fields = hms.split(':').map(|f| f.parse::<i64>());
    let (Some(Ok(h)), Some(Ok(m)), Some(Ok(s)), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad());
    };
    if h > 23 || m > 59 || s > 60 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let micros: i64 = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(6)
        .collect::<String>()
        .parse()
        .map_err(|_| bad())?;
    let seconds = days * 86_400 + h * 3600 + m * 60 + s - offset_seconds;
    seconds
        .checked_mul(1_000_000)
        .and_then(|t| t.checked_add(micros))
        .ok_or_else(bad)
}

/// The clock and the zone's offset east of UTC in seconds.
fn split_zone(rest: &str) -> Option<(&str, i64)> {
    if let Some(clock) = rest.strip_suffix('Z') {
        return Some((clock, 0));
    }
    let Some(at) = rest.rfind(['+', '-']) else {
        return Some((rest, 0));
    };
    let (clock, zone) = rest.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (
            digits[..2].parse::<i64>().ok()?,
            digits[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    Some((clock, sign * (hours * 3600 + minutes * 60)))
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

    fn col(type_name: &str) -> Decode {
        Decode::from_type_name(type_name)
    }

    #[test]
    fn each_documented_type_maps() {
        assert_eq!(
            col("LONG").value("-9223372036854775808").unwrap(),
            Value::Integer(i64::MIN)
        );
        assert_eq!(col("BYTE").value("-128").unwrap(), Value::Integer(-128));
        assert_eq!(
            col("DECIMAL")
                .value("-12345678901234567890.123456789")
                .unwrap(),
            Value::Decimal("-12345678901234567890.123456789".into())
        );
        assert!(matches!(col("DOUBLE").value("NaN").unwrap(), Value::Float(f) if f.is_nan()));
        assert_eq!(
            col("FLOAT").value("-Infinity").unwrap(),
            Value::Float(f64::NEG_INFINITY)
        );
        assert_eq!(col("BOOLEAN").value("true").unwrap(), Value::Boolean(true));
        assert_eq!(col("STRING").value("é☃").unwrap(), Value::Text("é☃".into()));
        assert_eq!(
            col("BINARY").value("Cv8=").unwrap(),
            Value::Bytes(vec![10, 255])
        );
        assert_eq!(col("DATE").value("1970-01-02").unwrap(), Value::Date(1));
        assert_eq!(
            col("DATE").value("0001-01-01").unwrap(),
            Value::Date(-719_162)
        );
        assert_eq!(
            col("TIMESTAMP").value("2021-05-04T18:08:13.299Z").unwrap(),
            Value::Timestamp(1_620_151_693_299_000)
        );
        assert_eq!(
            col("TIMESTAMP")
                .value("2021-05-04T20:08:13.299+02:00")
                .unwrap(),
            Value::Timestamp(1_620_151_693_299_000)
        );
        assert_eq!(
            col("TIMESTAMP_NTZ").value("1969-12-31T23:59:58.5").unwrap(),
            Value::Timestamp(-1_500_000)
        );
        assert_eq!(
            col("ARRAY").value("[1, 2]").unwrap(),
            Value::Json("[1,2]".into())
        );
        assert_eq!(
            col("INTERVAL").value("P1DT2H").unwrap(),
            Value::Text("P1DT2H".into())
        );
    }

    #[test]
    fn bad_values_name_their_column() {
        let err =
            decode_row(&[Decode::Date], &["born".into()], vec![Some("x".into())]).unwrap_err();
        assert!(matches!(err, PluginError::Permanent(m) if m.contains("born")));
    }
}
