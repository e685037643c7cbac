//! The plugin's config document.

use net::{TlsSettings, Verification};
use serde::Deserialize;
use sluice_sdk::prelude::*;
use std::time::Duration;

/// libpq's `sslmode`, with libpq's meaning and default (`prefer`), so a
/// connection string's settings carry over unchanged. `allow` is left out:
/// it tries plaintext first, which this plugin never wants to prefer.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it (unverified, as in libpq), else plaintext.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked (unsafe against an
    /// active attacker, as libpq warns), except that with `sslrootcert`
    /// its chain is, as libpq does.
    Require,
    /// TLS, the chain checked against the roots.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Connection settings.
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
    #[serde(default)]
    pub sslmode: SslMode,
    /// A PEM file of the CA certificates to trust instead of the public
    /// roots; the host reads it if a directory granted to the plugin
    /// holds it.
    #[serde(default)]
    pub sslrootcert: Option<String>,
    /// Amazon Redshift: avoid what Redshift lacks (PostgreSQL 8.0-era
    /// catalogs and settings); see the README's "Redshift" section.
    #[serde(default)]
    pub redshift: bool,
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
        if let Some(path) = &self.sslrootcert {
            if !path.starts_with('/') {
                return Err(PluginError::Config(format!(
                    "`sslrootcert` is `{path}`; it must be an absolute path (inside a granted directory)"
                )));
            }
            if self.sslmode == SslMode::Disable {
                return Err(PluginError::Config(
                    "`sslrootcert` is set but `sslmode` is `disable`, which never uses it".into(),
                ));
            }
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

    /// The TLS the SSLRequest asks for, or `None` for `disable`. As in
    /// libpq, `prefer` and `require` check the chain when a root file is
    /// given, and nothing otherwise.
    pub fn tls_settings(&self) -> Option<TlsSettings> {
        let verification = match (self.sslmode, &self.sslrootcert) {
            (SslMode::Disable, _) => return None,
            (SslMode::Prefer | SslMode::Require, None) => Verification::None,
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, _) => Verification::Chain,
            (SslMode::VerifyFull, _) => Verification::Full,
        };
        Some(TlsSettings {
            verification,
            ca_file: self.sslrootcert.clone(),
        })
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
            "description": "A PostgreSQL server, over TLS as `sslmode` says (libpq's modes and default).",
            "required": ["host", "user", "database"],
            "additionalProperties": false,
            "properties": {
                "host": {"type": "string", "minLength": 1, "description": "server host name or IP address"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5432},
                "user": {"type": "string", "minLength": 1},
                "password": {"type": "string", "writeOnly": true, "description": "for cleartext, MD5 or SCRAM-SHA-256 auth"},
                "database": {"type": "string", "minLength": 1},
                "application_name": {"type": "string", "default": "sluice", "description": "shown in pg_stat_activity"},
                "connect_timeout_ms": {"type": "integer", "minimum": 1, "default": 10000, "description": "TCP connect and TLS handshake timeout, each"},
                "sslmode": {"enum": ["disable", "prefer", "require", "verify-ca", "verify-full"], "default": "prefer", "description": "libpq's sslmode: prefer = TLS if offered, unverified; require = TLS, unverified (unsafe against an active attacker); verify-ca = chain checked; verify-full = chain and host name checked"},
                "sslrootcert": {"type": "string", "description": "absolute path of a PEM CA bundle to trust instead of the public roots; its folder must be granted (dir:FOLDER:ro)"},
                "redshift": {"type": "boolean", "default": false, "description": "Amazon Redshift mode: only the startup settings, catalog queries and transaction syntax Redshift has (set `port` to the cluster's, usually 5439)"}
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
        assert_eq!(c.sslmode, SslMode::Prefer);
        let err = Config::parse(r#"{"host":"db","user":"u","database":"d","ssl":"require"}"#)
            .unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("ssl")),
            "{err:?}"
        );
    }

    fn settings(extra: &str) -> Result<Option<TlsSettings>, PluginError> {
        Config::parse(&format!(
            r#"{{"host":"db","user":"u","database":"d"{extra}}}"#
        ))
        .map(|c| c.tls_settings())
    }

    #[test]
    fn sslmodes_map_to_verification_as_in_libpq() {
        let mode = |extra: &str| settings(extra).unwrap().map(|s| s.verification);
        assert_eq!(mode(""), Some(Verification::None));
        assert_eq!(mode(r#","sslmode":"disable""#), None);
        assert_eq!(mode(r#","sslmode":"require""#), Some(Verification::None));
        assert_eq!(mode(r#","sslmode":"verify-ca""#), Some(Verification::Chain));
        assert_eq!(
            mode(r#","sslmode":"verify-full""#),
            Some(Verification::Full)
        );
        let ca = r#","sslrootcert":"/ssl/ca.pem""#;
        assert_eq!(
            mode(&format!(r#"{ca},"sslmode":"require""#)),
            Some(Verification::Chain)
        );
        assert_eq!(
            settings(&format!(r#"{ca},"sslmode":"verify-full""#))
                .unwrap()
                .unwrap()
                .ca_file
                .as_deref(),
            Some("/ssl/ca.pem")
        );
        let err = settings(r#","sslmode":"verify_full""#).unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m)
                if m.contains("unknown variant `verify_full`, expected one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`")),
            "{err:?}"
        );
        let err = settings(r#","sslrootcert":"ca.pem""#).unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("absolute")),
            "{err:?}"
        );
        let err = settings(&format!(r#"{ca},"sslmode":"disable""#)).unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("never uses it")),
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
