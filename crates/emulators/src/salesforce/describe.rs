//! Metadata: the versions list, `GET /sobjects` (describeGlobal) and
//! `GET /sobjects/{object}/describe`, so connectors can check mappings before writing.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::errors::not_found;
use super::SUPPORTED_VERSIONS;
use crate::handle::Shared;
use crate::schema::{FieldSpec, FieldType, ObjectSpec};

/// `GET /services/data`: the API versions the emulator answers to.
pub(crate) async fn versions() -> Response {
    let list: Vec<Value> = SUPPORTED_VERSIONS
        .iter()
        .map(
            |v| json!({ "label": "Emulator", "url": format!("/services/data/v{v}"), "version": v }),
        )
        .collect();
    (StatusCode::OK, Json(Value::Array(list))).into_response()
}

fn object_urls(version: &str, name: &str) -> Value {
    json!({
        "sobject": format!("/services/data/{version}/sobjects/{name}"),
        "describe": format!("/services/data/{version}/sobjects/{name}/describe"),
        "rowTemplate": format!("/services/data/{version}/sobjects/{name}/{{ID}}"),
    })
}

fn object_summary(version: &str, spec: &ObjectSpec) -> Value {
    json!({
        "name": spec.name,
        "label": spec.label,
        "labelPlural": format!("{}s", spec.label),
        "custom": spec.custom,
        "keyPrefix": spec.key_prefix,
        "createable": true,
        "updateable": true,
        "deletable": true,
        "queryable": true,
        "urls": object_urls(version, &spec.name),
    })
}

/// `GET /sobjects`.
pub(crate) async fn global(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
) -> Response {
    let specs = shared.store.lock().specs();
    let sobjects: Vec<Value> = specs.iter().map(|s| object_summary(&version, s)).collect();
    let body = json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects });
    (StatusCode::OK, Json(body)).into_response()
}

/// Field metadata in describe's shape.
fn field_json(field: &FieldSpec) -> Value {
    let is_bool = field.field_type == FieldType::Boolean;
    let is_id = field.field_type == FieldType::Id;
    json!({
        "name": field.name,
        "label": field.label,
        "type": field.field_type.salesforce_name(),
        "length": field.max_length.unwrap_or(0),
        "nillable": !field.required && !is_bool && !is_id,
        "createable": !field.read_only,
        "updateable": !field.read_only,
        "externalId": field.external_id,
        "idLookup": field.external_id || is_id,
        "unique": field.unique,
        "custom": field.name.ends_with("__c"),
        "defaultedOnCreate": is_bool || field.read_only,
        "picklistValues": field.options.iter().map(|o| json!({"value": o, "label": o, "active": true})).collect::<Vec<_>>(),
        "restrictedPicklist": !field.options.is_empty(),
    })
}

/// `GET /sobjects/{object}/describe`.
pub(crate) async fn describe(
    State(shared): State<Arc<Shared>>,
    Path((version, object)): Path<(String, String)>,
) -> Response {
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return not_found();
    };
    let mut body = object_summary(&version, &table.spec);
    if let Value::Object(map) = &mut body {
        let fields: Vec<Value> = table.spec.fields.iter().map(field_json).collect();
        map.insert("fields".to_owned(), Value::Array(fields));
    }
    (StatusCode::OK, Json(body)).into_response()
}
