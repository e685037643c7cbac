//! Bulk API 2.0 query jobs under `/jobs/query`, over the same SOQL subset as
//! `/query` ([`super::query::execute`]).
//!
//! `POST /jobs/query` runs the query at once (a query the subset refuses
//! answers 400 with its SOQL error code) and keeps the result; the job then
//! reads `UploadComplete`, `InProgress` and `JobComplete` as the Bulk
//! processing delay passes twice (or `Failed` when Bulk jobs are made to
//! fail). `GET …/results?maxRecords=N&locator=L` pages the CSV: every field
//! quoted, null as an empty cell, `Sforce-Locator` naming the next page
//! (`null` after the last) and `Sforce-NumberOfRecords` this page's rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::errors::{api_error, json_parser_error, not_found};
use super::query::{execute, Outcome};
use super::{api_version_number, ids};
use crate::handle::Shared;

/// One query job and its whole result.
#[derive(Debug, Clone)]
pub(crate) struct QueryJob {
    id: String,
    operation: String,
    object: String,
    api_version: f64,
    line_ending: String,
    column_delimiter: String,
    created: DateTime<Utc>,
    started: Instant,
    delay: Duration,
    aborted: bool,
    failure: Option<String>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl QueryJob {
    fn state(&self) -> &'static str {
        let elapsed = self.started.elapsed();
        if self.aborted {
            "Aborted"
        } else if elapsed < self.delay {
            "UploadComplete"
        } else if elapsed < self.delay * 2 {
            "InProgress"
        } else if self.failure.is_some() {
            "Failed"
        } else {
            "JobComplete"
        }
    }

    fn info(&self) -> Value {
        let state = self.state();
        let mut info = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": ids::make_id("005", 1),
            "createdDate": super::salesforce_datetime(self.created),
            "systemModstamp": super::salesforce_datetime(self.created),
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version,
            "jobType": "V2Query",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
            "numberRecordsProcessed": if state == "JobComplete" { self.rows.len() } else { 0 },
            "retries": 0,
            "totalProcessingTime": 0,
        });
        if let (Some(message), "Failed") = (&self.failure, state) {
            info["errorMessage"] = Value::String(message.clone());
        }
        info
    }
}

fn invalid_job(message: impl Into<String>) -> Response {
    api_error(StatusCode::BAD_REQUEST, "INVALIDJOB", message)
}

/// A cell of the results CSV: null empty, text as is, numbers and booleans
/// in JSON spelling.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `POST /jobs/query` with `{operation, query, columnDelimiter?, lineEnding?}`.
pub(crate) async fn create_job(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    body: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(err) => return json_parser_error(err),
    };
    let text = |key: &str| body.get(key).and_then(Value::as_str);
    let operation = match text("operation") {
        Some(op @ ("query" | "queryAll")) => op.to_owned(),
        _ => return invalid_job("operation must be query or queryAll"),
    };
    let Some(soql) = text("query").filter(|q| !q.trim().is_empty()) else {
        return invalid_job("query is required for a query job");
    };
    let column_delimiter = text("columnDelimiter").unwrap_or("COMMA").to_owned();
    if super::bulk::delimiter_byte(&column_delimiter).is_none() {
        return invalid_job(format!(
            "columnDelimiter {column_delimiter} is not one of BACKQUOTE, CARET, COMMA, PIPE, SEMICOLON, TAB"
        ));
    }
    let line_ending = text("lineEnding").unwrap_or("LF").to_owned();
    if line_ending != "LF" && line_ending != "CRLF" {
        return invalid_job(format!("lineEnding {line_ending} is not one of LF, CRLF"));
    }
    let (object, header, rows) = match execute(&shared, soql, operation == "queryAll") {
        Err(err) => return api_error(StatusCode::BAD_REQUEST, err.kind.code(), err.message(soql)),
        Ok(Outcome::Count(_)) => {
            return invalid_job("COUNT() is not supported in Bulk API 2.0 query jobs")
        }
        Ok(Outcome::Rows {
            object,
            fields,
            rows,
        }) => {
            let cells = rows
                .iter()
                .map(|row| fields.iter().map(|f| cell(row.get(f))).collect())
                .collect();
            (object, fields, cells)
        }
    };
    let job = QueryJob {
        id: ids::make_id("750", shared.next_seq()),
        operation,
        object,
        api_version: api_version_number(&version),
        line_ending,
        column_delimiter,
        created: Utc::now(),
        started: Instant::now(),
        delay: *shared.salesforce.bulk_delay.lock(),
        aborted: false,
        failure: shared.salesforce.bulk_failure.lock().clone(),
        header,
        rows,
    };
    let info = job.info();
    shared
        .salesforce
        .query_jobs
        .lock()
        .insert(job.id.clone(), job);
    (StatusCode::OK, Json(info)).into_response()
}

