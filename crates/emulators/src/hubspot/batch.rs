//! `POST /crm/v3/objects/{type}/batch/*`. batch/create stores each input's
//! `associations` (checked before anything is written) with its record.
//!
//! Writes are validated in full before anything is stored, so a whole-request 400
//! or 409 never leaves a partial write behind; only batch/create in multi-status mode
//! (every input carries `objectWriteTraceId`) writes the valid inputs and reports the
//! rest in a 207.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::associations::{self, PendingAssociation};
use super::errors::{error, invalid_json, validation};
use super::{render_record, timestamp};
use crate::handle::Shared;
use crate::schema::{FieldType, ObjectSpec};
use crate::store::{index_key, Store, Table};
use crate::values::{check_value, text_of, ValueProblem};

/// Most inputs one batch request may carry.
pub const MAX_BATCH_INPUTS: usize = 100;

/// One invalid property of one input.
#[derive(Debug, Clone)]
pub(super) struct PropertyError {
    name: String,
    code: &'static str,
    message: String,
}

impl PropertyError {
    fn new(name: &str, code: &'static str, message: String) -> Self {
        Self {
            name: name.to_owned(),
            code,
            message,
        }
    }

    /// The legacy detail embedded in the top-level message.
    fn detail_json(&self) -> Value {
        json!({ "isValid": false, "message": self.message, "error": self.code, "name": self.name })
    }

    /// The `errors[]` item.
    fn error_json(&self) -> Value {
        json!({
            "message": self.message,
            "code": self.code,
            "in": self.name,
            "context": { "propertyName": [self.name] },
        })
    }
}

fn property_problem(
    name: &str,
    value: &Value,
    field_type: FieldType,
    options: &[String],
    problem: ValueProblem,
) -> PropertyError {
    let shown = text_of(value).unwrap_or_else(|| value.to_string());
    let (code, message) = match problem {
        ValueProblem::InvalidEmail => {
            ("INVALID_EMAIL", format!("Email address {shown} is invalid"))
        }
        ValueProblem::NotAnOption => (
            "INVALID_OPTION",
            format!(
                "{shown} was not one of the allowed options: [{}]",
                options.join(", ")
            ),
        ),
        ValueProblem::WrongType | ValueProblem::MalformedId | ValueProblem::TooLong(_) => {
            match field_type {
                FieldType::Boolean => (
                    "INVALID_BOOLEAN",
                    format!("{shown} was not a valid boolean."),
                ),
                FieldType::Date | FieldType::DateTime => {
                    ("INVALID_DATE", format!("{shown} was not a valid date."))
                }
                _ => ("INVALID_NUMBER", format!("{shown} was not a valid number.")),
            }
        }
    };
    PropertyError::new(name, code, message)
}

/// Validates `props`; returns the values to store (strings; null clears) and errors.
pub(super) fn check_properties(
    spec: &ObjectSpec,
    props: &Map<String, Value>,
    creating: bool,
) -> (Map<String, Value>, Vec<PropertyError>) {
    let mut out = Map::new();
    let mut problems = Vec::new();
    for (name, value) in props {
        let Some(field) = spec.fields.iter().find(|f| &f.name == name) else {
            problems.push(PropertyError::new(
                name,
                "PROPERTY_DOESNT_EXIST",
                format!("Property \"{name}\" does not exist"),
            ));
            continue;
        };
        if field.read_only {
            problems.push(PropertyError::new(
                name,
                "READ_ONLY_VALUE",
                format!("\"{name}\" is a read only property; its value cannot be set."),
            ));
            continue;
        }
        if value.is_null() || value.as_str() == Some("") {
            if !creating {
                out.insert(name.clone(), Value::Null);
            }
            continue;
        }
        match check_value(field, value) {
            Ok(checked) => {
                out.insert(
                    name.clone(),
                    Value::String(text_of(&checked).unwrap_or_default()),
                );
            }
            Err(problem) => problems.push(property_problem(
                name,
                value,
                field.field_type,
                &field.options,
                problem,
            )),
        }
    }
    for field in spec.fields.iter().filter(|f| f.required) {
        let missing = match out.get(&field.name) {
            Some(v) => v.is_null(),
            None => creating,
        };
        if missing {
            problems.push(PropertyError::new(
                &field.name,
                "REQUIRED_PROPERTY",
                format!("Property \"{}\" is required", field.name),
            ));
        }
    }
    (out, problems)
}

