//! Batch endpoint bodies and their results mapped to rows (pure parts).
//!
//! Rows are matched to results by key, never by position alone: HubSpot does
//! not promise result order. Keys are compared lowercased (unique property
//! values and emails match case-insensitively).

use crate::client::HubError;
use crate::properties::OBJECT_ID;
use serde::Deserialize;
use sluice_sdk::prelude::*;
use std::collections::{HashMap, VecDeque};

/// Most inputs one batch request may carry.
pub const MAX_INPUTS: usize = 100;

/// A property value as HubSpot takes it: text; null clears (empty string).
pub fn property_value(value: &Value) -> String {
    let mut s = String::new();
    value.write_text(&mut s);
    s
}

/// The row's properties, leaving out `skip` (a read-only id column).
pub fn properties(
    columns: &[String],
    row: &Row,
    skip: Option<usize>,
) -> serde_json::Map<String, serde_json::Value> {
    columns
        .iter()
        .zip(row)
        .enumerate()
        .filter(|(i, _)| Some(*i) != skip)
        .map(|(_, (c, v))| (c.clone(), serde_json::Value::String(property_value(v))))
        .collect()
}

/// Which batch endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Upsert,
    Update,
    Archive,
}

impl Op {
    pub fn for_mode(mode: WriteMode) -> Op {
        match mode {
            WriteMode::Upsert => Op::Upsert,
            WriteMode::Update => Op::Update,
            WriteMode::Delete => Op::Archive,
            WriteMode::Insert | WriteMode::Append => Op::Create,
        }
    }

    pub fn path(self, object: &str) -> String {
        let verb = match self {
            Op::Create => "create",
            Op::Upsert => "upsert",
            Op::Update => "update",
            Op::Archive => "archive",
        };
        format!("/crm/v3/objects/{object}/batch/{verb}")
    }
}

