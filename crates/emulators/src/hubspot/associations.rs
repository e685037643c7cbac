//! Associations between records: the v4 endpoints
//! - `PUT /crm/v4/objects/{from}/{id}/associations/default/{to}/{toId}` (default type),
//! - `PUT /crm/v4/objects/{from}/{id}/associations/{to}/{toId}` (types in the body),
//! - `DELETE /crm/v4/objects/{from}/{id}/associations/{to}/{toId}`,
//! - `GET /crm/v4/objects/{from}/{id}/associations/{to}` (paged by target id),
//! - `POST /crm/v4/associations/{from}/{to}/batch/{associate/default|create|read|archive}`,
//!
//! plus the v3 forms: `associations` on a create body and `?associations=` on reads.
//!
//! HubSpot-defined type ids are HubSpot's own (contact→company 279, company→contact
//! 280, contact→deal 4, deal→contact 3, company→deal 342, deal→company 341, and the
//! primary company types 1/2 and 6/5). Pairs without a HubSpot-defined type (custom
//! objects) can only be associated with USER_DEFINED types, whose reverse carries the
//! same id.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::batch::{resolve_object, MAX_BATCH_INPUTS};
use super::errors::{error, invalid_json, validation};
use super::objects::{numeric_id, page_after, Params};
use super::state::{AssociationType, End};
use super::timestamp;
use crate::handle::Shared;
use crate::store::Store;

/// Targets one v4 list page holds when `limit` is not given (and at most).
const MAX_ASSOCIATION_PAGE: usize = 500;

/// A HubSpot-defined association between two standard objects.
struct KnownPair {
    from: &'static str,
    to: &'static str,
    /// The unlabeled (default) type, forward and reverse.
    default: (u32, u32),
    /// The "Primary" labelled type, forward and reverse, where HubSpot has one.
    primary: Option<(u32, u32)>,
}

const KNOWN_PAIRS: [KnownPair; 3] = [
    KnownPair {
        from: "contacts",
        to: "companies",
        default: (279, 280),
        primary: Some((1, 2)),
    },
    KnownPair {
        from: "contacts",
        to: "deals",
        default: (4, 3),
        primary: None,
    },
    KnownPair {
        from: "deals",
        to: "companies",
        default: (341, 342),
        primary: Some((5, 6)),
    },
];

fn hubspot_defined(type_id: u32) -> AssociationType {
    AssociationType {
        user_defined: false,
        type_id,
    }
}

/// Every HubSpot-defined `(forward, reverse, is_primary)` type from `from` to `to`.
fn known_types(from: &str, to: &str) -> Vec<(u32, u32, bool)> {
    let mut types = Vec::new();
    for pair in &KNOWN_PAIRS {
        let flip = |(a, b): (u32, u32)| (b, a);
        let oriented = if (pair.from, pair.to) == (from, to) {
            Some((pair.default, pair.primary))
        } else if (pair.to, pair.from) == (from, to) {
            Some((flip(pair.default), pair.primary.map(flip)))
        } else {
            None
        };
        if let Some((default, primary)) = oriented {
            types.push((default.0, default.1, false));
            if let Some(p) = primary {
                types.push((p.0, p.1, true));
            }
        }
    }
    types
}

/// The default (unlabeled) type from `from` to `to` and its reverse.
fn default_type(from: &str, to: &str) -> Option<(AssociationType, AssociationType)> {
    known_types(from, to)
        .into_iter()
        .find(|(_, _, primary)| !primary)
        .map(|(f, r, _)| (hubspot_defined(f), hubspot_defined(r)))
}

/// The reverse of `kind` from `from` to `to`, if that type exists for the pair.
fn reverse_of(from: &str, to: &str, kind: AssociationType) -> Option<AssociationType> {
    if kind.user_defined {
        return Some(kind);
    }
    known_types(from, to)
        .into_iter()
        .find(|(f, _, _)| *f == kind.type_id)
        .map(|(_, r, _)| hubspot_defined(r))
}

/// The label HubSpot shows for a type (`Primary`), if any.
fn label_of(from: &str, to: &str, kind: AssociationType) -> Option<&'static str> {
    known_types(from, to)
        .into_iter()
        .any(|(f, _, primary)| primary && !kind.user_defined && f == kind.type_id)
        .then_some("Primary")
}

