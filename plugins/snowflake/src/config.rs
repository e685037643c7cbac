//! The plugin's config document.

use serde::Deserialize;
use sluice_sdk::prelude::*;

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `https://<account_identifier>.snowflakecomputing.com`, or an emulator.
    pub base_url: String,
    /// The account identifier (`ORG-ACCOUNT` or a locator) used in JWT claims.
    pub account: String,
    pub user: String,
    /// PEM PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 RSA key for key-pair auth.
    #[serde(default)]
    pub private_key: Option<String>,
    /// An OAuth access token, instead of a private key.
    #[serde(default)]
    pub oauth_token: Option<String>,
    #[serde(default)]
    pub warehouse: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub query_tag: Option<String>,
    /// Snowflake cancels a statement running longer than this.
    #[serde(default = "default_statement_timeout_s")]
    pub statement_timeout_s: u64,
    /// Connect and first-byte timeout of each HTTP request.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The longest the plugin polls a statement answered 202 before cancelling it.
    #[serde(default = "default_max_poll_ms")]
    pub max_poll_ms: u64,
    /// Retries of a 429, 5xx or transport failure, with exponential backoff.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_statement_timeout_s() -> u64 {
    3600
}
fn default_request_timeout_ms() -> u64 {
    60_000
}
fn default_max_poll_ms() -> u64 {
    240_000
}
fn default_max_retries() -> u32 {
    6
}

/// How requests authenticate.
pub enum Credentials<'a> {
    KeyPair(&'a str),
    OAuth(&'a str),
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let mut config: Config = parse_config(text)?;
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), PluginError> {
        for (key, value) in [
            ("base_url", &self.base_url),
            ("account", &self.account),
            ("user", &self.user),
        ] {
            if value.trim().is_empty() {
                return Err(PluginError::Config(format!("`{key}` must not be empty")));
            }
        }
        if !self.base_url.starts_with("https://") && !self.base_url.starts_with("http://") {
            return Err(PluginError::Config(format!(
                "`base_url` must start with https:// (or http:// for an emulator): {:?}",
                self.base_url
            )));
        }
        self.credentials()?;
        if self.request_timeout_ms == 0 || self.max_poll_ms == 0 {
            return Err(PluginError::Config(
                "`request_timeout_ms` and `max_poll_ms` must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn credentials(&self) -> Result<Credentials<'_>, PluginError> {
        match (&self.private_key, &self.oauth_token) {
            (Some(key), None) => Ok(Credentials::KeyPair(key)),
            (None, Some(token)) => Ok(Credentials::OAuth(token)),
            (Some(_), Some(_)) => Err(PluginError::Config(
                "set one of `private_key` and `oauth_token`, not both".into(),
            )),
            (None, None) => Err(PluginError::Config(
                "set `private_key` (key-pair auth) or `oauth_token` (OAuth)".into(),
            )),
        }
    }

    /// What errors name: the account and the endpoint.
    pub fn target(&self) -> String {
        format!("Snowflake account {} at {}", self.account, self.base_url)
    }

    pub fn schema() -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "description": "A Snowflake account reached over the SQL API v2, with key-pair (RS256 JWT) or OAuth auth.",
            "required": ["base_url", "account", "user"],
            "additionalProperties": false,
            "properties": {
                "base_url": {"type": "string", "description": "https://<account_identifier>.snowflakecomputing.com, or an emulator's URL"},
                "account": {"type": "string", "minLength": 1, "description": "account identifier, as used in the JWT claims"},
                "user": {"type": "string", "minLength": 1},
                "private_key": {"type": "string", "writeOnly": true, "description": "PEM RSA private key (PKCS#8 or PKCS#1) whose public key is registered for the user"},
                "oauth_token": {"type": "string", "writeOnly": true, "description": "an OAuth access token, instead of private_key"},
                "warehouse": {"type": "string"},
                "role": {"type": "string"},
                "database": {"type": "string"},
                "schema": {"type": "string"},
                "query_tag": {"type": "string"},
                "statement_timeout_s": {"type": "integer", "minimum": 0, "default": 3600},
                "request_timeout_ms": {"type": "integer", "minimum": 1, "default": 60000},
                "max_poll_ms": {"type": "integer", "minimum": 1, "default": 240000},
                "max_retries": {"type": "integer", "minimum": 0, "default": 6}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_exactly_one_credential() {
        let base = r#""base_url":"http://127.0.0.1:1","account":"a","user":"u""#;
        assert!(Config::parse(&format!("{{{base}}}")).is_err());
        assert!(Config::parse(&format!(r#"{{{base},"oauth_token":"t"}}"#)).is_ok());
        let both = format!(r#"{{{base},"oauth_token":"t","private_key":"k"}}"#);
        assert!(
            matches!(Config::parse(&both), Err(PluginError::Config(m)) if m.contains("not both"))
        );
        assert!(Config::parse(
            r#"{"base_url":"ftp://x","account":"a","user":"u","oauth_token":"t"}"#
        )
        .is_err());
    }
}
