//! Authenticated calls and HubSpot's error signals: 429 with `policyName`
//! and `X-HubSpot-RateLimit-*` headers, 401/403, 5xx, and the whole-request
//! 4xx a batch write can answer.

use crate::config::Config;
use serde::Deserialize;
use sluice_sdk::http::Response;
use sluice_sdk::http::{send_call, Call};
use sluice_sdk::{PluginError, RateLimitedInfo};
use std::time::Duration;

/// Wait for a `TEN_SECONDLY_ROLLING` 429 without any hint: the window.
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
/// Wait for a `DAILY` 429 without Retry-After: daily limits reset at midnight
/// in the account's time zone, which the plugin does not know.
pub const DAILY_RETRY_MS: u64 = 3_600_000;

/// HubSpot's error body (every field optional).
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct HubError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub policy_name: String,
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

impl HubError {
    pub fn parse(body: &[u8]) -> HubError {
        serde_json::from_slice(body).unwrap_or_else(|_| HubError {
            message: String::from_utf8_lossy(body).chars().take(300).collect(),
            ..Default::default()
        })
    }

    /// `CATEGORY: message`, the form rejects are reported in.
    pub fn describe(&self) -> String {
        match self.category.as_str() {
            "" => self.message.clone(),
            c => format!("{c}: {}", self.message),
        }
    }
}

/// How long a 429 asks us to wait: Retry-After, else the rolling window
/// (`X-HubSpot-RateLimit-Interval-Milliseconds`), else the policy's default.
pub fn throttle_ms(retry_after_ms: Option<u64>, interval_ms: Option<u64>, policy: &str) -> u64 {
    if let Some(ms) = retry_after_ms {
        return ms.max(1);
    }
    if policy == "DAILY" {
        return DAILY_RETRY_MS;
    }
    interval_ms.unwrap_or(DEFAULT_INTERVAL_MS)
}

/// What `X-HubSpot-RateLimit-Remaining`, `-Max` and
/// `-Interval-Milliseconds` say of the rolling window, for the host to pace
/// by: (remaining, max, window). The daily headers are not a window to pace
/// by and are left out.
pub fn quota_left(response: &Response) -> Option<(u32, u32, Duration)> {
    let number = |name| {
        response
            .header(name)
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    let remaining = number("x-hubspot-ratelimit-remaining")?;
    let max = number("x-hubspot-ratelimit-max")?;
    let interval = number("x-hubspot-ratelimit-interval-milliseconds")?;
    Some((remaining, max, Duration::from_millis(u64::from(interval))))
}

/// A response that answered the call.
pub enum Answer {
    /// 2xx (including 207 multi-status).
    Done(Response),
    /// A whole-request 4xx other than auth: validation, conflict, not found.
    Refused { status: u16, error: HubError },
}

pub fn classify(response: Response) -> Result<Answer, PluginError> {
    let status = response.status;
    if response.is_success() {
        return Ok(Answer::Done(response));
    }
    let error = HubError::parse(&response.body);
    let message = format!("HTTP {status}: {}", error.describe());
    match status {
        429 => {
            let interval = response
                .header("x-hubspot-ratelimit-interval-milliseconds")
                .and_then(|v| v.trim().parse().ok());
            let ms = throttle_ms(response.retry_after_ms(), interval, &error.policy_name);
            let message = format!(
                "{message} (policy {})",
                if error.policy_name.is_empty() {
                    "unknown"
                } else {
                    &error.policy_name
                }
            );
            Err(PluginError::RateLimited(RateLimitedInfo {
                retry_after_ms: ms,
                message,
            }))
        }
        401 | 403 => Err(PluginError::Auth(message)),
        408 | 500..=599 => Err(PluginError::Retryable(message)),
        _ => Ok(Answer::Refused { status, error }),
    }
}

pub struct Client {
    pub config: Config,
}

impl Client {
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, PluginError> {
        let url = format!("{}{path}", self.config.base_url);
        let mut headers = vec![
            (
                "authorization".to_string(),
                format!("Bearer {}", self.config.token),
            ),
            ("accept".to_string(), "application/json".to_string()),
            (
                "user-agent".to_string(),
                concat!("sluice-hubspot/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ];
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        if body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let response = send_call(Call {
            method,
            url: &url,
            headers,
            body: &bytes,
            timeout,
        })
        .map_err(|e| crate::with_context(e.into(), &format!("{method} {path}")))?;
        if let Some((remaining, max, window)) = quota_left(&response) {
            sluice_sdk::quota::report(remaining, max, window);
        }
        classify(response).map_err(|e| crate::with_context(e, &format!("{method} {path}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn maps_429s_to_rate_limited_with_the_delay() {
        let body = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#;
        let with_retry = response(
            429,
            &[
                ("retry-after", "3"),
                ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
            ],
            body,
        );
        match classify(with_retry) {
            Err(PluginError::RateLimited(r)) => {
                assert_eq!(r.retry_after_ms, 3000);
                assert!(r.message.contains("TEN_SECONDLY_ROLLING"));
            }
            _ => panic!("expected rate-limited"),
        }
        let interval_only = response(
            429,
            &[("x-hubspot-ratelimit-interval-milliseconds", "2000")],
            body,
        );
        assert!(
            matches!(classify(interval_only), Err(PluginError::RateLimited(r)) if r.retry_after_ms == 2000)
        );
        assert_eq!(throttle_ms(None, None, "DAILY"), DAILY_RETRY_MS);
        assert_eq!(throttle_ms(None, None, ""), DEFAULT_INTERVAL_MS);
    }

    #[test]
    fn reads_the_quota_left_in_the_rolling_window() {
        let r = response(
            200,
            &[
                ("x-hubspot-ratelimit-max", "100"),
                ("x-hubspot-ratelimit-remaining", "7"),
                ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
                ("x-hubspot-ratelimit-daily-remaining", "249000"),
            ],
            "{}",
        );
        assert_eq!(quota_left(&r), Some((7, 100, Duration::from_secs(10))));
        let daily_only = response(200, &[("x-hubspot-ratelimit-daily-remaining", "5")], "{}");
        assert_eq!(quota_left(&daily_only), None);
    }

    #[test]
    fn classifies_other_statuses() {
        assert!(
            matches!(classify(response(401, &[], r#"{"category":"EXPIRED_AUTHENTICATION","message":"expired"}"#)), Err(PluginError::Auth(m)) if m.contains("EXPIRED_AUTHENTICATION: expired"))
        );
        assert!(matches!(
            classify(response(502, &[], "bad gateway")),
            Err(PluginError::Retryable(_))
        ));
        assert!(matches!(
            classify(response(207, &[], "{}")),
            Ok(Answer::Done(_))
        ));
        match classify(response(
            400,
            &[],
            r#"{"category":"VALIDATION_ERROR","message":"Property values were not valid","errors":[{"in":"email"}]}"#,
        )) {
            Ok(Answer::Refused { status: 400, error }) => {
                assert_eq!(
                    error.describe(),
                    "VALIDATION_ERROR: Property values were not valid"
                );
                assert_eq!(error.errors.len(), 1);
            }
            _ => panic!("expected refused"),
        }
    }
}
