//! sObject Collections: create, update, upsert by external id, delete; plus the
//! single-record upsert and retrieve. Well-formed requests answer 200 with one result
//! per record in input order; only malformed bodies and more than 200 records fail
//! the whole request (400).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::api_version_number;
use super::errors::{api_error, json_parser_error, not_found, RecordError};
use super::ops::{self, Match, Saved};
use crate::handle::Shared;
use crate::store::{index_key, Store};

/// Most records one collections request may carry.
pub const MAX_RECORDS: usize = 200;

/// A parsed collections body.
struct Batch {
    all_or_none: bool,
    records: Vec<Map<String, Value>>,
}

fn too_many_records() -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "EXCEEDED_ID_LIMIT",
        format!(
            "record limit reached. cannot submit more than {MAX_RECORDS} records into this call"
        ),
    )
}

/// Parses `{"allOrNone": bool?, "records": [{…}, …]}` or answers the whole-request 400.
fn parse_batch(body: &[u8]) -> Result<Batch, Response> {
    let value: Value = serde_json::from_slice(body).map_err(json_parser_error)?;
    let all_or_none = match value.get("allOrNone") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(json_parser_error(format!(
                "allOrNone must be a boolean, got {other}"
            )))
        }
    };
    let records = value
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| json_parser_error("the body must be an object with a \"records\" array"))?;
    if records.len() > MAX_RECORDS {
        return Err(too_many_records());
    }
    let records = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.as_object()
                .cloned()
                .ok_or_else(|| json_parser_error(format!("records[{i}] is not a JSON object")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch {
        all_or_none,
        records,
    })
}

/// `attributes.type` of a record, or INVALID_TYPE.
fn record_type(record: &Map<String, Value>) -> Result<String, RecordError> {
    record
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            RecordError::new("INVALID_TYPE", "Must send a concrete entity type.", vec![])
        })
}

fn unsupported_type(t: &str) -> RecordError {
    RecordError::new(
        "INVALID_TYPE",
        format!("sObject type '{t}' is not supported."),
        vec![],
    )
}

/// One result line: success (with `created` for upserts) or the record's error.
fn result_json(result: &Result<Saved, RecordError>, with_created: bool) -> Value {
    match result {
        Ok(saved) if with_created => {
            json!({ "id": saved.id, "success": true, "errors": [], "created": saved.created })
        }
        Ok(saved) => json!({ "id": saved.id, "success": true, "errors": [] }),
        Err(err) => json!({ "id": null, "success": false, "errors": [err.to_json()] }),
    }
}

/// Runs `work` over the store; with allOrNone, restores the store if any record
/// failed and turns every success into ALL_OR_NONE_OPERATION_ROLLED_BACK.
fn run_batch<F>(shared: &Shared, all_or_none: bool, work: F) -> Vec<Result<Saved, RecordError>>
where
    F: FnOnce(&mut Store) -> Vec<Result<Saved, RecordError>>,
{
    let mut store = shared.store.lock();
    let snapshot = all_or_none.then(|| store.clone());
    let results = work(&mut store);
    let any_failed = results.iter().any(Result::is_err);
    match snapshot {
        Some(snapshot) if any_failed => {
            *store = snapshot;
            results
                .into_iter()
                .map(|r| r.and(Err(RecordError::rolled_back())))
                .collect()
        }
        _ => results,
    }
}

fn respond(results: &[Result<Saved, RecordError>], with_created: bool) -> Response {
    let body: Vec<Value> = results
        .iter()
        .map(|r| result_json(r, with_created))
        .collect();
    (StatusCode::OK, Json(Value::Array(body))).into_response()
}

/// `PATCH /composite/sobjects/{object}/{field}`: upsert by external id.
pub(crate) async fn upsert(
    State(shared): State<Arc<Shared>>,
    Path((_version, object, field)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let batch = match parse_batch(&body) {
        Ok(batch) => batch,
        Err(response) => return response,
    };
    let ext_field = {
        let store = shared.store.lock();
        let Some(table) = store.table(&object) else {
            return not_found();
        };
        match upsert_key(table, &field) {
            Ok(name) => name,
            Err(response) => return response,
        }
    };
    let duplicates = duplicate_external_ids(&batch.records, &ext_field);
    let results = run_batch(&shared, batch.all_or_none, |store| {
        let Some(table) = store.table_mut(&object) else {
            return Vec::new();
        };
        let object_name = table.spec.name.clone();
        batch
            .records
            .iter()
            .zip(duplicates)
            .map(|(record, duplicate)| {
                let t = record_type(record)?;
                if !t.eq_ignore_ascii_case(&object_name) {
                    return Err(unsupported_type_for_uri(&t, &object_name));
                }
                if let Some(err) = duplicate {
                    return Err(err);
                }
                ops::upsert(&shared, table, &ext_field, record)
            })
            .collect()
    });
    respond(&results, true)
}

fn unsupported_type_for_uri(t: &str, object: &str) -> RecordError {
    RecordError::new(
        "INVALID_TYPE",
        format!("Record type {t} does not match the sObject type {object} in the request URI"),
        vec![],
    )
}

/// The canonical external id field name for an upsert URI, or the error response:
/// 404 if the field does not exist, 400 INVALID_FIELD if it is not an external id.
fn upsert_key(table: &crate::store::Table, field: &str) -> Result<String, Response> {
    let spec = table.spec.find_field(field).ok_or_else(not_found)?;
    if !spec.external_id {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            format!(
                "Field {} is not an external id field on {}; upsert only accepts external ids",
                spec.name, table.spec.name
            ),
        ));
    }
    Ok(spec.name.clone())
}

