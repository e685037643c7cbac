//! `POST /crm/v3/objects/{type}/search` (saas-apis.md §2.6).
//!
//! `filterGroups` are ORed, the filters of a group ANDed. Operators: EQ, NEQ,
//! LT, LTE, GT, GTE, BETWEEN (`value`..=`highValue`), IN, NOT_IN (`values`),
//! HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN, NOT_CONTAINS_TOKEN (`*`
//! wildcards). Values compare by the property's type: numbers as numbers,
//! dates and datetimes as instants (ISO 8601 or epoch milliseconds), text
//! case-insensitively. At most 5 groups, 10 filters a group and 25 in all;
//! `limit` up to 200; `after` is an offset into the sorted matches and stops
//! at 10,000 results, as HubSpot's does.
//!
//! Choices where HubSpot's documentation is silent: NEQ and NOT_IN match a
//! record without the property (its value is not the one named); `query`
//! matches records with any property value containing it (case-insensitive).

use std::cmp::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate};
use serde_json::{json, Value};

use super::batch::{default_properties, resolve_object};
use super::errors::{invalid_json, validation};
use super::objects::unknown_object;
use super::{render_record, system_property};
use crate::handle::Shared;
use crate::schema::{FieldType, ObjectSpec};
use crate::store::Record;
use crate::values::text_of;

/// Most results one search page returns.
pub const MAX_SEARCH_LIMIT: usize = 200;
/// How far a search can page: `after` + `limit` beyond it is refused.
pub const MAX_SEARCH_RESULTS: usize = 10_000;
const DEFAULT_SEARCH_LIMIT: usize = 10;
const MAX_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 10;
const MAX_FILTERS: usize = 25;

/// A search operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
    NotContainsToken,
}

impl Operator {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "EQ" => Self::Eq,
            "NEQ" => Self::Neq,
            "LT" => Self::Lt,
            "LTE" => Self::Lte,
            "GT" => Self::Gt,
            "GTE" => Self::Gte,
            "BETWEEN" => Self::Between,
            "IN" => Self::In,
            "NOT_IN" => Self::NotIn,
            "HAS_PROPERTY" => Self::HasProperty,
            "NOT_HAS_PROPERTY" => Self::NotHasProperty,
            "CONTAINS_TOKEN" => Self::ContainsToken,
            "NOT_CONTAINS_TOKEN" => Self::NotContainsToken,
            _ => return None,
        })
    }
}

/// One parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Filter {
    pub property: String,
    pub field_type: FieldType,
    pub operator: Operator,
    pub value: Option<String>,
    pub high_value: Option<String>,
    pub values: Vec<String>,
}

/// A sort: property and direction.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sort {
    pub property: String,
    pub field_type: FieldType,
    pub descending: bool,
}

/// A parsed search request.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SearchRequest {
    pub groups: Vec<Vec<Filter>>,
    pub sorts: Vec<Sort>,
    pub properties: Vec<String>,
    pub limit: usize,
    pub after: usize,
    pub query: Option<String>,
}

/// The type a property's values compare as, or what is wrong with the name.
fn property_type(spec: &ObjectSpec, name: &str) -> Result<FieldType, String> {
    if name == "hs_lastmodifieddate" {
        return Ok(FieldType::DateTime);
    }
    spec.fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.field_type)
        .ok_or_else(|| format!("Property \"{name}\" does not exist on {}", spec.name))
}

fn text_field(value: Option<&Value>) -> Option<String> {
    value.filter(|v| !v.is_null()).and_then(text_of)
}

fn parse_filter(spec: &ObjectSpec, where_: &str, filter: &Value) -> Result<Filter, String> {
    let property = filter
        .get("propertyName")
        .and_then(Value::as_str)
        .ok_or(format!("{where_}.propertyName is required"))?;
    let operator_name = filter
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or("EQ");
    let operator = Operator::parse(operator_name).ok_or(format!(
        "{where_}.operator {operator_name:?} is not a known operator"
    ))?;
    let field_type = property_type(spec, property).map_err(|e| format!("{where_}: {e}"))?;
    let value = text_field(filter.get("value"));
    let high_value = text_field(filter.get("highValue"));
    let values: Vec<String> = filter
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(text_of).collect())
        .unwrap_or_default();
    let needs_value = !matches!(
        operator,
        Operator::HasProperty | Operator::NotHasProperty | Operator::In | Operator::NotIn
    );
    if needs_value && value.is_none() {
        return Err(format!("{where_}: operator {operator_name} needs a value"));
    }
    if operator == Operator::Between && high_value.is_none() {
        return Err(format!("{where_}: operator BETWEEN needs a highValue"));
    }
    if matches!(operator, Operator::In | Operator::NotIn) && values.is_empty() {
        return Err(format!("{where_}: operator {operator_name} needs values"));
    }
    Ok(Filter {
        property: property.to_owned(),
        field_type,
        operator,
        value,
        high_value,
        values,
    })
}

