//! Statement execution: submit, status, result chunks, cancel; the statement
//! registry; running translated SQL on PostgreSQL.
//!
//! Each statement runs in its own PostgreSQL session. Its whole result is read,
//! encoded and cut into chunks of `chunk_rows` rows; INLINE results carry chunk
//! 0 in the status answer and the rest at `…/result/chunks/{n}`; EXTERNAL_LINKS
//! results carry links to the storage listener instead ([`super::storage`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};
use tokio::sync::watch;
use tokio_postgres::{CancelToken, Client, SimpleQueryMessage};

use super::sql::{self, Kind, Parameter};
use super::types::Column;
use super::{ApiError, SqlFailure};
use crate::handle::Shared;
use crate::pg::{cancel_query, connect};

/// The longest `wait_timeout` Databricks accepts.
const MAX_WAIT_SECS: u64 = 50;
const DEFAULT_WAIT_SECS: u64 = 10;

/// The body of `POST /api/2.0/sql/statements`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatementRequest {
    #[serde(default)]
    pub statement: String,
    #[serde(default)]
    pub warehouse_id: String,
    #[serde(default)]
    pub catalog: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    #[serde(default)]
    pub wait_timeout: Option<String>,
    #[serde(default)]
    pub on_wait_timeout: Option<String>,
    #[serde(default)]
    pub disposition: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub row_limit: Option<i64>,
}

/// Where a result's chunks are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Inline,
    ExternalLinks,
}

/// A finished statement's result.
#[derive(Debug, Clone, Default)]
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub chunks: Vec<Vec<Vec<Option<String>>>>,
    pub total_rows: usize,
    pub truncated: bool,
}

impl ResultSet {
    fn row_offset(&self, chunk: usize) -> usize {
        self.chunks[..chunk].iter().map(Vec::len).sum()
    }

    /// A chunk's JSON_ARRAY text, as an EXTERNAL_LINKS file holds it.
    pub fn chunk_bytes(&self, chunk: usize) -> Vec<u8> {
        serde_json::to_vec(&self.chunks[chunk]).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
enum Status {
    Pending,
    Running,
    Succeeded(Arc<ResultSet>),
    Failed(SqlFailure),
    Canceled,
}

struct Entry {
    status: watch::Receiver<Status>,
    sender: Arc<watch::Sender<Status>>,
    task: Option<tokio::task::AbortHandle>,
    cancel: Arc<Mutex<Option<CancelToken>>>,
    disposition: Disposition,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// One EXTERNAL_LINKS URL: which chunk it serves, until when.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub statement: String,
    pub chunk: usize,
    pub expires: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    links: HashMap<String, Link>,
    submitted: Vec<String>,
    cancelled: Vec<String>,
}

/// Every statement the emulator has seen, by id, and the links it issued.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    inner: Mutex<Inner>,
    links_with_authorization: AtomicU64,
}

impl Statements {
    pub fn submitted(&self) -> Vec<String> {
        self.inner.lock().submitted.clone()
    }

    pub fn cancelled(&self) -> Vec<String> {
        self.inner.lock().cancelled.clone()
    }

    pub fn links_with_authorization(&self) -> u64 {
        self.links_with_authorization.load(Ordering::Relaxed)
    }

