//! Row-level create/update/upsert/delete with Salesforce's validation, shared by
//! sObject Collections, single-record upsert and Bulk API 2.0. Each returns either
//! the outcome or one `RecordError`, checked in this order: unknown field,
//! read-only field, value format, required fields, unique values.

use chrono::Utc;
use serde_json::{Map, Value};

use super::errors::RecordError;
use super::ids;
use crate::handle::Shared;
use crate::schema::{FieldSpec, ObjectSpec};
use crate::store::{index_key, Record, Store, Table};
use crate::values::{check_value, text_of, ValueProblem};

/// A successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    pub id: String,
    pub created: bool,
}

fn is_id_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("id")
}

/// Turns a value problem into Salesforce's per-record error.
fn value_error(field: &FieldSpec, value: &Value, problem: ValueProblem) -> RecordError {
    let shown = text_of(value).unwrap_or_else(|| value.to_string());
    let fields = vec![field.name.clone()];
    let label = &field.label;
    match problem {
        ValueProblem::InvalidEmail => RecordError::new(
            "INVALID_EMAIL_ADDRESS",
            format!("{label}: invalid email address: {shown}"),
            fields,
        ),
        ValueProblem::WrongType => RecordError::new(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            format!("{label}: value not of required type: {shown}"),
            fields,
        ),
        ValueProblem::TooLong(max) => RecordError::new(
            "STRING_TOO_LONG",
            format!("{label}: data value too large: {shown} (max length={max})"),
            fields,
        ),
        ValueProblem::NotAnOption => RecordError::new(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            format!("{label}: bad value for restricted picklist field: {shown}"),
            fields,
        ),
        ValueProblem::MalformedId => RecordError::new(
            "MALFORMED_ID",
            format!("{label}: id value of incorrect type: {shown}"),
            fields,
        ),
    }
}

/// Validates the writable fields of `input` (skipping `attributes` and `Id`) and
/// returns them keyed by canonical field name. Empty strings mean null, as in
/// Salesforce.
fn check_fields(
    spec: &ObjectSpec,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, RecordError> {
    let mut out = Map::new();
    for (key, value) in input {
        if key == "attributes" || is_id_key(key) {
            continue;
        }
        let field = spec.find_field(key).ok_or_else(|| {
            RecordError::new(
                "INVALID_FIELD",
                format!("No such column '{key}' on sobject of type {}", spec.name),
                vec![key.clone()],
            )
        })?;
        if field.read_only {
            return Err(RecordError::new(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    field.name
                ),
                vec![field.name.clone()],
            ));
        }
        let checked = check_value(field, value).map_err(|p| value_error(field, value, p))?;
        let checked = match checked {
            Value::String(s) if s.is_empty() => Value::Null,
            other => other,
        };
        out.insert(field.name.clone(), checked);
    }
    Ok(out)
}

/// Required fields that would be null after applying `patch` to `existing`.
fn check_required(
    spec: &ObjectSpec,
    patch: &Map<String, Value>,
    existing: Option<&Record>,
) -> Result<(), RecordError> {
    let missing: Vec<String> = spec
        .fields
        .iter()
        .filter(|f| f.required)
        .filter(|f| {
            let value = patch
                .get(&f.name)
                .or_else(|| existing.and_then(|r| r.fields.get(&f.name)));
            value.is_none_or(Value::is_null)
        })
        .map(|f| f.name.clone())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(RecordError::new(
        "REQUIRED_FIELD_MISSING",
        format!("Required fields are missing: [{}]", missing.join(", ")),
        missing,
    ))
}

fn check_unique(
    table: &Table,
    patch: &Map<String, Value>,
    own_id: Option<&str>,
) -> Result<(), RecordError> {
    for field in table.spec.fields.iter().filter(|f| f.unique) {
        let Some(value) = patch.get(&field.name) else {
            continue;
        };
        if let Some(other) = table.conflict(&field.name, value, own_id) {
            return Err(RecordError::new(
                "DUPLICATE_VALUE",
                format!(
                    "duplicate value found: {} duplicates value on record with id: {other}",
                    field.name
                ),
                vec![],
            ));
        }
    }
    Ok(())
}

/// Inserts a new record.
pub(crate) fn create(
    shared: &Shared,
    table: &mut Table,
    input: &Map<String, Value>,
) -> Result<Saved, RecordError> {
    let fields = check_fields(&table.spec, input)?;
    check_required(&table.spec, &fields, None)?;
    check_unique(table, &fields, None)?;
    let id = ids::make_id(&table.spec.key_prefix, shared.next_seq());
    let fields = fields.into_iter().filter(|(_, v)| !v.is_null()).collect();
    table.insert(id.clone(), fields, Utc::now());
    Ok(Saved { id, created: true })
}

