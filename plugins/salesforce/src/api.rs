//! Authenticated REST calls: token caching, one re-authentication on 401,
//! Salesforce's error envelope mapped to the contract's errors, and the
//! `Sforce-Limit-Info` usage header.

use crate::auth::{self, Session};
use crate::config::Config;
use crate::util::{truncate, with_context};
use serde::Deserialize;
use sluice_sdk::http::{send_call, Call};
use sluice_sdk::http::{HttpError, Response};
use sluice_sdk::{PluginError, RateLimitedInfo};
use std::time::Duration;

/// Wait after a 403 REQUEST_LIMIT_EXCEEDED. Salesforce sends no Retry-After;
/// short-window limits (concurrent long requests, bursts) clear within a second.
pub const THROTTLE_RETRY_MS: u64 = 1_000;
/// Wait when `Sforce-Limit-Info` shows the rolling 24-hour allowance used up:
/// calls age out of the window slowly, so retrying soon only burns them. An
/// hour is longer than a sync's default `max_wait`: the host pauses the sync.
pub const DAILY_EXHAUSTED_RETRY_MS: u64 = 3_600_000;

/// A request body.
pub enum Body {
    None,
    Json(serde_json::Value),
    Csv(Vec<u8>),
}

/// One item of Salesforce's top-level error array.
#[derive(Deserialize, Debug, Default)]
pub struct ApiError {
    #[serde(default, rename = "errorCode")]
    pub error_code: String,
    #[serde(default)]
    pub message: String,
}