    pub fn count_link_with_authorization(&self) {
        self.links_with_authorization
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_link(&self, token: String, link: Link) {
        self.inner.lock().links.insert(token, link);
    }

    pub fn link(&self, token: &str) -> Option<Link> {
        self.inner.lock().links.get(token).cloned()
    }

    /// The result of a succeeded statement.
    pub fn result(&self, id: &str) -> Option<Arc<ResultSet>> {
        let status = self.inner.lock().entries.get(id)?.status.borrow().clone();
        match status {
            Status::Succeeded(result) => Some(result),
            _ => None,
        }
    }

    fn status(&self, id: &str) -> Option<(watch::Receiver<Status>, Disposition)> {
        self.inner
            .lock()
            .entries
            .get(id)
            .map(|e| (e.status.clone(), e.disposition))
    }
}

/// What a request asks for, checked before anything runs.
struct Checked {
    wait: Duration,
    cancel_on_timeout: bool,
    disposition: Disposition,
}

fn check(shared: &Shared, request: &StatementRequest) -> Result<Checked, ApiError> {
    if request.statement.trim().is_empty() {
        return Err(ApiError::invalid_parameter("statement is required"));
    }
    if request.warehouse_id.trim().is_empty() {
        return Err(ApiError::invalid_parameter("warehouse_id is required"));
    }
    let known = shared
        .databricks
        .settings
        .lock()
        .warehouses
        .contains(&request.warehouse_id);
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!(
                "SQL warehouse {} does not exist or you do not have access to it.",
                request.warehouse_id
            ),
        ));
    }
    let wait = match request.wait_timeout.as_deref() {
        None => DEFAULT_WAIT_SECS,
        Some(text) => match text.strip_suffix('s').and_then(|n| n.parse::<u64>().ok()) {
            Some(0) => 0,
            Some(n) if (5..=MAX_WAIT_SECS).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_parameter(format!(
                    "wait_timeout must be 0s or between 5s and 50s, got {text:?}"
                )))
            }
        },
    };
    let cancel_on_timeout = match request.on_wait_timeout.as_deref() {
        None | Some("CONTINUE") => false,
        Some("CANCEL") => true,
        Some(other) => {
            return Err(ApiError::invalid_parameter(format!(
                "on_wait_timeout must be CONTINUE or CANCEL, got {other:?}"
            )))
        }
    };
    let disposition = match request.disposition.as_deref() {
        None | Some("INLINE") => Disposition::Inline,
        Some("EXTERNAL_LINKS") => Disposition::ExternalLinks,
        Some(other) => {
            return Err(ApiError::invalid_parameter(format!(
                "disposition must be INLINE or EXTERNAL_LINKS, got {other:?}"
            )))
        }
    };
    match (request.format.as_deref(), disposition) {
        (None | Some("JSON_ARRAY"), _) => {}
        (Some("ARROW_STREAM" | "CSV"), Disposition::Inline) => {
            return Err(ApiError::invalid_parameter(
                "the INLINE disposition supports only the JSON_ARRAY format",
            ))
        }
        (Some(format @ ("ARROW_STREAM" | "CSV")), Disposition::ExternalLinks) => {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "NOT_IMPLEMENTED",
                format!("format {format} is not emulated: use JSON_ARRAY"),
            ))
        }
        (Some(other), _) => {
            return Err(ApiError::invalid_parameter(format!(
                "format must be JSON_ARRAY, ARROW_STREAM or CSV, got {other:?}"
            )))
        }
    }
    if request.row_limit.is_some_and(|n| n < 0) {
        return Err(ApiError::invalid_parameter(
            "row_limit must not be negative",
        ));
    }
    Ok(Checked {
        wait: Duration::from_secs(wait),
        cancel_on_timeout,
        disposition,
    })
}

/// `POST /api/2.0/sql/statements`.
pub(crate) async fn submit(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: StatementRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "MALFORMED_REQUEST",
                format!("Could not parse request object: {err}"),
            )
            .response()
        }
    };
    let checked = match check(&shared, &request) {
        Ok(checked) => checked,
        Err(err) => return err.response(),
    };
    let id = statement_id(&shared);
    start(&shared, &id, request, checked.disposition);
    let Some((mut status, _)) = shared.databricks.statements.status(&id) else {
        return not_found(&id);
    };
    let finished = tokio::time::timeout(
        checked.wait,
        status.wait_for(|s| !matches!(s, Status::Pending | Status::Running)),
    )
    .await
    .is_ok();
    if !finished && checked.cancel_on_timeout {
        cancel_statement(&shared, &id).await;
    }
    render(&shared, &id).await
}

/// Databricks statement ids look like `01ef…-…` UUIDs.
fn statement_id(shared: &Shared) -> String {
    let uuid = shared.random_uuid();
    format!("01ef{}", &uuid[4..])
}