fn parse_groups(spec: &ObjectSpec, root: &Value) -> Result<Vec<Vec<Filter>>, String> {
    let groups = match root.get("filterGroups") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(groups)) => groups,
        Some(_) => return Err("filterGroups must be an array".to_owned()),
    };
    if groups.len() > MAX_GROUPS {
        return Err(format!(
            "Too many filter groups: {} were provided, but at most {MAX_GROUPS} are allowed",
            groups.len()
        ));
    }
    let mut total = 0;
    let mut parsed = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter().enumerate() {
        let filters = group
            .get("filters")
            .and_then(Value::as_array)
            .ok_or(format!("filterGroups[{g}].filters must be an array"))?;
        if filters.len() > MAX_FILTERS_PER_GROUP {
            return Err(format!(
                "Too many filters in filterGroups[{g}]: {}, but at most {MAX_FILTERS_PER_GROUP} are allowed",
                filters.len()
            ));
        }
        total += filters.len();
        parsed.push(
            filters
                .iter()
                .enumerate()
                .map(|(f, filter)| {
                    parse_filter(spec, &format!("filterGroups[{g}].filters[{f}]"), filter)
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    if total > MAX_FILTERS {
        return Err(format!(
            "Too many filters: {total} were provided, but at most {MAX_FILTERS} are allowed"
        ));
    }
    Ok(parsed)
}

/// `sorts` as `["prop"]`, `["-prop"]` or `[{propertyName, direction}]`.
fn parse_sorts(spec: &ObjectSpec, root: &Value) -> Result<Vec<Sort>, String> {
    let Some(sorts) = root.get("sorts").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    sorts
        .iter()
        .enumerate()
        .map(|(i, sort)| {
            let (property, descending) = match sort {
                Value::String(s) => match s.strip_prefix('-') {
                    Some(name) => (name.to_owned(), true),
                    None => (s.clone(), false),
                },
                Value::Object(o) => {
                    let name = o
                        .get("propertyName")
                        .and_then(Value::as_str)
                        .ok_or(format!("sorts[{i}].propertyName is required"))?;
                    let direction = o
                        .get("direction")
                        .and_then(Value::as_str)
                        .unwrap_or("ASCENDING");
                    let descending = match direction {
                        "ASCENDING" => false,
                        "DESCENDING" => true,
                        other => {
                            return Err(format!(
                                "sorts[{i}].direction {other:?} is not ASCENDING or DESCENDING"
                            ))
                        }
                    };
                    (name.to_owned(), descending)
                }
                _ => return Err(format!("sorts[{i}] must be a property name or an object")),
            };
            let field_type =
                property_type(spec, &property).map_err(|e| format!("sorts[{i}]: {e}"))?;
            Ok(Sort {
                property,
                field_type,
                descending,
            })
        })
        .collect()
}

fn parse_count(root: &Value, key: &str, default: usize) -> Result<usize, String> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .map(|n| n as usize)
            .ok_or(format!("{key} must be a whole number, got {v}")),
    }
}

/// Parses and checks a search body against the object's properties.
pub(super) fn parse_request(spec: &ObjectSpec, root: &Value) -> Result<SearchRequest, String> {
    if !root.is_object() {
        return Err("the body must be a JSON object".to_owned());
    }
    let limit = parse_count(root, "limit", DEFAULT_SEARCH_LIMIT)?;
    if limit > MAX_SEARCH_LIMIT {
        return Err(format!(
            "limit {limit} is over the maximum of {MAX_SEARCH_LIMIT}"
        ));
    }
    let after = parse_count(root, "after", 0)?;
    if after + limit > MAX_SEARCH_RESULTS {
        return Err(format!(
            "Search results are limited to {MAX_SEARCH_RESULTS}: after {after} with limit {limit} goes past them"
        ));
    }
    let properties: Vec<String> = root
        .get("properties")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .filter(|p: &Vec<String>| !p.is_empty())
        .unwrap_or_else(|| default_properties(spec));
    Ok(SearchRequest {
        groups: parse_groups(spec, root)?,
        sorts: parse_sorts(spec, root)?,
        properties,
        limit,
        after,
        query: root
            .get("query")
            .and_then(Value::as_str)
            .filter(|q| !q.trim().is_empty())
            .map(|q| q.trim().to_lowercase()),
    })
}

/// A value in the form it compares in.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Comparable {
    Number(f64),
    Text(String),
}

