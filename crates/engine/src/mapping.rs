//! Applies a sync's `mappings` to model rows, and checks the mappings
//! against the fields a destination reports in `discover`.
//!
//! Output columns are the mappings' `to` fields, in the order written. A sync
//! without mappings sends the model's columns unchanged. A row whose value
//! cannot be coerced is left out of the output and reported with its key,
//! column, value and the reason; the other rows go on.

use std::fmt;

use super::coerce::coerce;
use sluice_config::{
    close_matches, Coercion, ConfigValue, Location, Mapping, MappingSource, SyncConfig, SyncMode,
};
use sluice_runtime::bindings::types::{FieldType, ObjectInfo, WriteMode};
use sluice_runtime::{Batch, Value};
use sluice_state::key::{DisplayValue, RowKey};

/// A problem with the mapping configuration as a whole (not one row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingProblem {
    /// The mapping (or sync) at fault, when there is one.
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for MappingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for MappingProblem {}

/// One row that could not be mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct RowMappingError {
    /// Position of the row in the input batch.
    pub index: usize,
    pub key: RowKey,
    /// The source column, or `None` for a constant.
    pub column: Option<String>,
    pub field: String,
    /// A short rendering of the offending value.
    pub value: String,
    pub message: String,
}

impl fmt::Display for RowMappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.column {
            Some(c) => format!("column `{c}`"),
            None => "constant".to_owned(),
        };
        write!(
            f,
            "row with key {}: {source} → field `{}`: value {}: {}",
            self.key, self.field, self.value, self.message
        )
    }
}

/// The result of mapping one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedBatch {
    /// The rows that mapped cleanly, with the destination's field names.
    pub batch: Batch,
    /// For each output row, its position in the input batch (so results can
    /// be matched back to keys and hashes).
    pub rows: Vec<usize>,
    pub errors: Vec<RowMappingError>,
}

enum Source {
    Column(String),
    Constant(Value),
}

struct Compiled {
    source: Source,
    to: String,
    coerce: Option<Coercion>,
    location: Location,
}

/// A sync's mappings, ready to apply to batches.
pub struct Mapper {
    sync: String,
    mappings: Vec<Compiled>,
}

