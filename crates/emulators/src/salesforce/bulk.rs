//! Bulk API 2.0 ingest jobs (saas-apis.md §1.7).
//!
//! Create job (Open) -> PUT one CSV (201, no body) -> PATCH UploadComplete ->
//! after the processing delay InProgress -> after it again JobComplete (row-level
//! failures counted in `numberRecordsFailed` and listed in `failedResults`) or Failed
//! (job-level problem: unknown column, unparseable CSV, or a failure forced through
//! the handle). Nothing progresses before UploadComplete. Result CSVs quote every
//! column and use the job's delimiter and line ending.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::errors::{api_error, json_parser_error, not_found, RecordError};
use super::{api_version_number, ids, ops};
use crate::handle::Shared;
use crate::store::{index_key, Table};

/// Job states, as spelled on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Open,
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Open => "Open",
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
        }
    }

    fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::JobComplete | JobState::Failed | JobState::Aborted
        )
    }
}

/// Ingest operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Insert,
    Update,
    Upsert,
    Delete,
    HardDelete,
}

impl Operation {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "upsert" => Operation::Upsert,
            "delete" => Operation::Delete,
            "hardDelete" => Operation::HardDelete,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
            Operation::HardDelete => "hardDelete",
        }
    }
}

/// Column delimiters Bulk 2.0 accepts.
pub(crate) fn delimiter_byte(name: &str) -> Option<u8> {
    Some(match name {
        "COMMA" => b',',
        "BACKQUOTE" => b'`',
        "CARET" => b'^',
        "PIPE" => b'|',
        "SEMICOLON" => b';',
        "TAB" => b'\t',
        _ => return None,
    })
}

/// One ingest job and, once processed, its results.
#[derive(Debug, Clone)]
pub(crate) struct BulkJob {
    id: String,
    object: String,
    operation: Operation,
    external_id_field: Option<String>,
    state: JobState,
    api_version: f64,
    line_ending: String,
    column_delimiter: String,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    csv: Option<String>,
    error_message: Option<String>,
    processed: u64,
    failed: u64,
    processing_ms: u64,
    header: Vec<String>,
    successful: Vec<Vec<String>>,
    failed_rows: Vec<Vec<String>>,
    unprocessed: Vec<Vec<String>>,
}

impl BulkJob {
    fn info(&self) -> Value {
        let version = format!("{:.1}", self.api_version);
        let mut info = json!({
            "id": self.id,
            "operation": self.operation.as_str(),
            "object": self.object,
            "createdById": ids::make_id("005", 1),
            "createdDate": super::salesforce_datetime(self.created),
            "systemModstamp": super::salesforce_datetime(self.modified),
            "state": self.state.as_str(),
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version,
            "jobType": "V2Ingest",
            "contentUrl": format!("services/data/v{version}/jobs/ingest/{}/batches", self.id),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
            "numberRecordsProcessed": self.processed,
            "numberRecordsFailed": self.failed,
            "retries": 0,
            "totalProcessingTime": self.processing_ms,
            "apiActiveProcessingTime": self.processing_ms,
            "apexProcessingTime": 0,
        });
        if let Value::Object(map) = &mut info {
            if let Some(field) = &self.external_id_field {
                map.insert(
                    "externalIdFieldName".to_owned(),
                    Value::String(field.clone()),
                );
            }
            if let Some(message) = &self.error_message {
                map.insert("errorMessage".to_owned(), Value::String(message.clone()));
            }
        }
        info
    }

    fn set_state(&mut self, state: JobState) {
        self.state = state;
        self.modified = Utc::now();
    }
}

fn invalid_job(message: impl Into<String>) -> Response {
    api_error(StatusCode::BAD_REQUEST, "INVALIDJOB", message)
}

