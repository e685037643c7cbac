//! The plugin's config document.

use net::{TlsSettings, Verification};
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
    /// MySQL's `--ssl-mode` values (either case), with its default,
    /// PREFERRED: see [`SslMode`].
    #[serde(default = "default_ssl_mode")]
    pub ssl_mode: String,
    /// A PEM file of the CA certificates to trust instead of the public
    /// roots (MySQL's `--ssl-ca`); the host reads it if a directory
    /// granted to the plugin holds it.
    #[serde(default)]
    pub ssl_ca: Option<String>,
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

/// MySQL's `--ssl-mode`, with the MySQL client's meaning and default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disabled,
    /// TLS when the server offers it (unverified, as in the MySQL client),
    /// else plaintext.
    Preferred,
    /// TLS or fail; the certificate is not checked (unsafe against an
    /// active attacker), except that with `ssl_ca` its chain is, as the
    /// MySQL client does.
    Required,
    /// TLS, the chain checked against the roots.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyIdentity,
}

impl SslMode {
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disabled => "DISABLED",
            SslMode::Preferred => "PREFERRED",
            SslMode::Required => "REQUIRED",
            SslMode::VerifyCa => "VERIFY_CA",
            SslMode::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }
}

fn default_ssl_mode() -> String {
    "PREFERRED".into()
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
        let mode = self.ssl_mode()?;
        if let Some(path) = &self.ssl_ca {
            if !path.starts_with('/') {
                return Err(PluginError::Config(format!(
                    "`ssl_ca` is `{path}`; it must be an absolute path (inside a granted directory)"
                )));
            }
            if mode == SslMode::Disabled {
                return Err(PluginError::Config(
                    "`ssl_ca` is set but `ssl_mode` is DISABLED, which never uses it".into(),
                ));
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

    /// `ssl_mode` parsed. MySQL spells the modes in capitals (`REQUIRED`);
    /// both cases are accepted.
    pub fn ssl_mode(&self) -> Result<SslMode, PluginError> {
        Ok(match self.ssl_mode.to_ascii_lowercase().as_str() {
            "disabled" => SslMode::Disabled,
            "preferred" => SslMode::Preferred,
            "required" => SslMode::Required,
            "verify_ca" => SslMode::VerifyCa,
            "verify_identity" => SslMode::VerifyIdentity,
            _ => {
                return Err(PluginError::Config(format!(
                    "`ssl_mode` is `{}`; expected one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY",
                    self.ssl_mode
                )))
            }
        })
    }

    /// The TLS to ask for, or `None` for DISABLED. As in the MySQL client,
    /// PREFERRED and REQUIRED check the chain when `ssl_ca` is given.
    pub fn tls_settings(&self) -> Result<Option<TlsSettings>, PluginError> {
        let verification = match (self.ssl_mode()?, &self.ssl_ca) {
            (SslMode::Disabled, _) => return Ok(None),
            (SslMode::Preferred | SslMode::Required, None) => Verification::None,
            (SslMode::Preferred | SslMode::Required | SslMode::VerifyCa, _) => Verification::Chain,
            (SslMode::VerifyIdentity, _) => Verification::Full,
        };
        Ok(Some(TlsSettings {
            verification,
            ca_file: self.ssl_ca.clone(),
        }))
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
            "description": "A MySQL or MariaDB server, over TLS as `ssl_mode` says (the MySQL client's modes and default). Passwords never travel in clear outside TLS: native and ed25519 auth send proofs, caching_sha2 full auth uses TLS or RSA.",
            "required": ["host", "user", "database"],
            "additionalProperties": false,
            "properties": {
                "host": {"type": "string", "minLength": 1, "description": "server host name or IP address"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 3306},
                "user": {"type": "string", "minLength": 1},
                "password": {"type": "string", "writeOnly": true},
                "database": {"type": "string", "minLength": 1},
                "ssl_mode": {"enum": ["DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY", "disabled", "preferred", "required", "verify_ca", "verify_identity"], "default": "PREFERRED", "description": "PREFERRED = TLS if offered, unverified; REQUIRED = TLS, unverified (unsafe against an active attacker); VERIFY_CA = chain checked; VERIFY_IDENTITY = chain and host name checked"},
                "ssl_ca": {"type": "string", "description": "absolute path of a PEM CA bundle to trust instead of the public roots; its folder must be granted (dir:FOLDER:ro)"},
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
            (3306, "PREFERRED", "db:3306".into())
        );
        assert!(
            err(r#"{"host":"db","user":"u","database":"d","sslmode":"x"}"#).contains("sslmode")
        );
    }

    fn verification(extra: &str) -> Option<Verification> {
        Config::parse(&format!(
            r#"{{"host":"db","user":"u","database":"d"{extra}}}"#
        ))
        .unwrap()
        .tls_settings()
        .unwrap()
        .map(|s| s.verification)
    }

    #[test]
    fn ssl_modes_map_to_verification_as_in_the_mysql_client() {
        assert_eq!(verification(""), Some(Verification::None));
        assert_eq!(verification(r#","ssl_mode":"DISABLED""#), None);
        assert_eq!(
            verification(r#","ssl_mode":"required""#),
            Some(Verification::None)
        );
        assert_eq!(
            verification(r#","ssl_mode":"VERIFY_CA""#),
            Some(Verification::Chain)
        );
        assert_eq!(
            verification(r#","ssl_mode":"VERIFY_IDENTITY""#),
            Some(Verification::Full)
        );
        assert_eq!(
            verification(r#","ssl_mode":"REQUIRED","ssl_ca":"/ssl/ca.pem""#),
            Some(Verification::Chain)
        );
        assert!(
            err(r#"{"host":"db","user":"u","database":"d","ssl_mode":"on"}"#)
                .contains("`ssl_mode` is `on`; expected one of DISABLED")
        );
        assert!(
            err(r#"{"host":"db","user":"u","database":"d","ssl_ca":"ca.pem"}"#)
                .contains("absolute")
        );
        assert!(err(
            r#"{"host":"db","user":"u","database":"d","ssl_mode":"disabled","ssl_ca":"/ca.pem"}"#
        )
        .contains("never uses it"));
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