/// For each record, the DUPLICATE_EXTERNAL_ID error if its external id value occurs
/// more than once in the request (every occurrence fails).
fn duplicate_external_ids(
    records: &[Map<String, Value>],
    ext_field: &str,
) -> Vec<Option<RecordError>> {
    let values: Vec<Option<Value>> = records
        .iter()
        .map(|r| ops::external_id_value(r, ext_field).ok())
        .collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for key in values.iter().flatten().filter_map(index_key) {
        *counts.entry(key).or_default() += 1;
    }
    values
        .iter()
        .map(|v| {
            let v = v.as_ref()?;
            let key = index_key(v)?;
            (counts.get(&key).copied().unwrap_or(0) > 1)
                .then(|| ops::duplicate_in_request(ext_field, v))
        })
        .collect()
}

/// `POST /composite/sobjects`: create records of any declared types.
pub(crate) async fn create(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let batch = match parse_batch(&body) {
        Ok(batch) => batch,
        Err(response) => return response,
    };
    let results = run_batch(&shared, batch.all_or_none, |store| {
        batch
            .records
            .iter()
            .map(|record| {
                let t = record_type(record)?;
                let table = store.table_mut(&t).ok_or_else(|| unsupported_type(&t))?;
                ops::create(&shared, table, record)
            })
            .collect()
    });
    respond(&results, false)
}

/// `PATCH /composite/sobjects`: update records by their `id`.
pub(crate) async fn update(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let batch = match parse_batch(&body) {
        Ok(batch) => batch,
        Err(response) => return response,
    };
    let results = run_batch(&shared, batch.all_or_none, |store| {
        batch
            .records
            .iter()
            .map(|record| {
                let t = record_type(record)?;
                let table = store.table_mut(&t).ok_or_else(|| unsupported_type(&t))?;
                let id = record
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("id"))
                    .and_then(|(_, v)| v.as_str())
                    .ok_or_else(|| {
                        RecordError::new(
                            "MISSING_ARGUMENT",
                            "Id not specified in an update call",
                            vec![],
                        )
                    })?;
                ops::update(table, id, record)
            })
            .collect()
    });
    respond(&results, false)
}

/// `DELETE /composite/sobjects?ids=…&allOrNone=…`.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(ids) = query.get("ids").filter(|s| !s.is_empty()) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "MISSING_ARGUMENT",
            "ids parameter is required",
        );
    };
    let ids: Vec<&str> = ids.split(',').map(str::trim).collect();
    if ids.len() > MAX_RECORDS {
        return too_many_records();
    }
    let all_or_none = query
        .get("allOrNone")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let results = run_batch(&shared, all_or_none, |store| {
        ids.iter()
            .map(|id| ops::delete(store, id).map(|id| Saved { id, created: false }))
            .collect()
    });
    respond(&results, false)
}

/// `PATCH /sobjects/{object}/{field}/{value}`: 201 created, 200 updated (204 before
/// API 46.0), 300 with the matching record URLs when the value matches several;
/// with `?updateOnly=true` a value matching nothing is a 404 instead of a create.
pub(crate) async fn upsert_one(
    State(shared): State<Arc<Shared>>,
    Path((version, object, field, value)): Path<(String, String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let update_only = params
        .get("updateOnly")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut input: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return json_parser_error("the body must be a JSON object"),
        Err(err) => return json_parser_error(err),
    };
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return not_found();
    };
    let ext_field = match upsert_key(table, &field) {
        Ok(name) => name,
        Err(response) => return response,
    };
    input.retain(|k, _| !k.eq_ignore_ascii_case(&ext_field));
    input.insert(ext_field.clone(), Value::String(value.clone()));
    let matched = ops::match_external_id(table, &ext_field, &Value::String(value));
    let result = match matched {
        Match::Many(ids) => return multiple_choices(&version, &table.spec.name, &ids),
        Match::None if update_only => return not_found(),
        Match::None => ops::create(&shared, table, &input),
        Match::One(id) => ops::update(table, &id, &input),
    };
    match result {
        Ok(saved) if saved.created => {
            (StatusCode::CREATED, Json(result_json(&Ok(saved), true))).into_response()
        }
        Ok(_) if api_version_number(&version) < 46.0 => StatusCode::NO_CONTENT.into_response(),
        Ok(saved) => (StatusCode::OK, Json(result_json(&Ok(saved), true))).into_response(),
        Err(err) => {
            let body = json!([{ "message": err.message, "errorCode": err.status_code, "fields": err.fields }]);
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
    }
}

pub(crate) fn multiple_choices(version: &str, object: &str, ids: &[String]) -> Response {
    let urls: Vec<String> = ids
        .iter()
        .map(|id| format!("/services/data/{version}/sobjects/{object}/{id}"))
        .collect();
    (StatusCode::MULTIPLE_CHOICES, Json(urls)).into_response()
}
