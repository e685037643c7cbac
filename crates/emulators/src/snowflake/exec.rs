//! Statement execution: the three endpoints, the statement registry (running,
//! done, failed, cancelled), and running translated SQL on PostgreSQL.
//!
//! Each submission runs in its own PostgreSQL session (a Snowflake request is its
//! own session). The whole result is read, encoded and split into partitions of
//! `partition_rows`; partition 0 rides in the 200, the others are fetched with
//! `GET ?partition=N`, gzip-compressed when the client accepts it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::TryStreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};
use tokio::sync::watch;
use tokio_postgres::{CancelToken, Client, SimpleQueryMessage};

use super::encode::{self, Origin, SfType};
use super::sql::{self, Binding, DmlKind, Kind, Translated};
use super::{Principal, SfError};
use crate::handle::Shared;
use crate::pg::{cancel_query, connect};

/// The default statement timeout (`STATEMENT_TIMEOUT_IN_SECONDS`, two days).
const DEFAULT_TIMEOUT_SECS: u64 = 172_800;
/// What `timeout: 0` means: the maximum, seven days.
const MAX_TIMEOUT_SECS: u64 = 604_800;

/// The body of `POST /api/v2/statements`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatementRequest {
    pub statement: String,
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub warehouse: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub bindings: Option<HashMap<String, Binding>>,
    #[serde(default)]
    pub parameters: Option<HashMap<String, JsonValue>>,
}

/// A finished statement's result.
#[derive(Debug, Clone, Default)]
pub struct ResultSet {
    pub row_type: Vec<JsonValue>,
    pub partitions: Vec<Vec<Vec<Option<String>>>>,
    pub num_rows: usize,
    pub stats: Option<JsonValue>,
    /// Child statement handles of a multi-statement request.
    pub children: Vec<String>,
}

#[derive(Debug, Clone)]
enum Status {
    Running,
    Done(Arc<ResultSet>),
    Failed(SfError),
    Cancelled,
}

struct Entry {
    status: watch::Receiver<Status>,
    sender: Arc<watch::Sender<Status>>,
    task: Option<tokio::task::AbortHandle>,
    cancel: Arc<Mutex<Option<CancelToken>>>,
    created_on: u64,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("status", &*self.status.borrow())
            .field("created_on", &self.created_on)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    by_request: HashMap<String, String>,
    submitted: Vec<String>,
    cancelled: Vec<String>,
}

/// Every statement the emulator has seen, by handle.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    inner: Mutex<Inner>,
}

impl Statements {
    pub fn submitted(&self) -> Vec<String> {
        self.inner.lock().submitted.clone()
    }

    pub fn cancelled(&self) -> Vec<String> {
        self.inner.lock().cancelled.clone()
    }

    fn status(&self, handle: &str) -> Option<(watch::Receiver<Status>, u64)> {
        self.inner
            .lock()
            .entries
            .get(handle)
            .map(|e| (e.status.clone(), e.created_on))
    }

