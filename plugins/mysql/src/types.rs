//! MySQL/MariaDB column types: how a text-protocol value of each becomes a
//! `Value`, and which `FieldType` discovery reports. The mapping table in
//! the plugin's README is this file in prose.

use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::packets::Column;
use sluice_sdk::{parse_date, FieldType, Value};

/// The character set number of binary strings (BINARY, VARBINARY, BLOB).
const BINARY_CHARSET: u16 = 63;

/// How a column's values are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TINYINT..BIGINT (signed or not, except BIGINT UNSIGNED), YEAR.
    Integer,
    /// BIGINT UNSIGNED: an integer up to i64::MAX, a decimal beyond.
    BigUnsigned,
    /// DECIMAL/NUMERIC: exact, never a float.
    Decimal,
    /// FLOAT, DOUBLE.
    Float,
    /// CHAR, VARCHAR, TEXT, ENUM, SET, TIME and everything without a
    /// better mapping.
    Text,
    /// BINARY, VARBINARY, BLOB, GEOMETRY, BIT(64).
    Bytes,
    /// BIT(1..63): the bits as an unsigned integer.
    Bit,
    Date,
    /// DATETIME and TIMESTAMP (read in the session's UTC time zone).
    Timestamp,
    /// JSON (MySQL's type, or a MariaDB column declared JSON).
    Json,
    /// The NULL type (`SELECT NULL`).
    Null,
}

/// The kind of a result column. `json` says whether the column is known
/// to hold JSON (declared JSON on MariaDB, or listed in `json_columns`).
pub fn kind_of(column: &Column, json: bool) -> Kind {
    let flags = column.flags();
    let binary = column.character_set() == BINARY_CHARSET;
    match column.column_type() {
        ColumnType::MYSQL_TYPE_TINY
        | ColumnType::MYSQL_TYPE_SHORT
        | ColumnType::MYSQL_TYPE_INT24
        | ColumnType::MYSQL_TYPE_LONG
        | ColumnType::MYSQL_TYPE_YEAR => Kind::Integer,
        ColumnType::MYSQL_TYPE_LONGLONG if flags.contains(ColumnFlags::UNSIGNED_FLAG) => {
            Kind::BigUnsigned
        }
        ColumnType::MYSQL_TYPE_LONGLONG => Kind::Integer,
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => Kind::Decimal,
        ColumnType::MYSQL_TYPE_FLOAT | ColumnType::MYSQL_TYPE_DOUBLE => Kind::Float,
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => Kind::Date,
        ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp,
        ColumnType::MYSQL_TYPE_JSON => Kind::Json,
        ColumnType::MYSQL_TYPE_BIT if column.column_length() < 64 => Kind::Bit,
        ColumnType::MYSQL_TYPE_BIT | ColumnType::MYSQL_TYPE_GEOMETRY => Kind::Bytes,
        ColumnType::MYSQL_TYPE_NULL => Kind::Null,
        // ENUM and SET arrive as STRING with ENUM_FLAG / SET_FLAG, in the
        // column's character set: text.
        _ if flags.intersects(ColumnFlags::ENUM_FLAG | ColumnFlags::SET_FLAG) => Kind::Text,
        ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB
            if binary =>
        {
            Kind::Bytes
        }
        _ if json => Kind::Json,
        // TIME (a duration up to ±838:59:59, not a time of day), ENUM,
        // SET, text types and anything newer (VECTOR) stay text.
        _ => Kind::Text,
    }
}

impl Kind {
    /// What discovery reports for a column of this kind.
    pub fn field_type(self) -> FieldType {
        match self {
            Kind::Integer | Kind::Bit => FieldType::Integer,
            Kind::BigUnsigned | Kind::Decimal => FieldType::Decimal,
            Kind::Float => FieldType::Float,
            Kind::Text => FieldType::Text,
            Kind::Bytes => FieldType::Bytes,
            Kind::Date => FieldType::Date,
            Kind::Timestamp => FieldType::Timestamp,
            Kind::Json => FieldType::Json,
            Kind::Null => FieldType::Any,
        }
    }
}

/// The kind of a column as `information_schema.COLUMNS` describes it
/// (`DATA_TYPE`, `COLUMN_TYPE`), for discovery.
pub fn kind_of_declared(data_type: &str, column_type: &str, json: bool) -> Kind {
    let unsigned = column_type.contains("unsigned");
    match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "year" => Kind::Integer,
        "bigint" if unsigned => Kind::BigUnsigned,
        "bigint" => Kind::Integer,
        "decimal" | "numeric" | "fixed" | "dec" => Kind::Decimal,
        "float" | "double" | "real" | "double precision" => Kind::Float,
        "date" => Kind::Date,
        "datetime" | "timestamp" => Kind::Timestamp,
        "json" => Kind::Json,
        "bit" if column_type != "bit(64)" => Kind::Bit,
        "bit" | "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
        | "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => Kind::Bytes,
        _ if json => Kind::Json,
        _ => Kind::Text,
    }
}