/// The object a HubSpot-defined type id leads to from `from`.
fn target_of_type(store: &Store, from: &str, type_id: u32) -> Option<String> {
    store
        .specs()
        .into_iter()
        .map(|s| s.name)
        .find(|to| known_types(from, to).iter().any(|(f, _, _)| *f == type_id))
}

/// The object holding record `id` (ids are unique across objects here).
fn object_holding(store: &Store, id: &str) -> Option<String> {
    store
        .specs()
        .into_iter()
        .map(|s| s.name)
        .find(|name| store.table(name).is_some_and(|t| t.get(id).is_some()))
}

fn singular(store: &Store, object: &str) -> String {
    store
        .table(object)
        .map(|t| t.spec.label.to_lowercase().replace(' ', "_"))
        .unwrap_or_else(|| object.to_owned())
}

/// The v3 type name: `contact_to_company` for the primary (or only) default
/// type, `contact_to_company_unlabeled` for the unlabeled one beside a primary.
fn v3_type_name(store: &Store, from: &str, to: &str, kind: AssociationType) -> String {
    let base = format!("{}_to_{}", singular(store, from), singular(store, to));
    let has_primary = known_types(from, to).iter().any(|(_, _, p)| *p);
    if has_primary && label_of(from, to, kind).is_none() && !kind.user_defined {
        format!("{base}_unlabeled")
    } else {
        base
    }
}

/// An association a v3 create asks for, checked before the record is written.
#[derive(Debug, Clone)]
pub(super) struct PendingAssociation {
    to: End,
    kind: AssociationType,
    reverse: AssociationType,
}

/// One `{associationCategory, associationTypeId}` spec, or what is wrong with it.
fn parse_spec(spec: &Value) -> Result<AssociationType, String> {
    let category = spec
        .get("associationCategory")
        .and_then(Value::as_str)
        .ok_or("associationCategory is required")?;
    let type_id = spec
        .get("associationTypeId")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|v| u32::try_from(v).ok())
        .ok_or("associationTypeId is required and must be a whole number")?;
    let user_defined = match category {
        "HUBSPOT_DEFINED" => false,
        "USER_DEFINED" | "INTEGRATOR_DEFINED" => true,
        other => {
            return Err(format!(
            "associationCategory {other:?} is not one of HUBSPOT_DEFINED, USER_DEFINED, INTEGRATOR_DEFINED"
        ))
        }
    };
    Ok(AssociationType {
        user_defined,
        type_id,
    })
}

fn target_id(value: Option<&Value>) -> Option<String> {
    value
        .and_then(|to| to.get("id"))
        .and_then(|id| match id {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
}

/// Checks the `associations` of a v3 create body: each target exists and each
/// type is valid for the pair.
pub(super) fn pending_from_input(
    shared: &Shared,
    store: &Store,
    from_object: &str,
    associations: Option<&Value>,
) -> Result<Vec<PendingAssociation>, Response> {
    let Some(list) = associations.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or_else(|| {
        validation(
            shared,
            "Invalid input JSON: \"associations\" must be an array",
        )
    })?;
    let mut pending = Vec::new();
    for (i, input) in list.iter().enumerate() {
        let to_id = target_id(input.get("to"))
            .ok_or_else(|| validation(shared, format!("associations[{i}].to.id is required")))?;
        let types = input
            .get("types")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                validation(
                    shared,
                    format!("associations[{i}].types must list at least one type"),
                )
            })?;
        for spec in types {
            let kind = parse_spec(spec)
                .map_err(|why| validation(shared, format!("associations[{i}].types: {why}")))?;
            let to_object = if kind.user_defined {
                object_holding(store, &to_id)
            } else {
                target_of_type(store, from_object, kind.type_id)
            }
            .ok_or_else(|| {
                validation(
                    shared,
                    format!(
                        "associations[{i}]: association type {} is not valid from {from_object}",
                        kind.type_id
                    ),
                )
            })?;
            if store
                .table(&to_object)
                .and_then(|t| t.get(&to_id))
                .is_none()
            {
                return Err(validation(
                    shared,
                    format!("associations[{i}]: {to_object} {to_id} does not exist"),
                ));
            }
            let reverse = reverse_of(from_object, &to_object, kind).unwrap_or(kind);
            pending.push(PendingAssociation {
                to: (to_object, to_id.clone()),
                kind,
                reverse,
            });
        }
    }
    Ok(pending)
}

