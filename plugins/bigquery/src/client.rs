//! The REST v2 client: the OAuth token, `jobs.query`, `jobs.getQueryResults`
//! (polling while `jobComplete` is false, then page by page), 429/5xx and
//! `rateLimitExceeded`/`backendError` retried with bounded backoff, BigQuery's
//! reason, location and message passed through, naming the project.

use crate::config::{Config, Credentials};
use crate::types::SchemaField;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use sluice_sdk::http::{self, Response};
use sluice_sdk::{PluginError, RateLimitedInfo};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USER_AGENT: &str = concat!("sluice-bigquery/", env!("CARGO_PKG_VERSION"));
/// First retry waits this long, then twice as long each time, up to the cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long one jobs.query / getQueryResults call may hold the request open
/// waiting for the job (BigQuery's `timeoutMs`; it answers `jobComplete: false`).
const SERVER_WAIT_MS: u64 = 10_000;
/// Reasons BigQuery documents as retryable (PYBQ retry.py).
const RETRYABLE_REASONS: &[&str] = &[
    "rateLimitExceeded",
    "backendError",
    "internalError",
    "badGateway",
];

/// Where a job lives: it is polled and paged with the same reference.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobReference {
    #[serde(default)]
    pub project_id: String,
    #[serde(default)]
    pub job_id: String,
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Schema {
    #[serde(default)]
    pub fields: Vec<SchemaField>,
}

/// A jobs.query or getQueryResults answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage {
    #[serde(default)]
    pub job_reference: Option<JobReference>,
    #[serde(default)]
    pub job_complete: bool,
    #[serde(default)]
    pub schema: Option<Schema>,
    #[serde(default)]
    pub rows: Vec<Json>,
    #[serde(default)]
    pub page_token: Option<String>,
    #[serde(default)]
    pub total_bytes_processed: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: ErrorBody,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize, Default)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

pub struct Client {
    config: Config,
    project: String,
    /// The service-account key, kept to fetch a new token when one expires.
    key: Option<crate::config::ServiceAccountKey>,
    /// `Bearer <token>`; replaced when the API says the token expired.
    authorization: std::cell::RefCell<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A random version-4 UUID: the `requestId` that makes a resent jobs.query idempotent.
fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes();
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

/// Percent-encodes a query-string value.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Client {
    /// Authenticates: a key is exchanged for an access token at once, so bad
    /// credentials fail before any query.
    pub fn new(config: Config) -> Result<Self, PluginError> {
        let project = config.project()?;
        let mut client = Client {
            config,
            project,
            key: None,
            authorization: std::cell::RefCell::new(String::new()),
        };
        let token = match client.config.credentials()? {
            Credentials::AccessToken(token) => token,
            Credentials::ServiceAccount(key) => {
                let token = client.exchange(&key)?;
                client.key = Some(key);
                token
            }
        };
        client.authorization.replace(format!("Bearer {token}"));
        Ok(client)
    }

