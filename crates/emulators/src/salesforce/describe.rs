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

pub(crate) fn object_summary(version: &str, spec: &ObjectSpec) -> Value {
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
        "soapType": soap_type(field.field_type),
        "filterable": filterable(field),
        "sortable": filterable(field),
        "precision": digits(field).0,
        "scale": digits(field).1,
        "referenceTo": field.reference_to,
        "relationshipName": relationship_name(field),
    })
}

/// The field's type in the SOAP API's XML schema.
fn soap_type(field_type: FieldType) -> &'static str {
    use FieldType as T;
    match field_type {
        T::Id | T::Reference => "tns:ID",
        T::Boolean => "xsd:boolean",
        T::Int => "xsd:int",
        T::Double | T::Currency | T::Percent => "xsd:double",
        T::Date => "xsd:date",
        T::DateTime => "xsd:dateTime",
        T::String | T::TextArea | T::Email | T::Phone | T::Url | T::Picklist => "xsd:string",
    }
}

/// Long text areas (over 255 characters) cannot appear in WHERE or ORDER BY.
fn filterable(field: &FieldSpec) -> bool {
    !(field.field_type == FieldType::TextArea && field.max_length.is_some_and(|n| n > 255))
}

/// `(precision, scale)`: declared, else Salesforce's defaults for the type
/// (currency 18,2; percent and double 18,0); 0,0 for non-numbers.
fn digits(field: &FieldSpec) -> (u32, u32) {
    let default = match field.field_type {
        FieldType::Currency => (18, 2),
        FieldType::Double | FieldType::Percent => (18, 0),
        _ => (0, 0),
    };
    (
        field.precision.unwrap_or(default.0),
        field.scale.unwrap_or(default.1),
    )
}

/// A lookup's relationship name: `AccountId` -> `Account`, `Owner__c` ->
/// `Owner__r`; null for other fields.
fn relationship_name(field: &FieldSpec) -> Value {
    if field.field_type != FieldType::Reference {
        return Value::Null;
    }
    let name = &field.name;
    let relationship = if let Some(base) = name.strip_suffix("__c") {
        format!("{base}__r")
    } else if let Some(base) = name.strip_suffix("Id").filter(|b| !b.is_empty()) {
        base.to_owned()
    } else {
        name.clone()
    };
    Value::String(relationship)
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

/// Bulk API batches allowed per rolling 24 hours (saas-apis.md §1.7).
const DAILY_BULK_BATCHES: u64 = 15_000;

/// `GET /limits`: the org's allocations. `DailyApiRequests` is the same
/// count as the `Sforce-Limit-Info` header of this very response; each Bulk
/// 2.0 ingest job uses one `DailyBulkApiBatches`.
pub(crate) async fn limits(State(shared): State<Arc<Shared>>) -> Response {
    let (max, used) = {
        let limiter = shared.limiter.lock();
        (limiter.daily_limit(), limiter.daily_used())
    };
    let jobs = shared.salesforce.jobs.lock().len() as u64;
    let allocation =
        |max: u64, used: u64| json!({ "Max": max, "Remaining": max.saturating_sub(used) });
    let body = json!({
        "DailyApiRequests": allocation(max, used),
        "DailyBulkApiBatches": allocation(DAILY_BULK_BATCHES, jobs),
        "DailyBulkV2QueryJobs": allocation(10_000, 0),
        "DailyBulkV2QueryFileStorageMB": allocation(976_562, 0),
    });
    (StatusCode::OK, Json(body)).into_response()
}