/// Resolves a caller-supplied id to a stored record id of this table.
pub(crate) fn resolve_id(table: &Table, raw: &str) -> Result<String, RecordError> {
    let malformed = || {
        RecordError::new(
            "MALFORMED_ID",
            format!("{} ID: id value of incorrect type: {raw}", table.spec.name),
            vec!["Id".to_owned()],
        )
    };
    let id = ids::normalize(raw).ok_or_else(malformed)?;
    if !id.starts_with(&table.spec.key_prefix) {
        return Err(malformed());
    }
    if table.get(&id).is_some() {
        Ok(id)
    } else if table.was_deleted(&id) {
        Err(RecordError::new(
            "ENTITY_IS_DELETED",
            "entity is deleted",
            vec![],
        ))
    } else {
        Err(RecordError::new(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            vec![],
        ))
    }
}

/// Updates record `raw_id` with the fields of `input`.
pub(crate) fn update(
    table: &mut Table,
    raw_id: &str,
    input: &Map<String, Value>,
) -> Result<Saved, RecordError> {
    let id = resolve_id(table, raw_id)?;
    let fields = check_fields(&table.spec, input)?;
    check_required(&table.spec, &fields, table.get(&id))?;
    check_unique(table, &fields, Some(&id))?;
    table.update(&id, fields, Utc::now());
    Ok(Saved { id, created: false })
}

/// The external id value of `input`, or MISSING_ARGUMENT.
pub(crate) fn external_id_value(
    input: &Map<String, Value>,
    ext_field: &str,
) -> Result<Value, RecordError> {
    input
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(ext_field))
        .map(|(_, v)| v.clone())
        .filter(|v| index_key(v).is_some())
        .ok_or_else(|| {
            RecordError::new(
                "MISSING_ARGUMENT",
                format!("{ext_field} not specified"),
                vec![],
            )
        })
}

/// Outcome of matching an external id against stored records.
pub(crate) enum Match {
    None,
    One(String),
    Many(Vec<String>),
}

pub(crate) fn match_external_id(table: &Table, ext_field: &str, value: &Value) -> Match {
    let ids: Vec<String> = table
        .lookup(ext_field, value)
        .into_iter()
        .map(|r| r.id.clone())
        .collect();
    match ids.len() {
        0 => Match::None,
        1 => Match::One(ids.into_iter().next().unwrap_or_default()),
        _ => Match::Many(ids),
    }
}

/// Creates or updates by external id. Several matches fail the record with
/// DUPLICATE_EXTERNAL_ID (the collection endpoint's equivalent of HTTP 300).
pub(crate) fn upsert(
    shared: &Shared,
    table: &mut Table,
    ext_field: &str,
    input: &Map<String, Value>,
) -> Result<Saved, RecordError> {
    let value = external_id_value(input, ext_field)?;
    match match_external_id(table, ext_field, &value) {
        Match::None => create(shared, table, input),
        Match::One(id) => update(table, &id, input),
        Match::Many(ids) => Err(multiple_matches(&table.spec.name, ext_field, &value, &ids)),
    }
}

pub(crate) fn multiple_matches(
    object: &str,
    ext_field: &str,
    value: &Value,
    ids: &[String],
) -> RecordError {
    RecordError::new(
        "DUPLICATE_EXTERNAL_ID",
        format!(
            "{ext_field} value {} matches more than one {object} record: [{}]",
            text_of(value).unwrap_or_default(),
            ids.join(", ")
        ),
        vec![ext_field.to_owned()],
    )
}

/// The error both records get when one request carries the same external id twice.
pub(crate) fn duplicate_in_request(ext_field: &str, value: &Value) -> RecordError {
    RecordError::new(
        "DUPLICATE_EXTERNAL_ID",
        format!(
            "Duplicate external id specified: {}",
            text_of(value).unwrap_or_default()
        ),
        vec![ext_field.to_owned()],
    )
}

/// Deletes a record of any object, found by its key prefix.
pub(crate) fn delete(store: &mut Store, raw_id: &str) -> Result<String, RecordError> {
    let malformed = || RecordError::new("MALFORMED_ID", format!("malformed id {raw_id}"), vec![]);
    let id = ids::normalize(raw_id).ok_or_else(malformed)?;
    let object = store
        .specs()
        .into_iter()
        .find(|s| id.starts_with(&s.key_prefix))
        .map(|s| s.name)
        .ok_or_else(malformed)?;
    let table = store.table_mut(&object).ok_or_else(malformed)?;
    let id = resolve_id(table, &id)?;
    table.remove(&id);
    Ok(id)
}
