//! Snowflake SQL API v2 emulator (saas-apis.md §3), executing statements on a local
//! PostgreSQL database.
//!
//! Endpoints:
//! - `POST /api/v2/statements` (`async`, `requestId`, `retry`; body `statement`,
//!   `timeout`, `database`, `schema`, `warehouse`, `role`, `bindings`, `parameters`)
//! - `GET /api/v2/statements/{handle}` (`partition=N`; gzip when the client accepts it)
//! - `POST /api/v2/statements/{handle}/cancel`
//!
//! Every call needs `Authorization: Bearer` with a key-pair JWT or an OAuth token
//! ([`auth`]; 401 `390144` / `390303`), passes the rolling-window limit (429
//! `390505`) and the fault injector. Statements are translated from Snowflake SQL to
//! PostgreSQL ([`sql`]) and run by [`exec`]; results are encoded as the SQL API
//! encodes them ([`encode`]).
//!
//! Choices where the reference leaves the behaviour open (documented so connector
//! authors know what they are testing against):
//! - a Snowflake database `D` with schema `S` is the PostgreSQL schema `"D.S"`;
//!   `CREATE DATABASE D` creates `"D.PUBLIC"`;
//! - `TIMESTAMP_TZ` is stored as an instant: its offset is always the session's
//!   (UTC, `1440` on the wire);
//! - a warehouse the emulator does not know leaves the session without one, so a
//!   query or DML answers 422 `000606` (DDL still runs), as Snowflake does;
//! - a role not granted to the user answers 422 `390186`;
//! - 401 messages carry the reason in brackets where Snowflake puts a request id.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::json;

use crate::config::{SnowflakeSettings, SnowflakeUser};
use crate::handle::{EmulatorHandle, Shared};
use crate::limits::Admission;

pub mod auth;
pub(crate) mod encode;
pub(crate) mod exec;
pub mod sql;

/// The SQL API's throttling code (429).
pub const TOO_MANY_REQUESTS: &str = "390505";

/// Snowflake-only state.
#[derive(Debug)]
pub(crate) struct SnowflakeState {
    pub settings: Mutex<SnowflakeSettings>,
    pub statements: exec::Statements,
    pub pg: Mutex<Option<tokio_postgres::Config>>,
}

impl SnowflakeState {
    pub fn new(settings: &SnowflakeSettings) -> Self {
        Self {
            settings: Mutex::new(settings.clone()),
            statements: exec::Statements::default(),
            pg: Mutex::new(None),
        }
    }
}

/// A Snowflake error body: `{"code", "message", "sqlState", "statementHandle"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub sql_state: String,
}

impl SfError {
    pub fn new(
        status: StatusCode,
        code: &str,
        sql_state: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            sql_state: sql_state.to_owned(),
        }
    }

    /// A 422 QueryFailureStatus.
    pub fn sql(code: &str, sql_state: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, sql_state, message)
    }

    pub fn response(&self, handle: Option<&str>) -> Response {
        let mut body = json!({
            "code": self.code,
            "message": self.message,
            "sqlState": self.sql_state,
        });
        if let Some(handle) = handle {
            body["statementHandle"] = json!(handle);
        }
        (self.status, Json(body)).into_response()
    }
}

/// Connects to the configured PostgreSQL server, creates the emulator's database
/// if missing, installs the translation helpers, and returns the router.
pub(crate) async fn setup(shared: &Arc<Shared>) -> anyhow::Result<Router> {
    let url = shared.snowflake.settings.lock().postgres_url.clone();
    let config = exec::prepare_database(&url).await?;
    *shared.snowflake.pg.lock() = Some(config);
    Ok(router(shared.clone()))
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/v2/statements", post(exec::submit))
        .route("/api/v2/statements/{handle}", get(exec::status))
        .route("/api/v2/statements/{handle}/cancel", post(exec::cancel))
        .route_layer(middleware::from_fn_with_state(shared.clone(), guard));
    api.fallback(not_found).with_state(shared)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": "390404", "message": "Not found."})),
    )
        .into_response()
}

/// The authenticated user a request runs as.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub user: SnowflakeUser,
}

