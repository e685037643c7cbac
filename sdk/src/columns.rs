//! Reading and building columnar batches ([`ColumnBatch`]) for a
//! [`ColumnarTransform`](crate::ColumnarTransform).
//!
//! A column holds one value per row, all of one type: numbers in a plain
//! list, text and other variable-length values [`Packed`] into one buffer
//! with offsets, and nulls in a bitmap beside them.

use crate::{Batch, Column, ColumnBatch, ColumnValues, Packed, RowError, Value};

impl Packed {
    /// An empty packed column with room for `rows` values of `bytes` in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Packed {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Packed {
            data: Vec::with_capacity(bytes),
            offsets,
        }
    }

    /// Values in the column.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as bytes (empty when out of range).
    pub fn bytes(&self, i: usize) -> &[u8] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&start), Some(&end)) => {
                self.data.get(start as usize..end as usize).unwrap_or(&[])
            }
            _ => &[],
        }
    }

    /// Value `i` as text (empty when it is not UTF-8).
    pub fn text(&self, i: usize) -> &str {
        std::str::from_utf8(self.bytes(i)).unwrap_or("")
    }

    /// Append a value.
    pub fn push(&mut self, value: &[u8]) {
        self.data.extend_from_slice(value);
        self.offsets.push(self.data.len() as u32);
    }

    /// Append a value written by `write` straight into the buffer.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.data);
        self.offsets.push(self.data.len() as u32);
    }
}

use sluice_values::columns::store;
pub use sluice_values::columns::{is_null, set_null};

sluice_values::impl_column_values_from_stored!(ColumnValues, Packed, Value);

impl Column {
    /// Whether row `i` is null.
    pub fn is_null(&self, i: usize) -> bool {
        matches!(self.values, ColumnValues::Null) || is_null(&self.nulls, i)
    }

    /// Row `i` as a [`Value`] (for code that works a value at a time).
    pub fn value(&self, i: usize) -> Value {
        if self.is_null(i) {
            return Value::Null;
        }
        let text = |p: &Packed| p.text(i).to_owned();
        match &self.values {
            ColumnValues::Boolean(v) => Value::Boolean(v.get(i).is_some_and(|&b| b != 0)),
            ColumnValues::Integer(v) => v.get(i).map_or(Value::Null, |&n| Value::Integer(n)),
            ColumnValues::Float(v) => v.get(i).map_or(Value::Null, |&f| Value::Float(f)),
            ColumnValues::Decimal(p) => Value::Decimal(text(p)),
            ColumnValues::Text(p) => Value::Text(text(p)),
            ColumnValues::Json(p) => Value::Json(text(p)),
            ColumnValues::Bytes(p) => Value::Bytes(p.bytes(i).to_vec()),
            ColumnValues::Timestamp(v) => v.get(i).map_or(Value::Null, |&t| Value::Timestamp(t)),
            ColumnValues::Date(v) => v.get(i).map_or(Value::Null, |&d| Value::Date(d)),
            ColumnValues::Mixed(v) => v.get(i).cloned().unwrap_or(Value::Null),
            ColumnValues::Null => Value::Null,
        }
    }

    /// The column without the rows whose `keep` is false.
    pub fn retain(self, keep: &[bool]) -> Column {
        let rows = keep.len();
        let mut nulls = Vec::new();
        let mut kept = 0;
        for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            if is_null(&self.nulls, i) {
                set_null(&mut nulls, rows, kept);
            }
            kept += 1;
        }
        nulls.truncate(kept.div_ceil(8));
        if nulls.iter().all(|&b| b == 0) {
            nulls.clear();
        }
        fn filter<T: Clone>(v: Vec<T>, keep: &[bool]) -> Vec<T> {
            v.into_iter()
                .zip(keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| x)
                .collect()
        }
        let packed = |p: Packed| {
            let mut out = Packed::with_capacity(kept, p.data.len());
            for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                out.push(p.bytes(i));
            }
            out
        };
        let values = match self.values {
            ColumnValues::Boolean(v) => ColumnValues::Boolean(filter(v, keep)),
            ColumnValues::Integer(v) => ColumnValues::Integer(filter(v, keep)),
            ColumnValues::Float(v) => ColumnValues::Float(filter(v, keep)),
            ColumnValues::Decimal(p) => ColumnValues::Decimal(packed(p)),
            ColumnValues::Text(p) => ColumnValues::Text(packed(p)),
            ColumnValues::Json(p) => ColumnValues::Json(packed(p)),
            ColumnValues::Bytes(p) => ColumnValues::Bytes(packed(p)),
            ColumnValues::Timestamp(v) => ColumnValues::Timestamp(filter(v, keep)),
            ColumnValues::Date(v) => ColumnValues::Date(filter(v, keep)),
            ColumnValues::Mixed(v) => ColumnValues::Mixed(filter(v, keep)),
            ColumnValues::Null => ColumnValues::Null,
        };
        Column {
            name: self.name,
            nulls,
            values,
        }
    }
}

impl Column {
    /// A column of `values`: typed when every non-null value has one type,
    /// `mixed` otherwise.
    pub fn from_values(name: impl Into<String>, values: Vec<Value>) -> Column {
        let (nulls, stored) = store(values.iter(), values.len(), Value::view);
        Column {
            name: name.into(),
            nulls,
            values: stored.into(),
        }
    }

