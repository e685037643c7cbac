//! The `rest` destination's config: where requests go, how they
//! authenticate, one request template per write mode, and how responses
//! say which rows failed.

use serde::Deserialize;
use sluice_sdk::prelude::*;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `https://api.example.com`: paths are appended to it.
    pub base_url: String,
    /// Other hosts the plugin may call (an OAuth token endpoint elsewhere),
    /// as URLs; each must also be granted.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub auth: Auth,
    /// Headers on every request (values are templates with the same
    /// context as the path).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// One request per write mode this destination supports.
    pub requests: BTreeMap<String, RequestTemplate>,
    /// Statuses that mean success; by default every 2xx.
    #[serde(default)]
    pub success: Vec<u16>,
    /// Per-item errors inside a successful per-batch response.
    #[serde(default)]
    pub row_errors: Option<RowErrors>,
    /// A JSON pointer to the message in an error response's body
    /// (`/meta/error`); by default the body's text.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Retries inside one call for 429, 408, 5xx and transport failures.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The longest wait spent inside a call; longer ones go back to the host.
    #[serde(default = "default_max_retry_wait_ms")]
    pub max_retry_wait_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Bearer TOKEN`.
    Bearer { token: String },
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        username: String,
        #[serde(default)]
        password: String,
    },
    /// A key in a header of its own (`X-Api-Key: KEY`).
    ApiKey { header: String, key: String },
    /// OAuth 2.0 client credentials (RFC 6749 4.4): a token from
    /// `token_url`, cached until it expires and fetched again once on 401.
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default)]
        scope: Option<String>,
        /// `basic` (HTTP Basic, RFC 6749's recommendation) or `post` (in
        /// the form body).
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Post,
}

#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// One request per row: the context has `row`.
    #[default]
    Row,
    /// One request per group of rows: the context has `rows`.
    Batch,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    #[serde(default)]
    pub per: Per,
    #[serde(default = "default_method")]
    pub method: String,
    /// Appended to `base_url`; a template (`/customers/{{ row.id | segment }}`:
    /// `segment` percent-encodes a path segment, `/` included).
    pub path: String,
    /// The body, a template; none for requests without one (DELETE).
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Per batch: at most this many rows a request (the API's own limit).
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// Where a per-batch response lists the items it refused.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RowErrors {
    /// A JSON pointer to the array of errors (`/errors`).
    pub path: String,
    /// A JSON pointer, inside an error, to the row's position in the
    /// request (`/index`).
    pub index: String,
    /// A JSON pointer, inside an error, to its message (`/type`); by
    /// default the whole error as JSON.
    #[serde(default)]
    pub message: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_content_type() -> String {
    "application/json".into()
}
fn default_max_retries() -> u32 {
    3
}
fn default_max_retry_wait_ms() -> u64 {
    5_000
}
fn default_timeout_ms() -> u64 {
    30_000
}

/// The write modes by the names used as keys of `requests`.
pub const MODES: [(&str, WriteMode); 5] = [
    ("upsert", WriteMode::Upsert),
    ("update", WriteMode::Update),
    ("insert", WriteMode::Insert),
    ("delete", WriteMode::Delete),
    ("append", WriteMode::Append),
];

pub fn mode_name(mode: WriteMode) -> &'static str {
    MODES
        .iter()
        .find(|(_, m)| *m == mode)
        .map_or("upsert", |(n, _)| n)
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), PluginError> {
        let bad = |m: String| Err(PluginError::Config(m));
        if !is_http_url(&self.base_url) {
            return bad(format!(
                "`base_url` must be http(s)://..., got `{}`",
                self.base_url
            ));
        }
        if self.requests.is_empty() {
            return bad(
                "`requests` is empty: give a request for at least one write mode \
                 (upsert, update, insert, delete, append)"
                    .into(),
            );
        }
        for (name, request) in &self.requests {
            if !MODES.iter().any(|(m, _)| m == name) {
                return bad(format!(
                    "`requests.{name}`: not a write mode (upsert, update, insert, delete, append)"
                ));
            }
            if request.max_rows == Some(0) {
                return bad(format!("`requests.{name}.max_rows` must be at least 1"));
            }
            if request.per == Per::Row && request.max_rows.is_some() {
                return bad(format!(
                    "`requests.{name}.max_rows` needs `per: batch` (a per-row request holds one row)"
                ));
            }
        }
        if let Auth::OauthClientCredentials { token_url, .. } = &self.auth {
            if !is_http_url(token_url) {
                return bad(format!(
                    "`auth.token_url` must be http(s)://..., got `{token_url}`"
                ));
            }
            let token_origin = origin(token_url);
            if token_origin != self.origin()
                && !self.hosts.iter().any(|h| origin(h) == token_origin)
            {
                return bad(format!(
                    "`auth.token_url` is on {token_origin}, which is neither `base_url` nor listed in \
                     `hosts`: add `{token_origin}` to `hosts` (and grant it)"
                ));
            }
        }
        for host in &self.hosts {
            if !is_http_url(host) {
                return bad(format!("`hosts`: `{host}` must be http(s)://..."));
            }
        }
        if let Some(pointer) = &self.error_message {
            check_pointer("error_message", pointer)?;
        }
        if let Some(e) = &self.row_errors {
            check_pointer("row_errors.path", &e.path)?;
            check_pointer("row_errors.index", &e.index)?;
            if let Some(m) = &e.message {
                check_pointer("row_errors.message", m)?;
            }
        }
        Ok(())
    }

    pub fn origin(&self) -> String {
        origin(&self.base_url)
    }

    /// The write modes `requests` covers.
    pub fn modes(&self) -> Vec<WriteMode> {
        MODES
            .iter()
            .filter(|(name, _)| self.requests.contains_key(*name))
            .map(|(_, m)| *m)
            .collect()
    }

    pub fn is_success(&self, status: u16) -> bool {
        if self.success.is_empty() {
            (200..300).contains(&status)
        } else {
            self.success.contains(&status)
        }
    }
}

fn check_pointer(key: &str, pointer: &str) -> Result<(), PluginError> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(PluginError::Config(format!(
            "`{key}` must be a JSON pointer such as `/errors`, got `{pointer}`"
        )))
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    )
}

pub fn schema() -> serde_json::Value {
    let request = serde_json::json!({
        "type": "object",
        "required": ["path"],
        "additionalProperties": false,
        "properties": {
            "per": {"enum": ["row", "batch"], "default": "row"},
            "method": {"type": "string", "default": "POST"},
            "path": {"type": "string", "description": "template appended to base_url"},
            "body": {"type": "string", "description": "template; none for a request without a body"},
            "content_type": {"type": "string", "default": "application/json"},
            "max_rows": {"type": "integer", "minimum": 1}
        }
    });
    serde_json::json!({
        "type": "object",
        "required": ["base_url", "requests"],
        "additionalProperties": false,
        "properties": {
            "base_url": {"type": "string", "format": "uri"},
            "hosts": {"type": "array", "items": {"type": "string"}, "default": []},
            "auth": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["none", "bearer", "basic", "api_key", "oauth_client_credentials"]},
                    "token": {"type": "string", "writeOnly": true},
                    "username": {"type": "string"},
                    "password": {"type": "string", "writeOnly": true},
                    "header": {"type": "string"},
                    "key": {"type": "string", "writeOnly": true},
                    "token_url": {"type": "string", "format": "uri"},
                    "client_id": {"type": "string"},
                    "client_secret": {"type": "string", "writeOnly": true},
                    "scope": {"type": "string"},
                    "client_auth": {"enum": ["basic", "post"], "default": "basic"}
                }
            },
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "requests": {
                "type": "object",
                "additionalProperties": false,
                "minProperties": 1,
                "properties": {
                    "upsert": request, "update": request, "insert": request,
                    "delete": request, "append": request
                }
            },
            "success": {"type": "array", "items": {"type": "integer"}},
            "row_errors": {
                "type": "object",
                "required": ["path", "index"],
                "additionalProperties": false,
                "properties": {
                    "path": {"type": "string"},
                    "index": {"type": "string"},
                    "message": {"type": "string"}
                }
            },
            "error_message": {"type": "string"},
            "max_retries": {"type": "integer", "minimum": 0, "default": 3},
            "max_retry_wait_ms": {"type": "integer", "minimum": 0, "default": 5000},
            "timeout_ms": {"type": "integer", "minimum": 1, "default": 30000}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<Config, PluginError> {
        Config::parse(&json.to_string())
    }

    #[test]
    fn the_modes_are_the_requests_given() {
        let c = parse(serde_json::json!({
            "base_url": "https://api.example.com",
            "requests": {"upsert": {"path": "/c"}, "delete": {"path": "/c/{{ row.id }}", "method": "DELETE"}}
        }))
        .unwrap();
        assert_eq!(c.modes(), vec![WriteMode::Upsert, WriteMode::Delete]);
        assert!(c.is_success(204) && !c.is_success(302));
    }

    #[test]
    fn bad_configs_say_what_to_fix() {
        let cases = [
            (
                serde_json::json!({"base_url": "ftp://x", "requests": {"upsert": {"path": "/"}}}),
                "`base_url`",
            ),
            (
                serde_json::json!({"base_url": "https://x", "requests": {}}),
                "`requests` is empty",
            ),
            (
                serde_json::json!({"base_url": "https://x", "requests": {"merge": {"path": "/"}}}),
                "`requests.merge`: not a write mode",
            ),
            (
                serde_json::json!({"base_url": "https://x", "requests": {"upsert": {"path": "/", "max_rows": 5}}}),
                "needs `per: batch`",
            ),
            (
                serde_json::json!({"base_url": "https://x", "error_message": "meta.error", "requests": {"upsert": {"path": "/"}}}),
                "JSON pointer",
            ),
            (
                serde_json::json!({"base_url": "https://api.x.com", "requests": {"upsert": {"path": "/"}},
                "auth": {"type": "oauth_client_credentials", "token_url": "https://login.x.com/token", "client_id": "a", "client_secret": "b"}}),
                "add `https://login.x.com` to `hosts`",
            ),
        ];
        for (json, expected) in cases {
            let err = format!("{:?}", parse(json.clone()).unwrap_err());
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn a_token_endpoint_listed_in_hosts_is_accepted() {
        let c = parse(serde_json::json!({
            "base_url": "https://api.x.com",
            "hosts": ["https://login.x.com"],
            "requests": {"upsert": {"path": "/"}},
            "auth": {"type": "oauth_client_credentials", "token_url": "https://login.x.com/oauth/token",
                     "client_id": "a", "client_secret": "b", "client_auth": "post"}
        }));
        assert!(c.is_ok(), "{c:?}");
    }
}
