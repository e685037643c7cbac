//! sObject Collections: request bodies and per-record results (pure parts).

use serde::Deserialize;
use sluice_sdk::prelude::*;

/// Most records one collections request may carry.
pub const MAX_RECORDS: usize = 200;

/// One per-record error inside a 200.
#[derive(Deserialize, Debug, Clone, Default)]
pub struct RecordError {
    #[serde(default, rename = "statusCode")]
    pub status_code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// A SaveResult / UpsertResult / DeleteResult.
#[derive(Deserialize, Debug, Clone)]
pub struct SaveResult {
    pub success: bool,
    #[serde(default)]
    pub created: Option<bool>,
    #[serde(default)]
    pub errors: Vec<RecordError>,
}

/// `STATUS_CODE: message (field, field)`, errors joined with `; `.
pub fn describe_errors(errors: &[RecordError]) -> String {
    if errors.is_empty() {
        return "UNKNOWN: Salesforce reported a failure without an error".into();
    }
    errors
        .iter()
        .map(|e| {
            let mut s = format!("{}: {}", e.status_code, e.message);
            if !e.fields.is_empty() {
                s.push_str(&format!(" ({})", e.fields.join(", ")));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One record's outcome for a write in `mode`.
pub fn row_result(mode: WriteMode, result: &SaveResult) -> RowResult {
    if !result.success {
        // A delete of a record that is already gone reached the goal; a retried
        // delete must not turn into a rejection.
        if mode == WriteMode::Delete
            && result
                .errors
                .iter()
                .all(|e| e.status_code == "ENTITY_IS_DELETED")
            && !result.errors.is_empty()
        {
            return RowResult::Deleted;
        }
        return RowResult::Rejected(describe_errors(&result.errors));
    }
    match mode {
        WriteMode::Delete => RowResult::Deleted,
        WriteMode::Insert => RowResult::Created,
        WriteMode::Update => RowResult::Updated,
        _ if result.created == Some(true) => RowResult::Created,
        _ => RowResult::Updated,
    }
}

/// A record of `object` from row `i`: `attributes.type` plus every column.
pub fn record(object: &str, columns: &[String], row: &Row) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("attributes".into(), serde_json::json!({ "type": object }));
    for (column, value) in columns.iter().zip(row) {
        map.insert(column.clone(), value.to_json());
    }
    serde_json::Value::Object(map)
}

/// `{"allOrNone": false, "records": [...]}`: each record succeeds or fails alone.
pub fn body(object: &str, columns: &[String], rows: &[&Row]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = rows.iter().map(|r| record(object, columns, r)).collect();
    serde_json::json!({ "allOrNone": false, "records": records })
}

/// The path of one collections call (under `/services/data/vNN.N`).
pub fn path(
    data: &str,
    mode: WriteMode,
    object: &str,
    identifier: &str,
    ids: &[String],
) -> (&'static str, String) {
    match mode {
        WriteMode::Upsert => (
            "PATCH",
            format!("{data}/composite/sobjects/{object}/{identifier}"),
        ),
        WriteMode::Update => ("PATCH", format!("{data}/composite/sobjects")),
        WriteMode::Delete => (
            "DELETE",
            format!(
                "{data}/composite/sobjects?ids={}&allOrNone=false",
                crate::util::percent_encode(&ids.join(","))
            ),
        ),
        WriteMode::Insert | WriteMode::Append => ("POST", format!("{data}/composite/sobjects")),
    }
}

/// Parse a collections response and check it has one result per record.
pub fn parse_results(body: &[u8], expected: usize) -> Result<Vec<SaveResult>, String> {
    let results: Vec<SaveResult> = serde_json::from_slice(body)
        .map_err(|e| format!("unreadable collections response: {e}"))?;
    if results.len() != expected {
        return Err(format!(
            "collections response has {} results for {expected} records",
            results.len()
        ));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_upsert_body() {
        let columns = vec![
            "External_Id__c".to_string(),
            "LastName".to_string(),
            "Birthdate".to_string(),
        ];
        let row: Row = vec![Value::Text("A1".into()), Value::Null, Value::Date(19_844)];
        let body = body("Contact", &columns, &[&row]);
        assert_eq!(
            body,
            serde_json::json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Contact"}, "External_Id__c": "A1", "LastName": null, "Birthdate": "2024-05-01"}
            ]})
        );
        assert_eq!(
            path("/d", WriteMode::Upsert, "Contact", "External_Id__c", &[]),
            (
                "PATCH",
                "/d/composite/sobjects/Contact/External_Id__c".into()
            )
        );
        assert_eq!(
            path(
                "/d",
                WriteMode::Delete,
                "Contact",
                "Id",
                &["a".into(), "b".into()]
            )
            .1,
            "/d/composite/sobjects?ids=a%2Cb&allOrNone=false"
        );
    }

    #[test]
    fn maps_results_in_order() {
        let body = br#"[
            {"id":"003A","success":true,"errors":[],"created":true},
            {"id":"003B","success":true,"errors":[],"created":false},
            {"id":null,"success":false,"errors":[{"statusCode":"REQUIRED_FIELD_MISSING","message":"Required fields are missing: [LastName]","fields":["LastName"]}]}
        ]"#;
        let results = parse_results(body, 3).unwrap();
        let mapped: Vec<RowResult> = results
            .iter()
            .map(|r| row_result(WriteMode::Upsert, r))
            .collect();
        assert_eq!(
            mapped,
            vec![
                RowResult::Created,
                RowResult::Updated,
                RowResult::Rejected(
                    "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (LastName)"
                        .into()
                )
            ]
        );
        assert!(parse_results(body, 2)
            .unwrap_err()
            .contains("3 results for 2"));
        let gone = SaveResult {
            success: false,
            created: None,
            errors: vec![RecordError {
                status_code: "ENTITY_IS_DELETED".into(),
                message: "entity is deleted".into(),
                fields: vec![],
            }],
        };
        assert_eq!(row_result(WriteMode::Delete, &gone), RowResult::Deleted);
        assert!(matches!(
            row_result(WriteMode::Update, &gone),
            RowResult::Rejected(_)
        ));
    }
}