/// Epoch milliseconds of a date or datetime in any form HubSpot accepts.
fn instant_millis(text: &str) -> Option<f64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms as f64);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp_millis() as f64);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis() as f64)
}

fn comparable(field_type: FieldType, text: &str) -> Comparable {
    let as_number = match field_type {
        t if t.is_numeric() => text.trim().parse::<f64>().ok(),
        FieldType::Date | FieldType::DateTime => instant_millis(text.trim()),
        FieldType::Id => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    as_number.map_or_else(|| Comparable::Text(text.to_lowercase()), Comparable::Number)
}

/// The text of property `name` on `record`, system properties included.
fn property_text(record: &Record, name: &str) -> Option<String> {
    system_property(record, name)
        .or_else(|| record.fields.get(name).cloned())
        .as_ref()
        .and_then(text_of)
        .filter(|s| !s.is_empty())
}

/// Matches `pattern` (with `*` for any run of characters) against `text`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `text` holds the token `pattern`: the whole value, a word, or a
/// run of letters and digits, matched case-insensitively with `*` wildcards.
fn contains_token(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let pattern = pattern.to_lowercase();
    let words = text.split_whitespace();
    let runs = text.split(|c: char| !c.is_alphanumeric());
    std::iter::once(text.as_str())
        .chain(words)
        .chain(runs)
        .filter(|t| !t.is_empty())
        .any(|token| wildcard_match(&pattern, token))
}

/// Whether one filter holds for `record`.
pub(super) fn filter_matches(filter: &Filter, record: &Record) -> bool {
    let actual = property_text(record, &filter.property);
    let ty = filter.field_type;
    let compare = |wanted: &str| -> Option<Ordering> {
        let actual = comparable(ty, actual.as_deref()?);
        actual.partial_cmp(&comparable(ty, wanted))
    };
    let wanted = filter.value.as_deref().unwrap_or_default();
    let is = |orderings: &[Ordering]| compare(wanted).is_some_and(|o| orderings.contains(&o));
    let in_values = || {
        filter
            .values
            .iter()
            .any(|v| compare(v) == Some(Ordering::Equal))
    };
    match filter.operator {
        Operator::Eq => is(&[Ordering::Equal]),
        Operator::Neq => !is(&[Ordering::Equal]),
        Operator::Lt => is(&[Ordering::Less]),
        Operator::Lte => is(&[Ordering::Less, Ordering::Equal]),
        Operator::Gt => is(&[Ordering::Greater]),
        Operator::Gte => is(&[Ordering::Greater, Ordering::Equal]),
        Operator::Between => {
            let high = filter.high_value.as_deref().unwrap_or_default();
            is(&[Ordering::Greater, Ordering::Equal])
                && compare(high).is_some_and(|o| o != Ordering::Greater)
        }
        Operator::In => in_values(),
        Operator::NotIn => !in_values(),
        Operator::HasProperty => actual.is_some(),
        Operator::NotHasProperty => actual.is_none(),
        Operator::ContainsToken => actual.is_some_and(|a| contains_token(&a, wanted)),
        Operator::NotContainsToken => !actual.is_some_and(|a| contains_token(&a, wanted)),
    }
}

/// Whether `record` passes the request's groups (OR of ANDs) and query.
pub(super) fn record_matches(request: &SearchRequest, record: &Record) -> bool {
    let by_filters = request.groups.is_empty()
        || request
            .groups
            .iter()
            .any(|group| group.iter().all(|f| filter_matches(f, record)));
    let by_query = request.query.as_deref().is_none_or(|q| {
        record
            .fields
            .values()
            .filter_map(text_of)
            .any(|v| v.to_lowercase().contains(q))
    });
    by_filters && by_query
}

/// Orders two records by the request's sorts, then by id; unset values last.
fn compare_records(sorts: &[Sort], a: &Record, b: &Record) -> Ordering {
    for sort in sorts {
        let key =
            |r: &Record| property_text(r, &sort.property).map(|t| comparable(sort.field_type, &t));
        let ordering = match (key(a), key(b)) {
            (Some(x), Some(y)) => {
                let o = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                if sort.descending {
                    o.reverse()
                } else {
                    o
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    let id = |r: &Record| r.id.parse::<u64>().unwrap_or(u64::MAX);
    id(a).cmp(&id(b))
}

/// Runs a parsed search over `records`: `(total, the page, next offset)`.
pub(super) fn run<'a>(
    request: &SearchRequest,
    records: impl Iterator<Item = &'a Record>,
) -> (usize, Vec<&'a Record>, Option<usize>) {
    let mut matches: Vec<&Record> = records.filter(|r| record_matches(request, r)).collect();
    matches.sort_by(|a, b| compare_records(&request.sorts, a, b));
    let total = matches.len();
    let page: Vec<&Record> = matches
        .into_iter()
        .skip(request.after)
        .take(request.limit)
        .collect();
    let next = request.after + page.len();
    let more = next < total && next < MAX_SEARCH_RESULTS && !page.is_empty();
    (total, page, more.then_some(next))
}

/// `POST /crm/v3/objects/{type}/search`.
pub(crate) async fn search(
    State(shared): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let object = match resolve_object(&shared, &object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let root: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid_json(&shared, &e),
    };
    let store = shared.store.lock();
    let Some(table) = store.table(&object) else {
        return unknown_object(&shared, &object);
    };
    let request = match parse_request(&table.spec, &root) {
        Ok(r) => r,
        Err(why) => return validation(&shared, why),
    };
    let (total, page, next) = run(&request, table.records());
    let results: Vec<Value> = page
        .into_iter()
        .map(|r| render_record(r, Some(&request.properties)))
        .collect();
    let mut body = json!({ "total": total, "results": results });
    if let Some(next) = next {
        body["paging"] = json!({ "next": { "after": next.to_string() } });
    }
    (StatusCode::OK, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::Map;

    use super::*;
    use crate::schema::FieldSpec;

    fn spec() -> ObjectSpec {
        let mut spec = ObjectSpec::new("contacts");
        spec.fields = vec![
            FieldSpec::new("email", FieldType::Email),
            FieldSpec::new("firstname", FieldType::String),
            FieldSpec::new("age", FieldType::Int),
            FieldSpec::new("born", FieldType::Date),
            FieldSpec::new("hs_object_id", FieldType::Id),
            FieldSpec::new("createdate", FieldType::DateTime),
        ];
        spec
    }

    fn record(id: u64, fields: Value) -> Record {
        let at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::seconds(id as i64);
        let fields: Map<String, Value> = fields.as_object().cloned().unwrap_or_default();
        Record {
            id: id.to_string(),
            fields,
            created_at: at,
            updated_at: at,
        }
    }

    fn people() -> Vec<Record> {
        vec![
            record(
                1,
                json!({"email": "ann@acme.com", "firstname": "Ann", "age": "30", "born": "1994-05-01"}),
            ),
            record(
                2,
                json!({"email": "bob@globex.com", "firstname": "Bob", "age": "9"}),
            ),
            record(
                3,
                json!({"email": "cy@acme.com", "age": "45", "born": "1979-01-02"}),
            ),
            record(4, json!({"firstname": "Dee Ann"})),
        ]
    }

    fn ids(body: Value) -> Vec<String> {
        let request = parse_request(&spec(), &body).unwrap();
        let records = people();
        let (_, page, _) = run(&request, records.iter());
        page.into_iter().map(|r| r.id.clone()).collect()
    }

    fn one(property: &str, operator: &str, extra: Value) -> Value {
        let mut filter = json!({"propertyName": property, "operator": operator});
        if let (Value::Object(f), Value::Object(e)) = (&mut filter, extra) {
            f.extend(e);
        }
        json!({"filterGroups": [{"filters": [filter]}]})
    }

    #[test]
    fn equality_is_case_insensitive_and_neq_includes_the_unset() {
        assert_eq!(
            ids(one("email", "EQ", json!({"value": "ANN@acme.com"}))),
            ["1"]
        );
        assert_eq!(
            ids(one("firstname", "NEQ", json!({"value": "bob"}))),
            ["1", "3", "4"]
        );
    }

    #[test]
    fn numbers_compare_as_numbers_not_text() {
        // As text "9" > "30"; as numbers it is the smallest.
        assert_eq!(ids(one("age", "LT", json!({"value": "10"}))), ["2"]);
        assert_eq!(ids(one("age", "GTE", json!({"value": 30}))), ["1", "3"]);
        assert_eq!(ids(one("age", "LTE", json!({"value": "30"}))), ["1", "2"]);
        assert_eq!(ids(one("age", "GT", json!({"value": "30"}))), ["3"]);
        assert_eq!(
            ids(one(
                "age",
                "BETWEEN",
                json!({"value": "9", "highValue": "30"})
            )),
            ["1", "2"]
        );
    }

    #[test]
    fn dates_compare_as_instants_in_either_form() {
        let millis = instant_millis("1990-01-01").unwrap() as i64;
        assert_eq!(
            ids(one("born", "GT", json!({"value": millis.to_string()}))),
            ["1"]
        );
        assert_eq!(
            ids(one("born", "LT", json!({"value": "1990-01-01"}))),
            ["3"]
        );
        assert_eq!(
            ids(one(
                "createdate",
                "GT",
                json!({"value": "2024-01-01T00:00:02Z"})
            )),
            ["3", "4"]
        );
    }

    #[test]
    fn in_not_in_and_presence() {
        assert_eq!(
            ids(one("age", "IN", json!({"values": ["9", "45"]}))),
            ["2", "3"]
        );
        assert_eq!(
            ids(one(
                "firstname",
                "NOT_IN",
                json!({"values": ["ann", "bob"]})
            )),
            ["3", "4"]
        );
        assert_eq!(ids(one("born", "HAS_PROPERTY", json!({}))), ["1", "3"]);
        assert_eq!(ids(one("born", "NOT_HAS_PROPERTY", json!({}))), ["2", "4"]);
    }

    #[test]
    fn tokens_and_wildcards() {
        assert_eq!(
            ids(one(
                "email",
                "CONTAINS_TOKEN",
                json!({"value": "*@acme.com"})
            )),
            ["1", "3"]
        );
        assert_eq!(
            ids(one("firstname", "CONTAINS_TOKEN", json!({"value": "ann"}))),
            ["1", "4"]
        );
        assert_eq!(
            ids(one("email", "CONTAINS_TOKEN", json!({"value": "globex"}))),
            ["2"]
        );
        assert_eq!(
            ids(one("email", "NOT_CONTAINS_TOKEN", json!({"value": "acme"}))),
            ["2", "4"]
        );
        assert!(wildcard_match("a*c*e", "abcde"));
        assert!(!wildcard_match("a*c*e", "abde"));
    }

    #[test]
    fn groups_or_and_filters_and() {
        let body = json!({"filterGroups": [
            {"filters": [
                {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "acme"},
                {"propertyName": "age", "operator": "GT", "value": "40"}
            ]},
            {"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "Bob"}]}
        ]});
        assert_eq!(ids(body), ["2", "3"]);
    }

    #[test]
    fn sorts_paging_and_totals() {
        let request = parse_request(
            &spec(),
            &json!({"sorts": [{"propertyName": "age", "direction": "DESCENDING"}], "limit": 2}),
        )
        .unwrap();
        let records = people();
        let (total, page, next) = run(&request, records.iter());
        let page: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
        assert_eq!((total, page, next), (4, vec!["3", "1"], Some(2)));
        let request = parse_request(
            &spec(),
            &json!({"sorts": ["age"], "limit": 2, "after": "2"}),
        )
        .unwrap();
        let (_, page, next) = run(&request, records.iter());
        let page: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
        // Unset values sort last whatever the direction.
        assert_eq!((page, next), (vec!["3", "4"], None));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let spec = spec();
        let err = |body: Value| parse_request(&spec, &body).unwrap_err();
        assert!(err(json!({"limit": 201})).contains("maximum of 200"));
        assert!(err(one("nope", "EQ", json!({"value": "x"}))).contains("\"nope\" does not exist"));
        assert!(err(one("email", "LIKE", json!({"value": "x"})))
            .contains("\"LIKE\" is not a known operator"));
        assert!(err(one("email", "EQ", json!({}))).contains("needs a value"));
        assert!(err(json!({"after": 9_950, "limit": 100})).contains("limited to 10000"));
        let groups: Vec<Value> = (0..6).map(|_| json!({"filters": []})).collect();
        assert!(err(json!({"filterGroups": groups})).contains("Too many filter groups"));
    }

    #[test]
    fn query_matches_any_value() {
        assert_eq!(ids(json!({"query": "GLOBEX"})), ["2"]);
    }
}