    fn register_done(&self, handle: String, result: ResultSet) {
        let (sender, status) = watch::channel(Status::Done(Arc::new(result)));
        self.inner.lock().entries.insert(
            handle,
            Entry {
                status,
                sender: Arc::new(sender),
                task: None,
                cancel: Arc::default(),
                created_on: now_millis(),
            },
        );
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub(crate) struct SubmitParams {
    #[serde(default, rename = "async")]
    run_async: Option<bool>,
    #[serde(default, rename = "requestId")]
    request_id: Option<String>,
    #[serde(default)]
    retry: Option<bool>,
}

fn bad_payload() -> SfError {
    SfError::new(
        StatusCode::BAD_REQUEST,
        "390142",
        "08P01",
        "Incoming request does not contain a valid payload.",
    )
}

/// `POST /api/v2/statements`.
pub(crate) async fn submit(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<SubmitParams>,
    body: Bytes,
) -> Response {
    let request: StatementRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => return bad_payload().response(None),
    };
    if let Some(role) = &request.role {
        if !principal
            .user
            .roles
            .iter()
            .any(|r| r.eq_ignore_ascii_case(role))
        {
            return SfError::sql(
                "390186",
                "08004",
                format!("Role '{role}' specified in the connect string is not granted to this user. Contact your local system administrator, or attempt to login with another role, e.g. PUBLIC."),
            )
            .response(None);
        }
    }
    if let (Some(id), Some(true)) = (&params.request_id, params.retry) {
        let known = shared
            .snowflake
            .statements
            .inner
            .lock()
            .by_request
            .get(id)
            .cloned();
        if let Some(handle) = known {
            return respond_when_ready(&shared, &handle, params.run_async.unwrap_or(false)).await;
        }
    }
    let handle = shared.random_uuid();
    start(&shared, &handle, request, params.request_id);
    respond_when_ready(&shared, &handle, params.run_async.unwrap_or(false)).await
}

/// Registers the statement and runs it in the background.
fn start(
    shared: &Arc<Shared>,
    handle: &str,
    request: StatementRequest,
    request_id: Option<String>,
) {
    let text = request.statement.clone();
    let (sender, status) = watch::channel(Status::Running);
    let sender = Arc::new(sender);
    let cancel: Arc<Mutex<Option<CancelToken>>> = Arc::default();
    let (pg, settings) = {
        let settings = shared.snowflake.settings.lock().clone();
        (shared.snowflake.pg.lock().clone(), settings)
    };
    let timeout_secs = match request.timeout {
        None => DEFAULT_TIMEOUT_SECS,
        Some(0) => MAX_TIMEOUT_SECS,
        Some(secs) => secs.min(MAX_TIMEOUT_SECS),
    };
    let task = {
        let sender = sender.clone();
        let cancel = cancel.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(settings.execution_delay).await;
            let Some(pg) = pg else {
                let _ = sender.send(Status::Failed(SfError::sql(
                    "000001",
                    "XX000",
                    "the emulator has no PostgreSQL connection",
                )));
                return;
            };
            let work = execute_with_cancel(
                &pg,
                &request,
                &settings.warehouses,
                settings.partition_rows,
                &cancel,
            );
            let outcome = match tokio::time::timeout(Duration::from_secs(timeout_secs), work).await
            {
                Ok(Ok(results)) => Status::Done(Arc::new(combine(&shared, results))),
                Ok(Err(err)) => Status::Failed(err),
                Err(_) => {
                    cancel_query(&cancel).await;
                    Status::Failed(SfError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "000630",
                        "57014",
                        format!("Statement reached its statement or warehouse timeout of {timeout_secs} second(s) and was canceled."),
                    ))
                }
            };
            // A cancel that arrived first keeps its status.
            sender.send_if_modified(|current| {
                if matches!(current, Status::Running) {
                    *current = outcome;
                    true
                } else {
                    false
                }
            });
        })
    };
    let mut inner = shared.snowflake.statements.inner.lock();
    inner.submitted.push(text);
    if let Some(id) = request_id {
        inner.by_request.insert(id, handle.to_owned());
    }
    inner.entries.insert(
        handle.to_owned(),
        Entry {
            status,
            sender,
            task: Some(task.abort_handle()),
            cancel,
            created_on: now_millis(),
        },
    );
}

/// One result for the request: the statement's, or a parent for several.
fn combine(shared: &Shared, mut results: Vec<ResultSet>) -> ResultSet {
    if results.len() == 1 {
        return results.pop().expect("one result");
    }
    let children: Vec<String> = results
        .into_iter()
        .map(|result| {
            let handle = shared.random_uuid();
            shared
                .snowflake
                .statements
                .register_done(handle.clone(), result);
            handle
        })
        .collect();
    ResultSet {
        children,
        ..status_result(
            "multiple statement execution",
            "Multiple statements executed successfully.",
        )
    }
}

async fn respond_when_ready(shared: &Arc<Shared>, handle: &str, run_async: bool) -> Response {
    let Some((mut status, created_on)) = shared.snowflake.statements.status(handle) else {
        return not_found(handle, StatusCode::BAD_REQUEST);
    };
    if !run_async {
        let wait = shared.snowflake.settings.lock().sync_wait;
        let _ =
            tokio::time::timeout(wait, status.wait_for(|s| !matches!(s, Status::Running))).await;
    }
    let current = status.borrow().clone();
    render(handle, created_on, &current)
}

fn render(handle: &str, created_on: u64, status: &Status) -> Response {
    match status {
        Status::Running => (
            StatusCode::ACCEPTED,
            Json(json!({
                "code": "333334",
                "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring and management.",
                "statementHandle": handle,
                "statementStatusUrl": format!("/api/v2/statements/{handle}"),
            })),
        )
            .into_response(),
        Status::Done(result) => (StatusCode::OK, Json(result_body(handle, created_on, result))).into_response(),
        Status::Failed(err) => err.response(Some(handle)),
        Status::Cancelled => cancelled_error().response(Some(handle)),
    }
}

