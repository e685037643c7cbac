//! `GET|POST /crm/v3/properties/{type}` and `GET /crm/v3/properties/{type}/{name}`:
//! property discovery (and creation, so offline users can add unique properties
//! for `idProperty` upserts without the handle).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::errors::{error, invalid_json, validation};
use super::timestamp;
use crate::handle::Shared;
use crate::schema::{FieldSpec, FieldType, ObjectSpec};

/// A property in HubSpot's shape.
fn property_json(spec: &ObjectSpec, field: &FieldSpec) -> Value {
    let (kind, field_type) = field.field_type.hubspot_names();
    let options: Vec<Value> = field
        .options
        .iter()
        .enumerate()
        .map(|(i, o)| json!({ "label": o, "value": o, "displayOrder": i, "hidden": false }))
        .collect();
    let now = timestamp(Utc::now());
    json!({
        "name": field.name,
        "label": field.label,
        "type": kind,
        "fieldType": field_type,
        "description": "",
        "groupName": format!("{}information", spec.label.to_lowercase()),
        "options": options,
        "displayOrder": -1,
        "calculated": false,
        "externalOptions": false,
        "hasUniqueValue": field.unique,
        "hidden": false,
        "hubspotDefined": !spec.custom && !field.read_only,
        "formField": !field.read_only,
        "modificationMetadata": {
            "archivable": !field.read_only,
            "readOnlyDefinition": !spec.custom,
            "readOnlyValue": field.read_only,
        },
        "createdAt": now,
        "updatedAt": now,
        "archived": false,
    })
}

fn unknown_object(shared: &Shared, object: &str) -> Response {
    validation(
        shared,
        format!("Unable to infer object type from: {object}"),
    )
}

/// `GET /crm/v3/properties/{type}`.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
) -> Response {
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return unknown_object(&shared, &object);
    };
    let results: Vec<Value> = table
        .spec
        .fields
        .iter()
        .map(|f| property_json(&table.spec, f))
        .collect();
    (StatusCode::OK, Json(json!({ "results": results }))).into_response()
}

/// `GET /crm/v3/properties/{type}/{name}`.
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    Path((object, name)): Path<(String, String)>,
) -> Response {
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return unknown_object(&shared, &object);
    };
    match table.spec.fields.iter().find(|f| f.name == name) {
        Some(field) => (StatusCode::OK, Json(property_json(&table.spec, field))).into_response(),
        None => error(
            &shared,
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            format!(
                "Unable to find property {name} on object type {}",
                table.spec.name
            ),
            Map::new(),
        ),
    }
}

/// Maps HubSpot `(type, fieldType)` to the emulator's field type.
fn field_type_of(kind: &str, field_type: &str) -> Option<FieldType> {
    Some(match (kind, field_type) {
        ("string", "textarea") => FieldType::TextArea,
        ("string", "phonenumber") => FieldType::Phone,
        ("string", _) => FieldType::String,
        ("number", _) => FieldType::Double,
        ("bool", _) => FieldType::Boolean,
        ("date", _) => FieldType::Date,
        ("datetime", _) => FieldType::DateTime,
        ("enumeration", "booleancheckbox") => FieldType::Boolean,
        ("enumeration", _) => FieldType::Picklist,
        _ => return None,
    })
}

/// Builds a field from a create-property body, or says what is wrong with it.
fn field_from_body(body: &Value) -> Result<FieldSpec, String> {
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = text("name").ok_or("name is required")?;
    let kind = text("type").ok_or("type is required")?;
    let field_type = text("fieldType").unwrap_or("text");
    let ty = field_type_of(kind, field_type).ok_or_else(|| {
        format!("type {kind} is not one of string, number, bool, date, datetime, enumeration")
    })?;
    let mut field = FieldSpec::new(name, ty).label(text("label").unwrap_or(name));
    field.max_length = None;
    field.unique = body
        .get("hasUniqueValue")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(options) = body.get("options").and_then(Value::as_array) {
        field.options = options
            .iter()
            .filter_map(|o| o.get("value").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
    }
    Ok(field)
}

/// `POST /crm/v3/properties/{type}`: 201 with the property; 409 if it exists.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid_json(&shared, &e),
    };
    let field = match field_from_body(&body) {
        Ok(f) => f,
        Err(why) => return validation(&shared, why),
    };
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return unknown_object(&shared, &object);
    };
    if table.spec.fields.iter().any(|f| f.name == field.name) {
        return error(
            &shared,
            StatusCode::CONFLICT,
            "OBJECT_ALREADY_EXISTS",
            format!("Property named '{}' already exists.", field.name),
            Map::new(),
        );
    }
    let rendered = property_json(&table.spec, &field);
    table.spec.fields.push(field);
    table.rebuild_indexes();
    (StatusCode::CREATED, Json(rendered)).into_response()
}
