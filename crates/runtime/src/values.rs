//! A plugin [`Value`] in the forms people read: JSON for plan samples and
//! fixtures, RFC 3339 text for timestamps and dates. Calendar arithmetic is
//! jiff's, as in the SDK (`sdk/src/value.rs`), so host and guest agree on
//! every date.

use crate::Value;
use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{Span, Timestamp};

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// A value as JSON: numbers as numbers (a decimal that JSON cannot carry
/// stays text), JSON values parsed, bytes as hex, times as RFC 3339 text.
pub fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Decimal(s) => s
            .parse::<serde_json::Number>()
            .map(J::Number)
            .unwrap_or_else(|_| J::String(s.clone())),
        Value::Text(s) => J::String(s.clone()),
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
        Value::Bytes(b) => J::String(hex::encode(b)),
        Value::Timestamp(us) => J::String(format_timestamp(*us)),
        Value::Date(d) => J::String(format_date(*d)),
    }
}

/// The date of a day number (days since 1970-01-01), if it is within
/// years -9999..=9999.
pub fn date_from_days(days: i32) -> Option<Date> {
    Date::constant(1970, 1, 1)
        .checked_add(Span::new().try_days(days).ok()?)
        .ok()
}

/// Days since 1970-01-01 of a date.
pub fn days_from_date(date: Date) -> i32 {
    // Dates span ±10,000 years, which fits an i32 of days.
    (date - Date::constant(1970, 1, 1)).get_days()
}

/// `YYYY-MM-DD` of a day number; a day number outside years -9999..=9999
/// is written as the number of days it is.
pub fn format_date(days: i32) -> String {
    match date_from_days(days) {
        Some(d) => d.to_string(),
        None => format!("{days} days since 1970-01-01"),
    }
}

/// RFC 3339 in UTC, with microseconds only when they are not zero.
pub fn format_timestamp(micros: i64) -> String {
    let Ok(ts) = Timestamp::from_microsecond(micros) else {
        return format!("{micros} microseconds since 1970-01-01T00:00:00Z");
    };
    let dt = Offset::UTC.to_datetime(ts);
    let frac = micros.rem_euclid(1_000_000);
    if frac == 0 {
        format!("{}Z", dt.strftime("%Y-%m-%dT%H:%M:%S"))
    } else {
        format!("{}.{frac:06}Z", dt.strftime("%Y-%m-%dT%H:%M:%S"))
    }
}

/// Parses a date (`YYYY-MM-DD`) or an RFC 3339 / ISO 8601 date and time
/// (`T`, `t` or a space between them, minutes or seconds, a fraction, `Z`
/// or an offset) into microseconds since the epoch. A time without a zone
/// is UTC; fractions beyond microseconds are truncated.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let ts = match s.parse::<Timestamp>() {
        Ok(ts) => ts,
        Err(_) => s
            .parse::<DateTime>()
            .ok()?
            .to_zoned(TimeZone::UTC)
            .ok()?
            .timestamp(),
    };
    let micros = ts.as_microsecond();
    // `as_microsecond` rounds toward zero; truncation means toward the past.
    if ts.subsec_nanosecond() < 0 && ts.subsec_nanosecond() % 1000 != 0 {
        return micros.checked_sub(1);
    }
    Some(micros)
}

/// Day number of a date written `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<i32> {
    s.parse::<Date>().ok().map(days_from_date)
}

/// Microseconds of a day number at midnight UTC.
pub fn date_micros(days: i32) -> i64 {
    i64::from(days) * MICROS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_text() {
        let t = parse_timestamp("2024-01-31T12:00:00Z").unwrap();
        assert_eq!(format_timestamp(t), "2024-01-31T12:00:00Z");
        assert_eq!(parse_timestamp("2024-01-31 14:00:00+02:00"), Some(t));
        assert_eq!(parse_timestamp("2024-01-31T12:00"), Some(t));
        assert_eq!(parse_timestamp("2024-01-31T12:00:00.000000999Z"), Some(t));
        let f = parse_timestamp("1969-12-31T23:59:59.5Z").unwrap();
        assert_eq!(f, -500_000);
        assert_eq!(format_timestamp(f), "1969-12-31T23:59:59.500000Z");
        assert_eq!(parse_timestamp("2024-01-31"), Some(date_micros(19753)));
        assert_eq!(parse_timestamp("2024-02-30"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2024-01-31T25:00:00Z"), None);
    }

    #[test]
    fn dates_round_trip_through_day_numbers() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(-1), "1969-12-31");
        assert_eq!(format_date(19753), "2024-01-31");
        assert_eq!(parse_date("2024-02-29"), Some(19782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(format_date(i32::MAX), "2147483647 days since 1970-01-01");
    }
}
