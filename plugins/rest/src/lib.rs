//! `rest`: a destination for HTTP APIs that have no plugin of their own.
//!
//! The operator describes, per write mode, the request to make: its method,
//! a path and a body as templates (minijinja, Jinja2 syntax), one request
//! per row (`per: row`, the template sees `row`) or per group of rows
//! (`per: batch`, it sees `rows`, at most `max_rows` a request). Headers
//! are templates too; authentication is bearer, basic, an API key header or
//! OAuth 2.0 client credentials.
//!
//! Responses: a success status (`success`, by default 2xx) accepts the
//! request's rows, except the items a per-batch response lists under
//! `row_errors`, which are rejected with their message. 401/403 fail the
//! call (after one token refresh for OAuth). 429 and 503 are waited out
//! inside the call while the wait (`Retry-After`) is short, 408, other 5xx
//! and transport failures retried with backoff, up to `max_retries`; what
//! is left goes back to the host as rate-limited or retryable rows. Other
//! statuses reject the row; a per-batch request refused as a whole is
//! split in halves until the refused rows are found. Rates and
//! concurrency are the host's (`rate_limit:` in sluice.yaml), applied to
//! every request.

mod auth;
mod config;
mod template;

use auth::Authenticator;
use config::{mode_name, Config, Per};
use sluice_sdk::http::{self, Request, Response};
use sluice_sdk::prelude::*;
use std::time::Duration;
use template::{Target, Templates};

pub struct Rest;

impl Destination for Rest {
    type Writer = RestWriter;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "rest",
            env!("CARGO_PKG_VERSION"),
            "Writes to any HTTP API: request paths, bodies and headers as templates, per row or per batch",
        )
        .capability("${config.base_url}")
        .capability("${config.hosts}")
        .batch_size(100)
        .config_schema(config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        let config = Config::parse(config)?;
        for (mode, request) in &config.requests {
            Templates::compile(mode, request, &config.headers)?;
        }
        Ok(())
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config = Config::parse(config)?;
        // Any object and field: the templates decide what is sent.
        Ok(vec![ObjectInfo {
            name: "*".into(),
            fields: vec![Field {
                name: "*".into(),
                type_: FieldType::Any,
                nullable: true,
                required: false,
                identifier: true,
            }],
            modes: config.modes(),
        }])
    }

    fn open(config: &str, target: WriteTarget) -> Result<RestWriter, PluginError> {
        let config = Config::parse(config)?;
        let mode = mode_name(target.mode);
        let request = config.requests.get(mode).ok_or_else(|| {
            PluginError::Config(format!(
                "no request for mode `{mode}`: add `requests.{mode}` (this config has: {})",
                config
                    .requests
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let templates = Templates::compile(mode, request, &config.headers)?;
        let timeout = Duration::from_millis(config.timeout_ms);
        Ok(RestWriter {
            auth: Authenticator::new(config.auth.clone(), timeout),
            config,
            templates,
            target,
        })
    }
}

pub struct RestWriter {
    config: Config,
    templates: Templates,
    auth: Authenticator,
    target: WriteTarget,
}

/// What one request's final answer means for its rows.
enum Outcome {
    /// Every row accepted, except these (position in the request, message).
    Accepted(Vec<(usize, String)>),
    /// The request was refused as a whole: reject or split.
    Refused(String),
    /// Give the rows back to the host with this result.
    Deferred(RowResult),
}

impl RestWriter {
    fn target(&self) -> Target<'_> {
        Target {
            object: &self.target.object,
            mode: mode_name(self.target.mode),
            identifier: &self.target.identifier,
        }
    }

    /// Send one rendered request, retrying inside the call what is worth it.
    fn exchange(&mut self, rendered: &template::Rendered) -> Result<Outcome, PluginError> {
        let url = format!(
            "{}{}",
            self.config.base_url.trim_end_matches('/'),
            rendered.path
        );
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let response = self.send_once(&url, rendered)?;
            let (wait_ms, deferred) = match response {
                Err(e) => (
                    backoff_ms(attempt),
                    RowResult::Retryable(format!("{url}: {e}")),
                ),
                Ok(r) if self.config.is_success(r.status) => {
                    return Ok(Outcome::Accepted(self.row_errors(&r)));
                }
                Ok(r) if r.status == 401 && self.auth.can_refresh() && !refreshed => {
                    refreshed = true;
                    self.auth.forget_token();
                    continue;
                }
                Ok(r) if r.status == 401 || r.status == 403 => {
                    return Err(PluginError::Auth(self.message(&url, &r)));
                }
                Ok(r) if r.status == 429 || r.status == 503 => {
                    let wait = r.retry_after_ms().unwrap_or_else(|| backoff_ms(attempt));
                    (wait, RowResult::RateLimited(wait))
                }
                Ok(r) if r.status == 408 || r.status >= 500 => (
                    r.retry_after_ms().unwrap_or_else(|| backoff_ms(attempt)),
                    RowResult::Retryable(self.message(&url, &r)),
                ),
                Ok(r) => return Ok(Outcome::Refused(self.message(&url, &r))),
            };
            if attempt >= self.config.max_retries || wait_ms > self.config.max_retry_wait_ms {
                return Ok(Outcome::Deferred(deferred));
            }
            attempt += 1;
            sluice_sdk::warn!(
                "rest: {url}: attempt {attempt} got {deferred:?}; retrying in {wait_ms} ms"
            );
            http::sleep(Duration::from_millis(wait_ms));
        }
    }

    fn send_once(
        &mut self,
        url: &str,
        rendered: &template::Rendered,
    ) -> Result<Result<Response, http::HttpError>, PluginError> {
        let mut request = Request::new(&self.templates.method, url)
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("sluice-rest/", env!("CARGO_PKG_VERSION")),
            );
        if let Some((name, value)) = self.auth.header()? {
            request = request.header(&name, &value);
        }
        for (name, value) in &rendered.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &rendered.body {
            request = request.body_bytes(&self.templates.content_type, body.clone());
        }
        match request.send() {
            Err(e @ (http::HttpError::Denied(_) | http::HttpError::InvalidUrl(_))) => {
                Err(PluginError::Permanent(format!("{url}: {e}")))
            }
            other => Ok(other),
        }
    }

    /// `HTTP 400: <message>`, the message from `error_message` when set.
    fn message(&self, url: &str, response: &Response) -> String {
        let text = response.text();
        let picked = self.config.error_message.as_deref().and_then(|pointer| {
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            json.pointer(pointer).map(json_text)
        });
        let message = picked.unwrap_or_else(|| text.chars().take(300).collect());
        format!("HTTP {} from {}: {message}", response.status, path_of(url))
    }

    /// The items a successful response says it refused.
    fn row_errors(&self, response: &Response) -> Vec<(usize, String)> {
        let Some(spec) = &self.config.row_errors else {
            return Vec::new();
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
            return Vec::new();
        };
        let Some(items) = json.pointer(&spec.path).and_then(|v| v.as_array()) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                let index = item.pointer(&spec.index)?.as_u64()? as usize;
                let message = match &spec.message {
                    Some(p) => item
                        .pointer(p)
                        .map(json_text)
                        .unwrap_or_else(|| item.to_string()),
                    None => item.to_string(),
                };
                Some((index, message))
            })
            .collect()
    }

    /// Send `rows` (positions in `batch`) as one request, or each alone per
    /// row; record each row's result in `out`.
    fn send_rows(
        &mut self,
        batch: &Batch,
        rows: &[usize],
        out: &mut [Option<RowResult>],
    ) -> Result<(), PluginError> {
        let rendered = match self.templates.render(batch, rows, &self.target()) {
            Ok(r) => r,
            Err(message) if rows.len() == 1 => {
                out[rows[0]] = Some(RowResult::Rejected(message));
                return Ok(());
            }
            // A template that fails for the group may fail for one row of
            // it: find which by halves.
            Err(_) => return self.split(batch, rows, out),
        };
        match self.exchange(&rendered)? {
            Outcome::Accepted(errors) => {
                for &i in rows {
                    out[i] = Some(RowResult::Accepted);
                }
                for (position, message) in errors {
                    match rows.get(position) {
                        Some(&i) => out[i] = Some(RowResult::Rejected(message)),
                        None => sluice_sdk::warn!(
                            "rest: the response lists an error for item {position}, but the request held {} rows: {message}",
                            rows.len()
                        ),
                    }
                }
            }
            Outcome::Refused(message) if rows.len() == 1 => {
                out[rows[0]] = Some(RowResult::Rejected(message));
            }
            Outcome::Refused(_) => return self.split(batch, rows, out),
            Outcome::Deferred(result) => {
                for &i in rows {
                    out[i] = Some(result.clone());
                }
            }
        }
        Ok(())
    }

    fn split(
        &mut self,
        batch: &Batch,
        rows: &[usize],
        out: &mut [Option<RowResult>],
    ) -> Result<(), PluginError> {
        let (left, right) = rows.split_at(rows.len() / 2);
        self.send_rows(batch, left, out)?;
        self.send_rows(batch, right, out)
    }
}

