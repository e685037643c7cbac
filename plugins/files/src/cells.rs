//! Text cells to typed values, for CSV type hints. Every parser returns a
//! short reason on failure; the caller adds file, line and column. Dates and
//! timestamps are the SDK's parsers (jiff's calendar, as on the host).

use crate::config::ColumnType;
use sluice_sdk::value::{parse_date, parse_timestamp};
use sluice_sdk::Value;

/// Parse one cell as `hint`. An empty cell is null whatever the type.
pub fn parse_cell(text: &str, hint: ColumnType) -> Result<Value, String> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    if hint == ColumnType::Text {
        return Ok(Value::Text(text.to_string()));
    }
    // Surrounding spaces are formatting, not data, for every typed column.
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    let parsed = match hint {
        ColumnType::Text => unreachable!("handled above"),
        ColumnType::Integer => t.parse::<i64>().ok().map(Value::Integer),
        ColumnType::Float => t.parse::<f64>().ok().map(Value::Float),
        ColumnType::Decimal => parse_decimal(t).map(Value::Decimal),
        ColumnType::Boolean => parse_bool(t).map(Value::Boolean),
        ColumnType::Timestamp => parse_timestamp(t).map(Value::Timestamp),
        ColumnType::Date => parse_date(t)
            .and_then(|d| i32::try_from(d).ok())
            .map(Value::Date),
        ColumnType::Json => serde_json::from_str::<serde::de::IgnoredAny>(t)
            .ok()
            .map(|_| Value::Json(t.to_string())),
    };
    parsed.ok_or_else(|| {
        format!(
            "{text:?} is not a valid {} ({})",
            hint.name(),
            expected(hint)
        )
    })
}

fn expected(hint: ColumnType) -> &'static str {
    match hint {
        ColumnType::Text => "any text",
        ColumnType::Integer => "expected a whole number between -2^63 and 2^63-1",
        ColumnType::Float => "expected a number such as 12.5 or 1e-3",
        ColumnType::Decimal => "expected a plain decimal such as -12.50",
        ColumnType::Boolean => "expected true/false, t/f, yes/no, y/n or 1/0",
        ColumnType::Timestamp => {
            "expected YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|±HH:MM]; no offset means UTC"
        }
        ColumnType::Date => "expected YYYY-MM-DD",
        ColumnType::Json => "expected a JSON document",
    }
}

fn parse_bool(t: &str) -> Option<bool> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// `[+-]digits[.digits]` (or `.5`), normalised to plain notation with a
/// leading digit and no `+`; trailing zeros are kept since they carry scale.
fn parse_decimal(t: &str) -> Option<String> {
    let (negative, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let mut out = String::with_capacity(t.len() + 1);
    if negative {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps_in_common_shapes() {
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(
            parse_timestamp("2024-05-01T12:30:00Z"),
            Some(1_714_566_600_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-05-01 12:30"),
            Some(1_714_566_600_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T14:30:00+02:00"),
            Some(1_714_566_600_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T12:30:00.1234567Z"),
            Some(1_714_566_600_123_456)
        );
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.5Z"), Some(-500_000));
        assert_eq!(parse_timestamp("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse_timestamp("2024-05-01T25:00:00Z"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn parses_dates_decimals_and_booleans() {
        assert_eq!(parse_date("2024-05-01"), Some(19_844));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_decimal("-12.50").as_deref(), Some("-12.50"));
        assert_eq!(parse_decimal("+.5").as_deref(), Some("0.5"));
        assert_eq!(parse_decimal("1e5"), None);
        assert_eq!(parse_decimal("-"), None);
        assert_eq!(
            parse_cell(" Yes ", ColumnType::Boolean),
            Ok(Value::Boolean(true))
        );
        assert_eq!(parse_cell("", ColumnType::Integer), Ok(Value::Null));
        assert_eq!(
            parse_cell(" ", ColumnType::Text),
            Ok(Value::Text(" ".into()))
        );
        assert!(parse_cell("12.5", ColumnType::Integer)
            .unwrap_err()
            .contains("not a valid integer"));
    }
}