fn details_message(problems: &[PropertyError]) -> String {
    let details: Vec<Value> = problems.iter().map(PropertyError::detail_json).collect();
    format!("Property values were not valid: {}", Value::Array(details))
}

/// The whole-request 400 for invalid property values.
pub(super) fn invalid_properties(shared: &Shared, problems: &[PropertyError]) -> Response {
    let mut extra = Map::new();
    extra.insert(
        "errors".to_owned(),
        problems.iter().map(PropertyError::error_json).collect(),
    );
    error(
        shared,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        details_message(problems),
        extra,
    )
}

/// The whole-request 409 when a unique value is taken.
pub(super) fn conflict(shared: &Shared, spec: &ObjectSpec, existing_id: &str) -> Response {
    error(
        shared,
        StatusCode::CONFLICT,
        "CONFLICT",
        format!("{} already exists. Existing ID: {existing_id}", spec.label),
        Map::new(),
    )
}

/// A parsed batch body.
struct BatchBody {
    root: Value,
    inputs: Vec<Map<String, Value>>,
}

fn parse_batch(shared: &Shared, body: &[u8]) -> Result<BatchBody, Response> {
    let root: Value = serde_json::from_slice(body).map_err(|e| invalid_json(shared, &e))?;
    let inputs = root
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            validation(
                shared,
                "Invalid input JSON: the body must be an object with an \"inputs\" array",
            )
        })?;
    if inputs.len() > MAX_BATCH_INPUTS {
        return Err(validation(
            shared,
            format!(
                "Batch size limit exceeded: {} inputs were provided, but at most {MAX_BATCH_INPUTS} are allowed.",
                inputs.len()
            ),
        ));
    }
    let inputs = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            input.as_object().cloned().ok_or_else(|| {
                validation(
                    shared,
                    format!("Invalid input JSON: inputs[{i}] is not an object"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BatchBody { root, inputs })
}

pub(super) fn properties_of(input: &Map<String, Value>) -> Map<String, Value> {
    input
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn id_of(input: &Map<String, Value>) -> Option<String> {
    input.get("id").and_then(text_of).filter(|s| !s.is_empty())
}

/// Canonical object name for a path segment, or the 400.
pub(super) fn resolve_object(shared: &Shared, object: &str) -> Result<String, Response> {
    shared
        .store
        .lock()
        .table(object)
        .map(|t| t.spec.name.clone())
        .ok_or_else(|| {
            validation(
                shared,
                format!("Unable to infer object type from: {object}"),
            )
        })
}

/// `{status: COMPLETE, results, numErrors?, errors?, requestedAt, startedAt, completedAt, links}`.
pub(super) fn batch_response(
    status: StatusCode,
    results: Vec<Value>,
    errors: Vec<Value>,
) -> Response {
    let now = timestamp(Utc::now());
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "requestedAt": now,
        "startedAt": now,
        "completedAt": now,
        "links": {},
    });
    if !errors.is_empty() {
        if let Value::Object(map) = &mut body {
            map.insert("numErrors".to_owned(), json!(errors.len()));
            map.insert("errors".to_owned(), Value::Array(errors));
        }
    }
    (status, Json(body)).into_response()
}

pub(super) fn new_id(shared: &Shared) -> String {
    (100_000 + shared.next_seq()).to_string()
}

/// The id of another record holding one of `values`' unique values, if any.
pub(super) fn unique_conflict(
    table: &Table,
    values: &Map<String, Value>,
    own_id: Option<&str>,
) -> Option<String> {
    table
        .spec
        .fields
        .iter()
        .filter(|f| f.unique)
        .filter_map(|f| values.get(&f.name).map(|v| (f, v)))
        .find_map(|(f, v)| table.conflict(&f.name, v, own_id))
}

/// A unique value that appears on two inputs of the same batch.
fn batch_unique_duplicate(
    spec: &ObjectSpec,
    all_values: &[&Map<String, Value>],
) -> Option<(String, String)> {
    for field in spec.fields.iter().filter(|f| f.unique) {
        let mut seen = HashSet::new();
        for values in all_values {
            if let Some(key) = values.get(&field.name).and_then(index_key) {
                if !seen.insert(key.clone()) {
                    return Some((field.name.clone(), key));
                }
            }
        }
    }
    None
}

fn duplicate_in_batch(shared: &Shared, property: &str, value: &str) -> Response {
    validation(
        shared,
        format!("Duplicate values found in batch input for unique property {property}: [{value}]"),
    )
}

fn trace_ids(inputs: &[Map<String, Value>]) -> Option<Vec<String>> {
    inputs
        .iter()
        .map(|i| {
            i.get("objectWriteTraceId")
                .and_then(text_of)
                .filter(|s| !s.is_empty())
        })
        .collect()
}

/// `POST batch/create`: 201, or 207 in multi-status mode when some inputs fail.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let object = match resolve_object(&shared, &object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let batch = match parse_batch(&shared, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match trace_ids(&batch.inputs).filter(|t| !t.is_empty()) {
        Some(traces) => create_multi_status(&shared, &object, &batch.inputs, &traces),
        None => create_all_or_nothing(&shared, &object, &batch.inputs),
    }
}