/// Why a value could not be decoded. The reader adds the column and row.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// `0000-00-00`, or a date with a zero month or day, which MySQL stores
    /// under lenient SQL modes and no calendar has.
    ZeroDate(String),
    Invalid(String),
}

/// Decode a non-NULL text-protocol value of `kind`.
pub fn decode(kind: Kind, raw: &[u8]) -> Result<Value, DecodeError> {
    Ok(match kind {
        Kind::Integer => Value::Integer(parse_int(ascii(raw)?)?),
        Kind::BigUnsigned => big_unsigned(ascii(raw)?)?,
        Kind::Decimal => Value::Decimal(decimal(ascii(raw)?)?),
        Kind::Float => Value::Float(float(ascii(raw)?)?),
        Kind::Text => Value::Text(utf8(raw)?.to_owned()),
        Kind::Json => Value::Json(utf8(raw)?.to_owned()),
        Kind::Bytes => Value::Bytes(raw.to_vec()),
        Kind::Bit => Value::Integer(bits(raw)?),
        Kind::Date => date(ascii(raw)?)?,
        Kind::Timestamp => timestamp(ascii(raw)?)?,
        Kind::Null => Value::Null,
    })
}

fn ascii(raw: &[u8]) -> Result<&str, DecodeError> {
    match std::str::from_utf8(raw) {
        Ok(text) if text.is_ascii() => Ok(text),
        _ => Err(DecodeError::Invalid(format!(
            "expected an ASCII number or date, got bytes {:02x?}",
            &raw[..raw.len().min(16)]
        ))),
    }
}

/// Text columns arrive in utf8mb4 (the connection's character set); bytes
/// that are not UTF-8 mean the column holds binary data in a text type.
fn utf8(raw: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(raw).map_err(|e| {
        let at = e.valid_up_to();
        let bad = &raw[at..raw.len().min(at + 4)];
        DecodeError::Invalid(format!("invalid UTF-8 at byte {at} (bytes {bad:02x?})"))
    })
}

fn parse_int(text: &str) -> Result<i64, DecodeError> {
    text.parse()
        .map_err(|_| DecodeError::Invalid(format!("`{text}` is not a 64-bit integer")))
}

/// BIGINT UNSIGNED up to 18446744073709551615: values past i64::MAX keep
/// their exact digits as a decimal.
fn big_unsigned(text: &str) -> Result<Value, DecodeError> {
    let value: u64 = text
        .parse()
        .map_err(|_| DecodeError::Invalid(format!("`{text}` is not an unsigned 64-bit integer")))?;
    Ok(match i64::try_from(value) {
        Ok(value) => Value::Integer(value),
        Err(_) => Value::Decimal(value.to_string()),
    })
}

/// DECIMAL's text is plain notation (`-12.50`); checked, not re-rendered.
fn decimal(text: &str) -> Result<String, DecodeError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let valid = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(DecodeError::Invalid(format!("`{text}` is not a decimal")))
    }
}

/// FLOAT and DOUBLE print their shortest round-trip form (`1e38`, `-0`,
/// `3.4028234663852886e38`), which Rust parses exactly.
fn float(text: &str) -> Result<f64, DecodeError> {
    text.parse()
        .map_err(|_| DecodeError::Invalid(format!("`{text}` is not a floating-point number")))
}

/// BIT(n) arrives as ceil(n/8) big-endian bytes.
fn bits(raw: &[u8]) -> Result<i64, DecodeError> {
    if raw.len() > 8 {
        return Err(DecodeError::Invalid(format!(
            "BIT value of {} bytes does not fit 64 bits",
            raw.len()
        )));
    }
    let value = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    i64::try_from(value)
        .map_err(|_| DecodeError::Invalid(format!("BIT value {value} does not fit an integer")))
}

/// `YYYY-MM-DD`.
fn date(text: &str) -> Result<Value, DecodeError> {
    reject_zero_date(text)?;
    let days = parse_date(text)
        .and_then(|d| i32::try_from(d).ok())
        .ok_or_else(|| DecodeError::Invalid(format!("`{text}` is not a valid date")))?;
    Ok(Value::Date(days))
}

/// `YYYY-MM-DD hh:mm:ss[.ffffff]`, a wall-clock reading in the session's
/// time zone, which the connection sets to UTC. The date goes through the
/// shared date parser; the time of day is added here because the shared
/// timestamp parser (jiff's instants) stops short of 9999-12-31 23:59:59,
/// which DATETIME reaches.
fn timestamp(text: &str) -> Result<Value, DecodeError> {
    reject_zero_date(text)?;
    let invalid = || DecodeError::Invalid(format!("`{text}` is not a valid date and time"));
    let (day, time) = text.split_once(' ').unwrap_or((text, "00:00:00"));
    let days = parse_date(day).ok_or_else(invalid)?;
    let micros = time_of_day_micros(time).ok_or_else(invalid)?;
    days.checked_mul(MICROS_PER_DAY)
        .and_then(|m| m.checked_add(micros))
        .map(Value::Timestamp)
        .ok_or_else(invalid)
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `hh:mm:ss[.f…]` (up to 6 fraction digits) as µs since midnight.
fn time_of_day_micros(time: &str) -> Option<i64> {
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':');
    let mut field = |max: i64| -> Option<i64> {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok().filter(|v| *v <= max)
    };
    let (h, m, s) = (field(23)?, field(59)?, field(59)?);
    if parts.next().is_some() || fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac: i64 = format!("{fraction:0<6}").parse().ok()?;
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + frac)
}

