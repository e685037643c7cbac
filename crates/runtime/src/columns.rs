//! Rows to columns and back, for `columnar-transform` plugins.
//!
//! The rest of a sync works on rows; a columnar transform gets each batch
//! stored by column (one list per column, text packed into one buffer with
//! offsets) and returns one the same way. What comes back is checked like
//! any plugin output: every column as long as the batch, offsets inside
//! their buffer and never decreasing, text valid UTF-8.

use super::bindings::types::{
    Batch, Column, ColumnBatch, ColumnValues, ColumnsTransformed, Packed, Transformed, Value,
};
use sluice_values::columns::{check_len, check_nulls, is_null, store, unpack, unpack_text};

sluice_values::impl_column_values_from_stored!(ColumnValues, Packed, Value);

/// The rows of `batch`, stored by column. A column whose non-null values
/// share one type is stored typed; any other as `mixed`.
pub fn to_columns(batch: &Batch) -> ColumnBatch {
    let rows = batch.rows.len();
    ColumnBatch {
        rows: rows as u32,
        columns: batch
            .columns
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let (nulls, stored) = store(batch.rows.iter().map(|r| &r[c]), rows, Value::view);
                Column {
                    name: name.clone(),
                    nulls,
                    values: stored.into(),
                }
            })
            .collect(),
    }
}

/// The columns a plugin returned, as rows; what does not fit together is an
/// error saying which column and why.
pub fn to_rows(batch: ColumnBatch) -> Result<Batch, String> {
    let rows = batch.rows as usize;
    let mut out: Vec<Vec<Value>> = (0..rows)
        .map(|_| Vec::with_capacity(batch.columns.len()))
        .collect();
    let mut names = Vec::with_capacity(batch.columns.len());
    for column in batch.columns {
        let name = column.name;
        let fail = |m: String| format!("column `{name}`: {m}");
        check_nulls(&column.nulls, rows).map_err(&fail)?;
        let nulls = column.nulls;
        let mut push = |values: Vec<Value>| {
            for (i, (row, v)) in out.iter_mut().zip(values).enumerate() {
                row.push(if is_null(&nulls, i) { Value::Null } else { v });
            }
        };
        macro_rules! fixed {
            ($v:expr, $variant:ident) => {{
                check_len($v.len(), rows).map_err(&fail)?;
                push($v.into_iter().map(Value::$variant).collect());
            }};
        }
        macro_rules! text {
            ($p:expr, $variant:ident) => {{
                let texts = unpack_text(&$p.data, &$p.offsets, rows).map_err(&fail)?;
                push(texts.into_iter().map(Value::$variant).collect());
            }};
        }
        match column.values {
            ColumnValues::Boolean(v) => {
                check_len(v.len(), rows).map_err(&fail)?;
                push(v.into_iter().map(|b| Value::Boolean(b != 0)).collect());
            }
            ColumnValues::Integer(v) => fixed!(v, Integer),
            ColumnValues::Float(v) => fixed!(v, Float),
            ColumnValues::Timestamp(v) => fixed!(v, Timestamp),
            ColumnValues::Date(v) => fixed!(v, Date),
            ColumnValues::Mixed(v) => {
                check_len(v.len(), rows).map_err(&fail)?;
                push(v);
            }
            ColumnValues::Null => push(vec![Value::Null; rows]),
            ColumnValues::Bytes(p) => push(
                unpack(&p.data, &p.offsets, rows)
                    .map_err(&fail)?
                    .map(|b| Value::Bytes(b.to_vec()))
                    .collect(),
            ),
            ColumnValues::Text(p) => text!(p, Text),
            ColumnValues::Decimal(p) => text!(p, Decimal),
            ColumnValues::Json(p) => text!(p, Json),
        }
        names.push(name);
    }
    Ok(Batch {
        columns: names,
        rows: out,
    })
}

/// A columnar transform's output as the rows the sync works on.
pub fn to_transformed(out: ColumnsTransformed) -> Result<Transformed, String> {
    Ok(Transformed {
        batch: to_rows(out.batch)?,
        errors: out.errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch {
            columns: vec!["id".into(), "email".into(), "mixed".into(), "none".into()],
            rows: vec![
                vec![
                    Value::Integer(1),
                    Value::Text("a@x".into()),
                    Value::Float(1.5),
                    Value::Null,
                ],
                vec![
                    Value::Null,
                    Value::Text("ü".into()),
                    Value::Text("t".into()),
                    Value::Null,
                ],
                vec![Value::Integer(3), Value::Null, Value::Null, Value::Null],
            ],
        }
    }

    #[test]
    fn rows_round_trip_through_columns() {
        let columns = to_columns(&batch());
        assert!(matches!(
            columns.columns[0].values,
            ColumnValues::Integer(_)
        ));
        assert!(matches!(columns.columns[1].values, ColumnValues::Text(_)));
        assert!(matches!(columns.columns[2].values, ColumnValues::Mixed(_)));
        assert_eq!(columns.columns[3].values, ColumnValues::Null);
        assert_eq!(to_rows(columns).unwrap(), batch());
    }

    #[test]
    fn malformed_columns_are_errors_naming_the_column() {
        let mut short = to_columns(&batch());
        short.columns[0].values = ColumnValues::Integer(vec![1]);
        assert_eq!(
            to_rows(short).unwrap_err(),
            "column `id`: 1 values in a batch of 3 rows"
        );
        let mut bad_offsets = to_columns(&batch());
        bad_offsets.columns[1].values = ColumnValues::Text(Packed {
            data: b"abc".to_vec(),
            offsets: vec![0, 2, 1, 9],
        });
        assert!(to_rows(bad_offsets).unwrap_err().contains("offsets"));
        let mut not_utf8 = to_columns(&batch());
        not_utf8.columns[1].values = ColumnValues::Text(Packed {
            data: vec![0xff, b'a'],
            offsets: vec![0, 1, 2, 2],
        });
        assert_eq!(
            to_rows(not_utf8).unwrap_err(),
            "column `email`: row 0 is not UTF-8"
        );
    }
}
