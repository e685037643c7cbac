//! The SQL API v2 client: submit, poll a 202, fetch partitions (gzip), cancel;
//! 429 and 5xx retried with bounded exponential backoff; Snowflake's error codes
//! and messages passed through, naming the account.

use crate::config::{Config, Credentials};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use sluice_sdk::http::{self, Response};
use sluice_sdk::{PluginError, RateLimitedInfo};
use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USER_AGENT: &str = concat!("sluice-snowflake/", env!("CARGO_PKG_VERSION"));
/// First retry waits this long, then twice as long each time, up to the cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// One row as the API sends it: strings or nulls.
pub type RawRow = Vec<Option<String>>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub num_rows: u64,
    #[serde(default)]
    pub row_type: Vec<RowType>,
    #[serde(default)]
    pub partition_info: Vec<Json>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct RowType {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub scale: Option<i64>,
    #[serde(default)]
    pub nullable: Option<bool>,
}

/// A finished statement: its columns, partition 0 and how many partitions.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultSet {
    pub result_set_meta_data: Metadata,
    #[serde(default)]
    pub data: Vec<RawRow>,
    pub statement_handle: String,
}

#[derive(Deserialize)]
struct PartitionBody {
    data: Vec<RawRow>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    sql_state: String,
    #[serde(default)]
    statement_handle: Option<String>,
    #[serde(default)]
    statement_status_url: Option<String>,
}

