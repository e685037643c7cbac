//! Databricks SQL Statement Execution API 2.0 emulator (warehouse-apis.md §2),
//! executing statements on a local PostgreSQL database.
//!
//! Endpoints:
//! - `POST /api/2.0/sql/statements` (`statement`, `warehouse_id`, `catalog`,
//!   `schema`, `parameters`, `wait_timeout`, `on_wait_timeout`, `disposition`,
//!   `format`, `row_limit`)
//! - `GET /api/2.0/sql/statements/{id}` (status, manifest, first chunk)
//! - `GET /api/2.0/sql/statements/{id}/result/chunks/{n}`
//! - `POST /api/2.0/sql/statements/{id}/cancel`
//! - `POST /oidc/v1/token` (OAuth M2M client credentials, HTTP Basic or form
//!   client auth), `GET /oidc/.well-known/oauth-authorization-server`, and
//!   the host metadata the SDK reads first, `GET /.well-known/databricks-config`
//! - EXTERNAL_LINKS files on a second listener ("cloud storage", [`storage`]):
//!   no auth, a link expires, and a request carrying `Authorization` is
//!   refused as a presigned URL refuses it.
//!
//! API calls need `Authorization: Bearer` with a personal access token or an
//! M2M token ([`auth`]; 401 `UNAUTHENTICATED`), pass the rolling-window limit
//! (429 `REQUEST_LIMIT_EXCEEDED` with `Retry-After`) and the fault injector
//! (503 `TEMPORARILY_UNAVAILABLE`). Statements are translated ([`sql`]) and run
//! by [`exec`].
//!
//! Choices where the reference leaves the behaviour open:
//! - a catalog `c` with schema `s` is the PostgreSQL schema `"c.s"`; the
//!   defaults are catalog `main`, schema `default`;
//! - JSON_ARRAY values: TIMESTAMP `2024-01-02T03:04:05.123456Z` (UTC),
//!   TIMESTAMP_NTZ without the `Z`, BINARY base64, INTERVAL ISO 8601
//!   (`P1DT2H`), ARRAY/MAP/STRUCT JSON text, DECIMAL exact text;
//! - an unknown warehouse answers 404 `NOT_FOUND`; ARROW_STREAM and CSV answer
//!   501 `NOT_IMPLEMENTED` (not emulated);
//! - a result over the INLINE limit fails the statement (`BAD_REQUEST`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::json;

use crate::config::DatabricksSettings;
use crate::handle::{EmulatorHandle, Shared};
use crate::limits::Admission;

pub mod auth;
pub(crate) mod exec;
pub mod sql;
pub(crate) mod storage;
pub(crate) mod types;

/// Databricks-only state.
#[derive(Debug)]
pub(crate) struct DatabricksState {
    pub settings: Mutex<DatabricksSettings>,
    pub statements: exec::Statements,
    pub pg: Mutex<Option<tokio_postgres::Config>>,
    /// OAuth M2M access tokens issued, with when each expires.
    pub issued: Mutex<HashMap<String, Instant>>,
    /// `http://host:port` of the storage listener serving EXTERNAL_LINKS.
    pub storage_url: Mutex<String>,
    pub storage_task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl DatabricksState {
    pub fn new(settings: &DatabricksSettings) -> Self {
        Self {
            settings: Mutex::new(settings.clone()),
            statements: exec::Statements::default(),
            pg: Mutex::new(None),
            issued: Mutex::new(HashMap::new()),
            storage_url: Mutex::new(String::new()),
            storage_task: Mutex::new(None),
        }
    }
}

/// A rejected request: HTTP status and `{"error_code", "message"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error_code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_code: error_code.to_owned(),
            message: message.into(),
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
    }

    pub fn response(&self) -> Response {
        (
            self.status,
            Json(json!({"error_code": self.error_code, "message": self.message})),
        )
            .into_response()
    }
}

/// A statement that ran and failed: HTTP 200 with `status.state: FAILED`,
/// `status.error: {error_code, message}` and `status.sql_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlFailure {
    pub error_code: String,
    pub message: String,
    pub sql_state: String,
}

impl SqlFailure {
    pub fn new(error_code: &str, sql_state: &str, message: impl Into<String>) -> Self {
        Self {
            error_code: error_code.to_owned(),
            message: message.into(),
            sql_state: sql_state.to_owned(),
        }
    }

    /// The code Databricks gives a statement its SQL is to blame for.
    pub fn bad_request(sql_state: &str, message: impl Into<String>) -> Self {
        Self::new("BAD_REQUEST", sql_state, message)
    }
}

/// Connects to PostgreSQL (creating the database and its helpers), starts the
/// storage listener, and returns the API router.
pub(crate) async fn setup(shared: &Arc<Shared>, bind: std::net::IpAddr) -> anyhow::Result<Router> {
    let url = shared.databricks.settings.lock().postgres_url.clone();
    let config = exec::prepare_database(&url).await?;
    *shared.databricks.pg.lock() = Some(config);
    storage::start(shared, bind).await?;
    Ok(router(shared.clone()))
}