fn invalid_state(job: &BulkJob, action: &str) -> Response {
    api_error(
        StatusCode::CONFLICT,
        "INVALIDJOBSTATE",
        format!(
            "Cannot {action} job {} in state {}",
            job.id,
            job.state.as_str()
        ),
    )
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// Validates a create-job body and builds the job, or answers the 400.
fn new_job(shared: &Shared, version: &str, body: &Value) -> Result<BulkJob, Response> {
    let object = str_field(body, "object").ok_or_else(|| invalid_job("object is required"))?;
    let operation = str_field(body, "operation")
        .and_then(Operation::parse)
        .ok_or_else(|| {
            invalid_job("operation must be one of insert, update, upsert, delete, hardDelete")
        })?;
    let store = shared.store.lock();
    let table = store
        .table(object)
        .ok_or_else(|| invalid_job(format!("sObject type '{object}' is not supported.")))?;
    let external_id_field = match operation {
        Operation::Upsert => Some(upsert_field(table, str_field(body, "externalIdFieldName"))?),
        _ => None,
    };
    let content_type = str_field(body, "contentType").unwrap_or("CSV");
    if content_type != "CSV" {
        return Err(invalid_job(format!(
            "contentType {content_type} is not supported; use CSV"
        )));
    }
    let line_ending = str_field(body, "lineEnding").unwrap_or("LF");
    if line_ending != "LF" && line_ending != "CRLF" {
        return Err(invalid_job(format!(
            "lineEnding {line_ending} is not one of LF, CRLF"
        )));
    }
    let column_delimiter = str_field(body, "columnDelimiter").unwrap_or("COMMA");
    if delimiter_byte(column_delimiter).is_none() {
        return Err(invalid_job(format!(
            "columnDelimiter {column_delimiter} is not one of BACKQUOTE, CARET, COMMA, PIPE, SEMICOLON, TAB"
        )));
    }
    let now = Utc::now();
    Ok(BulkJob {
        id: ids::make_id("750", shared.next_seq()),
        object: table.spec.name.clone(),
        operation,
        external_id_field,
        state: JobState::Open,
        api_version: api_version_number(version),
        line_ending: line_ending.to_owned(),
        column_delimiter: column_delimiter.to_owned(),
        created: now,
        modified: now,
        csv: None,
        error_message: None,
        processed: 0,
        failed: 0,
        processing_ms: 0,
        header: Vec::new(),
        successful: Vec::new(),
        failed_rows: Vec::new(),
        unprocessed: Vec::new(),
    })
}

fn upsert_field(table: &Table, requested: Option<&str>) -> Result<String, Response> {
    let requested = requested.filter(|f| !f.is_empty()).ok_or_else(|| {
        invalid_job(format!(
            "External ID was blank for {}. An External ID must be specified for upsert.",
            table.spec.name
        ))
    })?;
    table
        .spec
        .find_field(requested)
        .filter(|f| f.external_id)
        .map(|f| f.name.clone())
        .ok_or_else(|| {
            invalid_job(format!(
                "The field {requested} is not an external id field on {}",
                table.spec.name
            ))
        })
}

/// `POST /jobs/ingest`.
pub(crate) async fn create_job(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    body: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(err) => return json_parser_error(err),
    };
    match new_job(&shared, &version, &body) {
        Ok(job) => {
            let info = job.info();
            shared.salesforce.jobs.lock().insert(job.id.clone(), job);
            (StatusCode::OK, Json(info)).into_response()
        }
        Err(response) => response,
    }
}

/// `GET /jobs/ingest`.
pub(crate) async fn list_jobs(State(shared): State<Arc<Shared>>) -> Response {
    let records = job_infos(&shared);
    let body = json!({ "done": true, "records": records, "nextRecordsUrl": null });
    (StatusCode::OK, Json(body)).into_response()
}

/// Every job's JobInfo, in creation order.
pub(crate) fn job_infos(shared: &Shared) -> Vec<Value> {
    shared
        .salesforce
        .jobs
        .lock()
        .values()
        .map(BulkJob::info)
        .collect()
}

/// `GET /jobs/ingest/{job}`.
pub(crate) async fn get_job(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
) -> Response {
    match shared.salesforce.jobs.lock().get(&job_id) {
        Some(job) => (StatusCode::OK, Json(job.info())).into_response(),
        None => not_found(),
    }
}

/// `PUT /jobs/ingest/{job}/batches`: the one CSV upload of an Open job.
pub(crate) async fn upload(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut jobs = shared.salesforce.jobs.lock();
    let Some(job) = jobs.get_mut(&job_id) else {
        return not_found();
    };
    if job.state != JobState::Open {
        return invalid_state(job, "upload data to");
    }
    if job.csv.is_some() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "BULK_API_ERROR",
            format!("Found multiple contents for job: <{job_id}>, please 'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make sure you only do 'PUT' once on a given Job."),
        );
    }
    match String::from_utf8(body.to_vec()) {
        Ok(text) => {
            job.csv = Some(text);
            job.modified = Utc::now();
            StatusCode::CREATED.into_response()
        }
        Err(_) => api_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            "CSV data must be UTF-8",
        ),
    }
}

