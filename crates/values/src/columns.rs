//! Rows to columns and back, the logic both sides share: which type a
//! column is stored as, null bitmaps, packed text, and the checks on a
//! column batch that came from someone else. The host and the SDK move the
//! result into their own generated `column-values` through
//! [`impl_column_values_from_stored!`](crate::impl_column_values_from_stored),
//! which only moves vectors.

use crate::ValueRef;

/// A column's values independent of either side's generated types: the
/// WIT `column-values` variant with `V` for a `mixed` column's own values.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored<V> {
    Null,
    Boolean(Vec<u8>),
    Integer(Vec<i64>),
    Float(Vec<f64>),
    Timestamp(Vec<i64>),
    Date(Vec<i32>),
    Decimal(PackedBytes),
    Text(PackedBytes),
    Json(PackedBytes),
    Bytes(PackedBytes),
    Mixed(Vec<V>),
}

/// Implements `From<Stored<Value>>` for a side's generated `column-values`
/// type (only moves vectors).
#[macro_export]
macro_rules! impl_column_values_from_stored {
    ($values:ident, $packed:ident, $value:ty) => {
        impl From<$crate::columns::Stored<$value>> for $values {
            fn from(stored: $crate::columns::Stored<$value>) -> Self {
                use $crate::columns::Stored;
                let packed = |p: $crate::columns::PackedBytes| $packed {
                    data: p.data,
                    offsets: p.offsets,
                };
                match stored {
                    Stored::Null => $values::Null,
                    Stored::Boolean(v) => $values::Boolean(v),
                    Stored::Integer(v) => $values::Integer(v),
                    Stored::Float(v) => $values::Float(v),
                    Stored::Timestamp(v) => $values::Timestamp(v),
                    Stored::Date(v) => $values::Date(v),
                    Stored::Decimal(p) => $values::Decimal(packed(p)),
                    Stored::Text(p) => $values::Text(packed(p)),
                    Stored::Json(p) => $values::Json(packed(p)),
                    Stored::Bytes(p) => $values::Bytes(packed(p)),
                    Stored::Mixed(v) => $values::Mixed(v),
                }
            }
        }
    };
}

/// Variable-length values in one buffer: value `i` is
/// `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PackedBytes {
    pub data: Vec<u8>,
    pub offsets: Vec<u32>,
}

impl PackedBytes {
    /// Empty, with room for `rows` values of `bytes` in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        PackedBytes {
            data: Vec::with_capacity(bytes),
            offsets,
        }
    }

    pub fn push(&mut self, value: &[u8]) {
        self.data.extend_from_slice(value);
        self.offsets.push(self.data.len() as u32);
    }
}

