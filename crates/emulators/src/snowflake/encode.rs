//! Result columns as the SQL API describes and encodes them (saas-apis.md §3.5):
//! every value a JSON string (or null), FIXED as a decimal string, REAL with
//! `NaN`/`inf`, BOOLEAN `true`/`false`, DATE days since the epoch, TIME seconds since
//! midnight with nine fraction digits, TIMESTAMP_NTZ/LTZ epoch seconds with nine
//! fraction digits, TIMESTAMP_TZ the same plus the offset in minutes + 1440,
//! VARIANT/OBJECT/ARRAY pretty-printed JSON, BINARY uppercase hex.
//!
//! Input is PostgreSQL's text output in a session with `DateStyle=ISO`,
//! `TimeZone=UTC` and `bytea_output=hex`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde_json::{json, Value as Json};

/// A result column's Snowflake type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SfType {
    /// NUMBER(precision, scale); `scale` None when PostgreSQL does not know it
    /// (computed numerics): it is then the widest scale in the data.
    Fixed {
        precision: u32,
        scale: Option<u32>,
    },
    Real,
    Text {
        length: u32,
    },
    Boolean,
    Date,
    Time,
    TimestampNtz,
    TimestampLtz,
    TimestampTz,
    Variant,
    Object,
    Array,
    Binary,
}

/// Snowflake's default VARCHAR length (16 MB).
const MAX_TEXT: u32 = 16_777_216;
/// Snowflake's default BINARY length (8 MB).
const MAX_BINARY: u32 = 8_388_608;

impl SfType {
    /// The type of a column whose PostgreSQL type is `type_name` (a domain name for
    /// table columns of the emulator's domains) with modifier `typmod` (-1: none).
    pub fn from_postgres(type_name: &str, typmod: i32) -> SfType {
        match type_name {
            "sf_variant" | "json" | "jsonb" => SfType::Variant,
            "sf_object" => SfType::Object,
            "sf_array" => SfType::Array,
            "sf_timestamp_tz" => SfType::TimestampTz,
            "int2" | "int4" | "int8" | "oid" => SfType::Fixed {
                precision: 38,
                scale: Some(0),
            },
            "numeric" if typmod >= 4 => {
                let modifier = (typmod - 4) as u32;
                SfType::Fixed {
                    precision: (modifier >> 16) & 0xffff,
                    scale: Some(modifier & 0xffff),
                }
            }
            "numeric" => SfType::Fixed {
                precision: 38,
                scale: None,
            },
            "float4" | "float8" => SfType::Real,
            "bool" => SfType::Boolean,
            "date" => SfType::Date,
            "time" | "timetz" => SfType::Time,
            "timestamp" => SfType::TimestampNtz,
            "timestamptz" => SfType::TimestampLtz,
            "bytea" => SfType::Binary,
            "varchar" | "bpchar" if typmod > 4 => SfType::Text {
                length: (typmod - 4) as u32,
            },
            _ => SfType::Text { length: MAX_TEXT },
        }
    }

    /// The `type` string of `rowType`.
    pub fn name(&self) -> &'static str {
        match self {
            SfType::Fixed { .. } => "fixed",
            SfType::Real => "real",
            SfType::Text { .. } => "text",
            SfType::Boolean => "boolean",
            SfType::Date => "date",
            SfType::Time => "time",
            SfType::TimestampNtz => "timestamp_ntz",
            SfType::TimestampLtz => "timestamp_ltz",
            SfType::TimestampTz => "timestamp_tz",
            SfType::Variant => "variant",
            SfType::Object => "object",
            SfType::Array => "array",
            SfType::Binary => "binary",
        }
    }
}

/// Where a column comes from, for `rowType`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub database: String,
    pub schema: String,
    pub table: String,
}

/// One `rowType` entry. `data_scale` is the widest scale seen, for numerics
/// PostgreSQL gave no scale for.
pub fn row_type(name: &str, sf: SfType, nullable: bool, origin: &Origin, data_scale: u32) -> Json {
    let (precision, scale, length, byte_length) = match sf {
        SfType::Fixed { precision, scale } => (
            json!(precision),
            json!(scale.unwrap_or(data_scale)),
            Json::Null,
            Json::Null,
        ),
        SfType::Text { length } => (
            Json::Null,
            Json::Null,
            json!(length),
            json!(length.saturating_mul(4).min(MAX_TEXT)),
        ),
        SfType::Binary => (Json::Null, Json::Null, json!(MAX_BINARY), json!(MAX_BINARY)),
        SfType::Time | SfType::TimestampNtz | SfType::TimestampLtz | SfType::TimestampTz => {
            (json!(0), json!(9), Json::Null, Json::Null)
        }
        SfType::Variant | SfType::Object | SfType::Array => {
            (Json::Null, Json::Null, json!(MAX_TEXT), json!(MAX_TEXT))
        }
        SfType::Real | SfType::Boolean | SfType::Date => {
            (Json::Null, Json::Null, Json::Null, Json::Null)
        }
    };
    json!({
        "name": name,
        "database": origin.database,
        "schema": origin.schema,
        "table": origin.table,
        "nullable": nullable,
        "type": sf.name(),
        "scale": scale,
        "precision": precision,
        "length": length,
        "byteLength": byte_length,
        "collation": null,
    })
}