    /// `value` in each of `rows` rows.
    pub fn constant(name: impl Into<String>, value: &Value, rows: usize) -> Column {
        // One buffer of `rows` copies (built by doubling) and offsets a
        // fixed step apart, rather than a copy per row.
        let packed = |bytes: &[u8]| Packed {
            data: bytes.repeat(rows),
            offsets: (0..=rows as u32).map(|i| i * bytes.len() as u32).collect(),
        };
        let values = match value {
            Value::Null => ColumnValues::Null,
            Value::Boolean(b) => ColumnValues::Boolean(vec![u8::from(*b); rows]),
            Value::Integer(n) => ColumnValues::Integer(vec![*n; rows]),
            Value::Float(f) => ColumnValues::Float(vec![*f; rows]),
            Value::Decimal(s) => ColumnValues::Decimal(packed(s.as_bytes())),
            Value::Text(s) => ColumnValues::Text(packed(s.as_bytes())),
            Value::Json(s) => ColumnValues::Json(packed(s.as_bytes())),
            Value::Bytes(b) => ColumnValues::Bytes(packed(b)),
            Value::Timestamp(t) => ColumnValues::Timestamp(vec![*t; rows]),
            Value::Date(d) => ColumnValues::Date(vec![*d; rows]),
        };
        Column {
            name: name.into(),
            nulls: Vec::new(),
            values,
        }
    }
}

impl ColumnBatch {
    /// The rows of `batch`, stored by column.
    pub fn from_batch(batch: Batch) -> ColumnBatch {
        let rows = batch.rows.len();
        let mut columns: Vec<Vec<Value>> = (0..batch.columns.len())
            .map(|_| Vec::with_capacity(rows))
            .collect();
        for row in batch.rows {
            for (column, value) in columns.iter_mut().zip(row) {
                column.push(value);
            }
        }
        ColumnBatch {
            rows: rows as u32,
            columns: batch
                .columns
                .into_iter()
                .zip(columns)
                .map(|(name, values)| Column::from_values(name, values))
                .collect(),
        }
    }

    /// The batch as rows.
    pub fn into_batch(self) -> Batch {
        let rows = self.rows as usize;
        Batch {
            rows: (0..rows)
                .map(|i| self.columns.iter().map(|c| c.value(i)).collect())
                .collect(),
            columns: self.columns.into_iter().map(|c| c.name).collect(),
        }
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The batch without the rows named in `errors` (what a transform
    /// returns beside its row errors).
    pub fn without(self, errors: &[RowError]) -> ColumnBatch {
        if errors.is_empty() {
            return self;
        }
        let mut keep = vec![true; self.rows as usize];
        for e in errors {
            if let Some(k) = keep.get_mut(e.index as usize) {
                *k = false;
            }
        }
        let rows = keep.iter().filter(|k| **k).count() as u32;
        ColumnBatch {
            rows,
            columns: self.columns.into_iter().map(|c| c.retain(&keep)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_column(name: &str, values: &[Option<&str>]) -> Column {
        let mut packed = Packed::with_capacity(values.len(), 0);
        let mut nulls = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(s) => packed.push(s.as_bytes()),
                None => {
                    set_null(&mut nulls, values.len(), i);
                    packed.push(b"");
                }
            }
        }
        Column {
            name: name.into(),
            nulls,
            values: ColumnValues::Text(packed),
        }
    }

    #[test]
    fn packed_values_and_nulls_read_back() {
        let c = text_column("email", &[Some("a@x"), None, Some("ü")]);
        assert_eq!(c.value(0), Value::Text("a@x".into()));
        assert_eq!(c.value(1), Value::Null);
        assert_eq!(c.value(2), Value::Text("ü".into()));
        assert_eq!(c.value(9), Value::Text(String::new()));
    }

    #[test]
    fn rows_round_trip_through_columns() {
        let batch = Batch {
            columns: vec!["id".into(), "mixed".into(), "empty".into()],
            rows: vec![
                vec![Value::Integer(1), Value::Text("a".into()), Value::Null],
                vec![Value::Null, Value::Float(2.5), Value::Null],
                vec![Value::Integer(3), Value::Null, Value::Null],
            ],
        };
        let columns = ColumnBatch::from_batch(batch.clone());
        assert!(matches!(
            columns.columns[0].values,
            ColumnValues::Integer(_)
        ));
        assert!(matches!(columns.columns[1].values, ColumnValues::Mixed(_)));
        assert_eq!(columns.columns[2].values, ColumnValues::Null);
        assert_eq!(columns.into_batch(), batch);
        let c = Column::constant("k", &Value::Text("x".into()), 2);
        assert_eq!(
            (c.value(0), c.value(1)),
            (Value::Text("x".into()), Value::Text("x".into()))
        );
    }

    #[test]
    fn rejected_rows_leave_every_column() {
        let batch = ColumnBatch {
            rows: 4,
            columns: vec![
                text_column("t", &[Some("a"), None, Some("c"), Some("d")]),
                Column {
                    name: "n".into(),
                    nulls: vec![],
                    values: ColumnValues::Integer(vec![1, 2, 3, 4]),
                },
            ],
        };
        let errors = [RowError {
            index: 0,
            message: "bad".into(),
        }];
        let out = batch.without(&errors);
        assert_eq!(out.rows, 3);
        let t = &out.columns[0];
        assert_eq!(
            (0..3).map(|i| t.value(i)).collect::<Vec<_>>(),
            vec![
                Value::Null,
                Value::Text("c".into()),
                Value::Text("d".into())
            ]
        );
        assert_eq!(out.columns[1].values, ColumnValues::Integer(vec![2, 3, 4]));
    }
}
