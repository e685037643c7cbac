//! A write: batches of 100 inputs; a whole-request 4xx about particular
//! inputs is split in halves until the bad rows stand alone and are
//! rejected with HubSpot's message, while the good ones are written.
//!
//! Failure rule (as in the Salesforce plugin): an error before anything of
//! the batch was written fails the call; after that, throttling and
//! transient errors become per-row results for the rows not yet written.

use crate::batch::{self, BatchResponse, Op, MAX_INPUTS};
use crate::client::{Answer, Client};
use crate::properties::OBJECT_ID;
use crate::with_context;
use sluice_sdk::prelude::*;
use std::collections::HashMap;

pub struct HubSpotWriter {
    pub client: Client,
    pub object: String,
    pub mode: WriteMode,
    /// `hs_object_id` or a unique property.
    pub id_property: String,
}

type Results = Vec<Option<RowResult>>;

pub(crate) fn key_text(value: &Value) -> Option<String> {
    let s = batch::property_value(value);
    (!value.is_null() && !s.is_empty()).then_some(s)
}

struct Rows<'a> {
    batch: &'a Batch,
    /// The identifier column.
    key: Option<usize>,
    /// Per row: the id HubSpot addresses it by (archive: the record id).
    keys: Vec<String>,
}

impl HubSpotWriter {
    fn op(&self) -> Op {
        Op::for_mode(self.mode)
    }

    fn inputs(&self, rows: &Rows, which: &[usize]) -> (Vec<serde_json::Value>, Vec<String>) {
        let skip = rows.key.filter(|_| self.id_property == OBJECT_ID);
        let keys: Vec<String> = which
            .iter()
            .map(|&i| {
                if self.op() == Op::Create {
                    i.to_string()
                } else {
                    rows.keys[i].clone()
                }
            })
            .collect();
        let inputs = which
            .iter()
            .zip(&keys)
            .map(|(&i, k)| {
                batch::input(
                    self.op(),
                    &self.id_property,
                    k,
                    batch::properties(&rows.batch.columns, &rows.batch.rows[i], skip),
                )
            })
            .collect();
        (inputs, keys)
    }

    /// Send `which` rows in one request; split on a whole-request 4xx that
    /// names inputs.
    fn send_rows(
        &self,
        rows: &Rows,
        which: &[usize],
        out: &mut Results,
        written: &mut bool,
    ) -> Result<(), PluginError> {
        let (inputs, keys) = self.inputs(rows, which);
        let context = format!(
            "writing {} rows {}..={} of the batch",
            self.object,
            which[0],
            which[which.len() - 1]
        );
        let body = serde_json::json!({ "inputs": inputs });
        let answer = self
            .client
            .call("POST", &self.op().path(&self.object), Some(&body))
            .map_err(|e| with_context(e, &context))?;
        match answer {
            Answer::Done(response) => {
                *written = true;
                let results = if self.op() == Op::Archive {
                    vec![Some(RowResult::Deleted); which.len()]
                } else {
                    let parsed: BatchResponse =
                        response.json().map_err(|e| with_context(e, &context))?;
                    batch::map_response(self.op(), &self.id_property, &keys, &parsed)
                };
                for (&i, r) in which.iter().zip(results) {
                    out[i] = Some(r.unwrap_or_else(|| {
                        RowResult::Retryable(format!(
                            "row {i}: HubSpot's answer did not mention this input"
                        ))
                    }));
                }
                Ok(())
            }
            Answer::Refused { status, error }
                if which.len() > 1 && batch::splittable(status, &error) =>
            {
                let (a, b) = which.split_at(which.len() / 2);
                self.send_rows(rows, a, out, written)?;
                self.send_rows(rows, b, out, written)
            }
            Answer::Refused { status, error } => {
                let message = format!("HTTP {status}: {}", error.describe());
                for &i in which {
                    out[i] = Some(RowResult::Rejected(message.clone()));
                }
                Ok(())
            }
        }
    }