/// Whether row `i` is null in a bitmap (an empty bitmap has no nulls).
pub fn is_null(nulls: &[u8], i: usize) -> bool {
    nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Mark row `i` null in a bitmap sized for `rows` rows (allocated on first
/// use).
pub fn set_null(nulls: &mut Vec<u8>, rows: usize, i: usize) {
    if nulls.is_empty() {
        nulls.resize(rows.div_ceil(8), 0);
    }
    nulls[i / 8] |= 1 << (i % 8);
}

/// The null bitmap and storage of a column of `rows` values: typed when
/// every non-null value has one type (nulls stored as zero or empty),
/// `mixed` otherwise, `null` when all are null.
pub fn store<'a, V: Clone + 'a>(
    values: impl Iterator<Item = &'a V> + Clone,
    rows: usize,
    view: impl Fn(&V) -> ValueRef<'_>,
) -> (Vec<u8>, Stored<V>) {
    let mut nulls = Vec::new();
    let mut first: Option<ValueRef<'_>> = None;
    let mut uniform = true;
    for (i, v) in values.clone().enumerate() {
        let v = view(v);
        if v == ValueRef::Null {
            set_null(&mut nulls, rows, i);
            continue;
        }
        match first {
            None => first = Some(v),
            Some(f) => uniform &= std::mem::discriminant(&f) == std::mem::discriminant(&v),
        }
    }
    let stored = match first {
        None => Stored::Null,
        Some(_) if !uniform => Stored::Mixed(values.cloned().collect()),
        Some(first) => typed(first, values.map(view), rows),
    };
    (nulls, stored)
}

fn typed<'v, V>(
    first: ValueRef<'_>,
    values: impl Iterator<Item = ValueRef<'v>>,
    rows: usize,
) -> Stored<V> {
    macro_rules! fixed {
        ($variant:ident, $zero:expr) => {
            Stored::$variant(
                values
                    .map(|v| match v {
                        ValueRef::$variant(x) => x,
                        _ => $zero,
                    })
                    .collect(),
            )
        };
    }
    macro_rules! packed {
        ($variant:ident) => {{
            let mut p = PackedBytes::with_capacity(rows, 0);
            for v in values {
                match v {
                    ValueRef::$variant(x) => p.push(x.as_ref()),
                    _ => p.push(&[]),
                }
            }
            Stored::$variant(p)
        }};
    }
    match first {
        ValueRef::Boolean(_) => Stored::Boolean(
            values
                .map(|v| u8::from(v == ValueRef::Boolean(true)))
                .collect(),
        ),
        ValueRef::Integer(_) => fixed!(Integer, 0),
        ValueRef::Float(_) => fixed!(Float, 0.0),
        ValueRef::Timestamp(_) => fixed!(Timestamp, 0),
        ValueRef::Date(_) => fixed!(Date, 0),
        ValueRef::Decimal(_) => packed!(Decimal),
        ValueRef::Text(_) => packed!(Text),
        ValueRef::Json(_) => packed!(Json),
        ValueRef::Bytes(_) => packed!(Bytes),
        ValueRef::Null => Stored::Null,
    }
}

/// That a column holds `len` values in a batch of `rows`.
pub fn check_len(len: usize, rows: usize) -> Result<(), String> {
    if len == rows {
        Ok(())
    } else {
        Err(format!("{len} values in a batch of {rows} rows"))
    }
}

/// That a null bitmap is empty or covers `rows` rows.
pub fn check_nulls(nulls: &[u8], rows: usize) -> Result<(), String> {
    if nulls.is_empty() || nulls.len() >= rows.div_ceil(8) {
        Ok(())
    } else {
        Err(format!(
            "a null bitmap of {} bytes for {rows} rows",
            nulls.len()
        ))
    }
}

/// The values of a packed column, after checking that its offsets index
/// its buffer in order, one value per row.
pub fn unpack<'a>(
    data: &'a [u8],
    offsets: &'a [u32],
    rows: usize,
) -> Result<impl Iterator<Item = &'a [u8]>, String> {
    check_len(offsets.len().saturating_sub(1), rows)?;
    let ends_inside = offsets.last().is_some_and(|&e| e as usize <= data.len());
    let ordered = offsets.first() == Some(&0) && offsets.windows(2).all(|w| w[0] <= w[1]);
    if !(ends_inside && ordered) {
        return Err(format!(
            "offsets that do not index its {} bytes in order",
            data.len()
        ));
    }
    Ok(offsets
        .windows(2)
        .map(|w| &data[w[0] as usize..w[1] as usize]))
}

/// The values of a packed text column, checked as [`unpack`] does and as
/// UTF-8.
pub fn unpack_text(data: &[u8], offsets: &[u32], rows: usize) -> Result<Vec<String>, String> {
    unpack(data, offsets, rows)?
        .enumerate()
        .map(|(i, b)| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| format!("row {i} is not UTF-8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    enum V {
        Null,
        Int(i64),
        Text(String),
    }

    fn view(v: &V) -> ValueRef<'_> {
        match v {
            V::Null => ValueRef::Null,
            V::Int(i) => ValueRef::Integer(*i),
            V::Text(s) => ValueRef::Text(s),
        }
    }

    #[test]
    fn columns_are_typed_mixed_or_null() {
        let ints = [V::Int(1), V::Null, V::Int(3)];
        let (nulls, stored) = store(ints.iter(), 3, view);
        assert_eq!(
            (nulls, stored),
            (vec![0b010], Stored::Integer(vec![1, 0, 3]))
        );
        let texts = [V::Text("a".into()), V::Text("ü".into())];
        let (_, stored) = store(texts.iter(), 2, view);
        let Stored::Text(p) = stored else { panic!() };
        assert_eq!(unpack_text(&p.data, &p.offsets, 2).unwrap(), ["a", "ü"]);
        let mixed = [V::Int(1), V::Text("x".into())];
        assert_eq!(
            store(mixed.iter(), 2, view).1,
            Stored::Mixed(mixed.to_vec())
        );
        assert_eq!(store([V::Null].iter(), 1, view).1, Stored::<V>::Null);
    }

    #[test]
    fn malformed_columns_are_explained() {
        assert_eq!(
            check_len(1, 3).unwrap_err(),
            "1 values in a batch of 3 rows"
        );
        assert!(unpack(b"abc", &[0, 2, 1, 9], 3).is_err());
        assert_eq!(
            unpack_text(&[0xff, b'a'], &[0, 1, 2], 2).unwrap_err(),
            "row 0 is not UTF-8"
        );
        assert!(check_nulls(&[0], 9).is_err());
        assert!(check_nulls(&[], 9).is_ok());
    }
}
