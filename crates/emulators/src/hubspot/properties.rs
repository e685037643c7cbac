//! `GET|POST /crm/v3/properties/{type}` and `GET|PATCH|DELETE
//! /crm/v3/properties/{type}/{name}`: property discovery, creation (so offline
//! users can add unique properties for `idProperty` upserts without the
//! handle), update, and archive (`?archived=true` lists archived ones).
//! HubSpot-defined properties cannot be archived (400).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::errors::{error, invalid_json, validation};
use super::objects::Params;
use super::state::PropertyText;
use super::timestamp;
use crate::handle::Shared;
use crate::schema::{FieldSpec, FieldType, ObjectSpec};

/// Whether HubSpot itself defines the property (not archivable).
fn hubspot_defined(spec: &ObjectSpec, text: &PropertyText) -> bool {
    !spec.custom && !text.user_defined
}

/// A property in HubSpot's shape.
fn property_json(spec: &ObjectSpec, field: &FieldSpec, text: &PropertyText) -> Value {
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
        "description": text.description.clone().unwrap_or_default(),
        "groupName": text.group_name.clone().unwrap_or_else(|| format!("{}information", spec.label.to_lowercase())),
        "options": options,
        "displayOrder": -1,
        "calculated": false,
        "externalOptions": false,
        "hasUniqueValue": field.unique,
        "hidden": false,
        "hubspotDefined": hubspot_defined(spec, text),
        "formField": !field.read_only,
        "modificationMetadata": {
            "archivable": !field.read_only && !hubspot_defined(spec, text),
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

fn property_not_found(shared: &Shared, object: &str, name: &str) -> Response {
    error(
        shared,
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        format!("Unable to find property {name} on object type {object}"),
        Map::new(),
    )
}

/// The API-set metadata of a property (default when none was set).
fn text_of_property(shared: &Shared, object: &str, name: &str) -> PropertyText {
    shared
        .hubspot
        .property_text
        .lock()
        .get(&(object.to_owned(), name.to_owned()))
        .cloned()
        .unwrap_or_default()
}

/// `GET /crm/v3/properties/{type}` (`?archived=true`: the archived ones).
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params(params);
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return unknown_object(&shared, &object);
    };
    let spec = &table.spec;
    let results: Vec<Value> = if params.flag("archived") {
        let archived = shared.hubspot.archived_properties.lock();
        archived
            .get(&spec.name)
            .into_iter()
            .flatten()
            .map(|(field, at)| {
                let mut json = property_json(
                    spec,
                    field,
                    &text_of_property(&shared, &spec.name, &field.name),
                );
                json["archived"] = Value::Bool(true);
                json["archivedAt"] = Value::String(timestamp(*at));
                json
            })
            .collect()
    } else {
        spec.fields
            .iter()
            .map(|f| property_json(spec, f, &text_of_property(&shared, &spec.name, &f.name)))
            .collect()
    };
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
        Some(field) => {
            let text = text_of_property(&shared, &table.spec.name, &name);
            (
                StatusCode::OK,
                Json(property_json(&table.spec, field, &text)),
            )
                .into_response()
        }
        None => property_not_found(&shared, &table.spec.name, &name),
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
    let text = PropertyText {
        user_defined: true,
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        group_name: body
            .get("groupName")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let rendered = property_json(&table.spec, &field, &text);
    shared
        .hubspot
        .property_text
        .lock()
        .insert((table.spec.name.clone(), field.name.clone()), text);
    table.spec.fields.push(field);
    table.rebuild_indexes();
    (StatusCode::CREATED, Json(rendered)).into_response()
}

/// Applies a PropertyUpdate body to `field` and its metadata, or says what is wrong.
fn apply_update(
    field: &mut FieldSpec,
    text: &mut PropertyText,
    body: &Value,
) -> Result<(), String> {
    let Value::Object(update) = body else {
        return Err("the body must be a JSON object".to_owned());
    };
    let string = |key: &str| {
        update
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(kind) = string("type") {
        let field_type = string("fieldType").unwrap_or("text");
        field.field_type = field_type_of(kind, field_type).ok_or_else(|| {
            format!("type {kind} is not one of string, number, bool, date, datetime, enumeration")
        })?;
    }
    if let Some(label) = string("label") {
        field.label = label.to_owned();
    }
    if let Some(description) = update.get("description").and_then(Value::as_str) {
        text.description = Some(description.to_owned());
    }
    if let Some(group) = string("groupName") {
        text.group_name = Some(group.to_owned());
    }
    if let Some(options) = update.get("options").and_then(Value::as_array) {
        field.options = options
            .iter()
            .filter_map(|o| o.get("value").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
    }
    Ok(())
}

/// `PATCH /crm/v3/properties/{type}/{name}`: 200 with the updated property.
/// Read-only (system) properties cannot be changed.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Path((object, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid_json(&shared, &e),
    };
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return unknown_object(&shared, &object);
    };
    let object = table.spec.name.clone();
    let mut text = text_of_property(&shared, &object, &name);
    let Some(field) = table.spec.find_field_mut(&name).filter(|f| f.name == name) else {
        return property_not_found(&shared, &object, &name);
    };
    if field.read_only {
        return validation(
            &shared,
            format!("Property {name} is read-only and its definition cannot be changed."),
        );
    }
    if let Err(why) = apply_update(field, &mut text, &body) {
        return validation(&shared, why);
    }
    let field = field.clone();
    table.rebuild_indexes();
    let rendered = property_json(&table.spec, &field, &text);
    shared
        .hubspot
        .property_text
        .lock()
        .insert((object, name), text);
    (StatusCode::OK, Json(rendered)).into_response()
}

/// `DELETE /crm/v3/properties/{type}/{name}`: archives a property the account
/// created (204); HubSpot-defined ones are refused with 400.
pub(crate) async fn archive(
    State(shared): State<Arc<Shared>>,
    Path((object, name)): Path<(String, String)>,
) -> Response {
    let mut store = shared.store.lock();
    let Some(table) = store.table_mut(&object) else {
        return unknown_object(&shared, &object);
    };
    let object = table.spec.name.clone();
    let Some(index) = table.spec.fields.iter().position(|f| f.name == name) else {
        return property_not_found(&shared, &object, &name);
    };
    let text = text_of_property(&shared, &object, &name);
    if table.spec.fields[index].read_only || hubspot_defined(&table.spec, &text) {
        return validation(
            &shared,
            format!("Property {name} is defined by HubSpot and cannot be archived."),
        );
    }
    let field = table.spec.fields.remove(index);
    table.rebuild_indexes();
    shared
        .hubspot
        .archived_properties
        .lock()
        .entry(object)
        .or_default()
        .push((field, Utc::now()));
    StatusCode::NO_CONTENT.into_response()
}
