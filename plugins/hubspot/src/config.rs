//! The plugin's config document.

use serde::Deserialize;
use sluice_sdk::prelude::*;

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// A private app's access token.
    pub token: String,
    /// `contacts`, `companies`, or a custom object by name or `2-123` id.
    pub object_type: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://api.hubapi.com".into()
}
fn default_timeout_ms() -> u64 {
    30_000
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let mut config: Config = parse_config(text)?;
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        if !(config.base_url.starts_with("https://") || config.base_url.starts_with("http://")) {
            return Err(PluginError::Config(format!(
                "`base_url` must be http(s)://..., got `{}`",
                config.base_url
            )));
        }
        if config.token.trim().is_empty() {
            return Err(PluginError::Config("`token` is empty".into()));
        }
        if config.object_type.trim().is_empty() || config.object_type.contains('/') {
            return Err(PluginError::Config(format!(
                "`object_type` must be contacts, companies or a custom object, got `{}`",
                config.object_type
            )));
        }
        Ok(config)
    }
}

pub fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "required": ["token", "object_type"],
        "additionalProperties": false,
        "properties": {
            "base_url": {"type": "string", "format": "uri", "default": "https://api.hubapi.com"},
            "token": {"type": "string", "writeOnly": true, "description": "private app access token"},
            "object_type": {"type": "string", "description": "contacts, companies, or a custom object name or 2-NNN id"},
            "timeout_ms": {"type": "integer", "minimum": 1, "default": 30000}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let c = Config::parse(r#"{"token":"pat","object_type":"contacts"}"#).unwrap();
        assert_eq!(c.base_url, "https://api.hubapi.com");
        assert!(
            matches!(Config::parse(r#"{"token":"","object_type":"contacts"}"#), Err(PluginError::Config(m)) if m.contains("token"))
        );
        assert!(matches!(
            Config::parse(r#"{"token":"t","object_type":"a/b"}"#),
            Err(PluginError::Config(_))
        ));
        assert!(
            matches!(Config::parse(r#"{"token":"t","object_type":"contacts","bogus":1}"#), Err(PluginError::Config(m)) if m.contains("bogus"))
        );
    }
}