fn cancelled_error() -> SfError {
    SfError::sql("000604", "57014", "SQL execution canceled")
}

fn not_found(handle: &str, status: StatusCode) -> Response {
    SfError::new(
        status,
        "000709",
        "02000",
        format!("Statement {handle} not found"),
    )
    .response(Some(handle))
}

fn result_body(handle: &str, created_on: u64, result: &ResultSet) -> JsonValue {
    let partition_info: Vec<JsonValue> = result
        .partitions
        .iter()
        .map(|rows| {
            let size = serde_json::to_vec(rows)
                .map(|v| v.len())
                .unwrap_or_default();
            json!({"rowCount": rows.len(), "uncompressedSize": size})
        })
        .collect();
    let mut body = json!({
        "resultSetMetaData": {
            "numRows": result.num_rows,
            "format": "jsonv2",
            "rowType": result.row_type,
            "partitionInfo": partition_info,
        },
        "data": result.partitions.first().cloned().unwrap_or_default(),
        "code": "090001",
        "sqlState": "00000",
        "message": "Statement executed successfully.",
        "statementHandle": handle,
        "statementStatusUrl": format!("/api/v2/statements/{handle}"),
        "createdOn": created_on,
    });
    if let Some(stats) = &result.stats {
        body["stats"] = stats.clone();
    }
    if !result.children.is_empty() {
        body["statementHandles"] = json!(result.children);
    }
    body
}

#[derive(Debug, Deserialize)]
pub(crate) struct StatusParams {
    #[serde(default)]
    partition: Option<usize>,
}

/// `GET /api/v2/statements/{handle}`.
pub(crate) async fn status(
    State(shared): State<Arc<Shared>>,
    Path(handle): Path<String>,
    Query(params): Query<StatusParams>,
    headers: HeaderMap,
) -> Response {
    let Some((status, created_on)) = shared.snowflake.statements.status(&handle) else {
        return not_found(&handle, StatusCode::BAD_REQUEST);
    };
    let current = status.borrow().clone();
    let (Status::Done(result), Some(partition)) = (&current, params.partition) else {
        return render(&handle, created_on, &current);
    };
    let Some(rows) = result.partitions.get(partition).or_else(|| {
        // An empty result has one (empty) partition 0.
        (partition == 0 && result.partitions.is_empty()).then_some(&EMPTY)
    }) else {
        return SfError::new(
            StatusCode::BAD_REQUEST,
            "391922",
            "22000",
            format!(
                "The partition number {partition} is out of range [0, {}].",
                result.partitions.len().saturating_sub(1)
            ),
        )
        .response(Some(&handle));
    };
    let body = serde_json::to_vec(&json!({ "data": rows })).unwrap_or_default();
    partition_response(body, accepts_gzip(&headers))
}

