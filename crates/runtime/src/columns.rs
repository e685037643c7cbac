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
            .map(|(c, name)| column(name, batch.rows.iter().map(|r| &r[c]), rows))
            .collect(),
    }
}

fn column<'a>(name: &str, values: impl Iterator<Item = &'a Value> + Clone, rows: usize) -> Column {
    let mut nulls = Vec::new();
    let mut first: Option<&Value> = None;
    let mut uniform = true;
    for (i, v) in values.clone().enumerate() {
        if matches!(v, Value::Null) {
            if nulls.is_empty() {
                nulls.resize(rows.div_ceil(8), 0);
            }
            nulls[i / 8] |= 1 << (i % 8);
            continue;
        }
        match first {
            None => first = Some(v),
            Some(f) => uniform &= std::mem::discriminant(f) == std::mem::discriminant(v),
        }
    }
    let values = match first {
        None => ColumnValues::Null,
        Some(_) if !uniform => ColumnValues::Mixed(values.cloned().collect()),
        Some(first) => typed(first, values, rows),
    };
    Column {
        name: name.to_string(),
        nulls,
        values,
    }
}

/// Values of one type (nulls stored as zero or empty).
fn typed<'a>(first: &Value, values: impl Iterator<Item = &'a Value>, rows: usize) -> ColumnValues {
    macro_rules! fixed {
        ($variant:ident, $zero:expr) => {
            ColumnValues::$variant(
                values
                    .map(|v| match v {
                        Value::$variant(x) => *x,
                        _ => $zero,
                    })
                    .collect(),
            )
        };
    }
    macro_rules! packed {
        ($variant:ident) => {{
            let mut p = Packed {
                data: Vec::new(),
                offsets: Vec::with_capacity(rows + 1),
            };
            p.offsets.push(0);
            for v in values {
                if let Value::$variant(x) = v {
                    p.data.extend_from_slice(x.as_ref());
                }
                p.offsets.push(p.data.len() as u32);
            }
            ColumnValues::$variant(p)
        }};
    }
    match first {
        Value::Boolean(_) => ColumnValues::Boolean(
            values
                .map(|v| u8::from(matches!(v, Value::Boolean(true))))
                .collect(),
        ),
        Value::Integer(_) => fixed!(Integer, 0),
        Value::Float(_) => fixed!(Float, 0.0),
        Value::Timestamp(_) => fixed!(Timestamp, 0),
        Value::Date(_) => fixed!(Date, 0),
        Value::Decimal(_) => packed!(Decimal),
        Value::Text(_) => packed!(Text),
        Value::Json(_) => packed!(Json),
        Value::Bytes(_) => packed!(Bytes),
        Value::Null => ColumnValues::Null,
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
        if !column.nulls.is_empty() && column.nulls.len() < rows.div_ceil(8) {
            return Err(fail(format!(
                "a null bitmap of {} bytes for {rows} rows",
                column.nulls.len()
            )));
        }
        let nulls = column.nulls;
        let is_null = |i: usize| nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
        let mut push = |values: Vec<Value>| {
            for (i, (row, v)) in out.iter_mut().zip(values).enumerate() {
                row.push(if is_null(i) { Value::Null } else { v });
            }
        };
        macro_rules! fixed {
            ($v:expr, $variant:ident) => {{
                check_len($v.len(), rows).map_err(&fail)?;
                push($v.into_iter().map(Value::$variant).collect());
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
                unpack(&p, rows)
                    .map_err(&fail)?
                    .map(|b| Value::Bytes(b.to_vec()))
                    .collect(),
            ),
            ColumnValues::Text(p) => {
                push(texts(&p, rows).map_err(&fail)?.map(Value::Text).collect())
            }
            ColumnValues::Decimal(p) => push(
                texts(&p, rows)
                    .map_err(&fail)?
                    .map(Value::Decimal)
                    .collect(),
            ),
            ColumnValues::Json(p) => {
                push(texts(&p, rows).map_err(&fail)?.map(Value::Json).collect())
            }
        }
        names.push(name);
    }
    Ok(Batch {
        columns: names,
        rows: out,
    })
}

fn check_len(len: usize, rows: usize) -> Result<(), String> {
    if len == rows {
        Ok(())
    } else {
        Err(format!("{len} values in a batch of {rows} rows"))
    }
}

/// The values of a packed column, after checking its offsets.
fn unpack(p: &Packed, rows: usize) -> Result<impl Iterator<Item = &[u8]>, String> {
    check_len(p.offsets.len().saturating_sub(1), rows)?;
    let ends_inside = p
        .offsets
        .last()
        .is_some_and(|&e| e as usize <= p.data.len());
    let ordered = p.offsets.first() == Some(&0) && p.offsets.windows(2).all(|w| w[0] <= w[1]);
    if !(ends_inside && ordered) {
        return Err(format!(
            "offsets that do not index its {} bytes in order",
            p.data.len()
        ));
    }
    Ok(p.offsets
        .windows(2)
        .map(|w| &p.data[w[0] as usize..w[1] as usize]))
}

fn texts(p: &Packed, rows: usize) -> Result<impl Iterator<Item = String>, String> {
    let strings = unpack(p, rows)?
        .enumerate()
        .map(|(i, b)| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| format!("row {i} is not UTF-8"))
        })
        .collect::<Result<Vec<String>, String>>()?;
    Ok(strings.into_iter())
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
