//! The basic object endpoints: `POST /crm/v3/objects/{type}` (create),
//! `GET|PATCH|DELETE /crm/v3/objects/{type}/{id}` and the list
//! `GET /crm/v3/objects/{type}?limit&after&properties&associations&archived`.
//!
//! The list pages by record id, as HubSpot does: `paging.next.after` is the id
//! of the last record returned and the next page starts after it, so archiving
//! a record between two pages moves nothing and skips nothing.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::associations::{self, PendingAssociation};
use super::batch::{
    check_id_property, check_properties, conflict, default_properties, find_by, invalid_properties,
    new_id, properties_of, resolve_object, unique_conflict,
};
use super::errors::{error, invalid_json, validation};
use super::render_record;
use super::state::ArchivedRecord;
use crate::handle::Shared;
use crate::store::{Record, Store, Table};

/// Most records one list page holds.
pub const MAX_PAGE_LIMIT: usize = 100;
/// Records a list page holds when `limit` is not given.
const DEFAULT_PAGE_LIMIT: usize = 10;

/// Query parameters in order, repeated names kept (the vendor clients send
/// `properties=a&properties=b`; browsers and curl users send `properties=a,b`).
#[derive(Debug, Default)]
pub(super) struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, comma lists split, empty entries dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn flag(&self, name: &str) -> bool {
        self.first(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The 404 for a record that is not there (HubSpot's wording).
pub(super) fn object_not_found(shared: &Shared, id: &str) -> Response {
    let mut extra = Map::new();
    extra.insert("context".to_owned(), json!({ "id": [id] }));
    error(
        shared,
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        "Object not found.  objectId are usually numeric.",
        extra,
    )
}

/// The 400 for an object type the emulator does not know.
pub(super) fn unknown_object(shared: &Shared, object: &str) -> Response {
    validation(
        shared,
        format!("Unable to infer object type from: {object}"),
    )
}

/// The numeric value of a HubSpot record id; ids the emulator issues are all numeric.
pub(super) fn numeric_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

/// Archives a live record: it leaves the store (so unique values free up, as
/// in HubSpot) and is kept for `archived=true` reads. Returns false if absent.
pub(crate) fn archive_record(shared: &Shared, table: &mut Table, id: &str) -> bool {
    let Some(record) = table.get(id).cloned() else {
        return false;
    };
    table.remove(id);
    let object = table.spec.name.clone();
    if let Some(key) = numeric_id(id) {
        shared
            .hubspot
            .archived
            .lock()
            .entry(object.clone())
            .or_default()
            .insert(
                key,
                ArchivedRecord {
                    record,
                    archived_at: Utc::now(),
                },
            );
    }
    shared
        .hubspot
        .associations
        .lock()
        .remove_record(&(object, id.to_owned()));
    true
}

/// An archived record in the API shape: `archived: true` and `archivedAt`.
fn render_archived(entry: &ArchivedRecord, properties: &[String]) -> Value {
    let mut rendered = render_record(&entry.record, Some(properties));
    if let Value::Object(map) = &mut rendered {
        map.insert("archived".to_owned(), Value::Bool(true));
        map.insert(
            "archivedAt".to_owned(),
            Value::String(super::timestamp(entry.archived_at)),
        );
    }
    rendered
}

/// The properties a read returns: those asked for, else the object's defaults.
fn wanted_properties(table: &Table, params: &Params) -> Vec<String> {
    let asked = params.list("properties");
    if asked.is_empty() {
        default_properties(&table.spec)
    } else {
        asked
    }
}

/// Renders a live record with the properties and associations asked for.
fn render_live(
    shared: &Shared,
    store: &Store,
    table: &Table,
    record: &Record,
    params: &Params,
) -> Result<Value, Response> {
    let mut rendered = render_record(record, Some(&wanted_properties(table, params)));
    let asked = params.list("associations");
    if !asked.is_empty() {
        let from = (table.spec.name.clone(), record.id.clone());
        let found = associations::v3_associations(shared, store, &from, &asked)?;
        if !found.is_empty() {
            rendered["associations"] = Value::Object(found);
        }
    }
    Ok(rendered)
}

/// Parses a `{"properties": {...}, "associations": [...]}` body.
fn object_body(shared: &Shared, body: &[u8]) -> Result<Map<String, Value>, Response> {
    let root: Value = serde_json::from_slice(body).map_err(|e| invalid_json(shared, &e))?;
    let Value::Object(root) = root else {
        return Err(validation(
            shared,
            "Invalid input JSON: the body must be an object with \"properties\"",
        ));
    };
    match root.get("properties") {
        Some(Value::Object(_)) | None => Ok(root),
        Some(_) => Err(validation(
            shared,
            "Invalid input JSON: \"properties\" must be an object of property names to values",
        )),
    }
}

/// `POST /crm/v3/objects/{type}`: 201 with the record; 400 for invalid values,
/// 409 when a unique value is taken.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    match create_record(&shared, &object, &body) {
        Ok(rendered) => (StatusCode::CREATED, Json(rendered)).into_response(),
        Err(response) => response,
    }
}

fn create_record(shared: &Shared, object: &str, body: &[u8]) -> Result<Value, Response> {
    let object = resolve_object(shared, object)?;
    let input = object_body(shared, body)?;
    let mut store = shared.store.lock();
    let pending: Vec<PendingAssociation> =
        associations::pending_from_input(shared, &store, &object, input.get("associations"))?;
    let table = store
        .table_mut(&object)
        .ok_or_else(|| unknown_object(shared, &object))?;
    let (values, problems) = check_properties(&table.spec, &properties_of(&input), true);
    if !problems.is_empty() {
        return Err(invalid_properties(shared, &problems));
    }
    if let Some(existing) = unique_conflict(table, &values, None) {
        return Err(conflict(shared, &table.spec, &existing));
    }
    let id = new_id(shared);
    table.insert(id.clone(), values, Utc::now());
    let rendered = table
        .get(&id)
        .map(|r| render_record(r, None))
        .unwrap_or(Value::Null);
    associations::apply_pending(shared, &(object, id), &pending);
    Ok(rendered)
}

/// `GET /crm/v3/objects/{type}/{id}` with `properties`, `associations`,
/// `archived` and `idProperty`.
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params(params);
    match read_one(&shared, &object, &id, &params) {
        Ok(rendered) => (StatusCode::OK, Json(rendered)).into_response(),
        Err(response) => response,
    }
}

