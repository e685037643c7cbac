//! The plugin's config document.

use serde::Deserialize;
use sluice_sdk::prelude::*;

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The workspace URL, `https://<workspace>.cloud.databricks.com`, or an emulator.
    pub host: String,
    /// A personal access token (`dapi…`).
    #[serde(default)]
    pub token: Option<String>,
    /// OAuth M2M: a service principal's client id and secret.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    pub warehouse_id: String,
    #[serde(default)]
    pub catalog: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    /// `INLINE` (at most 25 MiB of results) or `EXTERNAL_LINKS`.
    #[serde(default = "default_disposition")]
    pub disposition: String,
    /// The hosts EXTERNAL_LINKS URLs point to (cloud storage); each must be
    /// granted too. Only used to ask for grants.
    #[serde(default)]
    pub external_link_hosts: Vec<String>,
    /// How long the submit call waits for the result: 0 or 5 to 50 seconds.
    #[serde(default = "default_wait_timeout_s")]
    pub wait_timeout_s: u64,
    /// The longest the plugin polls a PENDING/RUNNING statement before cancelling it.
    #[serde(default = "default_max_poll_ms")]
    pub max_poll_ms: u64,
    /// Connect and first-byte timeout of each HTTP request.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Retries of a 429, 503 or transport failure, with exponential backoff.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_disposition() -> String {
    "INLINE".into()
}
fn default_wait_timeout_s() -> u64 {
    10
}
fn default_max_poll_ms() -> u64 {
    600_000
}
fn default_request_timeout_ms() -> u64 {
    60_000
}
fn default_max_retries() -> u32 {
    6
}

/// How requests authenticate.
pub enum Credentials<'a> {
    Token(&'a str),
    OAuth { client_id: &'a str, secret: &'a str },
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let mut config: Config = parse_config(text)?;
        config.host = config.host.trim_end_matches('/').to_string();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), PluginError> {
        for (key, value) in [("host", &self.host), ("warehouse_id", &self.warehouse_id)] {
            if value.trim().is_empty() {
                return Err(PluginError::Config(format!("`{key}` must not be empty")));
            }
        }
        if !self.host.starts_with("https://") && !self.host.starts_with("http://") {
            return Err(PluginError::Config(format!(
                "`host` must start with https:// (or http:// for an emulator): {:?}",
                self.host
            )));
        }
        self.credentials()?;
        if self.disposition != "INLINE" && self.disposition != "EXTERNAL_LINKS" {
            return Err(PluginError::Config(format!(
                "`disposition` must be INLINE or EXTERNAL_LINKS, not {:?}",
                self.disposition
            )));
        }
        if self.wait_timeout_s != 0 && !(5..=50).contains(&self.wait_timeout_s) {
            return Err(PluginError::Config(format!(
                "`wait_timeout_s` must be 0 or between 5 and 50 (Databricks' range), not {}",
                self.wait_timeout_s
            )));
        }
        if self.request_timeout_ms == 0 || self.max_poll_ms == 0 {
            return Err(PluginError::Config(
                "`request_timeout_ms` and `max_poll_ms` must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn credentials(&self) -> Result<Credentials<'_>, PluginError> {
        match (&self.token, &self.client_id, &self.client_secret) {
            (Some(token), None, None) => Ok(Credentials::Token(token)),
            (None, Some(client_id), Some(secret)) => Ok(Credentials::OAuth { client_id, secret }),
            (None, Some(_), None) | (None, None, Some(_)) => Err(PluginError::Config(
                "OAuth M2M needs both `client_id` and `client_secret`".into(),
            )),
            (Some(_), _, _) => Err(PluginError::Config(
                "set `token` or `client_id` + `client_secret`, not both".into(),
            )),
            (None, None, None) => Err(PluginError::Config(
                "set `token` (a personal access token) or `client_id` + `client_secret` (OAuth M2M)"
                    .into(),
            )),
        }
    }

    /// What errors name: the workspace and the warehouse.
    pub fn target(&self) -> String {
        format!(
            "Databricks workspace {} (warehouse {})",
            self.host, self.warehouse_id
        )
    }

    pub fn schema() -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "description": "A Databricks SQL warehouse reached over the SQL Statement Execution API 2.0, with a personal access token or OAuth M2M.",
            "required": ["host", "warehouse_id"],
            "additionalProperties": false,
            "properties": {
                "host": {"type": "string", "description": "the workspace URL, https://<workspace>.cloud.databricks.com, or an emulator's URL"},
                "token": {"type": "string", "writeOnly": true, "description": "a personal access token"},
                "client_id": {"type": "string", "description": "OAuth M2M: the service principal's application (client) id"},
                "client_secret": {"type": "string", "writeOnly": true, "description": "OAuth M2M: the service principal's secret"},
                "warehouse_id": {"type": "string", "minLength": 1},
                "catalog": {"type": "string"},
                "schema": {"type": "string"},
                "disposition": {"enum": ["INLINE", "EXTERNAL_LINKS"], "default": "INLINE"},
                "external_link_hosts": {"type": "array", "items": {"type": "string"}, "default": [], "description": "the cloud storage hosts EXTERNAL_LINKS point to, e.g. https://my-bucket.s3.us-west-2.amazonaws.com; grant them too"},
                "wait_timeout_s": {"type": "integer", "minimum": 0, "maximum": 50, "default": 10},
                "max_poll_ms": {"type": "integer", "minimum": 1, "default": 600000},
                "request_timeout_ms": {"type": "integer", "minimum": 1, "default": 60000},
                "max_retries": {"type": "integer", "minimum": 0, "default": 6}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""host":"http://127.0.0.1:1","warehouse_id":"w""#;

    #[test]
    fn needs_one_way_to_authenticate() {
        assert!(Config::parse(&format!("{{{BASE}}}")).is_err());
        assert!(Config::parse(&format!(r#"{{{BASE},"token":"t"}}"#)).is_ok());
        assert!(Config::parse(&format!(
            r#"{{{BASE},"client_id":"c","client_secret":"s"}}"#
        ))
        .is_ok());
        let half = format!(r#"{{{BASE},"client_id":"c"}}"#);
        assert!(matches!(Config::parse(&half), Err(PluginError::Config(m)) if m.contains("both")));
        let both = format!(r#"{{{BASE},"token":"t","client_id":"c","client_secret":"s"}}"#);
        assert!(
            matches!(Config::parse(&both), Err(PluginError::Config(m)) if m.contains("not both"))
        );
    }

    #[test]
    fn wait_timeout_and_disposition_are_checked() {
        let bad_wait = format!(r#"{{{BASE},"token":"t","wait_timeout_s":3}}"#);
        assert!(
            matches!(Config::parse(&bad_wait), Err(PluginError::Config(m)) if m.contains("wait_timeout_s"))
        );
        let bad = format!(r#"{{{BASE},"token":"t","disposition":"ARROW"}}"#);
        assert!(Config::parse(&bad).is_err());
    }
}