/// The digits after the decimal point of a decimal string.
pub fn scale_of(decimal: &str) -> u32 {
    decimal
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len() as u32)
}

/// Encodes one PostgreSQL text value as the SQL API sends it.
pub fn encode(sf: SfType, text: &str) -> String {
    let encoded = match sf {
        SfType::Fixed { .. } | SfType::Text { .. } => None,
        SfType::Real => Some(match text {
            "Infinity" => "inf".to_owned(),
            "-Infinity" => "-inf".to_owned(),
            other => other.to_owned(),
        }),
        SfType::Boolean => Some(if text == "t" { "true" } else { "false" }.to_owned()),
        SfType::Date => date(text),
        SfType::Time => time(text),
        SfType::TimestampNtz => timestamp_ntz(text),
        SfType::TimestampLtz => timestamp_tz(text).map(|(epoch, _)| epoch),
        SfType::TimestampTz => {
            timestamp_tz(text).map(|(epoch, offset)| format!("{epoch} {}", offset + 1440))
        }
        SfType::Variant | SfType::Object | SfType::Array => serde_json::from_str::<Json>(text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok()),
        SfType::Binary => Some(text.trim_start_matches("\\x").to_ascii_uppercase()),
    };
    encoded.unwrap_or_else(|| text.to_owned())
}

/// Seconds and nanoseconds since the epoch as `S.FFFFFFFFF` (negative values
/// keep a positive-looking fraction of the true value: -1.5 s is `-1.500000000`).
fn epoch_fraction(seconds: i64, nanos: u32) -> String {
    if seconds < 0 && nanos > 0 {
        format!("-{}.{:09}", -(seconds + 1), 1_000_000_000 - nanos)
    } else {
        format!("{seconds}.{nanos:09}")
    }
}

fn date(text: &str) -> Option<String> {
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some((day - epoch).num_days().to_string())
}

fn time(text: &str) -> Option<String> {
    let time = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").ok()?;
    Some(format!(
        "{}.{:09}",
        time.num_seconds_from_midnight(),
        time.nanosecond()
    ))
}

fn timestamp_ntz(text: &str) -> Option<String> {
    let at = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let utc = at.and_utc();
    Some(epoch_fraction(
        utc.timestamp(),
        utc.timestamp_subsec_nanos(),
    ))
}

/// Epoch text and the offset in minutes.
fn timestamp_tz(text: &str) -> Option<(String, i32)> {
    let at = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z").ok()?;
    let offset = at.offset().local_minus_utc() / 60;
    Some((
        epoch_fraction(at.timestamp(), at.timestamp_subsec_nanos()),
        offset,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_as_documented() {
        assert_eq!(encode(SfType::Date, "2026-10-09"), "20735");
        assert_eq!(encode(SfType::Time, "12:34:56.123456"), "45296.123456000");
        assert_eq!(
            encode(SfType::TimestampNtz, "2021-05-04 18:08:13.299"),
            "1620151693.299000000"
        );
        assert_eq!(
            encode(SfType::TimestampNtz, "1969-12-31 23:59:58.5"),
            "-1.500000000"
        );
        assert_eq!(
            encode(SfType::TimestampTz, "2021-05-04 18:08:13+00"),
            "1620151693.000000000 1440"
        );
        assert_eq!(
            encode(SfType::TimestampLtz, "2021-05-04 18:08:13+00"),
            "1620151693.000000000"
        );
        assert_eq!(encode(SfType::Real, "-Infinity"), "-inf");
        assert_eq!(encode(SfType::Boolean, "t"), "true");
        assert_eq!(encode(SfType::Binary, "\\x0aff"), "0AFF");
        assert_eq!(
            encode(SfType::Variant, r#"{"a": [1]}"#),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
    }

    #[test]
    fn numeric_modifiers_give_precision_and_scale() {
        let typmod = ((12 << 16) | 2) + 4;
        assert_eq!(
            SfType::from_postgres("numeric", typmod),
            SfType::Fixed {
                precision: 12,
                scale: Some(2)
            }
        );
        assert_eq!(scale_of("12.345"), 3);
    }
}
