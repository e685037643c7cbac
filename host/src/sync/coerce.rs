//! The `type:` coercions of a mapping, and the calendar arithmetic they need.
//!
//! Every coercion keeps null as null. A value that cannot be converted is an
//! error whose message says what was expected; the mapping step adds the row
//! key, column and value.

use crate::config::Coercion;
use crate::Value;

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
        Value::Date(d) => Ok(Value::Timestamp(i64::from(d) * MICROS_PER_DAY)),
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

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

/// `YYYY-MM-DD` of a day number.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 in UTC, with microseconds only when they are not zero.
pub fn format_timestamp(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rem = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / MICROS_PER_SECOND;
    let frac = rem % MICROS_PER_SECOND;
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let base = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:06}Z")
    }
}

/// Parses `YYYY-MM-DD`, or `YYYY-MM-DD[T| ]HH:MM[:SS[.fraction]][Z|±HH:MM|±HHMM]`
/// into microseconds since the epoch. A time without a zone is UTC;
/// fractions beyond microseconds are truncated.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let (date, rest) = s.split_at_checked(10)?;
    let days = parse_date(date)?;
    if rest.is_empty() {
        return days.checked_mul(MICROS_PER_DAY);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (time, offset) = split_zone(rest)?;
    let micros_of_day = parse_time(time)?;
    days.checked_mul(MICROS_PER_DAY)?
        .checked_add(micros_of_day)?
        .checked_sub(offset.checked_mul(60 * MICROS_PER_SECOND)?)
}

fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i64 = digits(&s[0..4])?.into();
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits the zone designator off; returns the time and the offset in
/// minutes east of UTC.
fn split_zone(s: &str) -> Option<(&str, i64)> {
    if let Some(t) = s.strip_suffix(['Z', 'z']) {
        return Some((t, 0));
    }
    let Some(pos) = s.rfind(['+', '-']) else {
        return Some((s, 0));
    };
    let (time, zone) = s.split_at(pos);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let hm = zone[1..].replace(':', "");
    if hm.len() != 4 {
        return None;
    }
    let (h, m) = (digits(&hm[..2])?, digits(&hm[2..])?);
    if h > 23 || m > 59 {
        return None;
    }
    Some((time, sign * i64::from(h * 60 + m)))
}

fn parse_time(s: &str) -> Option<i64> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.split(':');
    let h = digits(parts.next()?)?;
    let m = digits(parts.next()?)?;
    let sec = parts.next().map(digits).unwrap_or(Some(0))?;
    if parts.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    if !frac.is_empty() && hms.matches(':').count() != 2 {
        return None;
    }
    let micros = parse_fraction(frac)?;
    let secs = i64::from(h * 3600 + m * 60 + sec.min(59));
    Some(secs * MICROS_PER_SECOND + micros)
}

fn parse_fraction(frac: &str) -> Option<i64> {
    if frac.is_empty() {
        return Some(0);
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let six: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    six.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        for days in [-719_468, -1, 0, 1, 11_016, 19_723, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn timestamps_parse_and_format() {
        let t = parse_timestamp("2024-01-31T12:00:00Z").unwrap();
        assert_eq!(format_timestamp(t), "2024-01-31T12:00:00Z");
        assert_eq!(parse_timestamp("2024-01-31 14:00:00+02:00"), Some(t));
        assert_eq!(parse_timestamp("2024-01-31T12:00"), Some(t));
        let f = parse_timestamp("1969-12-31T23:59:59.5Z").unwrap();
        assert_eq!(f, -500_000);
        assert_eq!(format_timestamp(f), "1969-12-31T23:59:59.500000Z");
        assert_eq!(parse_timestamp("2024-02-30"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2024-01-31T25:00:00Z"), None);
    }

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
            Value::Timestamp(MICROS_PER_DAY)
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
