//! A write: plan the rows (keys, id lookups), then send them through sObject
//! Collections or, for large batches, one Bulk API 2.0 job.
//!
//! Failure rule: an error before anything of the batch was written fails the
//! whole call (the host retries it); once something was written, a throttle
//! or transient error becomes a per-row `rate-limited` / `retryable` result
//! for the rows not yet written, so written rows are never sent twice.

use crate::api::{Body, Client};
use crate::bulk::{self, Job, Key};
use crate::collections::{self, MAX_RECORDS};
use crate::lookup;
use crate::util::with_context;
use sluice_sdk::prelude::*;

pub struct SalesforceWriter {
    pub client: Client,
    /// Canonical sObject name.
    pub object: String,
    pub mode: WriteMode,
    /// Canonical identifier field (`Id` or an external id field).
    pub identifier: String,
}

/// Rows ready to send: their positions in the batch and their values.
pub struct Plan {
    pub columns: Vec<String>,
    pub rows: Vec<(usize, Row)>,
}

type Results = Vec<Option<RowResult>>;

pub fn text_of(value: &Value) -> Option<String> {
    let mut s = String::new();
    value.write_text(&mut s);
    (!value.is_null() && !s.is_empty()).then_some(s)
}

/// Turn an error into per-row results for `rest` when part of the batch was
/// already written; otherwise fail the call.
fn absorb(
    error: PluginError,
    written: bool,
    rest: &[usize],
    out: &mut Results,
) -> Result<(), PluginError> {
    let result = match &error {
        PluginError::RateLimited(r) if written => RowResult::RateLimited(r.retry_after_ms),
        PluginError::Retryable(m) if written => RowResult::Retryable(m.clone()),
        _ => return Err(error),
    };
    for &i in rest {
        out[i] = Some(result.clone());
    }
    Ok(())
}

impl SalesforceWriter {
    fn key_column(&self, batch: &Batch) -> Result<usize, PluginError> {
        batch.columns.iter().position(|c| c.eq_ignore_ascii_case(&self.identifier)).ok_or_else(|| {
            PluginError::Permanent(format!(
                "the batch for {} has no `{}` column, which identifies records for this write (columns: {})",
                self.object,
                self.identifier,
                batch.columns.join(", ")
            ))
        })
    }

    /// Which rows to send with which columns; rows that cannot be sent get
    /// their result in `out` now.
    pub fn plan(&mut self, batch: &Batch, out: &mut Results) -> Result<Plan, PluginError> {
        if self.mode == WriteMode::Insert {
            return Ok(Plan {
                columns: batch.columns.clone(),
                rows: batch.rows.iter().cloned().enumerate().collect(),
            });
        }
        let key = self.key_column(batch)?;
        let mut keyed = Vec::new();
        for (i, row) in batch.rows.iter().enumerate() {
            match text_of(&row[key]) {
                Some(k) => keyed.push((i, k)),
                None => {
                    out[i] = Some(RowResult::Rejected(format!(
                        "row {i}: `{}` is empty; Salesforce needs it to identify the {} record",
                        self.identifier, self.object
                    )))
                }
            }
        }
        match self.mode {
            WriteMode::Upsert => Ok(Plan {
                columns: batch.columns.clone(),
                rows: keyed
                    .into_iter()
                    .map(|(i, _)| (i, batch.rows[i].clone()))
                    .collect(),
            }),
            WriteMode::Delete if self.identifier == "Id" => Ok(Plan {
                columns: vec!["Id".into()],
                rows: keyed
                    .into_iter()
                    .map(|(i, id)| (i, vec![Value::Text(id)]))
                    .collect(),
            }),
            WriteMode::Update if self.identifier == "Id" => Ok(Plan {
                columns: batch.columns.clone(),
                rows: keyed
                    .into_iter()
                    .map(|(i, _)| (i, batch.rows[i].clone()))
                    .collect(),
            }),
            _ => self.plan_by_lookup(batch, key, keyed, out),
        }
    }