fn read_one(shared: &Shared, object: &str, id: &str, params: &Params) -> Result<Value, Response> {
    let object = resolve_object(shared, object)?;
    let store = shared.store.lock();
    let table = store
        .table(&object)
        .ok_or_else(|| object_not_found(shared, id))?;
    let id_property = params.first("idProperty");
    if let Some(prop) = id_property {
        check_id_property(shared, &table.spec, prop)?;
    }
    if params.flag("archived") {
        let archived = shared.hubspot.archived.lock();
        return archived
            .get(&table.spec.name)
            .and_then(|records| numeric_id(id).and_then(|key| records.get(&key)))
            .map(|entry| render_archived(entry, &wanted_properties(table, params)))
            .ok_or_else(|| object_not_found(shared, id));
    }
    let record = find_by(table, id_property, id)
        .and_then(|found| table.get(&found))
        .ok_or_else(|| object_not_found(shared, id))?;
    render_live(shared, &store, table, record, params)
}

/// `PATCH /crm/v3/objects/{type}/{id}` (or by `idProperty`): 200 with the record.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let params = Params(params);
    match update_record(&shared, &object, &id, &params, &body) {
        Ok(rendered) => (StatusCode::OK, Json(rendered)).into_response(),
        Err(response) => response,
    }
}

fn update_record(
    shared: &Shared,
    object: &str,
    id: &str,
    params: &Params,
    body: &[u8],
) -> Result<Value, Response> {
    let object = resolve_object(shared, object)?;
    let input = object_body(shared, body)?;
    let mut store = shared.store.lock();
    let table = store
        .table_mut(&object)
        .ok_or_else(|| object_not_found(shared, id))?;
    let id_property = params.first("idProperty");
    if let Some(prop) = id_property {
        check_id_property(shared, &table.spec, prop)?;
    }
    let target = find_by(table, id_property, id).ok_or_else(|| object_not_found(shared, id))?;
    let (values, problems) = check_properties(&table.spec, &properties_of(&input), false);
    if !problems.is_empty() {
        return Err(invalid_properties(shared, &problems));
    }
    if let Some(existing) = unique_conflict(table, &values, Some(&target)) {
        return Err(conflict(shared, &table.spec, &existing));
    }
    table.update(&target, values, Utc::now());
    Ok(table
        .get(&target)
        .map(|r| render_record(r, None))
        .unwrap_or(Value::Null))
}

/// `DELETE /crm/v3/objects/{type}/{id}`: archives; 204 whether or not it existed,
/// as HubSpot answers.
pub(crate) async fn archive(
    State(shared): State<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
) -> Response {
    let object = match resolve_object(&shared, &object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let mut store = shared.store.lock();
    if let Some(table) = store.table_mut(&object) {
        archive_record(&shared, table, &id);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// One page of a listing: the ids after the cursor, at most `limit`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Page<T> {
    pub items: Vec<T>,
    /// The cursor of the next page (the last id of this one), if there is one.
    pub next_after: Option<u64>,
}

/// Takes up to `limit` items whose id is greater than `after` from `items`
/// (in ascending id order), and says where the next page starts.
pub(super) fn page_after<T>(
    items: impl Iterator<Item = (u64, T)>,
    after: Option<u64>,
    limit: usize,
) -> Page<T> {
    let mut rest = items.skip_while(|(id, _)| after.is_some_and(|a| *id <= a));
    let mut page = Vec::with_capacity(limit);
    let mut last = None;
    for (id, item) in rest.by_ref().take(limit) {
        last = Some(id);
        page.push(item);
    }
    let more = rest.next().is_some();
    Page {
        items: page,
        next_after: if more { last } else { None },
    }
}

/// `limit` (1..=100, default 10) and `after` (a record id) of a list request.
fn page_window(shared: &Shared, params: &Params) -> Result<(usize, Option<u64>), Response> {
    let limit = match params.first("limit") {
        None => DEFAULT_PAGE_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE_LIMIT).contains(l))
            .ok_or_else(|| {
                validation(
                    shared,
                    format!("limit must be a whole number from 1 to {MAX_PAGE_LIMIT}, got {raw:?}"),
                )
            })?,
    };
    let after = match params.first("after").filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => Some(numeric_id(raw).ok_or_else(|| {
            validation(
                shared,
                format!("after must be the record id a previous page ended with, got {raw:?}"),
            )
        })?),
    };
    Ok((limit, after))
}