/// Registers the statement and runs it in the background.
fn start(shared: &Arc<Shared>, id: &str, request: StatementRequest, disposition: Disposition) {
    let text = request.statement.clone();
    let (sender, status) = watch::channel(Status::Pending);
    let sender = Arc::new(sender);
    let cancel: Arc<Mutex<Option<CancelToken>>> = Arc::default();
    let settings = shared.databricks.settings.lock().clone();
    let pg = shared.databricks.pg.lock().clone();
    let task = {
        let sender = sender.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(settings.execution_delay).await;
            sender.send_if_modified(|current| {
                let pending = matches!(current, Status::Pending);
                if pending {
                    *current = Status::Running;
                }
                pending
            });
            let outcome = match pg {
                None => Err(SqlFailure::new(
                    "INTERNAL_ERROR",
                    "XX000",
                    "the emulator has no PostgreSQL connection",
                )),
                Some(pg) => execute(&pg, &request, settings.chunk_rows, &cancel).await,
            };
            let outcome = match outcome {
                Ok(result) if disposition == Disposition::Inline => {
                    within_inline_limit(result, settings.inline_limit_bytes)
                }
                other => other,
            };
            let status = match outcome {
                Ok(result) => Status::Succeeded(Arc::new(result)),
                Err(failure) => Status::Failed(failure),
            };
            // A cancel that arrived first keeps its status.
            sender.send_if_modified(|current| {
                let open = matches!(current, Status::Pending | Status::Running);
                if open {
                    *current = status;
                }
                open
            });
        })
    };
    let mut inner = shared.databricks.statements.inner.lock();
    inner.submitted.push(text);
    inner.entries.insert(
        id.to_owned(),
        Entry {
            status,
            sender,
            task: Some(task.abort_handle()),
            cancel,
            disposition,
        },
    );
}

/// INLINE results above the cap fail the statement, as Databricks aborts them.
fn within_inline_limit(result: ResultSet, limit: usize) -> Result<ResultSet, SqlFailure> {
    let bytes: usize = (0..result.chunks.len())
        .map(|i| result.chunk_bytes(i).len())
        .sum();
    if bytes > limit {
        return Err(SqlFailure::bad_request(
            "54000",
            format!("The result is {bytes} bytes, over the INLINE disposition's limit of {limit} bytes: use disposition EXTERNAL_LINKS for large results."),
        ));
    }
    Ok(result)
}

fn not_found(id: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!(
            "The statement {id} was not found: it does not exist or its results have been removed."
        ),
    )
    .response()
}

/// The statement's current answer: status, and manifest and first chunk once
/// it has succeeded.
async fn render(shared: &Shared, id: &str) -> Response {
    let Some((status, disposition)) = shared.databricks.statements.status(id) else {
        return not_found(id);
    };
    let current = status.borrow().clone();
    let state = |name: &str| json!({"state": name});
    let body = match &current {
        Status::Pending => json!({"statement_id": id, "status": state("PENDING")}),
        Status::Running => json!({"statement_id": id, "status": state("RUNNING")}),
        Status::Canceled => json!({"statement_id": id, "status": state("CANCELED")}),
        Status::Failed(failure) => json!({
            "statement_id": id,
            "status": {
                "state": "FAILED",
                "error": {"error_code": failure.error_code, "message": failure.message},
                "sql_state": failure.sql_state,
            },
        }),
        Status::Succeeded(result) => {
            let mut body = json!({
                "statement_id": id,
                "status": state("SUCCEEDED"),
                "manifest": manifest(result, disposition),
            });
            if !result.chunks.is_empty() {
                body["result"] = chunk_body(shared, id, result, 0, disposition);
            }
            body
        }
    };
    Json(body).into_response()
}

fn manifest(result: &ResultSet, disposition: Disposition) -> JsonValue {
    let columns: Vec<JsonValue> = result
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| c.manifest(i))
        .collect();
    let chunks: Vec<JsonValue> = (0..result.chunks.len())
        .map(|i| {
            let mut chunk = json!({
                "chunk_index": i,
                "row_offset": result.row_offset(i),
                "row_count": result.chunks[i].len(),
            });
            if disposition == Disposition::ExternalLinks {
                chunk["byte_count"] = json!(result.chunk_bytes(i).len());
            }
            chunk
        })
        .collect();
    let mut manifest = json!({
        "format": "JSON_ARRAY",
        "schema": {"column_count": columns.len(), "columns": columns},
        "total_chunk_count": result.chunks.len(),
        "total_row_count": result.total_rows,
        "truncated": result.truncated,
        "chunks": chunks,
    });
    if disposition == Disposition::ExternalLinks {
        let total: usize = (0..result.chunks.len())
            .map(|i| result.chunk_bytes(i).len())
            .sum();
        manifest["total_byte_count"] = json!(total);
    }
    manifest
}