/// One input. `key` is the id (upsert, update, archive) or the
/// `objectWriteTraceId` (create: it opts into 207 multi-status, so one bad
/// input no longer fails the others).
pub fn input(
    op: Op,
    id_property: &str,
    key: &str,
    props: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    match op {
        Op::Create => serde_json::json!({ "properties": props, "objectWriteTraceId": key }),
        Op::Archive => serde_json::json!({ "id": key }),
        Op::Update if id_property == OBJECT_ID => {
            serde_json::json!({ "id": key, "properties": props })
        }
        Op::Upsert | Op::Update => {
            serde_json::json!({ "id": key, "idProperty": id_property, "properties": props })
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResult {
    pub id: String,
    #[serde(default)]
    pub new: Option<bool>,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub object_write_trace_id: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
pub struct BatchResponse {
    #[serde(default)]
    pub results: Vec<ObjectResult>,
    #[serde(default)]
    pub errors: Vec<HubError>,
}

impl ObjectResult {
    /// The key this result answers for.
    fn key(&self, op: Op, id_property: &str) -> Option<String> {
        let key = match op {
            Op::Create => self.object_write_trace_id.clone(),
            _ if id_property == OBJECT_ID => Some(self.id.clone()),
            _ => self
                .properties
                .get(id_property)
                .and_then(|v| v.as_str())
                .map(str::to_string),
        };
        key.map(|k| k.to_lowercase())
    }
}

/// Keys an error names in its `context` (`ids`, `objectWriteTraceId`).
fn error_keys(error: &HubError) -> Vec<String> {
    ["ids", "objectWriteTraceId", "id"]
        .iter()
        .filter_map(|k| error.context.get(*k).and_then(|v| v.as_array()))
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_lowercase))
        .collect()
}

/// One result per input (`None` when HubSpot said nothing about it).
pub fn map_response(
    op: Op,
    id_property: &str,
    keys: &[String],
    response: &BatchResponse,
) -> Vec<Option<RowResult>> {
    let mut pending: HashMap<String, VecDeque<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        pending.entry(k.to_lowercase()).or_default().push_back(i);
    }
    let mut out = vec![None; keys.len()];
    let mut unkeyed = Vec::new();
    for result in &response.results {
        let outcome = match (op, result.new) {
            (Op::Create, _) | (_, Some(true)) => RowResult::Created,
            _ => RowResult::Updated,
        };
        match result
            .key(op, id_property)
            .and_then(|k| pending.get_mut(&k))
            .and_then(VecDeque::pop_front)
        {
            Some(i) => out[i] = Some(outcome),
            None => unkeyed.push(outcome),
        }
    }
    for error in &response.errors {
        for k in error_keys(error) {
            if let Some(i) = pending.get_mut(&k).and_then(VecDeque::pop_front) {
                out[i] = Some(RowResult::Rejected(error.describe()));
            }
        }
    }
    // Results that carry no usable key (a create answered 201 without trace
    // ids) fill the remaining rows in order, only when the counts agree.
    let open: Vec<usize> = (0..keys.len()).filter(|i| out[*i].is_none()).collect();
    if !unkeyed.is_empty() && unkeyed.len() == open.len() && response.errors.is_empty() {
        for (i, outcome) in open.into_iter().zip(unkeyed) {
            out[i] = Some(outcome);
        }
    }
    out
}

/// Whether a whole-request 4xx is about particular inputs, so that sending
/// fewer of them at a time will isolate the bad ones: property validation
/// (with `errors[]`), duplicate ids or values in one batch, a unique value
/// already taken (409).
pub fn splittable(status: u16, error: &HubError) -> bool {
    status == 409
        || (status == 400 && (!error.errors.is_empty() || error.message.starts_with("Duplicate")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_inputs() {
        let columns = vec![
            "email".to_string(),
            "firstname".to_string(),
            "hs_object_id".to_string(),
        ];
        let row: Row = vec![
            Value::Text("a@x.com".into()),
            Value::Null,
            Value::Text("512".into()),
        ];
        let props = properties(&columns, &row, Some(2));
        assert_eq!(
            serde_json::Value::Object(props.clone()),
            serde_json::json!({"email": "a@x.com", "firstname": ""})
        );
        assert_eq!(
            input(Op::Upsert, "email", "a@x.com", props.clone()),
            serde_json::json!({"id": "a@x.com", "idProperty": "email", "properties": {"email": "a@x.com", "firstname": ""}})
        );
        assert_eq!(
            input(Op::Update, OBJECT_ID, "512", serde_json::Map::new()),
            serde_json::json!({"id": "512", "properties": {}})
        );
        assert_eq!(
            input(Op::Create, "", "7", serde_json::Map::new())["objectWriteTraceId"],
            "7"
        );
        assert_eq!(
            Op::for_mode(WriteMode::Delete).path("2-123"),
            "/crm/v3/objects/2-123/batch/archive"
        );
    }

    #[test]
    fn maps_upsert_results_by_id_property_in_any_order() {
        let response: BatchResponse = serde_json::from_value(serde_json::json!({
            "status": "COMPLETE",
            "results": [
                {"id": "2", "new": false, "properties": {"email": "b@x.com"}},
                {"id": "1", "new": true, "properties": {"email": "a@x.com"}}
            ]
        }))
        .unwrap();
        let out = map_response(
            Op::Upsert,
            "email",
            &["A@x.com".into(), "b@x.com".into(), "c@x.com".into()],
            &response,
        );
        assert_eq!(
            out,
            vec![Some(RowResult::Created), Some(RowResult::Updated), None]
        );
    }

    #[test]
    fn maps_multi_status_creates_and_missing_updates() {
        let response: BatchResponse = serde_json::from_value(serde_json::json!({
            "results": [{"id": "9", "objectWriteTraceId": "1", "properties": {}}],
            "numErrors": 1,
            "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid", "context": {"objectWriteTraceId": ["0"]}}]
        }))
        .unwrap();
        let out = map_response(Op::Create, "", &["0".into(), "1".into()], &response);
        assert_eq!(
            out,
            vec![
                Some(RowResult::Rejected(
                    "VALIDATION_ERROR: Property values were not valid".into()
                )),
                Some(RowResult::Created)
            ]
        );

        let update: BatchResponse = serde_json::from_value(serde_json::json!({
            "results": [{"id": "5", "properties": {}}],
            "errors": [{"category": "OBJECT_NOT_FOUND", "message": "Could not get some CONTACT objects", "context": {"ids": ["6"]}}]
        }))
        .unwrap();
        let out = map_response(Op::Update, OBJECT_ID, &["5".into(), "6".into()], &update);
        assert_eq!(
            out,
            vec![
                Some(RowResult::Updated),
                Some(RowResult::Rejected(
                    "OBJECT_NOT_FOUND: Could not get some CONTACT objects".into()
                ))
            ]
        );
    }

    #[test]
    fn unkeyed_results_fill_in_order_only_when_counts_agree() {
        let response: BatchResponse =
            serde_json::from_value(serde_json::json!({"results": [{"id": "1"}, {"id": "2"}]}))
                .unwrap();
        assert_eq!(
            map_response(Op::Create, "", &["0".into(), "1".into()], &response),
            vec![Some(RowResult::Created); 2]
        );
        assert_eq!(
            map_response(
                Op::Create,
                "",
                &["0".into(), "1".into(), "2".into()],
                &response
            ),
            vec![None; 3]
        );
    }

    #[test]
    fn decides_what_to_split() {
        let validation = HubError {
            message: "Property values were not valid".into(),
            errors: vec![serde_json::json!({})],
            ..Default::default()
        };
        assert!(splittable(400, &validation));
        assert!(splittable(409, &HubError::default()));
        let dup = HubError {
            message: "Duplicate IDs found in batch input: [a]".into(),
            ..Default::default()
        };
        assert!(splittable(400, &dup));
        let object = HubError {
            message: "Unable to infer object type from: nope".into(),
            ..Default::default()
        };
        assert!(!splittable(400, &object));
    }
}