static EMPTY: Vec<Vec<Option<String>>> = Vec::new();

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.trim().split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn partition_response(body: Vec<u8>, gzip: bool) -> Response {
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if !gzip {
        return (StatusCode::OK, [content_type], body).into_response();
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let compressed = encoder.write_all(&body).and_then(|()| encoder.finish());
    match compressed {
        Ok(bytes) => (
            StatusCode::OK,
            [
                content_type,
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => (StatusCode::OK, [content_type], body).into_response(),
    }
}

/// `POST /api/v2/statements/{handle}/cancel`.
pub(crate) async fn cancel(
    State(shared): State<Arc<Shared>>,
    Path(handle): Path<String>,
) -> Response {
    let (sender, task, token) = {
        let mut inner = shared.snowflake.statements.inner.lock();
        let Some(entry) = inner.entries.get(&handle) else {
            drop(inner);
            return not_found(&handle, StatusCode::UNPROCESSABLE_ENTITY);
        };
        let found = (
            entry.sender.clone(),
            entry.task.clone(),
            entry.cancel.clone(),
        );
        inner.cancelled.push(handle.clone());
        found
    };
    let was_running = sender.send_if_modified(|current| {
        if matches!(current, Status::Running) {
            *current = Status::Cancelled;
            true
        } else {
            false
        }
    });
    if was_running {
        cancel_query(&token).await;
        if let Some(task) = task {
            task.abort();
        }
    }
    (
        StatusCode::OK,
        Json(json!({
            "code": "000604",
            "sqlState": "57014",
            "message": "SQL execution canceled",
            "statementHandle": handle,
            "statementStatusUrl": format!("/api/v2/statements/{handle}"),
        })),
    )
        .into_response()
}

/// Creates the database named in `url` if missing and installs the domains,
/// functions and catalog views the translation relies on.
pub(crate) async fn prepare_database(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    crate::pg::prepare_database(url, SETUP_SQL, "Snowflake").await
}

/// Domains standing for Snowflake types PostgreSQL lacks, `PARSE_JSON`, and the
/// INFORMATION_SCHEMA views (`sf_meta."COLUMNS"`, `sf_meta."TABLES"`).
const SETUP_SQL: &str = r#"
DO $$ BEGIN CREATE DOMAIN sf_variant AS jsonb; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE DOMAIN sf_object AS jsonb; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE DOMAIN sf_array AS jsonb; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE DOMAIN sf_timestamp_tz AS timestamptz; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE OR REPLACE FUNCTION parse_json(t text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT t::jsonb $$;
CREATE SCHEMA IF NOT EXISTS sf_meta;
CREATE OR REPLACE VIEW sf_meta."COLUMNS" AS
SELECT split_part(c.table_schema, '.', 1) AS "TABLE_CATALOG",
       substr(c.table_schema, position('.' in c.table_schema) + 1) AS "TABLE_SCHEMA",
       c.table_name::text AS "TABLE_NAME",
       c.column_name::text AS "COLUMN_NAME",
       c.ordinal_position::numeric(38,0) AS "ORDINAL_POSITION",
       c.is_nullable::text AS "IS_NULLABLE",
       CASE c.domain_name
         WHEN 'sf_variant' THEN 'VARIANT' WHEN 'sf_object' THEN 'OBJECT' WHEN 'sf_array' THEN 'ARRAY'
         WHEN 'sf_timestamp_tz' THEN 'TIMESTAMP_TZ'
         ELSE CASE c.data_type
           WHEN 'numeric' THEN 'NUMBER' WHEN 'double precision' THEN 'FLOAT'
           WHEN 'character varying' THEN 'TEXT' WHEN 'text' THEN 'TEXT' WHEN 'boolean' THEN 'BOOLEAN'
           WHEN 'date' THEN 'DATE' WHEN 'time without time zone' THEN 'TIME'
           WHEN 'timestamp without time zone' THEN 'TIMESTAMP_NTZ'
           WHEN 'timestamp with time zone' THEN 'TIMESTAMP_LTZ' WHEN 'bytea' THEN 'BINARY'
           WHEN 'jsonb' THEN 'VARIANT'
           ELSE upper(c.data_type) END
       END AS "DATA_TYPE",
       c.numeric_precision::numeric(38,0) AS "NUMERIC_PRECISION",
       c.numeric_scale::numeric(38,0) AS "NUMERIC_SCALE"
FROM information_schema.columns c
WHERE position('.' in c.table_schema) > 0;
CREATE OR REPLACE VIEW sf_meta."TABLES" AS
SELECT split_part(t.table_schema, '.', 1) AS "TABLE_CATALOG",
       substr(t.table_schema, position('.' in t.table_schema) + 1) AS "TABLE_SCHEMA",
       t.table_name::text AS "TABLE_NAME",
       CASE t.table_type WHEN 'VIEW' THEN 'VIEW' ELSE 'BASE TABLE' END AS "TABLE_TYPE"
FROM information_schema.tables t
WHERE position('.' in t.table_schema) > 0;
"#;

/// Runs every statement of a request in one session (see the module doc).
pub(crate) async fn execute(
    pg: &tokio_postgres::Config,
    request: &StatementRequest,
    warehouses: &[String],
    partition_rows: usize,
) -> Result<Vec<ResultSet>, SfError> {
    execute_with_cancel(pg, request, warehouses, partition_rows, &Mutex::new(None)).await
}

async fn execute_with_cancel(
    pg: &tokio_postgres::Config,
    request: &StatementRequest,
    warehouses: &[String],
    partition_rows: usize,
    cancel: &Mutex<Option<CancelToken>>,
) -> Result<Vec<ResultSet>, SfError> {
    let ctx = sql::Context {
        database: request.database.clone(),
        schema: request.schema.clone(),
        bindings: request.bindings.clone().unwrap_or_default(),
    };
    let statements = sql::translate(&request.statement, &ctx)?;
    check_statement_count(statements.len(), request.parameters.as_ref())?;
    let has_warehouse = match &request.warehouse {
        Some(named) => warehouses.iter().any(|w| w.eq_ignore_ascii_case(named)),
        None => !warehouses.is_empty(),
    };
    let client = connect(pg).await.map_err(|e| {
        SfError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "390400",
            "08001",
            format!("The emulator cannot reach its PostgreSQL: {e}"),
        )
    })?;
    *cancel.lock() = Some(client.cancel_token());
    let timezone = request
        .parameters
        .as_ref()
        .and_then(|p| p.iter().find(|(k, _)| k.eq_ignore_ascii_case("TIMEZONE")))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or("UTC");
    client
        .batch_execute(&format!(
            "SET TimeZone = '{}'; SET DateStyle = 'ISO'; SET IntervalStyle = 'iso_8601'; SET bytea_output = 'hex'; SET extra_float_digits = 3",
            timezone.replace('\'', "''")
        ))
        .await
        .map_err(|e| pg_error(&e))?;
    let mut results = Vec::with_capacity(statements.len());
    for statement in &statements {
        if statement.needs_warehouse && !has_warehouse {
            return Err(SfError::sql(
                "000606",
                "57P03",
                "No active warehouse selected in the current session.  Select an active warehouse with the 'use warehouse' command.",
            ));
        }
        results.push(run(&client, statement, partition_rows).await?);
    }
    Ok(results)
}

fn check_statement_count(
    actual: usize,
    parameters: Option<&HashMap<String, JsonValue>>,
) -> Result<(), SfError> {
    let desired = parameters
        .and_then(|p| {
            p.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("MULTI_STATEMENT_COUNT"))
        })
        .and_then(|(_, v)| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    if desired != 0 && desired != actual {
        return Err(SfError::sql(
            "000008",
            "0A000",
            format!("Actual statement count {actual} did not match the desired statement count {desired}."),
        ));
    }
    Ok(())
}

async fn run(
    client: &Client,
    statement: &Translated,
    partition_rows: usize,
) -> Result<ResultSet, SfError> {
    match &statement.kind {
        Kind::Query => query(client, &statement.sql, partition_rows).await,
        Kind::Dml(kind) => dml(client, &statement.sql, *kind).await,
        Kind::Other { status } => {
            client
                .batch_execute(&statement.sql)
                .await
                .map_err(|e| pg_error(&e))?;
            Ok(status_result("status", status))
        }
    }
}

fn status_result(column: &str, text: &str) -> ResultSet {
    ResultSet {
        row_type: vec![encode::row_type(
            column,
            SfType::Text { length: 16_777_216 },
            true,
            &Origin::default(),
            0,
        )],
        partitions: vec![vec![vec![Some(text.to_owned())]]],
        num_rows: 1,
        ..ResultSet::default()
    }
}

async fn dml(client: &Client, sql: &str, kind: DmlKind) -> Result<ResultSet, SfError> {
    let messages = client.simple_query(sql).await.map_err(|e| pg_error(&e))?;
    let count = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .sum::<u64>();
    let (column, stat) = match kind {
        DmlKind::Insert => ("number of rows inserted", "numRowsInserted"),
        DmlKind::Update => ("number of rows updated", "numRowsUpdated"),
        DmlKind::Delete => ("number of rows deleted", "numRowsDeleted"),
        DmlKind::Merge => ("number of rows merged", "numRowsUpdated"),
    };
    let fixed = SfType::Fixed {
        precision: 38,
        scale: Some(0),
    };
    Ok(ResultSet {
        row_type: vec![encode::row_type(
            column,
            fixed,
            false,
            &Origin::default(),
            0,
        )],
        partitions: vec![vec![vec![Some(count.to_string())]]],
        num_rows: 1,
        stats: Some(json!({ stat: count })),
        children: Vec::new(),
    })
}

/// What `rowType` says about one result column.
struct ColumnInfo {
    name: String,
    sf: SfType,
    nullable: bool,
    origin: Origin,
}

/// The result columns of `sql`: names, Snowflake types and, for table columns,
/// where they come from (a Snowflake table `D.S.T` is `"D.S"."T"`).
async fn describe(client: &Client, sql: &str) -> Result<Vec<ColumnInfo>, SfError> {
    let columns = crate::pg::describe(client, sql)
        .await
        .map_err(|e| pg_error(&e))?;
    Ok(columns
        .into_iter()
        .map(|column| {
            let origin = match &column.source {
                Some((schema, table)) => {
                    let (database, schema) = match schema.split_once('.') {
                        Some((database, schema)) => (database.to_owned(), schema.to_owned()),
                        None => (String::new(), schema.clone()),
                    };
                    Origin {
                        database,
                        schema,
                        table: table.clone(),
                    }
                }
                None => Origin::default(),
            };
            ColumnInfo {
                sf: SfType::from_postgres(&column.type_name, column.typmod),
                nullable: column.nullable,
                name: column.name,
                origin,
            }
        })
        .collect())
}

async fn query(client: &Client, sql: &str, partition_rows: usize) -> Result<ResultSet, SfError> {
    let columns = describe(client, sql).await?;
    let stream = client
        .simple_query_raw(sql)
        .await
        .map_err(|e| pg_error(&e))?;
    futures_util::pin_mut!(stream);
    let mut partitions: Vec<Vec<Vec<Option<String>>>> = Vec::new();
    let mut current: Vec<Vec<Option<String>>> = Vec::new();
    let mut scales = vec![0u32; columns.len()];
    let mut num_rows = 0usize;
    while let Some(message) = stream.try_next().await.map_err(|e| pg_error(&e))? {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let text = row.try_get(i).map_err(|e| pg_error(&e))?;
            values.push(text.map(|text| {
                if let SfType::Fixed { scale: None, .. } = column.sf {
                    scales[i] = scales[i].max(encode::scale_of(text));
                }
                encode::encode(column.sf, text)
            }));
        }
        current.push(values);
        num_rows += 1;
        if current.len() >= partition_rows {
            partitions.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() || partitions.is_empty() {
        partitions.push(current);
    }
    let row_type = columns
        .iter()
        .zip(&scales)
        .map(|(c, scale)| encode::row_type(&c.name, c.sf, c.nullable, &c.origin, *scale))
        .collect();
    Ok(ResultSet {
        row_type,
        partitions,
        num_rows,
        stats: None,
        children: Vec::new(),
    })
}

/// A PostgreSQL error as the Snowflake error a user would see for it.
fn pg_error(err: &tokio_postgres::Error) -> SfError {
    use tokio_postgres::error::SqlState;
    let Some(db) = err.as_db_error() else {
        return SfError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "390400",
            "08001",
            format!("The emulator lost its PostgreSQL session: {err}"),
        );
    };
    let position = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => *p,
        _ => 0,
    };
    let code = db.code();
    let message = db.message();
    if *code == SqlState::UNDEFINED_TABLE {
        let name = message.split('"').nth(1).unwrap_or(message);
        return SfError::sql(
            "002003",
            "42S02",
            format!("SQL compilation error:\nObject '{name}' does not exist or not authorized."),
        );
    }
    if *code == SqlState::INVALID_SCHEMA_NAME || *code == SqlState::UNDEFINED_SCHEMA {
        let name = message.split('"').nth(1).unwrap_or(message);
        return SfError::sql(
            "002003",
            "02000",
            format!("SQL compilation error:\nSchema '{name}' does not exist or not authorized."),
        );
    }
    if *code == SqlState::UNDEFINED_COLUMN {
        let name = message.split('"').nth(1).unwrap_or(message);
        return SfError::sql(
            "000904",
            "42000",
            format!("SQL compilation error: error line 1 at position {position}\ninvalid identifier '{name}'"),
        );
    }
    if *code == SqlState::DUPLICATE_TABLE || *code == SqlState::DUPLICATE_SCHEMA {
        let name = message.split('"').nth(1).unwrap_or(message);
        return SfError::sql(
            "002002",
            "42710",
            format!("SQL compilation error:\nObject '{name}' already exists."),
        );
    }
    if *code == SqlState::DIVISION_BY_ZERO {
        return SfError::sql("100051", "22012", "Division by zero");
    }
    if *code == SqlState::QUERY_CANCELED {
        return cancelled_error();
    }
    if code.code().starts_with("22") {
        return SfError::sql(
            "100038",
            "22018",
            format!("Numeric value or conversion error: {message}"),
        );
    }
    if code.code().starts_with("42") {
        return SfError::sql(
            "001003",
            "42000",
            format!("SQL compilation error:\nerror line 1 at position {position}: {message}"),
        );
    }
    SfError::sql(
        "100000",
        code.code(),
        format!("SQL execution error: {message}"),
    )
}
