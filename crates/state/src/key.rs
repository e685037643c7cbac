//! Type-tagged byte encoding of values, used for primary keys, destination
//! ids and (with column names) the content hash.
//!
//! Every value is written as one tag byte followed by a payload whose length
//! is implied by the tag (fixed-size numbers) or given by a LEB128 prefix
//! (strings, bytes). The encoding is injective, so two keys are equal exactly
//! when their typed values are equal: `Integer(1)` and `Text("1")` never
//! collide. It is also stable across versions and platforms, because it is
//! persisted in the state store.

use std::fmt;

use sluice_runtime::Value;

const TAG_NULL: u8 = 0;
const TAG_BOOLEAN: u8 = 1;
const TAG_INTEGER: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_DECIMAL: u8 = 4;
const TAG_TEXT: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_TIMESTAMP: u8 = 7;
const TAG_DATE: u8 = 8;
const TAG_JSON: u8 = 9;

/// Appends the type-tagged encoding of `value` to `out`.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Boolean(b) => out.extend_from_slice(&[TAG_BOOLEAN, u8::from(*b)]),
        Value::Integer(i) => {
            out.push(TAG_INTEGER);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&canonical_float_bits(*f).to_be_bytes());
        }
        Value::Decimal(s) => encode_bytes(TAG_DECIMAL, s.as_bytes(), out),
        Value::Text(s) => encode_bytes(TAG_TEXT, s.as_bytes(), out),
        Value::Bytes(b) => encode_bytes(TAG_BYTES, b, out),
        Value::Timestamp(t) => {
            out.push(TAG_TIMESTAMP);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Value::Date(d) => {
            out.push(TAG_DATE);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::Json(s) => encode_bytes(TAG_JSON, s.as_bytes(), out),
    }
}

/// `0.0` and `-0.0` compare equal, and every NaN is the same "not a number",
/// so they must encode (and hash) the same way.
fn canonical_float_bits(f: f64) -> u64 {
    if f == 0.0 {
        0
    } else if f.is_nan() {
        f64::NAN.to_bits()
    } else {
        f.to_bits()
    }
}

fn encode_bytes(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    write_len(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// LEB128: keys are mostly short ids, so a one-byte length keeps the
/// in-memory snapshot small.
pub(crate) fn write_len(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Bytes that are not a valid encoding (a corrupted state store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid encoded value at byte {offset}: {reason}")]
pub struct DecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

/// Decodes a sequence of values written by [`encode_value`].
pub fn decode_values(mut bytes: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let total = bytes.len();
    let mut values = Vec::new();
    while !bytes.is_empty() {
        let offset = total - bytes.len();
        let (value, rest) = decode_one(bytes).map_err(|reason| DecodeError { offset, reason })?;
        values.push(value);
        bytes = rest;
    }
    Ok(values)
}

fn decode_one(bytes: &[u8]) -> Result<(Value, &[u8]), &'static str> {
    let (&tag, rest) = bytes.split_first().ok_or("empty input")?;
    match tag {
        TAG_NULL => Ok((Value::Null, rest)),
        TAG_BOOLEAN => {
            let (b, rest) = take::<1>(rest)?;
            Ok((Value::Boolean(b[0] != 0), rest))
        }
        TAG_INTEGER => take::<8>(rest).map(|(b, r)| (Value::Integer(i64::from_be_bytes(b)), r)),
        TAG_FLOAT => {
            take::<8>(rest).map(|(b, r)| (Value::Float(f64::from_bits(u64::from_be_bytes(b))), r))
        }
        TAG_TIMESTAMP => take::<8>(rest).map(|(b, r)| (Value::Timestamp(i64::from_be_bytes(b)), r)),
        TAG_DATE => take::<4>(rest).map(|(b, r)| (Value::Date(i32::from_be_bytes(b)), r)),
        TAG_BYTES => take_var(rest).map(|(b, r)| (Value::Bytes(b.to_vec()), r)),
        TAG_DECIMAL | TAG_TEXT | TAG_JSON => {
            let (b, r) = take_var(rest)?;
            let s = std::str::from_utf8(b)
                .map_err(|_| "text is not UTF-8")?
                .to_owned();
            let value = match tag {
                TAG_DECIMAL => Value::Decimal(s),
                TAG_TEXT => Value::Text(s),
                _ => Value::Json(s),
            };
            Ok((value, r))
        }
        _ => Err("unknown type tag"),
    }
}

fn take<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), &'static str> {
    if bytes.len() < N {
        return Err("truncated value");
    }
    let (head, rest) = bytes.split_at(N);
    let mut out = [0u8; N];
    out.copy_from_slice(head);
    Ok((out, rest))
}

fn take_var(bytes: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let mut len: usize = 0;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let byte = *bytes.get(i).ok_or("truncated length")?;
        i += 1;
        len |= usize::from(byte & 0x7f)
            .checked_shl(shift)
            .ok_or("length overflow")?;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err("length overflow");
        }
    }
    let rest = &bytes[i..];
    if rest.len() < len {
        return Err("truncated value");
    }
    Ok(rest.split_at(len))
}

/// A primary key: the type-tagged encoding of the key columns' values, in the
/// order the model declares them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey(Box<[u8]>);

impl RowKey {
    /// Wraps bytes previously produced by [`RowKey::as_bytes`] (e.g. read back
    /// from the state store).
    pub fn from_bytes(bytes: impl Into<Box<[u8]>>) -> Self {
        RowKey(bytes.into())
    }

