//! BigQuery REST v2 emulator (warehouse-apis.md §1), executing queries on a
//! local PostgreSQL database.
//!
//! Endpoints:
//! - `POST /token`: the OAuth JWT grant; the assertion's RS256 signature must
//!   verify with the public key configured for its `iss` ([`auth`]).
//! - `POST /bigquery/v2/projects/{p}/queries` (jobs.query, `dryRun`,
//!   `maximumBytesBilled`, `maxResults`, `timeoutMs`, `formatOptions`, `requestId`)
//! - `GET /bigquery/v2/projects/{p}/queries/{jobId}` (getQueryResults:
//!   `pageToken`, `startIndex`, `maxResults`, `timeoutMs`, `location`,
//!   `formatOptions.useInt64Timestamp`)
//! - `POST /bigquery/v2/projects/{p}/jobs` (jobs.insert of a query job),
//!   `GET …/jobs/{jobId}` (jobs.get), `POST …/jobs/{jobId}/cancel`
//!
//! Every API call needs a bearer token the token endpoint issued (unless
//! `allow_anonymous`), passes the rolling-window limit (403 `rateLimitExceeded`)
//! and the fault injector. Queries are translated ([`sql`]) and run ([`jobs`]).
//!
//! Choices where the reference leaves the behaviour open:
//! - a dataset is a PostgreSQL schema of the emulator's database; there is one
//!   project (`settings.project`) and one location (`settings.location`);
//! - `totalBytesProcessed` is the size of the referenced tables' rows
//!   (`pg_column_size`), and bytes billed equal bytes processed (no 10 MB minimum);
//! - jobs run at once (after `execution_delay`); results stay in memory.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::json;

use crate::config::{BigQuerySettings, ServiceAccount};
use crate::handle::{EmulatorHandle, Shared};
use crate::limits::Admission;

pub mod auth;
pub(crate) mod jobs;
pub mod sql;

/// BigQuery-only state.
#[derive(Debug)]
pub(crate) struct BigQueryState {
    pub settings: Mutex<BigQuerySettings>,
    pub jobs: jobs::Jobs,
    pub tokens: auth::Tokens,
    pub pg: Mutex<Option<tokio_postgres::Config>>,
}

impl BigQueryState {
    pub fn new(settings: &BigQuerySettings) -> Self {
        Self {
            settings: Mutex::new(settings.clone()),
            jobs: jobs::Jobs::default(),
            tokens: auth::Tokens::default(),
            pg: Mutex::new(None),
        }
    }
}

/// A BigQuery error: the HTTP status, `errors[0].reason`, the message and,
/// for query errors, the `location` (`query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BqError {
    pub status: StatusCode,
    pub reason: String,
    pub message: String,
    pub location: Option<String>,
}

impl BqError {
    pub fn new(status: StatusCode, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.to_owned(),
            message: message.into(),
            location: None,
        }
    }

    /// 400 `invalidQuery` located at the `query` parameter.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self {
            location: Some("query".into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalidQuery", message)
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "notFound", message)
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "accessDenied", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internalError", message)
    }

    /// The `errorResult` / `errors[]` entry.
    pub fn item(&self) -> serde_json::Value {
        let mut item = json!({
            "reason": self.reason,
            "message": self.message,
            "domain": "global",
        });
        if let Some(location) = &self.location {
            item["location"] = json!(location);
            item["locationType"] = json!("parameter");
        }
        item
    }

    pub fn response(&self) -> Response {
        let status = match self.status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ALREADY_EXISTS",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        };
        let body = json!({
            "error": {
                "code": self.status.as_u16(),
                "message": self.message,
                "errors": [self.item()],
                "status": status,
            }
        });
        (self.status, Json(body)).into_response()
    }
}

/// Connects to the configured PostgreSQL server, creates the emulator's database
/// if missing, installs the catalog helpers, and returns the router.
pub(crate) async fn setup(shared: &Arc<Shared>) -> anyhow::Result<Router> {
    let url = shared.bigquery.settings.lock().postgres_url.clone();
    let config = crate::pg::prepare_database(&url, jobs::SETUP_SQL, "BigQuery").await?;
    *shared.bigquery.pg.lock() = Some(config);
    Ok(router(shared.clone()))
}

fn router(shared: Arc<Shared>) -> Router {
    let projects = "/bigquery/v2/projects/{project}";
    let api = Router::new()
        .route(&format!("{projects}/queries"), post(jobs::query))
        .route(
            &format!("{projects}/queries/{{job}}"),
            get(jobs::get_query_results),
        )
        .route(&format!("{projects}/jobs"), post(jobs::insert))
        .route(&format!("{projects}/jobs/{{job}}"), get(jobs::get))
        .route(
            &format!("{projects}/jobs/{{job}}/cancel"),
            post(jobs::cancel),
        )
        .route_layer(middleware::from_fn_with_state(shared.clone(), guard));
    Router::new()
        .route("/token", post(auth::token))
        .merge(api)
        .fallback(not_found)
        .with_state(shared)
}