/// `GET /crm/v3/objects/{type}?limit&after&properties&associations&archived`:
/// records in ascending id order from after the cursor.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params(params);
    match list_page(&shared, &object, &params) {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(response) => response,
    }
}

fn list_page(shared: &Shared, object: &str, params: &Params) -> Result<Value, Response> {
    let object = resolve_object(shared, object)?;
    let (limit, after) = page_window(shared, params)?;
    let store = shared.store.lock();
    let table = store
        .table(&object)
        .ok_or_else(|| unknown_object(shared, &object))?;
    let (results, next_after) = if params.flag("archived") {
        let archived = shared.hubspot.archived.lock();
        let properties = wanted_properties(table, params);
        let page = page_after(
            archived
                .get(&table.spec.name)
                .into_iter()
                .flat_map(|records| records.iter().map(|(k, v)| (*k, v))),
            after,
            limit,
        );
        let rendered = page
            .items
            .into_iter()
            .map(|entry| render_archived(entry, &properties))
            .collect::<Vec<_>>();
        (rendered, page.next_after)
    } else {
        let page = page_after(live_in_id_order(table), after, limit);
        let rendered = page
            .items
            .into_iter()
            .map(|record| render_live(shared, &store, table, record, params))
            .collect::<Result<Vec<_>, _>>()?;
        (rendered, page.next_after)
    };
    let mut body = json!({ "results": results });
    if let Some(next) = next_after {
        body["paging"] = json!({ "next": {
            "after": next.to_string(),
            "link": next_link(shared, &table.spec.name, next, limit, params),
        }});
    }
    Ok(body)
}

/// Live records by ascending numeric id. The emulator issues ids in creation
/// order, which is the store's order, so no sort is needed.
fn live_in_id_order(table: &Table) -> impl Iterator<Item = (u64, &Record)> {
    table
        .records()
        .filter_map(|r| numeric_id(&r.id).map(|key| (key, r)))
}

/// The next page's URL, repeating the query that shaped this one.
fn next_link(shared: &Shared, object: &str, after: u64, limit: usize, params: &Params) -> String {
    let mut link = format!(
        "{}/crm/v3/objects/{object}?after={after}&limit={limit}",
        shared.base_url
    );
    for name in ["properties", "associations"] {
        let values = params.list(name);
        if !values.is_empty() {
            link.push_str(&format!("&{name}={}", values.join(",")));
        }
    }
    if params.flag("archived") {
        link.push_str("&archived=true");
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(page: &Page<u64>) -> Vec<u64> {
        page.items.clone()
    }

    #[test]
    fn the_cursor_is_the_last_id_seen_not_an_offset() {
        let records = [101_u64, 102, 103, 104, 105];
        let first = page_after(records.iter().map(|&id| (id, id)), None, 2);
        assert_eq!((ids(&first), first.next_after), (vec![101, 102], Some(102)));
        // 102 is archived between pages (and 101 too): the next page still
        // starts at 103, where an offset of 2 would have skipped it.
        let remaining = [103_u64, 104, 105];
        let second = page_after(remaining.iter().map(|&id| (id, id)), first.next_after, 2);
        assert_eq!(
            (ids(&second), second.next_after),
            (vec![103, 104], Some(104))
        );
        let last = page_after(remaining.iter().map(|&id| (id, id)), second.next_after, 2);
        assert_eq!((ids(&last), last.next_after), (vec![105], None));
    }

    #[test]
    fn a_page_that_ends_exactly_at_the_last_record_has_no_next() {
        let records = [7_u64, 8];
        let page = page_after(records.iter().map(|&id| (id, id)), None, 2);
        assert_eq!((ids(&page), page.next_after), (vec![7, 8], None));
        let empty = page_after(records.iter().map(|&id| (id, id)), Some(8), 2);
        assert_eq!((ids(&empty), empty.next_after), (vec![], None));
    }

    #[test]
    fn repeated_and_comma_separated_parameters_both_list() {
        let params = Params(vec![
            ("properties".into(), "email,firstname".into()),
            ("properties".into(), "lastname".into()),
            ("archived".into(), "TRUE".into()),
        ]);
        assert_eq!(
            params.list("properties"),
            ["email", "firstname", "lastname"]
        );
        assert!(params.flag("archived"));
        assert!(!params.flag("missing"));
    }
}