    /// Archive takes record ids only: find them by the unique property
    /// (`batch/read` with `idProperty`). Rows whose record is not there count
    /// as deleted (archive itself answers 204 for unknown ids too).
    pub(crate) fn record_ids(
        &self,
        values: &[String],
    ) -> Result<HashMap<String, String>, PluginError> {
        let mut found = HashMap::new();
        for chunk in values.chunks(MAX_INPUTS) {
            let body = serde_json::json!({
                "idProperty": self.id_property,
                "properties": [self.id_property],
                "inputs": chunk.iter().map(|v| serde_json::json!({"id": v})).collect::<Vec<_>>(),
            });
            let path = format!("/crm/v3/objects/{}/batch/read", self.object);
            let context = format!(
                "looking up {} record ids by {}",
                self.object, self.id_property
            );
            match self
                .client
                .call("POST", &path, Some(&body))
                .map_err(|e| with_context(e, &context))?
            {
                Answer::Done(response) => {
                    let parsed: BatchResponse = response.json()?;
                    for r in parsed.results {
                        if let Some(v) =
                            r.properties.get(&self.id_property).and_then(|v| v.as_str())
                        {
                            found.insert(v.to_lowercase(), r.id.clone());
                        }
                    }
                }
                Answer::Refused { status, error } => {
                    return Err(PluginError::Permanent(format!(
                        "{context}: HTTP {status}: {}",
                        error.describe()
                    )));
                }
            }
        }
        Ok(found)
    }

    /// Keys per row; rows without one are rejected now.
    fn plan<'a>(&self, batch: &'a Batch, out: &mut Results) -> Result<Rows<'a>, PluginError> {
        if self.mode == WriteMode::Insert {
            return Ok(Rows {
                batch,
                key: None,
                keys: vec![String::new(); batch.len()],
            });
        }
        let key = batch.columns.iter().position(|c| c == &self.id_property || (self.id_property == OBJECT_ID && c == "id")).ok_or_else(|| {
            PluginError::Permanent(format!("the batch for {} has no `{}` column, which identifies records for this write (columns: {})", self.object, self.id_property, batch.columns.join(", ")))
        })?;
        let mut keys = Vec::with_capacity(batch.len());
        for (i, row) in batch.rows.iter().enumerate() {
            let k = key_text(&row[key]);
            if k.is_none() {
                out[i] = Some(RowResult::Rejected(format!(
                    "row {i}: `{}` is empty; HubSpot needs it to identify the {} record",
                    self.id_property, self.object
                )));
            }
            keys.push(k.unwrap_or_default());
        }
        if self.mode == WriteMode::Delete && self.id_property != OBJECT_ID {
            let mut values: Vec<String> = (0..batch.len())
                .filter(|i| out[*i].is_none())
                .map(|i| keys[i].clone())
                .collect();
            values.sort();
            values.dedup();
            let ids = self.record_ids(&values)?;
            for (i, k) in keys.iter_mut().enumerate() {
                match ids.get(&k.to_lowercase()) {
                    Some(id) => *k = id.clone(),
                    None if out[i].is_none() => out[i] = Some(RowResult::Deleted),
                    None => {}
                }
            }
        }
        Ok(Rows {
            batch,
            key: Some(key),
            keys,
        })
    }
}

impl Writer for HubSpotWriter {
    fn write(&mut self, batch: Batch) -> Result<Vec<RowResult>, PluginError> {
        let mut out: Results = vec![None; batch.len()];
        let rows = self.plan(&batch, &mut out)?;
        let todo: Vec<usize> = (0..batch.len()).filter(|i| out[*i].is_none()).collect();
        let mut written = false;
        for chunk in todo.chunks(MAX_INPUTS) {
            if let Err(e) = self.send_rows(&rows, chunk, &mut out, &mut written) {
                // Rows already answered (written, or rejected while a batch
                // was split to isolate bad inputs) keep their answers: the
                // host retries only the rest, so isolation makes progress
                // even when the API's window runs out halfway through it.
                let answered = written || todo.iter().any(|&i| out[i].is_some());
                let result = match &e {
                    PluginError::RateLimited(r) if answered => {
                        RowResult::RateLimited(r.retry_after_ms)
                    }
                    PluginError::Retryable(m) if answered => RowResult::Retryable(m.clone()),
                    _ => return Err(e),
                };
                for slot in out.iter_mut().filter(|r| r.is_none()) {
                    *slot = Some(result.clone());
                }
                break;
            }
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
