//! Turning one column value off the wire into a `Value`. Binary columns are
//! decoded by hand (fixed-size big-endian numbers); text columns are
//! validated UTF-8, copied once into the `Value`'s own string.

use crate::types::{Elem, Kind};
use sluice_sdk::Value;
use std::fmt::Write as _;

/// PostgreSQL's date epoch (2000-01-01) in days since 1970-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// PostgreSQL's timestamp epoch (2000-01-01) in µs since 1970-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decode a non-NULL value of `kind` from its wire bytes (binary or text,
/// as chosen by [`Kind::binary`]). The error says what is wrong with the
/// bytes; the caller adds the column, type and row.
pub fn decode(kind: Kind, raw: &[u8]) -> Result<Value, String> {
    Ok(match kind {
        Kind::Bool => Value::Boolean(fixed::<1>(raw)?[0] != 0),
        Kind::Int2 => Value::Integer(i16::from_be_bytes(fixed(raw)?).into()),
        Kind::Int4 => Value::Integer(i32::from_be_bytes(fixed(raw)?).into()),
        Kind::Int8 => Value::Integer(i64::from_be_bytes(fixed(raw)?)),
        Kind::Oid => Value::Integer(u32::from_be_bytes(fixed(raw)?).into()),
        Kind::Float4 => Value::Float(widen(f32::from_be_bytes(fixed(raw)?))),
        Kind::Float8 => Value::Float(f64::from_be_bytes(fixed(raw)?)),
        Kind::Numeric => numeric(text(raw)?),
        Kind::Text => Value::Text(text(raw)?.to_owned()),
        Kind::Json => Value::Json(text(raw)?.to_owned()),
        Kind::Bytea => Value::Bytes(raw.to_vec()),
        Kind::Date => date(i32::from_be_bytes(fixed(raw)?))?,
        Kind::Timestamp | Kind::TimestampTz => timestamp(i64::from_be_bytes(fixed(raw)?))?,
        Kind::Uuid => Value::Text(uuid(&fixed::<16>(raw)?)),
        Kind::Array { elem, delim } => {
            let text = text(raw)?;
            let mut json = String::with_capacity(text.len() + 2);
            array_to_json(text, elem, delim, &mut json)?;
            Value::Json(json)
        }
    })
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes in binary format, got {}", raw.len()))
}

/// Text-format bytes as UTF-8. With client_encoding=UTF8 the server
/// converts for us, but a SQL_ASCII database passes any bytes through.
fn text(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|e| {
        let at = e.valid_up_to();
        let bad = &raw[at..raw.len().min(at + 4)];
        format!("invalid UTF-8 at byte {at} (bytes {bad:02x?}); the database stores text that is not UTF-8")
    })
}

/// numeric's text form is plain notation (never an exponent), exactly what
/// `Value::Decimal` carries. NaN and ±Infinity are not decimals: they become
/// the equivalent `Value::Float`.
fn numeric(text: &str) -> Value {
    match text {
        "NaN" => Value::Float(f64::NAN),
        "Infinity" => Value::Float(f64::INFINITY),
        "-Infinity" => Value::Float(f64::NEG_INFINITY),
        _ => Value::Decimal(text.to_owned()),
    }
}

/// float4 to f64 through its shortest decimal form, so `0.1::float4`
/// becomes 0.1 rather than 0.10000000149011612 (what psql shows, too).
fn widen(value: f32) -> f64 {
    if !value.is_finite() {
        return value.into();
    }
    let mut buf = StackStr::<32>::default();
    // `{:e}` is the shortest round-trip form and at most ~16 bytes.
    if write!(buf, "{value:e}").is_err() {
        return value.into();
    }
    buf.as_str().parse().unwrap_or(value.into())
}

/// ±infinity dates have no day number; they stay text.
fn date(days: i32) -> Result<Value, String> {
    match days {
        i32::MAX => Ok(Value::Text("infinity".into())),
        i32::MIN => Ok(Value::Text("-infinity".into())),
        _ => days
            .checked_add(PG_EPOCH_DAYS)
            .map(Value::Date)
            .ok_or_else(|| format!("date {days} days after 2000-01-01 is out of range")),
    }
}

