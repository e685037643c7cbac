//! The plugin's config document.

use serde::Deserialize;
use sluice_sdk::prelude::*;
use std::time::Duration;

/// Connection settings for a MySQL or MariaDB server.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    /// Needed unless the account has no password.
    #[serde(default)]
    pub password: Option<String>,
    pub database: String,
    /// MySQL's `--ssl-mode` values. TLS is not implemented yet, so only
    /// `disabled` connects; every other value fails instead of silently
    /// sending cleartext.
    #[serde(default = "default_ssl_mode")]
    pub ssl_mode: String,
    /// The server's RSA public key (PEM), for `caching_sha2_password` full
    /// authentication without TLS.
    #[serde(default)]
    pub server_public_key: Option<String>,
    /// Ask the server for its RSA public key when full authentication
    /// needs it (MySQL's `--get-server-public-key`): convenient, but an
    /// attacker in the middle could hand out their own key.
    #[serde(default)]
    pub get_server_public_key: bool,
    /// Result columns to read as JSON, for computed columns MariaDB cannot
    /// mark as JSON (table columns declared `JSON` are found by themselves).
    #[serde(default)]
    pub json_columns: Vec<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a read may wait for the server before it counts as dead.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// The session's `net_write_timeout`: how long the server waits while
    /// Sluice is busy delivering a batch before it gives up on the result.
    #[serde(default = "default_net_write_timeout_s")]
    pub net_write_timeout_s: u32,
}

fn default_ssl_mode() -> String {
    "disabled".into()
}
fn default_port() -> u16 {
    3306
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_read_timeout_ms() -> u64 {
    600_000
}
fn default_net_write_timeout_s() -> u32 {
    3600
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
        for (key, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("net_write_timeout_s", u64::from(self.net_write_timeout_s)),
        ] {
            if value == 0 {
                return Err(PluginError::Config(format!("`{key}` must be at least 1")));
            }
        }
        // MySQL spells the modes in capitals (`REQUIRED`); accept both.
        let mode = self.ssl_mode.to_ascii_lowercase();
        match mode.as_str() {
            "disabled" => {}
            "preferred" | "required" | "verify_ca" | "verify_identity" => {
                return Err(PluginError::Config(format!(
                    "`ssl_mode: {mode}`: TLS is not yet supported by the mysql plugin; \
                     set `ssl_mode: disabled` to connect without TLS on a trusted network"
                )))
            }
            _ => {
                return Err(PluginError::Config(format!(
                    "`ssl_mode` is `{}`; expected one of disabled, preferred, required, verify_ca, verify_identity",
                    self.ssl_mode
                )))
            }
        }
        // User and database travel as NUL-terminated strings.
        for (key, value) in [("user", &self.user), ("database", &self.database)] {
            if value.contains('\0') {
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

    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    /// The JSON Schema published in the spec.
    pub fn schema() -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "description": "A MySQL or MariaDB server. No TLS yet: the connection is plaintext (passwords never travel in clear: native and ed25519 auth send proofs, caching_sha2 full auth uses RSA).",
            "required": ["host", "user", "database"],
            "additionalProperties": false,
            "properties": {
                "host": {"type": "string", "minLength": 1, "description": "server host name or IP address"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 3306},
                "user": {"type": "string", "minLength": 1},
                "password": {"type": "string", "writeOnly": true},
                "database": {"type": "string", "minLength": 1},
                "ssl_mode": {"enum": ["disabled", "preferred", "required", "verify_ca", "verify_identity"], "default": "disabled", "description": "only `disabled` works: TLS is not yet supported, and the other modes fail rather than send cleartext"},
                "server_public_key": {"type": "string", "description": "the server's RSA public key (PEM) for caching_sha2_password full authentication"},
                "get_server_public_key": {"type": "boolean", "default": false, "description": "fetch the RSA public key from the server when full authentication needs it"},
                "json_columns": {"type": "array", "items": {"type": "string"}, "description": "result columns to read as JSON (columns declared JSON are detected)"},
                "connect_timeout_ms": {"type": "integer", "minimum": 1, "default": 10000},
                "read_timeout_ms": {"type": "integer", "minimum": 1, "default": 600000, "description": "longest wait for the server's next bytes"},
                "net_write_timeout_s": {"type": "integer", "minimum": 1, "default": 3600, "description": "the session's net_write_timeout while a result streams"}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match Config::parse(text).unwrap_err() {
            PluginError::Config(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn applies_defaults_and_rejects_unknown_keys() {
        let c = Config::parse(r#"{"host":"db","user":"u","database":"d"}"#).unwrap();
        assert_eq!(
            (c.port, c.ssl_mode.as_str(), c.target()),
            (3306, "disabled", "db:3306".into())
        );
        assert!(
            err(r#"{"host":"db","user":"u","database":"d","sslmode":"x"}"#).contains("sslmode")
        );
    }

    #[test]
    fn every_tls_mode_fails_clearly_instead_of_sending_cleartext() {
        for mode in [
            "REQUIRED",
            "required",
            "preferred",
            "verify_ca",
            "VERIFY_IDENTITY",
        ] {
            let m = err(&format!(
                r#"{{"host":"db","user":"u","database":"d","ssl_mode":"{mode}"}}"#
            ));
            assert!(m.contains("TLS is not yet supported"), "{mode}: {m}");
            assert!(m.contains(&mode.to_ascii_lowercase()), "{mode}: {m}");
        }
        assert!(
            Config::parse(r#"{"host":"db","user":"u","database":"d","ssl_mode":"DISABLED"}"#)
                .is_ok()
        );
        assert!(
            err(r#"{"host":"db","user":"u","database":"d","ssl_mode":"on"}"#)
                .contains("`ssl_mode` is `on`; expected one of disabled")
        );
    }

    #[test]
    fn rejects_empty_and_nul_values() {
        assert!(err(r#"{"host":"","user":"u","database":"d"}"#).contains("`host`"));
        assert!(err(r#"{"host":"h","user":"u\u0000","database":"d"}"#).contains("`user`"));
        assert!(err(r#"{"host":"h","user":"u","database":"d","port":0}"#).contains("`port`"));
        assert!(
            err(r#"{"host":"h","user":"u","database":"d","read_timeout_ms":0}"#)
                .contains("`read_timeout_ms`")
        );
    }
}