    /// Encodes key values directly (tests, and keys built outside a batch).
    pub fn from_values(values: &[Value]) -> Self {
        let mut out = Vec::new();
        for v in values {
            encode_value(v, &mut out);
        }
        RowKey(out.into_boxed_slice())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The typed values of the key columns.
    pub fn values(&self) -> Result<Vec<Value>, DecodeError> {
        decode_values(&self.0)
    }
}

/// Renders the key for humans: `42`, `"a@b.c"`, or `(42, "eu")` for a
/// composite key. Undecodable bytes are shown as hex.
impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(values) = self.values() else {
            return write!(f, "0x{}", hex::encode(&self.0));
        };
        if values.len() == 1 {
            return write!(f, "{}", DisplayValue(&values[0]));
        }
        f.write_str("(")?;
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", DisplayValue(v))?;
        }
        f.write_str(")")
    }
}

/// Keys appear in `--json` output as their display form.
impl serde::Serialize for RowKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Debug for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowKey({self})")
    }
}

/// The destination's handle for a delivered record: the identifier value the
/// host sent (or an id the destination returned), type-tagged like a key so a
/// later delete can send it back with its original type.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DestId(Box<[u8]>);

impl DestId {
    pub fn from_value(value: &Value) -> Self {
        let mut out = Vec::new();
        encode_value(value, &mut out);
        DestId(out.into_boxed_slice())
    }

    pub fn from_bytes(bytes: impl Into<Box<[u8]>>) -> Self {
        DestId(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The identifier value; errors only on corrupted bytes.
    pub fn to_value(&self) -> Result<Value, DecodeError> {
        let mut values = decode_values(&self.0)?;
        if values.len() != 1 {
            return Err(DecodeError {
                offset: 0,
                reason: "a destination id holds exactly one value",
            });
        }
        Ok(values.remove(0))
    }
}

impl fmt::Debug for DestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_value() {
            Ok(v) => write!(f, "DestId({})", DisplayValue(&v)),
            Err(_) => write!(f, "DestId(0x{})", hex::encode(&self.0)),
        }
    }
}

/// A short, human-readable rendering of a value for error messages; long
/// values are cut so one bad row cannot flood a log.
pub struct DisplayValue<'a>(pub &'a Value);

const PREVIEW_CHARS: usize = 64;

impl fmt::Display for DisplayValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("null"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Decimal(s) => write!(f, "{}", preview(s)),
            Value::Text(s) => write!(f, "{:?}", preview(s)),
            Value::Json(s) => write!(f, "json {}", preview(s)),
            Value::Bytes(b) => {
                let shown = &b[..b.len().min(PREVIEW_CHARS / 2)];
                let more = if shown.len() < b.len() { "…" } else { "" };
                write!(f, "0x{}{more}", hex::encode(shown))
            }
            Value::Timestamp(t) => write!(
                f,
                "timestamp {}",
                sluice_runtime::values::format_timestamp(*t)
            ),
            Value::Date(d) => write!(f, "date {}", sluice_runtime::values::format_date(*d)),
        }
    }
}

fn preview(s: &str) -> String {
    if s.chars().count() <= PREVIEW_CHARS {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(PREVIEW_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Boolean(true),
            Value::Integer(-7),
            Value::Float(1.5),
            Value::Decimal("12.50".into()),
            Value::Text("héllo".into()),
            Value::Bytes(vec![0, 255, 3]),
            Value::Timestamp(1_700_000_000_123_456),
            Value::Date(19_000),
            Value::Json("{\"a\":1}".into()),
            Value::Text("x".repeat(300)),
        ]
    }

    #[test]
    fn every_value_round_trips() {
        let values = all_kinds();
        let key = RowKey::from_values(&values);
        assert_eq!(key.values().unwrap(), values);
    }

    #[test]
    fn types_are_distinguished() {
        let int = RowKey::from_values(&[Value::Integer(1)]);
        let text = RowKey::from_values(&[Value::Text("1".into())]);
        let dec = RowKey::from_values(&[Value::Decimal("1".into())]);
        assert_ne!(int, text);
        assert_ne!(text, dec);
    }

    #[test]
    fn composite_keys_do_not_run_together() {
        let a = RowKey::from_values(&[Value::Text("ab".into()), Value::Text("c".into())]);
        let b = RowKey::from_values(&[Value::Text("a".into()), Value::Text("bc".into())]);
        assert_ne!(a, b);
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(RowKey::from_values(&[Value::Integer(42)]).to_string(), "42");
        let k = RowKey::from_values(&[Value::Integer(1), Value::Text("eu".into())]);
        assert_eq!(k.to_string(), "(1, \"eu\")");
    }

    #[test]
    fn corrupted_bytes_are_an_error_not_a_panic() {
        assert!(decode_values(&[TAG_INTEGER, 1, 2]).is_err());
        assert!(decode_values(&[200]).is_err());
        assert!(decode_values(&[TAG_TEXT, 0x80]).is_err());
        assert_eq!(RowKey::from_bytes(vec![200u8]).to_string(), "0xc8");
    }

    #[test]
    fn dest_id_round_trips() {
        let id = DestId::from_value(&Value::Text("003xx".into()));
        assert_eq!(id.to_value().unwrap(), Value::Text("003xx".into()));
    }
}
