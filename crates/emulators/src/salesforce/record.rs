//! Single-record REST under `/sobjects/{object}`: create, get, update and
//! delete by record id, and get/delete by external id (the upsert by external
//! id is [`super::collections::upsert_one`]).
//!
//! Writes validate exactly as collections do ([`super::ops`]); a refused
//! record answers 400 with Salesforce's top-level error array
//! (`[{message, errorCode, fields}]`) instead of a per-record result.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::describe::object_summary;
use super::errors::{api_error, json_parser_error, not_found, RecordError};
use super::ops::{self, Match};
use super::{ids, render_record};
use crate::handle::Shared;
use crate::schema::ObjectSpec;
use crate::store::{Record, Table};

/// A refused write as a top-level error: 404 for a record that is gone, 400
/// otherwise.
fn record_error(err: RecordError) -> Response {
    let status = match err.status_code {
        "ENTITY_IS_DELETED" | "NOT_FOUND" => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    let body =
        json!([{ "message": err.message, "errorCode": err.status_code, "fields": err.fields }]);
    (status, Json(body)).into_response()
}

/// The JSON object body of a create or update.
fn object_body(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(json_parser_error("the body must be a JSON object")),
        Err(err) => Err(json_parser_error(err)),
    }
}

/// `GET /sobjects/{object}`: the object's summary and recently viewed records
/// (none: the emulator has no UI to view them in).
pub(crate) async fn basic_info(
    State(shared): State<Arc<Shared>>,
    Path((version, object)): Path<(String, String)>,
) -> Response {
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return not_found();
    };
    let body = json!({
        "objectDescribe": object_summary(&version, &table.spec),
        "recentItems": [],
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// `POST /sobjects/{object}`: 201 `{id, success, errors}`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path((_version, object)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let input = match object_body(&body) {
        Ok(input) => input,
        Err(response) => return response,
    };
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return not_found();
    };
    match ops::create(&shared, table, &input) {
        Ok(saved) => (
            StatusCode::CREATED,
            Json(json!({ "id": saved.id, "success": true, "errors": [] })),
        )
            .into_response(),
        Err(err) => record_error(err),
    }
}

/// The stored record `raw_id` of `table`, or the 404 Salesforce gives: a text
/// that cannot be an id is read as an external id field name.
fn find_by_id<'t>(table: &'t Table, raw_id: &str) -> Result<&'t Record, Response> {
    let Some(id) = ids::normalize(raw_id) else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {raw_id}"),
        ));
    };
    if let Some(record) = table.get(&id) {
        return Ok(record);
    }
    if table.was_deleted(&id) {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "ENTITY_IS_DELETED",
            "entity is deleted",
        ));
    }
    Err(not_found())
}

/// A record with `attributes`, limited to `fields` when the caller asked for
/// some (`?fields=Name,Email`); an unknown field there is a 400 INVALID_FIELD.
fn record_json(
    spec: &ObjectSpec,
    version: &str,
    record: &Record,
    fields: Option<&str>,
) -> Result<Value, Response> {
    let full = render_record(spec, record);
    let mut out = Map::new();
    out.insert(
        "attributes".to_owned(),
        json!({ "type": spec.name, "url": format!("/services/data/{version}/sobjects/{}/{}", spec.name, record.id) }),
    );
    let names: Vec<String> = match fields.filter(|f| !f.trim().is_empty()) {
        Some(list) => list
            .split(',')
            .map(|name| {
                spec.find_field(name.trim())
                    .map(|f| f.name.clone())
                    .ok_or_else(|| {
                        api_error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_FIELD",
                            format!(
                                "No such column '{}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                                name.trim(),
                                spec.name
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        None => spec.fields.iter().map(|f| f.name.clone()).collect(),
    };
    for name in names {
        let value = full.get(&name).cloned().unwrap_or(Value::Null);
        out.insert(name, value);
    }
    Ok(Value::Object(out))
}

/// `GET /sobjects/{object}/{id}[?fields=…]`: every field (null when unset).
pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    Path((version, object, id)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return not_found();
    };
    let result = find_by_id(table, &id).and_then(|record| {
        record_json(
            &table.spec,
            &version,
            record,
            params.get("fields").map(String::as_str),
        )
    });
    match result {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(response) => response,
    }
}

/// `PATCH /sobjects/{object}/{id}`: 204 on success.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Path((_version, object, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let input = match object_body(&body) {
        Ok(input) => input,
        Err(response) => return response,
    };
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return not_found();
    };
    let record_id = match find_by_id(table, &id) {
        Ok(record) => record.id.clone(),
        Err(response) => return response,
    };
    match ops::update(table, &record_id, &input) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => record_error(err),
    }
}

/// `DELETE /sobjects/{object}/{id}`: 204, 404 if unknown or already deleted.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((_version, object, id)): Path<(String, String, String)>,
) -> Response {
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return not_found();
    };
    let record_id = match find_by_id(table, &id) {
        Ok(record) => record.id.clone(),
        Err(response) => return response,
    };
    table.remove(&record_id);
    StatusCode::NO_CONTENT.into_response()
}

/// The single record whose external id `field` holds `value`, or the response:
/// 404 when the field is not an external id or nothing matches, 300 with the
/// matching records' URLs when several do.
fn find_by_external_id(
    table: &Table,
    version: &str,
    field: &str,
    value: &str,
) -> Result<String, Response> {
    let Some(spec) = table.spec.find_field(field).filter(|f| f.external_id) else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {field}"),
        ));
    };
    match ops::match_external_id(table, &spec.name, &Value::String(value.to_owned())) {
        Match::One(id) => Ok(id),
        Match::None => Err(not_found()),
        Match::Many(ids) => Err(super::collections::multiple_choices(
            version,
            &table.spec.name,
            &ids,
        )),
    }
}

/// `GET /sobjects/{object}/{extField}/{value}[?fields=…]`.
pub(crate) async fn retrieve_by_external_id(
    State(shared): State<Arc<Shared>>,
    Path((version, object, field, value)): Path<(String, String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return not_found();
    };
    let result = find_by_external_id(table, &version, &field, &value).and_then(|id| {
        let record = table.get(&id).ok_or_else(not_found)?;
        record_json(
            &table.spec,
            &version,
            record,
            params.get("fields").map(String::as_str),
        )
    });
    match result {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(response) => response,
    }
}

/// `DELETE /sobjects/{object}/{extField}/{value}`: 204, 404, or 300 when the
/// value matches several records (nothing deleted).
pub(crate) async fn delete_by_external_id(
    State(shared): State<Arc<Shared>>,
    Path((version, object, field, value)): Path<(String, String, String, String)>,
) -> Response {
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return not_found();
    };
    match find_by_external_id(table, &version, &field, &value) {
        Ok(id) => {
            table.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(response) => response,
    }
}