async fn not_found(request: Request) -> Response {
    BqError::not_found(format!("Not found: URL {}", request.uri().path())).response()
}

/// Authentication, then admission, then counting, for every API call.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Err(err) = auth::authenticate(&shared, request.headers()) {
        shared.record_unauthorized();
        return err.response();
    }
    if let Admission::OverInterval { .. } | Admission::OverDaily =
        shared.limiter.lock().admit(Instant::now())
    {
        shared.record_throttled();
        return rate_limited().response();
    }
    if let Some(route) = request.extensions().get::<MatchedPath>() {
        shared.record_endpoint(request.method().as_str(), route.as_str());
    }
    next.run(request).await
}

/// BigQuery's throttling answer: 403 `rateLimitExceeded`.
pub(crate) fn rate_limited() -> BqError {
    BqError::new(
        StatusCode::FORBIDDEN,
        "rateLimitExceeded",
        "Exceeded rate limits: too many api requests per user per method for this user_method. \
         For more information, see https://cloud.google.com/bigquery/docs/troubleshoot-quotas",
    )
}

/// An injected 500/503 in BigQuery's error shape (`backendError`).
pub(crate) fn injected_server_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    BqError::new(
        status,
        "backendError",
        "Injected server error (emulator fault injection).",
    )
    .response()
}

pub(crate) fn connection_info(shared: &Shared) -> String {
    let settings = shared.bigquery.settings.lock();
    let accounts: Vec<&str> = settings
        .service_accounts
        .iter()
        .map(|a| a.email.as_str())
        .collect();
    format!(
        "BigQuery REST v2 emulator at {base}\n  project: {project} (location {location})\n  jobs.query: POST {base}/bigquery/v2/projects/{project}/queries\n  token endpoint (token_uri): {base}/token\n  service accounts: {accounts}\n  anonymous requests: {anonymous}\n  executing on: {pg}",
        base = shared.base_url,
        project = settings.project,
        location = settings.location,
        accounts = if accounts.is_empty() { "none".into() } else { accounts.join(", ") },
        anonymous = if settings.allow_anonymous { "allowed" } else { "refused" },
        pg = crate::pg::redact_password(&settings.postgres_url),
    )
}

/// BigQuery controls on the emulator handle.
impl EmulatorHandle {
    /// BigQuery: registers a service account whose JWT grants the token
    /// endpoint accepts (`public_key_pem`: `BEGIN PUBLIC KEY`).
    pub fn bigquery_add_service_account(&self, email: &str, public_key_pem: &str) {
        self.shared
            .bigquery
            .settings
            .lock()
            .service_accounts
            .push(ServiceAccount {
                email: email.to_owned(),
                public_key: public_key_pem.to_owned(),
            });
    }

    /// BigQuery: extra time every query job takes from now on, and the longest
    /// a call holds for a job (together they force `jobComplete: false`).
    pub fn bigquery_set_timing(
        &self,
        execution_delay: std::time::Duration,
        max_wait: std::time::Duration,
    ) {
        let mut settings = self.shared.bigquery.settings.lock();
        settings.execution_delay = execution_delay;
        settings.max_wait = max_wait;
    }

    /// BigQuery: expires every access token issued so far, as an hour passing
    /// would: calls with them answer 401 until the client gets a new one.
    pub fn bigquery_expire_tokens(&self) {
        self.shared.bigquery.tokens.expire_all();
    }

    /// BigQuery: every query text submitted through the API so far, in order.
    pub fn bigquery_queries(&self) -> Vec<String> {
        self.shared.bigquery.jobs.submitted()
    }

    /// BigQuery: runs `sql` (GoogleSQL, possibly several statements) without
    /// HTTP (test setup), returning the last statement's rows in the `f`/`v` encoding.
    pub async fn bigquery_execute(&self, sql: &str) -> Result<Vec<serde_json::Value>, BqError> {
        let pg = self
            .shared
            .bigquery
            .pg
            .lock()
            .clone()
            .ok_or_else(|| BqError::internal("the emulator is not a BigQuery emulator"))?;
        let settings = self.shared.bigquery.settings.lock().clone();
        let request = jobs::Run {
            sql: sql.to_owned(),
            default_dataset: None,
            dry_run: false,
            maximum_bytes_billed: None,
            location: settings.location.clone(),
        };
        let result = jobs::execute(&pg, &settings, &request).await?;
        Ok(result.rows.clone())
    }
}