    /// Update or delete keyed on a field other than `Id`: find the record ids
    /// with SOQL, then address records by id.
    fn plan_by_lookup(
        &mut self,
        batch: &Batch,
        key: usize,
        keyed: Vec<(usize, String)>,
        out: &mut Results,
    ) -> Result<Plan, PluginError> {
        let mut values: Vec<String> = keyed.iter().map(|(_, k)| k.clone()).collect();
        values.sort();
        values.dedup();
        let found =
            lookup::ids_by_value(&mut self.client, &self.object, &self.identifier, &values)?;
        let deleting = self.mode == WriteMode::Delete;
        // The identifier column is dropped from updates: it addressed the
        // record and may not be updateable.
        let columns: Vec<String> = if deleting {
            vec!["Id".into()]
        } else {
            batch
                .columns
                .iter()
                .enumerate()
                .filter(|(c, _)| *c != key)
                .map(|(_, n)| n.clone())
                .chain(["Id".to_string()])
                .collect()
        };
        let mut rows = Vec::new();
        for (i, k) in keyed {
            match found.get(&k.to_lowercase()).map(Vec::as_slice) {
                Some([id]) if deleting => rows.push((i, vec![Value::Text(id.clone())])),
                Some([id]) => {
                    let mut row: Row = batch.rows[i]
                        .iter()
                        .enumerate()
                        .filter(|(c, _)| *c != key)
                        .map(|(_, v)| v.clone())
                        .collect();
                    row.push(Value::Text(id.clone()));
                    rows.push((i, row));
                }
                // Already gone: the delete's goal holds (and a retried delete
                // must not turn into a rejection).
                None | Some([]) if deleting => out[i] = Some(RowResult::Deleted),
                None | Some([]) => {
                    out[i] = Some(RowResult::Rejected(format!(
                        "NOT_FOUND: no {} record has {} = {k}",
                        self.object, self.identifier
                    )))
                }
                Some(ids) => {
                    out[i] = Some(RowResult::Rejected(format!(
                        "DUPLICATE_EXTERNAL_ID: {} value {k} matches more than one {} record: [{}]",
                        self.identifier,
                        self.object,
                        ids.join(", ")
                    )))
                }
            }
        }
        Ok(Plan { columns, rows })
    }

    fn send_chunk(
        &mut self,
        columns: &[String],
        chunk: &[(usize, Row)],
    ) -> Result<Vec<RowResult>, PluginError> {
        let data = self.client.data_path();
        let ids: Vec<String> = if self.mode == WriteMode::Delete {
            chunk.iter().filter_map(|(_, r)| text_of(&r[0])).collect()
        } else {
            Vec::new()
        };
        let (method, path) =
            collections::path(&data, self.mode, &self.object, &self.identifier, &ids);
        let body = match self.mode {
            WriteMode::Delete => Body::None,
            _ => Body::Json(collections::body(
                &self.object,
                columns,
                &chunk.iter().map(|(_, r)| r).collect::<Vec<_>>(),
            )),
        };
        let context = format!(
            "writing {} rows {}..={} of the batch",
            self.object,
            chunk[0].0,
            chunk[chunk.len() - 1].0
        );
        let response = self
            .client
            .send(method, &path, body)
            .map_err(|e| with_context(e, &context))?;
        let results = collections::parse_results(&response.body, chunk.len())
            .map_err(|m| PluginError::Permanent(format!("{context}: {m}")))?;
        Ok(results
            .iter()
            .map(|r| collections::row_result(self.mode, r))
            .collect())
    }

    pub fn write_collections(&mut self, plan: &Plan, out: &mut Results) -> Result<(), PluginError> {
        let chunks: Vec<&[(usize, Row)]> = plan.rows.chunks(MAX_RECORDS).collect();
        let mut written = false;
        for (n, chunk) in chunks.iter().enumerate() {
            match self.send_chunk(&plan.columns, chunk) {
                Ok(results) => {
                    for ((i, _), r) in chunk.iter().zip(results) {
                        out[*i] = Some(r);
                    }
                    written = true;
                }
                Err(e) => {
                    let rest: Vec<usize> = chunks[n..]
                        .iter()
                        .flat_map(|c| c.iter().map(|(i, _)| *i))
                        .collect();
                    return absorb(e, written, &rest, out);
                }
            }
        }
        Ok(())
    }

    pub fn write_bulk(&mut self, plan: &Plan, out: &mut Results) -> Result<(), PluginError> {
        let key = match self.mode {
            WriteMode::Insert | WriteMode::Append => Key::WholeRow,
            WriteMode::Upsert => Key::Column(self.identifier.clone()),
            WriteMode::Update | WriteMode::Delete => Key::Column("Id".into()),
        };
        let job = Job {
            object: &self.object,
            mode: self.mode,
            external_id: &self.identifier,
            key,
            header: plan.columns.clone(),
            rows: plan
                .rows
                .iter()
                .map(|(_, r)| r.iter().map(bulk::cell).collect())
                .collect(),
        };
        let results = bulk::run(&mut self.client, &job)?;
        for ((i, _), r) in plan.rows.iter().zip(results) {
            out[*i] = Some(r.unwrap_or_else(|| {
                RowResult::Retryable(format!(
                    "row {i}: the Bulk job's results do not mention this row"
                ))
            }));
        }
        Ok(())
    }
}