/// timestamptz is an instant; timestamp (without time zone) is a wall-clock
/// reading stored the same way, which we interpret as UTC.
fn timestamp(micros: i64) -> Result<Value, String> {
    match micros {
        i64::MAX => Ok(Value::Text("infinity".into())),
        i64::MIN => Ok(Value::Text("-infinity".into())),
        _ => micros
            .checked_add(PG_EPOCH_MICROS)
            .map(Value::Timestamp)
            .ok_or_else(|| format!("timestamp {micros} µs after 2000-01-01 is out of range")),
    }
}

/// Canonical lowercase hyphenated form.
fn uuid(bytes: &[u8; 16]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// A fixed-size string buffer on the stack, to format without allocating.
struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackStr<N> {
    fn default() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> StackStr<N> {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever written in.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> std::fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Convert PostgreSQL's array literal (`{1,NULL,"a \"b\""}`, nested for
/// more dimensions, optionally prefixed by bounds like `[0:1]=`) into a
/// JSON array. Non-default lower bounds are dropped: JSON arrays start at 0.
pub fn array_to_json(text: &str, elem: Elem, delim: u8, out: &mut String) -> Result<(), String> {
    let mut parser = ArrayParser {
        s: text.as_bytes(),
        text,
        pos: 0,
        elem,
        delim,
        scratch: String::new(),
    };
    parser.skip_bounds();
    parser.array(out)?;
    parser.skip_ws();
    if parser.pos != parser.s.len() {
        return Err(parser.error("trailing characters after the array"));
    }
    Ok(())
}

struct ArrayParser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    elem: Elem,
    delim: u8,
    /// Reused for elements that need unescaping.
    scratch: String,
}

impl ArrayParser<'_> {
    fn error(&self, what: &str) -> String {
        format!("malformed array literal ({what} at byte {})", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// `[1:2][0:3]=` appears when a lower bound is not 1.
    fn skip_bounds(&mut self) {
        self.skip_ws();
        if self.peek() == Some(b'[') {
            if let Some(eq) = self.s.iter().position(|&c| c == b'=') {
                self.pos = eq + 1;
            }
        }
        self.skip_ws();
    }

    fn array(&mut self, out: &mut String) -> Result<(), String> {
        if self.peek() != Some(b'{') {
            return Err(self.error("expected `{`"));
        }
        self.pos += 1;
        out.push('[');
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            out.push(']');
            return Ok(());
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'{') => self.array(out)?,
                Some(b'"') => self.quoted(out)?,
                Some(_) => self.unquoted(out)?,
                None => return Err(self.error("unexpected end")),
            }
            self.skip_ws();
            match self.peek() {
                Some(c) if c == self.delim => {
                    self.pos += 1;
                    out.push(',');
                }
                Some(b'}') => {
                    self.pos += 1;
                    out.push(']');
                    return Ok(());
                }
                _ => return Err(self.error("expected a delimiter or `}`")),
            }
        }
    }

    /// `"..."` with backslash escapes; never NULL.
    fn quoted(&mut self, out: &mut String) -> Result<(), String> {
        self.pos += 1;
        self.scratch.clear();
        let mut start = self.pos;
        loop {
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => {
                    self.scratch.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    start = self.pos;
                    // The escaped character is copied with the next run.
                    if self.peek().is_none() {
                        return Err(self.error("unterminated escape"));
                    }
                    self.pos += utf8_len(self.s[self.pos]);
                }
                Some(c) => self.pos += utf8_len(c),
                None => return Err(self.error("unterminated quoted element")),
            }
        }
        self.scratch.push_str(&self.text[start..self.pos]);
        self.pos += 1;
        let element = std::mem::take(&mut self.scratch);
        write_element(&element, self.elem, out);
        self.scratch = element;
        Ok(())
    }

    /// A bare element up to the delimiter or `}`; `NULL` means null.
    fn unquoted(&mut self, out: &mut String) -> Result<(), String> {
        self.scratch.clear();
        let mut escaped = false;
        while let Some(c) = self.peek() {
            if c == self.delim || c == b'}' || c == b'{' || c == b'"' {
                break;
            }
            let len = if c == b'\\' {
                escaped = true;
                self.pos += 1;
                self.peek()
                    .map(utf8_len)
                    .ok_or_else(|| self.error("unterminated escape"))?
            } else {
                utf8_len(c)
            };
            self.scratch.push_str(&self.text[self.pos..self.pos + len]);
            self.pos += len;
        }
        let element = self.scratch.trim_end();
        if !escaped && element.eq_ignore_ascii_case("NULL") {
            out.push_str("null");
        } else if element.is_empty() {
            return Err(self.error("empty element"));
        } else {
            write_element(element, self.elem, out);
        }
        Ok(())
    }
}