/// Chunk `n`: its rows (INLINE) or a fresh link to them (EXTERNAL_LINKS),
/// with the way to the next chunk.
fn chunk_body(
    shared: &Shared,
    id: &str,
    result: &ResultSet,
    n: usize,
    disposition: Disposition,
) -> JsonValue {
    let mut body = json!({
        "chunk_index": n,
        "row_offset": result.row_offset(n),
        "row_count": result.chunks[n].len(),
    });
    if n + 1 < result.chunks.len() {
        body["next_chunk_index"] = json!(n + 1);
        body["next_chunk_internal_link"] = json!(format!(
            "/api/2.0/sql/statements/{id}/result/chunks/{}",
            n + 1
        ));
    }
    match disposition {
        Disposition::Inline => {
            body["data_array"] = json!(result.chunks[n]);
            body
        }
        Disposition::ExternalLinks => {
            let (url, expires) = super::storage::issue_link(shared, id, n);
            body["byte_count"] = json!(result.chunk_bytes(n).len());
            body["external_link"] = json!(url);
            body["expiration"] = json!(expires);
            json!({ "external_links": [body] })
        }
    }
}

/// `GET /api/2.0/sql/statements/{id}`.
pub(crate) async fn status(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    render(&shared, &id).await
}

/// `GET /api/2.0/sql/statements/{id}/result/chunks/{n}`.
pub(crate) async fn chunk(
    State(shared): State<Arc<Shared>>,
    Path((id, n)): Path<(String, String)>,
) -> Response {
    let Some((status, disposition)) = shared.databricks.statements.status(&id) else {
        return not_found(&id);
    };
    let current = status.borrow().clone();
    let Status::Succeeded(result) = current else {
        return ApiError::invalid_parameter(format!(
            "statement {id} has no result to fetch: it has not succeeded"
        ))
        .response();
    };
    let Some(n) = n.parse::<usize>().ok().filter(|n| *n < result.chunks.len()) else {
        return ApiError::invalid_parameter(format!(
            "chunk index {n} is out of range: the result has {} chunk(s)",
            result.chunks.len()
        ))
        .response();
    };
    Json(chunk_body(&shared, &id, &result, n, disposition)).into_response()
}

/// `POST /api/2.0/sql/statements/{id}/cancel`: empty reply; a statement
/// already finished keeps its state.
pub(crate) async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if shared.databricks.statements.status(&id).is_none() {
        return not_found(&id);
    }
    cancel_statement(&shared, &id).await;
    Json(json!({})).into_response()
}