pub struct Client {
    config: Config,
    authorization: String,
    token_type: &'static str,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A random version-4 UUID (the `requestId` that makes a resubmission idempotent).
fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Client {
    pub fn new(config: Config) -> Result<Self, PluginError> {
        let (authorization, token_type) = match config.credentials()? {
            Credentials::KeyPair(pem) => (
                crate::auth::jwt(pem, &config.account, &config.user, now_secs())?,
                "KEYPAIR_JWT",
            ),
            Credentials::OAuth(token) => (token.to_string(), "OAUTH"),
        };
        Ok(Client {
            config,
            authorization: format!("Bearer {authorization}"),
            token_type,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn request(&self, method: &str, url: &str) -> http::Request {
        http::Request::new(method, url)
            .header("authorization", &self.authorization)
            .header("x-snowflake-authorization-token-type", self.token_type)
            .header("accept", "application/json")
            .header("user-agent", USER_AGENT)
            .timeout(Duration::from_millis(self.config.request_timeout_ms))
    }

    /// Sends with retries of 429, 5xx and transport failures. `build` gets the
    /// attempt number (a resubmitted POST carries `retry=true`).
    fn send(
        &self,
        what: &str,
        build: impl Fn(u32) -> http::Request,
    ) -> Result<Response, PluginError> {
        let retry = http::Retry {
            max_retries: self.config.max_retries,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            honour_retry_after: false,
        };
        match retry.send(what, build, |r| {
            matches!(r.status, 429 | 500 | 502 | 503 | 504)
        }) {
            Ok(http::Retried::Answer(response)) => Ok(response),
            Ok(http::Retried::Exhausted(response)) => Err(self.error(what, &response)),
            Err(e) => Err(self.context(what, e.into())),
        }
    }

    fn context(&self, what: &str, error: PluginError) -> PluginError {
        let context = format!("{} ({what})", self.config.target());
        error.context(&context)
    }

    /// Snowflake's error as the contract's, with its code, SQL state and message.
    fn error(&self, what: &str, response: &Response) -> PluginError {
        let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
        let detail = if body.code.is_empty() {
            format!(
                "HTTP {}: {}",
                response.status,
                truncate(&response.text(), 500)
            )
        } else if body.sql_state.is_empty() {
            format!(
                "HTTP {}, error {}: {}",
                response.status, body.code, body.message
            )
        } else {
            format!(
                "HTTP {}, error {} (SQL state {}): {}",
                response.status, body.code, body.sql_state, body.message
            )
        };
        let error = match response.status {
            401 | 403 => PluginError::Auth(format!("authentication refused: {detail}")),
            429 => PluginError::RateLimited(RateLimitedInfo {
                retry_after_ms: 1000,
                message: format!(
                    "still throttled after {} retries: {detail}",
                    self.config.max_retries
                ),
            }),
            500..=599 => PluginError::Retryable(detail),
            408 => PluginError::Permanent(format!("statement timed out: {detail}")),
            _ => PluginError::Permanent(detail),
        };
        self.context(what, error)
    }

    fn statement_body(&self, sql: &str, bindings: Option<Json>) -> Json {
        let mut body = json!({
            "statement": sql,
            "timeout": self.config.statement_timeout_s,
        });
        for (key, value) in [
            ("database", &self.config.database),
            ("schema", &self.config.schema),
            ("warehouse", &self.config.warehouse),
            ("role", &self.config.role),
        ] {
            if let Some(value) = value {
                body[key] = json!(value);
            }
        }
        if let Some(tag) = &self.config.query_tag {
            body["parameters"] = json!({ "QUERY_TAG": tag });
        }
        if let Some(bindings) = bindings {
            body["bindings"] = bindings;
        }
        body
    }

    /// Runs `sql` and returns its first partition and metadata, waiting through a 202.
    pub fn execute(&self, sql: &str, bindings: Option<Json>) -> Result<ResultSet, PluginError> {
        let id = request_id();
        let body = self.statement_body(sql, bindings);
        let base = format!("{}/api/v2/statements?requestId={id}", self.config.base_url);
        let response = self.send("submitting the statement", |attempt| {
            let url = if attempt > 0 {
                format!("{base}&retry=true")
            } else {
                base.clone()
            };
            self.request("POST", &url).json(&body)
        })?;
        self.finish(response, "submitting the statement")
    }

    /// A 200 parsed, a 202 polled, anything else an error.
    fn finish(&self, response: Response, what: &str) -> Result<ResultSet, PluginError> {
        match response.status {
            200 => response.json().map_err(|e| self.context(what, e)),
            202 => {
                let status: ErrorBody = response.json().map_err(|e| self.context(what, e))?;
                let handle = status.statement_handle.unwrap_or_default();
                let url = status
                    .statement_status_url
                    .unwrap_or_else(|| format!("/api/v2/statements/{handle}"));
                self.poll(&handle, &url)
            }
            _ => Err(self.error(what, &response)),
        }
    }

    /// Polls a running statement until it finishes; past `max_poll_ms` it is cancelled.
    fn poll(&self, handle: &str, status_url: &str) -> Result<ResultSet, PluginError> {
        let url = format!("{}{status_url}", self.config.base_url);
        let started = Instant::now();
        let limit = Duration::from_millis(self.config.max_poll_ms);
        let mut interval = FIRST_POLL;
        loop {
            if started.elapsed() >= limit {
                self.cancel(handle);
                return Err(self.context(
                    "waiting for the statement",
                    PluginError::Permanent(format!(
                        "statement {handle} still running after {} ms; cancelled it (raise `max_poll_ms` to wait longer)",
                        self.config.max_poll_ms
                    )),
                ));
            }
            http::sleep(interval.min(limit.saturating_sub(started.elapsed())));
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
            let response = self.send("polling the statement", |_| self.request("GET", &url))?;
            if response.status != 202 {
                return self.finish(response, "polling the statement");
            }
        }
    }

    /// Asks Snowflake to cancel a statement; failures are logged, not raised (this
    /// runs on the way out of another error).
    pub fn cancel(&self, handle: &str) {
        let url = format!("{}/api/v2/statements/{handle}/cancel", self.config.base_url);
        let outcome = self.request("POST", &url).json(&json!({})).send();
        let message = match outcome {
            Ok(r) if r.is_success() => format!("cancelled statement {handle}"),
            Ok(r) => format!("cancelling statement {handle}: HTTP {}", r.status),
            Err(e) => format!("cancelling statement {handle}: {e}"),
        };
        sluice_sdk::log::log(sluice_sdk::log::Level::Info, &message);
    }

    /// Partition `n` of a finished statement (gzip-decoded when so sent).
    pub fn partition(&self, handle: &str, n: usize) -> Result<Vec<RawRow>, PluginError> {
        let what = format!("fetching result partition {n}");
        let url = format!(
            "{}/api/v2/statements/{handle}?partition={n}",
            self.config.base_url
        );
        let response = self.send(&what, |_| {
            self.request("GET", &url).header("accept-encoding", "gzip")
        })?;
        if response.status != 200 {
            return Err(self.error(&what, &response));
        }
        let body = if response
            .header("content-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
        {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(response.body.as_slice())
                .read_to_end(&mut out)
                .map_err(|e| {
                    self.context(
                        &what,
                        PluginError::Retryable(format!("corrupt gzip body: {e}")),
                    )
                })?;
            out
        } else {
            response.body
        };
        let parsed: PartitionBody = serde_json::from_slice(&body).map_err(|e| {
            self.context(
                &what,
                PluginError::Permanent(format!("invalid partition JSON: {e}")),
            )
        })?;
        Ok(parsed.data)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
