//! `field-map`: builds each output column from a list of field rules: copy a
//! column under a new name, coerce its type, clean text (trim, lowercase,
//! uppercase), or set a constant. A value that cannot be coerced rejects its
//! row with a message naming the field; the other rows go on.
//!
//! It is a `columnar-transform`: whole columns cross the boundary, a column
//! passed through or renamed is moved rather than copied, and numbers parse
//! straight out of packed text. The mapping logic is plain Rust
//! (`FieldMap::apply`) so the same code can be compiled natively, which is
//! how the Wasm overhead is benchmarked.

use serde::Deserialize;
use sluice_sdk::columns;
use sluice_sdk::prelude::*;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Source column; absent for constants.
    #[serde(default)]
    pub from: Option<String>,
    /// Output column name (defaults to `from`).
    #[serde(default)]
    pub to: Option<String>,
    /// Coerce to this type.
    #[serde(default, rename = "type")]
    pub coerce: Option<Coerce>,
    /// Text clean-ups, applied in order.
    #[serde(default)]
    pub clean: Vec<Clean>,
    /// A constant value instead of a column.
    #[serde(default)]
    pub constant: Option<serde_json::Value>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Coerce {
    Text,
    Integer,
    Float,
    Boolean,
    Json,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Clean {
    Trim,
    Lowercase,
    Uppercase,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    fields: Vec<Rule>,
}

/// A compiled mapping: rules resolved against a batch's columns.
pub struct FieldMap {
    rules: Vec<Rule>,
    names: Vec<String>,
}

enum Source {
    Column(usize),
    Constant(Value),
}

impl FieldMap {
    pub fn new(rules: Vec<Rule>) -> Result<Self, PluginError> {
        let mut names = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let name = rule
                .to
                .clone()
                .or_else(|| rule.from.clone())
                .ok_or_else(|| {
                    PluginError::Config(format!("fields[{i}]: needs `to` (or `from`)"))
                })?;
            if rule.from.is_none() && rule.constant.is_none() {
                return Err(PluginError::Config(format!(
                    "fields[{i}] ({name}): needs `from` or `constant`"
                )));
            }
            names.push(name);
        }
        Ok(FieldMap { rules, names })
    }

    /// Map one batch, a column at a time. A row that fails a rule is
    /// reported once (for the first rule it fails) and left out.
    pub fn apply(&self, input: ColumnBatch) -> Result<ColumnsTransformed, PluginError> {
        let rows = input.rows as usize;
        let sources = self.resolve(&input.columns)?;
        // A column used once moves to the output; only a column used twice
        // is copied.
        let mut uses = vec![0usize; input.columns.len()];
        for s in &sources {
            if let Source::Column(i) = s {
                uses[*i] += 1;
            }
        }
        let mut inputs: Vec<Option<Column>> = input.columns.into_iter().map(Some).collect();
        let mut failures = Failures::new(rows);
        let mut columns = Vec::with_capacity(self.rules.len());
        for ((rule, source), name) in self.rules.iter().zip(&sources).zip(&self.names) {
            let column = match source {
                Source::Column(i) => {
                    uses[*i] -= 1;
                    match uses[*i] {
                        0 => inputs[*i].take(),
                        _ => inputs[*i].clone(),
                    }
                    .unwrap_or_else(|| Column::constant("", &Value::Null, rows))
                }
                Source::Constant(v) => Column::constant("", v, rows),
            };
            let mut column = convert(column, rule, rows, &mut |row, message| {
                failures.fail(row, name, message)
            });
            column.name = name.clone();
            columns.push(column);
        }
        let errors = failures.into_errors();
        Ok(ColumnsTransformed {
            batch: ColumnBatch {
                rows: input.rows,
                columns,
            }
            .without(&errors),
            errors,
        })
    }

    fn resolve(&self, columns: &[Column]) -> Result<Vec<Source>, PluginError> {
        self.rules
            .iter()
            .map(|rule| match (&rule.from, &rule.constant) {
                (Some(from), _) => columns
                    .iter()
                    .position(|c| &c.name == from)
                    .map(Source::Column)
                    .ok_or_else(|| {
                        PluginError::Config(format!("column `{from}` is not in the batch"))
                    }),
                (None, Some(c)) => Ok(Source::Constant(json_to_value(c))),
                (None, None) => unreachable!("checked in FieldMap::new"),
            })
            .collect()
    }
}

/// The first failure of each row.
struct Failures {
    failed: Vec<bool>,
    errors: Vec<RowError>,
}

