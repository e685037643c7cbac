//! JSON Lines, streamed a line at a time.
//!
//! Columns are the keys in the order they were first seen. The first batch
//! carries the union of its rows' keys; a key first seen later is appended
//! to the columns from that batch on (earlier rows simply lacked it, which
//! the contract already reads as null). Rows lacking a key get null. Blank
//! lines are skipped; a line that is not an object, or not UTF-8, stops the
//! read with the file, line and column.

use serde::de::{Deserializer as _, MapAccess, Visitor};
use sluice_sdk::prelude::*;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Rows `discover` samples to type the fields.
const DISCOVER_SAMPLE_ROWS: usize = 1000;

/// One line's object with its keys in file order (serde_json's own map
/// sorts them, and turning on `preserve_order` would change every plugin
/// built in this workspace).
struct Object(Vec<(String, serde_json::Value)>);

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
            fields.push(entry);
        }
        Ok(Object(fields))
    }
}

fn parse_object(line: &str) -> Result<Object, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(line);
    let object = de.deserialize_map(ObjectVisitor)?;
    de.end()?;
    Ok(object)
}

/// string → text, integer → integer (beyond i64 → exact decimal), other
/// number → float, bool, null, object/array → json.
fn to_value(v: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Boolean(b),
        J::Number(n) => match (n.as_i64(), n.is_u64()) {
            (Some(i), _) => Value::Integer(i),
            (None, true) => Value::Decimal(n.to_string()),
            (None, false) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Text(s),
        nested @ (J::Array(_) | J::Object(_)) => Value::Json(nested.to_string()),
    }
}

pub struct JsonlReader {
    name: String,
    reader: BufReader<File>,
    line: Vec<u8>,
    line_no: u64,
    columns: Vec<String>,
    index: HashMap<String, usize>,
}

impl JsonlReader {
    pub fn open(path: &Path, name: &str) -> Result<Self, PluginError> {
        let file = File::open(path)
            .map_err(|e| PluginError::Permanent(format!("{name}: cannot open: {e}")))?;
        Ok(JsonlReader {
            name: name.to_string(),
            reader: BufReader::with_capacity(64 * 1024, file),
            line: Vec::new(),
            line_no: 0,
            columns: Vec::new(),
            index: HashMap::new(),
        })
    }

    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<Batch>, PluginError> {
        let mut rows: Vec<Row> = Vec::with_capacity(max_rows.min(64 * 1024));
        while rows.len() < max_rows {
            let Some(object) = self.next_object()? else {
                break;
            };
            rows.push(self.place(object));
        }
        if rows.is_empty() {
            return Ok(None);
        }
        // Keys first seen late in the batch widen the rows before them.
        for row in &mut rows {
            row.resize(self.columns.len(), Value::Null);
        }
        Ok(Some(Batch {
            columns: self.columns.clone(),
            rows,
        }))
    }

    /// The object's values in column order, adding columns for new keys.
    fn place(&mut self, object: Object) -> Row {
        let mut row = vec![Value::Null; self.columns.len()];
        for (key, value) in object.0 {
            let i = match self.index.get(&key) {
                Some(&i) => i,
                None => {
                    self.columns.push(key.clone());
                    self.index.insert(key, self.columns.len() - 1);
                    row.push(Value::Null);
                    self.columns.len() - 1
                }
            };
            // A key repeated within one line: the last value wins, as in JSON parsers generally.
            row[i] = to_value(value);
        }
        row
    }

    /// The next non-blank line as an object, or `None` at the end.
    fn next_object(&mut self) -> Result<Option<Object>, PluginError> {
        loop {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line).map_err(|e| {
                PluginError::Permanent(format!(
                    "{}:{}: read failed: {e}",
                    self.name,
                    self.line_no + 1
                ))
            })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let text = std::str::from_utf8(&self.line).map_err(|e| {
                PluginError::Permanent(format!(
                    "{}:{}:{}: not valid UTF-8 (byte 0x{:02x}); re-encode the file as UTF-8",
                    self.name,
                    self.line_no,
                    e.valid_up_to() + 1,
                    self.line[e.valid_up_to()]
                ))
            })?;
            // A byte-order mark some editors put at the start is not data.
            let text = if self.line_no == 1 {
                text.trim_start_matches('\u{feff}')
            } else {
                text
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return parse_object(text).map(Some).map_err(|e| {
                PluginError::Permanent(format!(
                    "{}:{}:{}: {e}",
                    self.name,
                    self.line_no,
                    e.column()
                ))
            });
        }
    }
}

/// The fields of a JSON Lines file: the keys of its first rows, typed by the
/// values seen (mixed integer/float → float, other mixes → any, only nulls →
/// any).
pub fn discover(path: &Path, name: &str) -> Result<Vec<Field>, PluginError> {
    let mut reader = JsonlReader::open(path, name)?;
    let Some(batch) = reader.next_batch(DISCOVER_SAMPLE_ROWS)? else {
        return Ok(Vec::new());
    };
    Ok(batch
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let mut seen: Option<FieldType> = None;
            let mut nullable = false;
            for row in &batch.rows {
                match value_type(&row[i]) {
                    None => nullable = true,
                    Some(t) => seen = Some(seen.map_or(t, |s| merge(s, t))),
                }
            }
            Field {
                name: column.clone(),
                type_: seen.unwrap_or(FieldType::Any),
                nullable,
                required: false,
                identifier: false,
            }
        })
        .collect())
}

fn value_type(v: &Value) -> Option<FieldType> {
    Some(match v {
        Value::Null => return None,
        Value::Boolean(_) => FieldType::Boolean,
        Value::Integer(_) => FieldType::Integer,
        Value::Float(_) => FieldType::Float,
        Value::Decimal(_) => FieldType::Decimal,
        Value::Text(_) => FieldType::Text,
        Value::Bytes(_) => FieldType::Bytes,
        Value::Timestamp(_) => FieldType::Timestamp,
        Value::Date(_) => FieldType::Date,
        Value::Json(_) => FieldType::Json,
    })
}

fn merge(a: FieldType, b: FieldType) -> FieldType {
    use FieldType as T;
    match (a, b) {
        (a, b) if a == b => a,
        (T::Integer, T::Float) | (T::Float, T::Integer) => T::Float,
        (T::Integer, T::Decimal) | (T::Decimal, T::Integer) => T::Decimal,
        _ => T::Any,
    }
}