impl SalesforceWriter {
    /// Bulk API 2.0 for a large enough change set, except for inserts
    /// unless the operator allowed them (`bulk_insert`): see the field's
    /// doc for why an interrupted Bulk insert cannot be made exact.
    fn uses_bulk_for(&self, rows: usize) -> bool {
        let config = &self.client.config;
        rows >= config.bulk_threshold && (self.mode != WriteMode::Insert || config.bulk_insert)
    }
}

impl Writer for SalesforceWriter {
    fn write(&mut self, batch: Batch) -> Result<Vec<RowResult>, PluginError> {
        let mut out: Results = vec![None; batch.len()];
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let plan = self.plan(&batch, &mut out)?;
        if self.uses_bulk_for(plan.rows.len()) {
            self.write_bulk(&plan, &mut out)?;
        } else if !plan.rows.is_empty() {
            self.write_collections(&plan, &mut out)?;
        }
        Ok(out
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    RowResult::Retryable(format!("row {i}: no result was recorded"))
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn writer(mode: WriteMode, identifier: &str) -> SalesforceWriter {
        let config = Config::parse(r#"{"login_url":"https://x","auth":{"flow":"client_credentials","client_id":"a","client_secret":"b"}}"#).unwrap();
        SalesforceWriter {
            client: Client::new(config),
            object: "Contact".into(),
            mode,
            identifier: identifier.into(),
        }
    }

    fn batch() -> Batch {
        Batch {
            columns: vec!["id".into(), "LastName".into()],
            rows: vec![
                vec![Value::Text("003A".into()), Value::Text("A".into())],
                vec![Value::Null, Value::Text("B".into())],
            ],
        }
    }

    #[test]
    fn plans_deletes_by_id_and_rejects_rows_without_a_key() {
        let mut w = writer(WriteMode::Delete, "Id");
        let mut out = vec![None; 2];
        let plan = w.plan(&batch(), &mut out).unwrap();
        assert_eq!(plan.columns, vec!["Id"]);
        assert_eq!(plan.rows, vec![(0, vec![Value::Text("003A".into())])]);
        assert!(
            matches!(&out[1], Some(RowResult::Rejected(m)) if m.contains("row 1") && m.contains("`Id` is empty"))
        );
    }

    #[test]
    fn inserts_use_bulk_only_when_allowed_and_keyed_writes_above_the_threshold() {
        let at = writer(WriteMode::Insert, "").client.config.bulk_threshold;
        assert!(!writer(WriteMode::Insert, "").uses_bulk_for(at));
        let mut allowed = writer(WriteMode::Insert, "");
        allowed.client.config.bulk_insert = true;
        assert!(allowed.uses_bulk_for(at));
        assert!(!allowed.uses_bulk_for(at - 1));
        for mode in [WriteMode::Upsert, WriteMode::Update, WriteMode::Delete] {
            assert!(writer(mode, "Id").uses_bulk_for(at));
            assert!(!writer(mode, "Id").uses_bulk_for(at - 1));
        }
    }

    #[test]
    fn a_batch_without_the_identifier_column_fails() {
        let mut w = writer(WriteMode::Upsert, "External_Id__c");
        let err = w.plan(&batch(), &mut vec![None; 2]).err().unwrap();
        assert!(matches!(err, PluginError::Permanent(m) if m.contains("External_Id__c")));
    }

    #[test]
    fn errors_after_a_partial_write_become_row_results() {
        let mut out = vec![Some(RowResult::Created), None, None];
        let limited = PluginError::RateLimited(sluice_sdk::RateLimitedInfo {
            retry_after_ms: 1000,
            message: "x".into(),
        });
        absorb(limited.clone(), true, &[1, 2], &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                Some(RowResult::Created),
                Some(RowResult::RateLimited(1000)),
                Some(RowResult::RateLimited(1000))
            ]
        );
        assert!(absorb(limited, false, &[1], &mut out).is_err());
        assert!(absorb(PluginError::Permanent("p".into()), true, &[1], &mut out).is_err());
    }
}