async fn cancel_statement(shared: &Shared, id: &str) {
    let found = {
        let mut inner = shared.databricks.statements.inner.lock();
        let found = inner
            .entries
            .get(id)
            .map(|e| (e.sender.clone(), e.task.clone(), e.cancel.clone()));
        inner.cancelled.push(id.to_owned());
        found
    };
    let Some((sender, task, token)) = found else {
        return;
    };
    let was_open = sender.send_if_modified(|current| {
        let open = matches!(current, Status::Pending | Status::Running);
        if open {
            *current = Status::Canceled;
        }
        open
    });
    if was_open {
        cancel_query(&token).await;
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// Creates the database if missing and installs the domains and views the
/// translation relies on.
pub(crate) async fn prepare_database(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    crate::pg::prepare_database(url, SETUP_SQL, "Databricks").await
}

/// Domains for the Databricks types PostgreSQL lacks, and the
/// information_schema views (`db_meta.columns`, `db_meta.tables`).
const SETUP_SQL: &str = r#"
DO $$ BEGIN CREATE DOMAIN db_byte AS smallint CHECK (VALUE BETWEEN -128 AND 127); EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE DOMAIN db_array AS jsonb CHECK (jsonb_typeof(VALUE) = 'array'); EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE DOMAIN db_map AS jsonb CHECK (jsonb_typeof(VALUE) = 'object'); EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE DOMAIN db_struct AS jsonb CHECK (jsonb_typeof(VALUE) = 'object'); EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE SCHEMA IF NOT EXISTS "main.default";
CREATE SCHEMA IF NOT EXISTS db_meta;
CREATE OR REPLACE VIEW db_meta.columns AS
SELECT split_part(c.table_schema, '.', 1) AS table_catalog,
       substr(c.table_schema, position('.' in c.table_schema) + 1) AS table_schema,
       c.table_name::text AS table_name,
       c.column_name::text AS column_name,
       c.ordinal_position::int AS ordinal_position,
       c.is_nullable::text AS is_nullable,
       CASE coalesce(c.domain_name::text, c.udt_name::text)
         WHEN 'db_byte' THEN 'BYTE' WHEN 'int2' THEN 'SHORT' WHEN 'int4' THEN 'INT' WHEN 'int8' THEN 'LONG'
         WHEN 'float4' THEN 'FLOAT' WHEN 'float8' THEN 'DOUBLE' WHEN 'numeric' THEN 'DECIMAL'
         WHEN 'bool' THEN 'BOOLEAN' WHEN 'bytea' THEN 'BINARY' WHEN 'date' THEN 'DATE'
         WHEN 'timestamptz' THEN 'TIMESTAMP' WHEN 'timestamp' THEN 'TIMESTAMP_NTZ'
         WHEN 'db_array' THEN 'ARRAY' WHEN 'db_map' THEN 'MAP' WHEN 'db_struct' THEN 'STRUCT'
         WHEN 'interval' THEN 'INTERVAL' ELSE 'STRING' END AS data_type,
       c.numeric_precision::int AS numeric_precision,
       c.numeric_scale::int AS numeric_scale
FROM information_schema.columns c
WHERE position('.' in c.table_schema) > 0;
CREATE OR REPLACE VIEW db_meta.tables AS
SELECT split_part(t.table_schema, '.', 1) AS table_catalog,
       substr(t.table_schema, position('.' in t.table_schema) + 1) AS table_schema,
       t.table_name::text AS table_name,
       CASE t.table_type WHEN 'VIEW' THEN 'VIEW' ELSE 'MANAGED' END AS table_type
FROM information_schema.tables t
WHERE position('.' in t.table_schema) > 0;
"#;

/// Runs one statement in a session of its own (see the module doc).
pub(crate) async fn execute(
    pg: &tokio_postgres::Config,
    request: &StatementRequest,
    chunk_rows: usize,
    cancel: &Mutex<Option<CancelToken>>,
) -> Result<ResultSet, SqlFailure> {
    let ctx = sql::Context {
        catalog: request.catalog.as_deref().unwrap_or("main").to_lowercase(),
        schema: request
            .schema
            .as_deref()
            .unwrap_or("default")
            .to_lowercase(),
        parameters: request
            .parameters
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect(),
    };
    let translated = sql::translate(&request.statement, &ctx)?;
    let client = connect(pg).await.map_err(|e| {
        SqlFailure::new(
            "TEMPORARILY_UNAVAILABLE",
            "08001",
            format!("The emulator cannot reach its PostgreSQL: {e}"),
        )
    })?;
    *cancel.lock() = Some(client.cancel_token());
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'iso_8601'; SET bytea_output = 'hex'",
        )
        .await
        .map_err(|e| pg_error(&e))?;
    let row_limit = request
        .row_limit
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX);
    match translated.kind {
        Kind::Query => query(&client, &translated.sql, chunk_rows, row_limit).await,
        Kind::Insert | Kind::Modify => modify(&client, &translated.sql, translated.kind).await,
        Kind::Other => {
            client
                .batch_execute(&translated.sql)
                .await
                .map_err(|e| pg_error(&e))?;
            Ok(ResultSet::default())
        }
    }
}