impl Mapper {
    /// Prepares the mappings; fails if a constant cannot take its `type:`.
    pub fn new(sync: &SyncConfig) -> Result<Self, Vec<MappingProblem>> {
        let mut problems = Vec::new();
        let mut mappings = Vec::new();
        for m in &sync.mappings {
            match compile(m) {
                Ok(c) => mappings.push(c),
                Err(p) => problems.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Mapper {
            sync: sync.name.clone(),
            mappings,
        })
    }

    /// The fields the mapping produces from rows with `model_columns`.
    pub fn output_fields(&self, model_columns: &[String]) -> Vec<String> {
        if self.mappings.is_empty() {
            return model_columns.to_vec();
        }
        self.mappings.iter().map(|m| m.to.clone()).collect()
    }

    /// Maps `batch`, whose row `i` has primary key `keys[i]`.
    pub fn apply(&self, batch: &Batch, keys: &[RowKey]) -> Result<MappedBatch, MappingProblem> {
        if keys.len() != batch.rows.len() {
            return Err(MappingProblem {
                location: None,
                message: format!(
                    "sync `{}`: {} keys given for a batch of {} rows",
                    self.sync,
                    keys.len(),
                    batch.rows.len()
                ),
            });
        }
        if self.mappings.is_empty() {
            return Ok(MappedBatch {
                batch: batch.clone(),
                rows: (0..batch.rows.len()).collect(),
                errors: Vec::new(),
            });
        }
        let positions = self.column_positions(&batch.columns)?;
        let mut out = MappedBatch {
            batch: Batch {
                columns: self.mappings.iter().map(|m| m.to.clone()).collect(),
                rows: Vec::with_capacity(batch.rows.len()),
            },
            rows: Vec::with_capacity(batch.rows.len()),
            errors: Vec::new(),
        };
        for (index, row) in batch.rows.iter().enumerate() {
            match self.map_row(index, row, &keys[index], &positions) {
                Ok(mapped) => {
                    out.batch.rows.push(mapped);
                    out.rows.push(index);
                }
                Err(mut errs) => out.errors.append(&mut errs),
            }
        }
        Ok(out)
    }

    fn column_positions(&self, columns: &[String]) -> Result<Vec<Option<usize>>, MappingProblem> {
        self.mappings
            .iter()
            .map(|m| match &m.source {
                Source::Constant(_) => Ok(None),
                Source::Column(c) => columns
                    .iter()
                    .position(|x| x == c)
                    .map(Some)
                    .ok_or_else(|| missing_column(&self.sync, c, columns, &m.location)),
            })
            .collect()
    }

    fn map_row(
        &self,
        index: usize,
        row: &[Value],
        key: &RowKey,
        positions: &[Option<usize>],
    ) -> Result<Vec<Value>, Vec<RowMappingError>> {
        let mut values = Vec::with_capacity(self.mappings.len());
        let mut errors = Vec::new();
        for (m, pos) in self.mappings.iter().zip(positions) {
            let raw = match (&m.source, pos) {
                (Source::Column(_), Some(p)) => row.get(*p).cloned().unwrap_or(Value::Null),
                (Source::Constant(v), _) => {
                    values.push(v.clone());
                    continue;
                }
                (Source::Column(_), None) => unreachable!("positions resolved for columns"),
            };
            let Some(to) = m.coerce else {
                values.push(raw);
                continue;
            };
            let shown = DisplayValue(&raw).to_string();
            match coerce(raw, to) {
                Ok(v) => values.push(v),
                Err(why) => errors.push(RowMappingError {
                    index,
                    key: key.clone(),
                    column: match &m.source {
                        Source::Column(c) => Some(c.clone()),
                        Source::Constant(_) => None,
                    },
                    field: m.to.clone(),
                    value: shown,
                    message: format!("cannot convert to {}: {why}", to.as_str()),
                }),
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(errors)
        }
    }
}

fn compile(m: &Mapping) -> Result<Compiled, MappingProblem> {
    let source = match &m.source {
        MappingSource::Column(c) => Source::Column(c.clone()),
        MappingSource::Constant(c) => {
            let v = constant_value(c);
            let v = match m.coerce {
                Some(to) => coerce(v, to).map_err(|why| MappingProblem {
                    location: Some(m.location.clone()),
                    message: format!(
                        "the constant for field `{}` cannot be converted to {}: {why}",
                        m.to,
                        to.as_str()
                    ),
                })?,
                None => v,
            };
            Source::Constant(v)
        }
    };
    Ok(Compiled {
        source,
        to: m.to.clone(),
        coerce: m.coerce,
        location: m.location.clone(),
    })
}

/// A YAML constant as a row value; lists and mappings become JSON.
pub fn constant_value(c: &ConfigValue) -> Value {
    match c {
        ConfigValue::Null => Value::Null,
        ConfigValue::Bool(b) => Value::Boolean(*b),
        ConfigValue::Integer(i) => Value::Integer(*i),
        ConfigValue::Float(f) => Value::Float(*f),
        ConfigValue::String(s) => Value::Text(s.expose().to_owned()),
        ConfigValue::List(_) | ConfigValue::Map(_) => Value::Json(c.to_plugin_json().to_string()),
    }
}

fn missing_column(sync: &str, column: &str, columns: &[String], at: &Location) -> MappingProblem {
    let close = close_matches(column, columns.iter().map(String::as_str), 3);
    let hint = if close.is_empty() {
        format!("the model's columns are: {}", columns.join(", "))
    } else {
        format!("did you mean {}?", quoted(&close))
    };
    MappingProblem {
        location: Some(at.clone()),
        message: format!(
            "sync `{sync}` maps column `{column}`, which the model does not have; {hint}"
        ),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a sync against the destination object it writes, before anything
/// is written: the object supports the mode, the identifier field exists and
/// can identify records, every mapped field exists (with close matches when
/// not), explicit coercions fit the field types, and every required field is
/// mapped.
///
/// `model_columns` gives the fields sent by a sync without mappings. When
/// the sync has transforms, they may add or rename fields, so only the mode
/// and identifier are checked here; check the transforms' output with
/// [`check_fields`].
pub fn check_against_destination(
    sync: &SyncConfig,
    model_columns: Option<&[String]>,
    object: &ObjectInfo,
) -> Result<(), Vec<MappingProblem>> {
    let mut problems = Vec::new();
    check_mode(sync, object, &mut problems);
    // A field named `*` means the destination takes any fields (webhooks,
    // event APIs): only the mode can be checked.
    let open_schema = object.fields.iter().any(|f| f.name == "*");
    if !open_schema {
        check_identifier(sync, object, &mut problems);
    }
    if sync.transforms.is_empty() && !open_schema {
        check_types(sync, object, &mut problems);
        let fields: Option<Vec<String>> = if sync.mappings.is_empty() {
            model_columns.map(<[String]>::to_vec)
        } else {
            Some(sync.mappings.iter().map(|m| m.to.clone()).collect())
        };
        if let Some(fields) = fields {
            if let Err(mut p) = check_fields(sync, &fields, object) {
                problems.append(&mut p);
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Checks that `fields` (what will be sent) exist on `object` and include
/// every required field.
pub fn check_fields(
    sync: &SyncConfig,
    fields: &[String],
    object: &ObjectInfo,
) -> Result<(), Vec<MappingProblem>> {
    let mut problems = Vec::new();
    let known: Vec<&str> = object.fields.iter().map(|f| f.name.as_str()).collect();
    for field in fields {
        if known.contains(&field.as_str()) {
            continue;
        }
        let location = sync
            .mappings
            .iter()
            .find(|m| &m.to == field)
            .map(|m| m.location.clone());
        let close = close_matches(field, known.iter().copied(), 3);
        let hint = if close.is_empty() {
            format!("its fields are: {}", shorten(&known))
        } else {
            format!("close matches: {}", quoted(&close))
        };
        problems.push(MappingProblem {
            location,
            message: format!(
                "sync `{}`: field `{field}` does not exist on `{}`; {hint}",
                sync.name, object.name
            ),
        });
    }
    let identifier = sync.identifier.as_ref().map(|s| s.expose());
    for f in object.fields.iter().filter(|f| f.required) {
        if !fields.contains(&f.name) && identifier != Some(f.name.as_str()) {
            problems.push(MappingProblem {
                location: Some(sync.location.clone()),
                message: format!(
                    "sync `{}`: required field `{}` of `{}` is not mapped",
                    sync.name, f.name, object.name
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn shorten(names: &[&str]) -> String {
    const MAX: usize = 20;
    let shown = quoted(&names[..names.len().min(MAX)]);
    if names.len() > MAX {
        format!("{shown}, … ({} in all)", names.len())
    } else {
        shown
    }
}

fn check_mode(sync: &SyncConfig, object: &ObjectInfo, problems: &mut Vec<MappingProblem>) {
    let mut needed = vec![sync.mode.write_mode()];
    if sync.mode == SyncMode::Mirror {
        needed.push(WriteMode::Delete);
    }
    for mode in needed {
        if !object.modes.contains(&mode) {
            problems.push(MappingProblem {
                location: Some(sync.location.clone()),
                message: format!(
                    "sync `{}` (mode {}) needs `{}` to support {} writes; it supports: {}",
                    sync.name,
                    sync.mode,
                    object.name,
                    write_mode_name(mode),
                    object
                        .modes
                        .iter()
                        .map(|m| write_mode_name(*m))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
}

fn check_identifier(sync: &SyncConfig, object: &ObjectInfo, problems: &mut Vec<MappingProblem>) {
    let Some(id) = &sync.identifier else { return };
    let names = object.fields.iter().map(|f| f.name.as_str());
    match object.fields.iter().find(|f| f.name == id.expose()) {
        None => {
            let close = close_matches(id.expose(), names, 3);
            let hint = if close.is_empty() {
                String::new()
            } else {
                format!("; close matches: {}", quoted(&close))
            };
            problems.push(MappingProblem {
                location: Some(sync.location.clone()),
                message: format!(
                    "sync `{}`: identifier field `{id}` does not exist on `{}`{hint}",
                    sync.name, object.name
                ),
            });
        }
        Some(f) if !f.identifier && sync.mode.needs_identifier() => {
            let ids: Vec<&str> = object
                .fields
                .iter()
                .filter(|f| f.identifier)
                .map(|f| f.name.as_str())
                .collect();
            problems.push(MappingProblem {
                location: Some(sync.location.clone()),
                message: format!(
                    "sync `{}`: field `{id}` of `{}` cannot identify records; identifier fields: {}",
                    sync.name,
                    object.name,
                    if ids.is_empty() { "none".to_owned() } else { quoted(&ids) }
                ),
            });
        }
        Some(_) => {}
    }
}

fn check_types(sync: &SyncConfig, object: &ObjectInfo, problems: &mut Vec<MappingProblem>) {
    for m in &sync.mappings {
        let (Some(to), Some(field)) = (m.coerce, object.fields.iter().find(|f| f.name == m.to))
        else {
            continue;
        };
        if !fits(to, field.type_) {
            problems.push(MappingProblem {
                location: Some(m.location.clone()),
                message: format!(
                    "sync `{}`: field `{}` of `{}` is {}, but the mapping converts to {}",
                    sync.name,
                    m.to,
                    object.name,
                    field_type_name(field.type_),
                    to.as_str()
                ),
            });
        }
    }
}

fn write_mode_name(m: WriteMode) -> &'static str {
    match m {
        WriteMode::Upsert => "upsert",
        WriteMode::Update => "update",
        WriteMode::Insert => "insert",
        WriteMode::Delete => "delete",
        WriteMode::Append => "append",
    }
}

fn field_type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::Boolean => "boolean",
        FieldType::Integer => "integer",
        FieldType::Float => "float",
        FieldType::Decimal => "decimal",
        FieldType::Text => "text",
        FieldType::Bytes => "bytes",
        FieldType::Timestamp => "timestamp",
        FieldType::Date => "date",
        FieldType::Json => "json",
        FieldType::Any => "any",
    }
}

fn fits(to: Coercion, field: FieldType) -> bool {
    use FieldType as F;
    matches!(
        (to, field),
        (_, F::Any)
            | (
                Coercion::Number | Coercion::Integer,
                F::Integer | F::Float | F::Decimal
            )
            | (Coercion::String, F::Text)
            | (Coercion::Bool, F::Boolean)
            | (Coercion::Timestamp, F::Timestamp | F::Date)
            | (Coercion::Json, F::Json)
    )
}