/// The `associations` of every input, checked before anything is written.
fn pending_associations(
    shared: &Shared,
    store: &Store,
    object: &str,
    inputs: &[Map<String, Value>],
) -> Result<Vec<Vec<PendingAssociation>>, Response> {
    inputs
        .iter()
        .map(|input| {
            associations::pending_from_input(shared, store, object, input.get("associations"))
        })
        .collect()
}

fn create_all_or_nothing(shared: &Shared, object: &str, inputs: &[Map<String, Value>]) -> Response {
    let mut store = shared.store.lock();
    let pending = match pending_associations(shared, &store, object, inputs) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(table) = store.table_mut(object) else {
        return validation(
            shared,
            format!("Unable to infer object type from: {object}"),
        );
    };
    let mut checked = Vec::with_capacity(inputs.len());
    let mut problems = Vec::new();
    for input in inputs {
        let (values, errs) = check_properties(&table.spec, &properties_of(input), true);
        problems.extend(errs);
        checked.push(values);
    }
    if !problems.is_empty() {
        return invalid_properties(shared, &problems);
    }
    if let Some(existing) = checked.iter().find_map(|v| unique_conflict(table, v, None)) {
        return conflict(shared, &table.spec, &existing);
    }
    if let Some((prop, value)) =
        batch_unique_duplicate(&table.spec, &checked.iter().collect::<Vec<_>>())
    {
        return duplicate_in_batch(shared, &prop, &value);
    }
    let now = Utc::now();
    let results = checked
        .into_iter()
        .zip(&pending)
        .map(|(values, pending)| {
            let id = new_id(shared);
            table.insert(id.clone(), values, now);
            associations::apply_pending(shared, &(table.spec.name.clone(), id.clone()), pending);
            table
                .get(&id)
                .map(|r| render_record(r, None))
                .unwrap_or(Value::Null)
        })
        .collect();
    batch_response(StatusCode::CREATED, results, Vec::new())
}

fn create_multi_status(
    shared: &Shared,
    object: &str,
    inputs: &[Map<String, Value>],
    traces: &[String],
) -> Response {
    let mut store = shared.store.lock();
    let pending = match pending_associations(shared, &store, object, inputs) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(table) = store.table_mut(object) else {
        return validation(
            shared,
            format!("Unable to infer object type from: {object}"),
        );
    };
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for ((input, trace), pending) in inputs.iter().zip(traces).zip(&pending) {
        let (values, problems) = check_properties(&table.spec, &properties_of(input), true);
        let context = json!({ "objectWriteTraceId": [trace] });
        if !problems.is_empty() {
            failures.push(json!({
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": details_message(&problems),
                "context": context,
                "errors": problems.iter().map(PropertyError::error_json).collect::<Vec<_>>(),
                "links": {},
            }));
            continue;
        }
        if let Some(existing) = unique_conflict(table, &values, None) {
            failures.push(json!({
                "status": "error",
                "category": "CONFLICT",
                "message": format!("{} already exists. Existing ID: {existing}", table.spec.label),
                "context": context,
                "errors": [],
                "links": {},
            }));
            continue;
        }
        let id = new_id(shared);
        table.insert(id.clone(), values, Utc::now());
        associations::apply_pending(shared, &(table.spec.name.clone(), id.clone()), pending);
        if let Some(record) = table.get(&id) {
            let mut rendered = render_record(record, None);
            if let Value::Object(map) = &mut rendered {
                map.insert(
                    "objectWriteTraceId".to_owned(),
                    Value::String(trace.clone()),
                );
            }
            results.push(rendered);
        }
    }
    let status = if failures.is_empty() {
        StatusCode::CREATED
    } else {
        StatusCode::MULTI_STATUS
    };
    batch_response(status, results, failures)
}

