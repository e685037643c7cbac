//! The SQL Statement Execution API 2.0 client: submit with `wait_timeout`,
//! poll PENDING/RUNNING, fetch chunks and EXTERNAL_LINKS files, cancel; 429 and
//! 503 retried with bounded backoff; FAILED statements' `error_code` and
//! message passed through, naming the workspace.

use crate::config::{Config, Credentials};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use sluice_sdk::http::{self, Response};
use sluice_sdk::{PluginError, RateLimitedInfo};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const USER_AGENT: &str = concat!("sluice-databricks/", env!("CARGO_PKG_VERSION"));
/// First retry waits this long (or the server's Retry-After), then twice as
/// long each time, up to the cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// One row as the API sends it: strings or nulls.
pub type RawRow = Vec<Option<String>>;

#[derive(Debug, Deserialize)]
pub struct StatementResponse {
    pub statement_id: String,
    pub status: Status,
    #[serde(default)]
    pub manifest: Option<Manifest>,
    #[serde(default)]
    pub result: Option<ResultData>,
}

#[derive(Debug, Deserialize)]
pub struct Status {
    pub state: String,
    #[serde(default)]
    pub error: Option<ServiceError>,
    #[serde(default)]
    pub sql_state: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct ServiceError {
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub schema: Schema,
    #[serde(default)]
    pub total_row_count: Option<u64>,
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Deserialize)]
pub struct Schema {
    #[serde(default)]
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(default)]
    pub type_name: Option<String>,
    #[serde(default)]
    pub type_text: Option<String>,
    #[serde(default)]
    pub type_precision: Option<u32>,
    #[serde(default)]
    pub type_scale: Option<u32>,
}

/// One chunk: its rows (INLINE) or its link (EXTERNAL_LINKS).
#[derive(Debug, Deserialize, Default)]
pub struct ResultData {
    #[serde(default)]
    pub chunk_index: Option<u64>,
    #[serde(default)]
    pub data_array: Option<Vec<RawRow>>,
    #[serde(default)]
    pub next_chunk_internal_link: Option<String>,
    #[serde(default)]
    pub external_links: Option<Vec<ExternalLink>>,
}

#[derive(Debug, Deserialize)]
pub struct ExternalLink {
    pub chunk_index: u64,
    pub external_link: String,
    #[serde(default)]
    pub http_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub next_chunk_internal_link: Option<String>,
}

#[derive(Deserialize, Default)]
struct ApiErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

pub struct Client {
    config: Config,
    authorization: String,
}