/// `api-usage=18/5000` → (18, 5000).
pub fn parse_limit_info(header: &str) -> Option<(u64, u64)> {
    let usage = header
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

fn api_errors(body: &[u8]) -> Vec<ApiError> {
    serde_json::from_slice::<Vec<ApiError>>(body)
        .or_else(|_| serde_json::from_slice::<ApiError>(body).map(|e| vec![e]))
        .unwrap_or_default()
}

/// The contract error a non-2xx response stands for.
pub fn classify(status: u16, body: &[u8], limit_info: Option<(u64, u64)>) -> PluginError {
    let errors = api_errors(body);
    let described: Vec<String> = errors
        .iter()
        .filter(|e| !e.error_code.is_empty() || !e.message.is_empty())
        .map(|e| format!("{}: {}", e.error_code, e.message))
        .collect();
    let detail = if described.is_empty() {
        truncate(&String::from_utf8_lossy(body), 300)
    } else {
        described.join("; ")
    };
    let message = format!("HTTP {status}: {detail}");
    let throttled = errors
        .iter()
        .any(|e| e.error_code == "REQUEST_LIMIT_EXCEEDED");
    match status {
        403 | 503 if throttled => {
            let exhausted = limit_info.is_some_and(|(used, max)| max > 0 && used >= max);
            let retry_after_ms = if exhausted {
                DAILY_EXHAUSTED_RETRY_MS
            } else {
                THROTTLE_RETRY_MS
            };
            PluginError::RateLimited(RateLimitedInfo {
                retry_after_ms,
                message,
            })
        }
        401 | 403 => PluginError::Auth(message),
        408 | 429 | 500..=599 => PluginError::Retryable(message),
        _ => PluginError::Permanent(message),
    }
}

thread_local! {
    /// Sessions by credentials, shared by every call of this instance
    /// (check, discover, open and each writer), so a run asks the token
    /// endpoint once rather than once per call.
    static SESSIONS: std::cell::RefCell<std::collections::HashMap<String, Session>> = Default::default();
}

/// Which cached session a config may use.
fn session_key(config: &Config) -> String {
    match &config.auth {
        crate::config::Auth::ClientCredentials { client_id, .. } => {
            format!("{}|cc|{client_id}", config.login_url)
        }
        crate::config::Auth::JwtBearer {
            client_id,
            username,
            ..
        } => format!("{}|jwt|{client_id}|{username}", config.login_url),
    }
}

/// A REST client for one org.
pub struct Client {
    pub config: Config,
    session: Option<Session>,
    calls: u64,
    logged_usage_pct: u64,
}

impl Client {
    pub fn new(config: Config) -> Self {
        Client {
            config,
            session: None,
            calls: 0,
            logged_usage_pct: 0,
        }
    }

    /// Authenticate now (or reuse the cached token).
    pub fn session(&mut self) -> Result<&Session, PluginError> {
        if self.session.is_none() {
            let key = session_key(&self.config);
            let cached = SESSIONS.with(|s| s.borrow().get(&key).cloned());
            self.session = Some(match cached {
                Some(session) => session,
                None => self.fresh_session()?,
            });
        }
        Ok(self.session.as_ref().expect("set above"))
    }

    /// A new token, replacing the cached one.
    fn fresh_session(&mut self) -> Result<Session, PluginError> {
        let session = auth::authenticate(&self.config)?;
        SESSIONS.with(|s| {
            s.borrow_mut()
                .insert(session_key(&self.config), session.clone())
        });
        Ok(session)
    }

    /// Authenticate with the token endpoint even if a token is cached.
    pub fn authenticate(&mut self) -> Result<(), PluginError> {
        self.session = Some(self.fresh_session()?);
        Ok(())
    }

    /// `/services/data/vNN.N`
    pub fn data_path(&self) -> String {
        self.config.data_path()
    }

    /// Send one request with the session's token.
    fn request(
        &self,
        session: &Session,
        method: &str,
        path: &str,
        body: &Body,
        accept: &str,
    ) -> Result<Response, HttpError> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", session.instance_url)
        };
        let mut headers = vec![
            (
                "authorization".to_string(),
                format!("Bearer {}", session.access_token),
            ),
            ("accept".to_string(), accept.to_string()),
            (
                "sforce-call-options".to_string(),
                concat!("client=sluice-salesforce/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ];
        let bytes = match body {
            Body::None => Vec::new(),
            Body::Json(v) => {
                headers.push(("content-type".into(), "application/json".into()));
                serde_json::to_vec(v).unwrap_or_default()
            }
            Body::Csv(bytes) => {
                headers.push(("content-type".into(), "text/csv".into()));
                bytes.clone()
            }
        };
        let timeout = Duration::from_millis(self.config.timeout_ms);
        send_call(Call {
            method,
            url: &url,
            headers,
            body: &bytes,
            timeout,
        })
    }

    /// Send a call; on 401 get a new token once and resend. Non-2xx answers
    /// come back as errors naming the call.
    pub fn send(&mut self, method: &str, path: &str, body: Body) -> Result<Response, PluginError> {
        self.send_accept(method, path, body, "application/json")
    }

    /// [`Client::send`] asking for another media type (Bulk results are CSV).
    pub fn send_accept(
        &mut self,
        method: &str,
        path: &str,
        body: Body,
        accept: &str,
    ) -> Result<Response, PluginError> {
        let context = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut reauthenticated = false;
        loop {
            let session = self.session()?.clone();
            let response = self
                .request(&session, method, path, &body, accept)
                .map_err(|e| with_context(e.into(), &context))?;
            self.note_usage(&response);
            if response.status == 401 && !reauthenticated {
                // Tokens expire (session timeout, revocation); one fresh token
                // per call is enough to tell expiry from bad credentials.
                sluice_sdk::info!("salesforce: session expired or invalid; re-authenticating");
                self.session = Some(self.fresh_session()?);
                reauthenticated = true;
                continue;
            }
            if response.is_success() {
                return Ok(response);
            }
            let limit = response
                .header("sforce-limit-info")
                .and_then(parse_limit_info);
            return Err(with_context(
                classify(response.status, &response.body, limit),
                &context,
            ));
        }
    }

    /// Log API usage every 100 calls and whenever it crosses another tenth
    /// of the daily allowance.
    fn note_usage(&mut self, response: &Response) {
        self.calls += 1;
        let Some((used, max)) = response
            .header("sforce-limit-info")
            .and_then(parse_limit_info)
        else {
            return;
        };
        let pct = (used * 100).checked_div(max).unwrap_or(100);
        if self.calls % 100 == 1 || pct / 10 > self.logged_usage_pct / 10 {
            self.logged_usage_pct = pct;
            sluice_sdk::info!("salesforce: API usage {used}/{max} ({pct}% of the daily allowance)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_limit_info() {
        assert_eq!(parse_limit_info("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(
            parse_limit_info("api-usage=18/5000; per-app-api-usage=17/250(appName=x)"),
            Some((18, 5000))
        );
        assert_eq!(parse_limit_info("nonsense"), None);
    }

    #[test]
    fn classifies_salesforce_errors() {
        let limit = br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        match classify(403, limit, Some((10, 100))) {
            PluginError::RateLimited(r) => {
                assert_eq!(r.retry_after_ms, THROTTLE_RETRY_MS);
                assert!(r
                    .message
                    .contains("REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(classify(403, limit, Some((100, 100))), PluginError::RateLimited(r) if r.retry_after_ms == DAILY_EXHAUSTED_RETRY_MS)
        );
        assert!(matches!(
            classify(
                403,
                br#"[{"errorCode":"INSUFFICIENT_ACCESS","message":"no"}]"#,
                None
            ),
            PluginError::Auth(_)
        ));
        assert!(matches!(
            classify(503, b"[]", None),
            PluginError::Retryable(_)
        ));
        assert!(
            matches!(classify(500, b"oops", None), PluginError::Retryable(m) if m.contains("oops"))
        );
        let not_found =
            br#"[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]"#;
        assert!(
            matches!(classify(404, not_found, None), PluginError::Permanent(m) if m == "HTTP 404: NOT_FOUND: The requested resource does not exist")
        );
    }
}