/// MySQL's "zero" dates: `0000-00-00`, and dates with a zero month or day
/// (`2024-00-15`, `2024-03-00`), which lenient SQL modes allow.
fn reject_zero_date(text: &str) -> Result<(), DecodeError> {
    let month = text.get(5..7);
    let day = text.get(8..10);
    if month == Some("00") || day == Some("00") {
        return Err(DecodeError::ZeroDate(text.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: Kind, raw: &str) -> Value {
        decode(kind, raw.as_bytes()).unwrap()
    }

    #[test]
    fn integers_and_unsigned_beyond_i64_become_decimals() {
        assert_eq!(
            ok(Kind::Integer, "-9223372036854775808"),
            Value::Integer(i64::MIN)
        );
        assert_eq!(ok(Kind::Integer, "0007"), Value::Integer(7));
        assert_eq!(
            ok(Kind::BigUnsigned, "9223372036854775807"),
            Value::Integer(i64::MAX)
        );
        assert_eq!(
            ok(Kind::BigUnsigned, "18446744073709551615"),
            Value::Decimal("18446744073709551615".into())
        );
        assert!(decode(Kind::Integer, b"1.5").is_err());
    }

    #[test]
    fn decimals_stay_exact_text() {
        assert_eq!(
            ok(Kind::Decimal, "-12345678901234567890123456789.123456789"),
            Value::Decimal("-12345678901234567890123456789.123456789".into())
        );
        for bad in ["", "-", "1.", ".5", "1e5", "abc"] {
            assert!(decode(Kind::Decimal, bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_and_timestamps_with_fractions() {
        assert_eq!(ok(Kind::Date, "1970-01-02"), Value::Date(1));
        assert_eq!(
            ok(Kind::Timestamp, "1970-01-01 00:00:01.000001"),
            Value::Timestamp(1_000_001)
        );
        assert_eq!(
            ok(Kind::Timestamp, "2038-01-19 03:14:07"),
            Value::Timestamp(2_147_483_647_000_000)
        );
        assert_eq!(
            ok(Kind::Timestamp, "1969-12-31 23:59:59.5"),
            Value::Timestamp(-500_000)
        );
        assert_eq!(
            ok(Kind::Timestamp, "9999-12-31 23:59:59.999999"),
            Value::Timestamp(253_402_300_799_999_999)
        );
        for bad in [
            "2024-01-01 24:00:00",
            "2024-01-01 1:00:00",
            "2024-01-01 00:00:00.1234567",
            "2024-02-30 00:00:00",
        ] {
            assert!(decode(Kind::Timestamp, bad.as_bytes()).is_err(), "{bad}");
        }
        for zero in ["0000-00-00", "2024-00-10", "2024-03-00"] {
            assert_eq!(
                decode(Kind::Date, zero.as_bytes()),
                Err(DecodeError::ZeroDate(zero.into()))
            );
        }
        assert!(matches!(
            decode(Kind::Timestamp, b"0000-00-00 00:00:00"),
            Err(DecodeError::ZeroDate(_))
        ));
    }

    #[test]
    fn bits_floats_text_and_bytes() {
        assert_eq!(ok(Kind::Bit, "\u{1}\u{2}"), Value::Integer(258));
        assert_eq!(ok(Kind::Float, "-1.5e-7"), Value::Float(-1.5e-7));
        assert_eq!(
            ok(Kind::Text, "Zürich ✓ 🚀"),
            Value::Text("Zürich ✓ 🚀".into())
        );
        assert_eq!(
            decode(Kind::Bytes, &[0, 255]).unwrap(),
            Value::Bytes(vec![0, 255])
        );
        assert!(decode(Kind::Text, &[0xff]).is_err());
    }

    #[test]
    fn declared_types_map_like_result_columns() {
        assert_eq!(
            kind_of_declared("bigint", "bigint(20) unsigned", false),
            Kind::BigUnsigned
        );
        assert_eq!(kind_of_declared("longtext", "longtext", true), Kind::Json);
        assert_eq!(kind_of_declared("bit", "bit(64)", false), Kind::Bytes);
        assert_eq!(kind_of_declared("bit", "bit(3)", false), Kind::Bit);
        assert_eq!(kind_of_declared("enum", "enum('a','b')", false), Kind::Text);
    }
}
