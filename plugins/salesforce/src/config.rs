//! The plugin's config document.

use serde::Deserialize;
use sluice_sdk::prelude::*;

/// How the plugin gets an access token.
#[derive(Deserialize, Clone, Debug)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// OAuth 2.0 client credentials (a connected app with a run-as user).
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    /// OAuth 2.0 JWT bearer: an RS256 assertion signed with the app's key.
    JwtBearer {
        client_id: String,
        username: String,
        /// PEM, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
        private_key: String,
        /// The assertion's `aud`; defaults to `login_url`.
        #[serde(default)]
        audience: Option<String>,
    },
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base of the token endpoint: `https://login.salesforce.com`,
    /// `https://test.salesforce.com`, a My Domain URL, or an emulator.
    pub login_url: String,
    pub auth: Auth,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// A write batch with at least this many rows goes through Bulk API 2.0.
    #[serde(default = "default_bulk_threshold")]
    pub bulk_threshold: usize,
    /// Whether inserts may go through Bulk API 2.0 too. Off by default: a
    /// Bulk job keeps running in Salesforce when the process that made it
    /// is killed, and an insert carries no key by which the next run could
    /// tell which of its rows were applied, so every row of the job would
    /// be inserted again. Upserts, updates and deletes are idempotent by
    /// key and use Bulk whatever this says.
    #[serde(default)]
    pub bulk_insert: bool,
    /// Pause between Bulk job status polls.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The longest one write call waits for a Bulk job (the host interrupts
    /// a call after 60 s by default, so keep this below that).
    #[serde(default = "default_bulk_max_wait_ms")]
    pub bulk_max_wait_ms: u64,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Objects `discover` describes. Without it, every writable sObject up to
    /// [`DISCOVER_LIMIT`] (each describe is one API call).
    #[serde(default)]
    pub objects: Option<Vec<String>>,
    /// Where API calls may go: the `instance_url` the token endpoint
    /// returns is not known in advance. The spec requests these hosts
    /// beside `login_url`; an emulator or proxy that answers at `login_url`
    /// itself needs none (`[]`).
    #[serde(default = "default_api_hosts")]
    pub api_hosts: Vec<String>,
}

/// How many objects `discover` describes when `objects` is not set.
pub const DISCOVER_LIMIT: usize = 100;

fn default_api_version() -> String {
    "60.0".into()
}
fn default_bulk_threshold() -> usize {
    10_000
}
fn default_poll_interval_ms() -> u64 {
    1_000
}
fn default_bulk_max_wait_ms() -> u64 {
    40_000
}
fn default_api_hosts() -> Vec<String> {
    DEFAULT_API_HOSTS.iter().map(|h| h.to_string()).collect()
}
/// Salesforce's instance hosts.
pub const DEFAULT_API_HOSTS: [&str; 2] = ["https://*.salesforce.com", "https://*.force.com"];
fn default_timeout_ms() -> u64 {
    30_000
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let mut config: Config = parse_config(text)?;
        config.login_url = config.login_url.trim_end_matches('/').to_string();
        if !(config.login_url.starts_with("https://") || config.login_url.starts_with("http://")) {
            return Err(PluginError::Config(format!(
                "`login_url` must be http(s)://..., got `{}`",
                config.login_url
            )));
        }
        let version = config.api_version.trim_start_matches('v').to_string();
        if version.parse::<f64>().map_or(true, |v| v < 46.0) {
            // Collections upsert and `created` flags need 46.0 or later.
            return Err(PluginError::Config(format!(
                "`api_version` must be 46.0 or later, got `{}`",
                config.api_version
            )));
        }
        config.api_version = version;
        if config.bulk_threshold == 0 {
            return Err(PluginError::Config(
                "`bulk_threshold` must be at least 1".into(),
            ));
        }
        if let Auth::JwtBearer { private_key, .. } = &config.auth {
            crate::auth::signing_key(private_key)?;
        }
        Ok(config)
    }

    /// `/services/data/vNN.N`
    pub fn data_path(&self) -> String {
        format!("/services/data/v{}", self.api_version)
    }
}

pub fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "required": ["login_url", "auth"],
        "additionalProperties": false,
        "properties": {
            "login_url": {"type": "string", "format": "uri", "description": "token endpoint base, e.g. https://login.salesforce.com"},
            "auth": {"oneOf": [
                {"type": "object", "additionalProperties": false,
                 "required": ["flow", "client_id", "client_secret"],
                 "properties": {
                    "flow": {"const": "client_credentials"},
                    "client_id": {"type": "string"},
                    "client_secret": {"type": "string", "writeOnly": true}}},
                {"type": "object", "additionalProperties": false,
                 "required": ["flow", "client_id", "username", "private_key"],
                 "properties": {
                    "flow": {"const": "jwt_bearer"},
                    "client_id": {"type": "string"},
                    "username": {"type": "string"},
                    "private_key": {"type": "string", "writeOnly": true, "description": "RSA private key, PEM"},
                    "audience": {"type": "string"}}}
            ]},
            "api_version": {"type": "string", "default": "60.0"},
            "bulk_threshold": {"type": "integer", "minimum": 1, "default": 10000},
            "bulk_insert": {"type": "boolean", "default": false, "description": "let inserts use Bulk API 2.0 (a job interrupted by a killed run is inserted again in full by the next run); upserts, updates and deletes use Bulk above bulk_threshold regardless"},
            "poll_interval_ms": {"type": "integer", "minimum": 0, "default": 1000},
            "bulk_max_wait_ms": {"type": "integer", "minimum": 0, "default": 40000},
            "timeout_ms": {"type": "integer", "minimum": 1, "default": 30000},
            "objects": {"type": "array", "items": {"type": "string"}, "description": "objects discover describes (default: every writable sObject, at most 100)"},
            "api_hosts": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_API_HOSTS, "description": "hosts API calls go to (the instance_url is not known in advance); [] when login_url answers API calls itself, as an emulator does"}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_flows_and_refuses_mistakes() {
        let c = Config::parse(r#"{"login_url":"https://login.salesforce.com/","auth":{"flow":"client_credentials","client_id":"a","client_secret":"b"}}"#).unwrap();
        assert_eq!(c.login_url, "https://login.salesforce.com");
        assert_eq!(c.data_path(), "/services/data/v60.0");
        assert_eq!(c.bulk_threshold, 10_000);
        let bad_flow = Config::parse(
            r#"{"login_url":"https://x","auth":{"flow":"password","client_id":"a"}}"#,
        );
        assert!(matches!(bad_flow, Err(PluginError::Config(_))));
        let bad_key = Config::parse(
            r#"{"login_url":"https://x","auth":{"flow":"jwt_bearer","client_id":"a","username":"u","private_key":"nope"}}"#,
        );
        assert!(matches!(bad_key, Err(PluginError::Config(m)) if m.contains("private_key")));
        let old = Config::parse(
            r#"{"login_url":"https://x","api_version":"45.0","auth":{"flow":"client_credentials","client_id":"a","client_secret":"b"}}"#,
        );
        assert!(matches!(old, Err(PluginError::Config(m)) if m.contains("api_version")));
    }
}