/// Stores associations checked by [`pending_from_input`] for the new record.
pub(super) fn apply_pending(shared: &Shared, from: &End, pending: &[PendingAssociation]) {
    let mut associations = shared.hubspot.associations.lock();
    for p in pending {
        associations.add(from, &p.to, p.kind, p.reverse);
    }
}

/// `associations` of a v3 read: `{companies: {results: [{id, type}]}}`, types
/// with no association left out.
pub(super) fn v3_associations(
    shared: &Shared,
    store: &Store,
    from: &End,
    asked: &[String],
) -> Result<Map<String, Value>, Response> {
    let associations = shared.hubspot.associations.lock();
    let mut out = Map::new();
    for name in asked {
        let to_object = store
            .table(name)
            .map(|t| t.spec.name.clone())
            .ok_or_else(|| {
                validation(shared, format!("Unable to infer object type from: {name}"))
            })?;
        let results: Vec<Value> = associations
            .targets(from, &to_object)
            .into_iter()
            .flat_map(|(id, kinds)| {
                kinds
                    .into_iter()
                    .map(|kind| json!({ "id": id, "type": v3_type_name(store, &from.0, &to_object, kind) }))
                    .collect::<Vec<_>>()
            })
            .collect();
        if !results.is_empty() {
            out.insert(to_object, json!({ "results": results }));
        }
    }
    Ok(out)
}

/// v4 ids are numbers in HubSpot's responses.
fn id_json(id: &str) -> Value {
    numeric_id(id).map_or_else(|| Value::String(id.to_owned()), Value::from)
}

fn spec_json(kind: AssociationType) -> Value {
    json!({ "associationCategory": kind.category(), "associationTypeId": kind.type_id })
}

fn type_with_label(from: &str, to: &str, kind: AssociationType) -> Value {
    json!({ "category": kind.category(), "typeId": kind.type_id, "label": label_of(from, to, kind) })
}

fn not_found(shared: &Shared, object: &str, id: &str) -> Response {
    error(
        shared,
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        format!("{object} {id} does not exist"),
        Map::new(),
    )
}

/// Both object names resolved, or the 400.
fn resolve_pair(shared: &Shared, from: &str, to: &str) -> Result<(String, String), Response> {
    Ok((resolve_object(shared, from)?, resolve_object(shared, to)?))
}

/// The batch envelope v4 answers with.
fn batch_envelope(status: StatusCode, results: Vec<Value>, errors: Vec<Value>) -> Response {
    let now = timestamp(Utc::now());
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "requestedAt": now,
        "startedAt": now,
        "completedAt": now,
        "links": {},
    });
    let status = if errors.is_empty() {
        status
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        StatusCode::MULTI_STATUS
    };
    (status, Json(body)).into_response()
}

fn missing_error(object: &str, ids: &[String]) -> Value {
    json!({
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": format!("No {object} with ID(s) {} exist", ids.join(", ")),
        "context": { "ids": ids },
        "errors": [],
        "links": {},
    })
}

/// Which of `ids` are not live records of `object`.
fn missing_ids(store: &Store, object: &str, ids: &[&str]) -> Vec<String> {
    ids.iter()
        .filter(|id| store.table(object).and_then(|t| t.get(id)).is_none())
        .map(|id| (*id).to_owned())
        .collect()
}

/// Adds the default association `from -> to`; returns the two directions'
/// `PublicDefaultAssociation` results.
fn associate_default(shared: &Shared, from: &End, to: &End) -> Result<Vec<Value>, String> {
    let (kind, reverse) = default_type(&from.0, &to.0).ok_or_else(|| {
        format!(
            "There is no default association type between {} and {}",
            from.0, to.0
        )
    })?;
    shared
        .hubspot
        .associations
        .lock()
        .add(from, to, kind, reverse);
    Ok(vec![
        json!({ "from": { "id": from.1 }, "to": { "id": to.1 }, "associationSpec": spec_json(kind) }),
        json!({ "from": { "id": to.1 }, "to": { "id": from.1 }, "associationSpec": spec_json(reverse) }),
    ])
}