/// Authentication, then admission, then counting, for every API call.
async fn guard(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let user = match auth::authenticate(&shared, request.headers()) {
        Ok(user) => user,
        Err(err) => {
            shared.record_unauthorized();
            return err.response(None);
        }
    };
    if let Admission::OverInterval { .. } | Admission::OverDaily =
        shared.limiter.lock().admit(Instant::now())
    {
        shared.record_throttled();
        return throttled();
    }
    if let Some(route) = request.extensions().get::<MatchedPath>() {
        shared.record_endpoint(request.method().as_str(), route.as_str());
    }
    request.extensions_mut().insert(Principal { user });
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        "x-snowflake-request-id",
        HeaderValue::from_str(&shared.random_uuid()).expect("a UUID is a valid header value"),
    );
    response
}

/// 429 with Snowflake's throttling body.
pub(crate) fn throttled() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"code": TOO_MANY_REQUESTS, "message": "Too many requests."})),
    )
        .into_response()
}

/// An injected 500/503: no Snowflake code is documented for these, so the body
/// says what happened in the API's error shape.
pub(crate) fn injected_server_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({"code": "390400", "message": "Injected server error (emulator fault injection)."})),
    )
        .into_response()
}

pub(crate) fn connection_info(shared: &Shared) -> String {
    let settings = shared.snowflake.settings.lock();
    let token = settings
        .oauth_tokens
        .first()
        .map(|(token, user)| format!("{token} (user {user})"))
        .unwrap_or_else(|| "none".into());
    format!(
        "Snowflake SQL API v2 emulator at {base}\n  account: {account}\n  statements: POST {base}/api/v2/statements\n  OAuth token: {token}\n  warehouses: {warehouses}\n  executing on: {pg}",
        base = shared.base_url,
        account = settings.account,
        warehouses = settings.warehouses.join(", "),
        pg = crate::pg::redact_password(&settings.postgres_url),
    )
}

/// Snowflake controls on the emulator handle.
impl EmulatorHandle {
    /// Snowflake: registers an RSA public key (PEM) for `user`, creating the user
    /// (with roles `SYSADMIN` and `PUBLIC`) if unknown.
    pub fn snowflake_add_public_key(&self, user: &str, public_key_pem: &str) {
        let mut settings = self.shared.snowflake.settings.lock();
        match settings
            .users
            .iter_mut()
            .find(|u| u.name.eq_ignore_ascii_case(user))
        {
            Some(existing) => existing.public_keys.push(public_key_pem.to_owned()),
            None => settings.users.push(SnowflakeUser {
                name: user.to_ascii_uppercase(),
                public_keys: vec![public_key_pem.to_owned()],
                roles: vec!["SYSADMIN".into(), "PUBLIC".into()],
            }),
        }
    }

    /// Snowflake: rows per result partition for statements run from now on.
    pub fn snowflake_set_partition_rows(&self, rows: usize) {
        self.shared.snowflake.settings.lock().partition_rows = rows.max(1);
    }

    /// Snowflake: extra time each statement takes before it runs, and how long a
    /// synchronous submission waits before answering 202.
    pub fn snowflake_set_timing(
        &self,
        execution_delay: std::time::Duration,
        sync_wait: std::time::Duration,
    ) {
        let mut settings = self.shared.snowflake.settings.lock();
        settings.execution_delay = execution_delay;
        settings.sync_wait = sync_wait;
    }

    /// Snowflake: every statement text submitted so far, in order.
    pub fn snowflake_statements(&self) -> Vec<String> {
        self.shared.snowflake.statements.submitted()
    }

    /// Snowflake: handles of statements cancelled through the API.
    pub fn snowflake_cancelled(&self) -> Vec<String> {
        self.shared.snowflake.statements.cancelled()
    }

    /// Snowflake: runs `statement` as `SYSADMIN` in `database`.`schema` without HTTP
    /// (test setup), returning the result rows as the API encodes them.
    pub async fn snowflake_execute(
        &self,
        statement: &str,
    ) -> Result<Vec<Vec<Option<String>>>, SfError> {
        let pg = self.shared.snowflake.pg.lock().clone().ok_or_else(|| {
            SfError::sql(
                "000001",
                "XX000",
                "the emulator is not a Snowflake emulator",
            )
        })?;
        let request = exec::StatementRequest {
            statement: statement.to_owned(),
            ..exec::StatementRequest::default()
        };
        let warehouses = self.shared.snowflake.settings.lock().warehouses.clone();
        let results = exec::execute(&pg, &request, &warehouses, usize::MAX).await?;
        Ok(results
            .into_iter()
            .last()
            .map(|r| r.partitions.into_iter().flatten().collect())
            .unwrap_or_default())
    }
}