/// `PATCH /jobs/ingest/{job}` with `{"state": "UploadComplete" | "Aborted"}`.
pub(crate) async fn patch_job(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(err) => return json_parser_error(err),
    };
    let requested = str_field(&body, "state").unwrap_or_default().to_owned();
    let response = {
        let mut jobs = shared.salesforce.jobs.lock();
        let Some(job) = jobs.get_mut(&job_id) else {
            return not_found();
        };
        match requested.as_str() {
            "UploadComplete" if job.state == JobState::Open => {
                job.set_state(JobState::UploadComplete)
            }
            "Aborted" if !job.state.is_terminal() => {
                job.set_state(JobState::Aborted);
                job.unprocessed = pending_rows(job);
            }
            "UploadComplete" | "Aborted" => {
                return invalid_state(job, &format!("set state {requested} on"))
            }
            _ => {
                return invalid_job(format!(
                    "state {requested:?} is not UploadComplete or Aborted"
                ))
            }
        }
        (StatusCode::OK, Json(job.info())).into_response()
    };
    if requested == "UploadComplete" {
        spawn_processing(&shared, job_id);
    }
    response
}

/// `DELETE /jobs/ingest/{job}`: 204 once the job is closed or finished.
pub(crate) async fn delete_job(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
) -> Response {
    let mut jobs = shared.salesforce.jobs.lock();
    let Some(job) = jobs.get(&job_id) else {
        return not_found();
    };
    if matches!(job.state, JobState::Open | JobState::InProgress) {
        return invalid_state(job, "delete");
    }
    jobs.remove(&job_id);
    StatusCode::NO_CONTENT.into_response()
}

/// Adds the three result routes, with and without the trailing slash the docs
/// show. The result name matches case-insensitively, as Salesforce's does
/// (the docs spell `unprocessedrecords`, simple-salesforce `unprocessedRecords`).
pub(crate) fn result_routes(router: Router<Arc<Shared>>, data: &str) -> Router<Arc<Shared>> {
    let base = format!("{data}/jobs/ingest/{{job}}");
    router
        .route(&format!("{base}/{{result}}"), get(named_results))
        .route(&format!("{base}/{{result}}/"), get(named_results))
}

#[derive(Debug, Clone, Copy)]
enum ResultKind {
    Successful,
    Failed,
    Unprocessed,
}

impl ResultKind {
    fn from_path(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "successfulresults" => Some(ResultKind::Successful),
            "failedresults" => Some(ResultKind::Failed),
            "unprocessedrecords" => Some(ResultKind::Unprocessed),
            _ => None,
        }
    }
}

async fn named_results(
    state: State<Arc<Shared>>,
    Path((version, job_id, result)): Path<(String, String, String)>,
) -> Response {
    match ResultKind::from_path(&result) {
        Some(kind) => results(state, Path((version, job_id)), kind),
        None => not_found(),
    }
}

fn results(
    State(shared): State<Arc<Shared>>,
    Path((_version, job_id)): Path<(String, String)>,
    kind: ResultKind,
) -> Response {
    let jobs = shared.salesforce.jobs.lock();
    let Some(job) = jobs.get(&job_id) else {
        return not_found();
    };
    let (header, rows) = match kind {
        ResultKind::Unprocessed if job.state.is_terminal() => {
            (job.header.clone(), job.unprocessed.clone())
        }
        ResultKind::Unprocessed => {
            let (header, rows) = parse_for_listing(job);
            (header, rows)
        }
        _ if job.state != JobState::JobComplete && job.state != JobState::Failed => {
            return invalid_state(job, "get results of");
        }
        ResultKind::Successful => (
            prefixed(&["sf__Id", "sf__Created"], &job.header),
            job.successful.clone(),
        ),
        ResultKind::Failed => (
            prefixed(&["sf__Id", "sf__Error"], &job.header),
            job.failed_rows.clone(),
        ),
    };
    match write_csv(job, &header, &rows) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/csv")], text).into_response(),
        Err(err) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            format!("writing results CSV: {err:#}"),
        ),
    }
}

fn prefixed(first: &[&str], header: &[String]) -> Vec<String> {
    first
        .iter()
        .map(|s| (*s).to_owned())
        .chain(header.iter().cloned())
        .collect()
}

/// Rows uploaded but not yet processed (for an unfinished job).
fn parse_for_listing(job: &BulkJob) -> (Vec<String>, Vec<Vec<String>>) {
    match job
        .csv
        .as_deref()
        .map(|csv| parse_csv(csv, &job.column_delimiter))
    {
        Some(Ok((header, rows))) => (header, rows),
        _ => (Vec::new(), Vec::new()),
    }
}

fn pending_rows(job: &BulkJob) -> Vec<Vec<String>> {
    parse_for_listing(job).1
}