/// `PUT /crm/v4/objects/{from}/{id}/associations/default/{to}/{toId}`.
pub(crate) async fn put_default(
    State(shared): State<Arc<Shared>>,
    Path((from, from_id, to, to_id)): Path<(String, String, String, String)>,
) -> Response {
    let (from, to) = match resolve_pair(&shared, &from, &to) {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    {
        let store = shared.store.lock();
        for (object, id) in [(&from, &from_id), (&to, &to_id)] {
            if !missing_ids(&store, object, &[id]).is_empty() {
                return not_found(&shared, object, id);
            }
        }
    }
    match associate_default(&shared, &(from, from_id), &(to, to_id)) {
        Ok(results) => batch_envelope(StatusCode::OK, results, Vec::new()),
        Err(why) => validation(&shared, why),
    }
}

/// Parses a list of association specs, checking each is valid for the pair.
fn specs_for_pair(
    shared: &Shared,
    from: &str,
    to: &str,
    specs: &[Value],
) -> Result<Vec<(AssociationType, AssociationType)>, Response> {
    if specs.is_empty() {
        return Err(validation(
            shared,
            "At least one association type is required",
        ));
    }
    specs
        .iter()
        .map(|spec| {
            let kind = parse_spec(spec).map_err(|why| validation(shared, why))?;
            let reverse = reverse_of(from, to, kind).ok_or_else(|| {
                validation(
                    shared,
                    format!(
                        "association type {} ({}) is not valid between {from} and {to}",
                        kind.type_id,
                        kind.category()
                    ),
                )
            })?;
            Ok((kind, reverse))
        })
        .collect()
}

fn labels_between(
    store: &Store,
    from: &End,
    to: &End,
    kinds: &[(AssociationType, AssociationType)],
) -> Value {
    let type_id = |object: &str| {
        store
            .table(object)
            .map(|t| t.spec.type_id.clone())
            .unwrap_or_default()
    };
    let labels: Vec<&str> = kinds
        .iter()
        .filter_map(|(k, _)| label_of(&from.0, &to.0, *k))
        .collect();
    json!({
        "fromObjectTypeId": type_id(&from.0),
        "fromObjectId": id_json(&from.1),
        "toObjectTypeId": type_id(&to.0),
        "toObjectId": id_json(&to.1),
        "labels": labels,
    })
}

/// `PUT /crm/v4/objects/{from}/{id}/associations/{to}/{toId}` with a body of
/// `[{associationCategory, associationTypeId}]`: 201 LabelsBetweenObjectPair.
pub(crate) async fn put_labelled(
    State(shared): State<Arc<Shared>>,
    Path((from, from_id, to, to_id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Response {
    let (from, to) = match resolve_pair(&shared, &from, &to) {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let specs: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid_json(&shared, &e),
    };
    let Some(specs) = specs.as_array() else {
        return validation(
            &shared,
            "Invalid input JSON: the body must be an array of {associationCategory, associationTypeId}",
        );
    };
    let kinds = match specs_for_pair(&shared, &from, &to, specs) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let store = shared.store.lock();
    for (object, id) in [(&from, &from_id), (&to, &to_id)] {
        if !missing_ids(&store, object, &[id]).is_empty() {
            return not_found(&shared, object, id);
        }
    }
    let (a, b) = ((from, from_id), (to, to_id));
    {
        let mut associations = shared.hubspot.associations.lock();
        for (kind, reverse) in &kinds {
            associations.add(&a, &b, *kind, *reverse);
        }
    }
    (
        StatusCode::CREATED,
        Json(labels_between(&store, &a, &b, &kinds)),
    )
        .into_response()
}

/// `DELETE /crm/v4/objects/{from}/{id}/associations/{to}/{toId}`: 204.
pub(crate) async fn delete_pair(
    State(shared): State<Arc<Shared>>,
    Path((from, from_id, to, to_id)): Path<(String, String, String, String)>,
) -> Response {
    let (from, to) = match resolve_pair(&shared, &from, &to) {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    shared
        .hubspot
        .associations
        .lock()
        .remove_pair(&(from, from_id), &(to, to_id));
    StatusCode::NO_CONTENT.into_response()
}

/// The `to` entries of one record: `[{toObjectId, associationTypes}]`.
fn targets_json(shared: &Shared, from: &End, to_object: &str) -> Vec<(u64, Value)> {
    shared
        .hubspot
        .associations
        .lock()
        .targets(from, to_object)
        .into_iter()
        .map(|(id, kinds)| {
            let types: Vec<Value> = kinds
                .into_iter()
                .map(|k| type_with_label(&from.0, to_object, k))
                .collect();
            (
                numeric_id(&id).unwrap_or(u64::MAX),
                json!({ "toObjectId": id_json(&id), "associationTypes": types }),
            )
        })
        .collect()
}

/// `GET /crm/v4/objects/{from}/{id}/associations/{to}?limit&after`.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path((from, from_id, to)): Path<(String, String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params(params);
    let (from, to) = match resolve_pair(&shared, &from, &to) {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let limit = match params.first("limit").map(str::parse::<usize>) {
        None => MAX_ASSOCIATION_PAGE,
        Some(Ok(l)) if (1..=MAX_ASSOCIATION_PAGE).contains(&l) => l,
        Some(_) => {
            return validation(
                &shared,
                format!("limit must be a whole number from 1 to {MAX_ASSOCIATION_PAGE}"),
            )
        }
    };
    let after = match params.first("after").filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => match numeric_id(raw) {
            Some(a) => Some(a),
            None => {
                return validation(
                    &shared,
                    format!("after must be the toObjectId a previous page ended with, got {raw:?}"),
                )
            }
        },
    };
    let page = page_after(
        targets_json(&shared, &(from.clone(), from_id.clone()), &to).into_iter(),
        after,
        limit,
    );
    let mut body = json!({ "results": page.items });
    if let Some(next) = page.next_after {
        body["paging"] = json!({ "next": {
            "after": next.to_string(),
            "link": format!("{}/crm/v4/objects/{from}/{from_id}/associations/{to}?after={next}&limit={limit}", shared.base_url),
        }});
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// A parsed v4 batch body: its `inputs`, at most [`MAX_BATCH_INPUTS`].
fn batch_inputs(shared: &Shared, body: &[u8]) -> Result<Vec<Value>, Response> {
    let root: Value = serde_json::from_slice(body).map_err(|e| invalid_json(shared, &e))?;
    let inputs = root
        .get("inputs")
        .and_then(Value::as_array)
        .cloned()
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
    Ok(inputs)
}

/// `(from id, to id)` of an `{from: {id}, to: {id}}` input.
fn pair_ids(shared: &Shared, i: usize, input: &Value) -> Result<(String, String), Response> {
    let from = target_id(input.get("from"))
        .ok_or_else(|| validation(shared, format!("inputs[{i}].from.id is required")))?;
    let to = target_id(input.get("to"))
        .ok_or_else(|| validation(shared, format!("inputs[{i}].to.id is required")))?;
    Ok((from, to))
}

/// Which endpoint of a pair is missing, as a 207 error item, if one is.
fn pair_missing(store: &Store, from: &End, to: &End) -> Option<Value> {
    [from, to].into_iter().find_map(|(object, id)| {
        (!missing_ids(store, object, &[id]).is_empty())
            .then(|| missing_error(object, std::slice::from_ref(id)))
    })
}

/// `POST /crm/v4/associations/{from}/{to}/batch/associate/default`.
pub(crate) async fn batch_default(
    State(shared): State<Arc<Shared>>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (from, to) = match resolve_pair(&shared, &from, &to) {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let inputs = match batch_inputs(&shared, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if default_type(&from, &to).is_none() {
        return validation(
            &shared,
            format!("There is no default association type between {from} and {to}"),
        );
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (from_id, to_id) = match pair_ids(&shared, i, input) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let (a, b) = ((from.clone(), from_id), (to.clone(), to_id));
        if let Some(missing) = pair_missing(&shared.store.lock(), &a, &b) {
            errors.push(missing);
            continue;
        }
        match associate_default(&shared, &a, &b) {
            Ok(r) => results.extend(r),
            Err(why) => return validation(&shared, why),
        }
    }
    batch_envelope(StatusCode::OK, results, errors)
}

/// `POST /crm/v4/associations/{from}/{to}/batch/create`: inputs
/// `{from: {id}, to: {id}, types: [...]}`; 201 with LabelsBetweenObjectPair results.
pub(crate) async fn batch_create(
    State(shared): State<Arc<Shared>>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (from, to) = match resolve_pair(&shared, &from, &to) {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let inputs = match batch_inputs(&shared, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut planned = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let (from_id, to_id) = match pair_ids(&shared, i, input) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let specs = input
            .get("types")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let kinds = match specs_for_pair(&shared, &from, &to, &specs) {
            Ok(k) => k,
            Err(r) => return r,
        };
        planned.push(((from.clone(), from_id), (to.clone(), to_id), kinds));
    }
    let store = shared.store.lock();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (a, b, kinds) in planned {
        if let Some(missing) = pair_missing(&store, &a, &b) {
            errors.push(missing);
            continue;
        }
        {
            let mut associations = shared.hubspot.associations.lock();
            for (kind, reverse) in &kinds {
                associations.add(&a, &b, *kind, *reverse);
            }
        }
        results.push(labels_between(&store, &a, &b, &kinds));
    }
    batch_envelope(StatusCode::CREATED, results, errors)
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read`: inputs `{id}`; results
/// `{from: {id}, to: [{toObjectId, associationTypes}]}`; records with no
/// association are reported in a 207.
pub(crate) async fn batch_read(
    State(shared): State<Arc<Shared>>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (from, to) = match resolve_pair(&shared, &from, &to) {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let inputs = match batch_inputs(&shared, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(id) = target_id(Some(input)) else {
            return validation(&shared, format!("inputs[{i}].id is required"));
        };
        let targets: Vec<Value> = targets_json(&shared, &(from.clone(), id.clone()), &to)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        if targets.is_empty() {
            errors.push(json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": format!("No {to} is associated with {from} {id}."),
                "context": { "fromObjectId": [id] },
                "errors": [],
                "links": {},
            }));
        } else {
            results.push(json!({ "from": { "id": id }, "to": targets }));
        }
    }
    batch_envelope(StatusCode::OK, results, errors)
}

/// `POST /crm/v4/associations/{from}/{to}/batch/archive`: inputs
/// `{from: {id}, to: [{id}]}`; 204.
pub(crate) async fn batch_archive(
    State(shared): State<Arc<Shared>>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (from, to) = match resolve_pair(&shared, &from, &to) {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let inputs = match batch_inputs(&shared, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut pairs = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(from_id) = target_id(input.get("from")) else {
            return validation(&shared, format!("inputs[{i}].from.id is required"));
        };
        let targets = input.get("to").and_then(Value::as_array).ok_or_else(|| {
            validation(
                &shared,
                format!("inputs[{i}].to must be an array of {{id}}"),
            )
        });
        let targets = match targets {
            Ok(t) => t,
            Err(r) => return r,
        };
        for target in targets {
            let Some(to_id) = target_id(Some(target)) else {
                return validation(&shared, format!("inputs[{i}].to[].id is required"));
            };
            pairs.push(((from.clone(), from_id.clone()), (to.clone(), to_id)));
        }
    }
    let mut associations = shared.hubspot.associations.lock();
    for (a, b) in pairs {
        associations.remove_pair(&a, &b);
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubspot_defined_types_reverse_in_both_directions() {
        assert_eq!(
            default_type("contacts", "companies"),
            Some((hubspot_defined(279), hubspot_defined(280)))
        );
        assert_eq!(
            default_type("companies", "contacts"),
            Some((hubspot_defined(280), hubspot_defined(279)))
        );
        assert_eq!(
            reverse_of("deals", "companies", hubspot_defined(5)),
            Some(hubspot_defined(6))
        );
        assert_eq!(
            label_of("contacts", "companies", hubspot_defined(1)),
            Some("Primary")
        );
        assert_eq!(
            label_of("contacts", "companies", hubspot_defined(279)),
            None
        );
        assert_eq!(
            reverse_of("contacts", "companies", hubspot_defined(3)),
            None
        );
        assert!(default_type("contacts", "p_vehicles").is_none());
    }

    #[test]
    fn association_specs_are_checked() {
        assert_eq!(
            parse_spec(&json!({"associationCategory": "USER_DEFINED", "associationTypeId": 77})),
            Ok(AssociationType {
                user_defined: true,
                type_id: 77
            })
        );
        assert!(parse_spec(&json!({"associationCategory": "HUBSPOT_DEFINED"})).is_err());
        assert!(
            parse_spec(&json!({"associationCategory": "OTHER", "associationTypeId": 1})).is_err()
        );
    }
}
