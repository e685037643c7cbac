//! BigQuery's `f`/`v` row encoding to Sluice values (the table in README.md).
//!
//! Top-level scalars become the matching Sluice value; a REPEATED field or a
//! RECORD becomes Json (an array, an object keyed by field name), its members
//! encoded as [`Kind::json`] says.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use sluice_sdk::{FieldType, PluginError, Value};

/// One field of a result schema.
#[derive(Debug, Deserialize, Clone)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub fields: Vec<SchemaField>,
}

/// A column's type, legacy and GoogleSQL spellings alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Float,
    /// NUMERIC and BIGNUMERIC: exact decimal text.
    Decimal,
    Boolean,
    Text,
    Bytes,
    Date,
    /// DATETIME: a civil date and time, read as UTC.
    DateTime,
    /// TIME: kept as text, as Sluice has no time-of-day type.
    Time,
    Timestamp,
    Json,
    Record,
}

impl Kind {
    pub fn of(type_name: &str) -> Kind {
        match type_name.to_ascii_uppercase().as_str() {
            "INTEGER" | "INT64" => Kind::Integer,
            "FLOAT" | "FLOAT64" => Kind::Float,
            "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => Kind::Decimal,
            "BOOLEAN" | "BOOL" => Kind::Boolean,
            "BYTES" => Kind::Bytes,
            "DATE" => Kind::Date,
            "DATETIME" => Kind::DateTime,
            "TIME" => Kind::Time,
            "TIMESTAMP" => Kind::Timestamp,
            "JSON" => Kind::Json,
            "RECORD" | "STRUCT" => Kind::Record,
            // STRING, GEOGRAPHY (WKT), INTERVAL, RANGE: text as sent.
            _ => Kind::Text,
        }
    }

    /// The Sluice field type of a top-level column.
    pub fn field_type(self, repeated: bool) -> FieldType {
        if repeated {
            return FieldType::Json;
        }
        match self {
            Kind::Integer => FieldType::Integer,
            Kind::Float => FieldType::Float,
            Kind::Decimal => FieldType::Decimal,
            Kind::Boolean => FieldType::Boolean,
            Kind::Text | Kind::Time => FieldType::Text,
            Kind::Bytes => FieldType::Bytes,
            Kind::Date => FieldType::Date,
            Kind::DateTime | Kind::Timestamp => FieldType::Timestamp,
            Kind::Json | Kind::Record => FieldType::Json,
        }
    }

    /// A scalar wire string as a Sluice value.
    fn value(self, text: &str) -> Result<Value, String> {
        Ok(match self {
            Kind::Integer => Value::Integer(
                text.parse()
                    .map_err(|_| format!("{text:?} is not an INT64"))?,
            ),
            Kind::Float => Value::Float(float(text)?),
            Kind::Decimal if is_decimal(text) => Value::Decimal(text.to_string()),
            Kind::Decimal => return Err(format!("{text:?} is not a NUMERIC")),
            Kind::Boolean => Value::Boolean(boolean(text)?),
            Kind::Text | Kind::Time => Value::Text(text.to_string()),
            Kind::Bytes => Value::Bytes(bytes(text)?),
            Kind::Date => Value::Date(date(text)?),
            Kind::DateTime => Value::Timestamp(datetime_micros(text)?),
            Kind::Timestamp => Value::Timestamp(timestamp_micros(text)?),
            Kind::Json => Value::Json(
                serde_json::from_str::<Json>(text)
                    .map(|v| v.to_string())
                    .map_err(|e| format!("not JSON: {e}"))?,
            ),
            Kind::Record => return Err("a RECORD value is not a string".into()),
        })
    }

    /// A scalar wire string inside a REPEATED or RECORD value, as JSON: numbers
    /// and booleans natively (non-finite floats as their names), NUMERIC as a
    /// string (exact), TIMESTAMP and DATETIME as RFC 3339, JSON parsed, the rest
    /// as BigQuery sent it (BYTES stay base64).
    fn json(self, text: &str) -> Result<Json, String> {
        Ok(match self.value(text)? {
            Value::Integer(i) => json!(i),
            Value::Float(f) if f.is_finite() => json!(f),
            Value::Boolean(b) => json!(b),
            Value::Timestamp(micros) => json!(rfc3339(micros)),
            Value::Json(text) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
            _ => json!(text),
        })
    }
}

fn float(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" | "inf" => Ok(f64::INFINITY),
        "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
        other => other
            .parse()
            .map_err(|_| format!("{other:?} is not a FLOAT64")),
    }
}

fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "true" | "TRUE" => Ok(true),
        "false" | "FALSE" => Ok(false),
        other => Err(format!("{other:?} is not a BOOL")),
    }
}

fn bytes(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("BYTES value is not base64: {e}"))
}

fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (the inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` to days since 1970-01-01.
fn date(text: &str) -> Result<i32, String> {
    let bad = || format!("{text:?} is not a DATE (YYYY-MM-DD)");
    let mut parts = text.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (year, month, day): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    i32::try_from(days_from_civil(year, month, day)).map_err(|_| bad())
}

/// `HH:MM:SS[.ffffff]` to microseconds since midnight.
fn time_micros(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a time of day (HH:MM:SS[.ffffff])");
    let (clock, fraction) = text.split_once('.').unwrap_or((text, ""));
    let parts: Vec<i64> = clock
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [h, m, s] = parts[..] else {
        return Err(bad());
    };
    Ok((h * 3600 + m * 60 + s) * 1_000_000 + fraction_micros(fraction).ok_or_else(bad)?)
}

/// Up to six fraction digits as microseconds (further digits are dropped).
fn fraction_micros(fraction: &str) -> Option<i64> {
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let six: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(6)
        .collect();
    six.parse().ok()
}

/// DATETIME `YYYY-MM-DDTHH:MM:SS[.ffffff]` (or with a space) read as UTC.
fn datetime_micros(text: &str) -> Result<i64, String> {
    let (day, clock) = text
        .split_once(['T', ' '])
        .ok_or_else(|| format!("{text:?} is not a DATETIME"))?;
    Ok(i64::from(date(day)?) * 86_400_000_000 + time_micros(clock)?)
}

/// TIMESTAMP: int64 microseconds (`useInt64Timestamp`) or float seconds, plain
/// or with an exponent (`1.632668961889E9`), converted without going through f64.
fn timestamp_micros(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a TIMESTAMP (epoch microseconds or seconds)");
    if !text.contains(['.', 'e', 'E']) {
        return text.parse().map_err(|_| bad());
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| bad())?),
        None => (text, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // value = digits * 10^(exponent - fraction.len()); micros = value * 10^6.
    let shift = exponent + 6 - fraction.len() as i32;
    let magnitude: i128 = digits.parse().map_err(|_| bad())?;
    let micros = if shift >= 0 {
        magnitude.checked_mul(10i128.checked_pow(shift as u32).ok_or_else(bad)?)
    } else {
        Some(magnitude / 10i128.checked_pow((-shift) as u32).unwrap_or(i128::MAX))
    }
    .ok_or_else(bad)?;
    let micros = if negative { -micros } else { micros };
    i64::try_from(micros).map_err(|_| bad())
}

/// Microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
pub fn rfc3339(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (year, month, day) = civil_from_days(days);
    let seconds = rest / 1_000_000;
    let fraction = rest % 1_000_000;
    let clock = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction == 0 {
        format!("{clock}Z")
    } else {
        format!("{clock}.{fraction:06}Z")
    }
}

/// How one top-level column decodes.
#[derive(Debug, Clone)]
pub struct Column {
    pub field: SchemaField,
    kind: Kind,
    repeated: bool,
}

impl Column {
    pub fn of(field: &SchemaField) -> Column {
        Column {
            kind: Kind::of(&field.kind),
            repeated: is_repeated(field),
            field: field.clone(),
        }
    }

    pub fn field_type(&self) -> FieldType {
        self.kind.field_type(self.repeated)
    }

    /// A cell's `v` as a Sluice value.
    pub fn value(&self, v: &Json) -> Result<Value, String> {
        match (v, self.repeated, self.kind) {
            (Json::Null, false, _) => Ok(Value::Null),
            (_, true, _) | (_, _, Kind::Record) => {
                Ok(Value::Json(nested(&self.field, v)?.to_string()))
            }
            (Json::String(text), false, kind) => kind.value(text),
            (other, _, _) => Err(format!("unexpected value {other}")),
        }
    }
}

fn is_repeated(field: &SchemaField) -> bool {
    field
        .mode
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("REPEATED"))
}

/// A `v` inside (or being) a REPEATED or RECORD value, as JSON.
fn nested(field: &SchemaField, v: &Json) -> Result<Json, String> {
    if is_repeated(field) {
        // A REPEATED field is never NULL in BigQuery: an absent array is empty.
        let items = match v {
            Json::Null => return Ok(json!([])),
            Json::Array(items) => items,
            other => return Err(format!("REPEATED {} is not an array: {other}", field.name)),
        };
        let element = SchemaField {
            mode: None,
            ..field.clone()
        };
        return items
            .iter()
            .map(|item| nested(&element, &item["v"]))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array);
    }
    match (Kind::of(&field.kind), v) {
        (_, Json::Null) => Ok(Json::Null),
        (Kind::Record, Json::Object(record)) => {
            let cells = record
                .get("f")
                .and_then(Json::as_array)
                .ok_or_else(|| format!("RECORD {} has no `f` list", field.name))?;
            if cells.len() != field.fields.len() {
                return Err(format!(
                    "RECORD {} has {} values for {} fields",
                    field.name,
                    cells.len(),
                    field.fields.len()
                ));
            }
            let mut object = serde_json::Map::new();
            for (member, cell) in field.fields.iter().zip(cells) {
                object.insert(member.name.clone(), nested(member, &cell["v"])?);
            }
            Ok(Json::Object(object))
        }
        (kind, Json::String(text)) if kind != Kind::Record => {
            kind.json(text).map_err(|e| format!("{}: {e}", field.name))
        }
        (_, other) => Err(format!("{}: unexpected value {other}", field.name)),
    }
}

/// Decodes a wire row `{"f": [{"v": …}, …]}`, naming the column of a value that
/// does not parse.
pub fn decode_row(columns: &[Column], row: &Json) -> Result<Vec<Value>, PluginError> {
    let cells = row["f"]
        .as_array()
        .ok_or_else(|| PluginError::Permanent(format!("a result row has no `f` list: {row}")))?;
    if cells.len() != columns.len() {
        return Err(PluginError::Permanent(format!(
            "a result row has {} values for {} columns",
            cells.len(),
            columns.len()
        )));
    }
    columns
        .iter()
        .zip(cells)
        .map(|(column, cell)| {
            column
                .value(&cell["v"])
                .map_err(|e| PluginError::Permanent(format!("column {}: {e}", column.field.name)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: &str, mode: Option<&str>, fields: Vec<SchemaField>) -> SchemaField {
        SchemaField {
            name: "c".into(),
            kind: kind.into(),
            mode: mode.map(String::from),
            fields,
        }
    }

    fn scalar(kind: &str, v: Json) -> Value {
        Column::of(&field(kind, None, vec![])).value(&v).unwrap()
    }

    #[test]
    fn each_documented_scalar_encoding_maps() {
        assert_eq!(
            scalar("INTEGER", json!("-9223372036854775808")),
            Value::Integer(i64::MIN)
        );
        assert!(
            matches!(scalar("FLOAT", json!("-Infinity")), Value::Float(f) if f == f64::NEG_INFINITY)
        );
        assert!(matches!(scalar("FLOAT64", json!("NaN")), Value::Float(f) if f.is_nan()));
        assert_eq!(
            scalar("BIGNUMERIC", json!("-578960446186580977117854925043439539266.34992332820282019728792003956564819967")),
            Value::Decimal("-578960446186580977117854925043439539266.34992332820282019728792003956564819967".into())
        );
        assert_eq!(scalar("BOOLEAN", json!("false")), Value::Boolean(false));
        assert_eq!(
            scalar("STRING", json!("zoë ✓")),
            Value::Text("zoë ✓".into())
        );
        assert_eq!(scalar("BYTES", json!("AP8=")), Value::Bytes(vec![0, 255]));
        assert_eq!(scalar("DATE", json!("1969-12-31")), Value::Date(-1));
        assert_eq!(scalar("DATE", json!("9999-12-31")), Value::Date(2_932_896));
        assert_eq!(
            scalar("DATETIME", json!("2021-05-04T18:08:13.299")),
            Value::Timestamp(1_620_151_693_299_000)
        );
        assert_eq!(
            scalar("TIME", json!("23:59:59.999999")),
            Value::Text("23:59:59.999999".into())
        );
        assert_eq!(
            scalar("TIMESTAMP", json!("1620151693299000")),
            Value::Timestamp(1_620_151_693_299_000)
        );
        assert_eq!(
            scalar("TIMESTAMP", json!("1.632668961889E9")),
            Value::Timestamp(1_632_668_961_889_000)
        );
        assert_eq!(
            scalar("TIMESTAMP", json!("-1.5")),
            Value::Timestamp(-1_500_000)
        );
        assert_eq!(
            scalar("JSON", json!("{\"a\": [1, null]}")),
            Value::Json(r#"{"a":[1,null]}"#.into())
        );
        assert_eq!(scalar("INTEGER", Json::Null), Value::Null);
    }

    #[test]
    fn repeated_and_records_become_json() {
        let tags = Column::of(&field("INTEGER", Some("REPEATED"), vec![]));
        assert_eq!(
            tags.value(&json!([{"v": "1"}, {"v": "2"}])).unwrap(),
            Value::Json("[1,2]".into())
        );
        assert_eq!(tags.value(&json!([])).unwrap(), Value::Json("[]".into()));
        let addr = Column::of(&field(
            "RECORD",
            None,
            vec![
                SchemaField {
                    name: "zip".into(),
                    ..field("STRING", None, vec![])
                },
                SchemaField {
                    name: "at".into(),
                    ..field("TIMESTAMP", None, vec![])
                },
                SchemaField {
                    name: "n".into(),
                    ..field("NUMERIC", Some("REPEATED"), vec![])
                },
            ],
        ));
        assert_eq!(
            addr.value(&json!({"f": [{"v": "94110"}, {"v": "0"}, {"v": [{"v": "1.5"}]}]}))
                .unwrap(),
            Value::Json(r#"{"at":"1970-01-01T00:00:00Z","n":["1.5"],"zip":"94110"}"#.into())
        );
        assert_eq!(addr.value(&Json::Null).unwrap(), Value::Null);
    }

    #[test]
    fn bad_values_name_their_column() {
        let columns = [Column::of(&SchemaField {
            name: "born".into(),
            ..field("DATE", None, vec![])
        })];
        let err = decode_row(&columns, &json!({"f": [{"v": "x"}]})).unwrap_err();
        assert!(matches!(err, PluginError::Permanent(m) if m.contains("born")));
    }

    #[test]
    fn rfc3339_round_trips_the_day_arithmetic() {
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(253_402_300_799_000_000), "9999-12-31T23:59:59Z");
    }
}