impl Writer for RestWriter {
    fn write(&mut self, batch: Batch) -> Result<Vec<RowResult>, PluginError> {
        let mut out: Vec<Option<RowResult>> = vec![None; batch.len()];
        let all: Vec<usize> = (0..batch.len()).collect();
        let group = match self.templates.per {
            Per::Row => 1,
            Per::Batch => self.templates.max_rows.unwrap_or(all.len()).max(1),
        };
        // Once the API defers one request, the rest of the call would be
        // deferred too: hand them back at once rather than keep asking.
        let mut deferred: Option<RowResult> = None;
        for rows in all.chunks(group) {
            if let Some(result) = &deferred {
                for &i in rows {
                    out[i] = Some(result.clone());
                }
                continue;
            }
            self.send_rows(&batch, rows, &mut out)?;
            deferred = rows
                .iter()
                .find_map(|&i| out[i].as_ref().filter(|r| is_deferred(r)).cloned());
        }
        Ok(out
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    RowResult::Retryable(format!("row {i}: no answer was recorded"))
                })
            })
            .collect())
    }
}

fn is_deferred(result: &RowResult) -> bool {
    matches!(result, RowResult::RateLimited(_) | RowResult::Retryable(_))
}

fn backoff_ms(attempt: u32) -> u64 {
    500u64.saturating_mul(1 << attempt.min(6))
}

fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The path and query of a URL, for messages (the host is in the config).
fn path_of(url: &str) -> &str {
    url.split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(url)
}

sluice_sdk::export_destination!(Rest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(0), 500);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(40), 32_000);
    }

    #[test]
    fn messages_name_the_path_not_the_host() {
        assert_eq!(path_of("https://api.x.com/v1/c?x=1"), "/v1/c?x=1");
    }
}