/// Finds the record an input addresses, by `hs_object_id` or a unique `idProperty`.
pub(super) fn find_by(table: &Table, id_property: Option<&str>, id: &str) -> Option<String> {
    match id_property {
        None | Some("hs_object_id") => table.get(id).map(|r| r.id.clone()),
        Some(prop) => table
            .lookup(prop, &Value::String(id.to_owned()))
            .first()
            .map(|r| r.id.clone()),
    }
}

/// Checks that `id_property` can address records: it exists and is unique.
pub(super) fn check_id_property(
    shared: &Shared,
    spec: &ObjectSpec,
    id_property: &str,
) -> Result<(), Response> {
    if id_property == "hs_object_id" {
        return Ok(());
    }
    match spec.fields.iter().find(|f| f.name == id_property) {
        None => Err(invalid_properties(
            shared,
            &[PropertyError::new(
                id_property,
                "PROPERTY_DOESNT_EXIST",
                format!("Property \"{id_property}\" does not exist"),
            )],
        )),
        Some(f) if !f.unique => Err(validation(
            shared,
            format!(
                "{id_property} is not a unique property of {} and cannot be used as idProperty",
                spec.name
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Ids used twice in one batch (case-insensitive), for the 400.
fn duplicate_ids(ids: &[String]) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in ids {
        *counts.entry(id.to_lowercase()).or_default() += 1;
    }
    let mut dups: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, _)| id)
        .collect();
    dups.sort();
    dups
}

fn duplicate_ids_error(shared: &Shared, dups: &[String]) -> Response {
    validation(
        shared,
        format!(
            "Duplicate IDs found in batch input: [{}]. IDs must be unique",
            dups.join(", ")
        ),
    )
}

fn not_found_error(spec: &ObjectSpec, ids: &[String]) -> Value {
    json!({
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": format!(
            "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
            spec.label.to_uppercase()
        ),
        "context": { "ids": ids },
        "errors": [],
        "links": {},
    })
}

/// Ids of every input, or the 400 for an input without one.
fn input_ids(shared: &Shared, inputs: &[Map<String, Value>]) -> Result<Vec<String>, Response> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            id_of(input).ok_or_else(|| validation(shared, format!("inputs[{i}].id is required")))
        })
        .collect()
}

/// `POST batch/upsert`: creates or updates by `idProperty`; results carry `new`.
pub(crate) async fn upsert(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let object = match resolve_object(&shared, &object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let batch = match parse_batch(&shared, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ids = match input_ids(&shared, &batch.inputs) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let dups = duplicate_ids(&ids);
    if !dups.is_empty() {
        return duplicate_ids_error(&shared, &dups);
    }
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return validation(
            &shared,
            format!("Unable to infer object type from: {object}"),
        );
    };
    let mut plan = Vec::with_capacity(batch.inputs.len());
    let mut problems = Vec::new();
    for (input, id) in batch.inputs.iter().zip(&ids) {
        let Some(id_property) = input.get("idProperty").and_then(Value::as_str) else {
            return validation(&shared, "idProperty is required for batch upsert");
        };
        if let Err(r) = check_id_property(&shared, &table.spec, id_property) {
            return r;
        }
        let target = find_by(table, Some(id_property), id);
        let mut props = properties_of(input);
        if id_property != "hs_object_id" {
            props.insert(id_property.to_owned(), Value::String(id.clone()));
        }
        let (values, errs) = check_properties(&table.spec, &props, target.is_none());
        problems.extend(errs);
        plan.push((target, values));
    }
    if !problems.is_empty() {
        return invalid_properties(&shared, &problems);
    }
    if let Some(existing) = plan
        .iter()
        .find_map(|(t, v)| unique_conflict(table, v, t.as_deref()))
    {
        return conflict(&shared, &table.spec, &existing);
    }
    let now = Utc::now();
    let results = plan
        .into_iter()
        .map(|(target, values)| {
            let (id, new) = match target {
                Some(id) => {
                    table.update(&id, values, now);
                    (id, false)
                }
                None => {
                    let id = new_id(&shared);
                    table.insert(id.clone(), values, now);
                    (id, true)
                }
            };
            let mut rendered = table
                .get(&id)
                .map(|r| render_record(r, None))
                .unwrap_or(Value::Null);
            if let Value::Object(map) = &mut rendered {
                map.insert("new".to_owned(), Value::Bool(new));
            }
            rendered
        })
        .collect();
    batch_response(StatusCode::OK, results, Vec::new())
}

/// `POST batch/update`: by id or `idProperty`; unknown ids reported in a 207.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let object = match resolve_object(&shared, &object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let batch = match parse_batch(&shared, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ids = match input_ids(&shared, &batch.inputs) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let dups = duplicate_ids(&ids);
    if !dups.is_empty() {
        return duplicate_ids_error(&shared, &dups);
    }
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return validation(
            &shared,
            format!("Unable to infer object type from: {object}"),
        );
    };
    let mut plan = Vec::new();
    let mut missing = Vec::new();
    let mut problems = Vec::new();
    for (input, id) in batch.inputs.iter().zip(&ids) {
        let id_property = input.get("idProperty").and_then(Value::as_str);
        if let Some(prop) = id_property {
            if let Err(r) = check_id_property(&shared, &table.spec, prop) {
                return r;
            }
        }
        let (values, errs) = check_properties(&table.spec, &properties_of(input), false);
        problems.extend(errs);
        match find_by(table, id_property, id) {
            Some(target) => plan.push((target, values)),
            None => missing.push(id.clone()),
        }
    }
    if !problems.is_empty() {
        return invalid_properties(&shared, &problems);
    }
    if let Some(existing) = plan
        .iter()
        .find_map(|(t, v)| unique_conflict(table, v, Some(t)))
    {
        return conflict(&shared, &table.spec, &existing);
    }
    let now = Utc::now();
    let results = plan
        .into_iter()
        .map(|(id, values)| {
            table.update(&id, values, now);
            table
                .get(&id)
                .map(|r| render_record(r, None))
                .unwrap_or(Value::Null)
        })
        .collect();
    partial_response(&table.spec, results, &missing)
}

