//! Query jobs: the job registry, the jobs.query / getQueryResults / jobs.insert
//! / jobs.get / cancel endpoints, and running translated SQL on PostgreSQL.
//!
//! A job's whole result is read into memory, encoded as BigQuery's `f`/`v`
//! rows (TIMESTAMP held as int64 microseconds and rendered as float seconds
//! unless `useInt64Timestamp`), and handed out in pages of `maxResults` rows
//! (at most `max_page_rows`, and at most 10 MB) with the next row index as the
//! `pageToken`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};
use tokio::sync::watch;
use tokio_postgres::types::{Kind as PgKind, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::sql::{self, Kind, TableRef, Translated};
use super::BqError;
use crate::config::BigQuerySettings;
use crate::handle::Shared;
use crate::pg::connect;

/// How long jobs.query and getQueryResults wait for a job by default (`timeoutMs`).
const DEFAULT_WAIT_MS: u64 = 10_000;
/// BigQuery caps a getQueryResults page at about this many bytes.
const MAX_PAGE_BYTES: usize = 10 * 1024 * 1024;

/// The catalog view behind `dataset.INFORMATION_SCHEMA.COLUMNS` (with
/// BigQuery's type names) and `FROM_BASE64`.
pub(crate) const SETUP_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS bq_meta;
CREATE OR REPLACE FUNCTION bq_meta.type_name(t oid, typmod integer) RETURNS text LANGUAGE sql STABLE AS $$
SELECT CASE
  WHEN ty.typtype = 'c' THEN 'STRUCT'
  WHEN ty.typname IN ('int2', 'int4', 'int8') THEN 'INT64'
  WHEN ty.typname IN ('float4', 'float8') THEN 'FLOAT64'
  WHEN ty.typname = 'numeric' AND typmod >= 4 AND (((typmod - 4) >> 16) > 38 OR ((typmod - 4) & 65535) > 9) THEN 'BIGNUMERIC'
  WHEN ty.typname = 'numeric' THEN 'NUMERIC'
  WHEN ty.typname = 'bool' THEN 'BOOL'
  WHEN ty.typname = 'bytea' THEN 'BYTES'
  WHEN ty.typname = 'date' THEN 'DATE'
  WHEN ty.typname = 'timestamp' THEN 'DATETIME'
  WHEN ty.typname = 'time' THEN 'TIME'
  WHEN ty.typname = 'timestamptz' THEN 'TIMESTAMP'
  WHEN ty.typname IN ('json', 'jsonb') THEN 'JSON'
  WHEN ty.typname = 'interval' THEN 'INTERVAL'
  ELSE 'STRING' END
FROM pg_type ty WHERE ty.oid = t
$$;
CREATE OR REPLACE VIEW bq_meta.columns AS
SELECT n.nspname::text AS table_schema, c.relname::text AS table_name, a.attname::text AS column_name,
       a.attnum::bigint AS ordinal_position,
       CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable,
       CASE WHEN t.typcategory = 'A' THEN 'ARRAY<' || bq_meta.type_name(t.typelem, a.atttypmod) || '>'
            ELSE bq_meta.type_name(a.atttypid, a.atttypmod) END AS data_type
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relkind IN ('r', 'v', 'm', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'bq_meta');
CREATE OR REPLACE FUNCTION from_base64(t text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$ SELECT decode(t, 'base64') $$;
"#;

/// One result column: BigQuery's `TableFieldSchema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: String,
    pub kind: &'static str,
    pub mode: &'static str,
    pub fields: Vec<Field>,
    /// The PostgreSQL type, for building the query that reads it.
    pg: Type,
}

impl Field {
    fn to_json(&self) -> JsonValue {
        let mut field = json!({"name": self.name, "type": self.kind, "mode": self.mode});
        if !self.fields.is_empty() {
            field["fields"] = self.fields.iter().map(Field::to_json).collect();
        }
        field
    }

    fn repeated(&self) -> bool {
        self.mode == "REPEATED"
    }
}

/// What a finished job holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueryResult {
    pub fields: Option<Vec<Field>>,
    /// `{"f": [{"v": …}]}` rows, TIMESTAMP values as int64 microseconds.
    pub rows: Vec<JsonValue>,
    pub bytes_processed: u64,
    pub statement_type: &'static str,
    pub dml_affected: Option<u64>,
}

/// What a query runs with.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub sql: String,
    pub default_dataset: Option<String>,
    pub dry_run: bool,
    pub maximum_bytes_billed: Option<u64>,
    pub location: String,
}

#[derive(Debug, Clone)]
enum Status {
    Running,
    Done(Arc<QueryResult>),
    Failed(BqError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct JobRef {
    project: String,
    job_id: String,
    location: String,
}

impl JobRef {
    fn to_json(&self) -> JsonValue {
        json!({"projectId": self.project, "jobId": self.job_id, "location": self.location})
    }
}

#[derive(Debug)]
struct Job {
    reference: JobRef,
    run: Run,
    created_ms: u64,
    status: watch::Receiver<Status>,
    sender: Arc<watch::Sender<Status>>,
    task: Option<tokio::task::AbortHandle>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    by_request: HashMap<String, String>,
    submitted: Vec<String>,
}

/// Every job the emulator has run, by id.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    inner: Mutex<Inner>,
}

impl Jobs {
    pub fn submitted(&self) -> Vec<String> {
        self.inner.lock().submitted.clone()
    }

