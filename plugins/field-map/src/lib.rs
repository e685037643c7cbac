//! `field-map`: builds each output row from a list of field rules: copy a
//! column under a new name, coerce its type, clean text (trim, lowercase,
//! uppercase), or set a constant. A value that cannot be coerced rejects its
//! row with a message naming the field; the other rows go on.
//!
//! The mapping logic is plain Rust (`FieldMap::apply`) so the same code can
//! be compiled natively, which is how the Wasm overhead is benchmarked.

use serde::Deserialize;
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
    columns: Vec<String>,
}

enum Source {
    Column(usize),
    Constant(Value),
}

impl FieldMap {
    pub fn new(rules: Vec<Rule>) -> Result<Self, PluginError> {
        let mut columns = Vec::with_capacity(rules.len());
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
            columns.push(name);
        }
        Ok(FieldMap { rules, columns })
    }

    /// Map one batch.
    pub fn apply(&self, input: Batch) -> Result<Transformed, PluginError> {
        let sources = self.resolve(&input.columns)?;
        let mut out = Transformed::all(Batch {
            columns: self.columns.clone(),
            rows: Vec::with_capacity(input.rows.len()),
        });
        for (index, mut row) in input.rows.into_iter().enumerate() {
            let mut mapped = Vec::with_capacity(sources.len());
            let mut failed = None;
            for (rule, source) in self.rules.iter().zip(&sources) {
                let value = match source {
                    Source::Column(i) => std::mem::replace(&mut row[*i], Value::Null),
                    Source::Constant(v) => v.clone(),
                };
                match convert(value, rule) {
                    Ok(v) => mapped.push(v),
                    Err(message) => {
                        failed = Some(format!(
                            "field `{}`: {message}",
                            rule.to.as_deref().or(rule.from.as_deref()).unwrap_or("?")
                        ));
                        break;
                    }
                }
            }
            match failed {
                None => out.batch.rows.push(mapped),
                Some(message) => out.reject(index, message),
            }
        }
        Ok(out)
    }

    fn resolve(&self, columns: &[String]) -> Result<Vec<Source>, PluginError> {
        self.rules
            .iter()
            .map(|rule| match (&rule.from, &rule.constant) {
                (Some(from), _) => columns
                    .iter()
                    .position(|c| c == from)
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

fn convert(value: Value, rule: &Rule) -> Result<Value, String> {
    let mut value = match rule.coerce {
        None => value,
        Some(target) => coerce(value, target)?,
    };
    if let Value::Text(s) = &mut value {
        for clean in &rule.clean {
            match clean {
                Clean::Trim => {
                    let t = s.trim();
                    if t.len() != s.len() {
                        *s = t.to_string();
                    }
                }
                Clean::Lowercase => s.make_ascii_lowercase_unicode(),
                Clean::Uppercase => *s = s.to_uppercase(),
            }
        }
    }
    Ok(value)
}

trait LowercaseInPlace {
    fn make_ascii_lowercase_unicode(&mut self);
}

impl LowercaseInPlace for String {
    /// Lowercase without allocating when the text is ASCII (the common case).
    fn make_ascii_lowercase_unicode(&mut self) {
        if self.is_ascii() {
            self.make_ascii_lowercase();
        } else {
            *self = self.to_lowercase();
        }
    }
}

fn coerce(value: Value, target: Coerce) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let fail = |v: &Value| format!("cannot convert {v:?} to {target:?}");
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

impl Transform for FieldMapTransform {
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

    fn transform(&mut self, batch: Batch) -> Result<Transformed, PluginError> {
        self.0.apply(batch)
    }
}

sluice_sdk::export_transform!(FieldMapTransform);

#[cfg(test)]
mod tests {
    use super::*;

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
        let out = t.transform(batch).unwrap();
        assert_eq!(out.batch.columns, vec!["Email", "LTV", "Source"]);
        assert_eq!(
            out.batch.rows,
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