fn partial_response(spec: &ObjectSpec, results: Vec<Value>, missing: &[String]) -> Response {
    if missing.is_empty() {
        batch_response(StatusCode::OK, results, Vec::new())
    } else {
        batch_response(
            StatusCode::MULTI_STATUS,
            results,
            vec![not_found_error(spec, missing)],
        )
    }
}

/// `POST batch/archive`: 204 whether or not the ids existed.
pub(crate) async fn archive(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let object = match resolve_object(&shared, &object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let batch = match parse_batch(&shared, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ids = match input_ids(&shared, &batch.inputs) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let mut store = shared.store.lock();
    if let Some(table) = store.table_mut(&object) {
        for id in &ids {
            super::objects::archive_record(&shared, table, id);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Properties returned when a read names none.
pub(super) fn default_properties(spec: &ObjectSpec) -> Vec<String> {
    let names: &[&str] = match spec.name.as_str() {
        "contacts" => &[
            "createdate",
            "email",
            "firstname",
            "hs_object_id",
            "lastmodifieddate",
            "lastname",
        ],
        "companies" => &[
            "createdate",
            "domain",
            "hs_lastmodifieddate",
            "hs_object_id",
            "name",
        ],
        "deals" => &[
            "amount",
            "closedate",
            "createdate",
            "dealname",
            "dealstage",
            "hs_lastmodifieddate",
            "hs_object_id",
            "pipeline",
        ],
        _ => &["createdate", "hs_lastmodifieddate", "hs_object_id"],
    };
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn requested_properties(spec: &ObjectSpec, requested: Option<&Value>) -> Vec<String> {
    let list: Vec<String> = requested
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        default_properties(spec)
    } else {
        list
    }
}

/// `POST batch/read`: by id or `idProperty`; unknown ids reported in a 207.
pub(crate) async fn read(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let object = match resolve_object(&shared, &object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let batch = match parse_batch(&shared, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ids = match input_ids(&shared, &batch.inputs) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let dups = duplicate_ids(&ids);
    if !dups.is_empty() {
        return duplicate_ids_error(&shared, &dups);
    }
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return validation(
            &shared,
            format!("Unable to infer object type from: {object}"),
        );
    };
    let id_property = batch.root.get("idProperty").and_then(Value::as_str);
    if let Some(prop) = id_property {
        if let Err(r) = check_id_property(&shared, &table.spec, prop) {
            return r;
        }
    }
    let properties = requested_properties(&table.spec, batch.root.get("properties"));
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for id in &ids {
        match find_by(table, id_property, id).and_then(|found| table.get(&found)) {
            Some(record) => results.push(render_record(record, Some(&properties))),
            None => missing.push(id.clone()),
        }
    }
    partial_response(&table.spec, results, &missing)
}