/// DML answers its counts, as Databricks does.
async fn modify(client: &Client, sql: &str, kind: Kind) -> Result<ResultSet, SqlFailure> {
    let messages = client.simple_query(sql).await.map_err(|e| pg_error(&e))?;
    let count: u64 = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .sum();
    let long = |name: &str| Column {
        name: name.to_owned(),
        type_name: "LONG",
        type_text: "BIGINT".into(),
        precision: None,
        scale: None,
    };
    let (columns, row) = if kind == Kind::Insert {
        (
            vec![long("num_affected_rows"), long("num_inserted_rows")],
            vec![Some(count.to_string()), Some(count.to_string())],
        )
    } else {
        (
            vec![long("num_affected_rows")],
            vec![Some(count.to_string())],
        )
    };
    Ok(ResultSet {
        columns,
        chunks: vec![vec![row]],
        total_rows: 1,
        truncated: false,
    })
}

async fn query(
    client: &Client,
    sql: &str,
    chunk_rows: usize,
    row_limit: usize,
) -> Result<ResultSet, SqlFailure> {
    let columns: Vec<Column> = crate::pg::describe(client, sql)
        .await
        .map_err(|e| pg_error(&e))?
        .iter()
        .map(Column::of)
        .collect();
    let stream = client
        .simple_query_raw(sql)
        .await
        .map_err(|e| pg_error(&e))?;
    futures_util::pin_mut!(stream);
    let mut result = ResultSet {
        columns,
        ..ResultSet::default()
    };
    let mut current: Vec<Vec<Option<String>>> = Vec::new();
    while let Some(message) = stream.try_next().await.map_err(|e| pg_error(&e))? {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        if result.total_rows >= row_limit {
            result.truncated = true;
            continue;
        }
        let mut values = Vec::with_capacity(result.columns.len());
        for (i, column) in result.columns.iter().enumerate() {
            let text = row.try_get(i).map_err(|e| pg_error(&e))?;
            values.push(text.map(|t| column.encode(t)));
        }
        current.push(values);
        result.total_rows += 1;
        if current.len() >= chunk_rows {
            result.chunks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        result.chunks.push(current);
    }
    Ok(result)
}

/// A PostgreSQL error as the FAILED status Databricks would give: its error
/// class in brackets, the message, the SQLSTATE and the position.
fn pg_error(err: &tokio_postgres::Error) -> SqlFailure {
    use tokio_postgres::error::SqlState;
    let Some(db) = err.as_db_error() else {
        return SqlFailure::new(
            "TEMPORARILY_UNAVAILABLE",
            "08006",
            format!("The emulator lost its PostgreSQL session: {err}"),
        );
    };
    let position = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => format!("; line 1 pos {p}"),
        _ => String::new(),
    };
    let code = db.code();
    let quoted = db
        .message()
        .split('"')
        .nth(1)
        .unwrap_or(db.message())
        .to_owned();
    let state = code.code();
    if *code == SqlState::UNDEFINED_TABLE {
        let mut failure = sql::table_not_found(&quoted.replace("\".\"", "."));
        failure.message.push_str(&position);
        return failure;
    }
    if *code == SqlState::UNDEFINED_SCHEMA || *code == SqlState::INVALID_SCHEMA_NAME {
        return SqlFailure::bad_request(
            "42704",
            format!("[SCHEMA_NOT_FOUND] The schema `{quoted}` cannot be found. SQLSTATE: 42704{position}"),
        );
    }
    if *code == SqlState::UNDEFINED_COLUMN {
        return SqlFailure::bad_request(
            "42703",
            format!("[UNRESOLVED_COLUMN.WITHOUT_SUGGESTION] A column, variable, or function parameter with name `{quoted}` cannot be resolved. SQLSTATE: 42703{position}"),
        );
    }
    if *code == SqlState::DIVISION_BY_ZERO {
        return SqlFailure::bad_request(
            "22012",
            format!("[DIVIDE_BY_ZERO] Division by zero. SQLSTATE: 22012{position}"),
        );
    }
    if *code == SqlState::QUERY_CANCELED {
        return SqlFailure::new("CANCELLED", state, "The statement was cancelled.");
    }
    if *code == SqlState::DUPLICATE_TABLE {
        return SqlFailure::bad_request(
            "42P07",
            format!("[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table or view `{quoted}` because it already exists. SQLSTATE: 42P07"),
        );
    }
    SqlFailure::bad_request(
        state,
        format!("{} SQLSTATE: {state}{position}", db.message()),
    )
}