/// `GET /jobs/query`.
pub(crate) async fn list_jobs(State(shared): State<Arc<Shared>>) -> Response {
    let records: Vec<Value> = shared
        .salesforce
        .query_jobs
        .lock()
        .values()
        .map(QueryJob::info)
        .collect();
    let body = json!({ "done": true, "records": records, "nextRecordsUrl": null });
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /jobs/query/{job}`.
pub(crate) async fn get_job(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
) -> Response {
    match shared.salesforce.query_jobs.lock().get(&job_id) {
        Some(job) => (StatusCode::OK, Json(job.info())).into_response(),
        None => not_found(),
    }
}

/// `PATCH /jobs/query/{job}` with `{"state": "Aborted"}`.
pub(crate) async fn abort_job(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let requested: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(err) => return json_parser_error(err),
    };
    let mut jobs = shared.salesforce.query_jobs.lock();
    let Some(job) = jobs.get_mut(&job_id) else {
        return not_found();
    };
    if requested.get("state").and_then(Value::as_str) != Some("Aborted") {
        return invalid_job("a query job's state can only be set to Aborted");
    }
    if matches!(job.state(), "JobComplete" | "Failed" | "Aborted") {
        return api_error(
            StatusCode::CONFLICT,
            "INVALIDJOBSTATE",
            format!("Cannot abort job {job_id} in state {}", job.state()),
        );
    }
    job.aborted = true;
    (StatusCode::OK, Json(job.info())).into_response()
}

/// `DELETE /jobs/query/{job}`: 204.
pub(crate) async fn delete_job(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
) -> Response {
    match shared.salesforce.query_jobs.lock().remove(&job_id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(),
    }
}

/// `GET /jobs/query/{job}/results?maxRecords=N&locator=L`.
pub(crate) async fn results(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let jobs = shared.salesforce.query_jobs.lock();
    let Some(job) = jobs.get(&job_id) else {
        return not_found();
    };
    if job.state() != "JobComplete" {
        return api_error(
            StatusCode::CONFLICT,
            "INVALIDJOBSTATE",
            format!(
                "Cannot get the results of job {job_id} in state {}",
                job.state()
            ),
        );
    }
    let start = match params.get("locator").filter(|l| !l.is_empty()) {
        None => 0,
        Some(locator) => match locator.parse::<usize>() {
            Ok(offset) if offset <= job.rows.len() => offset,
            _ => return invalid_job(format!("invalid locator {locator}")),
        },
    };
    let max = match params.get("maxRecords") {
        None => usize::MAX,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return invalid_job(format!("maxRecords must be a positive number, got {n}")),
        },
    };
    let end = start.saturating_add(max).min(job.rows.len());
    let csv = match write_csv(job, &job.rows[start..end]) {
        Ok(csv) => csv,
        Err(err) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN_EXCEPTION",
                format!("writing results CSV: {err:#}"),
            )
        }
    };
    let locator = if end < job.rows.len() {
        end.to_string()
    } else {
        "null".to_owned()
    };
    (
        [
            (header::CONTENT_TYPE, "text/csv".to_owned()),
            (header::HeaderName::from_static("sforce-locator"), locator),
            (
                header::HeaderName::from_static("sforce-numberofrecords"),
                (end - start).to_string(),
            ),
        ],
        csv,
    )
        .into_response()
}

fn write_csv(job: &QueryJob, rows: &[Vec<String>]) -> anyhow::Result<String> {
    let terminator = if job.line_ending == "CRLF" {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    };
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .delimiter(super::bulk::delimiter_byte(&job.column_delimiter).unwrap_or(b','))
        .terminator(terminator)
        .from_writer(Vec::new());
    writer.write_record(&job.header)?;
    for row in rows {
        writer.write_record(row)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("flushing CSV: {e}"))?;
    Ok(String::from_utf8(bytes)?)
}