impl Failures {
    fn new(rows: usize) -> Self {
        Failures {
            failed: vec![false; rows],
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, row: usize, field: &str, message: String) {
        if let Some(f @ false) = self.failed.get_mut(row) {
            *f = true;
            self.errors.push(RowError {
                index: row as u32,
                message: format!("field `{field}`: {message}"),
            });
        }
    }

    fn into_errors(mut self) -> Vec<RowError> {
        self.errors.sort_unstable_by_key(|e| e.index);
        self.errors
    }
}

/// Apply one rule's coercion, then its clean-ups, to a whole column.
fn convert(
    column: Column,
    rule: &Rule,
    rows: usize,
    fail: &mut dyn FnMut(usize, String),
) -> Column {
    let column = match rule.coerce {
        None => column,
        Some(target) => coerce_column(column, target, rows, fail),
    };
    if rule.clean.is_empty() {
        return column;
    }
    let Column {
        name,
        nulls,
        values,
    } = column;
    let values = match values {
        ColumnValues::Text(packed) => ColumnValues::Text(clean_packed(&packed, &rule.clean)),
        ColumnValues::Mixed(mut values) => {
            for v in &mut values {
                if let Value::Text(s) = v {
                    let mut scratch = std::mem::take(s);
                    clean_text(&mut scratch, &rule.clean);
                    *s = scratch;
                }
            }
            ColumnValues::Mixed(values)
        }
        // Clean-ups apply to text only.
        other => other,
    };
    Column {
        name,
        nulls,
        values,
    }
}

/// Clean every value of a text column into a new buffer.
fn clean_packed(packed: &Packed, cleans: &[Clean]) -> Packed {
    let rows = packed.len();
    let mut out = Packed::with_capacity(rows, packed.data.len());
    let trim = cleans.contains(&Clean::Trim);
    // For ASCII, trimming and case commute and the last case wins, so a
    // value is cleaned in one pass from input to output with no scratch copy.
    let case = cleans.iter().rev().find(|c| **c != Clean::Trim).copied();
    let mut scratch = String::new();
    for i in 0..rows {
        let bytes = packed.bytes(i);
        if !bytes.is_ascii() {
            scratch.clear();
            scratch.push_str(packed.text(i));
            clean_text(&mut scratch, cleans);
            out.push(scratch.as_bytes());
            continue;
        }
        let bytes = if trim { trim_whitespace(bytes) } else { bytes };
        out.push_with(|data| match case {
            Some(Clean::Lowercase) => data.extend(bytes.iter().map(u8::to_ascii_lowercase)),
            Some(Clean::Uppercase) => data.extend(bytes.iter().map(u8::to_ascii_uppercase)),
            _ => data.extend_from_slice(bytes),
        });
    }
    out
}

/// `str::trim` for ASCII: its whitespace includes the vertical tab, which
/// `<[u8]>::trim_ascii` keeps.
fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
    let start = bytes.iter().position(|c| !space(c)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|c| !space(c))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

fn clean_text(s: &mut String, cleans: &[Clean]) {
    for clean in cleans {
        match clean {
            Clean::Trim => {
                let end = s.trim_end().len();
                s.truncate(end);
                let start = s.len() - s.trim_start().len();
                s.drain(..start);
            }
            Clean::Lowercase if s.is_ascii() => s.make_ascii_lowercase(),
            Clean::Lowercase => *s = s.to_lowercase(),
            Clean::Uppercase if s.is_ascii() => s.make_ascii_uppercase(),
            Clean::Uppercase => *s = s.to_uppercase(),
        }
    }
}

/// Coerce a whole column. Numbers parse straight out of text columns; other
/// combinations go a value at a time through [`coerce`].
fn coerce_column(
    column: Column,
    target: Coerce,
    rows: usize,
    fail: &mut dyn FnMut(usize, String),
) -> Column {
    let Column {
        name,
        nulls,
        values,
    } = column;
    let null = |i| columns::is_null(&nulls, i);
    let values = match (target, values) {
        (Coerce::Float, ColumnValues::Float(v)) => ColumnValues::Float(v),
        (Coerce::Float, ColumnValues::Integer(v)) => {
            ColumnValues::Float(v.into_iter().map(|n| n as f64).collect())
        }
        (Coerce::Integer, ColumnValues::Integer(v)) => ColumnValues::Integer(v),
        (Coerce::Text, ColumnValues::Text(p)) => ColumnValues::Text(p),
        (Coerce::Float, ColumnValues::Text(p)) => {
            ColumnValues::Float(parse_packed(&p, rows, null, (target, Value::Text), fail))
        }
        (Coerce::Float, ColumnValues::Decimal(p)) => {
            ColumnValues::Float(parse_packed(&p, rows, null, (target, Value::Decimal), fail))
        }
        (Coerce::Integer, ColumnValues::Text(p)) => {
            ColumnValues::Integer(parse_packed(&p, rows, null, (target, Value::Text), fail))
        }
        (Coerce::Integer, ColumnValues::Decimal(p)) => {
            ColumnValues::Integer(parse_packed(&p, rows, null, (target, Value::Decimal), fail))
        }
        (_, values) => {
            let column = Column {
                name,
                nulls,
                values,
            };
            let coerced = (0..rows)
                .map(|i| {
                    coerce(column.value(i), target).unwrap_or_else(|message| {
                        fail(i, message);
                        Value::Null
                    })
                })
                .collect();
            return Column::from_values(column.name, coerced);
        }
    };
    Column {
        name,
        nulls,
        values,
    }
}

/// Parse every non-null value of a text column as a number; a failure
/// names the value as the given kind of value.
fn parse_packed<T: std::str::FromStr + Default>(
    packed: &Packed,
    rows: usize,
    null: impl Fn(usize) -> bool,
    (target, kind): (Coerce, fn(String) -> Value),
    fail: &mut dyn FnMut(usize, String),
) -> Vec<T> {
    (0..rows)
        .map(|i| {
            if null(i) {
                return T::default();
            }
            let bytes = packed.bytes(i);
            // Numbers are ASCII: trim and check those bytes directly; other
            // text takes the general path (its whitespace is Unicode's).
            let parsed = if bytes.is_ascii() {
                std::str::from_utf8(trim_whitespace(bytes))
                    .ok()
                    .and_then(|s| s.parse().ok())
            } else {
                packed.text(i).trim().parse().ok()
            };
            parsed.unwrap_or_else(|| {
                fail(i, cannot_convert(&kind(packed.text(i).to_owned()), target));
                T::default()
            })
        })
        .collect()
}

fn cannot_convert(v: &Value, target: Coerce) -> String {
    format!("cannot convert {v:?} to {target:?}")
}

fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.to_string()),
    }
}

