//! `GET /query?q=…`, `GET /queryAll?q=…` and the pages behind `nextRecordsUrl`
//! (saas-apis.md §1.4), over the SOQL subset of [`super::soql`].
//!
//! A query's whole result is computed when it runs and kept behind a query
//! locator; pages are `<locator>-<offset>`. As in Salesforce, a user keeps at
//! most 10 locators open: opening an eleventh releases the oldest, whose
//! `nextRecordsUrl` then answers 400 `INVALID_QUERY_LOCATOR`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::errors::api_error;
use super::soql::{self, ErrorKind, Selection, SoqlError};
use super::{ids, render_record};
use crate::handle::Shared;
use crate::schema::ObjectSpec;
use crate::store::Table;

/// Records per page unless `Sforce-Query-Options: batchSize=N` asks otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 2_000;
/// The smallest and largest `batchSize` Salesforce honours.
const BATCH_SIZE_RANGE: (usize, usize) = (200, 2_000);
/// Open query locators per user before the oldest is released.
const MAX_OPEN_CURSORS: usize = 10;

/// The rest of a query's result, behind a locator.
#[derive(Debug)]
struct Cursor {
    id: String,
    endpoint: &'static str,
    version: String,
    rows: Vec<Value>,
    batch_size: usize,
}

/// Open query locators, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Cursors {
    open: VecDeque<Cursor>,
}

impl Cursors {
    fn open(&mut self, cursor: Cursor) {
        if self.open.len() >= MAX_OPEN_CURSORS {
            self.open.pop_front();
        }
        self.open.push_back(cursor);
    }

    fn get(&self, id: &str) -> Option<&Cursor> {
        self.open.iter().find(|c| c.id == id)
    }
}

/// `GET /query?q=…`.
pub(crate) async fn query(
    state: State<Arc<Shared>>,
    path: Path<String>,
    params: QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    run(state, path, params, headers, "query")
}

/// `GET /queryAll?q=…`: also returns deleted records.
pub(crate) async fn query_all(
    state: State<Arc<Shared>>,
    path: Path<String>,
    params: QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    run(state, path, params, headers, "queryAll")
}

fn run(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
    endpoint: &'static str,
) -> Response {
    let Some(text) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let include_deleted = endpoint == "queryAll";
    let result = match execute(&shared, text, include_deleted) {
        Ok(result) => result,
        Err(err) => return api_error(StatusCode::BAD_REQUEST, err.kind.code(), err.message(text)),
    };
    let rows: Vec<Value> = match result {
        Outcome::Count(n) => {
            return (
                StatusCode::OK,
                Json(json!({ "totalSize": n, "done": true, "records": [] })),
            )
                .into_response()
        }
        Outcome::Rows {
            object,
            fields,
            rows,
        } => rows
            .iter()
            .map(|row| project(&object, &version, row, &fields))
            .collect(),
    };
    let batch_size = batch_size(&headers);
    if rows.len() <= batch_size {
        let body = json!({ "totalSize": rows.len(), "done": true, "records": rows });
        return (StatusCode::OK, Json(body)).into_response();
    }
    let cursor = Cursor {
        id: ids::make_id("01g", shared.next_seq()),
        endpoint,
        version,
        rows,
        batch_size,
    };
    let page = page_of(&cursor, 0);
    shared.salesforce.cursors.lock().open(cursor);
    (StatusCode::OK, Json(page)).into_response()
}