impl Client {
    /// Resolves the credentials (an OAuth M2M token is fetched now).
    pub fn new(config: Config) -> Result<Self, PluginError> {
        let mut client = Client {
            config,
            authorization: String::new(),
        };
        client.authorization = match client.config.credentials()? {
            Credentials::Token(token) => format!("Bearer {token}"),
            Credentials::OAuth { client_id, secret } => {
                format!("Bearer {}", client.oauth_token(client_id, secret)?)
            }
        };
        Ok(client)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// OAuth M2M: the client-credentials grant at `/oidc/v1/token`, scope
    /// `all-apis`, the client authenticated with HTTP Basic.
    fn oauth_token(&self, client_id: &str, secret: &str) -> Result<String, PluginError> {
        let what = "getting an OAuth M2M token";
        let url = format!("{}/oidc/v1/token", self.config.host);
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        let response = self.send(what, || {
            http::Request::new("POST", &url)
                .header("authorization", &format!("Basic {basic}"))
                .header("accept", "application/json")
                .header("user-agent", USER_AGENT)
                .body_bytes(
                    "application/x-www-form-urlencoded",
                    b"grant_type=client_credentials&scope=all-apis".to_vec(),
                )
                .timeout(Duration::from_millis(self.config.request_timeout_ms))
        })?;
        if !response.is_success() {
            return Err(self.error(what, &response));
        }
        let token: TokenResponse = response.json().map_err(|e| self.context(what, e))?;
        Ok(token.access_token)
    }

    fn request(&self, method: &str, url: &str) -> http::Request {
        http::Request::new(method, url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .header("user-agent", USER_AGENT)
            .timeout(Duration::from_millis(self.config.request_timeout_ms))
    }

    /// Sends with retries of 429, 503 and transport failures, waiting the
    /// server's Retry-After when it gives one (capped).
    fn send(&self, what: &str, build: impl Fn() -> http::Request) -> Result<Response, PluginError> {
        let retry = http::Retry {
            max_retries: self.config.max_retries,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            honour_retry_after: true,
        };
        match retry.send(what, |_| build(), |r| matches!(r.status, 429 | 503)) {
            Ok(http::Retried::Answer(response)) => Ok(response),
            Ok(http::Retried::Exhausted(response)) => Err(self.error(what, &response)),
            Err(e) => Err(self.context(what, e.into())),
        }
    }

    pub fn context(&self, what: &str, error: PluginError) -> PluginError {
        let context = format!("{} ({what})", self.config.target());
        error.context(&context)
    }

    /// A rejected request as the contract's error, with Databricks' code and message.
    fn error(&self, what: &str, response: &Response) -> PluginError {
        let body: ApiErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
        let detail = if !body.error_code.is_empty() {
            format!(
                "HTTP {}, {}: {}",
                response.status, body.error_code, body.message
            )
        } else if !body.error.is_empty() {
            format!(
                "HTTP {}, {}: {}",
                response.status, body.error, body.error_description
            )
        } else {
            format!(
                "HTTP {}: {}",
                response.status,
                truncate(&response.text(), 500)
            )
        };
        let error = match response.status {
            401 | 403 => PluginError::Auth(format!("authentication refused: {detail}")),
            429 => PluginError::RateLimited(RateLimitedInfo {
                retry_after_ms: response.retry_after_ms().unwrap_or(1000),
                message: format!(
                    "still throttled after {} retries: {detail}",
                    self.config.max_retries
                ),
            }),
            500..=599 => PluginError::Retryable(detail),
            _ => PluginError::Permanent(detail),
        };
        self.context(what, error)
    }

    fn parse_statement(
        &self,
        what: &str,
        response: Response,
    ) -> Result<StatementResponse, PluginError> {
        if !response.is_success() {
            return Err(self.error(what, &response));
        }
        response.json().map_err(|e| self.context(what, e))
    }

    /// Runs `sql` and returns the SUCCEEDED answer (manifest and first chunk),
    /// polling PENDING/RUNNING and cancelling past `max_poll_ms`.
    pub fn execute(&self, sql: &str) -> Result<StatementResponse, PluginError> {
        let mut body = json!({
            "statement": sql,
            "warehouse_id": self.config.warehouse_id,
            "wait_timeout": format!("{}s", self.config.wait_timeout_s),
            "on_wait_timeout": "CONTINUE",
            "disposition": self.config.disposition,
            "format": "JSON_ARRAY",
        });
        for (key, value) in [
            ("catalog", &self.config.catalog),
            ("schema", &self.config.schema),
        ] {
            if let Some(value) = value {
                body[key] = json!(value);
            }
        }
        let what = "submitting the statement";
        let url = format!("{}/api/2.0/sql/statements", self.config.host);
        let response = self.send(what, || self.request("POST", &url).json(&body))?;
        let statement = self.parse_statement(what, response)?;
        self.finish(statement)
    }

    /// A terminal answer checked, an open one polled.
    fn finish(&self, statement: StatementResponse) -> Result<StatementResponse, PluginError> {
        let started = Instant::now();
        let limit = Duration::from_millis(self.config.max_poll_ms);
        let mut interval = FIRST_POLL;
        let mut current = statement;
        loop {
            match current.status.state.as_str() {
                "SUCCEEDED" => return Ok(current),
                "PENDING" | "RUNNING" => {}
                _ => return Err(self.failure(&current)),
            }
            let id = current.statement_id.clone();
            if started.elapsed() >= limit {
                self.cancel(&id);
                return Err(self.context(
                    "waiting for the statement",
                    PluginError::Permanent(format!(
                        "statement {id} still {} after {} ms; cancelled it (raise `max_poll_ms` to wait longer)",
                        current.status.state, self.config.max_poll_ms
                    )),
                ));
            }
            http::sleep(interval.min(limit.saturating_sub(started.elapsed())));
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
            let what = "polling the statement";
            let url = format!("{}/api/2.0/sql/statements/{id}", self.config.host);
            let response = self.send(what, || self.request("GET", &url))?;
            current = self.parse_statement(what, response)?;
        }
    }

    /// FAILED, CANCELED or CLOSED as an error carrying Databricks' code and message.
    fn failure(&self, statement: &StatementResponse) -> PluginError {
        let id = &statement.statement_id;
        let message = match (statement.status.state.as_str(), &statement.status.error) {
            ("FAILED", Some(error)) => {
                let state = statement
                    .status
                    .sql_state
                    .as_deref()
                    .map(|s| format!(" (SQL state {s})"))
                    .unwrap_or_default();
                format!(
                    "statement {id} FAILED, {}{state}: {}",
                    error.error_code, error.message
                )
            }
            ("CANCELED", _) => format!("statement {id} was CANCELED"),
            ("CLOSED", _) => format!("statement {id} is CLOSED: its result has expired"),
            (other, _) => format!("statement {id} ended in state {other}"),
        };
        let transient = statement.status.error.as_ref().is_some_and(|e| {
            matches!(
                e.error_code.as_str(),
                "TEMPORARILY_UNAVAILABLE" | "RESOURCE_EXHAUSTED" | "INTERNAL_ERROR"
            )
        });
        let error = if transient {
            PluginError::Retryable(message)
        } else {
            PluginError::Permanent(message)
        };
        self.context("running the statement", error)
    }

    /// Asks Databricks to cancel a statement; failures are logged, not raised
    /// (this runs on the way out of another error).
    pub fn cancel(&self, id: &str) {
        let url = format!("{}/api/2.0/sql/statements/{id}/cancel", self.config.host);
        let outcome = self.request("POST", &url).json(&json!({})).send();
        let message = match outcome {
            Ok(r) if r.is_success() => format!("cancelled statement {id}"),
            Ok(r) => format!("cancelling statement {id}: HTTP {}", r.status),
            Err(e) => format!("cancelling statement {id}: {e}"),
        };
        sluice_sdk::log::log(sluice_sdk::log::Level::Info, &message);
    }

    /// A chunk by its `next_chunk_internal_link` (a path on the workspace).
    pub fn chunk(&self, link: &str) -> Result<ResultData, PluginError> {
        let what = format!("fetching result chunk {link}");
        let url = format!("{}{link}", self.config.host);
        let response = self.send(&what, || self.request("GET", &url))?;
        if !response.is_success() {
            return Err(self.error(&what, &response));
        }
        response.json().map_err(|e| self.context(&what, e))
    }

    /// An EXTERNAL_LINKS file: fetched with the link's own headers and never
    /// with `Authorization` (presigned cloud storage refuses it, and the token
    /// must not leave the workspace). `None` when the link has expired (403).
    pub fn external_rows(&self, link: &ExternalLink) -> Result<Option<Vec<RawRow>>, PluginError> {
        let what = format!(
            "downloading result chunk {} (EXTERNAL_LINKS)",
            link.chunk_index
        );
        let response = self.send(&what, || {
            link.http_headers.iter().fold(
                http::Request::new("GET", &link.external_link)
                    .header("user-agent", USER_AGENT)
                    .timeout(Duration::from_millis(self.config.request_timeout_ms)),
                |request, (name, value)| request.header(name, value),
            )
        })?;
        if response.status == 403 {
            return Ok(None);
        }
        if !response.is_success() {
            let detail = format!(
                "HTTP {}: {}",
                response.status,
                truncate(&response.text(), 300)
            );
            return Err(self.context(&what, PluginError::Permanent(detail)));
        }
        let rows: Vec<RawRow> = serde_json::from_slice(&response.body).map_err(|e| {
            self.context(
                &what,
                PluginError::Permanent(format!("the file is not a JSON_ARRAY chunk: {e}")),
            )
        })?;
        Ok(Some(rows))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