    /// A fresh access token from the key, after the API refused the current
    /// one (tokens live an hour; a long read outlives them). `false` when
    /// there is no key to refresh with.
    fn refresh_token(&self) -> Result<bool, PluginError> {
        let Some(key) = &self.key else {
            return Ok(false);
        };
        let token = self.exchange(key)?;
        self.authorization.replace(format!("Bearer {token}"));
        Ok(true)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// The JWT grant: an RS256 assertion POSTed form-encoded to the token URI.
    fn exchange(&self, key: &crate::config::ServiceAccountKey) -> Result<String, PluginError> {
        let token_uri = self.config.token_uri(key);
        let assertion = crate::auth::assertion(key, &token_uri, now_secs())?;
        let body = crate::auth::token_request_body(&assertion);
        let what = format!("exchanging the key of {} at {token_uri}", key.client_email);
        // The token endpoint itself is never retried with a new token.
        let response = self.send_with(
            &what,
            || {
                http::Request::new("POST", &token_uri)
                    .header("user-agent", USER_AGENT)
                    .header("accept", "application/json")
                    .body_bytes(
                        "application/x-www-form-urlencoded",
                        body.clone().into_bytes(),
                    )
                    .timeout(Duration::from_millis(self.config.request_timeout_ms))
            },
            false,
        )?;
        if response.is_success() {
            let answer: TokenAnswer = response.json().map_err(|e| self.context(&what, e))?;
            return Ok(answer.access_token);
        }
        let refused: TokenError = serde_json::from_slice(&response.body).unwrap_or_default();
        let detail = if refused.error.is_empty() {
            truncate(&response.text(), 500).to_string()
        } else {
            format!("{}: {}", refused.error, refused.error_description)
        };
        let error = match response.status {
            400 | 401 | 403 => PluginError::Auth(format!(
                "the token endpoint refused the key (HTTP {}): {detail}",
                response.status
            )),
            _ => PluginError::Permanent(format!("HTTP {}: {detail}", response.status)),
        };
        Err(self.context(&what, error))
    }

    fn request(&self, method: &str, url: &str) -> http::Request {
        http::Request::new(method, url)
            .header("authorization", &self.authorization.borrow())
            .header("accept", "application/json")
            .header("user-agent", USER_AGENT)
            .timeout(Duration::from_millis(
                self.config.request_timeout_ms + SERVER_WAIT_MS,
            ))
    }

    /// Whether a response is one BigQuery says to retry.
    fn retryable(response: &Response) -> bool {
        match response.status {
            429 | 500 | 502 | 503 | 504 => true,
            403 => serde_json::from_slice::<ErrorEnvelope>(&response.body)
                .map(|e| {
                    e.error
                        .errors
                        .iter()
                        .any(|item| RETRYABLE_REASONS.contains(&item.reason.as_str()))
                })
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Sends an API call with bounded retries of retryable answers and
    /// transport failures; a 401 gets one new token from the key and one
    /// more try.
    fn send(&self, what: &str, build: impl Fn() -> http::Request) -> Result<Response, PluginError> {
        self.send_with(what, build, true)
    }

    fn send_with(
        &self,
        what: &str,
        build: impl Fn() -> http::Request,
        may_refresh: bool,
    ) -> Result<Response, PluginError> {
        let retry = http::Retry {
            max_retries: self.config.max_retries,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            honour_retry_after: false,
        };
        match retry.send(what, |_| build(), Self::retryable) {
            Ok(http::Retried::Answer(response))
                if response.status == 401 && may_refresh && self.refresh_token()? =>
            {
                self.send_with(what, build, false)
            }
            Ok(http::Retried::Answer(response)) => Ok(response),
            Ok(http::Retried::Exhausted(response)) => Err(self.error(what, &response)),
            Err(e) => Err(self.context(what, e.into())),
        }
    }

    fn context(&self, what: &str, error: PluginError) -> PluginError {
        let context = format!("{} ({what})", self.config.target());
        error.context(&context)
    }

    /// BigQuery's error as the contract's: `HTTP 400 invalidQuery (at q): message`.
    fn error(&self, what: &str, response: &Response) -> PluginError {
        let body: ErrorEnvelope = serde_json::from_slice(&response.body).unwrap_or_default();
        let first = body.error.errors.first();
        let reason = first.map(|e| e.reason.as_str()).unwrap_or_default();
        let message = match first {
            Some(item) if !item.message.is_empty() => item.message.clone(),
            _ if !body.error.message.is_empty() => body.error.message.clone(),
            _ => truncate(&response.text(), 500).to_string(),
        };
        let detail = match (reason, first.and_then(|e| e.location.as_deref())) {
            ("", _) => format!("HTTP {}: {message}", response.status),
            (reason, Some(location)) if !location.is_empty() => {
                format!(
                    "HTTP {} {reason} (at {location}): {message}",
                    response.status
                )
            }
            (reason, _) => format!("HTTP {} {reason}: {message}", response.status),
        };
        let error = match (response.status, reason) {
            (429, _) | (_, "rateLimitExceeded") => PluginError::RateLimited(RateLimitedInfo {
                retry_after_ms: response.retry_after_ms().unwrap_or(1000),
                message: format!(
                    "still throttled after {} retries: {detail}",
                    self.config.max_retries
                ),
            }),
            (401, _) | (403, "accessDenied") => {
                PluginError::Auth(format!("access refused: {detail}"))
            }
            (500..=599, _) => PluginError::Retryable(detail),
            _ => PluginError::Permanent(detail),
        };
        self.context(what, error)
    }

    fn queries_url(&self) -> String {
        format!(
            "{}/bigquery/v2/projects/{}/queries",
            self.config.api_base,
            query_escape(&self.project)
        )
    }

    /// The jobs.query body for `sql`.
    fn query_body(&self, sql: &str, dry_run: bool) -> Json {
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "maxResults": self.config.page_rows,
            "timeoutMs": SERVER_WAIT_MS,
            "requestId": request_id(),
            "formatOptions": {"useInt64Timestamp": true},
        });
        if dry_run {
            body["dryRun"] = json!(true);
        }
        if let Some(location) = &self.config.location {
            body["location"] = json!(location);
        }
        if let Some(limit) = self.config.maximum_bytes_billed {
            body["maximumBytesBilled"] = json!(limit.to_string());
        }
        if let Some(dataset) = &self.config.default_dataset {
            let (project, dataset) = match dataset.split_once('.') {
                Some((project, dataset)) => (project, dataset),
                None => (self.project.as_str(), dataset.as_str()),
            };
            body["defaultDataset"] = json!({"projectId": project, "datasetId": dataset});
        }
        body
    }

    /// Runs `sql` and returns its first page, waiting (bounded) for the job.
    pub fn query(&self, sql: &str) -> Result<QueryPage, PluginError> {
        let what = "running the query";
        let body = self.query_body(sql, false);
        let url = self.queries_url();
        let response = self.send(what, || self.request("POST", &url).json(&body))?;
        let page = self.parse_page(what, response)?;
        if page.job_complete {
            return Ok(page);
        }
        let job = page.job_reference.unwrap_or_default();
        self.wait(&job)
    }

    /// The bytes `sql` would scan, from a dry run.
    pub fn dry_run(&self, sql: &str) -> Result<u64, PluginError> {
        let what = "estimating the query (dry run)";
        let body = self.query_body(sql, true);
        let url = self.queries_url();
        let response = self.send(what, || self.request("POST", &url).json(&body))?;
        let page = self.parse_page(what, response)?;
        page.total_bytes_processed
            .as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|_| {
                self.context(
                    what,
                    PluginError::Permanent("totalBytesProcessed is not a number".into()),
                )
            })
    }

