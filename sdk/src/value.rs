//! Helpers on the contract's data types: building values, reading rows by
//! column name, and specs with sane defaults; dates and timestamps as text.
//! Calendar arithmetic is jiff's, as on the host
//! (`crates/runtime/src/values.rs`), so host and guest agree on every date.

use crate::{Batch, PluginSpec, RowError, RowResult, Transformed, Value};
use jiff::civil::{Date, DateTime, Time};
use jiff::fmt::temporal::Pieces;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};
use std::ops::RangeInclusive;

impl Value {
    /// The text of a `text`, `decimal` or `json` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Decimal(s) | Value::Json(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an i64, if it is an integer (or a whole float/decimal).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            Value::Decimal(s) | Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as an f64, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Decimal(s) | Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Render the value as JSON (timestamps as RFC 3339 UTC, dates as
    /// YYYY-MM-DD, bytes as lowercase hex, decimals as JSON numbers when they
    /// fit, JSON documents inline).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Boolean(b) => J::Bool(*b),
            Value::Integer(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Decimal(s) => serde_json::from_str::<serde_json::Number>(s)
                .map(J::Number)
                .unwrap_or_else(|_| J::String(s.clone())),
            Value::Text(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(hex(b)),
            Value::Timestamp(us) => J::String(format_timestamp(*us)),
            Value::Date(days) => J::String(format_date(*days)),
            Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
        }
    }

    /// Write the value's plain text form (what a CSV cell or an API string
    /// field would carry) into `out`.
    pub fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Value::Null => {}
            Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Integer(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Value::Decimal(s) | Value::Text(s) | Value::Json(s) => out.push_str(s),
            Value::Bytes(b) => out.push_str(&hex(b)),
            Value::Timestamp(us) => out.push_str(&format_timestamp(*us)),
            Value::Date(d) => out.push_str(&format_date(*d)),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

impl Batch {
    pub fn new(columns: Vec<String>) -> Self {
        Batch {
            columns,
            rows: Vec::new(),
        }
    }

    /// The position of a column, by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i` as a JSON object keyed by column name.
    pub fn row_json(&self, i: usize) -> serde_json::Map<String, serde_json::Value> {
        self.columns
            .iter()
            .zip(&self.rows[i])
            .map(|(c, v)| (c.clone(), v.to_json()))
            .collect()
    }
}

impl Transformed {
    /// Every input row came through.
    pub fn all(batch: Batch) -> Self {
        Transformed {
            batch,
            errors: Vec::new(),
        }
    }

    /// Record that input row `index` failed; it must not appear in `batch`.
    pub fn reject(&mut self, index: usize, message: impl Into<String>) {
        self.errors.push(RowError {
            index: index as u32,
            message: message.into(),
        });
    }
}

impl RowResult {
    /// Whether the destination accepted the row.
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            RowResult::Created | RowResult::Updated | RowResult::Deleted | RowResult::Accepted
        )
    }
}

