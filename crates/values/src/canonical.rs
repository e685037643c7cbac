//! The canonical text form of values and rows that the warehouse diff
//! hashes (`docs/warehouse-diff.md`). A source that diffs inside its
//! warehouse computes the same text in SQL; this is the reference, written
//! once for the host and the guest SDK, and the tests compare the two.
//!
//! A value is a one-letter tag and a payload that delimits itself:
//!
//! | value | form |
//! |---|---|
//! | null | `n` |
//! | boolean | `b0`, `b1` |
//! | integer | `i` decimal `;` (`i-42;`) |
//! | float | `f` + 16 lowercase hex digits of the IEEE-754 binary64 bits; `-0.0` as `0.0`, every NaN as `7ff8000000000000` |
//! | decimal | `d` len `:` text (the source's plain notation) |
//! | text | `t` len `:` text |
//! | bytes | `x` len `:` lowercase hex (len counts the hex digits) |
//! | timestamp | `s` µs since 1970-01-01T00:00:00Z `;` |
//! | date | `c` days since 1970-01-01 `;` |
//! | json | `j` len `:` the document's text as the source returns it |
//!
//! `len` is the payload's length in UTF-8 bytes, in decimal. A key is its
//! values' forms back to back, in key order. A row is the seed, `|`, then
//! for every column in byte order of its name (a stable sort: repeated
//! names keep their order) the name as len `:` name, then the value's form.
//! The content hash is the first 16 bytes of SHA-256 over the row's UTF-8.

use crate::ValueRef;
use std::fmt::Write as _;

/// The NaN every NaN is written as (`f64::NAN`'s bits; PostgreSQL's too).
pub const CANONICAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0000;

/// Appends the canonical form of `value` to `out`.
pub fn write_value(value: ValueRef<'_>, out: &mut String) {
    match value {
        ValueRef::Null => out.push('n'),
        ValueRef::Boolean(b) => out.push_str(if b { "b1" } else { "b0" }),
        ValueRef::Integer(i) => {
            let _ = write!(out, "i{i};");
        }
        ValueRef::Float(f) => {
            let _ = write!(out, "f{:016x}", float_bits(f));
        }
        ValueRef::Decimal(s) => sized(out, 'd', s),
        ValueRef::Text(s) => sized(out, 't', s),
        ValueRef::Json(s) => sized(out, 'j', s),
        ValueRef::Bytes(b) => {
            let _ = write!(out, "x{}:", b.len() * 2);
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
        ValueRef::Timestamp(us) => {
            let _ = write!(out, "s{us};");
        }
        ValueRef::Date(d) => {
            let _ = write!(out, "c{d};");
        }
    }
}

/// `-0.0` is `0.0`, and every NaN the same NaN.
fn float_bits(f: f64) -> u64 {
    if f == 0.0 {
        0
    } else if f.is_nan() {
        CANONICAL_NAN_BITS
    } else {
        f.to_bits()
    }
}

fn sized(out: &mut String, tag: char, s: &str) {
    let _ = write!(out, "{tag}{}:", s.len());
    out.push_str(s);
}

/// The canonical form of a key: its values' forms in key order.
pub fn key<'a>(values: impl IntoIterator<Item = ValueRef<'a>>) -> String {
    let mut out = String::new();
    for v in values {
        write_value(v, &mut out);
    }
    out
}

/// The positions of `columns` in canonical (byte) order of their names.
pub fn column_order(columns: &[String]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by(|&a, &b| columns[a].as_bytes().cmp(columns[b].as_bytes()));
    order
}

/// The canonical form of a row: `seed`, `|`, then every column in byte
/// order of its name with its value (see the module docs).
pub fn row<'a>(seed: &str, columns: &[String], values: &[ValueRef<'a>]) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(seed);
    out.push('|');
    for i in column_order(columns) {
        let name = &columns[i];
        let _ = write!(out, "{}:", name.len());
        out.push_str(name);
        write_value(values.get(i).copied().unwrap_or(ValueRef::Null), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_is_as_documented() {
        let cases: Vec<(ValueRef<'_>, &str)> = vec![
            (ValueRef::Null, "n"),
            (ValueRef::Boolean(true), "b1"),
            (ValueRef::Boolean(false), "b0"),
            (ValueRef::Integer(-42), "i-42;"),
            (ValueRef::Float(1.5), "f3ff8000000000000"),
            (ValueRef::Float(-0.0), "f0000000000000000"),
            (ValueRef::Float(-f64::NAN), "f7ff8000000000000"),
            (ValueRef::Decimal("-12.50"), "d6:-12.50"),
            (ValueRef::Text("é;"), "t3:é;"),
            (ValueRef::Text(""), "t0:"),
            (ValueRef::Bytes(&[0, 255]), "x4:00ff"),
            (ValueRef::Timestamp(-1), "s-1;"),
            (ValueRef::Date(19000), "c19000;"),
            (ValueRef::Json("{\"a\":1}"), "j7:{\"a\":1}"),
        ];
        for (value, form) in cases {
            let mut out = String::new();
            write_value(value, &mut out);
            assert_eq!(out, form, "{value:?}");
        }
    }

    #[test]
    fn rows_sort_columns_by_name_and_bind_names_to_values() {
        let cols = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = row(
            "s",
            &cols(&["id", "email"]),
            &[ValueRef::Integer(1), ValueRef::Text("a")],
        );
        assert_eq!(a, "s|5:emailt1:a2:idi1;");
        let b = row(
            "s",
            &cols(&["email", "id"]),
            &[ValueRef::Text("a"), ValueRef::Integer(1)],
        );
        assert_eq!(a, b);
        assert_ne!(
            key([ValueRef::Text("ab"), ValueRef::Text("c")]),
            key([ValueRef::Text("a"), ValueRef::Text("bc")])
        );
    }
}