    fn parse_page(&self, what: &str, response: Response) -> Result<QueryPage, PluginError> {
        if !response.is_success() {
            return Err(self.error(what, &response));
        }
        response.json().map_err(|e| self.context(what, e))
    }

    /// Polls getQueryResults (no rows) until the job completes or `max_poll_ms` passes.
    fn wait(&self, job: &JobReference) -> Result<QueryPage, PluginError> {
        let started = Instant::now();
        loop {
            if started.elapsed() >= Duration::from_millis(self.config.max_poll_ms) {
                return Err(self.context(
                    "waiting for the query job",
                    PluginError::Permanent(format!(
                        "job {} still running after {} ms (raise `max_poll_ms` to wait longer)",
                        job.job_id, self.config.max_poll_ms
                    )),
                ));
            }
            let page = self.results(job, None)?;
            if page.job_complete {
                return Ok(page);
            }
        }
    }

    /// One getQueryResults call: the page after `page_token` (the first without).
    pub fn results(
        &self,
        job: &JobReference,
        page_token: Option<&str>,
    ) -> Result<QueryPage, PluginError> {
        let what = match page_token {
            Some(_) => "fetching a result page",
            None => "waiting for the query job",
        };
        let mut url = format!(
            "{}/{}?maxResults={}&timeoutMs={SERVER_WAIT_MS}&formatOptions.useInt64Timestamp=true",
            self.queries_url(),
            query_escape(&job.job_id),
            self.config.page_rows
        );
        if let Some(location) = job.location.as_ref().or(self.config.location.as_ref()) {
            url.push_str(&format!("&location={}", query_escape(location)));
        }
        if let Some(token) = page_token {
            url.push_str(&format!("&pageToken={}", query_escape(token)));
        }
        let response = self.send(what, || self.request("GET", &url))?;
        self.parse_page(what, response)
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

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("a b/c=d"), "a%20b%2Fc%3Dd");
    }
}