/// Stops the storage listener (with the emulator).
pub(crate) fn stop(shared: &Shared) {
    if let Some(task) = shared.databricks.storage_task.lock().take() {
        task.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/2.0/sql/statements", post(exec::submit))
        .route("/api/2.0/sql/statements/", post(exec::submit))
        .route("/api/2.0/sql/statements/{id}", get(exec::status))
        .route(
            "/api/2.0/sql/statements/{id}/result/chunks/{n}",
            get(exec::chunk),
        )
        .route("/api/2.0/sql/statements/{id}/cancel", post(exec::cancel))
        .route_layer(middleware::from_fn_with_state(shared.clone(), guard));
    let open = Router::new()
        .route("/oidc/v1/token", post(auth::token))
        .route(
            "/oidc/.well-known/oauth-authorization-server",
            get(auth::discovery),
        )
        .route("/.well-known/databricks-config", get(auth::host_metadata));
    api.merge(open).fallback(not_found).with_state(shared)
}

async fn not_found(request: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ENDPOINT_NOT_FOUND",
        format!(
            "No API found for '{} {}'",
            request.method(),
            request.uri().path()
        ),
    )
    .response()
}

/// Authentication, then admission, then counting, for every API call.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Err(err) = auth::authenticate(&shared, request.headers()) {
        shared.record_unauthorized();
        return err.response();
    }
    if let Admission::OverInterval { retry_after } = shared.limiter.lock().admit(Instant::now()) {
        shared.record_throttled();
        return throttled(retry_after);
    }
    if let Some(route) = request.extensions().get::<MatchedPath>() {
        shared.record_endpoint(request.method().as_str(), route.as_str());
    }
    next.run(request).await
}

/// 429 with `Retry-After` (whole seconds, at least 1).
pub(crate) fn throttled(retry_after: Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "REQUEST_LIMIT_EXCEEDED",
        "The request rate limit was exceeded. Retry after the time in Retry-After.",
    )
    .response();
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    response.headers_mut().insert(
        "retry-after",
        HeaderValue::from_str(&seconds.to_string()).expect("digits are a valid header value"),
    );
    response
}

/// An injected 500/503 in the API's error shape.
pub(crate) fn injected_server_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = if status == StatusCode::SERVICE_UNAVAILABLE {
        "TEMPORARILY_UNAVAILABLE"
    } else {
        "INTERNAL_ERROR"
    };
    ApiError::new(
        status,
        code,
        "Injected server error (emulator fault injection).",
    )
    .response()
}

pub(crate) fn connection_info(shared: &Shared) -> String {
    let settings = shared.databricks.settings.lock();
    let client = settings
        .oauth_clients
        .first()
        .map(|c| format!("{} / {}", c.client_id, c.client_secret))
        .unwrap_or_else(|| "none".into());
    format!(
        "Databricks SQL Statement Execution API emulator at {base}\n  statements: POST {base}/api/2.0/sql/statements\n  personal access token: {token}\n  OAuth M2M client (id / secret): {client}\n  warehouse ids: {warehouses}\n  EXTERNAL_LINKS host (grant it too): {storage}\n  executing on: {pg}",
        base = shared.base_url,
        token = settings.tokens.first().map(String::as_str).unwrap_or("none"),
        warehouses = settings.warehouses.join(", "),
        storage = shared.databricks.storage_url.lock(),
        pg = crate::pg::redact_password(&settings.postgres_url),
    )
}

/// Databricks controls on the emulator handle.
impl EmulatorHandle {
    /// Databricks: rows per result chunk for statements run from now on.
    pub fn databricks_set_chunk_rows(&self, rows: usize) {
        self.shared.databricks.settings.lock().chunk_rows = rows.max(1);
    }

    /// Databricks: the INLINE disposition's byte cap (25 MiB by default).
    pub fn databricks_set_inline_limit(&self, bytes: usize) {
        self.shared.databricks.settings.lock().inline_limit_bytes = bytes;
    }

    /// Databricks: how long EXTERNAL_LINKS URLs issued from now on work.
    pub fn databricks_set_link_lifetime(&self, lifetime: Duration) {
        self.shared.databricks.settings.lock().link_lifetime = lifetime;
    }

    /// Databricks: extra time each statement takes before it runs.
    pub fn databricks_set_execution_delay(&self, delay: Duration) {
        self.shared.databricks.settings.lock().execution_delay = delay;
    }

    /// Databricks: `http://host:port` of the storage listener (EXTERNAL_LINKS).
    pub fn databricks_storage_url(&self) -> String {
        self.shared.databricks.storage_url.lock().clone()
    }

    /// Databricks: every statement text submitted so far, in order.
    pub fn databricks_statements(&self) -> Vec<String> {
        self.shared.databricks.statements.submitted()
    }

    /// Databricks: ids of statements cancelled through the API.
    pub fn databricks_cancelled(&self) -> Vec<String> {
        self.shared.databricks.statements.cancelled()
    }

    /// Databricks: requests to EXTERNAL_LINKS URLs that carried an
    /// `Authorization` header (and were refused).
    pub fn databricks_links_with_authorization(&self) -> u64 {
        self.shared.databricks.statements.links_with_authorization()
    }

    /// Databricks: runs `statement` in catalog `main`, schema `default` without
    /// HTTP (test setup), returning the rows as JSON_ARRAY encodes them.
    pub async fn databricks_execute(
        &self,
        statement: &str,
    ) -> Result<Vec<Vec<Option<String>>>, SqlFailure> {
        let pg = self.shared.databricks.pg.lock().clone().ok_or_else(|| {
            SqlFailure::new(
                "INTERNAL_ERROR",
                "XX000",
                "the emulator is not a Databricks emulator",
            )
        })?;
        let request = exec::StatementRequest {
            statement: statement.to_owned(),
            ..exec::StatementRequest::default()
        };
        let result = exec::execute(&pg, &request, usize::MAX, &Mutex::new(None)).await?;
        Ok(result.chunks.into_iter().flatten().collect())
    }
}