/// Writes a CSV with every field quoted, in the job's delimiter and line ending.
fn write_csv(job: &BulkJob, header: &[String], rows: &[Vec<String>]) -> anyhow::Result<String> {
    let terminator = if job.line_ending == "CRLF" {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    };
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .delimiter(delimiter_byte(&job.column_delimiter).unwrap_or(b','))
        .terminator(terminator)
        .from_writer(Vec::new());
    if !header.is_empty() {
        writer.write_record(header)?;
    }
    for row in rows {
        writer.write_record(row)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("flushing CSV: {e}"))?;
    Ok(String::from_utf8(bytes)?)
}

fn parse_csv(csv_text: &str, delimiter: &str) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter_byte(delimiter).unwrap_or(b','))
        .has_headers(true)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let rows = reader
        .records()
        .map(|r| r.map(|rec| rec.iter().map(str::to_owned).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()?;
    Ok((header, rows))
}

/// Runs the job's state machine in the background after UploadComplete.
fn spawn_processing(shared: &Arc<Shared>, job_id: String) {
    let delay = *shared.salesforce.bulk_delay.lock();
    let task_shared = shared.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if !advance(
            &task_shared,
            &job_id,
            JobState::UploadComplete,
            JobState::InProgress,
        ) {
            return;
        }
        tokio::time::sleep(delay).await;
        process(&task_shared, &job_id);
    });
    let mut tasks = shared.salesforce.tasks.lock();
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
}

/// Moves a job from `from` to `to`; false if it is gone or was aborted meanwhile.
fn advance(shared: &Shared, job_id: &str, from: JobState, to: JobState) -> bool {
    let mut jobs = shared.salesforce.jobs.lock();
    match jobs.get_mut(job_id) {
        Some(job) if job.state == from => {
            job.set_state(to);
            true
        }
        _ => false,
    }
}

/// Stops background processing (on shutdown).
pub(crate) fn abort_processing(shared: &Shared) {
    for task in shared.salesforce.tasks.lock().drain(..) {
        task.abort();
    }
}

/// Why a whole job failed.
struct JobFailure(String);