/// The byte length of the UTF-8 character starting with `first`.
fn utf8_len(first: u8) -> usize {
    match first {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}

fn write_element(element: &str, elem: Elem, out: &mut String) {
    match elem {
        Elem::Bool if element == "t" => out.push_str("true"),
        Elem::Bool if element == "f" => out.push_str("false"),
        Elem::Number if sluice_sdk::is_json_number(element) => out.push_str(element),
        Elem::Json => out.push_str(element),
        Elem::Bytea => json_string(element.strip_prefix("\\x").unwrap_or(element), out),
        // NaN, Infinity and anything unexpected stay visible as strings.
        _ => json_string(element, out),
    }
}

/// Append `s` as a JSON string literal.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(escape);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str, elem: Elem) -> String {
        let mut out = String::new();
        array_to_json(text, elem, b',', &mut out).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
        out
    }

    #[test]
    fn arrays_become_json() {
        assert_eq!(json("{1,2,NULL,-3}", Elem::Number), "[1,2,null,-3]");
        assert_eq!(json("{{1,2},{3,4}}", Elem::Number), "[[1,2],[3,4]]");
        assert_eq!(json("{}", Elem::Number), "[]");
        assert_eq!(json("[0:1]={1.5,NaN}", Elem::Number), r#"[1.5,"NaN"]"#);
        assert_eq!(json("{t,f,NULL}", Elem::Bool), "[true,false,null]");
        assert_eq!(
            json(r#"{a,"b c","NULL","q\"\\"," x "}"#, Elem::String),
            r#"["a","b c","NULL","q\"\\"," x "]"#
        );
        assert_eq!(
            json(r#"{"{\"a\": 1}",null}"#, Elem::Json),
            r#"[{"a": 1},null]"#
        );
        assert_eq!(json(r#"{"\\x00ff"}"#, Elem::Bytea), r#"["00ff"]"#);
        assert_eq!(json("{héllo,wörld}", Elem::String), r#"["héllo","wörld"]"#);
        let mut out = String::new();
        array_to_json("{(0,0),(1,1);(2,2),(3,3)}", Elem::String, b';', &mut out).unwrap();
        assert_eq!(out, r#"["(0,0),(1,1)","(2,2),(3,3)"]"#);
    }

    #[test]
    fn malformed_arrays_are_errors() {
        for bad in ["", "1,2", "{1,2", "{\"a}", "{1}x", "{1,,2}"] {
            assert!(
                array_to_json(bad, Elem::Number, b',', &mut String::new()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_strings_escape_controls() {
        let mut out = String::new();
        json_string("a\"b\\c\nd\u{1}é", &mut out);
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn binary_values_decode() {
        assert_eq!(
            decode(Kind::Int2, &(-2i16).to_be_bytes()).unwrap(),
            Value::Integer(-2)
        );
        assert_eq!(
            decode(Kind::Float4, &0.1f32.to_be_bytes()).unwrap(),
            Value::Float(0.1)
        );
        assert_eq!(
            decode(Kind::Date, &0i32.to_be_bytes()).unwrap(),
            Value::Date(10_957)
        );
        assert_eq!(
            decode(Kind::Timestamp, &i64::MAX.to_be_bytes()).unwrap(),
            Value::Text("infinity".into())
        );
        assert_eq!(
            decode(Kind::Uuid, &[0xab; 16]).unwrap(),
            Value::Text("abababab-abab-abab-abab-abababababab".into())
        );
        assert!(decode(Kind::Int4, &[1, 2])
            .unwrap_err()
            .contains("expected 4 bytes"));
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let err = decode(Kind::Text, b"ok\xff").unwrap_err();
        assert!(err.contains("invalid UTF-8 at byte 2"), "{err}");
    }
}