impl PluginSpec {
    /// A spec with no capabilities, an empty config schema, no rate limit and
    /// batches of 1,000 rows.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        PluginSpec {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            config_schema: r#"{"type":"object"}"#.into(),
            capabilities: Vec::new(),
            rate_limit: None,
            batch_size: 1000,
        }
    }

    pub fn config_schema(mut self, schema: serde_json::Value) -> Self {
        self.config_schema = schema.to_string();
        self
    }

    pub fn capability(mut self, capability: &str) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows;
        self
    }

    pub fn rate_limit(mut self, requests: u32, per_ms: u32, concurrency: u32) -> Self {
        self.rate_limit = Some(crate::RateLimit {
            requests,
            per_ms,
            concurrency,
        });
        self
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// 1970-01-01, day 0 of a `date` value and the day of timestamp 0.
const EPOCH: Date = Date::constant(1970, 1, 1);
const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;
/// Day numbers of jiff's first and last dates, -9999-01-01 and 9999-12-31.
const JIFF_DAYS: RangeInclusive<i64> = -4_371_587..=2_932_896;
/// The microseconds jiff takes as timestamps, -009999-01-02T01:59:59Z to
/// 9999-12-30T22:00:00Z: 26 hours inside its dates, so that any offset gives
/// a date.
const JIFF_MICROS: RangeInclusive<i64> = -377_705_023_201_000_000..=253_402_207_200_000_000;
/// The Gregorian calendar repeats every 400 years, which are 146,097 days.
const DAYS_PER_400_YEARS: i64 = 146_097;

/// (year, month, day) of a day number (days since 1970-01-01), proleptic
/// Gregorian, from jiff. jiff's dates end at years ±9999; a day beyond them
/// (`date` values span ±5.8 million years, timestamps ±292,000) is moved
/// into that range by whole 400-year cycles, whose calendar is the same,
/// and the year moved back.
fn civil_date(days: i64) -> (i64, i8, i8) {
    let cycles = if JIFF_DAYS.contains(&days) {
        0
    } else {
        days.div_euclid(DAYS_PER_400_YEARS)
    };
    let date = EPOCH
        .checked_add(Span::new().days(days - cycles * DAYS_PER_400_YEARS))
        .expect("the day is within jiff's dates");
    (
        i64::from(date.year()) + 400 * cycles,
        date.month(),
        date.day(),
    )
}

/// The UTC calendar fields of a timestamp (microseconds since
/// 1970-01-01T00:00:00Z), from jiff.
struct Civil {
    year: i64,
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    second: i8,
    /// 0..=999_999
    micro: i32,
}

impl Civil {
    fn of_timestamp(micros: i64) -> Civil {
        if JIFF_MICROS.contains(&micros) {
            let ts = Timestamp::from_microsecond(micros).expect("within jiff's timestamps");
            let dt = Offset::UTC.to_datetime(ts);
            return Civil {
                year: i64::from(dt.year()),
                month: dt.month(),
                day: dt.day(),
                hour: dt.hour(),
                minute: dt.minute(),
                second: dt.second(),
                micro: dt.subsec_nanosecond() / 1000,
            };
        }
        // Beyond jiff's timestamps: the day as a day number and the time of
        // day by wrapping at midnight (which holds for any i64).
        let (year, month, day) = civil_date(micros.div_euclid(MICROS_PER_DAY));
        let time = Time::midnight().wrapping_add(SignedDuration::from_micros(micros));
        Civil {
            year,
            month,
            day,
            hour: time.hour(),
            minute: time.minute(),
            second: time.second(),
            micro: time.subsec_nanosecond() / 1000,
        }
    }
}

/// `2024-05-01`
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_date(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2024-05-01T12:30:00.000001Z` (fraction only when non-zero)
pub fn format_timestamp(micros: i64) -> String {
    let Civil {
        year: y,
        month: m,
        day: d,
        hour: hh,
        minute: mm,
        second: ss,
        micro: frac,
    } = Civil::of_timestamp(micros);
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:06}Z")
    }
}

/// Append `"2024-05-01T12:30:00[.000001]Z"` (the JSON string of
/// [`format_timestamp`]) to `out` without allocating, for years 0 to 9999.
/// Returns false, writing nothing, outside that range. For destinations that
/// encode many timestamps.
pub fn write_timestamp_json(out: &mut Vec<u8>, micros: i64) -> bool {
    let c = Civil::of_timestamp(micros);
    if !(0..=9999).contains(&c.year) {
        return false;
    }
    /// Writes `n` in decimal across all of `field`, zero-padded.
    fn put(field: &mut [u8], mut n: u32) {
        for b in field.iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    // Every field is in range and non-negative, so the casts are exact.
    let mut buf = *b"\"0000-00-00T00:00:00.000000Z\"";
    put(&mut buf[1..5], c.year as u32);
    put(&mut buf[6..8], c.month as u32);
    put(&mut buf[9..11], c.day as u32);
    put(&mut buf[12..14], c.hour as u32);
    put(&mut buf[15..17], c.minute as u32);
    put(&mut buf[18..20], c.second as u32);
    if c.micro == 0 {
        out.extend_from_slice(&buf[..20]);
        out.extend_from_slice(b"Z\"");
    } else {
        put(&mut buf[21..27], c.micro as u32);
        out.extend_from_slice(&buf);
    }
    true
}

/// Days since 1970-01-01 of a date written `YYYY-MM-DD` (or another ISO 8601
/// calendar date jiff reads: `YYYYMMDD`, `+YYYYYY-MM-DD`). Text with a time,
/// offset or time zone is not a date and is rejected, rather than having its
/// time dropped.
pub fn parse_date(s: &str) -> Option<i64> {
    let pieces = Pieces::parse(s).ok()?;
    if pieces.time().is_some()
        || pieces.offset().is_some()
        || pieces.time_zone_annotation().is_some()
    {
        return None;
    }
    Some(i64::from((pieces.date() - EPOCH).get_days()))
}

/// Microseconds since 1970-01-01T00:00:00Z of a date (`YYYY-MM-DD`, its
/// midnight) or an RFC 3339 / ISO 8601 date and time: `T`, `t` or a space
/// between them, hours, minutes or seconds, a fraction (`.` or `,`), then
/// `Z` or an offset (`±HH`, `±HHMM`, `±HH:MM`). A time without an offset is
/// UTC; digits past the microsecond are dropped (truncated toward the past).
/// Parsed as the host parses (`crates/runtime/src/values.rs`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_and_timestamps() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_844), "2024-05-01");
        assert_eq!(format_date(-1), "1969-12-31");
        assert_eq!(
            format_timestamp(1_714_566_600_000_000),
            "2024-05-01T12:30:00Z"
        );
        assert_eq!(format_timestamp(1), "1970-01-01T00:00:00.000001Z");
    }

    #[test]
    fn jiff_ranges_are_jiffs() {
        assert_eq!(
            i64::from((Date::MIN - EPOCH).get_days()),
            *JIFF_DAYS.start()
        );
        assert_eq!(i64::from((Date::MAX - EPOCH).get_days()), *JIFF_DAYS.end());
        let (start, end) = (*JIFF_MICROS.start(), *JIFF_MICROS.end());
        assert!(Timestamp::from_microsecond(start).is_ok());
        assert!(Timestamp::from_microsecond(start - 1).is_err());
        assert!(Timestamp::from_microsecond(end).is_ok());
        assert!(Timestamp::from_microsecond(end + 1).is_err());
        // Just past them, the fallback agrees with jiff's calendar.
        assert_eq!(format_timestamp(start), "-9999-01-02T01:59:59Z");
        assert_eq!(format_timestamp(start - 1), "-9999-01-02T01:59:58.999999Z");
        assert_eq!(format_timestamp(end), "9999-12-30T22:00:00Z");
        assert_eq!(format_timestamp(end + 1), "9999-12-30T22:00:00.000001Z");
    }

    #[test]
    fn formats_years_outside_jiffs_range_as_before() {
        // The output of the hand-written calendar this replaced.
        for (days, text) in [
            (-719_529, "-001-12-31"),
            (-719_528, "0000-01-01"),
            (-4_371_587, "-9999-01-01"),
            (-4_371_588, "-10000-12-31"),
            (2_932_896, "9999-12-31"),
            (2_932_897, "10000-01-01"),
            (i32::MAX, "5881580-07-11"),
            (i32::MIN, "-5877641-06-23"),
        ] {
            assert_eq!(format_date(days), text, "{days}");
        }
        for (micros, text) in [
            (i64::MAX, "294247-01-10T04:00:54.775807Z"),
            (i64::MIN, "-290308-12-21T19:59:05.224192Z"),
            (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
            (253_402_300_800_000_000, "10000-01-01T00:00:00Z"),
            (-62_167_219_200_000_001, "-001-12-31T23:59:59.999999Z"),
            (-377_705_116_800_000_000, "-9999-01-01T00:00:00Z"),
            (-377_705_116_800_000_001, "-10000-12-31T23:59:59.999999Z"),
        ] {
            assert_eq!(format_timestamp(micros), text, "{micros}");
        }
    }

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-05-01"), Some(19_844));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("1900-03-01"), Some(-25_508));
        assert_eq!(parse_date("0000-01-01"), Some(-719_528));
        // Leap days: every fourth year, not centuries, but every 400th.
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2000-02-29"), Some(11_016));
        assert_eq!(parse_date("1600-02-29"), Some(-135_081));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("1900-02-29"), None);
        for bad in [
            "",
            "2024-13-01",
            "2024-04-31",
            "2024-00-10",
            "2024-5-1",
            "24-05-01",
            " 2024-05-01",
            "2024-05-01 ",
            "2024-05-01T12:30",
            "2024-05-01T00:00:00Z",
            "2024-05-01[UTC]",
            "yesterday",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
        // Years beyond 0..=9999 are written with a sign and six digits.
        assert_eq!(parse_date("-009999-01-01"), Some(-4_371_587));
        assert_eq!(parse_date("+002024-05-01"), Some(19_844));
        assert_eq!(parse_date("-0001-12-31"), None);
        for days in [-719_528, -1, 0, 19_844, 2_932_896] {
            let text = format_date(days);
            assert_eq!(parse_date(&text), Some(i64::from(days)), "{text}");
        }
    }

    #[test]
    fn parses_timestamps() {
        const T: i64 = 1_714_566_600_000_000; // 2024-05-01T12:30:00Z
        for text in [
            "2024-05-01T12:30:00Z",
            "2024-05-01t12:30:00z",
            "2024-05-01 12:30:00Z",
            "2024-05-01T12:30Z",
            "2024-05-01T12:30:00",
            "2024-05-01 12:30",
            "2024-05-01T14:30:00+02:00",
            "2024-05-01T14:30:00+0200",
            "2024-05-01T14:30:00+02",
            "2024-05-01T07:00:00-05:30",
            "2024-05-01T12:30:00-00:00",
            "2024-05-02T00:30:00+12:00",
            "2024-04-30T23:30:00-13:00",
        ] {
            assert_eq!(parse_timestamp(text), Some(T), "{text}");
        }
        // A date alone is its midnight, UTC.
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("2024-02-29"), Some(19_782 * MICROS_PER_DAY));
        assert_eq!(
            parse_timestamp("1900-03-01T00:00:00Z"),
            Some(-25_508 * MICROS_PER_DAY)
        );
        assert_eq!(
            parse_timestamp("2024-02-29T23:59:59Z"),
            Some(19_783 * MICROS_PER_DAY - 1_000_000)
        );
        // Fractions: `.` or `,`, truncated to the microsecond, toward the
        // past before 1970.
        assert_eq!(parse_timestamp("2024-05-01T12:30:00.5Z"), Some(T + 500_000));
        assert_eq!(
            parse_timestamp("2024-05-01T12:30:00,25Z"),
            Some(T + 250_000)
        );
        assert_eq!(parse_timestamp("2024-05-01T12:30:00.000001Z"), Some(T + 1));
        assert_eq!(
            parse_timestamp("2024-05-01T12:30:00.1234567Z"),
            Some(T + 123_456)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T12:30:00.999999999Z"),
            Some(T + 999_999)
        );
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.5Z"), Some(-500_000));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.9999995Z"), Some(-1));
        assert_eq!(
            parse_timestamp("1969-12-31T23:59:59.000000001Z"),
            Some(-1_000_000)
        );
        assert_eq!(
            parse_timestamp("1969-07-20T20:17:40Z"),
            Some(-14_182_940_000_000)
        );
        for bad in [
            "",
            "yesterday",
            "2024-02-30T00:00:00Z",
            "2023-02-29",
            "2024-05-01T25:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:60:00Z",
            "2024-05-01T12:30:00+02:00x",
            "2024-05-01T12:30:00.Z",
            "2024-05-01T",
            "2024-05-01 ",
            "12:30:00",
            "1714566600",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
        for micros in [0, 1, -1, T, T + 123_456, -14_182_940_000_000] {
            let text = format_timestamp(micros);
            assert_eq!(parse_timestamp(&text), Some(micros), "{text}");
        }
    }

    #[test]
    fn values_render_as_json() {
        assert_eq!(
            Value::Decimal("12.50".into()).to_json(),
            serde_json::json!(12.5)
        );
        assert_eq!(
            Value::Bytes(vec![0xde, 0xad]).to_json(),
            serde_json::json!("dead")
        );
        assert_eq!(
            Value::Json(r#"{"a":1}"#.into()).to_json(),
            serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn timestamp_json_matches_to_json() {
        for us in [
            0,
            1,
            -1,
            1_714_566_600_000_000,
            1_700_000_000_123_456,
            -62_167_219_200_000_000,
            -62_167_219_200_000_001,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            951_782_400_000_000,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            let expected = serde_json::to_string(&Value::Timestamp(us).to_json()).unwrap();
            if write_timestamp_json(&mut out, us) {
                assert_eq!(String::from_utf8(out).unwrap(), expected, "{us}");
            } else {
                // Only years outside 0..=9999 take the SDK's path.
                assert!(out.is_empty(), "{us}");
                assert!(
                    expected.starts_with("\"-") || expected.split('-').next().unwrap().len() > 5,
                    "{us}: {expected}"
                );
            }
        }
    }
}