fn coerce(value: Value, target: Coerce) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let fail = |v: &Value| cannot_convert(v, target);
    Ok(match target {
        Coerce::Text => match value {
            Value::Text(_) => value,
            other => {
                let mut s = String::new();
                other.write_text(&mut s);
                Value::Text(s)
            }
        },
        Coerce::Integer => Value::Integer(value.as_i64().ok_or_else(|| fail(&value))?),
        Coerce::Float => Value::Float(value.as_f64().ok_or_else(|| fail(&value))?),
        Coerce::Boolean => match &value {
            Value::Boolean(_) => value,
            Value::Integer(i) => Value::Boolean(*i != 0),
            Value::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" => Value::Boolean(true),
                "false" | "f" | "no" | "n" | "0" => Value::Boolean(false),
                _ => return Err(fail(&value)),
            },
            _ => return Err(fail(&value)),
        },
        Coerce::Json => Value::Json(value.to_json().to_string()),
    })
}

pub struct FieldMapTransform(FieldMap);

impl ColumnarTransform for FieldMapTransform {
    fn spec() -> PluginSpec {
        PluginSpec::new("field-map", env!("CARGO_PKG_VERSION"), "Renames, coerces, cleans and adds fields")
            .config_schema(serde_json::json!({
                "type": "object",
                "required": ["fields"],
                "additionalProperties": false,
                "properties": {"fields": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "type": {"enum": ["text", "integer", "float", "boolean", "json"]},
                        "clean": {"type": "array", "items": {"enum": ["trim", "lowercase", "uppercase"]}},
                        "constant": {}
                    }
                }}}
            }))
    }

    fn open(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        Ok(FieldMapTransform(FieldMap::new(config.fields)?))
    }

    fn transform(&mut self, batch: ColumnBatch) -> Result<ColumnsTransformed, PluginError> {
        self.0.apply(batch)
    }
}

sluice_sdk::export_columnar_transform!(FieldMapTransform);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_a_column_matches_cleaning_each_value() {
        let values = [
            " \x0bMiXed Case\t",
            "ÄBC ",
            "  ",
            "",
            "\u{2003}Ünïcode\u{2003}",
            "plain",
        ];
        let mut packed = Packed::with_capacity(values.len(), 0);
        for v in values {
            packed.push(v.as_bytes());
        }
        for cleans in [
            vec![Clean::Trim],
            vec![Clean::Trim, Clean::Lowercase],
            vec![Clean::Uppercase, Clean::Trim],
            vec![Clean::Lowercase, Clean::Uppercase],
        ] {
            let out = clean_packed(&packed, &cleans);
            for (i, v) in values.iter().enumerate() {
                let mut expected = v.to_string();
                clean_text(&mut expected, &cleans);
                assert_eq!(out.text(i), expected, "{v:?} with {cleans:?}");
            }
        }
    }

    #[test]
    fn maps_coerces_and_rejects_bad_rows() {
        let mut t = FieldMapTransform::open(
            r#"{"fields":[
                {"from":"email","to":"Email","clean":["trim","lowercase"]},
                {"from":"ltv","to":"LTV","type":"float"},
                {"to":"Source","constant":"sluice"}]}"#,
        )
        .unwrap();
        let batch = Batch {
            columns: vec!["ltv".into(), "email".into()],
            rows: vec![
                vec!["12.5".into(), " A@B.com ".into()],
                vec!["n/a".into(), "c@d.com".into()],
            ],
        };
        let out = t.transform(ColumnBatch::from_batch(batch)).unwrap();
        let out_batch = out.batch.into_batch();
        assert_eq!(out_batch.columns, vec!["Email", "LTV", "Source"]);
        assert_eq!(
            out_batch.rows,
            vec![vec![
                Value::Text("a@b.com".into()),
                Value::Float(12.5),
                Value::Text("sluice".into())
            ]]
        );
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 1);
        assert!(
            out.errors[0].message.contains("LTV"),
            "{}",
            out.errors[0].message
        );
    }
}