/// `GET /query/{locator}-{offset}` (and under `queryAll`): the next page.
pub(crate) async fn more(
    State(shared): State<Arc<Shared>>,
    Path((_version, locator)): Path<(String, String)>,
) -> Response {
    let invalid = || {
        api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let Some((id, offset)) = locator
        .rsplit_once('-')
        .and_then(|(id, offset)| Some((id, offset.parse::<usize>().ok()?)))
    else {
        return invalid();
    };
    let cursors = shared.salesforce.cursors.lock();
    match cursors.get(id) {
        Some(cursor) if offset < cursor.rows.len() => {
            (StatusCode::OK, Json(page_of(cursor, offset))).into_response()
        }
        _ => invalid(),
    }
}

/// One page of a cursor's rows from `offset`, with `nextRecordsUrl` unless it
/// is the last.
fn page_of(cursor: &Cursor, offset: usize) -> Value {
    let end = (offset + cursor.batch_size).min(cursor.rows.len());
    let done = end >= cursor.rows.len();
    let mut page = json!({
        "totalSize": cursor.rows.len(),
        "done": done,
        "records": cursor.rows[offset..end],
    });
    if !done {
        page["nextRecordsUrl"] = Value::String(format!(
            "/services/data/{}/{}/{}-{end}",
            cursor.version, cursor.endpoint, cursor.id
        ));
    }
    page
}

/// `Sforce-Query-Options: batchSize=N`, clamped to 200..=2000 as Salesforce
/// does; the default when absent or unreadable.
fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|part| part.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        })
        .map_or(DEFAULT_BATCH_SIZE, |n| {
            n.clamp(BATCH_SIZE_RANGE.0, BATCH_SIZE_RANGE.1)
        })
}

/// What a query produced: a count, or the matching records (rendered with
/// `Id` and timestamps) and the selected fields' canonical names in order.
pub(crate) enum Outcome {
    Count(usize),
    Rows {
        object: String,
        fields: Vec<String>,
        rows: Vec<Map<String, Value>>,
    },
}

/// Parses, validates and runs `text` against the store.
pub(crate) fn execute(
    shared: &Shared,
    text: &str,
    include_deleted: bool,
) -> Result<Outcome, SoqlError> {
    let mut query = soql::parse(text)?;
    let store = shared.store.lock();
    let table = store.table(&query.object).ok_or_else(|| SoqlError {
        kind: ErrorKind::InvalidType,
        offset: query.object_offset,
        detail: format!(
            "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
            query.object
        ),
    })?;
    canonicalize_fields(&mut query, &table.spec)?;
    let mut rows = matching_rows(table, &query, include_deleted);
    soql::sort_rows(&mut rows, &query.order_by);
    let rows: Vec<Map<String, Value>> = rows
        .into_iter()
        .skip(query.offset.unwrap_or(0))
        .take(query.limit.unwrap_or(usize::MAX))
        .collect();
    match query.selection {
        Selection::Count => Ok(Outcome::Count(rows.len())),
        Selection::Fields(fields) => Ok(Outcome::Rows {
            object: table.spec.name.clone(),
            fields: fields.into_iter().map(|f| f.name).collect(),
            rows,
        }),
    }
}

/// Replaces every field name with its canonical spelling, or fails with
/// `INVALID_FIELD` (or `MALFORMED_QUERY` for a field selected twice).
fn canonicalize_fields(query: &mut soql::Query, spec: &ObjectSpec) -> Result<(), SoqlError> {
    for field in query.fields() {
        canonical_name(spec, field)?;
    }
    let canonical = |name: &str| {
        spec.find_field(name)
            .map_or_else(|| name.to_owned(), |f| f.name.clone())
    };
    if let Selection::Fields(fields) = &mut query.selection {
        let mut seen = Vec::new();
        for field in fields.iter_mut() {
            field.name = canonical(&field.name);
            if seen.contains(&field.name) {
                return Err(SoqlError {
                    kind: ErrorKind::Malformed,
                    offset: field.offset,
                    detail: format!("duplicate field selected: {}", field.name),
                });
            }
            seen.push(field.name.clone());
        }
    }
    if let Some(filter) = &mut query.filter {
        filter.canonicalize(&canonical);
    }
    for key in &mut query.order_by {
        key.field.name = canonical(&key.field.name);
    }
    Ok(())
}

fn canonical_name(spec: &ObjectSpec, field: &soql::FieldRef) -> Result<String, SoqlError> {
    let invalid = |detail: String| SoqlError {
        kind: ErrorKind::InvalidField,
        offset: field.offset,
        detail,
    };
    if let Some((relationship, _)) = field.name.split_once('.') {
        return Err(invalid(format!(
            "Didn't understand relationship '{relationship}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names. (The Sluice emulator does not follow relationships.)"
        )));
    }
    spec.find_field(&field.name)
        .map(|f| f.name.clone())
        .ok_or_else(|| {
            invalid(format!(
                "No such column '{}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                field.name, spec.name
            ))
        })
}

