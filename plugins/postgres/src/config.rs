//! The plugin's config document.

use serde::Deserialize;
use sluice_sdk::prelude::*;
use std::time::Duration;

/// Connection settings. No TLS yet: the connection is plaintext, so use it
/// on a trusted network (or through a local TLS-terminating proxy).
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    /// Needed when the server asks for cleartext, MD5 or SCRAM-SHA-256 auth.
    #[serde(default)]
    pub password: Option<String>,
    pub database: String,
    #[serde(default = "default_application_name")]
    pub application_name: String,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_port() -> u16 {
    5432
}
fn default_application_name() -> String {
    "sluice".into()
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), PluginError> {
        for (key, value) in [
            ("host", &self.host),
            ("user", &self.user),
            ("database", &self.database),
        ] {
            if value.is_empty() {
                return Err(PluginError::Config(format!("`{key}` must not be empty")));
            }
        }
        if self.port == 0 {
            return Err(PluginError::Config(
                "`port` must be between 1 and 65535".into(),
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(PluginError::Config(
                "`connect_timeout_ms` must be at least 1".into(),
            ));
        }
        // The startup and password messages are NUL-terminated strings.
        let strings = [
            ("host", Some(&self.host)),
            ("user", Some(&self.user)),
            ("database", Some(&self.database)),
            ("application_name", Some(&self.application_name)),
            ("password", self.password.as_ref()),
        ];
        for (key, value) in strings {
            if value.is_some_and(|v| v.contains('\0')) {
                return Err(PluginError::Config(format!(
                    "`{key}` must not contain a NUL character"
                )));
            }
        }
        Ok(())
    }

    /// `host:port`, for error messages.
    pub fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The JSON Schema published in the spec.
    pub fn schema() -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "description": "A PostgreSQL server. No TLS: the connection (including the password exchange for cleartext auth) is plaintext, so use it on a trusted network or through a local TLS-terminating proxy.",
            "required": ["host", "user", "database"],
            "additionalProperties": false,
            "properties": {
                "host": {"type": "string", "minLength": 1, "description": "server host name or IP address"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5432},
                "user": {"type": "string", "minLength": 1},
                "password": {"type": "string", "writeOnly": true, "description": "for cleartext, MD5 or SCRAM-SHA-256 auth"},
                "database": {"type": "string", "minLength": 1},
                "application_name": {"type": "string", "default": "sluice", "description": "shown in pg_stat_activity"},
                "connect_timeout_ms": {"type": "integer", "minimum": 1, "default": 10000, "description": "TCP connect timeout"}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_defaults_and_rejects_unknown_keys() {
        let c = Config::parse(r#"{"host":"db","user":"u","database":"d"}"#).unwrap();
        assert_eq!(
            (c.port, c.application_name.as_str(), c.connect_timeout_ms),
            (5432, "sluice", 10_000)
        );
        assert_eq!(c.target(), "db:5432");
        let err = Config::parse(r#"{"host":"db","user":"u","database":"d","sslmode":"require"}"#)
            .unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("sslmode")),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_empty_and_nul_values() {
        let err = Config::parse(r#"{"host":"","user":"u","database":"d"}"#).unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("`host`")),
            "{err:?}"
        );
        let err = Config::parse(r#"{"host":"h","user":"u","database":"d","password":"a\u0000b"}"#)
            .unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("`password`")),
            "{err:?}"
        );
        let err = Config::parse(r#"{"host":"h","user":"u","database":"d","port":0}"#).unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("`port`")),
            "{err:?}"
        );
    }
}