/// Processes an InProgress job's rows against the store and records the results.
fn process(shared: &Shared, job_id: &str) {
    let started = Instant::now();
    let Some(job) = shared.salesforce.jobs.lock().get(job_id).cloned() else {
        return;
    };
    if job.state != JobState::InProgress {
        return;
    }
    let forced = shared.salesforce.bulk_failure.lock().clone();
    let outcome = match forced {
        Some(message) => Err(JobFailure(message)),
        None => run_rows(shared, &job),
    };
    let mut jobs = shared.salesforce.jobs.lock();
    let Some(stored) = jobs.get_mut(job_id) else {
        return;
    };
    if stored.state != JobState::InProgress {
        return;
    }
    stored.processing_ms = elapsed_ms(started);
    match outcome {
        Ok(done) => {
            stored.header = done.header;
            stored.processed = (done.successful.len() + done.failed.len()) as u64;
            stored.failed = done.failed.len() as u64;
            stored.successful = done.successful;
            stored.failed_rows = done.failed;
            stored.set_state(JobState::JobComplete);
        }
        Err(JobFailure(message)) => {
            let (header, rows) = parse_for_listing(stored);
            stored.header = header;
            stored.unprocessed = rows;
            stored.error_message = Some(message);
            stored.set_state(JobState::Failed);
        }
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Result rows of a processed job.
struct Processed {
    header: Vec<String>,
    successful: Vec<Vec<String>>,
    failed: Vec<Vec<String>>,
}

fn run_rows(shared: &Shared, job: &BulkJob) -> Result<Processed, JobFailure> {
    let csv_text = job.csv.as_deref().unwrap_or_default();
    if csv_text.trim().is_empty() {
        return Ok(Processed {
            header: Vec::new(),
            successful: Vec::new(),
            failed: Vec::new(),
        });
    }
    let (header, rows) = parse_csv(csv_text, &job.column_delimiter)
        .map_err(|e| JobFailure(format!("InvalidBatch : Failed to parse CSV: {e}")))?;
    let mut store = shared.store.lock();
    let table = store.table_mut(&job.object).ok_or_else(|| {
        JobFailure(format!(
            "InvalidBatch : sObject type '{}' no longer exists",
            job.object
        ))
    })?;
    check_header(table, job, &header)?;
    let duplicates = duplicate_rows(job, &header, &rows);
    let mut done = Processed {
        header: header.clone(),
        successful: Vec::new(),
        failed: Vec::new(),
    };
    for (i, row) in rows.iter().enumerate() {
        let outcome = match duplicates.get(&i) {
            Some(err) => Err(err.clone()),
            None => apply_row(shared, table, job, &header, row),
        };
        match outcome {
            Ok(saved) => done
                .successful
                .push(with_prefix(&[&saved.id, &saved.created.to_string()], row)),
            Err(err) => {
                let id = failed_row_id(job, &header, row);
                done.failed.push(with_prefix(&[&id, &err.bulk_text()], row));
            }
        }
    }
    Ok(done)
}

fn with_prefix(first: &[&str], row: &[String]) -> Vec<String> {
    first
        .iter()
        .map(|s| (*s).to_owned())
        .chain(row.iter().cloned())
        .collect()
}

/// Every column must be a field of the object (delete jobs: only `Id`), and the
/// operation's key column must be present.
fn check_header(table: &Table, job: &BulkJob, header: &[String]) -> Result<(), JobFailure> {
    let deleting = matches!(job.operation, Operation::Delete | Operation::HardDelete);
    for column in header {
        let known = if deleting {
            column.eq_ignore_ascii_case("Id")
        } else {
            column.eq_ignore_ascii_case("Id") || table.spec.find_field(column).is_some()
        };
        if !known {
            return Err(JobFailure(format!(
                "InvalidBatch : Field name not found : {column}"
            )));
        }
    }
    let key = match job.operation {
        Operation::Insert => None,
        Operation::Upsert => job.external_id_field.clone(),
        _ => Some("Id".to_owned()),
    };
    match key {
        Some(key) if !header.iter().any(|c| c.eq_ignore_ascii_case(&key)) => {
            Err(JobFailure(format!(
                "InvalidBatch : Field name not found : {key} (required for {})",
                job.operation.as_str()
            )))
        }
        _ => Ok(()),
    }
}

/// Rows of an upsert job whose external id appears more than once in the job.
fn duplicate_rows(
    job: &BulkJob,
    header: &[String],
    rows: &[Vec<String>],
) -> HashMap<usize, RecordError> {
    let (Operation::Upsert, Some(field)) = (job.operation, job.external_id_field.as_deref()) else {
        return HashMap::new();
    };
    let Some(col) = header.iter().position(|c| c.eq_ignore_ascii_case(field)) else {
        return HashMap::new();
    };
    let keys: Vec<Option<String>> = rows
        .iter()
        .map(|r| {
            r.get(col)
                .and_then(|v| index_key(&Value::String(v.clone())))
        })
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for key in keys.iter().flatten() {
        *counts.entry(key).or_default() += 1;
    }
    keys.iter()
        .enumerate()
        .filter(|(_, k)| {
            k.as_deref()
                .is_some_and(|k| counts.get(k).copied().unwrap_or(0) > 1)
        })
        .map(|(i, _)| {
            let value = Value::String(rows[i].get(col).cloned().unwrap_or_default());
            (i, ops::duplicate_in_request(field, &value))
        })
        .collect()
}

/// Converts a CSV row to a record: empty cells are left out, `#N/A` means null.
fn row_to_record(header: &[String], row: &[String]) -> Map<String, Value> {
    header
        .iter()
        .zip(row)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            let value = if v == "#N/A" {
                Value::Null
            } else {
                Value::String(v.clone())
            };
            (k.clone(), value)
        })
        .collect()
}

fn apply_row(
    shared: &Shared,
    table: &mut Table,
    job: &BulkJob,
    header: &[String],
    row: &[String],
) -> Result<ops::Saved, RecordError> {
    let record = row_to_record(header, row);
    let id = record
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Id"))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or_default()
        .to_owned();
    match job.operation {
        Operation::Insert => ops::create(shared, table, &record),
        Operation::Update => ops::update(table, &id, &record),
        Operation::Upsert => {
            let field = job.external_id_field.as_deref().unwrap_or_default();
            ops::upsert(shared, table, field, &record)
        }
        Operation::Delete | Operation::HardDelete => delete_row(table, &id),
    }
}

fn delete_row(table: &mut Table, id: &str) -> Result<ops::Saved, RecordError> {
    let id = ops::resolve_id(table, id)?;
    table.remove(&id);
    Ok(ops::Saved { id, created: false })
}

/// The `sf__Id` of a failed row: the row's own Id for update and delete jobs.
fn failed_row_id(job: &BulkJob, header: &[String], row: &[String]) -> String {
    if matches!(job.operation, Operation::Insert | Operation::Upsert) {
        return String::new();
    }
    header
        .iter()
        .position(|c| c.eq_ignore_ascii_case("Id"))
        .and_then(|i| row.get(i).cloned())
        .unwrap_or_default()
}