/// The records (rendered with `Id` and timestamps) that satisfy the filter, in
/// creation order; deleted ones too for `queryAll`.
fn matching_rows(
    table: &Table,
    query: &soql::Query,
    include_deleted: bool,
) -> Vec<Map<String, Value>> {
    let live = table.records();
    let deleted = include_deleted
        .then(|| table.deleted_records())
        .into_iter()
        .flatten();
    live.chain(deleted)
        .filter_map(|record| match render_record(&table.spec, record) {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .filter(|row| query.filter.as_ref().is_none_or(|f| f.matches(row)))
        .collect()
}

/// A result record: `attributes`, then the selected fields in the query's
/// order (null when unset).
fn project(object: &str, version: &str, row: &Map<String, Value>, fields: &[String]) -> Value {
    let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    out.insert(
        "attributes".to_owned(),
        json!({
            "type": object,
            "url": format!("/services/data/{version}/sobjects/{object}/{id}"),
        }),
    );
    for field in fields {
        out.insert(
            field.clone(),
            row.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmulatorConfig;
    use crate::EmulatorKind;

    fn emulator_with_contacts(names: &[&str]) -> (Arc<Shared>, Vec<String>) {
        let shared = Arc::new(Shared::new(
            EmulatorKind::Salesforce,
            EmulatorConfig::default(),
            "http://127.0.0.1:1".into(),
        ));
        // Declares the standard objects; the router is not needed here.
        let _router = super::super::setup(&shared).unwrap();
        let ids = {
            let mut store = shared.store.lock();
            let table = store.table_mut("Contact").unwrap();
            names
                .iter()
                .map(|name| {
                    let input = json!({ "LastName": name }).as_object().cloned().unwrap();
                    super::super::ops::create(&shared, table, &input)
                        .unwrap()
                        .id
                })
                .collect()
        };
        (shared, ids)
    }

    fn last_names(outcome: Outcome) -> Vec<String> {
        match outcome {
            Outcome::Rows { rows, .. } => rows
                .iter()
                .map(|r| r["LastName"].as_str().unwrap_or_default().to_owned())
                .collect(),
            Outcome::Count(n) => panic!("expected rows, got a count of {n}"),
        }
    }

    #[test]
    fn store_filters_sort_and_window_like_soql() {
        let (shared, ids) = emulator_with_contacts(&["b", "a", "d", "c"]);
        let run = |soql: &str| execute(&shared, soql, false).unwrap();
        assert_eq!(
            last_names(run(
                "SELECT LastName FROM Contact ORDER BY LastName LIMIT 2 OFFSET 1"
            )),
            ["b", "c"]
        );
        // A 15-character id finds its record, as in Salesforce.
        let short = &ids[2][..15];
        assert_eq!(
            last_names(run(&format!(
                "SELECT LastName FROM Contact WHERE Id = '{short}'"
            ))),
            ["d"]
        );
        assert!(matches!(
            run("SELECT COUNT() FROM contact WHERE lastname IN ('A', 'C')"),
            Outcome::Count(2)
        ));
        let err = execute(&shared, "SELECT Foo FROM Contact", false)
            .err()
            .unwrap();
        assert_eq!((err.kind, err.offset), (ErrorKind::InvalidField, 7));
    }

    #[test]
    fn query_all_includes_deleted_records() {
        let (shared, ids) = emulator_with_contacts(&["kept", "gone"]);
        shared
            .store
            .lock()
            .table_mut("Contact")
            .unwrap()
            .remove(&ids[1]);
        let soql = "SELECT LastName FROM Contact ORDER BY LastName";
        assert_eq!(last_names(execute(&shared, soql, false).unwrap()), ["kept"]);
        assert_eq!(
            last_names(execute(&shared, soql, true).unwrap()),
            ["gone", "kept"]
        );
    }
}