    fn lookup(&self, job_id: &str) -> Option<(JobRef, Run, u64, watch::Receiver<Status>)> {
        self.inner.lock().jobs.get(job_id).map(|job| {
            (
                job.reference.clone(),
                job.run.clone(),
                job.created_ms,
                job.status.clone(),
            )
        })
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// `defaultDataset`: `{projectId, datasetId}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DatasetReference {
    #[serde(default)]
    dataset_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FormatOptions {
    #[serde(default)]
    use_int64_timestamp: bool,
}

/// A jobs.query body (fields the emulator does not use are accepted and ignored,
/// as BigQuery does).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest {
    #[serde(default)]
    query: String,
    #[serde(default)]
    use_legacy_sql: Option<bool>,
    #[serde(default)]
    max_results: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    maximum_bytes_billed: Option<JsonValue>,
    #[serde(default)]
    default_dataset: Option<DatasetReference>,
    #[serde(default)]
    format_options: Option<FormatOptions>,
    #[serde(default)]
    request_id: Option<String>,
}

/// An int64 field: JSON carries it as a string, clients sometimes as a number.
fn int64(value: &Option<JsonValue>, name: &str) -> Result<Option<u64>, BqError> {
    match value {
        None | Some(JsonValue::Null) => Ok(None),
        Some(JsonValue::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| BqError::invalid(format!("Invalid value for {name}: {n}"))),
        Some(JsonValue::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| BqError::invalid(format!("Invalid value for {name}: {s:?}"))),
        Some(other) => Err(BqError::invalid(format!(
            "Invalid value for {name}: {other}"
        ))),
    }
}

fn check_project(shared: &Shared, project: &str) -> Result<BigQuerySettings, BqError> {
    let settings = shared.bigquery.settings.lock().clone();
    if project != settings.project {
        return Err(BqError::access_denied(format!(
            "Access Denied: Project {project}: User does not have bigquery.jobs.create permission in project {project}."
        )));
    }
    Ok(settings)
}

fn legacy_sql_refused(use_legacy_sql: Option<bool>) -> Result<(), BqError> {
    if use_legacy_sql == Some(true) {
        return Err(BqError::invalid_query(
            "The emulator runs GoogleSQL only: send useLegacySql: false",
        ));
    }
    Ok(())
}

/// `POST /bigquery/v2/projects/{project}/queries` (jobs.query).
pub(crate) async fn query(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    body: Bytes,
) -> Response {
    match query_inner(&shared, &project, &body).await {
        Ok(response) => response,
        Err(err) => err.response(),
    }
}

async fn query_inner(
    shared: &Arc<Shared>,
    project: &str,
    body: &[u8],
) -> Result<Response, BqError> {
    let settings = check_project(shared, project)?;
    let request: QueryRequest = serde_json::from_slice(body)
        .map_err(|e| BqError::invalid(format!("Invalid JSON payload received. {e}")))?;
    legacy_sql_refused(request.use_legacy_sql)?;
    let run = Run {
        sql: request.query.clone(),
        default_dataset: request
            .default_dataset
            .as_ref()
            .map(|d| d.dataset_id.clone()),
        dry_run: request.dry_run,
        maximum_bytes_billed: int64(&request.maximum_bytes_billed, "maximumBytesBilled")?,
        location: request
            .location
            .clone()
            .unwrap_or(settings.location.clone()),
    };
    let use_int64 = request
        .format_options
        .as_ref()
        .is_some_and(|f| f.use_int64_timestamp);
    if run.dry_run {
        let result = dry_run(shared, &settings, &run).await?;
        return Ok(Json(json!({
            "kind": "bigquery#queryResponse",
            "schema": {"fields": fields_json(&result)},
            "jobReference": {"projectId": project, "location": run.location},
            "totalBytesProcessed": result.bytes_processed.to_string(),
            "jobComplete": true,
            "cacheHit": false,
        }))
        .into_response());
    }
    let job_id = match request.request_id.as_ref().and_then(|id| {
        shared
            .bigquery
            .jobs
            .inner
            .lock()
            .by_request
            .get(id)
            .cloned()
    }) {
        Some(existing) => existing,
        None => start(
            shared,
            project,
            format!("job_{}", shared.random_alnum(26)),
            run,
            request.request_id.clone(),
        )?,
    };
    let wait = Duration::from_millis(request.timeout_ms.unwrap_or(DEFAULT_WAIT_MS));
    results_response(
        shared,
        &job_id,
        wait,
        0,
        request.max_results,
        use_int64,
        "bigquery#queryResponse",
    )
    .await
}

async fn dry_run(
    shared: &Shared,
    settings: &BigQuerySettings,
    run: &Run,
) -> Result<QueryResult, BqError> {
    shared
        .bigquery
        .jobs
        .inner
        .lock()
        .submitted
        .push(run.sql.clone());
    let pg = pg_config(shared)?;
    execute(&pg, settings, run).await
}

fn pg_config(shared: &Shared) -> Result<tokio_postgres::Config, BqError> {
    shared
        .bigquery
        .pg
        .lock()
        .clone()
        .ok_or_else(|| BqError::internal("the emulator has no PostgreSQL connection"))
}

/// Registers a job and runs it in the background; returns its id.
fn start(
    shared: &Arc<Shared>,
    project: &str,
    job_id: String,
    run: Run,
    request_id: Option<String>,
) -> Result<String, BqError> {
    let pg = pg_config(shared)?;
    let settings = shared.bigquery.settings.lock().clone();
    let (sender, status) = watch::channel(Status::Running);
    let sender = Arc::new(sender);
    let mut inner = shared.bigquery.jobs.inner.lock();
    if inner.jobs.contains_key(&job_id) {
        return Err(BqError::new(
            StatusCode::CONFLICT,
            "duplicate",
            format!("Already Exists: Job {project}:{}.{job_id}", run.location),
        ));
    }
    let task = {
        let sender = sender.clone();
        let run = run.clone();
        tokio::spawn(async move {
            tokio::time::sleep(settings.execution_delay).await;
            let outcome = match execute(&pg, &settings, &run).await {
                Ok(result) => Status::Done(Arc::new(result)),
                Err(err) => Status::Failed(err),
            };
            // A cancel that came first keeps its status.
            sender.send_if_modified(|current| {
                let running = matches!(current, Status::Running);
                if running {
                    *current = outcome;
                }
                running
            });
        })
    };
    inner.submitted.push(run.sql.clone());
    if let Some(id) = request_id {
        inner.by_request.insert(id, job_id.clone());
    }
    let reference = JobRef {
        project: project.to_owned(),
        job_id: job_id.clone(),
        location: run.location.clone(),
    };
    inner.jobs.insert(
        job_id.clone(),
        Job {
            reference,
            run,
            created_ms: now_millis(),
            status,
            sender,
            task: Some(task.abort_handle()),
        },
    );
    Ok(job_id)
}

fn job_not_found(project: &str, location: &str, job_id: &str) -> BqError {
    BqError::not_found(format!("Not found: Job {project}:{location}.{job_id}"))
}

/// The job, if it exists in `project` (and `location`, when one is given).
fn find_job(
    shared: &Shared,
    project: &str,
    job_id: &str,
    location: Option<&str>,
) -> Result<(JobRef, Run, u64, watch::Receiver<Status>), BqError> {
    let settings_location = shared.bigquery.settings.lock().location.clone();
    let shown_location = location.unwrap_or(&settings_location);
    let found = shared
        .bigquery
        .jobs
        .lookup(job_id)
        .filter(|(reference, ..)| reference.project == project)
        .filter(|(reference, ..)| {
            location.is_none_or(|l| l.eq_ignore_ascii_case(&reference.location))
        });
    found.ok_or_else(|| job_not_found(project, shown_location, job_id))
}

/// A page of a finished job, an error for a failed one, or `jobComplete: false`.
async fn results_response(
    shared: &Shared,
    job_id: &str,
    wait: Duration,
    start_index: usize,
    max_results: Option<u64>,
    use_int64: bool,
    kind: &str,
) -> Result<Response, BqError> {
    let (reference, _, _, mut status) = shared
        .bigquery
        .jobs
        .lookup(job_id)
        .ok_or_else(|| BqError::internal(format!("job {job_id} vanished")))?;
    let wait = wait.min(shared.bigquery.settings.lock().max_wait);
    let _ = tokio::time::timeout(wait, status.wait_for(|s| !matches!(s, Status::Running))).await;
    let current = status.borrow().clone();
    match current {
        Status::Running => Ok(Json(json!({
            "kind": kind,
            "jobReference": reference.to_json(),
            "jobComplete": false,
        }))
        .into_response()),
        Status::Failed(err) => Err(err),
        Status::Done(result) => {
            let settings_max = shared.bigquery.settings.lock().max_page_rows;
            let max = max_results.map_or(settings_max, |m| (m as usize).min(settings_max));
            Ok(Json(page(kind, &reference, &result, start_index, max, use_int64)).into_response())
        }
    }
}

fn fields_json(result: &QueryResult) -> JsonValue {
    result
        .fields
        .as_ref()
        .map(|fields| fields.iter().map(Field::to_json).collect())
        .unwrap_or_else(|| json!([]))
}

/// A page of rows from `start`, at most `max` rows and [`MAX_PAGE_BYTES`].
fn page(
    kind: &str,
    reference: &JobRef,
    result: &QueryResult,
    start: usize,
    max: usize,
    use_int64: bool,
) -> JsonValue {
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut next = start;
    while next < result.rows.len() && rows.len() < max {
        let row = match (&result.fields, use_int64) {
            (Some(fields), false) => float_timestamps_row(fields, &result.rows[next]),
            _ => result.rows[next].clone(),
        };
        bytes += row.to_string().len();
        if !rows.is_empty() && bytes > MAX_PAGE_BYTES {
            break;
        }
        rows.push(row);
        next += 1;
    }
    let mut body = json!({
        "kind": kind,
        "jobReference": reference.to_json(),
        "totalRows": result.rows.len().to_string(),
        "totalBytesProcessed": result.bytes_processed.to_string(),
        "jobComplete": true,
        "cacheHit": false,
    });
    if let Some(fields) = &result.fields {
        body["schema"] = json!({"fields": fields.iter().map(Field::to_json).collect::<Vec<_>>()});
    }
    if !rows.is_empty() {
        body["rows"] = JsonValue::Array(rows);
    }
    if max > 0 && next < result.rows.len() {
        body["pageToken"] = json!(next.to_string());
    }
    if let Some(affected) = result.dml_affected {
        body["numDmlAffectedRows"] = json!(affected.to_string());
    }
    body
}

/// A row with its TIMESTAMP values (int64 µs) as float seconds in BigQuery's
/// exponent form (`1.620151693299E9`), the default encoding.
fn float_timestamps_row(fields: &[Field], row: &JsonValue) -> JsonValue {
    let cells = row["f"].as_array().cloned().unwrap_or_default();
    let converted: Vec<JsonValue> = fields
        .iter()
        .zip(cells)
        .map(|(field, cell)| json!({"v": float_timestamps(field, &cell["v"])}))
        .collect();
    json!({"f": converted})
}

fn float_timestamps(field: &Field, v: &JsonValue) -> JsonValue {
    if field.repeated() {
        let element = Field {
            mode: "NULLABLE",
            ..field.clone()
        };
        let items = v.as_array().cloned().unwrap_or_default();
        return items
            .iter()
            .map(|item| json!({"v": float_timestamps(&element, &item["v"])}))
            .collect();
    }
    match (field.kind, v) {
        ("RECORD", JsonValue::Object(_)) => float_timestamps_row(&field.fields, v),
        ("TIMESTAMP", JsonValue::String(micros)) => match micros.parse::<i64>() {
            Ok(micros) => json!(format!("{:E}", micros as f64 / 1e6)),
            Err(_) => v.clone(),
        },
        _ => v.clone(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResultsParams {
    #[serde(default, rename = "pageToken")]
    page_token: Option<String>,
    #[serde(default, rename = "startIndex")]
    start_index: Option<String>,
    #[serde(default, rename = "maxResults")]
    max_results: Option<u64>,
    #[serde(default, rename = "timeoutMs")]
    timeout_ms: Option<u64>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default, rename = "formatOptions.useInt64Timestamp")]
    use_int64_timestamp: Option<String>,
}

/// `GET /bigquery/v2/projects/{project}/queries/{job}` (getQueryResults).
pub(crate) async fn get_query_results(
    State(shared): State<Arc<Shared>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(params): Query<ResultsParams>,
) -> Response {
    let outcome = async {
        check_project(&shared, &project)?;
        find_job(&shared, &project, &job_id, params.location.as_deref())?;
        let start = match (&params.page_token, &params.start_index) {
            (Some(token), _) => token
                .parse::<usize>()
                .map_err(|_| BqError::invalid(format!("Invalid page token: {token}")))?,
            (None, Some(index)) => index
                .parse::<usize>()
                .map_err(|_| BqError::invalid(format!("Invalid startIndex: {index}")))?,
            (None, None) => 0,
        };
        let use_int64 = params.use_int64_timestamp.as_deref() == Some("true");
        let wait = Duration::from_millis(params.timeout_ms.unwrap_or(DEFAULT_WAIT_MS));
        results_response(
            &shared,
            &job_id,
            wait,
            start,
            params.max_results,
            use_int64,
            "bigquery#getQueryResultsResponse",
        )
        .await
    }
    .await;
    outcome.unwrap_or_else(|err| err.response())
}

/// A jobs.insert body: a query job (`configuration.query`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobInsert {
    #[serde(default)]
    job_reference: Option<InsertReference>,
    #[serde(default)]
    configuration: JobConfiguration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InsertReference {
    #[serde(default)]
    job_id: Option<String>,
    #[serde(default)]
    location: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobConfiguration {
    #[serde(default)]
    query: Option<QueryConfiguration>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryConfiguration {
    #[serde(default)]
    query: String,
    #[serde(default)]
    use_legacy_sql: Option<bool>,
    #[serde(default)]
    default_dataset: Option<DatasetReference>,
    #[serde(default)]
    maximum_bytes_billed: Option<JsonValue>,
}

/// `POST /bigquery/v2/projects/{project}/jobs` (jobs.insert of a query job).
pub(crate) async fn insert(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    body: Bytes,
) -> Response {
    let outcome = async {
        let settings = check_project(&shared, &project)?;
        let request: JobInsert = serde_json::from_slice(&body)
            .map_err(|e| BqError::invalid(format!("Invalid JSON payload received. {e}")))?;
        let Some(config) = request.configuration.query else {
            return Err(BqError::invalid(
                "The emulator runs query jobs only (configuration.query)",
            ));
        };
        legacy_sql_refused(config.use_legacy_sql)?;
        let reference = request.job_reference.unwrap_or_default();
        let run = Run {
            sql: config.query,
            default_dataset: config.default_dataset.map(|d| d.dataset_id),
            dry_run: request.configuration.dry_run,
            maximum_bytes_billed: int64(&config.maximum_bytes_billed, "maximumBytesBilled")?,
            location: reference.location.unwrap_or(settings.location.clone()),
        };
        let job_id = reference
            .job_id
            .unwrap_or_else(|| format!("job_{}", shared.random_alnum(26)));
        if run.dry_run {
            let result = dry_run(&shared, &settings, &run).await?;
            let reference = JobRef {
                project: project.clone(),
                job_id,
                location: run.location.clone(),
            };
            let status = Status::Done(Arc::new(result));
            return Ok(job_resource(&reference, &run, now_millis(), &status));
        }
        let job_id = start(&shared, &project, job_id, run, None)?;
        job_json(&shared, &project, &job_id, None)
    }
    .await;
    match outcome {
        Ok(job) => Json(job).into_response(),
        Err(err) => err.response(),
    }
}

fn job_json(
    shared: &Shared,
    project: &str,
    job_id: &str,
    location: Option<&str>,
) -> Result<JsonValue, BqError> {
    let (reference, run, created, status) = find_job(shared, project, job_id, location)?;
    let current = status.borrow().clone();
    Ok(job_resource(&reference, &run, created, &current))
}

/// BigQuery's `Job` resource.
fn job_resource(reference: &JobRef, run: &Run, created_ms: u64, status: &Status) -> JsonValue {
    let mut query_config = json!({"query": run.sql, "useLegacySql": false});
    if let Some(limit) = run.maximum_bytes_billed {
        query_config["maximumBytesBilled"] = json!(limit.to_string());
    }
    let mut configuration = json!({"query": query_config, "jobType": "QUERY"});
    if run.dry_run {
        configuration["dryRun"] = json!(true);
    }
    let mut statistics =
        json!({"creationTime": created_ms.to_string(), "startTime": created_ms.to_string()});
    let state = match status {
        Status::Running => json!({"state": "RUNNING"}),
        Status::Failed(err) => {
            json!({"state": "DONE", "errorResult": err.item(), "errors": [err.item()]})
        }
        Status::Done(result) => {
            let bytes = result.bytes_processed.to_string();
            statistics["endTime"] = json!(now_millis().to_string());
            statistics["totalBytesProcessed"] = json!(bytes);
            let mut query = json!({
                "totalBytesProcessed": bytes,
                "totalBytesBilled": bytes,
                "cacheHit": false,
                "statementType": result.statement_type,
            });
            if result.fields.is_some() {
                query["schema"] = json!({"fields": fields_json(result)});
            }
            if let Some(affected) = result.dml_affected {
                query["numDmlAffectedRows"] = json!(affected.to_string());
            }
            statistics["query"] = query;
            json!({"state": "DONE"})
        }
    };
    json!({
        "kind": "bigquery#job",
        "id": format!("{}:{}.{}", reference.project, reference.location, reference.job_id),
        "jobReference": reference.to_json(),
        "configuration": configuration,
        "statistics": statistics,
        "status": state,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct LocationParam {
    #[serde(default)]
    location: Option<String>,
}

/// `GET /bigquery/v2/projects/{project}/jobs/{job}` (jobs.get).
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(params): Query<LocationParam>,
) -> Response {
    match check_project(&shared, &project)
        .and_then(|_| job_json(&shared, &project, &job_id, params.location.as_deref()))
    {
        Ok(job) => Json(job).into_response(),
        Err(err) => err.response(),
    }
}

/// `POST /bigquery/v2/projects/{project}/jobs/{job}/cancel`: a running job
/// ends with `stopped`.
pub(crate) async fn cancel(
    State(shared): State<Arc<Shared>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(params): Query<LocationParam>,
) -> Response {
    let outcome = check_project(&shared, &project).and_then(|_| {
        find_job(&shared, &project, &job_id, params.location.as_deref())?;
        let (sender, task) = {
            let inner = shared.bigquery.jobs.inner.lock();
            let job = &inner.jobs[&job_id];
            (job.sender.clone(), job.task.clone())
        };
        let stopped = sender.send_if_modified(|current| {
            let running = matches!(current, Status::Running);
            if running {
                *current = Status::Failed(BqError::new(
                    StatusCode::BAD_REQUEST,
                    "stopped",
                    "Job execution was cancelled: User requested cancellation",
                ));
            }
            running
        });
        if let (true, Some(task)) = (stopped, task) {
            task.abort();
        }
        job_json(&shared, &project, &job_id, None)
    });
    match outcome {
        Ok(job) => Json(json!({"kind": "bigquery#jobCancelResponse", "job": job})).into_response(),
        Err(err) => err.response(),
    }
}

fn unavailable(err: &tokio_postgres::Error) -> BqError {
    BqError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "backendError",
        format!("The emulator cannot reach its PostgreSQL: {err}"),
    )
}

/// Runs `run` (every statement, in one session) and returns the last result.
pub(crate) async fn execute(
    pg: &tokio_postgres::Config,
    settings: &BigQuerySettings,
    run: &Run,
) -> Result<QueryResult, BqError> {
    let ctx = sql::Context {
        project: settings.project.clone(),
        default_dataset: run.default_dataset.clone(),
    };
    let statements = sql::translate(&run.sql, &ctx)?;
    let client = connect(pg).await.map_err(|e| unavailable(&e))?;
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'sql_standard'; SET bytea_output = 'hex'; SET extra_float_digits = 1",
        )
        .await
        .map_err(|e| unavailable(&e))?;
    let failure = |e: tokio_postgres::Error| pg_error(&e, &run.sql, settings, &run.location);
    let mut last = QueryResult::default();
    for statement in &statements {
        check_tables(&client, settings, run, statement).await?;
        if run.dry_run && statement.kind != Kind::Query {
            continue;
        }
        for prelude in &statement.prelude {
            client.batch_execute(prelude).await.map_err(failure)?;
        }
        last = match statement.kind {
            Kind::Query => query_rows(&client, run, statement)
                .await
                .map_err(|e| match e {
                    Failure::Pg(e) => failure(e),
                    Failure::Bq(e) => e,
                })?,
            Kind::Dml => {
                let affected = client
                    .execute(statement.sql.as_str(), &[])
                    .await
                    .map_err(failure)?;
                QueryResult {
                    statement_type: "DML",
                    dml_affected: Some(affected),
                    ..QueryResult::default()
                }
            }
            Kind::Ddl => {
                client
                    .batch_execute(&statement.sql)
                    .await
                    .map_err(failure)?;
                QueryResult {
                    statement_type: "DDL",
                    ..QueryResult::default()
                }
            }
        };
    }
    Ok(last)
}

enum Failure {
    Pg(tokio_postgres::Error),
    Bq(BqError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<BqError> for Failure {
    fn from(e: BqError) -> Self {
        Failure::Bq(e)
    }
}

fn dataset_not_found(settings: &BigQuerySettings, dataset: &str, location: &str) -> BqError {
    BqError::not_found(format!(
        "Not found: Dataset {}:{dataset} was not found in location {location}",
        settings.project
    ))
}

/// Every named dataset must exist in the job's location, and (for queries
/// and DML) every table in its dataset.
async fn check_tables(
    client: &Client,
    settings: &BigQuerySettings,
    run: &Run,
    statement: &Translated,
) -> Result<(), BqError> {
    for TableRef { dataset, table } in &statement.tables {
        let located = run.location.eq_ignore_ascii_case(&settings.location);
        let exists = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[dataset],
            )
            .await
            .map_err(|e| unavailable(&e))?
            .get::<_, bool>(0);
        if !exists || !located {
            return Err(dataset_not_found(settings, dataset, &run.location));
        }
        if statement.kind == Kind::Ddl {
            continue;
        }
        let qualified = format!(
            "\"{}\".\"{}\"",
            dataset.replace('"', "\"\""),
            table.replace('"', "\"\"")
        );
        let found = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
            .await
            .map_err(|e| unavailable(&e))?
            .get::<_, bool>(0);
        if !found {
            return Err(BqError::not_found(format!(
                "Not found: Table {}:{dataset}.{table} was not found in location {}",
                settings.project, run.location
            )));
        }
    }
    Ok(())
}

/// Bytes a query processes: the size of the referenced tables' rows.
async fn bytes_processed(
    client: &Client,
    tables: &[TableRef],
) -> Result<u64, tokio_postgres::Error> {
    let mut total = 0u64;
    for TableRef { dataset, table } in tables {
        let sql = format!(
            "SELECT coalesce(sum(pg_column_size(t.*)), 0)::bigint FROM \"{}\".\"{}\" t",
            dataset.replace('"', "\"\""),
            table.replace('"', "\"\"")
        );
        total += client
            .query_one(sql.as_str(), &[])
            .await?
            .get::<_, i64>(0)
            .max(0) as u64;
    }
    Ok(total)
}

async fn query_rows(
    client: &Client,
    run: &Run,
    statement: &Translated,
) -> Result<QueryResult, Failure> {
    let bytes = bytes_processed(client, &statement.tables).await?;
    if let Some(limit) = run.maximum_bytes_billed {
        if bytes > limit {
            return Err(BqError::new(
                StatusCode::BAD_REQUEST,
                "bytesBilledLimitExceeded",
                format!(
                    "Query exceeded limit for bytes billed: {limit}. {bytes} or higher required."
                ),
            )
            .into());
        }
    }
    let fields = describe(client, &statement.sql).await?;
    if run.dry_run {
        return Ok(QueryResult {
            fields: Some(fields),
            bytes_processed: bytes,
            statement_type: "SELECT",
            ..QueryResult::default()
        });
    }
    let aliases: Vec<String> = (0..fields.len()).map(|i| format!("c{i}")).collect();
    let expressions: Vec<String> = fields
        .iter()
        .zip(&aliases)
        .map(|(field, alias)| top_level_text(field, &format!("q.{alias}")))
        .collect();
    let wrapper = if fields.is_empty() {
        statement.sql.clone()
    } else {
        format!(
            "SELECT {} FROM ({}) AS q({})",
            expressions.join(", "),
            statement.sql,
            aliases.join(", ")
        )
    };
    let mut rows = Vec::new();
    for message in client.simple_query(&wrapper).await? {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        let mut cells = Vec::with_capacity(fields.len());
        for (i, field) in fields.iter().enumerate() {
            cells.push(json!({"v": cell(field, row.try_get(i)?)?}));
        }
        rows.push(json!({"f": cells}));
    }
    Ok(QueryResult {
        fields: Some(fields),
        rows,
        bytes_processed: bytes,
        statement_type: "SELECT",
        dml_affected: None,
    })
}

/// The result columns of `sql` as BigQuery fields; a table column's numeric
/// precision (from the catalog) tells NUMERIC from BIGNUMERIC.
async fn describe(client: &Client, sql: &str) -> Result<Vec<Field>, tokio_postgres::Error> {
    let prepared = client.prepare(sql).await?;
    let mut fields = Vec::with_capacity(prepared.columns().len());
    for column in prepared.columns() {
        let typmod = match (column.table_oid(), column.column_id()) {
            (Some(oid), Some(attnum)) if oid != 0 && *column.type_() == Type::NUMERIC => client
                .query_opt(
                    "SELECT atttypmod FROM pg_attribute WHERE attrelid = $1 AND attnum = $2",
                    &[&oid, &attnum],
                )
                .await?
                .map_or(-1, |row| row.get::<_, i32>(0)),
            _ => -1,
        };
        fields.push(field(column.name(), column.type_(), typmod));
    }
    Ok(fields)
}

/// A PostgreSQL type as a BigQuery field (arrays REPEATED, composites RECORD).
fn field(name: &str, pg: &Type, typmod: i32) -> Field {
    let scalar = |kind: &'static str| Field {
        name: name.to_owned(),
        kind,
        mode: "NULLABLE",
        fields: Vec::new(),
        pg: pg.clone(),
    };
    match pg.kind() {
        PgKind::Array(element) => Field {
            mode: "REPEATED",
            pg: pg.clone(),
            ..field(name, element, typmod)
        },
        PgKind::Composite(members) => Field {
            fields: members
                .iter()
                .map(|m| field(m.name(), m.type_(), -1))
                .collect(),
            ..scalar("RECORD")
        },
        PgKind::Domain(base) => Field {
            pg: pg.clone(),
            ..field(name, base, typmod)
        },
        _ => scalar(match pg.name() {
            "int2" | "int4" | "int8" | "oid" => "INTEGER",
            "float4" | "float8" => "FLOAT",
            "numeric" if is_big_numeric(typmod) => "BIGNUMERIC",
            "numeric" => "NUMERIC",
            "bool" => "BOOLEAN",
            "bytea" => "BYTES",
            "date" => "DATE",
            "timestamp" => "DATETIME",
            "time" => "TIME",
            "timestamptz" => "TIMESTAMP",
            "json" | "jsonb" => "JSON",
            "interval" => "INTERVAL",
            _ => "STRING",
        }),
    }
}

/// numeric(p,s) beyond NUMERIC's (38, 9) is BIGNUMERIC.
fn is_big_numeric(typmod: i32) -> bool {
    if typmod < 4 {
        return false;
    }
    let precision = (typmod - 4) >> 16;
    let scale = (typmod - 4) & 0xffff;
    precision > 38 || scale > 9
}

/// SQL giving a scalar's wire text: TIMESTAMP as epoch µs, BYTES as base64,
/// DATETIME with a `T`.
fn scalar_text(kind: &str, expr: &str) -> String {
    match kind {
        "TIMESTAMP" => format!("floor(extract(epoch from {expr}) * 1000000)::bigint::text"),
        "BYTES" => format!("translate(encode({expr}, 'base64'), E'\\n', '')"),
        "DATETIME" => format!("replace({expr}::text, ' ', 'T')"),
        _ => format!("{expr}::text"),
    }
}

/// SQL giving a nested value as JSON whose leaves are wire texts: arrays
/// `[…]` (empty for NULL), records positional `[…]`.
fn nested_json(field: &Field, expr: &str) -> String {
    if field.repeated() {
        let element = Field {
            mode: "NULLABLE",
            ..field.clone()
        };
        return format!(
            "coalesce((SELECT json_agg({} ORDER BY u.n) FROM unnest({expr}) WITH ORDINALITY AS u(x, n)), '[]'::json)",
            nested_json(&element, "u.x")
        );
    }
    if field.kind == "RECORD" {
        let members: Vec<String> = field
            .fields
            .iter()
            .map(|m| nested_json(m, &format!("({expr}).\"{}\"", m.name.replace('"', "\"\""))))
            .collect();
        return format!(
            "CASE WHEN ({expr})::text IS NULL THEN NULL ELSE json_build_array({}) END",
            members.join(", ")
        );
    }
    format!("to_json({})", scalar_text(field.kind, expr))
}

fn top_level_text(field: &Field, expr: &str) -> String {
    if field.repeated() || field.kind == "RECORD" {
        format!("({})::text", nested_json(field, expr))
    } else {
        scalar_text(field.kind, expr)
    }
}

/// One cell's `v` from the wrapper query's text.
fn cell(field: &Field, text: Option<&str>) -> Result<JsonValue, BqError> {
    let Some(text) = text else {
        return Ok(if field.repeated() {
            json!([])
        } else {
            JsonValue::Null
        });
    };
    if field.repeated() || field.kind == "RECORD" {
        let tree: JsonValue = serde_json::from_str(text)
            .map_err(|e| BqError::internal(format!("nested value of {}: {e}", field.name)))?;
        return Ok(nested_v(field, &tree));
    }
    Ok(json!(scalar_wire(field.kind, text)))
}

/// A nested JSON tree as BigQuery's `v`: `[{"v": …}]` for arrays, `{"f": […]}` for records.
fn nested_v(field: &Field, tree: &JsonValue) -> JsonValue {
    if field.repeated() {
        let element = Field {
            mode: "NULLABLE",
            ..field.clone()
        };
        return tree
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| json!({"v": nested_v(&element, item)}))
                    .collect()
            })
            .unwrap_or_else(|| json!([]));
    }
    match (field.kind, tree) {
        (_, JsonValue::Null) => JsonValue::Null,
        ("RECORD", JsonValue::Array(values)) => json!({
            "f": field.fields.iter().zip(values).map(|(m, v)| json!({"v": nested_v(m, v)})).collect::<Vec<_>>()
        }),
        (kind, JsonValue::String(text)) => json!(scalar_wire(kind, text)),
        (_, other) => json!(other.to_string()),
    }
}

/// PostgreSQL's text for a scalar as BigQuery sends it: NUMERIC without
/// trailing zeros; the rest already matches (see [`scalar_text`]).
fn scalar_wire(kind: &str, text: &str) -> String {
    match kind {
        "NUMERIC" | "BIGNUMERIC" if text.contains('.') => {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        _ => text.to_owned(),
    }
}

/// `[line:column]` of the first whole-word occurrence of `name` in `sql`.
fn position_of(sql: &str, name: &str) -> Option<String> {
    let lower = sql.to_lowercase();
    let wanted = name.to_lowercase();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut from = 0;
    while let Some(found) = lower[from..].find(&wanted) {
        let at = from + found;
        let before = lower[..at].chars().next_back();
        let after = lower[at + wanted.len()..].chars().next();
        if !is_word(before) && !is_word(after) {
            let line = lower[..at].matches('\n').count() + 1;
            let line_start = lower[..at].rfind('\n').map_or(0, |i| i + 1);
            let column = lower[line_start..at].chars().count() + 1;
            return Some(format!("[{line}:{column}]"));
        }
        from = at + wanted.len();
    }
    None
}

/// A PostgreSQL error as the BigQuery error a user would see for it, located
/// in the query as written.
fn pg_error(
    err: &tokio_postgres::Error,
    sql: &str,
    settings: &BigQuerySettings,
    location: &str,
) -> BqError {
    use tokio_postgres::error::SqlState;
    let Some(db) = err.as_db_error() else {
        return unavailable(err);
    };
    let code = db.code();
    let message = db.message();
    let quoted = message.split('"').nth(1).unwrap_or(message);
    let at = |name: &str| {
        position_of(sql, name)
            .map(|p| format!(" at {p}"))
            .unwrap_or_default()
    };
    if *code == SqlState::UNDEFINED_COLUMN {
        return BqError::invalid_query(format!("Unrecognized name: {quoted}{}", at(quoted)));
    }
    if *code == SqlState::UNDEFINED_FUNCTION {
        let name = message
            .strip_prefix("function ")
            .and_then(|rest| rest.split('(').next())
            .unwrap_or(message);
        return BqError::invalid_query(format!("Function not found: {name}{}", at(name)));
    }
    if *code == SqlState::UNDEFINED_TABLE {
        return BqError::not_found(format!(
            "Not found: Table {}:{quoted} was not found in location {location}",
            settings.project
        ));
    }
    if *code == SqlState::INVALID_SCHEMA_NAME || *code == SqlState::UNDEFINED_SCHEMA {
        return dataset_not_found(settings, quoted, location);
    }
    if *code == SqlState::DUPLICATE_TABLE || *code == SqlState::DUPLICATE_SCHEMA {
        return BqError::new(
            StatusCode::CONFLICT,
            "duplicate",
            format!("Already Exists: {quoted}"),
        );
    }
    if *code == SqlState::QUERY_CANCELED {
        return BqError::new(
            StatusCode::BAD_REQUEST,
            "stopped",
            "Job execution was cancelled: User requested cancellation",
        );
    }
    if *code == SqlState::SYNTAX_ERROR {
        return BqError::invalid_query(format!("Syntax error: {message}"));
    }
    if code.code().starts_with("22")
        || code.code().starts_with("42")
        || code.code().starts_with("23")
    {
        return BqError::invalid_query(message.to_owned());
    }
    BqError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "backendError",
        format!("Error while running the query: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_line_and_column_of_the_query_as_written() {
        assert_eq!(
            position_of("select email, lifetime_valu from t", "lifetime_valu").as_deref(),
            Some("[1:15]")
        );
        assert_eq!(
            position_of("select\n  x_y, x from t", "x").as_deref(),
            Some("[2:8]")
        );
        assert_eq!(position_of("select a", "b"), None);
    }

    #[test]
    fn numeric_precision_tells_bignumeric() {
        let typmod = |p: i32, s: i32| ((p << 16) | s) + 4;
        assert!(!is_big_numeric(typmod(38, 9)));
        assert!(is_big_numeric(typmod(76, 38)));
        assert!(!is_big_numeric(-1));
    }

    #[test]
    fn numeric_text_drops_trailing_zeros() {
        assert_eq!(scalar_wire("NUMERIC", "12.500000000"), "12.5");
        assert_eq!(scalar_wire("NUMERIC", "3.000000000"), "3");
        assert_eq!(scalar_wire("NUMERIC", "100"), "100");
    }

    #[test]
    fn timestamps_default_to_float_seconds() {
        let field = Field {
            name: "t".into(),
            kind: "TIMESTAMP",
            mode: "NULLABLE",
            fields: Vec::new(),
            pg: Type::TIMESTAMPTZ,
        };
        assert_eq!(
            float_timestamps(&field, &json!("1620151693299000")),
            json!("1.620151693299E9")
        );
    }
}
