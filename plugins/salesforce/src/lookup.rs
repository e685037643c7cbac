//! Record ids by external id, through SOQL. Collections update and delete
//! take record ids only, so a write keyed on another field looks them up first.

use crate::api::{Body, Client};
use crate::util::{percent_encode, with_context};
use serde::Deserialize;
use sluice_sdk::PluginError;
use std::collections::HashMap;

/// Keep each query's values under this many characters, so the URL stays
/// well below Salesforce's 16,384-byte limit once encoded.
const MAX_VALUES_CHARS: usize = 4_000;

/// A SOQL string literal.
pub fn soql_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `SELECT Id, F FROM O WHERE F IN (...)` queries covering `values`
/// (`SELECT Id FROM O WHERE Id IN (...)` when the field is `Id`: SOQL
/// refuses a field selected twice).
pub fn queries(object: &str, field: &str, values: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 0;
    for v in values {
        let literal = soql_literal(v);
        if size + literal.len() > MAX_VALUES_CHARS && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += literal.len() + 1;
        current.push(literal);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out.into_iter()
        .map(|list| {
            let selected = if field.eq_ignore_ascii_case("Id") {
                "Id".to_string()
            } else {
                format!("Id, {field}")
            };
            format!(
                "SELECT {selected} FROM {object} WHERE {field} IN ({})",
                list.join(",")
            )
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage {
    records: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    next_records_url: Option<String>,
}

/// Record ids by lowercased field value (external ids compare
/// case-insensitively unless the field is case-sensitive, which is rare).
pub fn ids_by_value(
    client: &mut Client,
    object: &str,
    field: &str,
    values: &[String],
) -> Result<HashMap<String, Vec<String>>, PluginError> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    let data = client.data_path();
    for soql in queries(object, field, values) {
        let mut next = Some(format!("{data}/query?q={}", percent_encode(&soql)));
        while let Some(path) = next.take() {
            let page: QueryPage = client
                .send("GET", &path, Body::None)
                .and_then(|r| r.json())
                .map_err(|e| with_context(e, &format!("looking up {object} ids by {field}")))?;
            for record in page.records {
                let value = record
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))
                    .and_then(|(_, v)| v.as_str());
                let id = record.get("Id").and_then(|v| v.as_str());
                if let (Some(value), Some(id)) = (value, id) {
                    found
                        .entry(value.to_lowercase())
                        .or_default()
                        .push(id.to_string());
                }
            }
            next = page.next_records_url;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_escaped_chunked_queries() {
        assert_eq!(soql_literal("O'Brien\\x"), "'O\\'Brien\\\\x'");
        let q = queries("Contact", "Ext__c", &["a".into(), "b'c".into()]);
        assert_eq!(
            q,
            vec!["SELECT Id, Ext__c FROM Contact WHERE Ext__c IN ('a','b\\'c')"]
        );
        let many: Vec<String> = (0..2000).map(|i| format!("value-{i:05}")).collect();
        let chunks = queries("Contact", "Ext__c", &many);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() < MAX_VALUES_CHARS + 100));
        let total: usize = chunks.iter().map(|c| c.matches("'value-").count()).sum();
        assert_eq!(total, 2000);
        assert_eq!(
            queries("Account", "Id", &["001x".into()]),
            vec!["SELECT Id FROM Account WHERE Id IN ('001x')"]
        );
    }
}
